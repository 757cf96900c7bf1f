-- ARGV: prefix, claim timeout ms, then id, token pairs. Returns the ids no longer ours.
local deadline = now_ms() + tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV, 2 do
  local f = redis.call('HMGET', job_key(ARGV[i]), 'status', 'token')
  if f[1] == 'running' and f[2] == ARGV[i + 1] then
    redis.call('ZADD', RUNNING, 'XX', deadline, ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost

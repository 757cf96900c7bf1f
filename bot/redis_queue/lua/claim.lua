-- ARGV: prefix, claim timeout ms, consumer id, platforms...
-- Returns {ids put back in line because their owner went quiet[, claimed id, its hash]}.
local now = now_ms()
local reaped = reap(now)
local allowed = {}
for i = 4, #ARGV do allowed[ARGV[i]] = true end
local best, best_seq, best_first, best_id
for _, who in ipairs(redis.call('SMEMBERS', WAITING)) do
  if allowed[string.match(who, '^([^|]*)|')] then
    local head = redis.call('ZRANGE', P..':user:'..who, 0, 0)[1]
    if head then
      local first, seq = tonumber(head), tonumber(redis.call('HGET', TURNS, who) or '0')
      if best == nil or seq < best_seq or (seq == best_seq and first < best_first) then
        best, best_seq, best_first, best_id = who, seq, first, head
      end
    end
  end
end
if best == nil then return {reaped} end
local id = best_id
leave_line(id, best)
local k = job_key(id)
local attempts = redis.call('HINCRBY', k, 'attempts', 1)
redis.call('HSET', k, 'status', 'running', 'started_at', now / 1000,
           'token', ARGV[3]..'#'..attempts)
redis.call('ZADD', RUNNING, now + tonumber(ARGV[2]), id)
redis.call('HSET', TURNS, best, redis.call('INCR', P..':turn_seq'))
return {reaped, id, redis.call('HGETALL', k)}

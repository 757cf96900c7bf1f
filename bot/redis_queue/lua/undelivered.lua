-- ARGV: prefix, lease ms, platforms... Takes the delivery lease of every finished, undelivered
-- job of these platforms whose lease ran out (its finisher died before delivering it).
local now = now_ms()
local allowed = {}
for i = 3, #ARGV do allowed[ARGV[i]] = true end
local taken = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P..':undelivered', '-inf', now)) do
  local platform = redis.call('HGET', job_key(id), 'platform')
  if not platform then
    redis.call('ZREM', P..':undelivered', id)
  elseif allowed[platform] then
    redis.call('ZADD', P..':undelivered', now + tonumber(ARGV[2]), id)
    taken[#taken + 1] = id
  end
end
return taken

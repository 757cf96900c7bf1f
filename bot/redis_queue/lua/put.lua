-- ARGV: prefix, platform, idempotency key, user, message id, max pending, max per user,
-- then the job's field/value pairs.
local platform, idem, user, message = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local idem_key = P..':idem:'..platform..':'..idem
local existing = redis.call('GET', idem_key)
if existing then return {'duplicate', existing} end
local pending = redis.call('ZCARD', PENDING)
if pending >= tonumber(ARGV[6]) then return {'full', pending} end
local who = platform..'|'..user
local line = P..':user:'..who
local mine = redis.call('ZCARD', line)
if mine >= tonumber(ARGV[7]) then return {'mine', mine} end
local id = redis.call('INCR', P..':seq')
local k = job_key(id)
redis.call('HSET', k, unpack(ARGV, 8))
redis.call('HSET', k, 'status', 'pending', 'created_at', now_ms() / 1000, 'attempts', 0)
redis.call('SET', idem_key, id)
redis.call('ZADD', PENDING, id, id)
redis.call('ZADD', line, id, id)
redis.call('SADD', WAITING, who)
redis.call('ZADD', P..':active:'..who, id, id)
if message ~= '' then redis.call('ZADD', P..':msg:'..platform..'|'..message, id, id) end
-- Its place in the fair order: this is the user's turn-th job; users ahead in the rotation get
-- up to turn jobs in before it, users behind up to turn - 1.
local turn = mine + 1
local my_seq = tonumber(redis.call('HGET', TURNS, who) or '0')
local my_first = tonumber(redis.call('ZRANGE', line, 0, 0)[1])
local position = turn
for _, other in ipairs(redis.call('SMEMBERS', WAITING)) do
  if other ~= who then
    local other_line = P..':user:'..other
    local first = tonumber(redis.call('ZRANGE', other_line, 0, 0)[1])
    if first then
      local n = redis.call('ZCARD', other_line)
      local seq = tonumber(redis.call('HGET', TURNS, other) or '0')
      if seq < my_seq or (seq == my_seq and first < my_first) then
        position = position + math.min(n, turn)
      else
        position = position + math.min(n, turn - 1)
      end
    end
  end
end
redis.call('PUBLISH', P..':work', 'new')
return {'ok', id, position, redis.call('ZCARD', RUNNING), redis.call('HGET', k, 'created_at')}

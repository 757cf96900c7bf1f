local P = ARGV[1]
local RUNNING, PENDING, WAITING, TURNS = P..':running', P..':pending', P..':waiting', P..':turns'

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function job_key(id) return P..':job:'..id end

local function requester(id)
  local f = redis.call('HMGET', job_key(id), 'platform', 'user')
  return f[1]..'|'..f[2]
end

local function leave_line(id, who)
  redis.call('ZREM', PENDING, id)
  local line = P..':user:'..who
  redis.call('ZREM', line, id)
  if redis.call('ZCARD', line) == 0 then redis.call('SREM', WAITING, who) end
end

local function back_in_line(id)
  local who = requester(id)
  redis.call('HSET', job_key(id), 'status', 'pending')
  redis.call('HDEL', job_key(id), 'started_at', 'token')
  redis.call('ZREM', RUNNING, id)
  redis.call('ZADD', PENDING, id, id)
  redis.call('ZADD', P..':user:'..who, id, id)
  redis.call('SADD', WAITING, who)
end

local function reap(now)
  local expired = redis.call('ZRANGEBYSCORE', RUNNING, '-inf', now)
  for _, id in ipairs(expired) do
    redis.call('HINCRBY', job_key(id), 'crashes', 1)  -- its process died with it
    back_in_line(id)
  end
  if #expired > 0 then redis.call('PUBLISH', P..':work', 'requeued') end
  return expired
end

local function finish(id, status, result, err, now, retention_s, lease_ms)
  local k = job_key(id)
  local f = redis.call('HMGET', k, 'platform', 'user', 'kind', 'started_at', 'message_id',
                       'idempotency_key')
  redis.call('HSET', k, 'status', status, 'finished_at', now / 1000, 'result', result,
             'error', err)
  redis.call('HDEL', k, 'attachment', 'token')
  redis.call('ZREM', RUNNING, id)
  redis.call('ZREM', P..':active:'..f[1]..'|'..f[2], id)
  redis.call('ZADD', P..':undelivered', now + lease_ms, id)
  if status == 'done' and f[3] == 'question' and f[4] then
    redis.call('LPUSH', P..':durations', now / 1000 - tonumber(f[4]))
    redis.call('LTRIM', P..':durations', 0, 199)
  end
  redis.call('EXPIRE', k, retention_s)
  redis.call('EXPIRE', P..':idem:'..f[1]..':'..f[6], retention_s)
  if f[5] ~= '' then redis.call('EXPIRE', P..':msg:'..f[1]..'|'..f[5], retention_s) end
end

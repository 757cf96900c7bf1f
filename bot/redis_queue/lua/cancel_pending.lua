-- ARGV: prefix, id, result, error, retention s, delivery lease ms
local id = ARGV[2]
local f = redis.call('HMGET', job_key(id), 'status', 'platform', 'user')
if f[1] ~= 'pending' then return 0 end
leave_line(id, f[2]..'|'..f[3])
finish(id, 'cancelled', ARGV[3], ARGV[4], now_ms(), tonumber(ARGV[5]), tonumber(ARGV[6]))
return 1

-- ARGV: prefix, id, token, status, result, error, retention s, delivery lease ms
local id = ARGV[2]
local f = redis.call('HMGET', job_key(id), 'status', 'token')
if f[1] ~= 'running' or f[2] ~= ARGV[3] then return 0 end
finish(id, ARGV[4], ARGV[5], ARGV[6], now_ms(), tonumber(ARGV[7]), tonumber(ARGV[8]))
return 1

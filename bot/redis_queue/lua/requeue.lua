-- ARGV: prefix, id, token, 1 if the attempt ended in a crash
local f = redis.call('HMGET', job_key(ARGV[2]), 'status', 'token')
if f[1] ~= 'running' or f[2] ~= ARGV[3] then return 0 end
if ARGV[4] == '1' then redis.call('HINCRBY', job_key(ARGV[2]), 'crashes', 1) end
back_in_line(ARGV[2])
redis.call('PUBLISH', P..':work', 'requeued')
return 1

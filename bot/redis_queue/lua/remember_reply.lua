-- ARGV: prefix, id, then key, value pairs. The adapter's additions to `reply_to` (such as the
-- status message it posted) are kept in their own field, `reply_patch`, merged over `reply_to` when
-- the job is read: its values are strings, which cjson round-trips exactly (it would round the
-- floats `reply_to` may hold to 14 digits). A job that is gone is not recreated.
local k = job_key(ARGV[2])
if redis.call('EXISTS', k) == 0 then return 0 end
local raw = redis.call('HGET', k, 'reply_patch')
local patch = {}
if raw then patch = cjson.decode(raw) end
for i = 3, #ARGV, 2 do patch[ARGV[i]] = ARGV[i + 1] end
redis.call('HSET', k, 'reply_patch', cjson.encode(patch))
return 1

-- ARGV: prefix, id
redis.call('ZREM', P..':undelivered', ARGV[2])
if redis.call('EXISTS', job_key(ARGV[2])) == 1 then
  redis.call('HSET', job_key(ARGV[2]), 'delivered_at', now_ms() / 1000)
end
return 1

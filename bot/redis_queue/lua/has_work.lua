-- ARGV: prefix. 1 if a claim could find something: a pending job, or a running one timed out.
if redis.call('ZCARD', PENDING) > 0 then return 1 end
if #redis.call('ZRANGEBYSCORE', RUNNING, '-inf', now_ms(), 'LIMIT', 0, 1) > 0 then return 1 end
return 0

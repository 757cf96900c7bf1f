-- ARGV: prefix, lowest allowed last id
local floor = tonumber(ARGV[2])
local current = tonumber(redis.call('GET', P..':seq') or '0')
if current < floor then redis.call('SET', P..':seq', floor) end
return math.max(current, floor)

-- held_since: the delivery tags in kombu's table of taken, unacked messages that have been there for ARGV[1] seconds
-- or more by Redis's own clock (TIME). kombu scores each tag with the taking worker's clock (another machine's), so
-- the first time a sweep sees a tag it is noted in KEYS[2] with Redis's time, and its age counts from then. Tags
-- that left the table are forgotten there; KEYS[2] expires ARGV[2] seconds after the last sweep (nothing of it is
-- left behind when sweeps stop).
-- KEYS: 1 kombu's unacked index (zset of tags; httpov.broker names it), 2 tags seen (zset tag -> first seen at).
-- ARGV: 1 seconds, 2 the expiry of KEYS[2] in seconds. Answers the tags.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for _, tag in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if not redis.call('ZSCORE', KEYS[1], tag) then redis.call('ZREM', KEYS[2], tag) end
end
local out = {}
for _, tag in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  redis.call('ZADD', KEYS[2], 'NX', now, tag)
  if tonumber(redis.call('ZSCORE', KEYS[2], tag)) <= now - tonumber(ARGV[1]) then out[#out + 1] = tag end
end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], math.ceil(tonumber(ARGV[2]) * 1000)) end
return out

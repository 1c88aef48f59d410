-- idle_in_window: the batches in a job's window for ARGV[1] seconds or more by Redis's own clock (TIME; top_up.lua
-- stamps the window with it too) that are neither running, done nor parked: sent, yet no render node has them.
-- KEYS: 1 window, 2 running, 3 done, 4 parked. ARGV: 1 seconds. Answers the batch ids.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
for _, batch in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], 0, now - tonumber(ARGV[1]))) do
  if redis.call('HEXISTS', KEYS[2], batch) == 0 and redis.call('HEXISTS', KEYS[3], batch) == 0
      and redis.call('SISMEMBER', KEYS[4], batch) == 0 then
    out[#out + 1] = batch
  end
end
return out

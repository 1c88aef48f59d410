-- unsent: the unsent sweep's verdict on idle batches of a job's window (idle_in_window.lua), once the sweep has
-- looked for their messages in the queues and in kombu's unacked table. A message is out of sight for a moment while
-- a worker moves it from a queue to that table (a round trip or more on a slow link), and a batch may have started
-- and ended since it was found idle; so a batch is taken for unsent only when it is idle now and was out of sight at
-- two looks at least ARGV[1] seconds apart by Redis's clock (TIME): the first look notes it in KEYS[5], a later one
-- confirms it. A batch seen, running, done, parked or out of the window meanwhile is forgotten there; a note older
-- than ARGV[2] seconds (from an earlier episode) counts as a first look again. KEYS[5] expires after ARGV[2] seconds
-- (it is deleted with its job too). A confirmed batch is stamped anew in the window (it is sent now) and answered.
-- KEYS: 1 window, 2 running, 3 done, 4 parked, 5 the job's batches out of sight (hash batch -> first missed at).
-- ARGV: 1 seconds, 2 the oldest note that counts, then pairs: batch id, '1' if its message was seen else '0'.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
for i = 3, #ARGV, 2 do
  local batch, seen = ARGV[i], ARGV[i + 1] == '1'
  local idle = redis.call('ZSCORE', KEYS[1], batch) and redis.call('HEXISTS', KEYS[2], batch) == 0
    and redis.call('HEXISTS', KEYS[3], batch) == 0 and redis.call('SISMEMBER', KEYS[4], batch) == 0
  local since = tonumber(redis.call('HGET', KEYS[5], batch))
  if seen or not idle then
    if since then redis.call('HDEL', KEYS[5], batch) end
  elseif not since or now - since > tonumber(ARGV[2]) then
    redis.call('HSET', KEYS[5], batch, now)
  elseif now - since >= tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[5], batch)
    redis.call('ZADD', KEYS[1], 'XX', now, batch)
    out[#out + 1] = batch
  end
end
if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('PEXPIRE', KEYS[5], math.ceil(tonumber(ARGV[2]) * 1000)) end
return out

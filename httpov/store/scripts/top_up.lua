-- top_up: move batches from the front of a live job's pending list into its window (sent, not yet done or parked)
-- until the window holds ARGV[1] batches, or the job's --max-processes if lower; answers the job's queue followed by
-- the batches the caller must now send. Atomic: two render nodes topping up the same job never over-fill it.
-- Each batch is stamped with Redis's own clock (TIME), never a client's: the unsent sweep reads the stamps against
-- Redis's clock too (idle_in_window.lua), so no client's clock or slow link makes a batch look old.
-- KEYS: 1 job record, 2 pending, 3 window, 4 done. ARGV: 1 window size.
local job, pending, window, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local state = redis.call('HGET', job, 'state')
if state ~= 'submitting' and state ~= 'queued' and state ~= 'running' then return {} end
local limit = tonumber(ARGV[1])
local cap = tonumber(redis.call('HGET', job, 'max_processes') or '0') or 0
if cap > 0 and cap < limit then limit = cap end
local n = redis.call('ZCARD', window)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {redis.call('HGET', job, 'queue') or ''}
while n < limit do
  local batch = redis.call('LPOP', pending)
  if not batch then break end
  if redis.call('HEXISTS', done, batch) == 0 and not redis.call('ZSCORE', window, batch) then
    redis.call('ZADD', window, now, batch)
    n = n + 1
    out[#out + 1] = batch
  end
end
return out

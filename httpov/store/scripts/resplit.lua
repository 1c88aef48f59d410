-- resplit: a running slice gives the rows past ARGV[3] to a new slice ARGV[4], atomically: only while its job is live,
-- nothing of the job waits to be sent (its pending list empty, every batch in its window started), the slice runs, is
-- neither done nor stitched in, was not cut before, and the job's window (ARGV[6]: its share of the farm's render
-- processes, httpov.dispatch.windows) has room for one more batch. The cut is recorded (KEYS[4]: the slice now ends there), the
-- new slice joins the job's batches (its spec, its total) and the front of its pending list, the history says so,
-- and the job id is published on the stops channel: the slice's lease holder wakes, reads its cut and continues
-- povray (+C) only up to it. Answers 'ok' or why not.
-- KEYS: 1 job record, 2 running, 3 done, 4 cuts, 5 pending, 6 window, 7 the frame's done slices, 8 history,
-- 9 the stops channel. ARGV: 1 job id, 2 the slice, 3 its new last row, 4 the new slice, 5 the history line (JSON),
-- 6 the job's window.
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then return 'not live' end
if redis.call('LLEN', KEYS[5]) > 0 then return 'pending' end
if redis.call('ZCARD', KEYS[6]) > redis.call('HLEN', KEYS[2]) then return 'queued' end
if redis.call('ZCARD', KEYS[6]) >= tonumber(ARGV[6]) then return 'no room' end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return 'not running' end
if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 or redis.call('SISMEMBER', KEYS[7], ARGV[2]) == 1 then
  return 'done'
end
if redis.call('HEXISTS', KEYS[4], ARGV[2]) == 1 then return 'cut' end
local spec = redis.call('HGET', KEYS[1], 'spec')
local mark = '"batches": ['
local at = string.find(spec, mark, 1, true)
if not at or not string.find(spec, '"' .. ARGV[2] .. '"', 1, true) then return 'not planned' end
if string.find(spec, '"' .. ARGV[4] .. '"', 1, true) then return 'exists' end
local open = at + string.len(mark) - 1
redis.call('HSET', KEYS[1], 'spec', string.sub(spec, 1, open) .. '"' .. ARGV[4] .. '", ' .. string.sub(spec, open + 1))
redis.call('HINCRBY', KEYS[1], 'total', 1)
redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
redis.call('LPUSH', KEYS[5], ARGV[4])
redis.call('RPUSH', KEYS[8], ARGV[5])
redis.call('PUBLISH', KEYS[9], ARGV[1])
return 'ok'

-- finish_batch: record a batch done by the execution holding token ARGV[2], only while that execution still owns the
-- batch (the fence): its lease holds the token, or the lease ran out with no one else taking the batch (the running
-- entry still names the token), or the job finished meanwhile (cancelled, failed: it forgot its running batches)
-- and the batch is not done. An execution whose lease was taken over (its node frozen past it, then woken; or the
-- batch rendered again by `retry --frames`) records nothing: 'lost', and its zip is not the batch's result. A done
-- record naming this execution's result already (this call retried after a lost reply) answers as a first call.
-- A recorded batch is also counted in its node's batches of the last hour (`httpov nodes`), in the same round trip.
-- A render node's record also tops the job's window up (as top_up.lua, same round trip) and says whether any job
-- waits for others (httpov.after), so the node settles them only then: on a slow link each call costs a round trip.
-- KEYS: 1 job record, 2 the batch's lease, 3 running, 4 done, 5 frames, 6 failed, 7 window, 8 the node's batches
-- (zset; JobStore.count_batch's), 9 the farm's metrics (hash: counters httpov.metrics reads), 10 pending, 11 the
-- dependent jobs (set).
-- ARGV: 1 batch id, 2 token, 3 DoneInfo (JSON), 4 its result name, 5 finished states (' a b '), 6 'check' (only say
-- whether the batch is still ours: {'ours'}, writing nothing) or 'record', 7 the node's count entry ('' for none),
-- 8 now, 9 seconds the count is kept, 10 povray's seconds, 11 its histogram bucket's field, 12 the bytes of its
-- zip, 13 the job's window to top up to ('': no top-up), 14.. frames done (a sliced frame's once stitched; the
-- metrics count each frame newly done).
-- Answers {'missing'}, {'lost'}, {'ours'} or {'ok', batches done, total, dependent jobs, and with a top-up asked of
-- a live job: its queue, then the batches moved into its window that the caller must now send}.
-- the record's fields this script reads, in one call (none of them is written below)
local record = redis.call('HMGET', KEYS[1], 'state', 'total', 'max_processes', 'queue', 'waiting')
local state = record[1]
if not state then return {'missing'} end
local batch, token = ARGV[1], ARGV[2]
local function field(raw, name)
  local ok, value = pcall(cjson.decode, raw)
  if ok and type(value) == 'table' then return value[name] end
  return nil
end
local done = redis.call('HGET', KEYS[4], batch)
local function answer()
  local out = {'ok', redis.call('HLEN', KEYS[4]), record[2], redis.call('SCARD', KEYS[11])}
  if ARGV[13] == '' or (state ~= 'submitting' and state ~= 'queued' and state ~= 'running') then return out end
  local limit = tonumber(ARGV[13])  -- the top-up, as top_up.lua
  local cap = tonumber(record[3] or '0') or 0
  if cap > 0 and cap < limit then limit = cap end
  local n = redis.call('ZCARD', KEYS[7])
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  out[#out + 1] = record[4] or ''
  while n < limit do
    local next = redis.call('LPOP', KEYS[10])
    if not next then break end
    if redis.call('HEXISTS', KEYS[4], next) == 0 and not redis.call('ZSCORE', KEYS[7], next) then
      redis.call('ZADD', KEYS[7], now, next)
      n = n + 1
      out[#out + 1] = next
    end
  end
  return out
end
if done and field(done, 'result') == ARGV[4] then return answer() end
if done then return {'lost'} end
local lease = redis.call('GET', KEYS[2])
local ours = lease == token
if not lease then
  local running = redis.call('HGET', KEYS[3], batch)
  if running then
    ours = field(running, 'token') == token
  else
    ours = string.find(ARGV[5], ' ' .. state .. ' ', 1, true) ~= nil
  end
end
if not ours then return {'lost'} end
if ARGV[6] == 'check' then return {'ours'} end
redis.call('HSET', KEYS[4], batch, ARGV[3])
local added = 0
for i = 14, #ARGV do added = added + redis.call('SADD', KEYS[5], ARGV[i]) end
redis.call('HDEL', KEYS[3], batch)
redis.call('HDEL', KEYS[6], batch)
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[7], batch)
if record[5] then redis.call('HDEL', KEYS[1], 'waiting') end  -- a batch was stored: the farm's storage is back
redis.call('HINCRBY', KEYS[1], 'stored_bytes', ARGV[12])
redis.call('HINCRBY', KEYS[9], 'frames', added)
redis.call('HINCRBYFLOAT', KEYS[9], 'seconds', ARGV[10])
redis.call('HINCRBY', KEYS[9], ARGV[11], 1)
if ARGV[7] ~= '' then
  local now, keep = tonumber(ARGV[8]), tonumber(ARGV[9])
  redis.call('ZADD', KEYS[8], now, ARGV[7])
  redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', now - keep)
  redis.call('EXPIRE', KEYS[8], math.floor(keep) + 60)
end
return answer()

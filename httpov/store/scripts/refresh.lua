-- refresh: extend our lease if we still hold it; answer the job's state so the task can stop on cancel (a finished
-- job's leases are gone with its running batches: its state, not 'lost', says why). With ARGV[4], the share of the
-- batch povray rendered so far is written into its running info (KEYS[3] field ARGV[3]), riding the same round trip.
-- KEYS: 1 job record, 2 the batch's lease, 3 the job's running hash. ARGV: 1 token, 2 lease seconds, 3 batch id,
-- 4 progress ('' for none).
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], math.floor(tonumber(ARGV[2]) * 1000))
  if ARGV[4] and ARGV[4] ~= '' and KEYS[3] then
    local raw = redis.call('HGET', KEYS[3], ARGV[3])
    if raw then
      local ok, info = pcall(cjson.decode, raw)
      if ok and type(info) == 'table' then
        info['progress'] = tonumber(ARGV[4])
        redis.call('HSET', KEYS[3], ARGV[3], cjson.encode(info))
      end
    end
  end
  return state
end
if state == 'queued' or state == 'running' or state == 'paused' then return 'lost' end
return state

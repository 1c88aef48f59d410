-- refresh: extend our lease if we still hold it; answer the job's state so the task can stop on cancel (a finished
-- job's leases are gone with its running batches: its state, not 'lost', says why).
-- KEYS: 1 job record, 2 the batch's lease. ARGV: 1 token, 2 lease seconds.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], math.floor(tonumber(ARGV[2]) * 1000))
  return state
end
if state == 'queued' or state == 'running' or state == 'paused' then return 'lost' end
return state

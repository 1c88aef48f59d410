-- refresh: extend the leases we still hold; answer each job's state so the task can stop on cancel (a finished
-- job's leases are gone with its running batches: its state, not 'lost', says why). A render process renews its own
-- lease with one entry; a render node renews every running batch of its processes with one call (httpov.worker.
-- renewal: one round trip a node per period, not one per process). With a progress, the share of the batch povray
-- rendered so far is written into its running info, riding the same round trip.
-- KEYS: 3 an entry: the job record, the batch's lease, the job's running hash. ARGV: 1 lease seconds, then 3 an
-- entry: the token, the batch id, the progress ('' for none). Answers each entry's state, 'lost' or 'missing'.
local ms = math.floor(tonumber(ARGV[1]) * 1000)
local out = {}
for i = 0, #KEYS / 3 - 1 do
  local job, lease, running = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local token, batch, progress = ARGV[3 * i + 2], ARGV[3 * i + 3], ARGV[3 * i + 4]
  local state = redis.call('HGET', job, 'state')
  if not state then
    state = 'missing'
  elseif redis.call('GET', lease) == token then
    redis.call('PEXPIRE', lease, ms)
    if progress ~= '' then
      local raw = redis.call('HGET', running, batch)
      if raw then
        local ok, info = pcall(cjson.decode, raw)
        if ok and type(info) == 'table' then
          info['progress'] = tonumber(progress)
          redis.call('HSET', running, batch, cjson.encode(info))
        end
      end
    end
  elseif state == 'queued' or state == 'running' or state == 'paused' then
    state = 'lost'
  end
  out[#out + 1] = state
end
return out

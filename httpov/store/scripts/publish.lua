-- publish: a job whose batches are all queued becomes visible (listed, swept); 'submitting' becomes 'running' if a
-- batch started meanwhile, else 'queued'; a job that waits for other jobs (its record's `after`, submit --after)
-- becomes 'waiting' and stays out of the active set until httpov.after releases it. Answers the state the job was in.
-- A job that a batch started meanwhile has its 'started' event here (start_batch left it 'submitting').
-- KEYS: 1 job record, 2 the job list, 3 the active set, 4 submit lease, 5 the events stream.
-- ARGV: 1 job id, 2 states (' a b ') publish moves on (httpov.states.JOB_MOVES), 3 the finished states, 4 the events
-- stream's cap.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
redis.call('ZADD', KEYS[2], redis.call('HGET', KEYS[1], 'created'), ARGV[1])
if string.find(ARGV[2], ' ' .. state .. ' ', 1, true) then
  local next = redis.call('HEXISTS', KEYS[1], 'started') == 1 and 'running' or 'queued'
  if (redis.call('HGET', KEYS[1], 'after') or '') ~= '' then next = 'waiting' end
  redis.call('HSET', KEYS[1], 'state', next)
  if next == 'running' then
    local record = redis.call('HMGET', KEYS[1], 'user', 'notify')
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[4], '*', 'kind', 'started', 'job', ARGV[1], 'owner',
               record[1] or '', 'detail', '', 'notify', record[2] or '')
  end
  if next == 'waiting' then
    redis.call('DEL', KEYS[4])
    return state
  end
end
if not string.find(ARGV[3], ' ' .. state .. ' ', 1, true) then redis.call('SADD', KEYS[3], ARGV[1]) end
redis.call('DEL', KEYS[4])
return state

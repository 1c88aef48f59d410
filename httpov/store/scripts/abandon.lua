-- abandon: an interrupted submit fails its job, unless it got further than 'submitting'; its keys expire later.
-- The failure is a job event ('failed', in the events stream KEYS[3], capped at ARGV[6] entries, job id ARGV[5]).
-- KEYS: 1 job record, 2 submit lease, 3 the events stream, 4.. the job's other keys (expire after ARGV[3] seconds).
-- ARGV: 1 now, 2 the error, 3 seconds to keep the keys, 4 states (' a b ') from which the job fails, 5 the job id,
-- 6 the events stream's cap.
-- Answers 'ok', 'missing', or the state of a job left alone.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if not string.find(ARGV[4], ' ' .. state .. ' ', 1, true) then return state end
redis.call('HSET', KEYS[1], 'state', 'failed', 'finished', ARGV[1], 'error', ARGV[2])
redis.call('DEL', KEYS[2])
local record = redis.call('HMGET', KEYS[1], 'user', 'notify')
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', 'kind', 'failed', 'job', ARGV[5], 'owner', record[1] or '',
           'detail', ARGV[2], 'notify', record[2] or '')
for i = 1, #KEYS do
  if i ~= 2 and i ~= 3 then redis.call('EXPIRE', KEYS[i], tonumber(ARGV[3])) end
end
return 'ok'

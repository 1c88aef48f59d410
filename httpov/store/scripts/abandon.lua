-- abandon: an interrupted submit fails its job, unless it got further than 'submitting'; its keys expire later.
-- KEYS: 1 job record, 2 submit lease, 3.. the job's other keys (expire after ARGV[3] seconds).
-- ARGV: 1 now, 2 the error, 3 seconds to keep the keys, 4 states (' a b ') from which the job fails.
-- Answers 'ok', 'missing', or the state of a job left alone.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if not string.find(ARGV[4], ' ' .. state .. ' ', 1, true) then return state end
redis.call('HSET', KEYS[1], 'state', 'failed', 'finished', ARGV[1], 'error', ARGV[2])
redis.call('DEL', KEYS[2])
for i = 1, #KEYS do
  if i ~= 2 then redis.call('EXPIRE', KEYS[i], tonumber(ARGV[3])) end
end
return 'ok'

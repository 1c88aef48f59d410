-- release: pend batches a dependent job held back (httpov.after). ARGV[1] 'job': a job in state 'waiting' becomes
-- 'queued' and active, every batch ARGV[3..] pended (a job in another state is left alone: cancelled meanwhile);
-- 'frames': each batch ARGV[3..] still held is pended (a batch released twice is pended once). ARGV[2] '1': the
-- job depends on nothing more (dropped from the dependent set).
-- KEYS: 1 job record, 2 pending, 3 held, 4 the active set, 5 the dependent set. ARGV: 1 mode, 2 last, 3.. job id
-- then batches. Answers 'ok', 'missing', or the state of a job that was not waiting.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  redis.call('SREM', KEYS[5], ARGV[3])
  return 'missing'
end
if ARGV[1] == 'job' then
  if state ~= 'waiting' then return state end
  redis.call('HSET', KEYS[1], 'state', 'queued')
  redis.call('SADD', KEYS[4], ARGV[3])
  for i = 4, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
else
  for i = 4, #ARGV do
    if redis.call('SREM', KEYS[3], ARGV[i]) == 1 then redis.call('RPUSH', KEYS[2], ARGV[i]) end
  end
end
if ARGV[2] == '1' then redis.call('SREM', KEYS[5], ARGV[3]) end
return 'ok'

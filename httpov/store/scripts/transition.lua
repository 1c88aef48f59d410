-- transition: move a job (id ARGV[4]) to state ARGV[1] only from one of the states ARGV[7..] (httpov.states.JOB_MOVES),
-- in the same step taking a finished job out of the active set (ARGV[2] 'finish', at time ARGV[3]) or putting a live
-- one in (ARGV[2] 'live'). A job that leaves or enters its finished states (ARGV[6], ' a b ') also forgets its
-- running batches and their leases (ARGV[5] .. batch): no stale 'running' entry outlives a failed or cancelled job,
-- and `retry` starts with none for the sweepers to requeue, nor a stale 'waiting for storage' note. A job reopened
-- by `retry` notes when: older messages of its batches are stale. A job that moves to a finished state is announced
-- on the stops channel (KEYS[4], the job id): render nodes rendering its batches stop their povrays at once.
-- The move is recorded as a job event (KEYS[5], capped at ARGV[7] entries): done, failed, cancelled, paused, resumed
-- (paused -> running), retried (finished -> running), deleted (the first move to deleting); in this step, so once.
-- The event's detail is ARGV[8] (a final failure's batch and error), else a failed job's `error`.
-- KEYS: 1 job record, 2 the active set, 3 running, 4 the stops channel, 5 the events stream. ARGV[9..]: the states
-- the job may move from. Answers 'ok', 'missing', or the state the job stays in.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
local function finished(s) return string.find(ARGV[6], ' ' .. s .. ' ', 1, true) ~= nil end
local function event(kind)
  local record = redis.call('HMGET', KEYS[1], 'user', 'notify', 'error')
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[7], '*', 'kind', kind, 'job', ARGV[4], 'owner', record[1] or '',
             'detail', (ARGV[8] ~= '' and ARGV[8]) or (kind == 'failed' and record[3]) or '', 'notify', record[2] or '')
end
for i = 9, #ARGV do
  if state == ARGV[i] then
    redis.call('HSET', KEYS[1], 'state', ARGV[1])
    if ARGV[2] == 'finish' then
      redis.call('HSET', KEYS[1], 'finished', ARGV[3])
      redis.call('SREM', KEYS[2], ARGV[4])
    elseif ARGV[2] == 'live' then  -- live again (retry): its clock runs again
      redis.call('SADD', KEYS[2], ARGV[4])
      redis.call('HDEL', KEYS[1], 'finished')
    end
    if finished(state) then redis.call('HSET', KEYS[1], 'reopened', ARGV[3]) end
    if finished(ARGV[1]) or finished(state) then
      for _, batch in ipairs(redis.call('HKEYS', KEYS[3])) do
        redis.call('DEL', ARGV[5] .. batch)
      end
      redis.call('DEL', KEYS[3])
      redis.call('HDEL', KEYS[1], 'waiting')  -- no job waits for storage once it ends, nor when it starts again
    end
    if finished(ARGV[1]) then redis.call('PUBLISH', KEYS[4], ARGV[4]) end
    local new = ARGV[1]
    if new == 'running' then new = (state == 'paused' and 'resumed') or (finished(state) and 'retried') or '' end
    if new == 'deleting' then new = (state ~= 'deleting' and 'deleted') or '' end
    if new ~= '' and new ~= state then event(new) end
    return 'ok'
  end
end
return state

-- start_batch: refuse a batch that is done, or whose lease another execution holds; else take the lease.
-- A paused job's batch is parked here, in the same step, so a resume can never miss it. The lease may also be
-- held by this task's own retry hand-off ('retry:<task id>'), which the retry takes over.
-- KEYS: 1 job record, 2 the batch's lease, 3 running, 4 done, 5 parked, 6 submit lease, 7 pending, 8 window,
-- 9 the per-user limits (hash), 10 the active jobs (set), 11 the job's blocked nodes (set), 12 attempts (hash),
-- 13 the events stream (the job's first start is its 'started' event; a dead submit's failure its 'failed'), 14 the
-- job's checkpoints (hash).
-- ARGV: 1 batch id, 2 the execution's token, 3 lease seconds, 4 running info (JSON), 5 now, 6 the hand-off the
-- lease may hold, 7 the value the lease is set to (the token, or the hand-off when a blocked node gives the batch
-- back), 8 the error of a job whose submit stopped, 9 states (' a b ') from which such a job fails, 10 states from
-- which the first start makes the job 'running' (both from httpov.states.JOB_MOVES), 11 the farm's default max
-- processes per user (HTTPOV_USER_MAX_PROCESSES), 12 and 13 a job's record and running keys with '{job}' for its id,
-- 14 the node, refused ('blocked') if it is in KEYS[11] ('': not asked), 15 '1' to count the attempt in KEYS[12] (one
-- round trip a batch where there were three: on a slow link each costs the link's round trip), 16 the node's povray
-- version to pin the job to ('' for none): the first node's is kept, and a node with another is refused
-- ('povray:<the job's version>', nothing taken), 17 the events stream's cap, 18 the job id.
-- Answers 'ok' ('ok:<attempts>' when counted, 'ok:<attempts>:checkpoint' when a checkpoint of the batch is saved
-- too: the render node reads it only then), 'missing', 'failed', 'paused' (then parked), 'duplicate', 'busy',
-- 'deferred', 'blocked', 'povray:<version>' or the job's state.
local job, lease, running, done, parked, submit = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local pending, window, limits, active = KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local batch, token, ttl, info, handoff, value = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[6], ARGV[7]
-- the record's fields this script reads, in one call (none of them is written below before it is read)
local fields = redis.call('HMGET', job, 'state', 'max_processes', 'max_nodes', 'user', 'povray')
local state = fields[1]
if not state then return 'missing' end
local function event(kind, detail)
  local record = redis.call('HMGET', job, 'user', 'notify')
  redis.call('XADD', KEYS[13], 'MAXLEN', '~', ARGV[17], '*', 'kind', kind, 'job', ARGV[18],
             'owner', record[1] or '', 'detail', detail, 'notify', record[2] or '')
end
local function among(words, s) return string.find(words, ' ' .. s .. ' ', 1, true) ~= nil end
if state == 'submitting' then
  if redis.call('EXISTS', submit) == 0 and among(ARGV[9], state) then  -- its client died mid-submit: it never ends
    redis.call('HSET', job, 'state', 'failed', 'finished', ARGV[5], 'error', ARGV[8])
    event('failed', ARGV[8])
    return 'failed'
  end
  redis.call('HSETNX', job, 'started', ARGV[5])
end
if state == 'paused' then
  redis.call('SADD', parked, batch)
  redis.call('ZREM', window, batch)
  return 'paused'
end
if state ~= 'queued' and state ~= 'running' and state ~= 'submitting' then return state end
if redis.call('HEXISTS', done, batch) == 1 then return 'duplicate' end
if ARGV[14] ~= '' and redis.call('SISMEMBER', KEYS[11], ARGV[14]) == 1 then return 'blocked' end
if ARGV[16] and ARGV[16] ~= '' then
  local pinned = fields[5]
  if not pinned then
    redis.call('HSET', job, 'povray', ARGV[16])
    pinned = ARGV[16]
  end
  if pinned ~= ARGV[16] then return 'povray:' .. pinned end
end
local holder = redis.call('GET', lease)
if holder and holder ~= token and holder ~= handoff then return 'busy' end
-- --max-processes: the job already runs as many batches as it may; --max-nodes: a node that renders none of the
-- job's batches takes one only while fewer nodes do. Either way the batch goes back to the front of its pending
-- list, sent again by a top-up when one of the running batches ends.
if not holder and redis.call('HEXISTS', running, batch) == 0 then
  local cap = tonumber(fields[2] or '0') or 0
  local deferred = cap > 0 and redis.call('HLEN', running) >= cap
  local node_cap = tonumber(fields[3] or '0') or 0
  if not deferred and node_cap > 0 then
    local me, seen, count, here = cjson.decode(info)['node'], {}, 0, false
    for _, raw in ipairs(redis.call('HVALS', running)) do
      local ok, record = pcall(cjson.decode, raw)
      local other = ok and record['node'] or ''
      if other == me then here = true end
      if not seen[other] then seen[other] = true; count = count + 1 end
    end
    deferred = not here and count >= node_cap
  end
  -- The owner's max processes (httpov.user_limits: their entry, else '*', else the farm's setting), over all of
  -- their jobs. Counted here, in the step that adds the running entry, so that no two starts can both pass: exact.
  -- It reads the running hashes of the active jobs the owner has: a few commands per active job, only for a user
  -- with a cap. (A per-user running counter would be O(1) but must be kept by every script and command that
  -- removes a running entry -- finish, fail, release, reclaim, transitions, delete -- and one missed path would
  -- leak the count and lock the user out; this needs no state of its own.)
  if not deferred then
    local user = fields[4] or ''
    local user_cap = nil
    local entries = redis.call('HMGET', limits, user, '*')
    for i = 1, 2 do
      local raw = entries[i]
      if raw and user_cap == nil then
        local ok, entry = pcall(cjson.decode, raw)
        if ok and type(entry) == 'table' and type(entry['max_processes']) == 'number' then
          user_cap = entry['max_processes']
        end
      end
    end
    user_cap = user_cap or tonumber(ARGV[11]) or 0
    if user_cap > 0 then
      local function key(template, id)
        local a, b = string.find(template, '{job}', 1, true)
        return string.sub(template, 1, a - 1) .. id .. string.sub(template, b + 1)
      end
      local count, counted = 0, false
      for _, id in ipairs(redis.call('SMEMBERS', active)) do
        local record = key(ARGV[12], id)
        if record == job then counted = true end
        if redis.call('HGET', record, 'user') == user then
          count = count + redis.call('HLEN', key(ARGV[13], id))
        end
      end
      -- a job is listed as active once its first window is queued: until then its own batches count here (another
      -- job of the user, within those few milliseconds of its submit, does not)
      if not counted then count = count + redis.call('HLEN', running) end
      deferred = count >= user_cap
    end
  end
  if deferred then
    redis.call('ZREM', window, batch)
    redis.call('LREM', pending, 0, batch)
    redis.call('LPUSH', pending, batch)
    return 'deferred'
  end
end
redis.call('SET', lease, value, 'PX', math.floor(ttl * 1000))
redis.call('HSET', running, batch, info)
if value == token and among(ARGV[10], state) then
  redis.call('HSET', job, 'state', 'running', 'started', ARGV[5])
  event('started', '')
end
if ARGV[15] == '1' then
  local saved = redis.call('HEXISTS', KEYS[14], batch) == 1 and ':checkpoint' or ''
  return 'ok:' .. redis.call('HINCRBY', KEYS[12], batch, 1) .. saved
end
return 'ok'

-- fair_share: what httpov.dispatch.windows reads, in one round trip (a render node tops its job up after every
-- batch: on a slow link each round trip costs the link's): the active jobs (and ARGV[3], a job not yet listed, if
-- given), each one's user, priority, created, max_processes and queue, the render nodes seen since ARGV[1] with their
-- processes and pools, and the per-user limits.
-- KEYS: 1 active jobs, 2 nodes (zset), 3 per-user limits (hash), 4 node processes (hash), 5 node pools (hash).
-- ARGV: 1 seen since (a time, as the heartbeats stamp them), 2 a job's record key with '{job}' for its id, 3 a job id
-- or ''. Answers {job ids, their fields (5 a job), node processes, node pools, limits (name, entry, ...)}.
local ids = redis.call('SMEMBERS', KEYS[1])
table.sort(ids)
if ARGV[3] ~= '' and redis.call('SISMEMBER', KEYS[1], ARGV[3]) == 0 then ids[#ids + 1] = ARGV[3] end
local a, b = string.find(ARGV[2], '{job}', 1, true)
local fields = {}
for _, id in ipairs(ids) do
  local record = string.sub(ARGV[2], 1, a - 1) .. id .. string.sub(ARGV[2], b + 1)
  local values = redis.call('HMGET', record, 'user', 'priority', 'created', 'max_processes', 'queue')
  for i = 1, 5 do
    if values[i] then fields[#fields + 1] = values[i] else fields[#fields + 1] = '' end
  end
end
local nodes = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf')
local processes, pools = {}, {}
if #nodes > 0 then
  for _, v in ipairs(redis.call('HMGET', KEYS[4], unpack(nodes))) do processes[#processes + 1] = v or '' end
  for _, v in ipairs(redis.call('HMGET', KEYS[5], unpack(nodes))) do pools[#pools + 1] = v or '' end
end
return {ids, fields, processes, pools, redis.call('HGETALL', KEYS[3])}

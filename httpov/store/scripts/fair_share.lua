-- fair_share: what httpov.dispatch.windows reads, in one round trip: the active jobs (and ARGV[3], a job being
-- submitted, if given), each one's user, priority, created, max_processes and queue, the render nodes seen since
-- ARGV[1] with their processes and pools, and the per-user limits.
-- KEYS: 1 active jobs, 2 nodes (zset), 3 per-user limits (hash), 4 node processes (hash), 5 node pools (hash).
-- ARGV: 1 seen since, 2 a job's record key with '{job}' for its id, 3 a job id or ''.
-- Answers {job ids, their fields (5 a job), node processes, node pools, limits (name, entry, ...)}.
local ids = redis.call('SMEMBERS', KEYS[1])
table.sort(ids)
if ARGV[3] ~= '' and redis.call('SISMEMBER', KEYS[1], ARGV[3]) == 0 then ids[#ids + 1] = ARGV[3] end
local a, b = string.find(ARGV[2], '{job}', 1, true)
local fields = {}
for _, id in ipairs(ids) do
  local record = string.sub(ARGV[2], 1, a - 1) .. id .. string.sub(ARGV[2], b + 1)
  for _, value in ipairs(redis.call('HMGET', record, 'user', 'priority', 'created', 'max_processes', 'queue')) do
    fields[#fields + 1] = value
  end
end
local nodes = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf')
local processes, pools = {}, {}
if #nodes > 0 then
  processes = redis.call('HMGET', KEYS[4], unpack(nodes))
  pools = redis.call('HMGET', KEYS[5], unpack(nodes))
end
return {ids, fields, processes, pools, redis.call('HGETALL', KEYS[3])}

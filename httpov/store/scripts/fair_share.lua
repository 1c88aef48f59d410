-- fair_share: what httpov.dispatch.windows reads, in one round trip (a render node tops its job up after every
-- batch: on a slow link each round trip costs the link's): the active jobs (and ARGV[3], a job not yet listed, if
-- given), each one's user, priority, created, max_processes and queue, the render processes of the render nodes seen
-- since ARGV[1] (all of them, and each pool's), and the per-user limits.
-- The render processes are summed over every live node: read once per batch, that read grew with the farm (1,250
-- nodes: 3,750 values a batch). The sums are kept in KEYS[6] for ARGV[4] ms and used while the live window is the
-- same (ARGV[5]) and as many nodes are live (ZCOUNT: a node that joins, comes back or is lost is counted at once;
-- one that changed its processes within ARGV[4] ms).
-- KEYS: 1 active jobs, 2 nodes (zset), 3 per-user limits (hash), 4 node processes (hash), 5 node pools (hash),
-- 6 the sums kept (hash).
-- ARGV: 1 seen since (a time, as the heartbeats stamp them), 2 a job's record key with '{job}' for its id, 3 a job id
-- or '', 4 how long the sums are kept (ms; 0: neither kept nor read), 5 the live window (seconds, as a string).
-- Answers {job ids, their fields (5 a job), processes of all live nodes, {pool, processes, ...}, limits (name, entry,
-- ...)}.
local ids = redis.call('SMEMBERS', KEYS[1])
table.sort(ids)
local listed = ARGV[3] == ''
for _, id in ipairs(ids) do listed = listed or id == ARGV[3] end
if not listed then ids[#ids + 1] = ARGV[3] end
local a, b = string.find(ARGV[2], '{job}', 1, true)
local fields = {}
for _, id in ipairs(ids) do
  local record = string.sub(ARGV[2], 1, a - 1) .. id .. string.sub(ARGV[2], b + 1)
  local values = redis.call('HMGET', record, 'user', 'priority', 'created', 'max_processes', 'queue')
  for i = 1, 5 do
    if values[i] then fields[#fields + 1] = values[i] else fields[#fields + 1] = '' end
  end
end
local keep = tonumber(ARGV[4])
local count = redis.call('ZCOUNT', KEYS[2], ARGV[1], '+inf')
if keep > 0 then
  local kept = redis.call('HGETALL', KEYS[6])
  local sums = {}
  for i = 1, #kept, 2 do sums[kept[i]] = kept[i + 1] end
  if sums['within'] == ARGV[5] and tonumber(sums['nodes']) == count then
    local pools = {}
    for name, n in pairs(sums) do
      if string.sub(name, 1, 5) == 'pool:' then
        pools[#pools + 1] = string.sub(name, 6)
        pools[#pools + 1] = n
      end
    end
    return {ids, fields, sums['processes'], pools, redis.call('HGETALL', KEYS[3])}
  end
end
local nodes = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf')
local total, by_pool = 0, {}
for start = 1, #nodes, 1000 do  -- (unpack takes a few thousand values at most)
  local part = {unpack(nodes, start, math.min(start + 999, #nodes))}
  local counts = redis.call('HMGET', KEYS[4], unpack(part))
  local listed = redis.call('HMGET', KEYS[5], unpack(part))
  for i = 1, #part do
    local n = tonumber(counts[i]) or 0
    total = total + n
    if listed[i] then
      for pool in string.gmatch(listed[i], '[^,]+') do by_pool[pool] = (by_pool[pool] or 0) + n end
    end
  end
end
local pools = {}
for name, n in pairs(by_pool) do
  pools[#pools + 1] = name
  pools[#pools + 1] = tostring(n)
end
if keep > 0 then
  redis.call('DEL', KEYS[6])
  redis.call('HSET', KEYS[6], 'within', ARGV[5], 'nodes', count, 'processes', total)
  for i = 1, #pools, 2 do redis.call('HSET', KEYS[6], 'pool:' .. pools[i], pools[i + 1]) end
  redis.call('PEXPIRE', KEYS[6], keep)
end
return {ids, fields, tostring(total), pools, redis.call('HGETALL', KEYS[3])}

-- stamp: a digest of what a live page shows of some jobs (httpov.web.live), read with O(1) reads a job (and the few
-- running batches): never a job's spec nor its done batches themselves. It changes when the job list, a job's record
-- (but its spec), its counts of done, failed, attempted and requeued batches, its running batches, its parked,
-- rendered and blocked counts or its history change; an ended job is read by its record alone.
-- KEYS: 1 the jobs index, then for each job: its record, done, failed, attempts, requeued, running, parked, frames,
-- blocked, history. ARGV: 1 how many record fields, then for each job '1' when it is ended, then the fields' names.
-- Answers the SHA-1 (hex) of it all.
local nfields = tonumber(ARGV[1])
local njobs = (#KEYS - 1) / 10
local fields = {}
for i = 1, nfields do fields[i] = ARGV[1 + njobs + i] end
local parts = {redis.call('ZCARD', KEYS[1])}
parts[#parts + 1] = redis.call('ZRANGE', KEYS[1], -1, -1)[1] or ''
for j = 0, njobs - 1 do
  local k = 1 + j * 10
  for _, value in ipairs(redis.call('HMGET', KEYS[k + 1], unpack(fields))) do parts[#parts + 1] = value or '' end
  if ARGV[2 + j] ~= '1' then
    for i = 2, 5 do parts[#parts + 1] = redis.call('HLEN', KEYS[k + i]) end
    for _, value in ipairs(redis.call('HGETALL', KEYS[k + 6])) do parts[#parts + 1] = value end
    parts[#parts + 1] = '|'
    for i = 7, 9 do parts[#parts + 1] = redis.call('SCARD', KEYS[k + i]) end
    parts[#parts + 1] = redis.call('LLEN', KEYS[k + 10])
  end
end
return redis.sha1hex(table.concat(parts, '\n'))

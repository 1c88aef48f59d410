-- guarded: run a job's writes (a JSON list of commands, ARGV[1]) only while its record (KEYS[1]) exists, so that a
-- job deleted, or lost with a Redis restarted empty, never comes back as stray keys without expiry; 'missing' if it
-- is gone. With ARGV[2] (' state state '), only while the job is in one of those states: 'skipped' otherwise.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if ARGV[2] ~= '' and not string.find(ARGV[2], ' ' .. state .. ' ', 1, true) then return 'skipped' end
local replies = {}
for i, command in ipairs(cjson.decode(ARGV[1])) do
  replies[i] = redis.call(unpack(command))
end
return replies

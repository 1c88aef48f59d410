-- park_pending: a paused job's batches not yet sent are set aside with those parked as they came up (while paused).
-- KEYS: 1 job record, 2 pending, 3 parked. Answers how many batches were parked.
if redis.call('HGET', KEYS[1], 'state') ~= 'paused' then return 0 end
local batches = redis.call('LRANGE', KEYS[2], 0, -1)
for i = 1, #batches, 1000 do
  redis.call('SADD', KEYS[3], unpack(batches, i, math.min(i + 999, #batches)))
end
redis.call('DEL', KEYS[2])
return #batches

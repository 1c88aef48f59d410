-- reclaim: a sweeper forgets a running batch only while its lease is still gone (no task took it meanwhile).
-- KEYS: 1 the batch's lease, 2 running. ARGV: 1 batch id. Answers 1 if forgotten.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
return redis.call('HDEL', KEYS[2], ARGV[1])

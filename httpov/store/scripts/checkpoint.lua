-- checkpoint: record a batch's latest checkpoint (its info, ARGV[3]) only while execution ARGV[1] holds the batch's
-- lease, so a node that lost the batch never names the checkpoint another one resumes from. 'ok', 'lost' or 'missing'.
-- KEYS: 1 job record, 2 the batch's lease, 3 the job's checkpoints hash. ARGV: 1 token, 2 batch id, 3 info (JSON).
if not redis.call('HGET', KEYS[1], 'state') then return 'missing' end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'lost' end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
return 'ok'

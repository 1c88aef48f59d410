-- drop_scene: a job lets go of its scene; answers 1 if it was the last one, and then marks the scene as being
-- deleted (until `scene_deleted`, or ARGV[2] ms) so that no submit takes a reference meanwhile.
-- KEYS: 1 the scene's references, 2 its being-deleted mark. ARGV: 1 job id, 2 milliseconds.
redis.call('SREM', KEYS[1], ARGV[1])
if redis.call('SCARD', KEYS[1]) > 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1

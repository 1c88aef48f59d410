-- Scene archives are content-addressed and shared by jobs: each holds a reference (its id in the scene's set).
-- use_scene: a submit takes its reference, unless the scene's last reference is being dropped and its zip deleted
-- (then it waits and asks again, so that it never counts on a zip about to vanish).
-- KEYS: 1 the scene's references, 2 its being-deleted mark, 3 since when references exist. ARGV: 1 job id, 2 now.
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SETNX', KEYS[3], ARGV[2])  -- since when jobs hold references: older ones are looked for in drop_scene
return 1

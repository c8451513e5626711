-- The owner of a live session, refreshing its last-seen time, without resurrecting a key
-- that has just expired (HSET on a missing key would create it).
--
-- KEYS[1]  HASH session: fields `user`, `last_seen`, ...
-- ARGV[1]  now (ms)
-- Returns the user id, or nil for a revoked or expired session.
local user = redis.call('HGET', KEYS[1], 'user')
if user then redis.call('HSET', KEYS[1], 'last_seen', ARGV[1]) end
return user

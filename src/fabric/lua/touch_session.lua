-- The per-request check of a device session against the cache: refreshes the last-seen
-- time of a cached session, without resurrecting a key that has just expired (HSET on a
-- missing key would create it).
--
-- KEYS[1]  HASH: the cached session (fields `device`, `created`, `last_seen`, `expires`)
-- KEYS[2]  STRING: the session's revocation mark
-- ARGV[1]  now (ms)
-- Returns 1 when cached live, 0 when marked revoked, -1 when the cache does not know it
-- (the caller asks PostgreSQL).
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'last_seen', ARGV[1])
  return 1
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
return -1

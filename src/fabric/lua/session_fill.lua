-- Caches a live session read from PostgreSQL, unless it was revoked since: a node that
-- read the row just before a revocation deleted it must not put it back after the
-- revocation cleared the cache. The revocation sets KEYS[2] in the same step as it
-- deletes KEYS[1], so a fill either lands before that step (and is deleted by it) or finds
-- the mark. The last-seen time never moves back.
--
-- KEYS[1]  HASH: the cached session
-- KEYS[2]  STRING: the session's revocation mark
-- ARGV[1]  device name
-- ARGV[2]  created (ms)
-- ARGV[3]  last seen (ms)
-- ARGV[4]  expires (ms)
-- ARGV[5]  time to live in the cache (ms)
-- Returns 1 when cached, 0 when the session is marked revoked.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local seen = ARGV[3]
local cached = redis.call('HGET', KEYS[1], 'last_seen')
if cached and tonumber(cached) > tonumber(seen) then
  seen = cached
end
redis.call('HSET', KEYS[1], 'device', ARGV[1], 'created', ARGV[2], 'last_seen', seen,
  'expires', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1

-- Rotates a device session's refresh token: the presented one must be the current one,
-- and then the session's lifetime starts again. A token that was current once and has
-- been rotated since is remembered, so that presenting it again is told apart from a
-- token that never belonged to the session (reuse means it was stolen).
--
-- KEYS[1]  HASH session: its fields `user`, `refresh` (hash of the current token), ...
-- KEYS[2]  ZSET session id -> expiry (ms): the user's sessions
-- KEYS[3]  SET: hashes of this session's rotated tokens
-- ARGV[1]  hash of the presented token
-- ARGV[2]  hash of the next token
-- ARGV[3]  the session id
-- ARGV[4]  the session's lifetime from now (ms)
-- ARGV[5]  now (ms)
-- Returns 1 when rotated, 2 when the presented token was already rotated, 0 otherwise.
local current = redis.call('HGET', KEYS[1], 'refresh')
if not current then
  return 0
end
if current == ARGV[1] then
  local lifetime = tonumber(ARGV[4])
  redis.call('HSET', KEYS[1], 'refresh', ARGV[2], 'last_seen', ARGV[5])
  redis.call('PEXPIRE', KEYS[1], lifetime)
  redis.call('SADD', KEYS[3], ARGV[1])
  redis.call('PEXPIRE', KEYS[3], lifetime)
  redis.call('ZADD', KEYS[2], tonumber(ARGV[5]) + lifetime, ARGV[3])
  redis.call('PEXPIRE', KEYS[2], lifetime, 'GT')
  redis.call('PEXPIRE', KEYS[2], lifetime, 'NX')
  return 1
end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then
  return 2
end
return 0

-- Removes a connection lease of a user.
--
-- KEYS[1]  ZSET connection id -> lease end (ms): the user's live connections
-- KEYS[2]  ZSET user id -> latest lease end (ms): the presence index
-- ARGV[1]  now (ms)
-- ARGV[2]  the connection id
-- ARGV[3]  the user id
-- Returns 1 only to the caller whose removal left no live connection (the user just went
-- offline); a connection removed twice reports the transition once.
local removed = redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[3])
  return removed
end
return 0

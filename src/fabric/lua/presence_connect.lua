-- Adds a connection lease of a user.
--
-- KEYS[1]  ZSET connection id -> lease end (ms): the user's live connections
-- KEYS[2]  ZSET user id -> latest lease end (ms): the presence index
-- ARGV[1]  now (ms)
-- ARGV[2]  this lease's end (ms)
-- ARGV[3]  the connection id
-- ARGV[4]  the user id
-- ARGV[5]  ttl of the user's key (ms)
-- Returns 1 when the user had no live connection before (they just came online), else 0.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], 'GT', ARGV[2], ARGV[4])
if before == 0 then return 1 end
return 0

-- Marks a typist in a conversation.
--
-- KEYS[1]  ZSET user id -> mark end (ms): who is typing in the conversation
-- ARGV[1]  now (ms)
-- ARGV[2]  this mark's end (ms)
-- ARGV[3]  the user id
-- ARGV[4]  ttl of the key (ms)
-- Returns 1 when the user was not marked already, else 0.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local added = redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return added

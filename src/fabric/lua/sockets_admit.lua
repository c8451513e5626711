-- Admits one more socket of a user unless the user already holds `cap` live ones
-- anywhere in the cluster. Each socket is a lease that its node's heartbeat renews, so a
-- dead node's sockets stop counting by themselves.
--
-- KEYS[1]  ZSET connection id -> lease end (ms): the user's sockets
-- ARGV[1]  now (ms)
-- ARGV[2]  this lease's end (ms)
-- ARGV[3]  the connection id
-- ARGV[4]  cap: most sockets a user may hold
-- ARGV[5]  ttl of the key (ms)
-- Returns 1 when admitted, 0 when the user is at the cap.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[3])
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1

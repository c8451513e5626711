-- Deletes a session only when it is listed under the user who asks.
--
-- KEYS[1]  ZSET session id -> expiry (ms): the user's sessions
-- KEYS[2]  HASH: the session
-- ARGV[1]  the session id
-- Returns 1 when the session was the user's and is gone now, else 0.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0

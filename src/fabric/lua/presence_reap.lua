-- Finds users whose latest lease ran out (their node died). Atomic, so each is reported
-- to one node only. Users still holding a live lease get their index entry moved to that
-- lease's end. At most 500 users per call.
--
-- KEYS[1]  ZSET user id -> latest lease end (ms): one presence shard's index
-- ARGV[1]  now (ms)
-- ARGV[2]  the prefix of a user's connections key in that shard (the user id follows it);
--          it carries the shard's hash tag, so on a Redis Cluster these keys live in the
--          index's slot, on the node running the script
-- Returns the ids of the users who went offline.
local users = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 500)
local gone = {}
for _, u in ipairs(users) do
  local k = ARGV[2] .. u
  redis.call('ZREMRANGEBYSCORE', k, '-inf', ARGV[1])
  local top = redis.call('ZRANGE', k, -1, -1, 'WITHSCORES')
  if #top == 0 then
    redis.call('ZREM', KEYS[1], u)
    table.insert(gone, u)
  else
    redis.call('ZADD', KEYS[1], top[2], u)
  end
end
return gone

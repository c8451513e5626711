-- A generic cell rate limiter (GCRA): `burst` hits at once, refilled evenly, one every
-- `interval` ms. The key holds the theoretical arrival time (ms, Redis clock) and lives
-- exactly as long as it matters. Redis's own clock, so nodes with skewed clocks agree.
--
-- KEYS[1]  the limiter's key
-- ARGV[1]  interval: ms between two refills (the limit's period / burst), at least 1
-- ARGV[2]  burst: how many hits an idle limiter takes at once
-- ARGV[3]  cost: 1 takes a hit (refused when none is left), -1 gives one back
-- Returns {allowed (1 or 0), ms until the next hit would be allowed (0 when allowed)}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval * cost
if cost > 0 then
  local allow_at = new_tat - interval * burst
  if allow_at > now then
    return {0, allow_at - now}
  end
end
if new_tat <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
end
return {1, 0}

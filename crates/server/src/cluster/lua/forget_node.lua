-- Forgets a reaped node, unless it came back meanwhile.
-- KEYS[1] nodes ZSET. ARGV[1] node id, ARGV[2] node timeout ms.
-- Returns 1 when the node was forgotten.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
if seen and tonumber(seen) >= now - tonumber(ARGV[2]) then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1

-- Records a node's heartbeat on the Redis clock.
-- KEYS[1] nodes ZSET. ARGV[1] node id, ARGV[2] ms to add to now (negative:
-- a graceful leave that lets the node expire after a grace period).
-- Returns 1 when the node was not in the set (first start, or reaped).
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
return redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])

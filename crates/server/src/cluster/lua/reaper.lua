-- Takes or extends the reaper lock, then names the dead nodes.
-- KEYS[1] reaper lock, KEYS[2] nodes ZSET. ARGV[1] node id, ARGV[2] lease ms,
-- ARGV[3] node timeout ms.
-- Returns nil when another node holds the lock, else the ids of the nodes
-- whose last heartbeat is older than the timeout.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return false
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local cutoff = now - tonumber(ARGV[3])
return redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', string.format('(%d', cutoff))

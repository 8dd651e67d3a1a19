-- Adds (or refreshes) one connection to a room's presence.
-- KEYS[1] expiries ZSET (conn -> expire ms), KEYS[2] conns HASH (conn -> user),
-- KEYS[3] users HASH (user -> connections), KEYS[4] infos HASH (user -> info).
-- ARGV[1] conn key, ARGV[2] user, ARGV[3] info JSON, ARGV[4] TTL in ms.
-- Returns {first, users}: first = 1 when this is the user's first connection
-- in the room, else 0; users = the room's users now.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local expire_at = now + tonumber(ARGV[4])
local first = 0
local owner = redis.call('HGET', KEYS[2], ARGV[1])
if owner and owner ~= ARGV[2] then
  return redis.error_reply('connection ' .. ARGV[1] .. ' belongs to another user')
end
if not owner then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  if redis.call('HINCRBY', KEYS[3], ARGV[2], 1) == 1 then
    first = 1
  end
end
redis.call('ZADD', KEYS[1], expire_at, ARGV[1])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
for i = 1, 4 do
  if redis.call('PEXPIRETIME', KEYS[i]) < expire_at then
    redis.call('PEXPIREAT', KEYS[i], expire_at)
  end
end
return {first, redis.call('HLEN', KEYS[3])}

-- Removes one connection from a room's presence.
-- KEYS as presence_add. ARGV[1] conn key.
-- Returns nil when the connection was not there, else {user, last (0/1),
-- users}: last = 1 when it was the user's last connection in the room;
-- users = the room's users now.
local user = redis.call('HGET', KEYS[2], ARGV[1])
if not user then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return false
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('HINCRBY', KEYS[3], user, -1) <= 0 then
  redis.call('HDEL', KEYS[3], user)
  redis.call('HDEL', KEYS[4], user)
  return {user, 1, redis.call('HLEN', KEYS[3])}
end
return {user, 0, redis.call('HLEN', KEYS[3])}

-- The users of a room with an unexpired connection.
-- KEYS[1] expiries ZSET, KEYS[2] conns HASH, KEYS[3] infos HASH.
-- ARGV[1] '1' for the users and their info, '0' for counts only.
-- Returns {users, connections} counts, then (with ARGV[1] = '1')
-- user, info, user, info...
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%d', now), '+inf')
local seen, users, out = {}, 0, {0, #live}
for _, conn in ipairs(live) do
  local user = redis.call('HGET', KEYS[2], conn)
  if user and not seen[user] then
    seen[user] = true
    users = users + 1
    if ARGV[1] == '1' then
      out[#out + 1] = user
      out[#out + 1] = redis.call('HGET', KEYS[3], user) or 'null'
    end
  end
end
out[1] = users
return out

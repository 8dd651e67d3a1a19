-- Moves an inbox's delivery cursor forward: its DMs through ARGV[2] reached
-- one of the user's connections, on some node. Kept in the log's meta, so it
-- goes with the epoch (a meta that is gone, or another epoch, is left alone).
-- KEYS[1] meta HASH. ARGV[1] epoch, ARGV[2] seq.
-- Returns the cursor now (0 when the meta is gone or in another epoch).
if redis.call('HGET', KEYS[1], 'e') ~= ARGV[1] then
  return 0
end
local cursor = tonumber(redis.call('HGET', KEYS[1], 'd') or '0')
local seq = tonumber(ARGV[2])
if seq > cursor then
  redis.call('HSET', KEYS[1], 'd', ARGV[2])
  return seq
end
return cursor

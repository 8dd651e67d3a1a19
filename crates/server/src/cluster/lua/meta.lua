-- A log's meta and its oldest retained message.
-- KEYS[1] meta HASH, KEYS[2] stream.
-- Returns nil when the log does not exist, else
-- {epoch, top seq, oldest stream id or '', oldest ts or '0', delivered}:
-- delivered is an inbox's delivery cursor (0 for a room).
local meta = redis.call('HMGET', KEYS[1], 'e', 's', 'd')
if not meta[1] then
  return false
end
local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local id, ts = '', '0'
if oldest[1] then
  id = oldest[1][1]
  local fields = oldest[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 't' then
      ts = fields[i + 1]
    end
  end
end
return {meta[1], meta[2] or '0', id, ts, meta[3] or '0'}

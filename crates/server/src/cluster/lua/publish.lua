-- Appends one message to a log and publishes it, atomically: the only place
-- a log's seq is assigned. Every key shares the log's hash tag.
-- KEYS[1] meta HASH (e epoch, s top seq, t newest ts), KEYS[2] stream,
-- KEYS[3] (optional) idempotency key.
-- ARGV[1] epoch to use if the meta is new, ARGV[2] stream MAXLEN (~),
-- ARGV[3] TTL in seconds (0: none), ARGV[4] channel, ARGV[5] PUBLISH or SPUBLISH,
-- ARGV[6] kind code, ARGV[7] name as a JSON string, ARGV[8] sender,
-- ARGV[9] sender as a JSON string, ARGV[10] body (JSON text),
-- ARGV[11] idempotency window in seconds.
-- Returns {seq, epoch, ts, duplicate (0/1)}.
local idempotency = KEYS[3]
if idempotency then
  local first = redis.call('GET', idempotency)
  if first then
    local seq, epoch, ts = string.match(first, '^(%d+):(%d+):(%d+)$')
    if seq then
      return {tonumber(seq), epoch, tonumber(ts), 1}
    end
  end
end

if redis.call('HSETNX', KEYS[1], 'e', ARGV[1]) == 1 then
  -- A new (or lost) meta starts a new epoch: history of the old one is void.
  redis.call('DEL', KEYS[2])
end
local meta = redis.call('HMGET', KEYS[1], 'e', 't')
local epoch = meta[1]
local clock = redis.call('TIME')
local ts = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local newest = tonumber(meta[2] or '0') or 0
if newest > ts then
  ts = newest
end
local seq = redis.call('HINCRBY', KEYS[1], 's', 1)
local seq_text = string.format('%d', seq)
local ts_text = string.format('%d', ts)
redis.call('HSET', KEYS[1], 't', ts_text)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq_text .. '-0',
  't', ts_text, 'f', ARGV[8], 'b', ARGV[10])
if ARGV[3] ~= '0' then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
local payload = '[' .. ARGV[6] .. ',' .. seq_text .. ',' .. epoch .. ',' .. ts_text .. ',' ..
  ARGV[9] .. ',' .. ARGV[7] .. ',' .. ARGV[10] .. ']'
redis.call(ARGV[5], ARGV[4], payload)
if idempotency then
  redis.call('SET', idempotency, seq_text .. ':' .. epoch .. ':' .. ts_text, 'EX', ARGV[11])
end
return {seq, epoch, ts, 0}

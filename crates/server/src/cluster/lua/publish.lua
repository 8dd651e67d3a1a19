-- Appends a batch of messages to one log, in order, and publishes each,
-- atomically: the only place a log's seq is assigned. Every key shares the
-- log's hash tag.
-- KEYS[1] meta HASH (e epoch, s top seq, t newest ts), KEYS[2] stream,
-- KEYS[3..] the idempotency keys of the messages that have one, in order.
-- ARGV[1] epoch to use if the meta is new, ARGV[2] stream MAXLEN (~),
-- ARGV[3] TTL in seconds (0: none), ARGV[4] channel, ARGV[5] PUBLISH or
-- SPUBLISH, ARGV[6] kind code, ARGV[7] name as a JSON string,
-- ARGV[8] idempotency window in seconds; then 4 per message: sender,
-- sender as a JSON string, body (JSON text), 1 if it has an idempotency
-- key (the next of KEYS[3..]) else 0.
-- Returns per message {seq, epoch, ts, duplicate (0/1)}.
local COMMON, EACH = 8, 4
local answers = {}
local next_key = 3
local opened = false
local epoch, ts

-- The log's epoch and clock, read once, on the first message that is not a
-- repeat (all of a batch's messages share its ts).
local function open()
  if redis.call('HSETNX', KEYS[1], 'e', ARGV[1]) == 1 then
    -- A new (or lost) meta starts a new epoch: history of the old one is void.
    redis.call('DEL', KEYS[2])
  end
  local meta = redis.call('HMGET', KEYS[1], 'e', 't')
  epoch = meta[1]
  local clock = redis.call('TIME')
  ts = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  local newest = tonumber(meta[2] or '0') or 0
  if newest > ts then
    ts = newest
  end
  redis.call('HSET', KEYS[1], 't', string.format('%d', ts))
  opened = true
end

for i = COMMON + 1, #ARGV, EACH do
  local from, from_json, body, keyed = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local idempotency = nil
  if keyed == '1' then
    idempotency = KEYS[next_key]
    next_key = next_key + 1
  end
  local first = idempotency and redis.call('GET', idempotency)
  local repeat_of = first and {string.match(first, '^(%d+):(%d+):(%d+)$')}
  if repeat_of and repeat_of[1] then
    answers[#answers + 1] = {tonumber(repeat_of[1]), repeat_of[2], tonumber(repeat_of[3]), 1}
  else
    if not opened then
      open()
    end
    -- The meta moves with each message, so a script that fails part way
    -- (an out-of-memory XADD) leaves a gap, never a reused seq.
    local seq = redis.call('HINCRBY', KEYS[1], 's', 1)
    local seq_text = string.format('%d', seq)
    local ts_text = string.format('%d', ts)
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq_text .. '-0', 't', ts_text, 'f', from, 'b', body)
    local payload = '[' .. ARGV[6] .. ',' .. seq_text .. ',' .. epoch .. ',' .. ts_text .. ',' ..
      from_json .. ',' .. ARGV[7] .. ',' .. body .. ']'
    redis.call(ARGV[5], ARGV[4], payload)
    if idempotency then
      redis.call('SET', idempotency, seq_text .. ':' .. epoch .. ':' .. ts_text, 'EX', ARGV[8])
    end
    answers[#answers + 1] = {seq, epoch, ts, 0}
  end
end

if opened and ARGV[3] ~= '0' then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return answers

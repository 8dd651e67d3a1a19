-- Starts a new epoch for a log whose history went back in time (a failover
-- to a replica that had not received the newest messages): nodes and
-- clients holding the old epoch then resynchronise instead of taking the
-- new master's messages for the ones they had. The stream and seq go on.
-- KEYS[1] meta HASH. ARGV[1] the epoch found diverged, ARGV[2] a new epoch.
-- Returns the log's epoch now (the new one, or the one another node set
-- first), or nil when the meta is gone (the next publish starts an epoch).
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  return false
end
if epoch == ARGV[1] then
  redis.call('HSET', KEYS[1], 'e', ARGV[2])
  return ARGV[2]
end
return epoch

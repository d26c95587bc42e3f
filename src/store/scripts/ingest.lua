-- Dedupe an event and append it to the inbox, as one atomic step.
--
-- KEYS[1]   the inbox stream                          recoup:{inbox}:stream
-- KEYS[2]   when the newest events arrived (a hash)   recoup:{inbox}:arrivals
-- KEYS[3]   this week's seen-set of the event's bucket recoup:{inbox}:seen:<week>:<bucket>
-- KEYS[4..] the same bucket's seen-sets of the earlier weeks still remembered
-- ARGV[1]   the event's fingerprint (a 64-bit integer, so the sets stay compact intsets)
-- ARGV[2]   when this week's set expires, unix seconds
-- ARGV[3]   event id
-- ARGV[4]   event type
-- ARGV[5]   the normalised event (JSON)
-- ARGV[6]   how it arrived, the arrivals field it moves forward ("webhook", "backfill"), or ""
-- ARGV[7]   the event's created, unix seconds
-- ARGV[8]   the entry's format, which a worker checks it can read
--
-- Returns the new stream entry id, or false when the event was seen before. All keys share the
-- {inbox} hash tag, so the script also runs on Redis Cluster. Because a script runs atomically and
-- is written to the AOF as one transaction, an event is never marked seen without its inbox entry.
for i = 3, #KEYS do
  if redis.call('SISMEMBER', KEYS[i], ARGV[1]) == 1 then
    return false
  end
end
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('EXPIREAT', KEYS[3], ARGV[2])
if ARGV[6] ~= '' then
  local newest = tonumber(redis.call('HGET', KEYS[2], ARGV[6]))
  if not newest or newest < tonumber(ARGV[7]) then
    redis.call('HSET', KEYS[2], ARGV[6], ARGV[7])
  end
end
return redis.call('XADD', KEYS[1], '*', 'id', ARGV[3], 'type', ARGV[4], 'event', ARGV[5], 'v', ARGV[8])

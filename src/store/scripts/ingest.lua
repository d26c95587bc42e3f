-- Dedupe an event and append it to the inbox, as one atomic step.
--
-- KEYS[1]   the inbox stream                          recoup:{inbox}:stream
-- KEYS[2]   this week's seen-set of the event's bucket recoup:{inbox}:seen:<week>:<bucket>
-- KEYS[3..] the same bucket's seen-sets of the earlier weeks still remembered
-- ARGV[1]   the event's fingerprint (a 64-bit integer, so the sets stay compact intsets)
-- ARGV[2]   when this week's set expires, unix seconds
-- ARGV[3]   event id
-- ARGV[4]   event type
-- ARGV[5]   the normalised event (JSON)
-- ARGV[6]   the entry's format, which a worker checks it can read
--
-- Returns the new stream entry id, or false when the event was seen before. All keys share the
-- {inbox} hash tag, so the script also runs on Redis Cluster. Because a script runs atomically and
-- is written to the AOF as one transaction, an event is never marked seen without its inbox entry.
for i = 2, #KEYS do
  if redis.call('SISMEMBER', KEYS[i], ARGV[1]) == 1 then
    return false
  end
end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('EXPIREAT', KEYS[2], ARGV[2])
return redis.call('XADD', KEYS[1], '*', 'id', ARGV[3], 'type', ARGV[4], 'event', ARGV[5], 'v', ARGV[6])

-- Dedupe an event and append it to the inbox, as one atomic step.
--
-- KEYS[1]  the event's dedupe marker   recoup:{inbox}:evt:<event id>
-- KEYS[2]  the inbox stream            recoup:{inbox}:stream
-- ARGV[1]  how long the marker lives, in seconds
-- ARGV[2]  event id
-- ARGV[3]  event type
-- ARGV[4]  the normalised event (JSON)
--
-- Returns the new stream entry id, or false when the event id was seen before. Both keys share the
-- {inbox} hash tag, so the script also runs on Redis Cluster. Because a script runs atomically and is
-- written to the AOF as one transaction, a marker never exists without its inbox entry.
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], '*', 'id', ARGV[2], 'type', ARGV[3], 'event', ARGV[4])
end
return false

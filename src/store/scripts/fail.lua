-- Count a failed attempt at an inbox entry; the last allowed one moves it to the dead letters.
--
-- KEYS[1]  the inbox stream     recoup:{inbox}:stream
-- KEYS[2]  failure counts       recoup:{inbox}:failures
-- KEYS[3]  the dead letters     recoup:{inbox}:dead
-- ARGV[1]  the consumer group
-- ARGV[2]  the entry id
-- ARGV[3]  how many failures move an entry to the dead letters
-- ARGV[4]  the error
-- ARGV[5]  now, RFC 3339
-- ARGV[6]  event id      ARGV[7]  event type      ARGV[8]  the event as stored in the inbox
-- ARGV[9]  how many times the entry was delivered      ARGV[10] the entry's format (its `v`)
--
-- Returns the failure count while the entry stays pending (to be reclaimed after the lease), or -1
-- once it is dead-lettered: appended to the dead letters (capped at about 100,000), acknowledged and
-- removed from the inbox, atomically, so it is never both lost and gone. A limit of 0 dead-letters
-- at once (an entry that kept failing for passing reasons, or one that cannot be read).
local failures = redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
if failures < tonumber(ARGV[3]) then
  return failures
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 100000, '*',
  'entry', ARGV[2], 'id', ARGV[6], 'type', ARGV[7], 'failures', failures,
  'deliveries', ARGV[9], 'error', ARGV[4], 'at', ARGV[5], 'event', ARGV[8], 'v', ARGV[10])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
return -1

-- Keep an inbox entry claimed by the consumer working on it for another lease.
--
-- KEYS[1]  the inbox stream     recoup:{inbox}:stream
-- ARGV[1]  the consumer group
-- ARGV[2]  the consumer
-- ARGV[3]  the entry id
--
-- Returns 1 when renewed, 0 when the consumer no longer holds the entry (its lease ran out and
-- another consumer took it over, or it was acknowledged): an entry is never taken back from whoever
-- holds it now. XCLAIM with JUSTID resets the entry's idle time without counting a delivery.
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #pending == 0 then
  return 0
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1

-- Put a parked wake-up back on the schedule.
--
-- KEYS[1]  the shard's due-time set    recoup:{t<shard>}:due
-- KEYS[2]  wake-up failure counts      recoup:{t<shard>}:failures
-- KEYS[3]  parked wake-ups             recoup:{t<shard>}:parked
-- ARGV[1]  the invoice id
-- ARGV[2]  when it is due, unix ms
--
-- Returns 1 when it was parked (and is now due), 0 when it was not.
if redis.call('HDEL', KEYS[3], ARGV[1]) == 0 then
  return 0
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1

-- Count a failed wake-up of a case; the last allowed one parks it.
--
-- KEYS[1]  the shard's due-time set    recoup:{t<shard>}:due
-- KEYS[2]  wake-up failure counts      recoup:{t<shard>}:failures
-- KEYS[3]  parked wake-ups             recoup:{t<shard>}:parked
-- ARGV[1]  the invoice id
-- ARGV[2]  how many failures park a wake-up
-- ARGV[3]  the error        ARGV[4]  now, RFC 3339
--
-- Returns the failure count while the wake-up stays scheduled (it comes back after the lease), or
-- -1 once it is parked: taken off the due set and kept with its last error, in one step.
local failures = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
if failures < tonumber(ARGV[2]) then
  return failures
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1],
  cjson.encode({invoice_id = ARGV[1], failures = failures, error = ARGV[3], at = ARGV[4]}))
redis.call('HDEL', KEYS[2], ARGV[1])
return -1

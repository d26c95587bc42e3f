-- Save a case if nobody saved it since it was loaded, together with its wake-up time.
--
-- KEYS[1]  the case                  recoup:{t<shard>}:case:<invoice id>
-- KEYS[2]  the shard's due-time set  recoup:{t<shard>}:due
-- ARGV[1]  the version the case was loaded at (0 = not stored yet)
-- ARGV[2]  the encoded case, "<new version>:<format><compressed json>" (see store::codec)
-- ARGV[3]  the invoice id (the member in the due-time set)
-- ARGV[4]  when the case must wake, unix ms, or '' when it has no timers
--
-- Returns 1 when saved, 0 on a version conflict (nothing written). Both keys share the shard's hash
-- tag, so case and wake-up are written atomically on Redis Cluster too.
local head = redis.call('GETRANGE', KEYS[1], 0, 21)
local stored = 0
if head ~= '' then
  stored = tonumber(string.match(head, '^(%d+):'))
end
if stored ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[2], ARGV[3])
else
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
end
return 1

-- Save a versioned value (a case, a card's history) if nobody saved it since it was loaded; a case
-- together with its wake-up time.
--
-- KEYS[1]  the value                 recoup:{t<shard>}:case:<invoice id> or recoup:card:{<fingerprint>}
-- KEYS[2]  a case's shard due set    recoup:{t<shard>}:due (absent for a card)
-- KEYS[3]  a case's wake-up failures  recoup:{t<shard>}:failures (absent for a card)
-- KEYS[4]  a case's parked wake-ups   recoup:{t<shard>}:parked (absent for a card)
-- KEYS[5]  a shard's cases to forget  recoup:{t<shard>}:forget (absent for a card)
-- ARGV[1]  the version the value was loaded at (0 = not stored yet)
-- ARGV[2]  the encoded value, "<new version>:<body>"
-- ARGV[3]  a case: the invoice id (the member in the due-time set)
-- ARGV[4]  a case: when it must wake, unix ms, or '' when it has no timers
-- ARGV[5]  how long the value lives, ms, or '' to keep it
-- ARGV[6]  a case: when it is forgotten, unix ms, or '' while it is kept
-- ARGV[7]  a case: its entry in the set of cases to forget, "<invoice>\t<customer>\t<subscription>"
--
-- Returns 1 when saved, 0 on a version conflict (nothing written). Case and due set share the
-- shard's hash tag, so both are written atomically on Redis Cluster too. A case saved has moved on:
-- the failures of its wake-up are forgotten, and a parked wake-up is scheduled again.
local head = redis.call('GETRANGE', KEYS[1], 0, 21)
local stored = 0
if head ~= '' then
  stored = tonumber(string.match(head, '^(%d+):'))
end
if stored ~= tonumber(ARGV[1]) then
  return 0
end
if ARGV[5] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[5])
elseif ARGV[6] ~= nil and ARGV[6] ~= '' then
  -- A case whose dunning is over expires then; the sweep removes its index entries after.
  redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[6])
  redis.call('ZADD', KEYS[5], ARGV[6], ARGV[7])
else
  redis.call('SET', KEYS[1], ARGV[2])
  if KEYS[5] then
    redis.call('ZREM', KEYS[5], ARGV[7])
  end
end
if KEYS[2] then
  if ARGV[4] == '' then
    redis.call('ZREM', KEYS[2], ARGV[3])
  else
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
  end
  redis.call('HDEL', KEYS[3], ARGV[3])
  redis.call('HDEL', KEYS[4], ARGV[3])
end
return 1

-- Claim due wake-ups of one shard, each under a lease.
--
-- KEYS[1]  the shard's due-time set   recoup:{t<shard>}:due
-- ARGV[1]  now, unix ms on the scheduler's clock
-- ARGV[2]  the lease, ms
-- ARGV[3]  at most this many
--
-- Returns the claimed invoice ids, earliest due first. Each claimed member is re-scored to now + lease in
-- the same atomic step, so no other claimer sees it until the lease runs out; the claimer's save
-- then sets the case's real next wake-up (or removes it). A claimer that dies does nothing, and the
-- wake-up is due again when its lease ends.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
if #due == 0 then
  return due
end
local leased_until = tonumber(ARGV[1]) + tonumber(ARGV[2])
local rescored = {}
for _, member in ipairs(due) do
  rescored[#rescored + 1] = leased_until
  rescored[#rescored + 1] = member
end
redis.call('ZADD', KEYS[1], unpack(rescored))
return due

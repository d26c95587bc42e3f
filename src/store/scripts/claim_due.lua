-- Claim due wake-ups of one shard, each under a lease, and read their cases.
--
-- KEYS[1]  the shard's due-time set   recoup:{t<shard>}:due
-- ARGV[1]  now, unix ms on the scheduler's clock
-- ARGV[2]  the lease, ms
-- ARGV[3]  at most this many
-- ARGV[4]  the shard's case key prefix, recoup:{t<shard>}:case:
--
-- Returns {invoice id, stored case or false} pairs, earliest due first. Each claimed member is
-- re-scored to now + lease in the same atomic step, so no other claimer sees it until the lease runs
-- out; the claimer's save then sets the case's real next wake-up (or removes it). A claimer that
-- dies does nothing, and the wake-up is due again when its lease ends.
--
-- The case keys cannot be declared up front (which cases are due is what the script finds out),
-- but they share KEYS[1]'s hash tag, so on Redis Cluster they live in the same slot on the same node.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
if #due == 0 then
  return due
end
local leased_until = tonumber(ARGV[1]) + tonumber(ARGV[2])
local rescored = {}
local claimed = {}
for i, member in ipairs(due) do
  rescored[#rescored + 1] = leased_until
  rescored[#rescored + 1] = member
  claimed[i] = {member, redis.call('GET', ARGV[4] .. member)}
end
redis.call('ZADD', KEYS[1], unpack(rescored))
return claimed

-- Take the cases whose retention ran out off the set of cases to forget.
--
-- KEYS[1]  a shard's cases to forget   recoup:{t<shard>}:forget
-- ARGV[1]  now, unix ms
-- ARGV[2]  at most this many
-- ARGV[3]  the shard's case key prefix, recoup:{t<shard>}:case:
--
-- Returns the entries ("<invoice>\t<customer>\t<subscription>") whose case is gone: expired by
-- Redis at its time. An entry whose case is still there was saved again without an expiry (it came
-- back to life) and is dropped from the set. The case keys share KEYS[1]'s hash tag.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local gone = {}
for _, entry in ipairs(due) do
  local invoice = string.match(entry, '^([^\t]*)')
  if redis.call('EXISTS', ARGV[3] .. invoice) == 0 then
    gone[#gone + 1] = entry
  end
  redis.call('ZREM', KEYS[1], entry)
end
return gone

-- Take, extend or give back a lease, as one atomic step.
--
-- KEYS[1]  the lease                                   recoup:lease:<name>
-- ARGV[1]  the holder asking
-- ARGV[2]  for how long, in milliseconds; 0 gives the lease back
--
-- Returns 1 when the holder holds the lease afterwards (taken or extended), else 0. A lease held by
-- someone else is left alone; one nobody extends expires by itself.
local holder = redis.call('GET', KEYS[1])
local ttl = tonumber(ARGV[2])
if ttl == 0 then
  if holder == ARGV[1] then
    redis.call('DEL', KEYS[1])
  end
  return 0
end
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
return 1

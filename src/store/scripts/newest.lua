-- Move a time in a hash forward, never back.
--
-- KEYS[1]  the hash                                    recoup:{inbox}:arrivals
-- ARGV[1]  the field
-- ARGV[2]  the time, unix seconds
local known = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
if not known or known < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 0

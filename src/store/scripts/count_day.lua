-- Count a final case in its day's dashboard counters, once per invoice, as one atomic step.
--
-- KEYS[1]  the day's counters                     recoup:{dash}:day:<YYYY-MM-DD>
-- KEYS[2]  the invoice's "final outcome counted"  recoup:{dash}:final:<invoice>
-- KEYS[3]  the invoice's "recovery counted"       recoup:{dash}:recovered:<invoice>
-- ARGV[1]  how long the marks are kept, in milliseconds (at least as long as the case)
-- ARGV[2]  when the day's counters are forgotten, unix milliseconds
-- ARGV[3]  n, how many counters the outcome adds to
-- ARGV[4 .. 3+2n]      the outcome's counters and increments, in pairs
-- ARGV[4+2n .. #ARGV]  the recovery's, in pairs (none while the invoice is not recovered)
--
-- The outcome is counted the first time the case is final; its recovery the first time it is
-- recovered, which may be later (a paused subscription whose customer pays), in that day's
-- counters. A mark already there is kept for another ARGV[1]. Returns 1 when anything was
-- counted, else 0.
local keep = ARGV[1]
local split = 3 + 2 * tonumber(ARGV[3])
local counted = 0
local function add(first, last)
  for i = first, last, 2 do
    redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
if redis.call('SET', KEYS[2], 1, 'PX', keep, 'NX') then
  add(4, split)
  counted = 1
else
  redis.call('PEXPIRE', KEYS[2], keep)
end
if #ARGV > split then
  if redis.call('SET', KEYS[3], 1, 'PX', keep, 'NX') then
    add(split + 1, #ARGV)
    counted = 1
  else
    redis.call('PEXPIRE', KEYS[3], keep)
  end
end
if counted == 1 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
return counted

-- Count a final case in its experiment arm's counters, once per invoice, as one atomic step.
--
-- KEYS[1]  the experiment's counters               recoup:{exp:<experiment>}:counts
-- KEYS[2]  the invoice's "final outcome counted"   recoup:{exp:<experiment>}:final:<invoice>
-- KEYS[3]  the invoice's "recovery counted"        recoup:{exp:<experiment>}:recovered:<invoice>
-- ARGV[1]  how long the marks are kept, in milliseconds (at least as long as the case)
-- ARGV[2]  the arm
-- ARGV[3]  the invoice's currency
-- ARGV[4]  charge attempts after the first failure
-- ARGV[5]  nudges sent
-- ARGV[6]  1 when the customer was lost (canceled), else 0
-- ARGV[7]  the amount recovered, or "" when the invoice was not recovered
-- ARGV[8]  that amount squared, as a decimal (computed by the caller: Lua would round it to 14 digits)
--
-- The outcome is counted the first time the case is final; its recovery the first time it is
-- recovered, which may be later (a paused subscription whose customer pays). A mark already there
-- is kept for another ARGV[1]. Returns 1 when anything was counted, else 0.
local keep = ARGV[1]
local arm = ARGV[2]
local currency = ARGV[3]
local counted = 0
if redis.call('SET', KEYS[2], 1, 'PX', keep, 'NX') then
  redis.call('HINCRBY', KEYS[1], arm .. '|invoices', 1)
  redis.call('HINCRBY', KEYS[1], arm .. '|attempts', ARGV[4])
  redis.call('HINCRBY', KEYS[1], arm .. '|nudges', ARGV[5])
  redis.call('HINCRBY', KEYS[1], arm .. '|lost', ARGV[6])
  redis.call('HINCRBY', KEYS[1], arm .. '|' .. currency .. '|invoices', 1)
  counted = 1
else
  redis.call('PEXPIRE', KEYS[2], keep)
end
if ARGV[7] ~= '' then
  if redis.call('SET', KEYS[3], 1, 'PX', keep, 'NX') then
    redis.call('HINCRBY', KEYS[1], arm .. '|recovered', 1)
    redis.call('HINCRBY', KEYS[1], arm .. '|' .. currency .. '|sum', ARGV[7])
    redis.call('HINCRBYFLOAT', KEYS[1], arm .. '|' .. currency .. '|squares', ARGV[8])
    counted = 1
  else
    redis.call('PEXPIRE', KEYS[3], keep)
  end
end
return counted

-- Put a dead letter back into the inbox, as one atomic step.
--
-- KEYS[1]  the inbox stream     recoup:{inbox}:stream
-- KEYS[2]  the dead letters     recoup:{inbox}:dead
-- ARGV[1]  the dead letter's id
--
-- Returns the new inbox entry's id, or false when there is no such dead letter. The event is
-- appended as it was stored (id, type, event, format) without deduplication: it was received once,
-- and it is its processing that is tried again. Both keys share the {inbox} hash tag.
local found = redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1])
if #found == 0 then
  return false
end
local raw = found[1][2]
local fields = {}
for i = 1, #raw, 2 do
  fields[raw[i]] = raw[i + 1]
end
local entry = redis.call('XADD', KEYS[1], '*', 'id', fields['id'] or '', 'type', fields['type'] or '',
  'event', fields['event'] or '', 'v', fields['v'] or '1')
redis.call('XDEL', KEYS[2], ARGV[1])
return entry

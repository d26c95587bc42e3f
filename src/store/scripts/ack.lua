-- Acknowledge an inbox entry and drop it, with its failure count, in one step.
--
-- KEYS[1]  the inbox stream     recoup:{inbox}:stream
-- KEYS[2]  failure counts       recoup:{inbox}:failures
-- ARGV[1]  the consumer group
-- ARGV[2]  the entry id
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
return 1

--setup=workload
CREATE SEGMENT buyers AS SELECT DISTINCT user_id FROM events WHERE event_type = 'purchase';
CREATE SEGMENT big_buyers AS SELECT user_id FROM buyers WHERE user_id IN (SELECT user_id FROM profiles WHERE lifetime_value > 1000);
DROP SEGMENT big_buyers;
DROP SEGMENT IF EXISTS big_buyers;
DROP SEGMENT buyers;
DROP TABLE profiles;
DROP STREAM events;
SHOW STREAMS;

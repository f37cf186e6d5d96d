--setup=workload
CREATE SEGMENT recent_buyers AS
SELECT DISTINCT user_id FROM events WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '3 hours';
CREATE SEGMENT welcome_offer AS
SELECT user_id FROM profiles WHERE signup_at > NOW() - INTERVAL '7 days'
EXCEPT
SELECT user_id FROM recent_buyers;
SELECT name, key, attributes, reads FROM segstream.segments ORDER BY name;
SELECT * FROM segstream.changes;

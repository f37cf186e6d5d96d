-- Recent buyers: bought in the last 3 hours. A buyer drops out exactly 3 hours after
-- their last purchase, with no new event.
CREATE SEGMENT recent_buyers AS
SELECT DISTINCT user_id FROM events
WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '3 hours';

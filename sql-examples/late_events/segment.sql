-- Late and out-of-order events change nothing about the definition: a segment's members
-- are always what its SELECT returns over everything ingested so far. This is the recent
-- buyers segment, exercised with events that arrive late.
CREATE SEGMENT recent_buyers AS
SELECT DISTINCT user_id FROM events
WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '3 hours';

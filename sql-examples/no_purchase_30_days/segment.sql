-- No purchase in 30 days: customers who have bought before, but not in the last 30 days.
-- A customer enters exactly 30 days after their last purchase and leaves at their next.
CREATE SEGMENT no_purchase_30_days AS
SELECT user_id, MAX(ts) AS last_purchase FROM events
WHERE event_type = 'purchase'
GROUP BY user_id
HAVING MAX(ts) <= NOW() - INTERVAL '30 days';

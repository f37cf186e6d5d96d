-- RFM scores as attributes: frequent, high-spending, recent buyers, with their purchase
-- count and total carried on each member (a change of either is an `updated` change).
CREATE SEGMENT rfm_champions AS
SELECT user_id, COUNT(*) AS frequency, SUM(amount) AS monetary FROM events
WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '90 days'
GROUP BY user_id
HAVING COUNT(*) >= 3 AND SUM(amount) >= 300 AND MAX(ts) > NOW() - INTERVAL '14 days';

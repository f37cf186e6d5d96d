-- Pricing-page intent: viewed /pricing at least twice in the last 48 hours.
CREATE SEGMENT pricing_hot AS
SELECT user_id FROM events
WHERE event_type = 'page_view' AND page = '/pricing' AND ts > NOW() - INTERVAL '48 hours'
GROUP BY user_id HAVING COUNT(*) >= 2;

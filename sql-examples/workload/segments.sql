-- The reference workload's seven segments (shared/WORKLOAD.md).

-- intent: pricing page viewed at least twice in the last 48 hours
CREATE SEGMENT pricing_hot AS
SELECT user_id FROM events
WHERE event_type = 'page_view' AND page = '/pricing' AND ts > NOW() - INTERVAL '48 hours'
GROUP BY user_id HAVING COUNT(*) >= 2;

-- absence: added to cart 5 minutes to 24 hours ago, and no purchase since that add
CREATE SEGMENT cart_abandoners AS
SELECT DISTINCT c.user_id FROM events c
WHERE c.event_type = 'add_to_cart'
  AND c.ts <= NOW() - INTERVAL '5 minutes' AND c.ts > NOW() - INTERVAL '24 hours'
  AND NOT EXISTS (SELECT 1 FROM events p
                  WHERE p.user_id = c.user_id AND p.event_type = 'purchase' AND p.ts >= c.ts);

-- exact expiry: bought in the last 3 hours (drops out 3 hours after the last purchase, no event needed)
CREATE SEGMENT recent_buyers AS
SELECT DISTINCT user_id FROM events
WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '3 hours';

-- history joined with live data: high-value customers with no purchase in 30 days
CREATE SEGMENT lapsed_high_value AS
SELECT user_id FROM profiles
WHERE lifetime_value > 500
  AND user_id NOT IN (SELECT user_id FROM events
                      WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '30 days');

-- segment of segments: a lapsed high-value customer who logged in within the last hour
CREATE SEGMENT winback_now AS
SELECT user_id FROM lapsed_high_value
WHERE user_id IN (SELECT user_id FROM events
                  WHERE event_type = 'login' AND ts > NOW() - INTERVAL '1 hour');

-- RFM-style scores carried as attributes
CREATE SEGMENT rfm_champions AS
SELECT user_id, COUNT(*) AS frequency, SUM(amount) AS monetary FROM events
WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '90 days'
GROUP BY user_id
HAVING COUNT(*) >= 3 AND SUM(amount) >= 300 AND MAX(ts) > NOW() - INTERVAL '14 days';

-- suppression: recent sign-ups (7 days) who are not recent buyers (3 hours)
CREATE SEGMENT welcome_offer AS
SELECT user_id FROM profiles WHERE signup_at > NOW() - INTERVAL '7 days'
EXCEPT
SELECT user_id FROM recent_buyers;

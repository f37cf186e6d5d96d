-- Dormant high-value customers (profile table joined with live purchases): lifetime value
-- above 500 and no purchase in the last 30 days.
CREATE SEGMENT lapsed_high_value AS
SELECT user_id FROM profiles
WHERE lifetime_value > 500
  AND user_id NOT IN (SELECT user_id FROM events
                      WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '30 days');

-- ... who just logged in: a segment built on the one above, for the hour after a login.
CREATE SEGMENT winback_now AS
SELECT user_id FROM lapsed_high_value
WHERE user_id IN (SELECT user_id FROM events
                  WHERE event_type = 'login' AND ts > NOW() - INTERVAL '1 hour');

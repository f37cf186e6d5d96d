-- Cart abandonment: added to cart in the last 24 hours with no purchase within 5 minutes
-- of the add. NOT FOLLOWED BY ... WITHIN is segstream's absence syntax: the same as a
-- NOT EXISTS anti-join on the stream (docs/sql-reference.md).
CREATE SEGMENT cart_abandoners AS
SELECT DISTINCT user_id FROM events
WHERE event_type = 'add_to_cart' AND ts > NOW() - INTERVAL '24 hours'
  AND NOT FOLLOWED BY (event_type = 'purchase') WITHIN INTERVAL '5 minutes';

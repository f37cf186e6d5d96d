--setup=workload
-- NOT FOLLOWED BY: an add to cart with no purchase by the same user within 5 minutes.
-- The user enters when the 5 minutes close; a purchase inside them prevents it; a
-- purchase after them does not remove the member (the cart was abandoned).
CREATE SEGMENT abandoned AS
SELECT DISTINCT user_id FROM events
WHERE event_type = 'add_to_cart'
  AND NOT FOLLOWED BY (event_type = 'purchase') WITHIN INTERVAL '5 minutes';
EXPLAIN SEGMENT abandoned;
-- The interval may be written with a unit; logins may follow logins (the event itself
-- is no follower).
EXPLAIN CREATE SEGMENT quiet_after_login AS
SELECT DISTINCT user_id FROM events
WHERE event_type = 'login' AND NOT FOLLOWED BY (event_type = 'login') WITHIN INTERVAL '30' MINUTE;
ADVANCE TIME TO TIMESTAMP '2026-04-01 10:00:00';
INSERT INTO events VALUES
  ('a1', 'ann', 'add_to_cart', NULL, 'sku1', NULL, TIMESTAMP '2026-04-01 10:00:00'),
  ('a2', 'ben', 'add_to_cart', NULL, 'sku2', NULL, TIMESTAMP '2026-04-01 10:00:00');
ADVANCE TIME TO TIMESTAMP '2026-04-01 10:04:00';
INSERT INTO events VALUES ('p1', 'ben', 'purchase', NULL, 'sku2', 20.0, TIMESTAMP '2026-04-01 10:04:00');
ADVANCE TIME TO TIMESTAMP '2026-04-01 11:00:00';
INSERT INTO events VALUES ('p2', 'ann', 'purchase', NULL, 'sku1', 20.0, TIMESTAMP '2026-04-01 11:00:00');
SELECT seq, key, kind, at FROM segstream.changes WHERE segment = 'abandoned' ORDER BY seq;
SELECT * FROM abandoned;

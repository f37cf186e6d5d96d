--setup=workload
-- cart_abandoners: enters exactly 5 minutes after an add-to-cart with no purchase since,
-- never enters when a purchase follows within the 5 minutes, and leaves 24 hours after
-- the add (or as soon as a purchase arrives).
CREATE SEGMENT cart_abandoners AS
SELECT DISTINCT c.user_id FROM events c
WHERE c.event_type = 'add_to_cart'
  AND c.ts <= NOW() - INTERVAL '5 minutes' AND c.ts > NOW() - INTERVAL '24 hours'
  AND NOT EXISTS (SELECT 1 FROM events p
                  WHERE p.user_id = c.user_id AND p.event_type = 'purchase' AND p.ts >= c.ts);
ADVANCE TIME TO TIMESTAMP '2026-04-01 10:00:00';
INSERT INTO events VALUES
  ('a1', 'ann', 'add_to_cart', NULL, 'sku1', NULL, TIMESTAMP '2026-04-01 10:00:00'),
  ('a2', 'ben', 'add_to_cart', NULL, 'sku2', NULL, TIMESTAMP '2026-04-01 10:00:00'),
  ('a3', 'cat', 'add_to_cart', NULL, 'sku3', NULL, TIMESTAMP '2026-04-01 10:00:00');
ADVANCE TIME TO TIMESTAMP '2026-04-01 10:03:00';
-- ben buys within the 5 minutes: he never enters
INSERT INTO events VALUES ('p1', 'ben', 'purchase', NULL, 'sku2', 30.0, TIMESTAMP '2026-04-01 10:03:00');
ADVANCE TIME TO TIMESTAMP '2026-04-01 12:00:00';
-- cat buys two hours later: she leaves at once
INSERT INTO events VALUES ('p2', 'cat', 'purchase', NULL, 'sku3', 30.0, TIMESTAMP '2026-04-01 12:00:00');
ADVANCE TIME TO TIMESTAMP '2026-04-03 00:00:00';
SELECT seq, key, kind, at FROM segstream.changes WHERE segment = 'cart_abandoners' ORDER BY seq;

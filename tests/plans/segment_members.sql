--setup=workload
-- A segment's members are what its SELECT returns with NOW() at the clock: a buyer
-- leaves recent_buyers exactly three hours after the purchase.
CREATE SEGMENT recent_buyers AS
SELECT DISTINCT user_id FROM events WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '3 hours';
INSERT INTO events VALUES
  ('e1', 'u1', 'purchase', NULL, 'p1', 10.0, TIMESTAMP '2026-01-01 12:00:00'),
  ('e2', 'u1', 'purchase', NULL, 'p2', 20.0, TIMESTAMP '2026-01-01 12:30:00'),
  ('e3', 'u2', 'purchase', NULL, 'p3', 30.0, TIMESTAMP '2026-01-01 13:00:00');
ADVANCE TIME TO TIMESTAMP '2026-01-01 14:00:00';
SELECT * FROM recent_buyers ORDER BY user_id;
ADVANCE TIME TO TIMESTAMP '2026-01-01 15:29:59';
SELECT * FROM recent_buyers ORDER BY user_id;
ADVANCE TIME TO TIMESTAMP '2026-01-01 15:30:00';
SELECT * FROM recent_buyers ORDER BY user_id;
ADVANCE TIME BY INTERVAL '30 minutes';
SELECT COUNT(*) AS members FROM recent_buyers;

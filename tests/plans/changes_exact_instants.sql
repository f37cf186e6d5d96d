--setup=workload
-- The change log: a buyer enters at the purchase and leaves exactly three hours after
-- the last one, with no event needed; RFM attributes change with `updated`.
CREATE SEGMENT recent_buyers AS
SELECT DISTINCT user_id FROM events WHERE event_type = 'purchase' AND ts > NOW() - INTERVAL '3 hours';
CREATE SEGMENT spenders AS
SELECT user_id, COUNT(*) AS purchases, SUM(amount) AS total FROM events
WHERE event_type = 'purchase' GROUP BY user_id HAVING SUM(amount) >= 100;
ADVANCE TIME TO TIMESTAMP '2026-01-01 12:00:00';
INSERT INTO events VALUES ('e1', 'u1', 'purchase', NULL, 'p1', 60.0, TIMESTAMP '2026-01-01 12:00:00');
ADVANCE TIME TO TIMESTAMP '2026-01-01 12:30:00';
INSERT INTO events VALUES
  ('e2', 'u1', 'purchase', NULL, 'p2', 50.0, TIMESTAMP '2026-01-01 12:30:00'),
  ('e3', 'u2', 'purchase', NULL, 'p3', 500.0, TIMESTAMP '2026-01-01 12:30:00');
ADVANCE TIME TO TIMESTAMP '2026-01-01 13:00:00';
-- a late event: bought at 11:00, seen at 13:00; it still counts for two hours
INSERT INTO events VALUES ('e4', 'u3', 'purchase', NULL, 'p4', 10.0, TIMESTAMP '2026-01-01 11:00:00');
INSERT INTO events VALUES ('e5', 'u1', 'purchase', NULL, 'p5', 5.0, TIMESTAMP '2026-01-01 13:00:00');
ADVANCE TIME TO TIMESTAMP '2026-01-02 00:00:00';
SELECT segment, seq, key, kind, at, attributes FROM segstream.changes ORDER BY segment, seq;
SELECT * FROM recent_buyers;
SELECT * FROM spenders ORDER BY user_id;

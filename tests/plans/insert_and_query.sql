--setup=workload
INSERT INTO events VALUES
  ('e1', 'u1', 'page_view', '/pricing', NULL, NULL, TIMESTAMP '2026-01-01 10:00:00'),
  ('e2', 'u1', 'purchase', NULL, 'p9', 120.5, TIMESTAMP '2026-01-01 10:05:00');
INSERT INTO events (event_id, user_id, event_type, ts) VALUES ('e3', 'u2', 'login', '2026-01-01 11:00:00');
SELECT event_id, user_id, event_type, amount, ts FROM events ORDER BY event_id;
INSERT INTO profiles VALUES ('u1', 'FR', 800.0, TIMESTAMP '2025-12-30 00:00:00'), ('u2', 'DE', 20.0, NULL);
-- an INSERT whose key exists replaces the row (upsert)
INSERT INTO profiles VALUES ('u2', 'AT', 25.0, NULL);
-- ON CONFLICT DO NOTHING keeps the old row
INSERT INTO profiles VALUES ('u1', 'XX', 0.0, NULL), ('u3', 'IT', 600.0, NULL) ON CONFLICT (user_id) DO NOTHING;
SELECT * FROM profiles ORDER BY user_id;
DELETE FROM profiles WHERE lifetime_value < 100;
SELECT user_id, country FROM profiles ORDER BY user_id;

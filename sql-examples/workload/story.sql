-- A short day of traffic over the workload's segments, with the manual clock: who
-- enters and leaves each segment, and when. Run after schema.sql and segments.sql:
--   segstream --clock manual sql -f schema.sql -f segments.sql -f story.sql

ADVANCE TIME TO TIMESTAMP '2026-03-01 09:00:00';

INSERT INTO profiles VALUES
  ('ana', 'FR', 1200.0, TIMESTAMP '2025-06-01 00:00:00'),
  ('bo',  'DE', 80.0,   TIMESTAMP '2026-02-27 10:00:00'),
  ('cy',  'IT', 650.0,  TIMESTAMP '2026-02-28 18:00:00');

-- bo looks at pricing twice and buys; cy fills a cart and walks away.
INSERT INTO events VALUES
  ('e1', 'bo', 'page_view',   '/pricing', NULL,   NULL, TIMESTAMP '2026-03-01 09:00:00'),
  ('e2', 'cy', 'add_to_cart', NULL,       'sku7', NULL, TIMESTAMP '2026-03-01 09:00:00');
ADVANCE TIME TO TIMESTAMP '2026-03-01 09:30:00';
INSERT INTO events VALUES
  ('e3', 'bo', 'page_view', '/pricing', NULL,   NULL, TIMESTAMP '2026-03-01 09:30:00'),
  ('e4', 'bo', 'purchase',  NULL,       'sku1', 49.0, TIMESTAMP '2026-03-01 09:30:00');

-- ana, a lapsed high-value customer, logs in.
ADVANCE TIME TO TIMESTAMP '2026-03-01 11:00:00';
INSERT INTO events VALUES ('e5', 'ana', 'login', NULL, NULL, NULL, TIMESTAMP '2026-03-01 11:00:00');

-- The rest of the day passes: windows close with no new event.
ADVANCE TIME TO TIMESTAMP '2026-03-02 12:00:00';

SELECT segment, seq, key, kind, at FROM segstream.changes ORDER BY at, segment, seq;
SELECT name, (SELECT COUNT(*) FROM segstream.changes c WHERE c.segment = s.name) AS changes
FROM segstream.segments s ORDER BY name;

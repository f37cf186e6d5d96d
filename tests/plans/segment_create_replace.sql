--setup=workload
CREATE SEGMENT buyers AS SELECT DISTINCT user_id FROM events WHERE event_type = 'purchase';
CREATE SEGMENT IF NOT EXISTS buyers AS SELECT user_id FROM profiles;
CREATE OR REPLACE SEGMENT buyers AS
  SELECT user_id, COUNT(*) AS purchases FROM events WHERE event_type = 'purchase' GROUP BY user_id;
DESCRIBE buyers;
SHOW SEGMENTS;
EXPLAIN SEGMENT buyers;

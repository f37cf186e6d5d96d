--setup=workload
-- The forms of a time condition: each becomes an exact entry or exit instant.
EXPLAIN CREATE SEGMENT a AS SELECT DISTINCT user_id FROM events WHERE NOW() - ts < INTERVAL '1 hour';
EXPLAIN CREATE SEGMENT b AS SELECT DISTINCT user_id FROM events WHERE ts + INTERVAL '1 day' >= NOW();
EXPLAIN CREATE SEGMENT c AS SELECT DISTINCT user_id FROM events WHERE NOW() > ts + INTERVAL '5 minutes';
EXPLAIN CREATE SEGMENT d AS SELECT DISTINCT user_id FROM events
  WHERE ts BETWEEN NOW() - INTERVAL '2 days' AND NOW() - INTERVAL '1 day';
EXPLAIN CREATE SEGMENT e AS SELECT DISTINCT user_id FROM events WHERE CURRENT_TIMESTAMP - INTERVAL '1 hour' < ts;

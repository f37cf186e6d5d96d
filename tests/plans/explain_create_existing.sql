--setup=workload
--fail=error at line 6, column 24: segment `buyers` already exists
CREATE SEGMENT buyers AS SELECT DISTINCT user_id FROM events WHERE event_type = 'purchase';
EXPLAIN CREATE SEGMENT IF NOT EXISTS buyers AS SELECT DISTINCT user_id FROM events;
EXPLAIN CREATE OR REPLACE SEGMENT buyers AS SELECT DISTINCT user_id FROM events;
EXPLAIN CREATE SEGMENT buyers AS SELECT DISTINCT user_id FROM events;

--setup=workload
--fail=not supported in a segment at line 3, column 63: random() is volatile: it gives a new value each time, so membership could never be recomputed exactly
CREATE SEGMENT s AS SELECT DISTINCT user_id FROM events WHERE random() < 0.1;

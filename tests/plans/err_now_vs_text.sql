--setup=workload
--fail=not supported in a segment at line 3, column 63: a comparison with NOW() needs a row value on the other side
CREATE SEGMENT s AS SELECT DISTINCT user_id FROM events WHERE NOW() > NOW() - INTERVAL '1 day';

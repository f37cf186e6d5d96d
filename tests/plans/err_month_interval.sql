--setup=workload
--fail=not supported in a segment at line 3, column 68: an interval of months or years has no fixed length
CREATE SEGMENT s AS SELECT DISTINCT user_id FROM events WHERE ts > NOW() - INTERVAL '3 months';

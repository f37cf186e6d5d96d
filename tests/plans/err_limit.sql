--setup=workload
--fail=not supported in a segment at line 3, column 57: LIMIT, OFFSET and FETCH are not supported in a segment
CREATE SEGMENT s AS SELECT DISTINCT user_id FROM events LIMIT 100;

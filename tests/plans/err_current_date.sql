--setup=workload
--fail=not supported in a segment at line 3, column 82: current_date() is not supported in a segment
CREATE SEGMENT s AS SELECT DISTINCT user_id FROM events WHERE CAST(ts AS DATE) = CURRENT_DATE;

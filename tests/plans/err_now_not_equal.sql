--setup=workload
--fail=not supported in a segment at line 3, column 69: NOW() cannot be compared with <> or !=
CREATE SEGMENT s AS SELECT DISTINCT user_id FROM events WHERE ts <> NOW();

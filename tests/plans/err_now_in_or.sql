--setup=workload
--fail=not supported in a segment at line 4, column 36: a comparison with NOW() inside OR cannot be scheduled as one entry and exit
CREATE SEGMENT s AS SELECT DISTINCT user_id FROM events
WHERE event_type = 'login' OR ts > NOW() - INTERVAL '1 hour';

--setup=workload
--fail=not supported in a segment at line 3, column 59: NOW() in the SELECT list would make attributes change with the clock
CREATE SEGMENT s AS SELECT user_id, MAX(ts) AS last_seen, NOW() AS checked FROM events GROUP BY user_id;

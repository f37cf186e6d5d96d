--setup=workload
--fail=not supported in a segment at line 4, column 26: count(...) FILTER (WHERE ...) is not supported in a segment
CREATE SEGMENT s AS
SELECT user_id, COUNT(*) FILTER (WHERE event_type = 'login') AS logins FROM events GROUP BY user_id;

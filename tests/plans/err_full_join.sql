--setup=workload
--fail=not supported in a segment at line 4, column 34: FULL JOIN is not supported in a segment
CREATE SEGMENT s AS
SELECT p.user_id FROM profiles p FULL JOIN (SELECT DISTINCT user_id FROM events) e ON e.user_id = p.user_id;

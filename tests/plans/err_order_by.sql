--setup=workload
--fail=not supported in a segment at line 5, column 1: ORDER BY has no meaning in a segment: membership is a set
CREATE SEGMENT s AS
SELECT DISTINCT user_id FROM events
ORDER BY user_id;

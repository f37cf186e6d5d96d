--setup=workload
--fail=not supported in a segment at line 5, column 15: NOT IN with a correlated subquery is not supported in a segment
CREATE SEGMENT s AS
SELECT user_id FROM profiles p
WHERE country NOT IN (SELECT page FROM events e WHERE e.user_id = p.user_id);

--setup=workload
--fail=not supported in a segment at line 4, column 24: window functions (OVER) are not supported in a segment
CREATE SEGMENT s AS
SELECT user_id, RANK() OVER (ORDER BY amount DESC) AS spend_rank FROM events;

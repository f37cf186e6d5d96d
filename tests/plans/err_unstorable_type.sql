--setup=workload
--fail=not supported in a segment at line 4, column 1: the value `active_for` has type Duration(ns), which a segment cannot keep in its state
CREATE SEGMENT s AS
SELECT user_id, MAX(ts) - MIN(ts) AS active_for FROM events GROUP BY user_id;

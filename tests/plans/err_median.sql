--setup=workload
--fail=not supported in a segment at line 3, column 37: the aggregate median() cannot be maintained as rows enter and leave
CREATE SEGMENT s AS SELECT user_id, median(amount) AS typical FROM events GROUP BY user_id;

--setup=workload
--fail=not supported in a segment at line 3, column 21: a join (or correlated subquery) without an equality condition
CREATE SEGMENT s AS SELECT p.user_id FROM profiles p, events e WHERE e.amount > p.lifetime_value;

--setup=workload
--fail=not supported in a segment at line 3, column 21: an aggregate over all rows (no GROUP BY) has no member key
CREATE SEGMENT s AS SELECT COUNT(*) FROM events;

--setup=workload
--fail=not supported in a segment at line 3, column 28: DISTINCT ON is not supported in a segment: it picks one row by an order
CREATE SEGMENT s AS SELECT DISTINCT ON (user_id) user_id, page FROM events;

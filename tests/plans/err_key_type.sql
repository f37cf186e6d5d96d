--setup=workload
--fail=not supported in a segment at line 3, column 21: the member key `amount` (the first column) has type DOUBLE
CREATE SEGMENT s AS SELECT amount FROM events;

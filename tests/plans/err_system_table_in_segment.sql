--setup=workload
--fail=error at line 3, column 37: a segment cannot read the system table segstream.changes: it describes segments, it is not data
CREATE SEGMENT s AS SELECT key FROM segstream.changes;

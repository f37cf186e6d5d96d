--setup=workload
--fail=error at line 3, column 41: no stream, table or segment is named `event` (did you mean `events`?)
CREATE SEGMENT s AS SELECT user_id FROM event;

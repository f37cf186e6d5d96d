--setup=workload
--fail=not supported in a segment at line 3, column 21: a member has one set of attributes, but `user_id` is not unique in this query's result
CREATE SEGMENT s AS SELECT user_id, page FROM events WHERE event_type = 'page_view';

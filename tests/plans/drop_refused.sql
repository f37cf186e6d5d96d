--setup=workload
--fail=error at line 5, column 13: cannot drop stream `events`: segments `buyers`, `viewers` read it; drop them first
CREATE SEGMENT buyers AS SELECT DISTINCT user_id FROM events WHERE event_type = 'purchase';
CREATE SEGMENT viewers AS SELECT DISTINCT user_id FROM events WHERE event_type = 'page_view';
DROP STREAM events;

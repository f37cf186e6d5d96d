--setup=workload
--fail=error at line 4, column 43: No field named event_typ. Did you mean 'events.event_type'?
CREATE SEGMENT s AS
SELECT DISTINCT user_id FROM events WHERE event_typ = 'login';

--setup=workload
--fail=not supported in a segment at line 5, column 7: NOT FOLLOWED BY needs a query that reads exactly one stream (no joins)
CREATE SEGMENT s AS
SELECT e.user_id FROM events e JOIN profiles p ON p.user_id = e.user_id
WHERE NOT FOLLOWED BY (event_type = 'purchase') WITHIN INTERVAL '1 hour';

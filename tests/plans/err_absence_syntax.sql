--setup=workload
--fail=syntax error at line 5, column 56: Expected: ( condition ) WITHIN INTERVAL '...' after NOT FOLLOWED BY, found: '1 hour'
CREATE SEGMENT s AS
SELECT user_id FROM events
WHERE NOT FOLLOWED BY (event_type = 'purchase') WITHIN '1 hour';

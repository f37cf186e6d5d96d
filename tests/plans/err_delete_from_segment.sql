--setup=workload
--fail=error at line 4, column 1: segment `buyers` is computed from its query; change the data it reads instead
CREATE SEGMENT buyers AS SELECT DISTINCT user_id FROM events WHERE event_type = 'purchase';
DELETE FROM buyers WHERE user_id = 'u1';

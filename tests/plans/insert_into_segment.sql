--setup=workload
--fail=error at line 4, column 1: segment `buyers` is computed from its query; insert into the streams and tables it reads (events)
CREATE SEGMENT buyers AS SELECT DISTINCT user_id FROM events WHERE event_type = 'purchase';
INSERT INTO buyers VALUES ('u1');

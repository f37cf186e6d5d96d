--setup=workload
--fail=error at line 3, column 1: stream `events` is append-only: its events are history and are not deleted
DELETE FROM events WHERE user_id = 'u1';

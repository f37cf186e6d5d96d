--setup=workload
--fail=error at line 3, column 1: `events`, row 2: column `user_id` is NOT NULL but got no value
INSERT INTO events VALUES ('e1', 'u1', 'login', NULL, NULL, NULL, TIMESTAMP '2026-01-01 00:00:00'), ('e2', NULL, 'login', NULL, NULL, NULL, TIMESTAMP '2026-01-01 00:00:00');

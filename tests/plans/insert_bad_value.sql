--setup=workload
--fail=error at line 3, column 1: column `amount` of `events` is DOUBLE: Cast error: Cannot cast string 'lots' to value of Float64 type
INSERT INTO events VALUES ('e1', 'u1', 'purchase', NULL, 'p1', 'lots', TIMESTAMP '2026-01-01 00:00:00');

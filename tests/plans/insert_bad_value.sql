--setup=workload
--fail=error at line 3, column 1: `events`, row 1: column `amount`: 'lots' does not convert to DOUBLE
INSERT INTO events VALUES ('e1', 'u1', 'purchase', NULL, 'p1', 'lots', TIMESTAMP '2026-01-01 00:00:00');

--setup=workload
--fail=error at line 4, column 1: column `ts`: integers are not read as times (which unit?); give a TIMESTAMP or text such as '2026-01-01 10:00:00'
INSERT INTO events VALUES ('e1', 'u1', 'login', NULL, NULL, NULL, TIMESTAMP '2026-01-01 00:00:00');
INSERT INTO events VALUES ('e2', 'u1', 'login', NULL, NULL, NULL, 1767225600);

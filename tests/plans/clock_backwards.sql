--fail=error at line 3, column 1: the clock never goes backwards: it is at 2026-03-01 09:00:00, and ADVANCE TIME asked for 2026-02-01 00:00:00
ADVANCE TIME TO TIMESTAMP '2026-03-01 09:00:00';
ADVANCE TIME TO TIMESTAMP '2026-02-01 00:00:00';

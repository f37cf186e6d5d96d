-- The manual clock starts at the epoch and moves only forward.
SELECT NOW();
ADVANCE TIME TO TIMESTAMP '2026-03-01 09:00:00';
ADVANCE TIME BY INTERVAL '90 minutes';
SELECT NOW() AS now, NOW() - INTERVAL '1 day' AS yesterday;
ADVANCE TIME BY INTERVAL '0 seconds';

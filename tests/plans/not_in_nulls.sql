--setup=workload
-- NOT IN over a column that can be NULL: one NULL on the inside makes NOT IN unknown for
-- every row, so the anti join must be NULL-aware (unlike NOT EXISTS).
EXPLAIN CREATE SEGMENT no_page_match AS
SELECT user_id FROM profiles WHERE country NOT IN (SELECT page FROM events WHERE event_type = 'page_view');
EXPLAIN CREATE SEGMENT no_exists_match AS
SELECT user_id FROM profiles p
WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.page = p.country AND e.event_type = 'page_view');

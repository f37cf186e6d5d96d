--setup=workload
CREATE SEGMENT viewers AS SELECT DISTINCT user_id FROM events WHERE event_type = 'page_view';
CREATE SEGMENT buyers AS SELECT DISTINCT user_id FROM events WHERE event_type = 'purchase';
EXPLAIN CREATE SEGMENT engaged AS SELECT user_id FROM viewers UNION SELECT user_id FROM buyers;
EXPLAIN CREATE SEGMENT browsers_who_buy AS SELECT user_id FROM viewers INTERSECT SELECT user_id FROM buyers;
EXPLAIN CREATE SEGMENT any_activity AS
  SELECT user_id FROM events WHERE event_type = 'login' UNION ALL SELECT user_id FROM profiles;

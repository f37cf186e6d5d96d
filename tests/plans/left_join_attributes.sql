--setup=workload
-- Attributes from a table joined to an aggregate: the key stays unique.
EXPLAIN CREATE SEGMENT spenders AS
SELECT p.user_id, p.country, s.total
FROM profiles p LEFT JOIN (SELECT user_id, SUM(amount) AS total FROM events GROUP BY user_id) s
  ON s.user_id = p.user_id
WHERE p.lifetime_value > 100;

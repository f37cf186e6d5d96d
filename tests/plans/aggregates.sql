--setup=workload
EXPLAIN CREATE SEGMENT shoppers AS
SELECT user_id, COUNT(DISTINCT product_id) AS products, MIN(amount) AS smallest, MAX(amount) AS largest,
       AVG(amount) AS average, BOOL_OR(page = '/pricing') AS saw_pricing
FROM events GROUP BY user_id HAVING COUNT(*) > 10;

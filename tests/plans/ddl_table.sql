-- A table: rows upserted by a one-column primary key, declared inline or as a constraint.
CREATE TABLE profiles (user_id TEXT PRIMARY KEY, country TEXT, lifetime_value DOUBLE);
CREATE TABLE plans (plan_id INT, name VARCHAR(40), monthly_price REAL, PRIMARY KEY (plan_id));
CREATE TABLE IF NOT EXISTS plans (plan_id INT PRIMARY KEY);
DESCRIBE plans;
SHOW TABLES;

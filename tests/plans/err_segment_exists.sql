--setup=workload
--fail=error at line 4, column 16: segment `s` already exists
CREATE SEGMENT s AS SELECT user_id FROM profiles;
CREATE SEGMENT s AS SELECT user_id FROM profiles;

--setup=workload
--fail=error at line 5, column 27: segment `a` would read itself (a cycle through b)
CREATE SEGMENT a AS SELECT user_id FROM profiles;
CREATE SEGMENT b AS SELECT user_id FROM a;
CREATE OR REPLACE SEGMENT a AS SELECT user_id FROM b;

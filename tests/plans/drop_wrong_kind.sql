--setup=workload
--fail=error at line 3, column 13: `profiles` is a table, not a stream; write DROP TABLE profiles
DROP STREAM profiles;

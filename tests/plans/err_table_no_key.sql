--fail=syntax error at line 2, column 14: table `profiles` needs a PRIMARY KEY: rows are upserted by it (write e.g. `user_id TEXT PRIMARY KEY`)
CREATE TABLE profiles (user_id TEXT, country TEXT);

--fail=error at line 2, column 15: stream `clicks` has no event-time column `ts`
CREATE STREAM clicks (visitor TEXT, url TEXT, at TIMESTAMP);

-- A stream: append-only events. The event time defaults to `ts`, the key to the first column.
CREATE STREAM clicks (visitor TEXT NOT NULL, url TEXT, ts TIMESTAMP NOT NULL);
CREATE STREAM orders (order_id BIGINT, customer TEXT, total DOUBLE, placed_at TIMESTAMP)
  WITH (event_time = 'placed_at', key = 'customer');
CREATE STREAM IF NOT EXISTS clicks (x TEXT, ts TIMESTAMP);
DESCRIBE clicks;
DESCRIBE orders;
SHOW STREAMS;

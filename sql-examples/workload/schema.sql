-- The reference workload's schema (shared/WORKLOAD.md): user events and profiles.

CREATE STREAM events (
  event_id   TEXT NOT NULL,      -- unique per event
  user_id    TEXT NOT NULL,
  event_type TEXT NOT NULL,      -- page_view, add_to_cart, login, purchase, email_open
  page       TEXT,               -- for page_view
  product_id TEXT,               -- for add_to_cart and purchase
  amount     DOUBLE,             -- for purchase
  ts         TIMESTAMP NOT NULL  -- event time
) WITH (event_time = 'ts', key = 'user_id');

CREATE TABLE profiles (
  user_id        TEXT PRIMARY KEY,
  country        TEXT,
  lifetime_value DOUBLE,
  signup_at      TIMESTAMP
);

-- order-api: Idempotency-Key -> the order it created. A retried POST with
-- the same key and body gets the same order id (and order.created is
-- published again, which the orchestrator drops as a duplicate); the same
-- key with another body is a 409.
CREATE TABLE idempotency (
  key        TEXT PRIMARY KEY,
  body_hash  TEXT NOT NULL,
  order_id   TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Every accepted order, as published.
CREATE TABLE orders (
  order_id   TEXT PRIMARY KEY,
  body       BLOB NOT NULL,                -- the order.created envelope
  created_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

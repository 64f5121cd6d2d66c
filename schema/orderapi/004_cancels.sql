-- A customer's cancel (POST /orders/{id}/cancel): at most one per order,
-- stored in the same transaction as its order.cancel_requested outbox row.
-- status follows the orchestrator's answer: 'requested' until an event
-- decides it, 'refused' on order.cancel_refused (refusal and state say
-- why and where the saga was), 'cancelled' on order.cancelled. A refused
-- cancel stays refused: the customer asked once and was told.
CREATE TABLE cancels (
  order_id     TEXT PRIMARY KEY,
  status       TEXT NOT NULL CHECK (status IN
                 ('requested', 'refused', 'cancelled')),
  reason       TEXT NOT NULL,              -- the customer's, or ''
  actor        TEXT NOT NULL,              -- 'customer'
  refusal      TEXT NOT NULL DEFAULT '',   -- the orchestrator's reason
  state        TEXT NOT NULL DEFAULT '',   -- the saga's state when refused
  requested_at INTEGER NOT NULL,           -- ms since the epoch
  updated_at   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Idempotency-Key of a cancel -> its order. Its own table: a key names
-- one request, and the orders' keys map to the order they created
-- (idempotency.order_id is UNIQUE). body_hash covers the order id and the
-- body, so the same key on another order is a 409 too.
CREATE TABLE cancel_keys (
  key        TEXT PRIMARY KEY,
  body_hash  TEXT NOT NULL,
  order_id   TEXT NOT NULL,
  created_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

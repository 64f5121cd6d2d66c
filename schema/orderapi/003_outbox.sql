-- order-api's transactional outbox: every message order-api owes the
-- broker, stored in the same transaction as what it announces (an order,
-- later a cancel request) and deleted once the broker confirms it. A row
-- is a finished AMQP message: the relay publishes it as it is, so a row
-- published again after a crash keeps its message id (consumers dedup).
-- seq is AUTOINCREMENT so that it never goes back after a delete: the
-- relay reads the rows after the last seq it handed to the bus.
CREATE TABLE outbox (
  seq            INTEGER PRIMARY KEY AUTOINCREMENT,
  message_id     TEXT NOT NULL UNIQUE,
  exchange       TEXT NOT NULL,
  routing_key    TEXT NOT NULL,
  type           TEXT NOT NULL,
  correlation_id TEXT NOT NULL,            -- the order id
  traceparent    TEXT,
  mandatory      INTEGER NOT NULL,         -- 1: an unroutable copy is kept
  body           BLOB NOT NULL,
  created_at     INTEGER NOT NULL          -- ms since the epoch
) STRICT;

-- orders.confirmed_at (002) is no longer written: a row's deletion from
-- the outbox is its confirm. Orders the old order-api stored but never
-- saw confirmed (its POST answered 503): they were accepted for all the
-- client knows, so they go out now, with the message id they always had.
INSERT INTO outbox(message_id, exchange, routing_key, type, correlation_id,
                   traceparent, mandatory, body, created_at)
  SELECT 'created-' || order_id, 'order_events', 'order.created',
         'order.created', order_id, NULL, 1, body, created_at
  FROM orders WHERE confirmed_at IS NULL ORDER BY created_at;

-- What order-api knows of each order's saga, from the order.* domain
-- events on order_events (its queue order-api.events). One row per order:
-- the latest event by the event's own time; a final event (completed,
-- failed, cancelled) is never replaced by a non-final one. Recording an
-- event twice changes nothing, so redeliveries are harmless. order.created
-- is order-api's own and is not recorded. An event for an order this
-- database does not hold is recorded too (a restored backup, another
-- front door): GET answers from whichever table knows the order.
CREATE TABLE order_status (
  order_id      TEXT PRIMARY KEY,
  last_event    TEXT NOT NULL,             -- e.g. order.payment_success
  state         TEXT NOT NULL,             -- the statechart step, or ''
  message_id    TEXT NOT NULL,             -- of last_event
  final         INTEGER NOT NULL,          -- 1 for completed/failed/cancelled
  event_at      INTEGER NOT NULL,          -- the event's time, ms
  updated_at    INTEGER NOT NULL           -- when recorded here, ms
) STRICT, WITHOUT ROWID;

-- notification-svc: its outbox, one message per event (event_id unique).
CREATE TABLE notifications (
  seq      INTEGER PRIMARY KEY,
  event_id TEXT NOT NULL UNIQUE,
  saga_id  TEXT NOT NULL,
  kind     TEXT NOT NULL,                  -- the event type, or order.confirmation
  text     TEXT NOT NULL,
  at       INTEGER NOT NULL
) STRICT;
CREATE INDEX notifications_by_saga ON notifications(saga_id);

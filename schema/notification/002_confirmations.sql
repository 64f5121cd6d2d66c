-- The order confirmations scheduled and not yet sent: one row per
-- order.completed, written in the same transaction as its notification,
-- and turned into a row of `notifications` when due (notification-svc's
-- own timer; no broker message, so a SIGKILL loses nothing and a
-- restart sends what fell due meanwhile).
CREATE TABLE confirmations (
  event_id TEXT PRIMARY KEY,              -- the notification's: confirm-<event id>
  saga_id  TEXT NOT NULL,
  text     TEXT NOT NULL,                 -- rendered when scheduled
  due_at   INTEGER NOT NULL               -- wall ms
) STRICT, WITHOUT ROWID;
CREATE INDEX confirmations_by_due ON confirmations(due_at);

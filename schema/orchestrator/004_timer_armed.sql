-- When a timer was armed. A step's timeout starts when the broker confirms
-- its command, not when the orchestrator stored it: when a command's
-- confirm comes late (the broker was away), the loop moves the timer the
-- command armed by the delay (store_outbox_delete). armed_at tells that
-- timer from a later one of the same saga.
ALTER TABLE timers ADD COLUMN armed_at INTEGER NOT NULL DEFAULT 0;

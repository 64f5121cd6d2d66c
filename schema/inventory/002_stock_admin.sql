-- Stock as an operation: restocks and adjustments while the daemon runs
-- (inventory.stock_set and inventory.stock_add, sent by `sagactl stock`),
-- each recorded as a movement with who asked and why. SQLite cannot change
-- a CHECK constraint, so the table is rebuilt with its rows.
CREATE TABLE movements_new (
  seq     INTEGER PRIMARY KEY,
  saga_id TEXT,
  sku     TEXT NOT NULL,
  delta   INTEGER NOT NULL,
  kind    TEXT NOT NULL
          CHECK (kind IN ('seed', 'reserve', 'release', 'set', 'add')),
  at      INTEGER NOT NULL,
  actor   TEXT,  -- set, add: who asked
  reason  TEXT   -- set, add: why
) STRICT;
INSERT INTO movements_new(seq, saga_id, sku, delta, kind, at)
  SELECT seq, saga_id, sku, delta, kind, at FROM movements;
DROP TABLE movements;
ALTER TABLE movements_new RENAME TO movements;

-- shipping-svc: one shipment per saga.
CREATE TABLE shipments (
  saga_id  TEXT PRIMARY KEY,
  tracking TEXT NOT NULL UNIQUE,
  country  TEXT NOT NULL,
  category TEXT NOT NULL,
  instance TEXT NOT NULL,                  -- which instance created it
  status   TEXT NOT NULL CHECK (status IN ('created', 'cancelled')),
  at       INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

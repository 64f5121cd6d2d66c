-- inventory-svc: stock per sku and each saga's reservation.
-- Conservation: for every sku, the stock seeded = on_hand + the quantity
-- held by reservations (held by orders in flight or shipped).
CREATE TABLE stock (
  sku     TEXT PRIMARY KEY,
  on_hand INTEGER NOT NULL CHECK (on_hand >= 0)  -- never negative
) STRICT, WITHOUT ROWID;

-- What each saga holds: reserved all lines at once or none.
CREATE TABLE reservations (
  saga_id  TEXT NOT NULL,
  sku      TEXT NOT NULL REFERENCES stock(sku),
  quantity INTEGER NOT NULL CHECK (quantity > 0),
  at       INTEGER NOT NULL,
  PRIMARY KEY (saga_id, sku)
) STRICT, WITHOUT ROWID;

-- Every stock movement, for audit: seed, reserve (-), release (+).
CREATE TABLE movements (
  seq     INTEGER PRIMARY KEY,
  saga_id TEXT,
  sku     TEXT NOT NULL,
  delta   INTEGER NOT NULL,
  kind    TEXT NOT NULL CHECK (kind IN ('seed', 'reserve', 'release')),
  at      INTEGER NOT NULL
) STRICT;

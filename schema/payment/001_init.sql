-- payment-svc: one payment per saga and the ledger of money movements.
-- Balance: sum(charge) - sum(refund) = what completed card orders paid.
CREATE TABLE payments (
  saga_id      TEXT PRIMARY KEY,                -- never two per saga
  method       TEXT NOT NULL CHECK (method IN ('card', 'cod')),
  amount_cents INTEGER NOT NULL CHECK (amount_cents >= 0),
  currency     TEXT NOT NULL,
  charge_id    TEXT NOT NULL,
  status       TEXT NOT NULL CHECK (status IN
                 ('charged', 'refunded', 'collection_due', 'collection_cancelled')),
  at           INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE ledger (
  seq          INTEGER PRIMARY KEY,
  saga_id      TEXT NOT NULL,
  kind         TEXT NOT NULL CHECK (kind IN
                 ('charge', 'refund', 'collection', 'collection_cancel')),
  amount_cents INTEGER NOT NULL CHECK (amount_cents >= 0),
  currency     TEXT NOT NULL,
  charge_id    TEXT NOT NULL,
  at           INTEGER NOT NULL
) STRICT;
CREATE INDEX ledger_by_saga ON ledger(saga_id);
-- never a refund without a charge, never two refunds of one charge
CREATE UNIQUE INDEX one_refund ON ledger(saga_id, kind) WHERE kind = 'refund';
CREATE UNIQUE INDEX one_charge ON ledger(saga_id, kind) WHERE kind = 'charge';

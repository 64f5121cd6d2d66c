-- payment-svc: how often the simulated gateway declined a saga's charge
-- for the token set as decline_then_accept_token (a card declined
-- decline_times, then accepted), kept here so a restart goes on counting.
CREATE TABLE flaky_declines (
  saga_id  TEXT PRIMARY KEY,
  declined INTEGER NOT NULL CHECK (declined >= 0)
) STRICT, WITHOUT ROWID;

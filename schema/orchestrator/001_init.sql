-- The orchestrator's database: one file, one writer (saga-orchestrator).
-- sagactl and order-api open it read-only. Times are ms since the epoch.

-- Every statechart version a saga has started with, with its source, so a
-- saga always runs on the chart it started with even after the file changed.
CREATE TABLE charts (
  version   TEXT PRIMARY KEY,          -- 16 hex digits (chart.h)
  name      TEXT NOT NULL,             -- `saga:` name
  file      TEXT NOT NULL,             -- where it was loaded from
  source    TEXT NOT NULL,             -- the YAML text
  loaded_at INTEGER NOT NULL
) STRICT;

-- One row per saga (= per order). `record` is the engine's saga record
-- (engine.h saga_to_value, msgpack); the other columns repeat what sagactl
-- filters on.
CREATE TABLE sagas (
  id               TEXT PRIMARY KEY,   -- the order id
  chart            TEXT NOT NULL,
  chart_version    TEXT NOT NULL REFERENCES charts(version),
  status           TEXT NOT NULL,      -- running|compensating|completed|failed|stuck|aborted
  state            TEXT NOT NULL,
  phase            TEXT NOT NULL,
  attempt          INTEGER NOT NULL,
  record           BLOB NOT NULL,
  trace            TEXT,               -- W3C traceparent of the order.created
  started_at       INTEGER NOT NULL,
  state_entered_at INTEGER NOT NULL,
  updated_at       INTEGER NOT NULL
) STRICT;
CREATE INDEX sagas_by_status ON sagas(status, updated_at);

-- The timeline of each saga: every event in, every command and event out.
CREATE TABLE history (
  seq        INTEGER PRIMARY KEY,
  saga_id    TEXT NOT NULL,
  at         INTEGER NOT NULL,
  kind       TEXT NOT NULL,            -- start|reply|timeout|operator|send|emit|finish|ignored|rejected
  state      TEXT NOT NULL,            -- the saga's state after the event
  status     TEXT NOT NULL,
  detail     TEXT NOT NULL,            -- message type, engine note
  message_id TEXT,
  actor      TEXT,                     -- operator actions: who
  reason     TEXT                      -- operator actions: why
) STRICT;
CREATE INDEX history_by_saga ON history(saga_id, seq);

-- Message ids already processed: a redelivered message is dropped here.
CREATE TABLE inbox (
  message_id  TEXT PRIMARY KEY,
  received_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Messages committed but not yet confirmed by the broker. Published after
-- commit; a row is deleted once its publisher confirm arrives; after a
-- crash every row left is published again.
CREATE TABLE outbox (
  seq         INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: the loop publishes by seq
  saga_id     TEXT NOT NULL,
  exchange    TEXT NOT NULL,
  routing_key TEXT NOT NULL,
  reply_to    TEXT,                    -- commands: where the participant replies
  message_id  TEXT NOT NULL,
  type        TEXT NOT NULL,
  traceparent TEXT,
  body        BLOB NOT NULL,
  created_at  INTEGER NOT NULL
) STRICT;

-- Each saga's one pending timer (engine.h: a timer is identified by seq).
CREATE TABLE timers (
  saga_id TEXT PRIMARY KEY,
  seq     INTEGER NOT NULL,
  fire_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX timers_by_due ON timers(fire_at);

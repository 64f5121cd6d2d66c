-- Who this database belongs to (orchestrator/svc/shard.h): key 'shard'
-- ('none' for an unsharded orchestrator, else the shard's index), the
-- time the shard joined the hash ring ('joined_at') and the last ring
-- change it heard of ('ring_changed_at'), in ms since the epoch.
CREATE TABLE node (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;

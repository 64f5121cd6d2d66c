-- How long a saga still moving (running or compensating) has been in its
-- state: the console's /stuck and the gauge saga_overdue_sagas look, per
-- chart version and state with a `stuck_after` (statecharts/README.md,
-- 5.7), for the sagas that entered it before now minus that limit: a range
-- scan of this index. It is partial: finished sagas (nearly all of a large
-- database) and stuck ones have no entry, so it stays as small as the work
-- in flight and a saga's entry goes when it ends or gets stuck. Queries
-- must repeat the condition (status IN ('running', 'compensating')) for
-- SQLite to use it.
CREATE INDEX sagas_waiting ON sagas(chart_version, state, state_entered_at)
  WHERE status IN ('running', 'compensating');

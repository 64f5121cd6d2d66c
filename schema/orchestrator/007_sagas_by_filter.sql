-- The console's and `sagactl list`'s filters by status and by chart and
-- state, newest first and paged by key like the unfiltered list
-- (005_sagas_by_start): each index serves its filter in the list's order,
-- so a page costs its own rows, not every saga the filter skips (with a
-- million sagas, status=stuck read 50 ms to 1 s of sagas_by_start). The
-- loop pays one entry move per status change (start, end) for the first
-- and per state change for the second, as it already does for
-- sagas_by_status (keyed by updated_at).
CREATE INDEX sagas_by_status_start ON sagas(status, started_at DESC, id);
CREATE INDEX sagas_by_state_start ON sagas(chart, state, started_at DESC, id);

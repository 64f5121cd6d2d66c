-- The console (orchestrator/svc/console.h) and `sagactl list` show sagas
-- newest first and page by key: (started_at, id) from the last row shown.
-- This index serves that order without a sort, so a page costs the rows it
-- reads, not the rows before it. It is keyed by start, which never changes
-- after the insert, so the saga loop's updates do not move its entries.
CREATE INDEX sagas_by_start ON sagas(started_at DESC, id);

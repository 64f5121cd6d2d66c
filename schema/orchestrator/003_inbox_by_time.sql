-- The inbox is pruned by age (saga-orchestrator --inbox-days, default 7):
-- an index on the time a message was received keeps each pruning step a
-- short range scan however large the inbox is.
CREATE INDEX inbox_by_time ON inbox(received_at);

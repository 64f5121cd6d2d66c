-- When the broker confirmed the order's order.created. A retried POST
-- (same Idempotency-Key and body) publishes again only if it was never
-- confirmed: a second copy could reach another orchestrator shard after
-- the hash ring changed (orchestrator/svc/shard.h).
ALTER TABLE orders ADD COLUMN confirmed_at INTEGER;

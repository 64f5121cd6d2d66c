/* shard.h -- orchestrator shards: which orders this orchestrator owns, and
 * how ownership stays single when shards come and go.
 *
 * `saga-orchestrator --shard I/N` runs shard I (1..N) of N. Its queues are
 * orchestrator-I.orders, orchestrator-I.replies (routing key
 * orchestrator-I, which every command it sends names as reply_to) and
 * orchestrator-I.control. order.created reaches the orders queues through
 * the consistent-hash exchange `orchestrator.shards` (hashing the
 * correlation id, which is the order id), bound from order_events with
 * key order.created; each shard binds its orders queue to it with weight
 * SHARD_WEIGHT. So each order id has exactly one owner while the ring
 * (the set of bound shards) stays the same, and each shard has its own
 * SQLite file.
 *
 * When the ring changes, an order id can move to another shard. Only a
 * *new copy* of an order.created that was already routed can then reach
 * the wrong shard; every such copy is either published before the ring
 * changed (a publish held back, an operator's old message) or is a
 * publisher's resend after a lost connection (the bus marks those
 * `republished`). So a shard refuses, to orchestrator.dlq with the
 * reason, an order.created for a saga it does not know when:
 *   - it was published before this shard joined the ring (joined_at), or
 *   - it is a resend published before the last ring change the shard was
 *     told of (ring_changed_at; a leaving shard announces it on the
 *     fanout exchange orchestrator.ring, bound to every control queue,
 *     before it unbinds).
 * The times:
 *   - joined_at is recorded once the shard's orders queue is bound to the
 *     ring (the first time the daemon is connected with its topology), so
 *     an order published after it was routed by a ring that has the shard;
 *   - a publish time is the bus's x-published-ms header, to the
 *     millisecond. A message with only an AMQP timestamp (another
 *     publisher) has whole seconds, decided on the safe side: the second
 *     of the change counts as before. A message with neither cannot be
 *     judged and is accepted;
 *   - a resend is judged with a margin, SHARD_RESEND_MARGIN_MS after the
 *     join or the change: it covers the leaving shard's unbind after its
 *     notice and the publishers' clocks running ahead of ours. Resends are
 *     rare, so the margin costs little.
 * A refused order is not lost: the operator finds its owner with
 * `sagactl --shards F show` and replays it (sagactl dlq replay stamps it
 * anew).
 *
 * The identity is kept in the database (table node): a database made by
 * shard 2 cannot be opened as shard 1 or unsharded, which would start
 * its sagas twice or strand them.
 */
#ifndef SAGA_SHARD_H
#define SAGA_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define SHARD_MAX      64
#define SHARD_EXCHANGE "orchestrator.shards"
#define SHARD_RING     "orchestrator.ring"
#define SHARD_WEIGHT   "10"
#define SHARD_NOTICE   "orchestrator.ring_changed"
/* A resend published less than this after a shard joined or the ring
 * changed is refused (when the shard does not know the saga). */
#define SHARD_RESEND_MARGIN_MS 1000

struct shard {
	int index, count; /* 0/0: unsharded */
	char orders_q[64], replies_q[64], control_q[64], reply_key[64];
};

/* "I/N" with 1 <= I <= N <= SHARD_MAX, or NULL for unsharded, into *sh
 * (with its queue names). -1 with the reason in err. */
int shard_parse(const char *spec, struct shard *sh, char *err, size_t errlen);

/* What the database remembers (ms since the epoch; 0 if never). */
struct shard_times {
	int64_t joined_ms, ring_changed_ms;
};

/* Claims the store's database for this shard: records the identity on
 * first use, refuses (-1, reason in err) a database that belongs to
 * another shard, and reads the times (joined_ms 0: never joined). */
int shard_claim(struct store *st, const struct shard *sh, struct shard_times *t,
                char *err, size_t errlen);

/* Records that the shard is in the ring from at_ms, if it never was
 * (joined_ms 0): called once its orders queue is bound. -1 on a database
 * error (store_error). */
int shard_note_joined(struct store *st, struct shard_times *t, int64_t at_ms);

/* Remembers a ring change at at_ms (kept if later than the known one). -1
 * on a database error (store_error). */
int shard_note_ring_change(struct store *st, struct shard_times *t,
                           int64_t at_ms);

/* The pure decision: NULL to accept an order.created published at
 * published_ms (ms since the epoch: exact, or a second's start), or why
 * it is refused. */
const char *shard_refuse(const struct shard *sh, const struct shard_times *t,
                         int64_t published_ms, bool republished, bool known);

/* The control queue of the orchestrator whose database has the identity
 * `identity` (store_saga_shard: "none", an index, or ""):
 * orchestrator-I.control, or orchestrator.control when unsharded. Cannot
 * fail (the name is cut to cap). */
void shard_control_queue(const char *identity, char *buf, size_t cap);

#endif

/* loop.h -- the orchestrator's durable loop (docs/architecture.md):
 * batch deliveries, apply them in one transaction, commit, publish the
 * outbox with confirms, acknowledge.
 *
 * The broker sits behind `struct loop_transport`, a handful of function
 * pointers: loop_bus.c adapts lib/bus (RabbitMQ) to it, and the unit tests
 * use an in-memory transport with scripted participants. So the loop's
 * logic (batching, dedup, commit-before-ack, republishing the outbox,
 * retrying a batch whose commit failed) is tested without a broker.
 *
 * Threading: none. The transport calls loop_deliver() and loop_confirmed()
 * from inside its poll function, on the caller's thread.
 *
 * Failure contract: loop_turn() returns 0 when the turn ran (a commit that
 * failed counts: the batch is kept, nothing acknowledged, and retried on a
 * later turn with backoff; loop_healthy() turns false); -1 only when the
 * transport failed for good.
 */
#ifndef SAGA_LOOP_H
#define SAGA_LOOP_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orch.h"
#include "store.h"

enum loop_source {
	SRC_ORDERS,  /* order.created events */
	SRC_REPLIES, /* participants' replies */
	SRC_CONTROL, /* operator requests from sagactl */
};

/* A delivery as the transport hands it over; borrowed for the call. */
struct loop_delivery {
	uint64_t ref; /* the transport's handle, given back to ack/reject */
	enum loop_source source;
	const void *body;
	size_t len;
	const char *message_id;   /* AMQP property, may be NULL */
	const char *content_type; /* may be NULL */
	const char *traceparent;  /* may be NULL */
};

enum loop_confirm {
	CONFIRM_ACK,      /* the broker has it */
	CONFIRM_NACK,     /* the broker refused it: publish again */
	CONFIRM_RETURNED, /* unroutable (mandatory): nobody will get it */
};

struct loop;

struct loop_transport {
	void *ctx;
	/* Publishes an outbox row; `tag` (the row's seq) comes back through
	 * loop_confirmed(). -1: not sent (it will be tried again). */
	int (*publish)(void *ctx, const struct store_outbox *m, uint64_t tag);
	/* Settles deliveries after commit: acks[] positively, then each
	 * rejects[i] to the dead-letter queue with reasons[i]. */
	int (*settle)(void *ctx, const uint64_t *acks, size_t nacks,
	              const uint64_t *rejects, const char *const *reasons,
	              size_t nrejects);
	/* Waits up to timeout_ms for traffic, calling loop_deliver and
	 * loop_confirmed. -1: broken for good. */
	int (*poll)(void *ctx, struct loop *l, int timeout_ms);
	/* Stops consuming (drain). */
	int (*stop_consuming)(void *ctx);
	/* Messages published and not yet confirmed (outbox rows: a row
	 * inside a bundle counts). */
	size_t (*unconfirmed)(void *ctx);
	/* True while the transport can publish (connected to the broker).
	 * Due timers wait while it cannot, and for reconnect_grace_ms after
	 * it can again: a timeout must not run against a command nobody
	 * could send. NULL: always. */
	bool (*ready)(void *ctx);
	/* Called after each pass over the outbox: a transport that holds
	 * rows back to send several in one message (bundles of commands)
	 * sends them now. NULL: nothing is held back. */
	void (*flush)(void *ctx);
};

struct loop_config {
	size_t batch_max;       /* B: deliveries per transaction */
	int batch_wait_ms;      /* W: how long a partial batch may wait */
	size_t timers_per_turn; /* timers fired per transaction */
	size_t publish_window;  /* outbox rows in flight at most */
	/* The inbox (message ids seen, for dedup) keeps an id this long;
	 * 0 keeps them forever. Older ids are deleted, prune_per_turn at a
	 * time, with the next transaction after LOOP_PRUNE_EVERY_MS. A
	 * message redelivered after that is handled again: replies to
	 * finished steps are ignored by the engine and an order.created by
	 * its order id, so this only has to outlive any redelivery. */
	int64_t inbox_retention_ms;
	size_t prune_per_turn; /* 0: 1000 */
	/* How long due timers still wait once the transport is ready again
	 * (and after start): long enough to hear who is taking commands
	 * (lib/presence.h) before judging a timeout. */
	int64_t reconnect_grace_ms;
};

/* Borrows everything for its whole life. NULL on out of memory. */
struct loop *loop_new(struct store *st, struct orch *o,
                      const struct loop_transport *t,
                      const struct loop_config *cfg);
void loop_free(struct loop *l);

/* From the transport's poll: one delivery. It is decoded and kept until
 * the batch commits; the loop acks or rejects it through settle(). */
void loop_deliver(struct loop *l, const struct loop_delivery *d);
/* From the transport's poll: the broker's answer for an outbox row. */
void loop_confirmed(struct loop *l, uint64_t tag, enum loop_confirm c);

/* One turn at time now_ms: poll -- a partial batch up to its batch wait;
 * nothing batched up to the next timer, the confirmed rows' deletion or
 * pruning, at most LOOP_IDLE_MS -- then commit a batch if one is ready,
 * publish, settle. */
int loop_turn(struct loop *l, int64_t now_ms);

/* Runs turns until *stop is set, then drains: stops consuming, commits
 * what it has, publishes the outbox and waits (up to drain_ms) for the
 * confirms. *reload set: calls on_reload(arg) between turns and clears it.
 * Returns 0 on a clean drain. */
int loop_run(struct loop *l, volatile sig_atomic_t *stop,
             volatile sig_atomic_t *reload, void (*on_reload)(void *arg),
             void *arg, int drain_ms);

/* Processes whatever is batched now and publishes, regardless of size and
 * age (tests, drain). Same contract as loop_turn. */
int loop_flush(struct loop *l, int64_t now_ms);

/* False while the last commit failed (e.g. disk full); why in *reason. */
bool loop_healthy(const struct loop *l, const char **reason);
/* Deliveries waiting in the batch; outbox rows published, unconfirmed. */
size_t loop_batched(const struct loop *l);
/* Counters: dead-lettered deliveries, batches committed, commit failures. */
#define LOOP_PRUNE_EVERY_MS 10000
/* Confirmed outbox rows are deleted with the next batch, or on their own
 * once they have waited this long. */
#define LOOP_CONFIRMED_WAIT_MS 50
/* The longest a turn with nothing batched polls (nothing due sooner):
 * 10 turns a second when idle, and what the transport does between polls
 * (the orchestrator's HTTP endpoint) waits at most this long. */
#define LOOP_IDLE_MS 100

struct loop_stats {
	uint64_t batches, deliveries, dead_lettered, commit_failures;
	uint64_t inbox_pruned;
	uint64_t published, confirmed, returned, nacked;
};
const struct loop_stats *loop_stats(const struct loop *l);

#endif

/* durable.h -- the durable loop every daemon runs (docs/architecture.md):
 * batch deliveries, apply them in one transaction, commit, acknowledge,
 * publish the outbox with confirms, delete what the broker confirmed.
 *
 * Two seams keep it small and testable:
 *
 *   - the transport (`struct durable_transport`): the broker. lib/bus
 *     adapters live in the daemons; the unit tests use in-memory ones.
 *   - the handler (`struct durable_handler`): the daemon's work inside the
 *     transaction -- its database's BEGIN/COMMIT, one delivery applied
 *     (dedup, state, outbox rows written), due timers fired, old dedup
 *     ids pruned, and its outbox read and deleted by sequence number. The
 *     loop knows no schema: the orchestrator plugs in its store and
 *     engine, a participant its `part_processed` and command handlers.
 *
 * The contract, the same for every daemon:
 *
 *   1. A delivery is decoded (lib/envelope.h) when it arrives; one that
 *      cannot be (or whose content type is not msgpack, or whose
 *      message_id property differs from its envelope id) is dead-lettered
 *      with the reason, after the commit like any other.
 *   2. A batch (up to batch_max deliveries, or batch_wait_ms, or as soon
 *      as the input is drained) is applied in one transaction with the
 *      timers due, a share of the pruning and the deletion of the outbox
 *      rows confirmed since the last commit. Everything the batch sends
 *      is an outbox row written in that transaction.
 *   3. Only after COMMIT: each delivery is settled (acked, dead-lettered
 *      or sent round the retry path) and the new outbox rows published.
 *      A commit that fails keeps the batch in memory, acknowledges
 *      nothing, and is retried with backoff (durable_healthy() false
 *      meanwhile). Deliveries stay unacked at the broker, so the
 *      prefetch window stops the flow.
 *   4. Rows are published in seq order, at most publish_window in
 *      flight; a NACKed row goes out again at the next turn (then,
 *      while the transport cannot take it, every DURABLE_RESEND_WAIT_MS;
 *      never dropped); a RETURNED row (unroutable)
 *      or a REFUSED one (the transport can never send it: too large) is
 *      logged and deleted. Rows left by a crash go out at start.
 *
 * Time: every wait, backoff and deadline is on the monotonic clock;
 * wall-clock time is only what gets stored (timer due times, inbox and
 * outbox timestamps). struct durable_time carries both.
 *
 * Logs: while a delivery is settled (its dead-letter line, and what the
 * transport logs about it) log.h's trace is the delivery's traceparent.
 *
 * Threading: none, but for durable_submit. The transport calls
 * durable_deliver() and durable_confirmed() from inside its poll
 * function, on the caller's thread.
 *
 * Local input (the mailbox): another thread of the process (the
 * orchestrator console's HTTP threads acting on a saga) hands the loop
 * work with durable_submit() and waits for it. The loop takes what was
 * submitted at its next turn (a turn polls at most DURABLE_IDLE_MS, or
 * the batch's wait, so a request waits about that long at worst), calls
 * handler.local for each inside that turn's transaction, after the
 * deliveries, and wakes the submitter only once COMMIT returned; a
 * failed commit (or a loop whose commits are failing) answers the
 * submitter with the reason at once, it is not retried.
 *
 * Failure contract: durable_turn() returns 0 when the turn ran (a failed
 * commit counts); -1 only when the transport failed for good.
 */
#ifndef SAGA_DURABLE_H
#define SAGA_DURABLE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h"

/* A delivery as the transport hands it over; borrowed for the call. */
struct durable_delivery {
	uint64_t ref; /* the transport's handle, given back to settle */
	int source;   /* the transport's label of its queue, for the handler */
	const void *body;
	size_t len;
	const char *message_id;   /* AMQP property, may be NULL */
	const char *content_type; /* may be NULL */
	const char *traceparent;  /* may be NULL */
	const char *reply_to;     /* may be NULL */
	const char *user_id;      /* the broker-validated sender, may be NULL */
	int attempt;              /* 1 the first time, 2 after one retry... */
	bool bundled;             /* an item of a bundle: its sender reads
	                           * bundles */
	int64_t offset;           /* from a stream: its offset; -1 (or 0 if
	                           * the transport reads no stream: see
	                           * position) otherwise */
};

/* A decoded delivery, as the handler sees it inside the transaction. */
struct durable_item {
	uint64_t ref;
	int source;
	int attempt;
	const struct envelope *env;
	const char *traceparent; /* "" if none */
	const char *reply_to;    /* "" if none */
	const char *user_id;     /* the broker-validated sender, "" if none */
	bool bundled;            /* an item of a bundle */
};

/* An outbox row, as the handler reads it and the transport publishes it.
 * Pointers are valid for the call only. */
struct durable_msg {
	int64_t seq; /* > 0, increasing, never reused */
	const char *exchange;
	const char *routing_key;
	const char *message_id;
	const char *correlation_id; /* saga id, may be NULL */
	const char *type;
	const char *reply_to;    /* may be NULL */
	const char *traceparent; /* may be NULL */
	const void *body;
	size_t len;
	int64_t created_ms;    /* wall clock, when it was written */
	int64_t expiration_ms; /* per-message TTL, 0 for none */
	bool bundle;           /* may travel in a bundle (its reader reads
	                        * them) */
	bool mandatory;        /* unroutable is an answer (DURABLE_RETURNED) */
};

enum durable_confirm {
	DURABLE_ACK,      /* the broker has it */
	DURABLE_NACK,     /* not taken after all (the broker refused it,
	                   * or the transport ran out of memory before
	                   * sending it): publish again */
	DURABLE_RETURNED, /* unroutable (mandatory): nobody will get it */
	DURABLE_REFUSED,  /* the transport can never send it (too large):
	                   * dropped, or it would hold up every later row */
};

/* What becomes of a delivery once its batch is committed. */
enum durable_verdict {
	DURABLE_DONE,   /* acked */
	DURABLE_REJECT, /* dead-lettered with the reason */
	DURABLE_RETRY,  /* sent round the retry path (transient failure) */
};

/* Both clocks, read together: mono_ms for waits, wall_ms for storage. */
struct durable_time {
	int64_t wall_ms;
	int64_t mono_ms;
};

struct durable;

struct durable_transport {
	void *ctx;
	/* Publishes an outbox row; `tag` (the row's seq) comes back through
	 * durable_confirmed(). -1: not sent (it will be tried again). */
	int (*publish)(void *ctx, const struct durable_msg *m, uint64_t tag);
	/* Settles one delivery after its commit: DONE acks it, REJECT
	 * dead-letters it with `why`, RETRY sends it round the retry path.
	 * -1: the transport failed for good. */
	int (*settle)(void *ctx, uint64_t ref, enum durable_verdict v,
	              const char *why);
	/* Waits up to timeout_ms for traffic, calling durable_deliver and
	 * durable_confirmed. -1: broken for good. */
	int (*poll)(void *ctx, struct durable *d, int timeout_ms);
	/* Stops consuming (drain). */
	int (*stop_consuming)(void *ctx);
	/* Outbox rows published and not yet confirmed (a row inside a
	 * bundle counts). */
	size_t (*unconfirmed)(void *ctx);
	/* True while the transport can publish. Due timers wait while it
	 * cannot, and for reconnect_grace_ms after it can again. NULL:
	 * always. */
	bool (*ready)(void *ctx);
	/* Optional, for a transport that reads a stream (see position):
	 * the lowest offset of an earlier batch's delivery it has not
	 * settled yet (a dead-letter or retry copy not yet confirmed), or
	 * INT64_MAX if none. */
	int64_t (*unsettled_floor)(void *ctx);
	/* Called after each pass over the outbox: a transport that holds
	 * rows back to send several in one message sends them now. NULL:
	 * nothing is held back. */
	void (*flush)(void *ctx);
};

/* Reads the outbox: fn returning non-zero stops the scan (not an
 * error). */
typedef int (*durable_row_fn)(void *arg, const struct durable_msg *m);

/* The daemon's work. Every function returns 0, or -1 with the reason in
 * error(): a -1 inside the transaction rolls the whole batch back and
 * it is retried with backoff. The loop calls begin, then apply for each
 * delivery that decoded, fire (when due), prune (when due), commit; or
 * rollback after any -1. Optional members may be NULL. */
struct durable_handler {
	void *ctx;
	int (*begin)(void *ctx);
	int (*commit)(void *ctx);
	void (*rollback)(void *ctx);
	const char *(*error)(void *ctx);
	/* One delivery: *v says how to settle it after the commit (why:
	 * the reason for REJECT and RETRY). Its changes must be undone
	 * by the handler when *v is not DONE (a savepoint). */
	int (*apply)(void *ctx, const struct durable_item *it,
	             struct durable_time now, enum durable_verdict *v,
	             char *why, size_t whylen);
	/* Optional: the earliest due time (wall) of the daemon's timers,
	 * *found false if none; and firing up to max of them. */
	int (*timer_next)(void *ctx, int64_t *at_ms, bool *found);
	int (*fire)(void *ctx, struct durable_time now, size_t max);
	/* Optional: deletes up to max dedup ids stored before before_ms
	 * (wall); *pruned gets the count (max: more may be left). */
	int (*prune)(void *ctx, int64_t before_ms, size_t max, int64_t *pruned);
	/* Rows with seq > after_seq, oldest first, at most limit. */
	int (*outbox_scan)(void *ctx, int64_t after_seq, size_t limit,
	                   durable_row_fn fn, void *arg);
	/* Deletes a confirmed row (a no-op if gone), confirmed_ms wall. */
	int (*outbox_delete)(void *ctx, int64_t seq, int64_t confirmed_ms);
	/* Optional: one submitted request (durable_submit's req->data),
	 * applied inside the transaction. -1 rolls the batch back, as
	 * apply's; the submitter is told. */
	int (*local)(void *ctx, void *data, struct durable_time now);
	/* Optional, for a daemon that reads a stream (deliveries with an
	 * offset >= 0; one stream per loop): called inside the transaction
	 * of every batch that holds one, with the offset to resume reading
	 * from after a restart: every delivery below `next` is then
	 * committed (DONE) or safely copied away (its dead-letter or retry
	 * copy confirmed), the rest will be read again. It is the lowest
	 * of: the first delivery of the batch not DONE, the transport's
	 * unsettled_floor, and the batch's highest offset + 1. The daemon
	 * stores it with the batch (0 or -1 as apply's). */
	int (*position)(void *ctx, int64_t next);
	/* Optional: housekeeping once a commit's deliveries are settled and
	 * its rows handed to the transport, so that it never delays them
	 * (the WAL checkpoint: db.h's db_wal_checkpoint). Called after every
	 * commit that worked; what fails in it is the daemon's to log. */
	void (*after)(void *ctx);
};

struct durable_config {
	size_t batch_max;  /* B: deliveries per transaction; 0: 100 */
	int batch_wait_ms; /* W: how long a partial batch may wait */
	/* A daemon off the saga's path (notification-svc): a partial batch
	 * waits its batch_wait_ms even when the input is drained, so the
	 * daemon makes fewer, larger commits and leaves the cores to those
	 * on the path. false: group commit, as soon as the input is
	 * drained. */
	bool linger;
	size_t timers_per_turn; /* timers fired per transaction; 0: 500 */
	size_t publish_window;  /* outbox rows in flight at most; 0: 1000 */
	/* Dedup ids are kept this long; 0 keeps them forever. Older ones
	 * are deleted, prune_per_turn at a time, with the next transaction
	 * DURABLE_PRUNE_EVERY_MS after start and after the last share that
	 * found fewer than prune_per_turn (else at the next transaction).
	 * Waiting after start lets what the broker redelivers then meet its
	 * ids first. A message redelivered after that is handled again, so
	 * this only has to outlive any redelivery. */
	int64_t inbox_retention_ms;
	size_t prune_per_turn; /* 0: 1000 */
	/* How long due timers still wait once the transport is ready again
	 * (and after start). */
	int64_t reconnect_grace_ms;
};

/* Confirmed outbox rows are deleted with the next batch, or on their own
 * once they have waited this long. */
#define DURABLE_CONFIRMED_WAIT_MS 50
/* The longest a turn with nothing batched polls (nothing due sooner). */
#define DURABLE_IDLE_MS        100
#define DURABLE_PRUNE_EVERY_MS 10000
/* NACKed rows are published again at the next turn, and then, while
 * they keep coming back (the transport out of memory), this long after
 * the last try. */
#define DURABLE_RESEND_WAIT_MS 100
/* A failed commit is retried after 100 ms, doubling up to this. */
#define DURABLE_BACKOFF_MAX_MS 5000

struct durable_stats {
	uint64_t batches, deliveries, dead_lettered, retried, commit_failures;
	uint64_t undecodable; /* of dead_lettered: before the handler saw
	                       * them (durable_deliver could not decode) */
	uint64_t inbox_pruned;
	uint64_t published, confirmed, returned, refused, nacked;
};

/* Copies *t, *h and *cfg; borrows their contexts for its whole life.
 * NULL on out of memory. */
struct durable *durable_new(const struct durable_transport *t,
                            const struct durable_handler *h,
                            const struct durable_config *cfg);
void durable_free(struct durable *d);

/* Both clocks now (lib/clock.h). */
struct durable_time durable_now(void);

/* From the transport's poll: one delivery. It is decoded and kept until
 * its batch commits; the loop settles it through settle(). */
void durable_deliver(struct durable *d, const struct durable_delivery *dv);
/* From the transport's poll: the broker's answer for an outbox row. */
void durable_confirmed(struct durable *d, uint64_t tag, enum durable_confirm c);

/* One turn at `now`: poll -- a partial batch up to its batch wait;
 * nothing batched up to the next timer, the confirmed rows' deletion or
 * pruning, at most DURABLE_IDLE_MS -- then commit a batch if one is
 * ready, settle, publish. After the poll each clock reads the later of
 * the real one and the one given (tests drive time through `now`). */
int durable_turn(struct durable *d, struct durable_time now);

/* Commits whatever is batched now and publishes, regardless of size and
 * age (tests, drain). Same contract as durable_turn. */
int durable_flush(struct durable *d, struct durable_time now);

/* Publishes the outbox (rows left by a previous run go out first). */
void durable_publish(struct durable *d);

/* Runs turns until *stop is set, then drains: stops consuming, commits
 * what it has, publishes the outbox and waits (up to drain_ms) for the
 * confirms. *reload set: calls on_reload(arg) between turns and clears
 * it (reload may be NULL). Returns 0 on a clean drain. */
int durable_run(struct durable *d, const volatile sig_atomic_t *stop,
                volatile sig_atomic_t *reload, void (*on_reload)(void *arg),
                void *arg, int drain_ms);

/* A request submitted to the loop from another thread. The submitter
 * owns it (on its stack is fine) and sets `data`; the loop sets rc and
 * why. The other members are the loop's. */
struct durable_local {
	void *data; /* handed to handler.local */
	int rc;     /* 0: applied and committed; -1: not, why says */
	char why[256];
	int state_; /* the loop's: queued, taken, answered */
	struct durable_local *next_;
};

/* Thread-safe: queues req for the loop's next transaction and waits for
 * it to commit. Returns 0 when it was applied and committed; -1 when it
 * was not (the handler or the commit failed, the loop stopped or has no
 * `local`), with the reason in req->why; -2 when the loop did not take
 * it within timeout_ms (then it never will: it is withdrawn). Once the
 * loop has taken a request the call waits for its transaction, however
 * long that takes. */
int durable_submit(struct durable *d, struct durable_local *req,
                   int timeout_ms);

/* False while the last commit failed (e.g. disk full); why in *reason. */
bool durable_healthy(const struct durable *d, const char **reason);
/* Deliveries waiting in the batch. */
size_t durable_batched(const struct durable *d);
const struct durable_stats *durable_stats(const struct durable *d);

#endif

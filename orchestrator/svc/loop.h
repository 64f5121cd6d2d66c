/* loop.h -- the orchestrator on the durable loop (lib/durable.h): its
 * handler, the store and the engine, plugged into the one loop every
 * daemon runs. Inside the transaction each delivery is checked against
 * its queue (the orders queue takes order.created and the customer's
 * cancel, the control queue operator requests), then applied by
 * orch_apply (inbox dedup, saga, history, outbox, timers); due timers are
 * fired by orch_fire_timers; the inbox is pruned by store_inbox_prune;
 * the outbox is the store's.
 *
 * The transport is a `struct durable_transport`: daemon.c adapts lib/bus
 * to it, and test_orch_loop uses an in-memory one.
 *
 * Failure contract: as durable.h. loop_turn() returns 0 when the turn ran
 * (a commit that failed counts: the batch is kept, nothing acknowledged,
 * retried with backoff; loop_healthy() turns false); -1 only when the
 * transport failed for good.
 */
#ifndef SAGA_LOOP_H
#define SAGA_LOOP_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "durable.h"
#include "orch.h"
#include "store.h"

/* The transport's `source` of a delivery. */
enum loop_source {
	SRC_ORDERS,  /* order.created events */
	SRC_REPLIES, /* participants' replies */
	SRC_CONTROL, /* operator requests from sagactl */
};

struct loop;

/* Borrows everything for its whole life. NULL on out of memory. */
struct loop *loop_new(struct store *st, struct orch *o,
                      const struct durable_transport *t,
                      const struct durable_config *cfg);
void loop_free(struct loop *l);
/* Counts each delivery's outcome ("ok", "duplicate", "dead_lettered") and
 * handling time, each batch's size and commit time, once committed
 * (lib/batch_metrics.h; borrowed; NULL: none). */
struct batch_metrics;
void loop_observe(struct loop *l, struct batch_metrics *bm);

/* Who may send operator requests (the control queue's operator.*): the
 * broker user whose validated AMQP user_id they must carry (durable_item
 * user_id); one from anyone else is refused ("not from the operator
 * user"), nothing applied. NULL or "" (the default): any sender is
 * accepted. Either way the actor recorded is the user_id when there is
 * one, not the payload's claim; a request with a reply_to is answered
 * (an operator.answer to saga.replies, written with its effect: orch.h
 * ORCH_ANSWER_TYPE, docs/operations.md) and acknowledged, never
 * dead-lettered. Borrowed: copied. */
void loop_set_operator(struct loop *l, const char *user);

/* The loop itself, for the transport and the metrics. */
struct durable *loop_durable(struct loop *l);

/* durable_turn and durable_flush with now_ms as both clocks: the tests
 * drive time with one number. */
int loop_turn(struct loop *l, int64_t now_ms);
int loop_flush(struct loop *l, int64_t now_ms);

/* An operator request from inside the process (the console): applied
 * as orch_apply's IN_OPERATOR input, with the actor as authenticated by
 * the asker. Strings borrowed for the call. */
struct loop_op {
	const char *message_id; /* unique, e.g. "console-<random>": the
	                         * inbox's key (a repeat is answered so) */
	const char *saga_id;
	const char *type;          /* "operator.resume" (preview_op_type) */
	const char *step;          /* skip, mark-compensated; or NULL */
	const char *reason;        /* recorded in the history */
	const char *actor;         /* who acts (the console's login) */
	struct orch_answer answer; /* filled: what became of it */
};

/* Thread-safe (lib/durable.h, durable_submit): hands ops[0..n) to the
 * loop, which applies them all in its next transaction, and waits until
 * that commits. 0: committed, each op's answer filled; -1: not applied
 * (the store failed, the loop stopped), why in err; -2: the loop did not
 * take them within timeout_ms (withdrawn, nothing applied). */
int loop_operate(struct loop *l, struct loop_op *ops, size_t n, int timeout_ms,
                 char *err, size_t errlen);

/* durable_run. */
int loop_run(struct loop *l, volatile sig_atomic_t *stop,
             volatile sig_atomic_t *reload, void (*on_reload)(void *arg),
             void *arg, int drain_ms);

bool loop_healthy(const struct loop *l, const char **reason);
const struct durable_stats *loop_stats(const struct loop *l);

#define LOOP_PRUNE_EVERY_MS    DURABLE_PRUNE_EVERY_MS
#define LOOP_CONFIRMED_WAIT_MS DURABLE_CONFIRMED_WAIT_MS
#define LOOP_IDLE_MS           DURABLE_IDLE_MS

#endif

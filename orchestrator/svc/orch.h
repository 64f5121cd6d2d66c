/* orch.h -- the orchestrator's processor: applies one input (an
 * order.created, a participant's reply, a due timer, an operator request)
 * to the store through the engine, inside the caller's transaction.
 *
 * For each input it records the message id in the inbox (a duplicate is
 * dropped), loads the saga and its chart version, runs engine_step, and
 * writes the new saga, the history rows, the outbox rows (commands to
 * participants on `saga.commands`, domain events on `order_events`) and the
 * timer. It never talks to the broker: the durable loop (loop.h) publishes
 * the outbox after commit. So this module is tested with a SQLite file and
 * no broker.
 *
 * Failure contract: orch_apply returns 0 when the input was handled, with a
 * verdict (done, duplicate, or reject: the message goes to the dead-letter
 * queue with `reason`); it returns -1 only when the store failed, with the
 * reason in orch_error(): the caller must roll the batch back and
 * acknowledge nothing.
 */
#ifndef SAGA_ORCH_H
#define SAGA_ORCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "registry.h"
#include "store.h"
#include "value.h"

/* Exchange and routing names (docs/architecture.md, Topology). */
#define ORCH_EXCHANGE_EVENTS   "order_events"
#define ORCH_EXCHANGE_COMMANDS "saga.commands"
#define ORCH_EXCHANGE_REPLIES  "saga.replies"
/* Operator requests: a direct exchange only the operator user may write,
 * each orchestrator's control queue bound under the queue's name; the
 * answers (ORCH_ANSWER_TYPE) go to saga.replies with the request's
 * reply_to as the routing key. */
#define ORCH_EXCHANGE_CONTROL "saga.control"
#define ORCH_ANSWER_TYPE      "operator.answer"
#define ORCH_DEFAULT_CHART    "order"

enum orch_input_kind {
	IN_ORDER_CREATED, /* start a saga keyed by payload.order_id */
	IN_REPLY,         /* a participant's reply */
	IN_TIMER,         /* a due timer (no message id) */
	IN_OPERATOR,      /* sagactl: type "operator.<action>" */
	IN_CANCEL,        /* the customer's order.cancel_requested */
};

/* The customer's cancel (order-api publishes it on order_events, to the
 * orchestrator's orders queue), and the event that answers a refused one
 * (payload: the saga's data, order_id, saga_status, state, reason). An
 * accepted cancel is answered by the cancel final state's own event. */
#define ORCH_CANCEL_TYPE    "order.cancel_requested"
#define ORCH_CANCEL_REFUSED "order.cancel_refused"

/* One input; everything borrowed for the call. */
struct orch_input {
	enum orch_input_kind kind;
	const char *message_id;      /* inbox key; NULL for timers */
	const char *saga_id;         /* envelope `saga` (or the timer's) */
	const char *type;            /* message type */
	const char *in_reply_to;     /* IN_REPLY: envelope `re` */
	const struct value *payload; /* the envelope payload (a map) */
	const char *traceparent;     /* incoming trace context or NULL */
	int64_t timer_seq;           /* IN_TIMER */
	int64_t now_ms;
	/* IN_OPERATOR: who acts, as authenticated by the channel (the
	 * broker's validated user_id, the console's login); NULL: the
	 * payload's `actor`, as claimed. */
	const char *actor;
	/* IN_OPERATOR: where to say what became of it; NULL: nobody asks. */
	struct orch_answer *answer;
};

/* What became of an operator request, for whoever asked (sagactl over
 * AMQP, the console). Filled by orch_apply when in->answer is set. */
enum orch_outcome {
	ORCH_APPLIED,  /* the engine took it: the saga moved on */
	ORCH_REJECTED, /* refused: unknown saga or action, not allowed in
	                * the saga's state; `note` says why */
	ORCH_IGNORED,  /* nothing to do (the engine's note says why) */
	ORCH_REPEATED, /* the request's id was seen before: nothing done */
};

#define ORCH_ANSWER_NOTE_MAX 320

struct orch_answer {
	enum orch_outcome outcome;
	char note[ORCH_ANSWER_NOTE_MAX]; /* what it did, or why not */
	char state[CHART_NAME_MAX];      /* the saga's state after, or "" */
	char status[16];                 /* its status after, or "" */
};

/* "applied", "rejected", "ignored", "repeated". */
const char *orch_outcome_name(enum orch_outcome o);

enum orch_verdict {
	ORCH_DONE,      /* applied (or ignored by the engine, with history) */
	ORCH_DUPLICATE, /* message id already in the inbox: nothing done */
	ORCH_REJECT,    /* malformed/unknown: dead-letter it with reason */
};

/* Counters since start, for /metrics and logs. */
struct orch_stats {
	uint64_t started, completed, failed, stuck, aborted, cancelled;
	uint64_t duplicates, rejected, ignored;
	uint64_t commands, events;
};

/* Called once per finished step: chart, state, seconds in the state. */
typedef void (*orch_step_observer)(void *arg, const char *chart,
                                   const char *state, double seconds);
/* Called for each saga status change: chart, new status. */
typedef void (*orch_status_observer)(void *arg, const char *chart,
                                     enum saga_status status);

/* Whether anyone took a command: PRESENCE-style answer for the timeout
 * of an attempt that began at since_ms (lib/presence.h). True when the
 * participant serving `key` was away: the timeout is then not counted. */
typedef bool (*orch_absent_fn)(void *arg, const char *to, const char *key,
                               int64_t since_ms, int64_t now_ms);

struct orch_config {
	const char *reply_to;  /* routing key of our reply queue on
	                        * saga.replies, sent with each command */
	orch_absent_fn absent; /* NULL: every timeout counts */
	void *absent_arg;
	orch_step_observer on_step;
	orch_status_observer on_status;
	void *observer_arg;
	/* Spans (lib/otlp.h), NULL: none. One span per saga, from its
	 * order.created to its final status, child of the span that sent the
	 * order; one per state a saga leaves, child of the saga's span,
	 * named by the state's command (or the state), with the event that
	 * ended it. Emitted as the step is written, before its commit: a
	 * batch whose commit fails is tried again and emits its spans again
	 * (telemetry, not a record: the history is that). */
	struct otlp *otlp;
};

struct orch;

/* Borrows st and reg for its whole life. NULL on out of memory. */
struct orch *orch_new(struct store *st, struct registry *reg,
                      const struct orch_config *cfg);
void orch_free(struct orch *o);

int orch_apply(struct orch *o, const struct orch_input *in,
               enum orch_verdict *verdict, char *reason, size_t reasonlen);

/* Fires every timer due at now_ms (at most `limit`), each through the
 * engine; *fired gets how many. -1 on store failure. */
int orch_fire_timers(struct orch *o, int64_t now_ms, size_t limit,
                     size_t *fired);

const struct orch_stats *orch_stats(const struct orch *o);
const char *orch_error(const struct orch *o);

#endif

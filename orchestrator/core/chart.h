/* chart.h -- the statechart model: what a saga's YAML file says, after
 * loading and validation (chart_load.h builds it; engine.h runs it).
 *
 * A chart is immutable once loaded and owns all its memory; free it with
 * chart_free(). States are referred to by index into chart->states; every
 * index stored in a loaded chart is valid (the validator guarantees it).
 *
 * The YAML format is documented, key by key, in statecharts/README.md.
 * In short:
 *
 *   saga: order                    # chart name; sagas pick a chart by name
 *   initial: reserve_stock
 *   failure: failed                # final state for exhausted attempts
 * (default) fields:                        # the order fields the chart reads,
 * typed order_id: string total_cents: integer payment_method: string
 *     ship_to.country: string
 *   defaults:                      # default timeout and retry for steps
 *     timeout: 5s
 *     retry: {attempts: 3, backoff: 200ms, multiplier: 2, cap: 5s}
 *     stuck_after: 1h              # steps and parallel states: see below
 *   states:
 *     reserve_stock:
 *       type: step
 *       to: inventory
 *       command: inventory.reserve
 *       route: "{ship_to.country}"     # optional routing key template
 *       pass: [order_id, items]        # order fields copied into the command
 *       on:
 *         inventory.reserved: check_cod           # success -> next state
 *         inventory.rejected: {fail: failed}      # failure -> compensate
 *         inventory.busy: retry                   # counts as a failed attempt
 *       save: [reservation_id]         # reply fields kept in the saga data
 *       emit: order.inventory_checked  # domain event on success
 *       stuck_after: 30m               # in this state longer: "stuck"
 *       compensate:
 *         command: inventory.release   # to/route default to the step's
 *         pass: [order_id]
 *         ok: [inventory.released]     # replies that mean "undone"
 *         retry: {attempts: 5, backoff: 1s, multiplier: 2, cap: 30s}
 *     check_cod:
 *       type: choice
 *       branches:
 *         - when: [{field: payment_method, eq: cod},
 *                  {field: total_cents, gt: 50000}]
 *           fail: failed
 *       default: payment
 *     cooling_off: {type: wait, duration: 10s, next: payment}
 *     completed: {type: final, emit: order.completed}
 *     failed: {type: final, emit: order.failed}
 */
#ifndef SAGA_CHART_H
#define SAGA_CHART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "value.h"

#define CHART_NAME_MAX 64  /* names of charts, states, fields, participants */
#define CHART_TYPE_MAX 120 /* message and event types */

/* The type of an order field, declared under `fields:`. */
enum chart_field_type {
	FIELD_STRING,
	FIELD_INTEGER,
	FIELD_NUMBER, /* integer or float */
	FIELD_BOOLEAN,
	FIELD_LIST,
	FIELD_MAP,
};

struct chart_field {
	char *path; /* dotted path into the saga data, e.g. "ship_to.country" */
	enum chart_field_type type;
};

/* Retry policy: attempts >= 1 (1 = no retry). The delay before attempt
 * n+1 is min(backoff_ms * multiplier^(n-1), cap_ms). */
struct chart_retry {
	int attempts;
	int64_t backoff_ms;
	double multiplier; /* >= 1.0 */
	int64_t cap_ms;
};

/* A routing-key template: literal text with {field.path} placeholders,
 * e.g. "{ship_to.country}.{category}". Kept as the source text; the engine
 * renders it against the saga data. Every placeholder names a declared
 * field of a scalar type. NULL when absent. */
typedef char *chart_template;

/* What a reply to a step's command does. */
enum chart_reply_kind {
	REPLY_GOTO,  /* success: the step is done, move to `target` */
	REPLY_FAIL,  /* failure: compensate, then end in final state `target` */
	REPLY_RETRY, /* a failed attempt: retry with backoff; when attempts are
	              * exhausted, the step's exhausted transition applies */
};

struct chart_reply {
	char *type; /* reply message type, e.g. "payment.charged" */
	enum chart_reply_kind kind;
	int target; /* state index for GOTO/FAIL, -1 for RETRY */
};

struct chart_compensation {
	char *to;             /* participant; defaults to the step's */
	char *command;        /* command type, e.g. "payment.refund" */
	chart_template route; /* defaults to the step's */
	char **pass;          /* field paths copied into the command */
	size_t npass;
	char **ok; /* reply types that mean "undone" (>= 1) */
	size_t nok;
	int64_t timeout_ms;
	struct chart_retry retry;
};

/* A guard condition on one field. */
enum chart_op {
	OP_EQ,
	OP_NE,
	OP_IN,
	OP_NOT_IN,
	OP_LT,
	OP_LE,
	OP_GT,
	OP_GE,
	OP_PRESENT, /* operand is a BOOL: true = must be present */
};

struct chart_cond {
	char *field;      /* declared field path, or "visits.<state>" */
	bool visits;      /* field is "visits.<state>", not declared under
	                   * fields:: the guard reads how many times the
	                   * saga entered state visits_state (an integer,
	                   * 0 before the first entry) */
	int visits_state; /* when visits */
	enum chart_op op;
	struct value operand; /* scalar, an ARRAY of scalars for IN/NOT_IN,
	                       * BOOL for PRESENT */
};

/* A choice branch: all conditions must hold (AND). */
struct chart_branch {
	struct chart_cond *conds;
	size_t nconds;
	enum chart_reply_kind kind; /* REPLY_GOTO or REPLY_FAIL */
	int target;
};

enum chart_state_type {
	STATE_STEP,
	STATE_CHOICE,
	STATE_WAIT,
	STATE_FINAL,
	STATE_PARALLEL, /* branches of steps run at once, then join */
};

struct chart_state {
	char *name;
	enum chart_state_type type;
	int line, col; /* where the state's key is in the file (1-based) */

	/* STEP, FINAL: domain event type emitted on success / on arrival;
	 * NULL if none. */
	char *emit;

	/* STEP */
	char *to;             /* participant, e.g. "payment" */
	char *command;        /* command type, e.g. "payment.charge" */
	chart_template route; /* NULL: route by participant alone */
	char **pass;
	size_t npass;
	struct chart_reply *replies; /* at least one REPLY_GOTO */
	size_t nreplies;
	char **save; /* reply payload fields stored into the saga data */
	size_t nsave;
	int64_t timeout_ms;  /* start-to-close: one attempt, from its send */
	int64_t deadline_ms; /* schedule-to-close: the whole step, every
	                      * attempt and wait included, from entering it;
	                      * CHART_DEADLINE_DEFAULT_MS unless set */
	struct chart_retry retry;
	int exhausted_target; /* final state when attempts run out (FAIL) */
	struct chart_compensation *compensate; /* NULL if nothing to undo */

	/* CHOICE */
	struct chart_branch *branches;
	size_t nbranches;
	int default_target; /* GOTO target when no branch matches */

	/* WAIT */
	int64_t duration_ms;
	int next; /* GOTO target after the wait; PARALLEL: after the join */

	/* STEP, CHOICE, WAIT: a bound on entries. 0: none. Otherwise the
	 * saga enters the state at most max_visits times; an entry past
	 * that takes too_many instead (GOTO or FAIL to too_many_target). */
	int max_visits;
	enum chart_reply_kind too_many_kind; /* REPLY_GOTO or REPLY_FAIL */
	int too_many_target;

	/* STEP, WAIT, PARALLEL outside any branch: a saga in this state
	 * longer than this counts as stuck, for the console and the
	 * saga_overdue_sagas gauge (the engine does not act on it): the
	 * state's `stuck_after`, else for steps and parallel states the
	 * chart's `defaults: stuck_after`; 0: no limit. */
	int64_t stuck_after_ms;

	/* PARALLEL: the first state of each branch (a step or a choice) */
	int *fork;
	size_t nfork; /* 2 .. CHART_BRANCHES_MAX */

	/* Every state: the parallel state whose branch holds it and the
	 * branch's index, or -1, -1 outside any branch. A GOTO target of a
	 * state in a branch is a state of the same branch, or the parallel
	 * state itself: that is `join` (the branch is over). */
	int parallel;
	int branch;
};

/* The most states a chart may have (a saga record counts the visits of
 * each) and the largest max_visits. */
#define CHART_STATES_MAX     128
#define CHART_MAX_VISITS_MAX 1000

/* Branches of one parallel state (statecharts/README.md, "parallel"). */
#define CHART_BRANCHES_MAX 8

/* True when GOTO target `to` of state `from` is the `join` of from's
 * branch rather than a state entered. */
#define CHART_IS_JOIN(c, from, to)                                             \
	((c)->states[(from)].parallel >= 0 &&                                  \
	 (c)->states[(from)].parallel == (to))

/* The built-in `deadline` of a step (statecharts/README.md): an hour. */
#define CHART_DEADLINE_DEFAULT_MS (3600LL * 1000)

struct chart {
	char *name;       /* `saga:` */
	char *file;       /* path it was loaded from */
	char version[17]; /* 16 hex digits: hash of the normalized content */
	int initial;
	int failure; /* default final state for exhausted attempts */
	struct chart_field *fields;
	size_t nfields;
	struct chart_state *states;
	size_t nstates;
	/* `cancel:` (a customer cancels the order): the final state a
	 * cancelled saga ends in after its compensations (-1: the chart
	 * accepts no cancel), and the states in which a cancel is accepted
	 * (indices, ncancel_in of them). */
	int cancel_final;
	int *cancel_in;
	size_t ncancel_in;
};

/* True if a cancel is accepted while the saga is in state `idx`. */
bool chart_cancel_accepted(const struct chart *c, int idx);

/* Frees everything the chart owns, and the chart. NULL is fine. */
void chart_free(struct chart *c);

/* Index of the state named `name`, or -1. */
int chart_state_index(const struct chart *c, const char *name);

/* The declared field with this path, or NULL. */
const struct chart_field *chart_field_find(const struct chart *c,
                                           const char *path);

/* The reply mapping of step `s` for reply type `type`, or NULL. */
const struct chart_reply *chart_step_reply(const struct chart_state *s,
                                           const char *type);

/* Renders a routing-key template against `data` into buf. Returns 0, or -1
 * with a message in err if a placeholder's field is missing or not a
 * scalar, or the result does not fit (routing keys are at most 255 bytes).
 * A NULL template renders as "". */
int chart_render_route(chart_template tpl, const struct value *data, char *buf,
                       size_t cap, char *err, size_t errlen);

/* Evaluates one condition against the saga data. A missing field makes
 * every operator false except PRESENT(false) and NE. A visits guard
 * (visits) reads nothing from data: use chart_cond_eval. */
int chart_cond_holds(const struct chart_cond *cond, const struct value *data);
/* Evaluates one condition against the value v of its field (NULL when
 * missing). */
int chart_cond_eval(const struct chart_cond *cond, const struct value *v);

/* The delay before attempt `next_attempt` (>= 2) under policy r. */
int64_t chart_retry_delay(const struct chart_retry *r, int next_attempt);

const char *chart_state_type_name(enum chart_state_type t);
const char *chart_field_type_name(enum chart_field_type t);

#endif

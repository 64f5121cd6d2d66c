/* engine.h -- the saga engine: one pure function from (chart, saga, event)
 * to (saga', actions).
 *
 *   engine_step(chart, &saga, &event, &out)
 *
 * No I/O and no clock: time comes in with the event (event.now_ms), and
 * everything the engine wants done comes out as actions (send a command,
 * emit a domain event, set or cancel the saga's timer, finish). The caller
 * (the orchestrator) stores the saga and the actions in one transaction and
 * performs the actions after commit. Replaying the same event on the same
 * saga gives the same result, so the engine is tested exhaustively without a
 * broker or a database.
 *
 * Life of a saga
 *   START enters the initial state. Entering a state:
 *   - STEP: send its command (attempt 1) and set a timer at now+timeout.
 *   - CHOICE: evaluate branches in order; the first whose conditions all
 *     hold is taken (GOTO or FAIL), else `default`. No action of its own.
 *   - WAIT: set a timer at now+duration; on TIMEOUT go to `next`.
 *   - FINAL: emit its event, finish. Status COMPLETED, or FAILED when it was
 *     reached after compensation.
 *   A REPLY to the outstanding command (matched by in_reply_to == the
 *   command's message id) is looked up in the step's `on` map:
 *   - GOTO: the step completed: push it on the completed stack (if it has
 *     a compensation), copy the `save` fields, emit its event, cancel the
 *     timer, enter the target.
 *   - FAIL: start compensation with the target as the final state.
 *   - RETRY: a failed attempt (as a TIMEOUT is).
 *   A TIMEOUT of an attempt, or a RETRY reply, schedules the next attempt
 *   after the policy's delay (timer), then resends with attempt+1 and a new
 *   message id. When attempts are exhausted the step's outcome is unknown:
 *   it is compensated too (it may have happened), then the saga ends in the
 *   step's exhausted target.
 *
 * Timeouts (statecharts/README.md, "Timeouts"): a step's `timeout` bounds
 *   one attempt (start-to-close) and its `deadline` the whole step
 *   (schedule-to-close: every attempt, backoff and queueing, from
 *   entering the step; saga.deadline_ms). A TIMEOUT flagged `absent`
 *   (the caller saw no participant take commands during the attempt: it
 *   was down, or the orchestrator could not publish) does not count: the
 *   timer is armed again for another `timeout` and nothing is resent, the
 *   command still waits in its queue. An undo command waits so for as
 *   long as it takes. Every timer of a step is capped at its deadline;
 *   a TIMEOUT at or past the deadline ends the step as exhausted (outcome
 *   unknown: compensated too).
 *
 * Compensation (status COMPENSATING) undoes the completed steps in reverse
 * order of completion, each with its compensation's own timeout and retry
 * policy; a compensation reply in its `ok` list means undone. A
 * compensation that fails all its attempts leaves the saga STUCK (timer
 * cancelled) until an operator acts. When the stack is empty, the saga
 * enters its fail target (a FINAL state) and finishes as FAILED.
 *
 * Late and unknown input: a reply whose in_reply_to is not the outstanding
 * command's id (an attempt that already timed out, a step the saga left, a
 * finished saga), a reply type the step does not map, or a TIMEOUT whose
 * timer_seq is not the saga's current timer changes nothing: engine_step
 * returns ENGINE_IGNORED with a note saying why, for the history.
 *
 * Operator events: RETRY (resend the current command now as a new
 * attempt), RESUME (a STUCK saga retries its current compensation with
 * fresh attempts), ABORT (status ABORTED, timer cancelled, nothing undone),
 * COMPENSATE (force compensation of a running saga; a step in flight is
 * treated as unknown and compensated too), SKIP (treat the current step as
 * succeeded via its first GOTO reply, or the current compensation as
 * done), MARK_COMPENSATED (an operator undid `step` by hand: it leaves the
 * stack; if it was the current compensation, the next one starts).
 * An operator event that does not apply to the saga's status returns
 * ENGINE_REJECTED with a note and changes nothing.
 *
 * Loops (statecharts/README.md, "Loops"): a chart may enter a state again
 * (a declined card waits and is charged again). The saga counts the
 * entries of every state (saga.visits); each entry of a step is a new
 * command, so visit v of a step sends new message ids, and a participant
 * that replays its stored reply to a repeated id answers the new visit
 * afresh. A state with `max_visits: N` is entered at most N times: an
 * entry past that takes the state's `too_many` target instead (a goto,
 * or a fail that compensates), and the state is not entered (its count
 * stays N). A choice guard can read a count as the field
 * "visits.<state>". The completed stack keeps the visit that completed
 * each entry, so a step completed on visits 1 and 3 is undone twice, each
 * undo with its own visit's ids.
 *
 * Message ids are deterministic, so a command sent again after a crash is
 * recognised by the participant. The first visit of a state keeps the
 * form ids had before loops, so sagas in flight and the ids participants
 * stored stay valid across an upgrade:
 *   "<saga id>:<state>:<attempt>"              a step's command
 *   "<saga id>:<state>:undo:<attempt>"         its compensation
 * and visit v >= 2 of the state puts the visit after an '@' (state names
 * are [a-z0-9_], so the form cannot be confused with another state's):
 *   "<saga id>:<state>@<v>:<attempt>"
 *   "<saga id>:<state>@<v>:undo:<attempt>"
 *
 * Cancel (EV_CANCEL, the customer's order.cancel_requested): accepted only
 * if the chart has `cancel:`, the saga is RUNNING and its state is one of
 * `cancel.in`; then, as an operator's COMPENSATE, a step in flight is
 * treated as unknown and compensated too, everything completed is undone,
 * and the saga ends in `cancel.final` with status CANCELLED (that final
 * state emits its event, e.g. order.cancelled). Otherwise REJECTED, with
 * the reason and the state in the note ("too late": the customer is told
 * why).
 *
 * Parallel states (statecharts/README.md, section 5.5): entering one
 *   enters the first state of each branch, in order, in the same step
 *   (a SEND per branch, or a choice). The saga's state is then the
 *   parallel state, its phase PHASE_PARALLEL, and saga.branches holds
 *   each branch's own state, phase, attempts, deadline and timer time;
 *   within a branch everything above applies unchanged. A REPLY is
 *   matched against every branch's outstanding message id. The saga's
 *   one timer is armed at the earliest branch time; a TIMEOUT handles
 *   every branch whose time has come, in branch order, and re-arms.
 *   A branch that reaches `join` is done (phase NONE); when the last one
 *   does, the saga enters `next`. Compensation begun inside a branch (a
 *   FAIL reply or choice branch, exhausted attempts, a passed deadline,
 *   an unroutable command) fails the whole parallel state: the command
 *   of every other branch in flight (AWAIT or BACKOFF) is pushed as
 *   unknown, after the steps completed so far, and compensation runs as
 *   above, one undo at a time, to the failing branch's target. A branch
 *   failing at the fork does so before the later branches start.
 *   A TIMEOUT's `absent_branches` bit k is `absent` for branch k (the
 *   orchestrator asks engine_branch_outstanding for each branch).
 *   Operator events: RETRY resends every branch in flight (fresh budget
 *   and deadline each); SKIP takes the branch step named by event.step
 *   as succeeded (without a step, only when one branch is in flight;
 *   else REJECTED); COMPENSATE pushes every branch in flight as unknown
 *   and compensates, ending in the exhausted target of the first branch
 *   in flight; ABORT drops the branches, nothing undone; RESUME and
 *   MARK_COMPENSATED do not apply (REJECTED).
 */
#ifndef SAGA_ENGINE_H
#define SAGA_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chart.h"
#include "value.h"

#define SAGA_ID_MAX        128
#define ENGINE_MSGID_MAX   256
#define ENGINE_MAX_ACTIONS 16
#define ENGINE_NOTE_MAX    256
#define ENGINE_STACK_MAX   64 /* completed steps with a compensation */
#define ENGINE_VISITS_MAX                                                      \
	1000000 /* entries of one state per saga; a                            \
	         * step past it is ENGINE_ERROR, other                         \
	         * states stop counting there */

/* The branches of one parallel state. A fork sends one command per
 * branch; with the emit before it, the first undo or the final emit of a
 * branch that fails at once, the timer and the finish, its actions must
 * fit one output. */
#define ENGINE_BRANCHES_MAX CHART_BRANCHES_MAX
_Static_assert(ENGINE_MAX_ACTIONS >= ENGINE_BRANCHES_MAX + 5,
               "a fork's actions fit one engine_output");

enum saga_status {
	SAGA_RUNNING,
	SAGA_COMPENSATING,
	SAGA_COMPLETED,
	SAGA_FAILED, /* compensated */
	SAGA_STUCK,  /* a compensation failed all its attempts */
	SAGA_ABORTED,
	SAGA_CANCELLED, /* a customer's cancel, compensated */
};

/* What the saga is waiting for in its current state. */
enum saga_phase {
	PHASE_NONE,    /* finished, or stuck */
	PHASE_AWAIT,   /* command sent, waiting for a reply or timeout */
	PHASE_BACKOFF, /* waiting to send the next attempt */
	PHASE_WAIT,    /* in a WAIT state */
	/* in a PARALLEL state: each branch waits (saga.branches) */
	PHASE_PARALLEL,
};

/* One entry of the completed stack. */
struct saga_done {
	int state;    /* the step's index in the chart */
	bool unknown; /* outcome unknown (attempts exhausted/forced) */
	int visit;    /* the visit of the step that completed (>= 1) */
};

/* One branch of the parallel state a saga is in: the fields a saga has
 * for its current step, kept per branch. */
struct saga_branch {
	int state;               /* the branch's current step; the parallel
	                          * state once the branch joined */
	enum saga_phase phase;   /* AWAIT or BACKOFF; NONE once joined */
	int attempt;             /* as saga.attempt, for this branch's step */
	int attempt_base;        /* as saga.attempt_base */
	int64_t timer_at_ms;     /* when this branch's time comes (reply
	                          * timeout, backoff over, deadline); 0 once
	                          * joined. The saga's one timer is armed at
	                          * the earliest of them. */
	int64_t step_started_ms; /* when the branch entered its step */
	int64_t deadline_ms;     /* as saga.deadline_ms, for its step */
};

/* The saga record: plain data, stored by the orchestrator. Owned by the
 * caller; release with saga_clear(). */
struct saga {
	char id[SAGA_ID_MAX];   /* the order id */
	char chart_version[17]; /* the chart version it started with */
	enum saga_status status;
	int state; /* current state index */
	enum saga_phase phase;
	int attempt;       /* attempt of the current command (>= 1);
	                    * 0 in a WAIT or FINAL state */
	int attempt_base;  /* attempts spent before the current retry
	                    * budget: 0, or the attempt at which an
	                    * operator's RETRY/RESUME gave fresh
	                    * attempts (numbering goes on, so message
	                    * ids stay unique). The policy bounds
	                    * attempt - attempt_base. */
	struct value data; /* order fields + saved reply fields (a map) */
	struct saga_done done[ENGINE_STACK_MAX]; /* completed steps, in order */
	size_t ndone;
	int visits[CHART_STATES_MAX]; /* entries of each state so far
	                               * (0..ENGINE_VISITS_MAX); a state
	                               * refused by its max_visits is not
	                               * counted */
	/* PHASE_PARALLEL: one per branch of the current state; else none */
	struct saga_branch branches[ENGINE_BRANCHES_MAX];
	size_t nbranches;
	int fail_target;         /* final state after compensation, or -1 */
	int64_t timer_seq;       /* the latest timer's seq, 0 before the
	                          * first; never reused, so a stale timer is
	                          * recognised. The timer is armed iff phase
	                          * is not PHASE_NONE. */
	int64_t timer_at_ms;     /* when it fires; 0 when none is armed */
	int64_t started_ms;      /* saga start */
	int64_t step_started_ms; /* when the current state was entered */
	int64_t deadline_ms;     /* when the current step's deadline passes
	                          * (its chart `deadline` after entering it,
	                          * or after an operator's RETRY); 0 outside
	                          * a step and while compensating */
	int64_t updated_ms;
};

enum engine_event_type {
	EV_START,   /* payload = the order (a map) */
	EV_REPLY,   /* reply_type, in_reply_to, payload */
	EV_TIMEOUT, /* timer_seq */
	EV_OP_RETRY,
	EV_OP_RESUME,
	EV_OP_ABORT,
	EV_OP_COMPENSATE,
	EV_OP_SKIP,
	EV_OP_MARK_COMPENSATED, /* step = the state name */
	EV_CANCEL,              /* the customer cancels the order */
};

/* An input to the engine. Borrowed: the engine copies what it keeps. */
struct engine_event {
	enum engine_event_type type;
	int64_t now_ms;
	const char *reply_type;      /* EV_REPLY */
	const char *in_reply_to;     /* EV_REPLY: the command's message id */
	const struct value *payload; /* EV_START order, EV_REPLY reply body */
	int64_t timer_seq;           /* EV_TIMEOUT */
	bool absent; /* EV_TIMEOUT: nobody took the outstanding command
	              * during this attempt (the caller knows the
	              * participant's consumers were gone): the attempt
	              * is not counted, the command still waits in its
	              * queue */
	uint32_t absent_branches; /* EV_TIMEOUT in a parallel state: bit k
	                           * is `absent` for branch k's command */
	const char *step;         /* EV_OP_MARK_COMPENSATED */
};

enum engine_action_type {
	ACT_SEND,         /* send a command to a participant */
	ACT_EMIT,         /* publish a domain event */
	ACT_SET_TIMER,    /* (re)arm the saga's one timer */
	ACT_CANCEL_TIMER, /* disarm it */
	ACT_FINISH,       /* the saga reached a final status */
};

struct engine_action {
	enum engine_action_type type;
	/* ACT_SEND */
	char to[CHART_NAME_MAX];      /* participant */
	char command[CHART_TYPE_MAX]; /* command type */
	char route[256];              /* rendered routing key ("" if none) */
	char message_id[ENGINE_MSGID_MAX];
	char step[CHART_NAME_MAX]; /* state name */
	int visit;                 /* of the step (>= 1) */
	int attempt;
	bool compensation;    /* an undo command */
	struct value payload; /* owned by the action (a map) */
	/* ACT_EMIT */
	char event[CHART_TYPE_MAX];
	/* ACT_SET_TIMER */
	int64_t timer_seq;
	int64_t fire_at_ms;
	/* ACT_FINISH */
	enum saga_status status;
};

enum engine_result {
	ENGINE_OK,       /* the saga changed; actions may be empty */
	ENGINE_IGNORED,  /* late/unknown/duplicate input: nothing changed */
	ENGINE_REJECTED, /* operator event not applicable: nothing changed */
	ENGINE_ERROR,    /* bad input (e.g. START twice, an order that is
	                  * not a map or has a declared field of the wrong
	                  * type, the wrong chart), a transition loop, or
	                  * out of memory: nothing changed. (A route field
	                  * missing is not an error: the step fails, see
	                  * engine.c.) */
};

struct engine_output {
	enum engine_result result;
	struct engine_action actions[ENGINE_MAX_ACTIONS];
	size_t nactions;
	char note[ENGINE_NOTE_MAX]; /* for the history: what happened, why */
};

/* Initialises an empty saga record with the given id. Can't fail
 * (the id is truncated to SAGA_ID_MAX-1 bytes; callers validate it). */
void saga_init(struct saga *s, const char *id);
/* Releases what the saga owns (its data). */
void saga_clear(struct saga *s);
/* Deep copy; -1 on out of memory (dst left initialised and empty). */
int saga_copy(struct saga *dst, const struct saga *src);

/* Serialises the saga record (everything in struct saga) to a value map
 * and back, for storage; saga_from_value validates it against the chart
 * (state indices in range) and returns -1 with a message if it does not
 * fit. */
int saga_to_value(const struct saga *s, const struct chart *c,
                  struct value *out);
int saga_from_value(struct saga *s, const struct chart *c,
                    const struct value *v, char *err, size_t errlen);

/* Runs one event. On ENGINE_OK, *s is the new saga and out->actions what
 * to do; on any other result *s is unchanged and out has no actions.
 * out->note is always set. The caller releases out with
 * engine_output_clear(). */
enum engine_result engine_step(const struct chart *c, struct saga *s,
                               const struct engine_event *ev,
                               struct engine_output *out);
void engine_output_clear(struct engine_output *out);

/* The message id a step's command (or its compensation) has for visit
 * `visit` of the step and attempt n (the forms above; a visit of 1 or
 * less is the first). Returns the length, as snprintf. */
int engine_message_id(char *buf, size_t cap, const char *saga_id,
                      const char *state, int visit, bool compensation,
                      int attempt);

/* The command the saga waits on (PHASE_AWAIT): its participant and the
 * routing key it was sent with ("<to>" or "<to>.<route>"), and its
 * attempt's timeout. 0, or -1 when the saga awaits nothing (or the route
 * cannot be rendered). Pure, like engine_step: the caller uses it to ask
 * whether anyone took the command before feeding a TIMEOUT. */
int engine_outstanding(const struct chart *c, const struct saga *s, char *to,
                       size_t tocap, char *key, size_t keycap,
                       int64_t *timeout_ms);

/* The same for branch k of a saga in a parallel state (-1 if it awaits
 * nothing). */
int engine_branch_outstanding(const struct chart *c, const struct saga *s,
                              size_t k, char *to, size_t tocap, char *key,
                              size_t keycap, int64_t *timeout_ms);

const char *saga_status_name(enum saga_status st);
int saga_status_parse(const char *name, enum saga_status *out);
const char *saga_phase_name(enum saga_phase p);
/* "ok", "ignored", "rejected", "error" ("unknown" out of range). */
const char *engine_result_name(enum engine_result r);
/* True for COMPLETED, FAILED, ABORTED, CANCELLED: nothing changes the saga
 * after. */
bool saga_status_final(enum saga_status st);

#endif

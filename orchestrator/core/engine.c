/* engine.c -- the saga engine: see engine.h for the contract.
 *
 * What it is. A saga is a small record (struct saga) and a chart is an
 * immutable graph; engine_step() is the one function that moves a saga
 * along its chart. It reads nothing but its arguments and writes nothing
 * but the saga and the output: no clock (time arrives as event.now_ms), no
 * I/O, no global state, no randomness. The orchestrator stores the result
 * and performs the actions; the tests run millions of steps without a
 * broker or a database and compare them with a tiny reference interpreter.
 *
 * Why it is shaped so.
 * - All or nothing. engine_step works on a deep copy of the saga (one
 *   saga_copy per event: the order data is a few hundred bytes) and swaps
 *   it in only when the whole step succeeded, so an allocation failure, a
 *   transition loop or a full action list can never leave a half-moved
 *   saga. IGNORED and REJECTED simply drop the copy. The output is built
 *   alongside and emptied on any result but ENGINE_OK.
 * - One timer per saga. Every waiting phase (AWAIT a reply, BACKOFF before
 *   the next attempt, WAIT in a wait state) has exactly one timer, and
 *   PHASE_NONE (finished, stuck) has none, so "is a timer armed" is derived
 *   from the phase rather than stored twice. Timer requests made while a
 *   step runs are collected and turned into at most one action at the end:
 *   SET_TIMER (which replaces the old timer) with timer_seq + 1, or
 *   CANCEL_TIMER when the saga was waiting before and is not any more.
 *   A TIMEOUT must carry the current seq and find a timer armed; anything
 *   else is a stale timer and is ignored. Sequence numbers are never
 *   reused, not even after a cancel.
 * - Action order is fixed: SEND and EMIT in the order they happen, then
 *   the timer action, then FINISH. The tests check exact lists.
 * - During compensation `state` is the step being undone (the top of the
 *   completed stack); the outstanding command is then that step's undo
 *   command. This keeps "the current command" one notion for replies,
 *   timeouts and operator events, and shows an operator which undo a
 *   STUCK saga waits on.
 * - Retry budgets. An attempt number is part of the message id, so it only
 *   ever grows within a step; an operator's RETRY or RESUME gives a fresh
 *   budget by recording attempt_base, and the policy bounds
 *   attempt - attempt_base. A zero backoff resends at once instead of
 *   arming a timer that is already due.
 * - A route that cannot be rendered (a placeholder's field missing from
 *   the order) makes the step fail at once, exactly like a FAIL reply to
 *   the step's exhausted target: the command was never sent, so the step
 *   is not compensated (unless earlier attempts went out, which cannot
 *   happen since the data does not change within a step). Failing fast is
 *   better than ENGINE_ERROR, which would leave the saga where it was: the
 *   event that led into the step (often the previous step's success reply)
 *   would be dead-lettered and the previous step would be retried for
 *   nothing. An undo command whose route cannot be rendered leaves the
 *   saga STUCK at once: no attempt can succeed, an operator must act.
 * - Replies a step does not map, and replies to an undo command outside
 *   its `ok` list, are ignored; the timeout then counts the failed attempt.
 * - Choice states chain without actions; every state entry in one step is
 *   counted and more than ENGINE_ENTRIES_MAX of them is a chart error
 *   ("transition loop"), returned as ENGINE_ERROR.
 *
 * - Visits. Every entry of a state is counted in saga.visits before the
 *   state acts, so the command a step sends on entry already carries its
 *   visit; the id of the current command is derived from (state, visit,
 *   attempt) and never stored. While compensating, the visit is the one
 *   kept on the completed stack with the step. A bound is checked before
 *   counting: the refused entry leaves no trace but the note, and its
 *   too_many target is entered (or compensation begins) in the same step,
 *   counted against ENGINE_ENTRIES_MAX like any entry, so a chain of
 *   refusals cannot spin.
 *
 * - Parallel states reuse all of the above: a branch's fields are swapped
 *   into the saga's while one of its events runs (section "parallel
 *   states" below), so a branch step retries, backs off, times out and
 *   builds its message ids exactly as a sequential step does.
 *
 * Limits it admits. The completed stack holds ENGINE_STACK_MAX entries; a
 * step past that is ENGINE_ERROR, and so is a step entered more than
 * ENGINE_VISITS_MAX times (its ids would repeat). A saga counts visits of
 * at most CHART_STATES_MAX states, which the loader enforces.
 */
#include "engine.h"

#include <assert.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ENGINE_ENTRIES_MAX 64 /* state entries in one engine_step */
#define RECORD_VERSION     1  /* saga_to_value format */

/* The longest id: saga id, state, "@" and a visit, ":undo:", an attempt
 * (an int), NUL. */
_Static_assert(ENGINE_MSGID_MAX >=
                       (SAGA_ID_MAX - 1) + 1 + (CHART_NAME_MAX - 1) + 1 +
                               7 /* ENGINE_VISITS_MAX */ + 6 + 10 + 1,
               "a message id fits ENGINE_MSGID_MAX");
_Static_assert(ENGINE_VISITS_MAX <= 9999999, "a visit has 7 digits at most");
_Static_assert(ENGINE_VISITS_MAX >= CHART_MAX_VISITS_MAX,
               "every max_visits can be counted");

/* One engine_step in progress. */
struct run {
	const struct chart *c;
	struct saga *s; /* the working copy */
	const struct engine_event *ev;
	struct engine_output *out;
	int entries;       /* states entered so far */
	bool armed_before; /* a timer was armed when the step began */
	bool timer_set;    /* arm a new timer at timer_at */
	int64_t timer_at;
	bool finish; /* push ACT_FINISH at the end */
	/* parallel states (the section "parallel states") */
	bool in_branch;           /* a branch is swapped into *s */
	size_t branch;            /* which one */
	struct saga_branch outer; /* the saga's own fields meanwhile */
	bool outer_timer_set;     /* timer_set meanwhile */
	int64_t outer_timer_at;   /* timer_at meanwhile */
	int par_gen;              /* parallel states left so far */
};

/* ---- small helpers ---- */

static void vnote(struct engine_output *out, const char *fmt, va_list ap)
        __attribute__((format(printf, 2, 0)));

static void
vnote(struct engine_output *out, const char *fmt, va_list ap)
{
	size_t len = strlen(out->note);

	if (len + 3 >= sizeof(out->note))
		return;
	if (len > 0) {
		memcpy(out->note + len, "; ", 3);
		len += 2;
	}
	vsnprintf(out->note + len, sizeof(out->note) - len, fmt, ap);
}

static void note(struct run *r, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void
note(struct run *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vnote(r->out, fmt, ap);
	va_end(ap);
}

/* Replaces the note with the reason of a non-OK result; returns -1 so
 * that callers can `return fail(...)`. */
static int fail(struct run *r, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static int
fail(struct run *r, const char *fmt, ...)
{
	va_list ap;

	r->out->note[0] = '\0';
	va_start(ap, fmt);
	vnote(r->out, fmt, ap);
	va_end(ap);
	return -1;
}

static const struct chart_state *
cur(const struct run *r)
{
	return &r->c->states[r->s->state];
}

static const char *
state_name(const struct run *r, int idx)
{
	return r->c->states[idx].name;
}

/* True while the saga's current command is an undo command. */
static bool
undoing(const struct saga *s)
{
	return s->status == SAGA_COMPENSATING || s->status == SAGA_STUCK;
}

static const struct chart_retry *
policy(const struct run *r)
{
	const struct chart_state *st = cur(r);
	return undoing(r->s) ? &st->compensate->retry : &st->retry;
}

static int64_t
timeout_of(const struct run *r)
{
	const struct chart_state *st = cur(r);
	return undoing(r->s) ? st->compensate->timeout_ms : st->timeout_ms;
}

/* The visit of the current command's step: the one on the completed
 * stack while compensating, else the current entry. */
static int
cur_visit(const struct saga *s)
{
	if (undoing(s) && s->ndone > 0)
		return s->done[s->ndone - 1].visit;
	return s->visits[s->state];
}

/* The message id of the current command; -1 if it does not fit. */
static int
current_msgid(const struct run *r, char *buf, size_t cap)
{
	int n = engine_message_id(buf, cap, r->s->id, cur(r)->name,
	                          cur_visit(r->s), undoing(r->s),
	                          r->s->attempt);

	return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

static struct engine_action *
push_action(struct run *r, enum engine_action_type type)
{
	struct engine_output *out = r->out;
	struct engine_action *a;

	if (out->nactions >= ENGINE_MAX_ACTIONS)
		return NULL;
	a = &out->actions[out->nactions++];
	memset(a, 0, sizeof(*a));
	a->type = type;
	value_set_nil(&a->payload);
	return a;
}

static void
set_timer(struct run *r, int64_t at)
{
	r->timer_set = true;
	r->timer_at = at;
}

/* A timer of the current step, capped at its deadline (none while
 * compensating: an undo waits as long as it takes). */
static void
set_step_timer(struct run *r, int64_t at)
{
	int64_t dl = r->s->deadline_ms;

	set_timer(r, (!undoing(r->s) && dl > 0 && dl < at) ? dl : at);
}

/* The saga stops waiting: no timer, no phase. */
static void
stop_waiting(struct run *r)
{
	r->s->phase = PHASE_NONE;
	r->timer_set = false;
}

static int
emit(struct run *r, const char *event)
{
	struct engine_action *a;

	if (event == NULL)
		return 0;
	a = push_action(r, ACT_EMIT);
	if (a == NULL)
		return fail(r, "too many actions");
	snprintf(a->event, sizeof(a->event), "%s", event);
	note(r, "emit %s", event);
	return 0;
}

/* A command's payload: the `pass` fields of the saga data, dotted paths
 * kept as nested maps; missing fields are left out. */
static int
build_payload(struct value *out, const struct value *data, char *const *pass,
              size_t npass)
{
	size_t i;

	value_set_map(out);
	for (i = 0; i < npass; i++) {
		const struct value *v = value_path_get(data, pass[i]);
		struct value tmp = VALUE_NIL_INIT;

		if (v == NULL)
			continue;
		if (value_copy(&tmp, v) != 0 ||
		    value_path_put(out, pass[i], &tmp) != 0) {
			value_clear(&tmp);
			value_clear(out);
			return -1;
		}
	}
	return 0;
}

/* Sends the current command (the step's, or its undo command while
 * compensating) for s->attempt, and arms its timeout. Returns 0, -1 on
 * error (note set), or 1 when the route cannot be rendered (note says
 * why, nothing sent). */
static int
send_current(struct run *r)
{
	struct saga *s = r->s;
	const struct chart_state *st = cur(r);
	const struct chart_compensation *cp =
	        undoing(s) ? st->compensate : NULL;
	const char *to = (cp != NULL && cp->to != NULL) ? cp->to : st->to;
	const char *cmd = cp != NULL ? cp->command : st->command;
	chart_template route =
	        (cp != NULL && cp->route != NULL) ? cp->route : st->route;
	char *const *pass = cp != NULL ? cp->pass : st->pass;
	size_t npass = cp != NULL ? cp->npass : st->npass;
	char rendered[256], why[160];
	struct engine_action *a;

	if (chart_render_route(route, &s->data, rendered, sizeof(rendered), why,
	                       sizeof(why)) != 0) {
		note(r, "%s: cannot route %s: %s", st->name, cmd, why);
		return 1;
	}
	a = push_action(r, ACT_SEND);
	if (a == NULL)
		return fail(r, "too many actions");
	if (build_payload(&a->payload, &s->data, pass, npass) != 0)
		return fail(r, "out of memory");
	snprintf(a->to, sizeof(a->to), "%s", to != NULL ? to : "");
	snprintf(a->command, sizeof(a->command), "%s", cmd);
	snprintf(a->route, sizeof(a->route), "%s", rendered);
	if (current_msgid(r, a->message_id, sizeof(a->message_id)) != 0)
		return fail(r, "message id of %s too long", st->name);
	snprintf(a->step, sizeof(a->step), "%s", st->name);
	a->visit = cur_visit(s);
	a->attempt = s->attempt;
	a->compensation = cp != NULL;
	s->phase = PHASE_AWAIT;
	set_step_timer(r, r->ev->now_ms + timeout_of(r));
	if (a->visit > 1)
		note(r, "sent %s%s (%s visit %d attempt %d)",
		     cp != NULL ? "undo " : "", cmd, st->name, a->visit,
		     s->attempt);
	else
		note(r, "sent %s%s (%s attempt %d)", cp != NULL ? "undo " : "",
		     cmd, st->name, s->attempt);
	return 0;
}

static int push_done(struct run *r, bool unknown);
static int enter(struct run *r, int target);
static int begin_compensation(struct run *r, int target);

static int parallel_enter(struct run *r);
static int parallel_fail(struct run *r, int target);

/* The current step cannot be sent (route). It fails to its exhausted
 * target; attempts already sent make its outcome unknown. */
static int
step_unsendable(struct run *r)
{
	if (r->s->attempt > 1 && push_done(r, true) != 0)
		return -1;
	return begin_compensation(r, cur(r)->exhausted_target);
}

/* The current undo command cannot be sent or failed all its attempts. */
static void
become_stuck(struct run *r)
{
	r->s->status = SAGA_STUCK;
	stop_waiting(r);
	note(r, "compensation of %s cannot complete: stuck", cur(r)->name);
}

/* Sends the current command; handles an unroutable one. */
static int
send_or_fail(struct run *r)
{
	int rc = send_current(r);

	if (rc <= 0)
		return rc;
	if (undoing(r->s)) {
		become_stuck(r);
		return 0;
	}
	return step_unsendable(r);
}

/* Pushes the current step on the completed stack, if it has something to
 * undo. */
static int
push_done(struct run *r, bool unknown)
{
	struct saga *s = r->s;

	if (cur(r)->compensate == NULL)
		return 0;
	if (s->ndone >= ENGINE_STACK_MAX)
		return fail(r, "completed stack full (%d steps)",
		            ENGINE_STACK_MAX);
	assert(s->visits[s->state] >= 1);
	s->done[s->ndone].state = s->state;
	s->done[s->ndone].unknown = unknown;
	s->done[s->ndone].visit = s->visits[s->state];
	s->ndone++;
	return 0;
}

/* ---- entering states ---- */

/* The compensation under way ends in the chart's cancel state. */
static bool
cancelling(const struct run *r)
{
	return r->c->ncancel_in > 0 && r->s->fail_target >= 0 &&
	       r->s->fail_target == r->c->cancel_final;
}

static int
enter_final(struct run *r)
{
	struct saga *s = r->s;

	s->status = s->status != SAGA_COMPENSATING ? SAGA_COMPLETED
	            : cancelling(r)                ? SAGA_CANCELLED
	                                           : SAGA_FAILED;
	s->attempt = 0;
	s->attempt_base = 0;
	stop_waiting(r);
	note(r, "%s: %s", cur(r)->name, saga_status_name(s->status));
	if (emit(r, cur(r)->emit) != 0)
		return -1;
	r->finish = true;
	return 0;
}

/* A guard: on the saga data, or on a visit count. */
static bool
cond_holds(const struct run *r, const struct chart_cond *cond)
{
	struct value v = VALUE_NIL_INIT;

	if (!cond->visits)
		return chart_cond_holds(cond, &r->s->data);
	assert(cond->visits_state >= 0 &&
	       (size_t)cond->visits_state < r->c->nstates);
	value_set_int(&v, r->s->visits[cond->visits_state]);
	return chart_cond_eval(cond, &v);
}

static int
enter_choice(struct run *r)
{
	const struct chart_state *st = cur(r);
	size_t i, j;

	for (i = 0; i < st->nbranches; i++) {
		const struct chart_branch *b = &st->branches[i];

		for (j = 0; j < b->nconds; j++)
			if (!cond_holds(r, &b->conds[j]))
				break;
		if (j < b->nconds)
			continue;
		note(r, "%s: branch %zu -> %s%s", st->name, i + 1,
		     b->kind == REPLY_FAIL ? "fail " : "",
		     state_name(r, b->target));
		if (b->kind == REPLY_FAIL)
			return begin_compensation(r, b->target);
		return enter(r, b->target);
	}
	note(r, "%s: default -> %s", st->name,
	     state_name(r, st->default_target));
	return enter(r, st->default_target);
}

/* Entering `target` is refused: it was entered max_visits times. Its
 * too_many target is taken instead. */
static int
refuse(struct run *r, int target)
{
	const struct chart_state *st = &r->c->states[target];

	assert(st->too_many_target >= 0); /* the loader sets a default */
	note(r, "%s: visit %d refused (max_visits %d) -> %s%s", st->name,
	     st->max_visits + 1, st->max_visits,
	     st->too_many_kind == REPLY_FAIL ? "fail " : "",
	     state_name(r, st->too_many_target));
	if (st->too_many_kind == REPLY_FAIL)
		return begin_compensation(r, st->too_many_target);
	return enter(r, st->too_many_target);
}

/* Enters state `target` of a running saga (or the final state of a
 * compensated one). */
static int
enter(struct run *r, int target)
{
	struct saga *s = r->s;
	const struct chart_state *st;

	if (++r->entries > ENGINE_ENTRIES_MAX)
		return fail(r,
		            "transition loop: more than %d states entered "
		            "in one step (at %s)",
		            ENGINE_ENTRIES_MAX, state_name(r, target));
	st = &r->c->states[target];
	if (st->max_visits > 0 && s->visits[target] >= st->max_visits)
		return refuse(r, target);
	if (s->visits[target] < ENGINE_VISITS_MAX)
		s->visits[target]++;
	else if (st->type == STATE_STEP)
		return fail(r, "%s entered %d times: its ids would repeat",
		            st->name, ENGINE_VISITS_MAX);
	s->state = target;
	s->step_started_ms = r->ev->now_ms;
	st = cur(r);
	s->deadline_ms =
	        st->type == STATE_STEP ? r->ev->now_ms + st->deadline_ms : 0;
	switch (st->type) {
	case STATE_STEP:
		s->attempt = 1;
		s->attempt_base = 0;
		return send_or_fail(r);
	case STATE_CHOICE:
		s->attempt = 0;
		s->attempt_base = 0;
		return enter_choice(r);
	case STATE_WAIT:
		s->attempt = 0;
		s->attempt_base = 0;
		s->phase = PHASE_WAIT;
		set_timer(r, r->ev->now_ms + st->duration_ms);
		note(r, "%s: waiting %" PRId64 " ms", st->name,
		     st->duration_ms);
		return 0;
	case STATE_FINAL:
		return enter_final(r);
	case STATE_PARALLEL:
		return parallel_enter(r);
	}
	return fail(r, "state %s has an unknown type", st->name);
}

/* Starts undoing the top of the completed stack, or ends the saga in its
 * fail target when the stack is empty. */
static int
next_compensation(struct run *r)
{
	struct saga *s = r->s;

	s->status = SAGA_COMPENSATING;
	if (s->ndone == 0) {
		if (r->c->states[s->fail_target].type != STATE_FINAL)
			return fail(r, "fail target %s is not a final state",
			            state_name(r, s->fail_target));
		return enter(r, s->fail_target);
	}
	s->state = s->done[s->ndone - 1].state;
	s->step_started_ms = r->ev->now_ms;
	s->deadline_ms = 0;
	s->attempt = 1;
	s->attempt_base = 0;
	return send_or_fail(r);
}

static int
begin_compensation(struct run *r, int target)
{
	if (r->in_branch)
		return parallel_fail(r, target);
	r->s->fail_target = target;
	note(r, "compensating %zu step%s, then %s", r->s->ndone,
	     r->s->ndone == 1 ? "" : "s", state_name(r, target));
	return next_compensation(r);
}

/* The current step succeeded: leave it through `target`. */
static int
step_done(struct run *r, int target, const struct value *reply)
{
	struct saga *s = r->s;
	const struct chart_state *st = cur(r);
	size_t i;

	if (push_done(r, false) != 0)
		return -1;
	for (i = 0; i < st->nsave; i++) {
		const struct value *v =
		        reply != NULL ? value_map_get(reply, st->save[i])
		                      : NULL;
		struct value tmp = VALUE_NIL_INIT;

		if (v == NULL) {
			note(r, "reply has no %s to save", st->save[i]);
			continue;
		}
		if (value_copy(&tmp, v) != 0 ||
		    value_map_put(&s->data, st->save[i], &tmp) != 0) {
			value_clear(&tmp);
			return fail(r, "out of memory");
		}
	}
	s->phase = PHASE_NONE;
	if (emit(r, st->emit) != 0)
		return -1;
	return enter(r, target);
}

/* The current attempt failed (timeout, RETRY reply): back off and try
 * again, or give up. */
static int
attempt_failed(struct run *r)
{
	struct saga *s = r->s;
	const struct chart_retry *p = policy(r);
	int used = s->attempt - s->attempt_base;
	int64_t delay;

	if (used >= p->attempts) {
		if (undoing(s)) {
			note(r, "undo of %s failed %d attempt%s", cur(r)->name,
			     used, used == 1 ? "" : "s");
			become_stuck(r);
			return 0;
		}
		note(r, "%s failed %d attempt%s: outcome unknown", cur(r)->name,
		     used, used == 1 ? "" : "s");
		if (push_done(r, true) != 0)
			return -1;
		return begin_compensation(r, cur(r)->exhausted_target);
	}
	delay = chart_retry_delay(p, used + 1);
	if (delay <= 0) {
		s->attempt++;
		return send_or_fail(r);
	}
	s->phase = PHASE_BACKOFF;
	set_step_timer(r, r->ev->now_ms + delay);
	note(r, "attempt %d in %" PRId64 " ms", s->attempt + 1, delay);
	return 0;
}

/* ---- events ---- */

static int
on_start(struct run *r)
{
	struct saga *s = r->s;
	const struct engine_event *ev = r->ev;
	size_t i;

	if (ev->payload == NULL || ev->payload->type != VALUE_MAP)
		return fail(r, "order is not a map");
	for (i = 0; i < r->c->nfields; i++) {
		const struct chart_field *f = &r->c->fields[i];
		const struct value *v = value_path_get(ev->payload, f->path);
		bool ok;

		if (v == NULL)
			continue;
		switch (f->type) {
		case FIELD_STRING:
			ok = v->type == VALUE_STR;
			break;
		case FIELD_INTEGER:
			ok = v->type == VALUE_INT;
			break;
		case FIELD_NUMBER:
			ok = v->type == VALUE_INT || v->type == VALUE_FLOAT;
			break;
		case FIELD_BOOLEAN:
			ok = v->type == VALUE_BOOL;
			break;
		case FIELD_LIST:
			ok = v->type == VALUE_ARRAY;
			break;
		case FIELD_MAP:
			ok = v->type == VALUE_MAP;
			break;
		default:
			ok = false;
			break;
		}
		if (!ok)
			return fail(r, "order field %s: expected %s, got %s",
			            f->path, chart_field_type_name(f->type),
			            value_type_name(v->type));
	}
	value_clear(&s->data);
	if (value_copy(&s->data, ev->payload) != 0)
		return fail(r, "out of memory");
	snprintf(s->chart_version, sizeof(s->chart_version), "%s",
	         r->c->version);
	s->status = SAGA_RUNNING;
	s->phase = PHASE_NONE;
	s->ndone = 0;
	s->fail_target = -1;
	s->started_ms = ev->now_ms;
	note(r, "start on %s %s", r->c->name, r->c->version);
	return enter(r, r->c->initial);
}

/* IGNORED for the reasons engine.h lists; 0 if the reply is for the
 * outstanding command. */
static int
reply_outstanding(struct run *r)
{
	const struct saga *s = r->s;
	const struct engine_event *ev = r->ev;
	char want[ENGINE_MSGID_MAX];

	if (saga_status_final(s->status)) {
		note(r, "saga is %s: late reply %s to %s",
		     saga_status_name(s->status), ev->reply_type,
		     ev->in_reply_to);
		return -1;
	}
	if (s->phase != PHASE_AWAIT) {
		note(r,
		     "no command outstanding in %s (%s, %s): late reply "
		     "%s to %s",
		     cur(r)->name, saga_status_name(s->status),
		     saga_phase_name(s->phase), ev->reply_type,
		     ev->in_reply_to);
		return -1;
	}
	if (current_msgid(r, want, sizeof(want)) != 0 ||
	    strcmp(want, ev->in_reply_to) != 0) {
		note(r, "late reply %s to %s: outstanding is %s",
		     ev->reply_type, ev->in_reply_to, want);
		return -1;
	}
	return 0;
}

static enum engine_result
on_reply(struct run *r)
{
	struct saga *s = r->s;
	const struct engine_event *ev = r->ev;
	const struct chart_state *st;
	const struct chart_reply *rep;

	if (ev->reply_type == NULL || ev->in_reply_to == NULL) {
		fail(r, "reply without type or in_reply_to");
		return ENGINE_ERROR;
	}
	if (reply_outstanding(r) != 0)
		return ENGINE_IGNORED;
	st = cur(r);
	if (undoing(s)) {
		size_t i;

		for (i = 0; i < st->compensate->nok; i++)
			if (strcmp(st->compensate->ok[i], ev->reply_type) == 0)
				break;
		if (i == st->compensate->nok) {
			note(r, "%s is not an ok reply of undo %s: ignored",
			     ev->reply_type, st->compensate->command);
			return ENGINE_IGNORED;
		}
		note(r, "%s compensated (%s)", st->name, ev->reply_type);
		s->ndone--;
		return next_compensation(r) == 0 ? ENGINE_OK : ENGINE_ERROR;
	}
	rep = chart_step_reply(st, ev->reply_type);
	if (rep == NULL) {
		note(r, "%s does not map reply %s: ignored", st->name,
		     ev->reply_type);
		return ENGINE_IGNORED;
	}
	switch (rep->kind) {
	case REPLY_GOTO:
		note(r, "%s done (%s)", st->name, ev->reply_type);
		return step_done(r, rep->target, ev->payload) == 0
		               ? ENGINE_OK
		               : ENGINE_ERROR;
	case REPLY_FAIL:
		note(r, "%s failed (%s)", st->name, ev->reply_type);
		return begin_compensation(r, rep->target) == 0 ? ENGINE_OK
		                                               : ENGINE_ERROR;
	case REPLY_RETRY:
		note(r, "%s attempt %d failed (%s)", st->name, s->attempt,
		     ev->reply_type);
		return attempt_failed(r) == 0 ? ENGINE_OK : ENGINE_ERROR;
	}
	fail(r, "reply %s has an unknown kind", ev->reply_type);
	return ENGINE_ERROR;
}

/* The step's deadline passed with no answer: its outcome is unknown (an
 * attempt went out), so it is compensated too, as when its attempts run
 * out. */
static int
deadline_passed(struct run *r)
{
	note(r, "%s: deadline passed after %d attempt%s: outcome unknown",
	     cur(r)->name, r->s->attempt - r->s->attempt_base,
	     r->s->attempt - r->s->attempt_base == 1 ? "" : "s");
	if (push_done(r, true) != 0)
		return -1;
	return begin_compensation(r, cur(r)->exhausted_target);
}

static enum engine_result
on_timeout(struct run *r)
{
	struct saga *s = r->s;
	int rc;

	if (s->phase == PHASE_NONE) {
		note(r,
		     "timer %" PRId64 " fired but saga is %s: no timer "
		     "armed",
		     r->ev->timer_seq, saga_status_name(s->status));
		return ENGINE_IGNORED;
	}
	if (r->ev->timer_seq != s->timer_seq) {
		note(r, "stale timer %" PRId64 ": current is %" PRId64,
		     r->ev->timer_seq, s->timer_seq);
		return ENGINE_IGNORED;
	}
	if (!undoing(s) && s->deadline_ms > 0 &&
	    r->ev->now_ms >= s->deadline_ms &&
	    (s->phase == PHASE_AWAIT || s->phase == PHASE_BACKOFF))
		return deadline_passed(r) == 0 ? ENGINE_OK : ENGINE_ERROR;
	if (s->phase == PHASE_AWAIT &&
	    (r->in_branch ? ((r->ev->absent_branches >> r->branch) & 1u) != 0
	                  : r->ev->absent)) {
		note(r,
		     "%s%s attempt %d: not taken (no consumer): still queued, "
		     "not counted",
		     undoing(s) ? "undo " : "", cur(r)->name, s->attempt);
		set_step_timer(r, r->ev->now_ms + timeout_of(r));
		return ENGINE_OK;
	}
	switch (s->phase) {
	case PHASE_WAIT:
		note(r, "%s: wait over", cur(r)->name);
		s->phase = PHASE_NONE;
		rc = enter(r, cur(r)->next);
		break;
	case PHASE_BACKOFF:
		s->attempt++;
		rc = send_or_fail(r);
		break;
	case PHASE_AWAIT:
		note(r, "%s%s attempt %d timed out", undoing(s) ? "undo " : "",
		     cur(r)->name, s->attempt);
		rc = attempt_failed(r);
		break;
	default:
		rc = fail(r, "saga has an unknown phase");
		break;
	}
	return rc == 0 ? ENGINE_OK : ENGINE_ERROR;
}

/* REJECTED with a note: the operator event does not apply. */
static enum engine_result reject(struct run *r, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static enum engine_result
reject(struct run *r, const char *fmt, ...)
{
	va_list ap;

	r->out->note[0] = '\0';
	va_start(ap, fmt);
	vnote(r->out, fmt, ap);
	va_end(ap);
	return ENGINE_REJECTED;
}

static bool
at_step(const struct run *r)
{
	return r->s->status == SAGA_RUNNING && cur(r)->type == STATE_STEP &&
	       (r->s->phase == PHASE_AWAIT || r->s->phase == PHASE_BACKOFF);
}

static enum engine_result
op_retry(struct run *r)
{
	struct saga *s = r->s;

	if (!at_step(r) && s->status != SAGA_COMPENSATING)
		return reject(r,
		              "retry: saga is %s in %s (%s), not at a step%s",
		              saga_status_name(s->status), cur(r)->name,
		              saga_phase_name(s->phase),
		              s->status == SAGA_STUCK ? ": use resume" : "");
	note(r, "operator retry");
	if (!undoing(s))
		s->deadline_ms = r->ev->now_ms + cur(r)->deadline_ms;
	s->attempt_base = s->attempt;
	s->attempt++;
	return send_or_fail(r) == 0 ? ENGINE_OK : ENGINE_ERROR;
}

static enum engine_result
op_resume(struct run *r)
{
	struct saga *s = r->s;

	if (s->status != SAGA_STUCK)
		return reject(r, "resume: saga is %s, not stuck",
		              saga_status_name(s->status));
	note(r, "operator resume");
	s->status = SAGA_COMPENSATING;
	s->attempt_base = s->attempt;
	s->attempt++;
	return send_or_fail(r) == 0 ? ENGINE_OK : ENGINE_ERROR;
}

static enum engine_result
op_abort(struct run *r)
{
	struct saga *s = r->s;

	if (saga_status_final(s->status))
		return reject(r, "abort: saga is already %s",
		              saga_status_name(s->status));
	note(r, "operator abort in %s (%s): nothing undone", cur(r)->name,
	     saga_status_name(s->status));
	s->status = SAGA_ABORTED;
	stop_waiting(r);
	r->finish = true;
	return ENGINE_OK;
}

static enum engine_result
op_compensate(struct run *r)
{
	struct saga *s = r->s;
	int target = r->c->failure;

	if (s->status != SAGA_RUNNING)
		return reject(r, "compensate: saga is %s, not running",
		              saga_status_name(s->status));
	note(r, "operator compensate");
	if (at_step(r)) {
		note(r, "%s in flight: outcome unknown", cur(r)->name);
		if (push_done(r, true) != 0)
			return ENGINE_ERROR;
		target = cur(r)->exhausted_target;
	}
	stop_waiting(r);
	return begin_compensation(r, target) == 0 ? ENGINE_OK : ENGINE_ERROR;
}

static bool in_parallel(const struct saga *s);
static int branches_unknown(struct run *r, size_t except);
static void parallel_leave(struct run *r);

/* The customer cancels: accepted in the chart's `cancel.in` states while
 * running (in a parallel state: if the parallel state is listed), then
 * like COMPENSATE, ending in `cancel.final`. */
static enum engine_result
on_cancel(struct run *r)
{
	struct saga *s = r->s;
	const struct chart *c = r->c;

	if (c->ncancel_in == 0 || c->cancel_final < 0)
		return reject(r, "cancel refused: chart %s accepts no cancel",
		              c->name);
	if (s->status != SAGA_RUNNING)
		return reject(r, "cancel refused: saga is %s in %s",
		              saga_status_name(s->status), cur(r)->name);
	if (!chart_cancel_accepted(c, s->state))
		return reject(r, "cancel refused: too late, saga is in %s",
		              cur(r)->name);
	note(r, "cancel accepted in %s", cur(r)->name);
	if (in_parallel(s)) { /* every branch in flight is unknown */
		if (branches_unknown(r, SIZE_MAX) != 0)
			return ENGINE_ERROR;
		parallel_leave(r);
	} else if (at_step(r)) {
		note(r, "%s in flight: outcome unknown", cur(r)->name);
		if (push_done(r, true) != 0)
			return ENGINE_ERROR;
	}
	stop_waiting(r);
	return begin_compensation(r, c->cancel_final) == 0 ? ENGINE_OK
	                                                   : ENGINE_ERROR;
}

static enum engine_result
op_skip(struct run *r)
{
	struct saga *s = r->s;
	const struct chart_state *st = cur(r);
	size_t i;

	if (s->status == SAGA_COMPENSATING || s->status == SAGA_STUCK) {
		note(r, "operator skip: undo of %s taken as done", st->name);
		s->ndone--;
		stop_waiting(r);
		return next_compensation(r) == 0 ? ENGINE_OK : ENGINE_ERROR;
	}
	if (!at_step(r))
		return reject(r, "skip: saga is %s in %s (%s), not at a step",
		              saga_status_name(s->status), st->name,
		              saga_phase_name(s->phase));
	for (i = 0; i < st->nreplies; i++)
		if (st->replies[i].kind == REPLY_GOTO)
			break;
	if (i == st->nreplies)
		return reject(r, "skip: step %s has no success reply",
		              st->name);
	note(r, "operator skip: %s taken as %s", st->name, st->replies[i].type);
	return step_done(r, st->replies[i].target, NULL) == 0 ? ENGINE_OK
	                                                      : ENGINE_ERROR;
}

static enum engine_result
op_mark_compensated(struct run *r)
{
	struct saga *s = r->s;
	const char *step = r->ev->step != NULL ? r->ev->step : "";
	size_t i;

	if (s->status != SAGA_COMPENSATING && s->status != SAGA_STUCK)
		return reject(r,
		              "mark-compensated: saga is %s, not "
		              "compensating",
		              saga_status_name(s->status));
	for (i = s->ndone; i > 0; i--)
		if (strcmp(state_name(r, s->done[i - 1].state), step) == 0)
			break;
	if (i == 0)
		return reject(r,
		              "mark-compensated: %s is not waiting to be "
		              "compensated",
		              step);
	note(r, "operator marked %s compensated", step);
	memmove(&s->done[i - 1], &s->done[i],
	        (s->ndone - i) * sizeof(s->done[0]));
	s->ndone--;
	if (i - 1 < s->ndone)
		return ENGINE_OK; /* not the current one: nothing else */
	stop_waiting(r);
	return next_compensation(r) == 0 ? ENGINE_OK : ENGINE_ERROR;
}

/* ---- parallel states ----
 *
 * A parallel state runs the first state of each branch at once and waits
 * until every branch reached `join`. Each branch is a chain of steps and
 * choices that behaves exactly like a sequential saga, so the functions
 * above run it unchanged: a branch's fields (struct saga_branch) are
 * swapped into the saga's own (state, phase, attempt, ...) while one of its
 * events runs (branch_load .. branch_unload), and the saga's fields hold
 * the parallel state's meanwhile. Two places notice a branch: entering the
 * parallel state from inside one is its join, and compensation begun
 * inside one fails the whole parallel state (parallel_fail): every other
 * branch's command in flight is taken as unknown and compensated too.
 *
 * Timers: each branch keeps the time its own timer would fire, and the
 * saga's one timer is armed at the earliest of them after every event
 * (parallel_rearm). A TIMEOUT runs every branch whose time has come.
 * par_gen counts the parallel states left during this engine_step, so a
 * loop over branches stops when one of them ended the parallel state (the
 * saga may already be in another one). */

static bool
in_parallel(const struct saga *s)
{
	return s->phase == PHASE_PARALLEL;
}

/* Swaps branch b's fields into the saga's. */
static void
branch_load(struct run *r, size_t b)
{
	struct saga *s = r->s;
	const struct saga_branch *br = &s->branches[b];

	assert(!r->in_branch && in_parallel(s) && b < s->nbranches);
	r->outer = (struct saga_branch){s->state,       s->phase,
	                                s->attempt,     s->attempt_base,
	                                s->timer_at_ms, s->step_started_ms,
	                                s->deadline_ms};
	r->outer_timer_set = r->timer_set;
	r->outer_timer_at = r->timer_at;
	r->timer_set = false;
	s->state = br->state;
	s->phase = br->phase;
	s->attempt = br->attempt;
	s->attempt_base = br->attempt_base;
	s->step_started_ms = br->step_started_ms;
	s->deadline_ms = br->deadline_ms;
	r->in_branch = true;
	r->branch = b;
}

/* Stores the running branch's fields back and restores the saga's. A
 * timer the branch asked for becomes its time. */
static void
branch_unload(struct run *r)
{
	struct saga *s = r->s;
	struct saga_branch *br = &s->branches[r->branch];

	assert(r->in_branch);
	br->state = s->state;
	br->phase = s->phase;
	br->attempt = s->attempt;
	br->attempt_base = s->attempt_base;
	br->step_started_ms = s->step_started_ms;
	br->deadline_ms = s->deadline_ms;
	if (br->phase == PHASE_NONE)
		br->timer_at_ms = 0;
	else if (r->timer_set)
		br->timer_at_ms = r->timer_at;
	s->state = r->outer.state;
	s->phase = r->outer.phase;
	s->attempt = r->outer.attempt;
	s->attempt_base = r->outer.attempt_base;
	s->step_started_ms = r->outer.step_started_ms;
	s->deadline_ms = r->outer.deadline_ms;
	r->timer_set = r->outer_timer_set;
	r->timer_at = r->outer_timer_at;
	r->in_branch = false;
	assert(br->phase == PHASE_NONE || br->timer_at_ms > 0);
}

static bool
branch_waits(const struct saga_branch *br)
{
	return br->phase == PHASE_AWAIT || br->phase == PHASE_BACKOFF;
}

/* Arms the saga's timer at the earliest branch time. */
static void
parallel_rearm(struct run *r)
{
	const struct saga *s = r->s;
	int64_t at = 0;
	size_t k;

	for (k = 0; k < s->nbranches; k++)
		if (branch_waits(&s->branches[k]) &&
		    (at == 0 || s->branches[k].timer_at_ms < at))
			at = s->branches[k].timer_at_ms;
	assert(at > 0); /* a parallel state with every branch joined is
	                 * left at once */
	set_timer(r, at);
}

/* Leaves the parallel state (all joined, or failed). */
static void
parallel_leave(struct run *r)
{
	r->s->nbranches = 0;
	r->s->phase = PHASE_NONE;
	r->par_gen++;
}

/* Enters the parallel state: every branch enters its first state. A
 * branch that fails at once (an unroutable command, a choice's fail)
 * fails the parallel state before the later branches start. */
static int
parallel_fork(struct run *r)
{
	struct saga *s = r->s;
	const struct chart_state *st = cur(r);
	int gen = r->par_gen;
	size_t k;

	assert(st->nfork >= 1 && st->nfork <= ENGINE_BRANCHES_MAX);
	s->attempt = 0;
	s->attempt_base = 0;
	s->phase = PHASE_PARALLEL;
	s->nbranches = st->nfork;
	for (k = 0; k < st->nfork; k++)
		s->branches[k] =
		        (struct saga_branch){.state = -1, .phase = PHASE_NONE};
	note(r, "%s: fork %zu branches", st->name, st->nfork);
	for (k = 0; k < st->nfork; k++) {
		branch_load(r, k);
		if (enter(r, st->fork[k]) != 0)
			return -1;
		if (gen != r->par_gen)
			return 0; /* the parallel state is over */
		if (r->in_branch)
			branch_unload(r);
	}
	parallel_rearm(r);
	return 0;
}

/* The running branch reached join; the last one leaves for `next`. */
static int
branch_join(struct run *r)
{
	struct saga *s = r->s;
	size_t b = r->branch, k;

	s->phase = PHASE_NONE;
	s->attempt = 0;
	s->attempt_base = 0;
	s->deadline_ms = 0;
	branch_unload(r);
	note(r, "branch %zu joined", b + 1);
	for (k = 0; k < s->nbranches; k++)
		if (s->branches[k].phase != PHASE_NONE ||
		    s->branches[k].state != s->state)
			return 0;
	note(r, "%s: all %zu branches joined", cur(r)->name, s->nbranches);
	parallel_leave(r);
	return enter(r, cur(r)->next);
}

/* Entering a parallel state: a fork from outside, a join from inside. */
static int
parallel_enter(struct run *r)
{
	return r->in_branch ? branch_join(r) : parallel_fork(r);
}

/* Pushes `state` on the completed stack as unknown (it has a command in
 * flight). */
static int
push_unknown(struct run *r, int state)
{
	int saved = r->s->state, rc;

	r->s->state = state;
	rc = push_done(r, true);
	r->s->state = saved;
	return rc;
}

/* Every branch's command in flight but `except`'s is unknown: pushed to
 * be compensated. */
static int
branches_unknown(struct run *r, size_t except)
{
	struct saga *s = r->s;
	size_t k;

	for (k = 0; k < s->nbranches; k++) {
		if (k == except || !branch_waits(&s->branches[k]))
			continue;
		note(r, "%s in flight: outcome unknown",
		     state_name(r, s->branches[k].state));
		if (push_unknown(r, s->branches[k].state) != 0)
			return -1;
	}
	return 0;
}

/* The running branch failed (compensation begun inside it): the whole
 * parallel state fails to `target`. */
static int
parallel_fail(struct run *r, int target)
{
	size_t b = r->branch;

	r->s->phase = PHASE_NONE;
	branch_unload(r);
	note(r, "branch %zu failed: %s fails", b + 1, cur(r)->name);
	if (branches_unknown(r, b) != 0)
		return -1;
	parallel_leave(r);
	r->timer_set = false;
	return begin_compensation(r, target);
}

/* Runs one event handler inside branch b. */
static enum engine_result
in_branch(struct run *r, size_t b, enum engine_result (*fn)(struct run *))
{
	enum engine_result res;

	branch_load(r, b);
	res = fn(r);
	if (r->in_branch)
		branch_unload(r);
	return res;
}

static enum engine_result
par_reply(struct run *r)
{
	struct saga *s = r->s;
	int gen = r->par_gen;
	char want[ENGINE_MSGID_MAX];
	enum engine_result res;
	size_t k;
	int rc;

	if (r->ev->reply_type == NULL || r->ev->in_reply_to == NULL)
		return on_reply(r); /* the error */
	for (k = 0; k < s->nbranches; k++) {
		if (s->branches[k].phase != PHASE_AWAIT)
			continue;
		branch_load(r, k);
		rc = current_msgid(r, want, sizeof(want));
		branch_unload(r);
		if (rc == 0 && strcmp(want, r->ev->in_reply_to) == 0)
			break;
	}
	if (k == s->nbranches) {
		note(r, "late reply %s to %s: no branch of %s awaits it",
		     r->ev->reply_type, r->ev->in_reply_to, cur(r)->name);
		return ENGINE_IGNORED;
	}
	res = in_branch(r, k, on_reply);
	if (res != ENGINE_OK)
		return res;
	if (gen == r->par_gen)
		parallel_rearm(r);
	return ENGINE_OK;
}

/* Every branch whose time has come; each reads its own bit of
 * absent_branches (on_timeout). */
static enum engine_result
par_timeout(struct run *r)
{
	struct saga *s = r->s;
	const struct engine_event *ev = r->ev;
	enum engine_result res = ENGINE_OK;
	int gen = r->par_gen;
	size_t k;

	if (ev->timer_seq != s->timer_seq) {
		note(r, "stale timer %" PRId64 ": current is %" PRId64,
		     ev->timer_seq, s->timer_seq);
		return ENGINE_IGNORED;
	}
	for (k = 0; k < s->nbranches && gen == r->par_gen; k++) {
		if (!branch_waits(&s->branches[k]) ||
		    s->branches[k].timer_at_ms > ev->now_ms)
			continue;
		res = in_branch(r, k, on_timeout);
		if (res != ENGINE_OK)
			break;
	}
	if (res == ENGINE_OK && gen == r->par_gen)
		parallel_rearm(r);
	return res;
}

/* RETRY: every branch step in flight is sent again now, as a new attempt
 * with a fresh budget and deadline (op_retry in each branch). */
static enum engine_result
par_retry(struct run *r)
{
	struct saga *s = r->s;
	enum engine_result res;
	int gen = r->par_gen;
	size_t k;

	for (k = 0; k < s->nbranches && gen == r->par_gen; k++) {
		if (!branch_waits(&s->branches[k]))
			continue;
		res = in_branch(r, k, op_retry);
		if (res != ENGINE_OK)
			return res;
	}
	if (gen == r->par_gen)
		parallel_rearm(r);
	return ENGINE_OK;
}

/* SKIP: the branch step named by the event's `step` (or the only one in
 * flight) is taken as succeeded (op_skip in its branch). */
static enum engine_result
par_skip(struct run *r)
{
	struct saga *s = r->s;
	const char *step = r->ev->step;
	size_t k, pick = SIZE_MAX, n = 0;
	enum engine_result res;
	int gen = r->par_gen;

	for (k = 0; k < s->nbranches; k++) {
		if (!branch_waits(&s->branches[k]))
			continue;
		n++;
		if (step == NULL ||
		    strcmp(state_name(r, s->branches[k].state), step) == 0)
			pick = k;
	}
	if (step == NULL && n > 1)
		return reject(r,
		              "skip: %zu branches of %s in flight: name the "
		              "step to skip",
		              n, cur(r)->name);
	if (pick == SIZE_MAX)
		return reject(r, "skip: no branch of %s is in step %s",
		              cur(r)->name, step != NULL ? step : "(none)");
	res = in_branch(r, pick, op_skip);
	if (res == ENGINE_OK && gen == r->par_gen)
		parallel_rearm(r);
	return res;
}

/* COMPENSATE: every branch step in flight is unknown and compensated with
 * the completed ones; the saga ends in the exhausted target of the first
 * branch in flight (as op_compensate does with the step in flight). */
static enum engine_result
par_compensate(struct run *r)
{
	struct saga *s = r->s;
	int target = r->c->failure;
	size_t k;

	note(r, "operator compensate");
	for (k = s->nbranches; k > 0; k--)
		if (branch_waits(&s->branches[k - 1]))
			target = r->c->states[s->branches[k - 1].state]
			                 .exhausted_target;
	if (branches_unknown(r, SIZE_MAX) != 0)
		return ENGINE_ERROR;
	parallel_leave(r);
	stop_waiting(r);
	return begin_compensation(r, target) == 0 ? ENGINE_OK : ENGINE_ERROR;
}

/* ABORT: as anywhere, nothing undone; the branches are dropped. */
static enum engine_result
par_abort(struct run *r)
{
	parallel_leave(r);
	return op_abort(r);
}

/* The events a saga in a parallel state takes here; START, RESUME and
 * MARK_COMPENSATED go the usual way (and are refused there). */
static bool
parallel_takes(const struct run *r)
{
	if (!in_parallel(r->s))
		return false;
	switch (r->ev->type) {
	case EV_REPLY:
	case EV_TIMEOUT:
	case EV_OP_RETRY:
	case EV_OP_SKIP:
	case EV_OP_COMPENSATE:
	case EV_OP_ABORT:
		return true;
	default:
		return false;
	}
}

static enum engine_result
parallel_dispatch(struct run *r)
{
	switch (r->ev->type) {
	case EV_REPLY:
		return par_reply(r);
	case EV_TIMEOUT:
		return par_timeout(r);
	case EV_OP_RETRY:
		return par_retry(r);
	case EV_OP_SKIP:
		return par_skip(r);
	case EV_OP_COMPENSATE:
		return par_compensate(r);
	default:
		assert(r->ev->type == EV_OP_ABORT);
		return par_abort(r);
	}
}

/* ---- engine_step ---- */

/* Checks that the saga fits the chart before touching it. */
static int
check_saga(struct run *r)
{
	const struct saga *s = r->s;

	if (r->c->nstates > CHART_STATES_MAX)
		return fail(r, "chart has %zu states, at most %d",
		            r->c->nstates, CHART_STATES_MAX);
	if (r->ev->type == EV_START) {
		if (s->state != -1)
			return fail(r, "saga %s already started", s->id);
		if (s->id[0] == '\0')
			return fail(r, "saga has no id");
		return 0;
	}
	if (s->state == -1)
		return fail(r, "saga %s not started", s->id);
	if (strcmp(s->chart_version, r->c->version) != 0)
		return fail(r, "saga runs on chart version %s, given %s",
		            s->chart_version, r->c->version);
	if (s->state < 0 || (size_t)s->state >= r->c->nstates ||
	    s->ndone > ENGINE_STACK_MAX || r->c->nstates > CHART_STATES_MAX ||
	    s->nbranches > ENGINE_BRANCHES_MAX)
		return fail(r, "saga record does not fit the chart");
	return 0;
}

static enum engine_result
dispatch(struct run *r)
{
	if (parallel_takes(r))
		return parallel_dispatch(r);
	switch (r->ev->type) {
	case EV_START:
		return on_start(r) == 0 ? ENGINE_OK : ENGINE_ERROR;
	case EV_REPLY:
		return on_reply(r);
	case EV_TIMEOUT:
		return on_timeout(r);
	default:
		break;
	}
	if (r->ev->type == EV_CANCEL)
		return on_cancel(r);
	if (saga_status_final(r->s->status))
		return reject(r, "saga is %s: operator event does not apply",
		              saga_status_name(r->s->status));
	switch (r->ev->type) {
	case EV_OP_RETRY:
		return op_retry(r);
	case EV_OP_RESUME:
		return op_resume(r);
	case EV_OP_ABORT:
		return op_abort(r);
	case EV_OP_COMPENSATE:
		return op_compensate(r);
	case EV_OP_SKIP:
		return op_skip(r);
	case EV_OP_MARK_COMPENSATED:
		return op_mark_compensated(r);
	default:
		break;
	}
	fail(r, "unknown event type %d", (int)r->ev->type);
	return ENGINE_ERROR;
}

/* The timer and finish actions, collected during the step. */
static int
close_step(struct run *r)
{
	struct saga *s = r->s;
	struct engine_action *a;

	if (r->timer_set) {
		a = push_action(r, ACT_SET_TIMER);
		if (a == NULL)
			return fail(r, "too many actions");
		s->timer_seq++;
		s->timer_at_ms = r->timer_at;
		a->timer_seq = s->timer_seq;
		a->fire_at_ms = r->timer_at;
	} else if (s->phase == PHASE_NONE) {
		s->timer_at_ms = 0;
		if (r->armed_before) {
			a = push_action(r, ACT_CANCEL_TIMER);
			if (a == NULL)
				return fail(r, "too many actions");
			a->timer_seq = s->timer_seq;
		}
	}
	if (r->finish) {
		a = push_action(r, ACT_FINISH);
		if (a == NULL)
			return fail(r, "too many actions");
		a->status = s->status;
	}
	s->updated_ms = r->ev->now_ms;
	return 0;
}

enum engine_result
engine_step(const struct chart *c, struct saga *s,
            const struct engine_event *ev, struct engine_output *out)
{
	struct saga work;
	struct run r;
	enum engine_result res;

	memset(&r, 0, sizeof(r));
	r.c = c;
	r.s = s;
	r.ev = ev;
	r.out = out;
	out->nactions = 0;
	out->note[0] = '\0';
	if (check_saga(&r) != 0) {
		out->result = ENGINE_ERROR;
		return ENGINE_ERROR;
	}
	if (saga_copy(&work, s) != 0) {
		fail(&r, "out of memory");
		out->result = ENGINE_ERROR;
		return ENGINE_ERROR;
	}
	r.s = &work;
	r.armed_before = ev->type != EV_START && work.phase != PHASE_NONE;
	res = dispatch(&r);
	if (res == ENGINE_OK && close_step(&r) != 0)
		res = ENGINE_ERROR;
	if (res != ENGINE_OK) {
		engine_output_clear(out);
		saga_clear(&work);
	} else {
		saga_clear(s);
		*s = work;
	}
	if (out->note[0] == '\0')
		snprintf(out->note, sizeof(out->note), "no change");
	out->result = res;
	return res;
}

void
engine_output_clear(struct engine_output *out)
{
	size_t i;

	for (i = 0; i < out->nactions && i < ENGINE_MAX_ACTIONS; i++)
		value_clear(&out->actions[i].payload);
	out->nactions = 0;
}

int
engine_message_id(char *buf, size_t cap, const char *saga_id, const char *state,
                  int visit, bool compensation, int attempt)
{
	if (visit <= 1) /* the form ids had before loops */
		return snprintf(buf, cap, "%s:%s:%s%d", saga_id, state,
		                compensation ? "undo:" : "", attempt);
	return snprintf(buf, cap, "%s:%s@%d:%s%d", saga_id, state, visit,
	                compensation ? "undo:" : "", attempt);
}

/* ---- the saga record ---- */

void
saga_init(struct saga *s, const char *id)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->id, sizeof(s->id), "%s", id != NULL ? id : "");
	s->status = SAGA_RUNNING;
	s->state = -1;
	s->phase = PHASE_NONE;
	s->fail_target = -1;
	value_set_map(&s->data);
}

void
saga_clear(struct saga *s)
{
	if (s == NULL)
		return;
	value_clear(&s->data);
}

int
saga_copy(struct saga *dst, const struct saga *src)
{
	*dst = *src;
	value_set_nil(&dst->data);
	if (value_copy(&dst->data, &src->data) != 0) {
		saga_init(dst, "");
		return -1;
	}
	return 0;
}

static const char *const status_names[] = {
        [SAGA_RUNNING] = "running",     [SAGA_COMPENSATING] = "compensating",
        [SAGA_COMPLETED] = "completed", [SAGA_FAILED] = "failed",
        [SAGA_STUCK] = "stuck",         [SAGA_ABORTED] = "aborted",
        [SAGA_CANCELLED] = "cancelled",
};

static const char *const phase_names[] = {
        [PHASE_NONE] = "none",
        [PHASE_AWAIT] = "await",
        [PHASE_BACKOFF] = "backoff",
        [PHASE_WAIT] = "wait",
        /* added with parallel states */
        [PHASE_PARALLEL] = "parallel",
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

int
engine_outstanding(const struct chart *c, const struct saga *s, char *to,
                   size_t tocap, char *key, size_t keycap, int64_t *timeout_ms)
{
	const struct chart_state *st;
	const struct chart_compensation *cp;
	const char *who;
	chart_template route;
	char rendered[256], why[160];
	int n;

	if (s->phase != PHASE_AWAIT || s->state < 0 ||
	    (size_t)s->state >= c->nstates)
		return -1;
	st = &c->states[s->state];
	cp = undoing(s) ? st->compensate : NULL;
	if (st->type != STATE_STEP || (undoing(s) && cp == NULL))
		return -1;
	who = (cp != NULL && cp->to != NULL) ? cp->to : st->to;
	route = (cp != NULL && cp->route != NULL) ? cp->route : st->route;
	if (chart_render_route(route, &s->data, rendered, sizeof(rendered), why,
	                       sizeof(why)) != 0)
		return -1;
	n = rendered[0] != '\0' ? snprintf(key, keycap, "%s.%s", who, rendered)
	                        : snprintf(key, keycap, "%s", who);
	if (n < 0 || (size_t)n >= keycap ||
	    (size_t)snprintf(to, tocap, "%s", who) >= tocap)
		return -1;
	*timeout_ms = cp != NULL ? cp->timeout_ms : st->timeout_ms;
	return 0;
}

int
engine_branch_outstanding(const struct chart *c, const struct saga *s, size_t k,
                          char *to, size_t tocap, char *key, size_t keycap,
                          int64_t *timeout_ms)
{
	struct saga v; /* a view of branch k; only read */

	if (s->phase != PHASE_PARALLEL || k >= s->nbranches)
		return -1;
	v = *s;
	v.state = s->branches[k].state;
	v.phase = s->branches[k].phase;
	return engine_outstanding(c, &v, to, tocap, key, keycap, timeout_ms);
}

const char *
saga_status_name(enum saga_status st)
{
	if ((size_t)st >= NELEM(status_names))
		return "unknown";
	return status_names[st];
}

int
saga_status_parse(const char *name, enum saga_status *out)
{
	size_t i;

	for (i = 0; i < NELEM(status_names); i++) {
		if (name != NULL && strcmp(name, status_names[i]) == 0) {
			*out = (enum saga_status)i;
			return 0;
		}
	}
	return -1;
}

const char *
saga_phase_name(enum saga_phase p)
{
	if ((size_t)p >= NELEM(phase_names))
		return "unknown";
	return phase_names[p];
}

const char *
engine_result_name(enum engine_result r)
{
	static const char *const names[] = {
	        [ENGINE_OK] = "ok",
	        [ENGINE_IGNORED] = "ignored",
	        [ENGINE_REJECTED] = "rejected",
	        [ENGINE_ERROR] = "error",
	};
	_Static_assert(NELEM(names) == ENGINE_ERROR + 1, "a name a result");
	if ((size_t)r >= NELEM(names))
		return "unknown";
	return names[r];
}

static int
phase_parse(const char *name, enum saga_phase *out)
{
	size_t i;

	for (i = 0; i < NELEM(phase_names); i++) {
		if (strcmp(name, phase_names[i]) == 0) {
			*out = (enum saga_phase)i;
			return 0;
		}
	}
	return -1;
}

bool
saga_status_final(enum saga_status st)
{
	return st == SAGA_COMPLETED || st == SAGA_FAILED ||
	       st == SAGA_ABORTED || st == SAGA_CANCELLED;
}

/* ---- storage form ----
 *
 * A value map with one key per field of struct saga, plus "v" (the format
 * version). Status and phase are stored by name, states by index into the
 * chart the saga runs on (the record is only ever read with that chart:
 * its version is checked). */

static int
put_int(struct value *m, const char *key, int64_t i)
{
	return value_map_put_int(m, key, i);
}

static int
done_to_value(const struct saga *s, struct value *out)
{
	size_t i;

	value_set_array(out);
	for (i = 0; i < s->ndone; i++) {
		struct value e = VALUE_NIL_INIT, b = VALUE_NIL_INIT;

		value_set_map(&e);
		value_set_bool(&b, s->done[i].unknown);
		if (put_int(&e, "state", s->done[i].state) != 0 ||
		    value_map_put(&e, "unknown", &b) != 0 ||
		    put_int(&e, "visit", s->done[i].visit) != 0 ||
		    value_array_push(out, &e) != 0) {
			value_clear(&e);
			value_clear(out);
			return -1;
		}
	}
	return 0;
}

/* The visit counts, up to the last state entered. */
static int
visits_to_value(const struct saga *s, struct value *out)
{
	size_t n = CHART_STATES_MAX;

	while (n > 0 && s->visits[n - 1] == 0)
		n--;
	value_set_array(out);
	for (size_t i = 0; i < n; i++) {
		struct value e = VALUE_NIL_INIT;

		value_set_int(&e, s->visits[i]);
		if (value_array_push(out, &e) != 0) {
			value_clear(out);
			return -1;
		}
	}
	return 0;
}

static int branches_to_value(const struct saga *s, struct value *out);

int
saga_to_value(const struct saga *s, const struct chart *c, struct value *out)
{
	struct value data = VALUE_NIL_INIT, done = VALUE_NIL_INIT;
	struct value visits = VALUE_NIL_INIT;
	struct value branches = VALUE_NIL_INIT;

	(void)c; /* indices are stored as they are; the reader checks them */
	value_set_map(out);
	if (put_int(out, "v", RECORD_VERSION) != 0 ||
	    value_map_put_str(out, "id", s->id) != 0 ||
	    value_map_put_str(out, "chart_version", s->chart_version) != 0 ||
	    value_map_put_str(out, "status", saga_status_name(s->status)) !=
	            0 ||
	    put_int(out, "state", s->state) != 0 ||
	    value_map_put_str(out, "phase", saga_phase_name(s->phase)) != 0 ||
	    put_int(out, "attempt", s->attempt) != 0 ||
	    put_int(out, "attempt_base", s->attempt_base) != 0)
		goto out_fail;
	if (value_copy(&data, &s->data) != 0 ||
	    value_map_put(out, "data", &data) != 0)
		goto out_fail;
	if (done_to_value(s, &done) != 0 ||
	    value_map_put(out, "done", &done) != 0)
		goto out_fail;
	if (visits_to_value(s, &visits) != 0 ||
	    value_map_put(out, "visits", &visits) != 0)
		goto out_fail;
	if (s->nbranches > 0 &&
	    (branches_to_value(s, &branches) != 0 ||
	     value_map_put(out, "branches", &branches) != 0))
		goto out_fail;
	if (put_int(out, "fail_target", s->fail_target) != 0 ||
	    put_int(out, "timer_seq", s->timer_seq) != 0 ||
	    put_int(out, "timer_at_ms", s->timer_at_ms) != 0 ||
	    put_int(out, "started_ms", s->started_ms) != 0 ||
	    put_int(out, "step_started_ms", s->step_started_ms) != 0 ||
	    put_int(out, "deadline_ms", s->deadline_ms) != 0 ||
	    put_int(out, "updated_ms", s->updated_ms) != 0)
		goto out_fail;
	return 0;
out_fail:
	value_clear(&data);
	value_clear(&done);
	value_clear(&visits);
	value_clear(&branches);
	value_clear(out);
	return -1;
}

/* The record's keys and their types; every one is required (but the
 * optional ones, added later: a record written before them reads as 0)
 * and no other is allowed. */
static const struct {
	const char *key;
	enum value_type type;
	bool optional;
} record_keys[] = {
        {"v", VALUE_INT, false},
        {"id", VALUE_STR, false},
        {"chart_version", VALUE_STR, false},
        {"status", VALUE_STR, false},
        {"state", VALUE_INT, false},
        {"phase", VALUE_STR, false},
        {"attempt", VALUE_INT, false},
        {"attempt_base", VALUE_INT, false},
        {"data", VALUE_MAP, false},
        {"done", VALUE_ARRAY, false},
        {"branches", VALUE_ARRAY, true},
        {"fail_target", VALUE_INT, false},
        {"timer_seq", VALUE_INT, false},
        {"timer_at_ms", VALUE_INT, false},
        {"started_ms", VALUE_INT, false},
        {"step_started_ms", VALUE_INT, false},
        {"deadline_ms", VALUE_INT, true},
        {"updated_ms", VALUE_INT, false},
        {"visits", VALUE_ARRAY, true}, /* before loops: all first visits */
};

static int bad(char *err, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int
bad(char *err, size_t errlen, const char *fmt, ...)
{
	if (err != NULL && errlen > 0) {
		va_list ap;
		int n = snprintf(err, errlen, "saga record: ");

		if (n < 0 || (size_t)n >= errlen)
			n = 0;
		va_start(ap, fmt);
		vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* The record's shape: a map of exactly record_keys, each of its type. */
static int
check_keys(const struct value *v, char *err, size_t errlen)
{
	size_t i, k;

	if (v == NULL || v->type != VALUE_MAP)
		return bad(err, errlen, "not a map");
	for (i = 0; i < v->u.m.len; i++) {
		const struct value_kv *kv = &v->u.m.items[i];

		for (k = 0; k < NELEM(record_keys); k++)
			if (strcmp(kv->key, record_keys[k].key) == 0)
				break;
		if (k == NELEM(record_keys))
			return bad(err, errlen, "unknown key \"%s\"", kv->key);
		if (kv->val.type != record_keys[k].type)
			return bad(err, errlen, "%s is %s, expected %s",
			           kv->key, value_type_name(kv->val.type),
			           value_type_name(record_keys[k].type));
	}
	for (k = 0; k < NELEM(record_keys); k++)
		if (!record_keys[k].optional &&
		    value_map_get(v, record_keys[k].key) == NULL)
			return bad(err, errlen, "missing \"%s\"",
			           record_keys[k].key);
	return 0;
}

static int64_t
rint_(const struct value *v, const char *key)
{
	return value_map_get(v, key)->u.i;
}

static const char *
rstr(const struct value *v, const char *key)
{
	return value_map_get(v, key)->u.s.ptr;
}

/* A state index from the record: in range, and of type `type` unless -1
 * is passed. */
static int
state_ok(const struct chart *c, int64_t i, int type)
{
	if (i < 0 || (uint64_t)i >= c->nstates)
		return 0;
	return type < 0 || c->states[i].type == (enum chart_state_type)type;
}

static int
done_from_value(struct saga *s, const struct chart *c, const struct value *a,
                char *err, size_t errlen)
{
	size_t i;

	if (a->u.a.len > ENGINE_STACK_MAX)
		return bad(err, errlen, "done has %zu entries, at most %d",
		           a->u.a.len, ENGINE_STACK_MAX);
	for (i = 0; i < a->u.a.len; i++) {
		const struct value *e = &a->u.a.items[i];
		const struct value *st = value_map_get(e, "state");
		const struct value *un = value_map_get(e, "unknown");
		const struct value *vi = value_map_get(e, "visit");

		/* visit: written since loops; before, every one was 1 */
		if (e->type != VALUE_MAP || st == NULL || un == NULL ||
		    e->u.m.len != (vi != NULL ? 3u : 2u) ||
		    st->type != VALUE_INT || un->type != VALUE_BOOL ||
		    (vi != NULL && (vi->type != VALUE_INT || vi->u.i < 1 ||
		                    vi->u.i > ENGINE_VISITS_MAX)))
			return bad(err, errlen,
			           "done[%zu] is not {state: integer, "
			           "unknown: boolean, visit: 1..%d}",
			           i, ENGINE_VISITS_MAX);
		if (!state_ok(c, st->u.i, STATE_STEP) ||
		    c->states[st->u.i].compensate == NULL)
			return bad(err, errlen,
			           "done[%zu]: state %" PRId64
			           " is not a step with a compensation",
			           i, st->u.i);
		s->done[i].state = (int)st->u.i;
		s->done[i].unknown = un->u.b;
		s->done[i].visit = vi != NULL ? (int)vi->u.i : 1;
	}
	s->ndone = a->u.a.len;
	return 0;
}

/* The visit counts; a record written before loops has none: every state
 * it is in or has on its stack was entered once (a chart that loads now
 * could not loop before, see chart_load.c "loops"). */
static int
visits_from_value(struct saga *s, const struct chart *c, const struct value *a,
                  char *err, size_t errlen)
{
	if (a == NULL) {
		s->visits[s->state] = 1;
		for (size_t i = 0; i < s->ndone; i++)
			s->visits[s->done[i].state] = 1;
		return 0;
	}
	if (a->u.a.len > c->nstates)
		return bad(err, errlen, "visits has %zu entries, chart has %zu",
		           a->u.a.len, c->nstates);
	for (size_t i = 0; i < a->u.a.len; i++) {
		const struct value *e = &a->u.a.items[i];

		if (e->type != VALUE_INT || e->u.i < 0 ||
		    e->u.i > ENGINE_VISITS_MAX)
			return bad(err, errlen,
			           "visits[%zu] is not a count from 0 to %d", i,
			           ENGINE_VISITS_MAX);
		s->visits[i] = (int)e->u.i;
	}
	return 0;
}

/* Field by field: the scalars, their ranges and the indices. */
static int
fields_from_value(struct saga *s, const struct chart *c, const struct value *v,
                  char *err, size_t errlen)
{
	const struct value *id = value_map_get(v, "id");
	int64_t state = rint_(v, "state"), attempt = rint_(v, "attempt");
	int64_t base = rint_(v, "attempt_base");
	int64_t ft = rint_(v, "fail_target");

	if (rint_(v, "v") != RECORD_VERSION)
		return bad(err, errlen,
		           "format version %" PRId64 ", expected %d",
		           rint_(v, "v"), RECORD_VERSION);
	if (id->u.s.len == 0 || id->u.s.len >= SAGA_ID_MAX ||
	    strlen(id->u.s.ptr) != id->u.s.len)
		return bad(err, errlen, "id is empty or too long");
	if (strcmp(rstr(v, "chart_version"), c->version) != 0)
		return bad(err, errlen, "chart version %.16s, expected %s",
		           rstr(v, "chart_version"), c->version);
	if (saga_status_parse(rstr(v, "status"), &s->status) != 0)
		return bad(err, errlen, "unknown status \"%.32s\"",
		           rstr(v, "status"));
	if (phase_parse(rstr(v, "phase"), &s->phase) != 0)
		return bad(err, errlen, "unknown phase \"%.32s\"",
		           rstr(v, "phase"));
	if (!state_ok(c, state, -1))
		return bad(err, errlen,
		           "state %" PRId64 " out of range (chart has %zu)",
		           state, c->nstates);
	if (attempt < 0 || attempt > INT_MAX || base < 0 || base > attempt)
		return bad(err, errlen,
		           "attempt %" PRId64 " / attempt_base %" PRId64
		           " out of range",
		           attempt, base);
	if (ft != -1 && !state_ok(c, ft, STATE_FINAL))
		return bad(err, errlen,
		           "fail_target %" PRId64 " is not a final state", ft);
	if (rint_(v, "timer_seq") < 0)
		return bad(err, errlen, "timer_seq is negative");
	snprintf(s->id, sizeof(s->id), "%s", id->u.s.ptr);
	snprintf(s->chart_version, sizeof(s->chart_version), "%s", c->version);
	s->state = (int)state;
	s->attempt = (int)attempt;
	s->attempt_base = (int)base;
	s->fail_target = (int)ft;
	s->timer_seq = rint_(v, "timer_seq");
	s->timer_at_ms = rint_(v, "timer_at_ms");
	s->started_ms = rint_(v, "started_ms");
	s->step_started_ms = rint_(v, "step_started_ms");
	s->updated_ms = rint_(v, "updated_ms");
	if (value_map_get(v, "deadline_ms") != NULL)
		s->deadline_ms = rint_(v, "deadline_ms");
	else if (c->states[state].type == STATE_STEP &&
	         strcmp(rstr(v, "status"), "running") == 0)
		/* written before deadlines: the step's, from its entry */
		s->deadline_ms =
		        s->step_started_ms + c->states[state].deadline_ms;
	if (done_from_value(s, c, value_map_get(v, "done"), err, errlen) != 0)
		return -1;
	return visits_from_value(s, c, value_map_get(v, "visits"), err, errlen);
}

/* ---- storage of a parallel state's branches ----
 *
 * "branches": one map per branch, written only while the saga is in a
 * parallel state, so a record of a saga outside one (and every record
 * written before parallel states) has no such key. */

static int
branches_to_value(const struct saga *s, struct value *out)
{
	size_t k;

	value_set_array(out);
	for (k = 0; k < s->nbranches; k++) {
		const struct saga_branch *br = &s->branches[k];
		struct value e = VALUE_NIL_INIT;

		value_set_map(&e);
		if (put_int(&e, "state", br->state) != 0 ||
		    value_map_put_str(&e, "phase",
		                      saga_phase_name(br->phase)) != 0 ||
		    put_int(&e, "attempt", br->attempt) != 0 ||
		    put_int(&e, "attempt_base", br->attempt_base) != 0 ||
		    put_int(&e, "timer_at_ms", br->timer_at_ms) != 0 ||
		    put_int(&e, "step_started_ms", br->step_started_ms) != 0 ||
		    put_int(&e, "deadline_ms", br->deadline_ms) != 0 ||
		    value_array_push(out, &e) != 0) {
			value_clear(&e);
			value_clear(out);
			return -1;
		}
	}
	return 0;
}

/* An integer field of a branch's map, or false. */
static bool
branch_int(const struct value *e, const char *key, int64_t *out)
{
	const struct value *v = value_map_get(e, key);

	if (v == NULL || v->type != VALUE_INT)
		return false;
	*out = v->u.i;
	return true;
}

static int
branch_from_value(struct saga_branch *br, const struct chart *c,
                  const struct value *e)
{
	const struct value *ph = value_map_get(e, "phase");
	int64_t st, at, base;

	if (e->type != VALUE_MAP || e->u.m.len != 7 || ph == NULL ||
	    ph->type != VALUE_STR ||
	    phase_parse(ph->u.s.ptr, &br->phase) != 0 ||
	    !branch_int(e, "state", &st) || !branch_int(e, "attempt", &at) ||
	    !branch_int(e, "attempt_base", &base) ||
	    !branch_int(e, "timer_at_ms", &br->timer_at_ms) ||
	    !branch_int(e, "step_started_ms", &br->step_started_ms) ||
	    !branch_int(e, "deadline_ms", &br->deadline_ms))
		return -1;
	if (!state_ok(c, st, -1) || at < 0 || at > INT_MAX || base < 0 ||
	    base > at)
		return -1;
	br->state = (int)st;
	br->attempt = (int)at;
	br->attempt_base = (int)base;
	return 0;
}

static int
branches_from_value(struct saga *s, const struct chart *c,
                    const struct value *v, char *err, size_t errlen)
{
	const struct value *a = value_map_get(v, "branches");
	size_t k;

	if (a == NULL)
		return 0;
	if (a->u.a.len > ENGINE_BRANCHES_MAX)
		return bad(err, errlen, "branches has %zu entries, at most %d",
		           a->u.a.len, ENGINE_BRANCHES_MAX);
	for (k = 0; k < a->u.a.len; k++)
		if (branch_from_value(&s->branches[k], c, &a->u.a.items[k]) !=
		    0)
			return bad(err, errlen,
			           "branches[%zu] is not {state, phase, "
			           "attempt, attempt_base, timer_at_ms, "
			           "step_started_ms, deadline_ms} in range",
			           k);
	s->nbranches = a->u.a.len;
	return 0;
}

/* One branch as the engine leaves it: joined, or waiting in one of its
 * own steps within its retry policy. */
static int
branch_consistent(const struct saga *s, const struct chart *c, size_t k,
                  char *err, size_t errlen)
{
	const struct saga_branch *br = &s->branches[k];
	const struct chart_state *st = &c->states[br->state];

	if (br->phase == PHASE_NONE) {
		if (br->state != s->state || br->timer_at_ms != 0)
			return bad(err, errlen, "branch %zu: joined but in %s",
			           k + 1, st->name);
		return 0;
	}
	if (br->phase != PHASE_AWAIT && br->phase != PHASE_BACKOFF)
		return bad(err, errlen, "branch %zu: phase %s", k + 1,
		           saga_phase_name(br->phase));
	if (st->type != STATE_STEP || st->parallel != s->state ||
	    st->branch != (int)k)
		return bad(err, errlen, "branch %zu: %s is not a step of it",
		           k + 1, st->name);
	if (br->attempt < 1 ||
	    br->attempt - br->attempt_base > st->retry.attempts ||
	    br->timer_at_ms <= 0)
		return bad(err, errlen,
		           "branch %zu: attempt %d (base %d) or timer out of "
		           "range in %s",
		           k + 1, br->attempt, br->attempt_base, st->name);
	return 0;
}

/* A saga in a parallel state (or with branches): running, one branch
 * record per branch of the chart's state, at least one not joined. */
static int
branches_consistent(const struct saga *s, const struct chart *c, char *err,
                    size_t errlen)
{
	const struct chart_state *st = &c->states[s->state];
	size_t k, waiting = 0;

	if (s->phase != PHASE_PARALLEL || s->status != SAGA_RUNNING ||
	    st->type != STATE_PARALLEL || s->nbranches != st->nfork ||
	    s->timer_seq == 0)
		return bad(err, errlen, "%zu branches in %s state %s (%s, %s)",
		           s->nbranches, chart_state_type_name(st->type),
		           st->name, saga_status_name(s->status),
		           saga_phase_name(s->phase));
	for (k = 0; k < s->nbranches; k++) {
		if (branch_consistent(s, c, k, err, errlen) != 0)
			return -1;
		waiting += s->branches[k].phase != PHASE_NONE;
	}
	if (waiting == 0)
		return bad(err, errlen, "every branch of %s joined", st->name);
	return 0;
}

/* The fields agree with each other as the engine leaves them. */
static int
consistent(const struct saga *s, const struct chart *c, char *err,
           size_t errlen)
{
	const struct chart_state *st = &c->states[s->state];
	bool waits = s->phase != PHASE_NONE;
	bool undo = s->status == SAGA_COMPENSATING || s->status == SAGA_STUCK;
	const struct chart_retry *p = NULL;

	if (s->nbranches > 0 || s->phase == PHASE_PARALLEL)
		return branches_consistent(s, c, err, errlen);
	if (waits !=
	    (s->status == SAGA_RUNNING || s->status == SAGA_COMPENSATING))
		return bad(err, errlen, "phase %s does not fit status %s",
		           saga_phase_name(s->phase),
		           saga_status_name(s->status));
	if (waits && s->timer_seq == 0)
		return bad(err, errlen, "phase %s without a timer",
		           saga_phase_name(s->phase));
	if ((s->phase == PHASE_WAIT) !=
	    (s->status == SAGA_RUNNING && st->type == STATE_WAIT))
		return bad(err, errlen, "phase %s does not fit %s state %s",
		           saga_phase_name(s->phase),
		           chart_state_type_name(st->type), st->name);
	if (s->status == SAGA_RUNNING && s->phase != PHASE_WAIT) {
		if (st->type != STATE_STEP)
			return bad(err, errlen, "running in %s state %s",
			           chart_state_type_name(st->type), st->name);
		p = &st->retry;
	}
	if (undo) {
		if (s->ndone == 0 || s->done[s->ndone - 1].state != s->state ||
		    s->fail_target < 0)
			return bad(err, errlen,
			           "%s but state %s is not the top of done",
			           saga_status_name(s->status), st->name);
		p = &st->compensate->retry;
	}
	if ((s->status == SAGA_COMPLETED || s->status == SAGA_FAILED) &&
	    st->type != STATE_FINAL)
		return bad(err, errlen, "%s in %s state %s",
		           saga_status_name(s->status),
		           chart_state_type_name(st->type), st->name);
	if (s->status == SAGA_FAILED && s->fail_target != s->state)
		return bad(err, errlen, "failed but not in its fail target");
	if (p != NULL && s->visits[s->state] < 1)
		return bad(err, errlen, "at %s, which it never entered",
		           st->name);
	for (size_t i = 0; i < s->ndone; i++)
		if (s->done[i].visit > s->visits[s->done[i].state])
			return bad(
			        err, errlen,
			        "done[%zu]: visit %d of %s, entered %d times",
			        i, s->done[i].visit,
			        c->states[s->done[i].state].name,
			        s->visits[s->done[i].state]);
	if (p != NULL &&
	    (s->attempt < 1 || s->attempt - s->attempt_base > p->attempts))
		return bad(err, errlen,
		           "attempt %d (base %d) outside the policy of %s "
		           "(%d attempts)",
		           s->attempt, s->attempt_base, st->name, p->attempts);
	return 0;
}

int
saga_from_value(struct saga *s, const struct chart *c, const struct value *v,
                char *err, size_t errlen)
{
	saga_init(s, "");
	if (check_keys(v, err, errlen) != 0 ||
	    fields_from_value(s, c, v, err, errlen) != 0 ||
	    branches_from_value(s, c, v, err, errlen) != 0 ||
	    consistent(s, c, err, errlen) != 0)
		goto out_reset;
	value_clear(&s->data);
	if (value_copy(&s->data, value_map_get(v, "data")) != 0) {
		bad(err, errlen, "out of memory");
		goto out_reset;
	}
	return 0;
out_reset:
	saga_clear(s);
	saga_init(s, "");
	return -1;
}

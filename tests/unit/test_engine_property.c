/* Property test of the saga engine: from a fixed seed, thousands of random
 * event sequences (replies of every mapped and unmapped type to the
 * outstanding or a stale command, current and stale timeouts, operator
 * events, a second START, time moving on) run against several charts.
 * After every event it checks
 *   - the engine against a reference model: a deliberately plain
 *     interpreter of engine.h's semantics written separately below (no
 *     shared code with engine.c); result, status, state, phase, attempts,
 *     completed stack, fail target, timer, data and the exact action list
 *     (with routes and payloads) must agree;
 *   - invariants that need no model: a compensation is only sent for a
 *     step that completed or whose outcome is unknown (sent, never
 *     definitely failed), in reverse order of completion; a final status
 *     never changes; at most one timer action, with seq + 1; every SEND's
 *     message id is engine_message_id of its fields, and no id is sent
 *     twice (each visit of a step is a new command); IGNORED, REJECTED
 *     and ERROR leave the stored form byte-identical and no actions;
 *     attempts never exceed the policy; the stored form round-trips
 *     through saga_from_value.
 * Parallel states (statecharts/examples/parallel.yaml and
 * tests/statecharts/valid/engine_parallel.yaml): the model runs each
 * branch on its own and compares every branch's record; replies go to
 * a branch's outstanding id, SKIP names a branch's step. Branches
 * complete in any order, so there the undo order is the model's.
 * The first difference is reported with the seed, the sequence and the
 * event index. SAGA_ENGINE_SEED and SAGA_ENGINE_SEQUENCES override the
 * defaults (for longer local runs). */
#include <stdarg.h>
#include <stdlib.h>

#include "chart_load.h"
#include "engine.h"
#include "testutil.h"

#define DEFAULT_SEED      0x5a6a2024u
#define DEFAULT_SEQUENCES 2000 /* per chart */
#define MAX_EVENTS        60   /* per sequence */
#define ENTRIES_MAX       64   /* engine.c's bound on entries per step */

static const char *const chart_files[] = {
        "statecharts/order.yaml",
        "tests/statecharts/valid/engine_wait.yaml",
        "tests/statecharts/valid/engine_long.yaml",
        "tests/statecharts/valid/engine_loop.yaml",
        "statecharts/examples/parallel.yaml",
        "tests/statecharts/valid/engine_parallel.yaml",
};
#define NCHARTS (sizeof(chart_files) / sizeof(chart_files[0]))

/* ---- random numbers (splitmix64) ---- */

static uint64_t rng;

static uint64_t
rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* 0 <= r < n */
static int
rn(int n)
{
	return n <= 0 ? 0 : (int)(rnd() % (uint64_t)n);
}

/* true with probability pct % */
static bool
pct(int p)
{
	return rn(100) < p;
}

/* ---- the reference model ---- */

struct mact {
	enum engine_action_type type;
	int step;
	bool undo;
	int visit;
	int attempt;
	char route[256];
	struct value payload;
	const char *event;
	int64_t seq, at;
	enum saga_status status;
};

/* A branch of a parallel state: its own state, phase, attempts and the
 * time its timer would fire (0 when it waits for nothing). */
struct mbranch {
	int state;
	enum saga_phase phase;
	int attempt, base;
	int64_t at;
};

struct model {
	bool started;
	enum saga_status status;
	int state;
	enum saga_phase phase;
	int attempt, base;
	struct saga_done stack[ENGINE_STACK_MAX];
	size_t n;
	int visits[CHART_STATES_MAX]; /* entries of each state */
	int fail;
	int64_t seq, at;
	struct value data;
	struct mbranch br[ENGINE_BRANCHES_MAX]; /* in a parallel state */
	size_t nbr;                             /* 0 outside one */
};

/* One event being interpreted. */
struct mrun {
	struct model *m;
	const struct chart *c;
	const char *id;
	int64_t now;
	int entries;
	bool armed_before, timer_set, finish;
	int64_t timer_at;
	struct mact acts[ENGINE_MAX_ACTIONS];
	size_t nacts;
	/* parallel states: the branch running (its fields are in *m), the
	 * outcome it reached (joined, or failed to fail_to), and how many
	 * parallel states were left during this event */
	bool in_br, joined, failed;
	size_t cur;
	int fail_to, left;
	struct mbranch outer;
	bool outer_set;
	int64_t outer_at;
};

static void
model_init(struct model *m)
{
	memset(m, 0, sizeof(*m));
	m->state = -1;
	m->fail = -1;
	value_set_map(&m->data);
}

static void
mrun_clear(struct mrun *x)
{
	size_t i;
	for (i = 0; i < x->nacts; i++)
		value_clear(&x->acts[i].payload);
	x->nacts = 0;
}

static struct mact *
madd(struct mrun *x, enum engine_action_type t)
{
	struct mact *a;
	if (x->nacts == ENGINE_MAX_ACTIONS)
		return NULL;
	a = &x->acts[x->nacts++];
	memset(a, 0, sizeof(*a));
	a->type = t;
	return a;
}

static bool
mfinal(enum saga_status s)
{
	return s == SAGA_COMPLETED || s == SAGA_FAILED || s == SAGA_ABORTED;
}

static bool
mundo(const struct model *m)
{
	return m->status == SAGA_COMPENSATING || m->status == SAGA_STUCK;
}

static bool
mpush(struct mrun *x, bool unknown)
{
	struct model *m = x->m;
	if (x->c->states[m->state].compensate == NULL)
		return true;
	if (m->n == ENGINE_STACK_MAX)
		return false;
	m->stack[m->n].state = m->state;
	m->stack[m->n].unknown = unknown;
	m->stack[m->n].visit = m->visits[m->state];
	m->n++;
	return true;
}

/* The visit of the command the model waits on. */
static int
mvisit(const struct model *m)
{
	return mundo(m) ? m->stack[m->n - 1].visit : m->visits[m->state];
}

/* A guard, the visit counter "visits.<state>" read by hand. */
static bool
mcond(const struct model *m, const struct chart_cond *cond)
{
	struct value v = VALUE_NIL_INIT;

	if (!cond->visits)
		return chart_cond_holds(cond, &m->data);
	value_set_int(&v, m->visits[cond->visits_state]);
	return chart_cond_eval(cond, &v);
}

enum mgo { GO_ENTER, GO_FAIL, GO_UNDO, GO_SEND };

static enum engine_result mpar_enter(struct mrun *x, int target);

/* The plain transition loop: each case does one thing and says what
 * follows. */
static enum engine_result
mgo(struct mrun *x, enum mgo kind, int target)
{
	struct model *m = x->m;
	const struct chart *c = x->c;

	for (;;) {
		const struct chart_state *s;
		const struct chart_compensation *cp;
		struct mact *a;
		char why[200];
		size_t i, j;

		switch (kind) {
		case GO_ENTER:
			if (++x->entries > ENTRIES_MAX)
				return ENGINE_ERROR;
			s = &c->states[target];
			if (s->max_visits > 0 &&
			    m->visits[target] == s->max_visits) {
				/* refused: its too_many instead */
				kind = s->too_many_kind == REPLY_FAIL
				               ? GO_FAIL
				               : GO_ENTER;
				target = s->too_many_target;
				continue;
			}
			m->visits[target]++;
			m->state = target;
			if (s->type == STATE_STEP) {
				m->attempt = 1;
				m->base = 0;
				kind = GO_SEND;
				continue;
			}
			if (s->type == STATE_PARALLEL)
				return mpar_enter(x, target);
			m->attempt = 0;
			m->base = 0;
			if (s->type == STATE_WAIT) {
				m->phase = PHASE_WAIT;
				x->timer_set = true;
				x->timer_at = x->now + s->duration_ms;
				return ENGINE_OK;
			}
			if (s->type == STATE_FINAL) {
				m->status = m->status == SAGA_COMPENSATING
				                    ? SAGA_FAILED
				                    : SAGA_COMPLETED;
				m->phase = PHASE_NONE;
				x->timer_set = false;
				if (s->emit != NULL) {
					a = madd(x, ACT_EMIT);
					if (a == NULL)
						return ENGINE_ERROR;
					a->event = s->emit;
				}
				x->finish = true;
				return ENGINE_OK;
			}
			/* choice */
			kind = GO_ENTER;
			target = s->default_target;
			for (i = 0; i < s->nbranches; i++) {
				const struct chart_branch *b = &s->branches[i];
				for (j = 0; j < b->nconds; j++)
					if (!mcond(m, &b->conds[j]))
						break;
				if (j == b->nconds) {
					kind = b->kind == REPLY_FAIL ? GO_FAIL
					                             : GO_ENTER;
					target = b->target;
					break;
				}
			}
			continue;
		case GO_FAIL:
			if (x->in_br) { /* the branch's outcome: see */
				x->failed = true; /* mpar_after */
				x->fail_to = target;
				m->phase = PHASE_NONE;
				return ENGINE_OK;
			}
			m->fail = target;
			kind = GO_UNDO;
			continue;
		case GO_UNDO:
			m->status = SAGA_COMPENSATING;
			if (m->n == 0) {
				if (c->states[m->fail].type != STATE_FINAL)
					return ENGINE_ERROR;
				kind = GO_ENTER;
				target = m->fail;
				continue;
			}
			m->state = m->stack[m->n - 1].state;
			m->attempt = 1;
			m->base = 0;
			kind = GO_SEND;
			continue;
		case GO_SEND:
			s = &c->states[m->state];
			cp = mundo(m) ? s->compensate : NULL;
			a = madd(x, ACT_SEND);
			if (a == NULL)
				return ENGINE_ERROR;
			if (chart_render_route(
			            cp != NULL && cp->route != NULL ? cp->route
			                                            : s->route,
			            &m->data, a->route, sizeof(a->route), why,
			            sizeof(why)) != 0) {
				x->nacts--;
				if (cp != NULL) {
					m->status = SAGA_STUCK;
					m->phase = PHASE_NONE;
					x->timer_set = false;
					return ENGINE_OK;
				}
				if (m->attempt > 1 && !mpush(x, true))
					return ENGINE_ERROR;
				kind = GO_FAIL;
				target = s->exhausted_target;
				continue;
			}
			a->step = m->state;
			a->undo = cp != NULL;
			a->visit = mvisit(m);
			a->attempt = m->attempt;
			value_set_map(&a->payload);
			for (i = 0; i < (cp ? cp->npass : s->npass); i++) {
				const char *p = cp ? cp->pass[i] : s->pass[i];
				const struct value *v =
				        value_path_get(&m->data, p);
				struct value t = VALUE_NIL_INIT;
				if (v != NULL) {
					value_copy(&t, v);
					value_path_put(&a->payload, p, &t);
				}
			}
			m->phase = PHASE_AWAIT;
			x->timer_set = true;
			x->timer_at =
			        x->now + (cp ? cp->timeout_ms : s->timeout_ms);
			return ENGINE_OK;
		}
	}
}

static enum engine_result
mcomplete(struct mrun *x, int target, const struct value *reply)
{
	struct model *m = x->m;
	const struct chart_state *s = &x->c->states[m->state];
	size_t i;

	if (!mpush(x, false))
		return ENGINE_ERROR;
	for (i = 0; i < s->nsave; i++) {
		const struct value *v =
		        reply != NULL ? value_map_get(reply, s->save[i]) : NULL;
		struct value t = VALUE_NIL_INIT;
		if (v != NULL) {
			value_copy(&t, v);
			value_map_put(&m->data, s->save[i], &t);
		}
	}
	if (s->emit != NULL) {
		struct mact *a = madd(x, ACT_EMIT);
		if (a == NULL)
			return ENGINE_ERROR;
		a->event = s->emit;
	}
	m->phase = PHASE_NONE;
	return mgo(x, GO_ENTER, target);
}

static enum engine_result
mfailed_attempt(struct mrun *x)
{
	struct model *m = x->m;
	const struct chart_state *s = &x->c->states[m->state];
	const struct chart_retry *p =
	        mundo(m) ? &s->compensate->retry : &s->retry;
	int64_t d;

	if (m->attempt - m->base >= p->attempts) {
		if (mundo(m)) {
			m->status = SAGA_STUCK;
			m->phase = PHASE_NONE;
			x->timer_set = false;
			return ENGINE_OK;
		}
		if (!mpush(x, true))
			return ENGINE_ERROR;
		return mgo(x, GO_FAIL, s->exhausted_target);
	}
	d = chart_retry_delay(p, m->attempt - m->base + 1);
	if (d <= 0) {
		m->attempt++;
		return mgo(x, GO_SEND, 0);
	}
	m->phase = PHASE_BACKOFF;
	x->timer_set = true;
	x->timer_at = x->now + d;
	return ENGINE_OK;
}

static bool
mfields_ok(const struct chart *c, const struct value *order)
{
	size_t i;
	for (i = 0; i < c->nfields; i++) {
		const struct value *v =
		        value_path_get(order, c->fields[i].path);
		enum value_type want[2] = {VALUE_NIL, VALUE_NIL};
		if (v == NULL)
			continue;
		switch (c->fields[i].type) {
		case FIELD_STRING:
			want[0] = VALUE_STR;
			break;
		case FIELD_INTEGER:
			want[0] = VALUE_INT;
			break;
		case FIELD_NUMBER:
			want[0] = VALUE_INT;
			want[1] = VALUE_FLOAT;
			break;
		case FIELD_BOOLEAN:
			want[0] = VALUE_BOOL;
			break;
		case FIELD_LIST:
			want[0] = VALUE_ARRAY;
			break;
		case FIELD_MAP:
			want[0] = VALUE_MAP;
			break;
		}
		if (v->type != want[0] && v->type != want[1])
			return false;
	}
	return true;
}

static bool
mat_step(const struct mrun *x)
{
	const struct model *m = x->m;
	return m->status == SAGA_RUNNING &&
	       x->c->states[m->state].type == STATE_STEP &&
	       (m->phase == PHASE_AWAIT || m->phase == PHASE_BACKOFF);
}

/* ---- the model of parallel states ----
 *
 * Written apart from engine.c's: a branch runs with its fields in the
 * model's, and what it led to (joined, or failed to a final state) is only
 * recorded while it runs and acted on after it (mpar_after). */

static enum engine_result mevent(struct mrun *x, const struct engine_event *ev);

static bool
mwaits(const struct mbranch *b)
{
	return b->phase == PHASE_AWAIT || b->phase == PHASE_BACKOFF;
}

static void
mbr_load(struct mrun *x, size_t k)
{
	struct model *m = x->m;

	x->outer = (struct mbranch){m->state, m->phase, m->attempt, m->base, 0};
	x->outer_set = x->timer_set;
	x->outer_at = x->timer_at;
	x->timer_set = false;
	m->state = m->br[k].state;
	m->phase = m->br[k].phase;
	m->attempt = m->br[k].attempt;
	m->base = m->br[k].base;
	x->in_br = true;
	x->cur = k;
	x->joined = x->failed = false;
}

static void
mbr_unload(struct mrun *x)
{
	struct model *m = x->m;
	struct mbranch *b = &m->br[x->cur];

	b->state = m->state;
	b->phase = m->phase;
	b->attempt = m->attempt;
	b->base = m->base;
	if (b->phase == PHASE_NONE)
		b->at = 0;
	else if (x->timer_set)
		b->at = x->timer_at;
	m->state = x->outer.state;
	m->phase = x->outer.phase;
	m->attempt = x->outer.attempt;
	m->base = x->outer.base;
	x->timer_set = x->outer_set;
	x->timer_at = x->outer_at;
	x->in_br = false;
}

static void
mleave(struct mrun *x)
{
	x->m->nbr = 0;
	x->m->phase = PHASE_NONE;
	x->left++;
}

static void
mrearm(struct mrun *x)
{
	const struct model *m = x->m;
	size_t k;

	x->timer_set = true;
	x->timer_at = 0;
	for (k = 0; k < m->nbr; k++)
		if (mwaits(&m->br[k]) &&
		    (x->timer_at == 0 || m->br[k].at < x->timer_at))
			x->timer_at = m->br[k].at;
}

/* Pushes every branch in flight but `except` as unknown. */
static bool
mpush_in_flight(struct mrun *x, size_t except)
{
	struct model *m = x->m;
	size_t k;

	for (k = 0; k < m->nbr; k++) {
		int st = m->br[k].state;

		if (k == except || !mwaits(&m->br[k]) ||
		    x->c->states[st].compensate == NULL)
			continue;
		if (m->n == ENGINE_STACK_MAX)
			return false;
		m->stack[m->n].state = st;
		m->stack[m->n].unknown = true;
		m->stack[m->n].visit = m->visits[st];
		m->n++;
	}
	return true;
}

/* After branch k ran: a failure fails the parallel state, the last join
 * leaves it for `next`. */
static enum engine_result
mpar_after(struct mrun *x, size_t k)
{
	struct model *m = x->m;
	size_t i;

	if (x->failed) {
		if (!mpush_in_flight(x, k))
			return ENGINE_ERROR;
		mleave(x);
		x->timer_set = false;
		return mgo(x, GO_FAIL, x->fail_to);
	}
	if (!x->joined)
		return ENGINE_OK;
	for (i = 0; i < m->nbr; i++)
		if (m->br[i].phase != PHASE_NONE || m->br[i].state != m->state)
			return ENGINE_OK;
	mleave(x);
	return mgo(x, GO_ENTER, x->c->states[m->state].next);
}

/* Runs a transition, or an event, inside branch k. */
static enum engine_result
mpar_go(struct mrun *x, size_t k, int target)
{
	enum engine_result r;

	mbr_load(x, k);
	r = mgo(x, GO_ENTER, target);
	if (r != ENGINE_OK)
		return r;
	mbr_unload(x);
	return mpar_after(x, k);
}

static enum engine_result
mpar_ev(struct mrun *x, size_t k, const struct engine_event *ev)
{
	enum engine_result r;

	mbr_load(x, k);
	r = mevent(x, ev);
	if (r != ENGINE_OK)
		return r;
	mbr_unload(x);
	return mpar_after(x, k);
}

/* Entering a parallel state: from a branch, its join; else the fork. */
static enum engine_result
mpar_enter(struct mrun *x, int target)
{
	struct model *m = x->m;
	const struct chart_state *p = &x->c->states[target];
	int left = x->left;
	size_t k;

	m->attempt = 0;
	m->base = 0;
	if (x->in_br) {
		x->joined = true;
		m->phase = PHASE_NONE;
		return ENGINE_OK;
	}
	m->phase = PHASE_PARALLEL;
	m->nbr = p->nfork;
	for (k = 0; k < p->nfork; k++)
		m->br[k] = (struct mbranch){-1, PHASE_NONE, 0, 0, 0};
	for (k = 0; k < p->nfork; k++) {
		enum engine_result r = mpar_go(x, k, p->fork[k]);

		if (r != ENGINE_OK || x->left != left)
			return r;
	}
	mrearm(x);
	return ENGINE_OK;
}

static enum engine_result
mpar_event(struct mrun *x, const struct engine_event *ev)
{
	struct model *m = x->m;
	const struct chart *c = x->c;
	char want[ENGINE_MSGID_MAX];
	enum engine_result r = ENGINE_OK;
	size_t k, n = 0, pick = SIZE_MAX;
	int left = x->left, target = c->failure;

	switch (ev->type) {
	case EV_REPLY:
		for (k = 0; k < m->nbr; k++) {
			if (m->br[k].phase != PHASE_AWAIT)
				continue;
			engine_message_id(want, sizeof(want), x->id,
			                  c->states[m->br[k].state].name,
			                  m->visits[m->br[k].state], false,
			                  m->br[k].attempt);
			if (!strcmp(want, ev->in_reply_to))
				break;
		}
		if (k == m->nbr)
			return ENGINE_IGNORED;
		r = mpar_ev(x, k, ev);
		break;
	case EV_TIMEOUT:
		if (ev->timer_seq != m->seq)
			return ENGINE_IGNORED;
		/* every branch due, as RETRY every branch in flight */
		/* fall through */
	case EV_OP_RETRY:
		for (k = 0; k < m->nbr && r == ENGINE_OK && x->left == left;
		     k++)
			if (mwaits(&m->br[k]) &&
			    (ev->type == EV_OP_RETRY || m->br[k].at <= x->now))
				r = mpar_ev(x, k, ev);
		break;
	case EV_OP_SKIP:
		for (k = 0; k < m->nbr; k++) {
			if (!mwaits(&m->br[k]))
				continue;
			n++;
			if (ev->step == NULL ||
			    !strcmp(c->states[m->br[k].state].name, ev->step))
				pick = k;
		}
		if ((ev->step == NULL && n > 1) || pick == SIZE_MAX)
			return ENGINE_REJECTED;
		r = mpar_ev(x, pick, ev);
		break;
	case EV_OP_COMPENSATE:
		for (k = m->nbr; k-- > 0;)
			if (mwaits(&m->br[k]))
				target = c->states[m->br[k].state]
				                 .exhausted_target;
		if (!mpush_in_flight(x, SIZE_MAX))
			return ENGINE_ERROR;
		mleave(x);
		return mgo(x, GO_FAIL, target);
	case EV_OP_ABORT:
		mleave(x);
		return mevent(x, ev);
	default:
		return ENGINE_ERROR;
	}
	if (r == ENGINE_OK && x->left == left)
		mrearm(x);
	return r;
}

static enum engine_result
mevent(struct mrun *x, const struct engine_event *ev)
{
	struct model *m = x->m;
	const struct chart *c = x->c;
	const struct chart_state *s;
	char want[ENGINE_MSGID_MAX];
	size_t i;

	if (ev->type == EV_START) {
		if (m->started || ev->payload == NULL ||
		    ev->payload->type != VALUE_MAP ||
		    !mfields_ok(c, ev->payload))
			return ENGINE_ERROR;
		value_clear(&m->data);
		value_copy(&m->data, ev->payload);
		m->started = true;
		m->status = SAGA_RUNNING;
		return mgo(x, GO_ENTER, c->initial);
	}
	if (!m->started)
		return ENGINE_ERROR;
	if (m->nbr > 0 && !x->in_br && ev->type != EV_OP_RESUME &&
	    ev->type != EV_OP_MARK_COMPENSATED)
		return mpar_event(x, ev);
	s = &c->states[m->state];
	switch (ev->type) {
	case EV_REPLY:
		if (mfinal(m->status) || m->phase != PHASE_AWAIT)
			return ENGINE_IGNORED;
		engine_message_id(want, sizeof(want), x->id, s->name, mvisit(m),
		                  mundo(m), m->attempt);
		if (strcmp(want, ev->in_reply_to) != 0)
			return ENGINE_IGNORED;
		if (mundo(m)) {
			for (i = 0; i < s->compensate->nok; i++)
				if (!strcmp(s->compensate->ok[i],
				            ev->reply_type))
					break;
			if (i == s->compensate->nok)
				return ENGINE_IGNORED;
			m->n--;
			return mgo(x, GO_UNDO, 0);
		}
		for (i = 0; i < s->nreplies; i++)
			if (!strcmp(s->replies[i].type, ev->reply_type))
				break;
		if (i == s->nreplies)
			return ENGINE_IGNORED;
		if (s->replies[i].kind == REPLY_GOTO)
			return mcomplete(x, s->replies[i].target, ev->payload);
		if (s->replies[i].kind == REPLY_FAIL)
			return mgo(x, GO_FAIL, s->replies[i].target);
		return mfailed_attempt(x);
	case EV_TIMEOUT:
		if (m->phase == PHASE_NONE || ev->timer_seq != m->seq)
			return ENGINE_IGNORED;
		if (m->phase == PHASE_WAIT) {
			m->phase = PHASE_NONE;
			return mgo(x, GO_ENTER, s->next);
		}
		if (m->phase == PHASE_BACKOFF) {
			m->attempt++;
			return mgo(x, GO_SEND, 0);
		}
		return mfailed_attempt(x);
	default:
		break;
	}
	if (mfinal(m->status))
		return ENGINE_REJECTED;
	switch (ev->type) {
	case EV_OP_RETRY:
		if (!mat_step(x) && m->status != SAGA_COMPENSATING)
			return ENGINE_REJECTED;
		m->base = m->attempt;
		m->attempt++;
		return mgo(x, GO_SEND, 0);
	case EV_OP_RESUME:
		if (m->status != SAGA_STUCK)
			return ENGINE_REJECTED;
		m->status = SAGA_COMPENSATING;
		m->base = m->attempt;
		m->attempt++;
		return mgo(x, GO_SEND, 0);
	case EV_OP_ABORT:
		m->status = SAGA_ABORTED;
		m->phase = PHASE_NONE;
		x->finish = true;
		return ENGINE_OK;
	case EV_OP_COMPENSATE: {
		int target = c->failure;
		if (m->status != SAGA_RUNNING)
			return ENGINE_REJECTED;
		if (mat_step(x)) {
			if (!mpush(x, true))
				return ENGINE_ERROR;
			target = s->exhausted_target;
		}
		m->phase = PHASE_NONE;
		return mgo(x, GO_FAIL, target);
	}
	case EV_OP_SKIP:
		if (mundo(m)) {
			m->n--;
			m->phase = PHASE_NONE;
			return mgo(x, GO_UNDO, 0);
		}
		if (!mat_step(x))
			return ENGINE_REJECTED;
		for (i = 0; i < s->nreplies; i++)
			if (s->replies[i].kind == REPLY_GOTO)
				return mcomplete(x, s->replies[i].target, NULL);
		return ENGINE_REJECTED;
	case EV_OP_MARK_COMPENSATED:
		if (!mundo(m) || ev->step == NULL)
			return ENGINE_REJECTED;
		for (i = m->n; i > 0; i--)
			if (!strcmp(c->states[m->stack[i - 1].state].name,
			            ev->step))
				break;
		if (i == 0)
			return ENGINE_REJECTED;
		memmove(&m->stack[i - 1], &m->stack[i],
		        (m->n - i) * sizeof(m->stack[0]));
		m->n--;
		if (i - 1 < m->n)
			return ENGINE_OK;
		m->phase = PHASE_NONE;
		return mgo(x, GO_UNDO, 0);
	default:
		return ENGINE_ERROR;
	}
}

/* Runs one event on the model: on any result but OK the model is put
 * back as it was and no actions are expected. */
static enum engine_result
model_step(struct model *m, struct mrun *x, const struct chart *c,
           const char *id, const struct engine_event *ev)
{
	struct model saved = *m;
	enum engine_result r;
	struct mact *a;

	value_set_nil(&saved.data);
	value_copy(&saved.data, &m->data);
	memset(x, 0, sizeof(*x));
	x->m = m;
	x->c = c;
	x->id = id;
	x->now = ev->now_ms;
	x->armed_before = m->started && m->phase != PHASE_NONE;
	r = mevent(x, ev);
	if (r == ENGINE_OK) {
		if (x->timer_set) {
			m->seq++;
			m->at = x->timer_at;
			a = madd(x, ACT_SET_TIMER);
			if (a != NULL) {
				a->seq = m->seq;
				a->at = m->at;
			}
		} else if (m->phase == PHASE_NONE && x->armed_before) {
			madd(x, ACT_CANCEL_TIMER);
		}
		if (x->finish) {
			a = madd(x, ACT_FINISH);
			if (a != NULL)
				a->status = m->status;
		}
		value_clear(&saved.data);
	} else {
		mrun_clear(x);
		value_clear(&m->data);
		*m = saved;
	}
	return r;
}

/* ---- comparing engine and model ---- */

struct ctx {
	uint64_t seed;
	int chart, seq, event;
	const struct chart *c;
	bool parallel; /* c has a parallel state: branches complete in any
	                * order, so undo order is checked by the model */
	char why[1024];
};

static int diff(struct ctx *t, const char *f, ...)
        __attribute__((format(printf, 2, 3)));

static int
diff(struct ctx *t, const char *f, ...)
{
	va_list ap;
	int n = snprintf(t->why, sizeof(t->why),
	                 "seed %#" PRIx64 " chart %s sequence %d event %d: ",
	                 t->seed, chart_files[t->chart], t->seq, t->event);
	va_start(ap, f);
	vsnprintf(t->why + n, sizeof(t->why) - (size_t)n, f, ap);
	va_end(ap);
	return -1;
}

static const char *
rname(enum engine_result r)
{
	static const char *const n[] = {"OK", "IGNORED", "REJECTED", "ERROR"};
	return (unsigned)r < 4 ? n[r] : "?";
}

static const char *
sname(const struct chart *c, int i)
{
	return i >= 0 && (size_t)i < c->nstates ? c->states[i].name : "-";
}

/* The branches of a parallel state, field by field. */
static int
compare_branches(struct ctx *t, const struct saga *s, const struct model *m)
{
	size_t k;

	if (s->nbranches != m->nbr)
		return diff(t, "%zu branches, model %zu", s->nbranches, m->nbr);
	for (k = 0; k < m->nbr; k++) {
		const struct saga_branch *b = &s->branches[k];
		const struct mbranch *e = &m->br[k];

		if (b->state != e->state || b->phase != e->phase ||
		    b->attempt != e->attempt || b->attempt_base != e->base ||
		    b->timer_at_ms != e->at)
			return diff(t,
			            "branch %zu %s/%s/%d/%d@%" PRId64
			            ", model %s/%s/%d/%d@%" PRId64,
			            k, sname(t->c, b->state),
			            saga_phase_name(b->phase), b->attempt,
			            b->attempt_base, b->timer_at_ms,
			            sname(t->c, e->state),
			            saga_phase_name(e->phase), e->attempt,
			            e->base, e->at);
	}
	return 0;
}

static int
compare(struct ctx *t, const struct saga *s, const struct engine_output *out,
        enum engine_result r, const struct model *m, const struct mrun *x,
        enum engine_result mr)
{
	const struct chart *c = t->c;
	size_t i;

	if (r != mr)
		return diff(t, "result %s, model %s (note: %s)", rname(r),
		            rname(mr), out->note);
	if (!m->started)
		return s->state == -1 ? 0 : diff(t, "started, model not");
	if (s->status != m->status || s->state != m->state ||
	    s->phase != m->phase)
		return diff(t, "saga %s/%s/%s, model %s/%s/%s (note: %s)",
		            saga_status_name(s->status), sname(c, s->state),
		            saga_phase_name(s->phase),
		            saga_status_name(m->status), sname(c, m->state),
		            saga_phase_name(m->phase), out->note);
	if (s->attempt != m->attempt || s->attempt_base != m->base)
		return diff(t, "attempt %d/%d, model %d/%d", s->attempt,
		            s->attempt_base, m->attempt, m->base);
	if (s->ndone != m->n)
		return diff(t, "stack of %zu, model %zu", s->ndone, m->n);
	for (i = 0; i < m->n; i++)
		if (s->done[i].state != m->stack[i].state ||
		    s->done[i].unknown != m->stack[i].unknown ||
		    s->done[i].visit != m->stack[i].visit)
			return diff(
			        t, "stack[%zu] %s@%d%s, model %s@%d%s", i,
			        sname(c, s->done[i].state), s->done[i].visit,
			        s->done[i].unknown ? "?" : "",
			        sname(c, m->stack[i].state), m->stack[i].visit,
			        m->stack[i].unknown ? "?" : "");
	for (i = 0; i < c->nstates; i++)
		if (s->visits[i] != m->visits[i])
			return diff(t, "%s visited %d times, model %d",
			            sname(c, (int)i), s->visits[i],
			            m->visits[i]);
	if (s->fail_target != m->fail)
		return diff(t, "fail target %s, model %s",
		            sname(c, s->fail_target), sname(c, m->fail));
	if (s->timer_seq != m->seq ||
	    (s->phase != PHASE_NONE && s->timer_at_ms != m->at))
		return diff(t,
		            "timer %" PRId64 "@%" PRId64 ", model %" PRId64
		            "@%" PRId64,
		            s->timer_seq, s->timer_at_ms, m->seq, m->at);
	if (!value_equal(&s->data, &m->data))
		return diff(t, "data differs");
	if (compare_branches(t, s, m) != 0)
		return -1;
	if (out->nactions != x->nacts)
		return diff(t, "%zu actions, model %zu (note: %s)",
		            out->nactions, x->nacts, out->note);
	for (i = 0; i < x->nacts; i++) {
		const struct engine_action *a = &out->actions[i];
		const struct mact *e = &x->acts[i];
		bool same = a->type == e->type;

		if (same && e->type == ACT_SEND)
			same = !strcmp(a->step, c->states[e->step].name) &&
			       a->compensation == e->undo &&
			       a->visit == e->visit &&
			       a->attempt == e->attempt &&
			       !strcmp(a->route, e->route) &&
			       value_equal(&a->payload, &e->payload);
		else if (same && e->type == ACT_EMIT)
			same = !strcmp(a->event, e->event);
		else if (same && e->type == ACT_SET_TIMER)
			same = a->timer_seq == e->seq && a->fire_at_ms == e->at;
		else if (same && e->type == ACT_FINISH)
			same = a->status == e->status;
		if (!same)
			return diff(t,
			            "action %zu differs (type %d, model %d; "
			            "note: %s)",
			            i, (int)a->type, (int)e->type, out->note);
	}
	return 0;
}

/* ---- invariants without the model ---- */

/* Per (state, visit): visits past WV - 1 share the last slot. */
#define WV        16
#define WI(st, v) ((size_t)(st)*WV + (size_t)((v) < WV ? (v) : WV - 1))
#define WSLOTS    (CHART_STATES_MAX * WV)

struct watch {
	bool sent[WSLOTS];     /* a forward SEND of the visit happened */
	int last_sent[WSLOTS]; /* event index of its last forward SEND */
	bool failed[WSLOTS];   /* a FAIL reply for it was accepted */
	bool completed[WSLOTS];
	bool undone_started[WSLOTS];
	int last_undo_rank; /* rank of the last visit whose undo began */
	bool final_seen;
	enum saga_status final_status;
};

static const struct chart_retry *
send_policy(const struct chart *c, const struct engine_action *a)
{
	int i = chart_state_index(c, a->step);
	if (i < 0)
		return NULL;
	return a->compensation ? &c->states[i].compensate->retry
	                       : &c->states[i].retry;
}

/* The attempt base a SEND of `st` counts from: its branch's in a
 * parallel state (after the event, or before it when the event left the
 * parallel state). */
static int
send_base(const struct saga *before, const struct saga *s,
          const struct engine_action *a, int st)
{
	size_t k;

	for (k = 0; k < s->nbranches && !a->compensation; k++)
		if (s->branches[k].state == st)
			return s->branches[k].attempt_base;
	for (k = 0; k < before->nbranches && !a->compensation; k++)
		if (before->branches[k].state == st)
			return before->branches[k].attempt_base;
	return s->attempt_base;
}

static int
invariants(struct ctx *t, struct watch *w, const struct saga *before,
           const struct saga *s, const struct engine_event *ev,
           const struct engine_output *out, enum engine_result r,
           const char *packed_before, size_t len_before,
           const char *packed_after, size_t len_after)
{
	const struct chart *c = t->c;
	size_t i, timers = 0;

	if (r != ENGINE_OK) {
		if (out->nactions != 0)
			return diff(t, "%s with %zu actions", rname(r),
			            out->nactions);
		if (len_before != len_after ||
		    (len_before > 0 &&
		     memcmp(packed_before, packed_after, len_before) != 0))
			return diff(t, "%s changed the saga", rname(r));
	}
	if (out->note[0] == '\0')
		return diff(t, "no note");
	if (w->final_seen && (r == ENGINE_OK || s->status != w->final_status))
		return diff(t, "final status %s changed (%s)",
		            saga_status_name(w->final_status), rname(r));
	if (saga_status_final(s->status) && s->state >= 0) {
		w->final_seen = true;
		w->final_status = s->status;
	}
	if (r != ENGINE_OK)
		return 0;
	/* what the event did to the step it was at, seen from outside */
	if (before->state >= 0 && before->status == SAGA_RUNNING &&
	    c->states[before->state].type == STATE_STEP) {
		const struct chart_reply *rep =
		        ev->type == EV_REPLY
		                ? chart_step_reply(&c->states[before->state],
		                                   ev->reply_type)
		                : NULL;
		size_t k = WI(before->state, before->visits[before->state]);
		if (rep != NULL && rep->kind == REPLY_FAIL)
			w->failed[k] = true;
		if ((rep != NULL && rep->kind == REPLY_GOTO) ||
		    ev->type == EV_OP_SKIP)
			w->completed[k] = true;
	}
	for (i = 0; i < out->nactions; i++) {
		const struct engine_action *a = &out->actions[i];
		char id[ENGINE_MSGID_MAX];
		const struct chart_retry *p;
		int st;
		size_t k;

		if (a->type == ACT_SET_TIMER || a->type == ACT_CANCEL_TIMER)
			timers++;
		if (a->type == ACT_SET_TIMER &&
		    (a->timer_seq != before->timer_seq + 1 ||
		     s->timer_seq != a->timer_seq))
			return diff(t, "timer seq %" PRId64 " after %" PRId64,
			            a->timer_seq, before->timer_seq);
		if (a->type != ACT_SEND)
			continue;
		engine_message_id(id, sizeof(id), s->id, a->step, a->visit,
		                  a->compensation, a->attempt);
		if (strcmp(id, a->message_id) != 0)
			return diff(t, "message id %s, expected %s",
			            a->message_id, id);
		st = chart_state_index(c, a->step);
		p = send_policy(c, a);
		if (st < 0 || p == NULL)
			return diff(t, "send for unknown step %s", a->step);
		if (a->attempt - send_base(before, s, a, st) < 1 ||
		    a->attempt - send_base(before, s, a, st) > p->attempts)
			return diff(t, "attempt %d (base %d) beyond policy %d",
			            a->attempt, send_base(before, s, a, st),
			            p->attempts);
		if (a->visit < 1 || a->visit > s->visits[st])
			return diff(t, "send of %s visit %d, entered %d times",
			            a->step, a->visit, s->visits[st]);
		k = WI(st, a->visit);
		if (!a->compensation) {
			w->sent[k] = true;
			w->last_sent[k] = t->event;
			continue;
		}
		if (!w->completed[k] && !(w->sent[k] && !w->failed[k]))
			return diff(t,
			            "compensation of %s visit %d, which did "
			            "not complete",
			            a->step, a->visit);
		if (!w->undone_started[k] && !t->parallel) {
			if (w->last_undo_rank >= 0 &&
			    w->last_sent[k] >= w->last_undo_rank)
				return diff(
				        t,
				        "compensation of %s visit %d out of "
				        "order",
				        a->step, a->visit);
			w->undone_started[k] = true;
			w->last_undo_rank = w->last_sent[k];
		}
	}
	if (timers > 1)
		return diff(t, "%zu timer actions", timers);
	for (i = 0; i < c->nstates; i++)
		if (c->states[i].max_visits > 0 &&
		    s->visits[i] > c->states[i].max_visits)
			return diff(t, "%s entered %d times, max_visits %d",
			            c->states[i].name, s->visits[i],
			            c->states[i].max_visits);
	return 0;
}

/* ---- event generation ---- */

struct universe {
	const char *replies[256];
	size_t nreplies;
};

static void
universe_add(struct universe *u, const char *type)
{
	size_t i;
	for (i = 0; i < u->nreplies; i++)
		if (!strcmp(u->replies[i], type))
			return;
	if (u->nreplies < 256)
		u->replies[u->nreplies++] = type;
}

static void
universe_build(struct universe *u, const struct chart *c)
{
	size_t i, j;

	u->nreplies = 0;
	universe_add(u, "bogus.reply");
	for (i = 0; i < c->nstates; i++) {
		const struct chart_state *s = &c->states[i];
		for (j = 0; j < s->nreplies; j++)
			universe_add(u, s->replies[j].type);
		if (s->compensate != NULL)
			for (j = 0; j < s->compensate->nok; j++)
				universe_add(u, s->compensate->ok[j]);
	}
}

static const char *const strings[] = {"card", "cod",   "invoice", "DE",
                                      "FR",   "books", "toys",    "x"};
static const int64_t ints[] = {0, 100, 50000, 50001, 99999, -5};

static void
random_order(struct value *o, const struct chart *c, const char *id)
{
	size_t i;

	value_set_map(o);
	value_map_put_str(o, "order_id", id);
	for (i = 0; i < c->nfields; i++) {
		struct value v = VALUE_NIL_INIT;
		enum chart_field_type ft = c->fields[i].type;

		if (!strcmp(c->fields[i].path, "order_id") || pct(8))
			continue;
		if (pct(1)) /* wrong type: START must fail */
			ft = ft == FIELD_STRING ? FIELD_INTEGER : FIELD_STRING;
		switch (ft) {
		case FIELD_STRING:
			value_set_str(&v, strings[rn(8)]);
			break;
		case FIELD_INTEGER:
		case FIELD_NUMBER:
			value_set_int(&v, ints[rn(6)]);
			break;
		case FIELD_BOOLEAN:
			value_set_bool(&v, pct(50));
			break;
		case FIELD_LIST:
			value_set_array(&v);
			break;
		case FIELD_MAP:
			value_set_map(&v);
			break;
		}
		if (value_path_put(o, c->fields[i].path, &v) != 0)
			value_clear(&v);
	}
}

/* Everything the model or the engine sent, for stale replies. */
struct sent {
	char ids[64][ENGINE_MSGID_MAX];
	size_t n;
};

static void
random_event(struct engine_event *ev, struct value *payload,
             const struct chart *c, const struct universe *u,
             const struct saga *s, const struct sent *sent, char *re,
             int64_t *now)
{
	static const enum engine_event_type ops[] = {
	        EV_OP_RETRY,      EV_OP_RESUME, EV_OP_ABORT,
	        EV_OP_COMPENSATE, EV_OP_SKIP,   EV_OP_MARK_COMPENSATED};
	int k = rn(100);

	memset(ev, 0, sizeof(*ev));
	*now += rn(4) == 0 ? 0 : rn(3000);
	if (k < 45) {
		const struct chart_state *st =
		        s->state >= 0 ? &c->states[s->state] : NULL;
		bool undo = s->status == SAGA_COMPENSATING ||
		            s->status == SAGA_STUCK;
		int attempt = s->attempt;
		size_t i;

		if (s->nbranches > 0 && pct(90)) { /* a branch's step */
			const struct saga_branch *b =
			        &s->branches[rn((int)s->nbranches)];
			st = &c->states[b->state];
			attempt = b->attempt;
		}
		ev->type = EV_REPLY;
		ev->reply_type = u->replies[rn((int)u->nreplies)];
		if (st != NULL && pct(60)) {
			if (undo && st->compensate != NULL)
				ev->reply_type = st->compensate->ok[rn(
				        (int)st->compensate->nok)];
			else if (st->type == STATE_STEP)
				ev->reply_type =
				        st->replies[rn((int)st->nreplies)].type;
		}
		if (pct(70) && st != NULL) {
			/* the outstanding id, or now and then the same
			 * attempt of another visit (a stale one) */
			int v = undo && s->ndone > 0
			                ? s->done[s->ndone - 1].visit
			                : s->visits[st - c->states];
			if (pct(10))
				v += pct(50) ? 1 : -1;
			engine_message_id(re, ENGINE_MSGID_MAX, s->id, st->name,
			                  v, undo, attempt);
		} else if (pct(60) && sent->n > 0)
			snprintf(re, ENGINE_MSGID_MAX, "%s",
			         sent->ids[rn((int)sent->n)]);
		else
			engine_message_id(re, ENGINE_MSGID_MAX, s->id,
			                  c->states[rn((int)c->nstates)].name,
			                  rn(3), pct(50), rn(4));
		ev->in_reply_to = re;
		value_set_map(payload);
		for (i = 0; i < c->nstates; i++) {
			size_t j;
			for (j = 0; j < c->states[i].nsave; j++)
				if (pct(70))
					value_map_put_int(payload,
					                  c->states[i].save[j],
					                  (int64_t)rn(1000));
		}
		ev->payload = payload;
	} else if (k < 82) {
		ev->type = EV_TIMEOUT;
		ev->timer_seq = s->timer_seq;
		if (pct(20))
			ev->timer_seq += rn(3) - 1 - (pct(30) ? 5 : 0);
		else if (s->timer_at_ms > *now)
			*now = s->timer_at_ms;
	} else if (k < 98) {
		ev->type = ops[rn(6)];
		if (ev->type == EV_OP_SKIP && s->nbranches > 0 && pct(70))
			ev->step =
			        pct(90) ? c->states
			                          [s->branches
			                                   [rn((int)s->nbranches)]
			                                           .state]
			                                  .name
			                : "nope";
		if (ev->type == EV_OP_MARK_COMPENSATED) {
			if (s->ndone > 0 && pct(70))
				ev->step = c->states[s->done[rn((int)s->ndone)]
				                             .state]
				                   .name;
			else if (pct(80))
				ev->step = c->states[rn((int)c->nstates)].name;
			else
				ev->step = pct(50) ? "nope" : NULL;
		}
	} else {
		ev->type = EV_START;
		value_set_map(payload);
		ev->payload = payload;
	}
	ev->now_ms = *now;
}

/* ---- the run ---- */

struct stats {
	long events, sequences;
	long results[4];
	long statuses[6];
	long sends, undos, timers, mismatches;
	long revisits, refusals; /* sends on a visit >= 2; bounds hit */
	long in_parallel; /* events taken (OK) by a saga in a parallel state */
};

static int
pack(const struct saga *s, const struct chart *c, char **buf, size_t *len)
{
	struct value v = VALUE_NIL_INIT;
	int rc;

	*buf = NULL;
	*len = 0;
	if (saga_to_value(s, c, &v) != 0)
		return -1;
	rc = value_to_msgpack(&v, buf, len);
	value_clear(&v);
	return rc;
}

/* The stored form reads back as the same saga. */
static int
roundtrip(struct ctx *t, const struct saga *s, const char *packed, size_t len)
{
	struct value v = VALUE_NIL_INIT;
	struct saga back;
	char err[256], *buf2 = NULL;
	size_t len2 = 0;
	int rc = 0;

	if (saga_to_value(s, t->c, &v) != 0)
		return diff(t, "saga_to_value failed");
	if (saga_from_value(&back, t->c, &v, err, sizeof(err)) != 0) {
		value_clear(&v);
		return diff(t, "stored form rejected: %s", err);
	}
	value_clear(&v);
	if (pack(&back, t->c, &buf2, &len2) != 0 || len2 != len ||
	    memcmp(buf2, packed, len) != 0)
		rc = diff(t, "stored form does not round-trip");
	free(buf2);
	saga_clear(&back);
	return rc;
}

static int
run_sequence(struct ctx *t, const struct universe *u, struct stats *stt)
{
	struct saga s;
	struct model m;
	struct mrun x;
	struct watch w;
	struct sent sent;
	struct engine_output out;
	struct value order = VALUE_NIL_INIT;
	char id[32], re[ENGINE_MSGID_MAX];
	int64_t now = 1700000000000 + rn(1000);
	int nevents = 1 + rn(MAX_EVENTS), rc = 0;

	snprintf(id, sizeof(id), "p%d-%d", t->chart, t->seq);
	saga_init(&s, id);
	model_init(&m);
	memset(&w, 0, sizeof(w));
	w.last_undo_rank = -1;
	sent.n = 0;
	out.nactions = 0;
	random_order(&order, t->c, id);
	for (t->event = 0; t->event < nevents && rc == 0; t->event++) {
		struct engine_event ev;
		struct value payload = VALUE_NIL_INIT;
		struct saga before;
		char *pb = NULL, *pa = NULL;
		size_t lb = 0, la = 0, i;
		enum engine_result r, mr;

		if (t->event == 0) {
			memset(&ev, 0, sizeof(ev));
			ev.type = EV_START;
			ev.payload = &order;
			ev.now_ms = now;
		} else {
			random_event(&ev, &payload, t->c, u, &s, &sent, re,
			             &now);
		}
		saga_copy(&before, &s);
		if (s.state >= 0)
			pack(&s, t->c, &pb, &lb);
		r = engine_step(t->c, &s, &ev, &out);
		mr = model_step(&m, &x, t->c, id, &ev);
		if (s.state >= 0)
			pack(&s, t->c, &pa, &la);
		stt->events++;
		stt->results[r]++;
		if (r == ENGINE_OK && strstr(out.note, "refused") != NULL)
			stt->refusals++;
		stt->in_parallel += r == ENGINE_OK && before.nbranches > 0;
		rc = compare(t, &s, &out, r, &m, &x, mr);
		if (rc == 0)
			rc = invariants(t, &w, &before, &s, &ev, &out, r, pb,
			                lb, pa, la);
		if (rc == 0 && s.state >= 0)
			rc = roundtrip(t, &s, pa, la);
		for (i = 0; i < out.nactions; i++) {
			const struct engine_action *a = &out.actions[i];
			if (a->type == ACT_SET_TIMER)
				stt->timers++;
			if (a->type != ACT_SEND)
				continue;
			if (a->compensation)
				stt->undos++;
			else
				stt->sends++;
			if (a->visit > 1)
				stt->revisits++;
			for (size_t j = 0; j < sent.n && rc == 0; j++)
				if (strcmp(sent.ids[j], a->message_id) == 0)
					rc = diff(t, "message id %s sent twice",
					          a->message_id);
			if (sent.n < 64)
				snprintf(sent.ids[sent.n++], ENGINE_MSGID_MAX,
				         "%s", a->message_id);
		}
		/* sometimes the saga goes through storage between events */
		if (rc == 0 && s.state >= 0 && pct(20)) {
			struct value v = VALUE_NIL_INIT;
			char err[256];
			saga_to_value(&s, t->c, &v);
			saga_clear(&s);
			if (saga_from_value(&s, t->c, &v, err, sizeof(err)) !=
			    0)
				rc = diff(t, "reload: %s", err);
			value_clear(&v);
		}
		engine_output_clear(&out);
		mrun_clear(&x);
		saga_clear(&before);
		value_clear(&payload);
		free(pb);
		free(pa);
	}
	if (s.state >= 0)
		stt->statuses[s.status]++;
	stt->sequences++;
	value_clear(&order);
	value_clear(&m.data);
	saga_clear(&s);
	return rc;
}

static uint64_t
env_u64(const char *name, uint64_t dflt)
{
	const char *v = getenv(name);
	return (v != NULL && *v != '\0') ? strtoull(v, NULL, 0) : dflt;
}

static void
test_engine_against_model(void)
{
	uint64_t seed = env_u64("SAGA_ENGINE_SEED", DEFAULT_SEED);
	int nseq = (int)env_u64("SAGA_ENGINE_SEQUENCES", DEFAULT_SEQUENCES);
	struct stats stt;
	size_t k;

	memset(&stt, 0, sizeof(stt));
	for (k = 0; k < NCHARTS; k++) {
		struct chart_errors errs;
		struct chart *c;
		struct universe u;
		struct ctx t;
		int rc = 0;

		chart_errors_init(&errs);
		c = chart_load_file(chart_files[k], &errs);
		if (c == NULL)
			fprintf(stderr, "%s\n",
			        errs.count ? errs.items[0].text : "?");
		chart_errors_clear(&errs);
		CHECK_MSG(c != NULL, "%s does not load", chart_files[k]);
		universe_build(&u, c);
		memset(&t, 0, sizeof(t));
		t.seed = seed;
		t.chart = (int)k;
		t.c = c;
		for (size_t i = 0; i < c->nstates; i++)
			t.parallel |= c->states[i].type == STATE_PARALLEL;
		for (t.seq = 0; t.seq < nseq && rc == 0; t.seq++) {
			rng = seed ^ ((uint64_t)k << 48) ^ (uint64_t)t.seq;
			rc = run_sequence(&t, &u, &stt);
		}
		chart_free(c);
		CHECK_MSG(rc == 0, "%s", t.why);
	}
	fprintf(stderr,
	        "     %ld sequences, %ld events: %ld ok, %ld ignored, %ld "
	        "rejected, %ld error; %ld sends, %ld undo sends, %ld timers\n"
	        "     %ld sends on a later visit, %ld entries refused by "
	        "max_visits\n"
	        "     ended running %ld, compensating %ld, completed %ld, "
	        "failed %ld, stuck %ld, aborted %ld\n",
	        stt.sequences, stt.events, stt.results[0], stt.results[1],
	        stt.results[2], stt.results[3], stt.sends, stt.undos,
	        stt.timers, stt.revisits, stt.refusals,
	        stt.statuses[SAGA_RUNNING], stt.statuses[SAGA_COMPENSATING],
	        stt.statuses[SAGA_COMPLETED], stt.statuses[SAGA_FAILED],
	        stt.statuses[SAGA_STUCK], stt.statuses[SAGA_ABORTED]);
	/* the generator must reach every outcome, or it tests little */
	CHECK(stt.results[ENGINE_OK] > 0 && stt.results[ENGINE_IGNORED] > 0 &&
	      stt.results[ENGINE_REJECTED] > 0 &&
	      stt.results[ENGINE_ERROR] > 0);
	for (k = 0; k < 6; k++)
		CHECK_MSG(stt.statuses[k] > 0, "no sequence ended %s",
		          saga_status_name((enum saga_status)k));
	CHECK(stt.undos > 0 && stt.timers > 0);
	CHECK(stt.revisits > 0 && stt.refusals > 0); /* loops are run */
	fprintf(stderr, "     %ld events taken in a parallel state\n",
	        stt.in_parallel);
	CHECK(stt.in_parallel > 1000);
}

int
main(void)
{
	RUN(test_engine_against_model);
	return check_summary();
}

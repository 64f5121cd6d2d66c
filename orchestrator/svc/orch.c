/* orch.c -- the processor (see orch.h).
 *
 * The shape follows the durable loop of docs/architecture.md: everything an
 * input causes is written in the caller's transaction, so after a crash
 * either all of it happened (and the inbox drops the redelivery) or none
 * of it did (and the redelivery does it). Commands and events are written
 * to the outbox as finished message bodies: the loop only copies bytes to
 * the broker.
 *
 * Message ids: commands carry the engine's deterministic ids (saga, state,
 * attempt), so a participant recognises a command re-sent after a crash;
 * events carry "<saga>:<event>:<ms>" where ms is the moment of the
 * transition, which is itself stored, so a replayed outbox row keeps it.
 */
#include "orch.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "envelope.h"
#include "log.h"
#include "otlp.h"
#include "trace.h"

struct orch {
	struct store *st;
	struct registry *reg;
	struct orch_config cfg;
	struct orch_stats stats;
	char err[600];
};

struct orch *
orch_new(struct store *st, struct registry *reg, const struct orch_config *cfg)
{
	struct orch *o = calloc(1, sizeof(*o));
	if (o == NULL)
		return NULL;
	o->st = st;
	o->reg = reg;
	if (cfg != NULL)
		o->cfg = *cfg;
	if (o->cfg.reply_to == NULL)
		o->cfg.reply_to = "orchestrator";
	return o;
}

void
orch_free(struct orch *o)
{
	free(o);
}

const struct orch_stats *
orch_stats(const struct orch *o)
{
	return &o->stats;
}

const char *
orch_error(const struct orch *o)
{
	return o->err;
}

static int
store_failed(struct orch *o)
{
	snprintf(o->err, sizeof(o->err), "%s", store_error(o->st));
	return -1;
}

/* A saga id is an order id: printable, no separators we use in message
 * ids, bounded. */
static bool
valid_saga_id(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n >= SAGA_ID_MAX - 1 || n > 100)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      c == '.'))
			return false;
	}
	return true;
}

static int
history(struct orch *o, const struct chart *c, const struct saga *s,
        const char *kind, const char *detail, const char *message_id,
        const char *actor, const char *reason, int64_t now)
{
	struct store_history h = {
	        .saga_id = s->id,
	        .at_ms = now,
	        .kind = kind,
	        .state = c->states[s->state].name,
	        .status = saga_status_name(s->status),
	        .detail = detail,
	        .message_id = message_id,
	        .actor = actor,
	        .reason = reason,
	};
	if (store_history_add(o->st, &h) != 0)
		return store_failed(o);
	return 0;
}

/* Writes one finished message to the outbox. */
static int
outbox(struct orch *o, const struct saga *s, const char *exchange,
       const char *rk, const char *reply_to, struct envelope *env,
       const char *trace)
{
	char *body = NULL;
	size_t len = 0;
	struct store_outbox m = {0};
	int rc;

	if (envelope_encode(env, &body, &len) != 0) {
		snprintf(o->err, sizeof(o->err), "saga %s: cannot encode %s",
		         s->id, env->type);
		return -1;
	}
	m.saga_id = s->id;
	m.exchange = exchange;
	m.routing_key = rk;
	m.reply_to = reply_to;
	m.message_id = env->id;
	m.type = env->type;
	m.traceparent = trace != NULL && trace[0] != '\0' ? trace : NULL;
	m.body = body;
	m.body_len = len;
	m.created_ms = env->ts;
	rc = store_outbox_add(o->st, &m);
	free(body);
	if (rc != 0)
		return store_failed(o);
	return 0;
}

/* A child span of the saga's trace for one outgoing message. */
static void
child_trace(const char *parent, char *out, size_t cap)
{
	out[0] = '\0';
	if (parent != NULL && parent[0] != '\0' &&
	    trace_child(parent, out, cap) != 0)
		out[0] = '\0';
}

static int
send_command(struct orch *o, const struct saga *s, struct engine_action *a,
             const char *trace, int64_t now)
{
	struct envelope env;
	char rk[512], tp[TRACE_PARENT_LEN + 1];
	int rc;

	if (a->route[0] != '\0')
		snprintf(rk, sizeof(rk), "%s.%s", a->to, a->route);
	else
		snprintf(rk, sizeof(rk), "%s", a->to);
	envelope_init(&env);
	snprintf(env.id, sizeof(env.id), "%s", a->message_id);
	snprintf(env.saga, sizeof(env.saga), "%s", s->id);
	snprintf(env.type, sizeof(env.type), "%s", a->command);
	snprintf(env.step, sizeof(env.step), "%s", a->step);
	env.attempt = a->attempt;
	env.ts = now;
	/* the action's payload moves into the envelope */
	env.payload = a->payload;
	value_set_nil(&a->payload);
	child_trace(trace, tp, sizeof(tp));
	rc = outbox(o, s, ORCH_EXCHANGE_COMMANDS, rk, o->cfg.reply_to, &env,
	            tp);
	envelope_clear(&env);
	if (rc == 0)
		o->stats.commands++;
	return rc;
}

/* An event's payload: the order id, where the saga is, and its data. */
static int emit_event_why(struct orch *o, const struct chart *c,
                          const struct saga *s, const char *event,
                          const char *reason, const char *trace, int64_t now);

static int
emit_event(struct orch *o, const struct chart *c, const struct saga *s,
           const char *event, const char *trace, int64_t now)
{
	return emit_event_why(o, c, s, event, NULL, trace, now);
}

/* The same, with a `reason` in the payload (a refused cancel). */
static int
emit_event_why(struct orch *o, const struct chart *c, const struct saga *s,
               const char *event, const char *reason, const char *trace,
               int64_t now)
{
	struct envelope env;
	char tp[TRACE_PARENT_LEN + 1];
	int rc = -1;

	envelope_init(&env);
	snprintf(env.id, sizeof(env.id), "%s:%s:%lld", s->id, event,
	         (long long)now);
	snprintf(env.saga, sizeof(env.saga), "%s", s->id);
	snprintf(env.type, sizeof(env.type), "%s", event);
	snprintf(env.step, sizeof(env.step), "%s", c->states[s->state].name);
	env.attempt = 0;
	env.ts = now;
	if (value_copy(&env.payload, &s->data) != 0 ||
	    value_map_put_str(&env.payload, "order_id", s->id) != 0 ||
	    value_map_put_str(&env.payload, "saga_status",
	                      saga_status_name(s->status)) != 0 ||
	    value_map_put_str(&env.payload, "chart", c->name) != 0 ||
	    value_map_put_str(&env.payload, "state",
	                      c->states[s->state].name) != 0 ||
	    (reason != NULL &&
	     value_map_put_str(&env.payload, "reason", reason) != 0)) {
		snprintf(o->err, sizeof(o->err), "out of memory");
		goto out;
	}
	child_trace(trace, tp, sizeof(tp));
	rc = outbox(o, s, ORCH_EXCHANGE_EVENTS, event, NULL, &env, tp);
	if (rc == 0)
		o->stats.events++;
out:
	envelope_clear(&env);
	return rc;
}

static void
count_status(struct orch *o, const struct chart *c, enum saga_status st)
{
	switch (st) {
	case SAGA_COMPLETED:
		o->stats.completed++;
		break;
	case SAGA_FAILED:
		o->stats.failed++;
		break;
	case SAGA_STUCK:
		o->stats.stuck++;
		break;
	case SAGA_ABORTED:
		o->stats.aborted++;
		break;
	case SAGA_CANCELLED:
		o->stats.cancelled++;
		break;
	default:
		break;
	}
	if (o->cfg.on_status != NULL)
		o->cfg.on_status(o->cfg.observer_arg, c->name, st);
}

/* A command sent, recorded at its own step: in a parallel state the
 * saga's state is the parallel state, the command a branch's step. */
static int
history_send(struct orch *o, const struct saga *s,
             const struct engine_action *a, int64_t now)
{
	struct store_history h = {
	        .saga_id = s->id,
	        .at_ms = now,
	        .kind = "send",
	        .state = a->step,
	        .status = saga_status_name(s->status),
	        .detail = a->command,
	        .message_id = a->message_id,
	};
	if (store_history_add(o->st, &h) != 0)
		return store_failed(o);
	return 0;
}

/* A span of saga s in trace `trace` (its traceparent): the saga's own
 * (state < 0) or the state's it left. */
static void
span_of(const struct chart *c, const struct saga *s, int state,
        const char *trace, struct otlp_span *sp)
{
	char key[SAGA_ID_MAX + 64];

	memset(sp, 0, sizeof(*sp));
	if (trace_parse(trace, sp->trace_id) != 0)
		return;
	snprintf(key, sizeof(key), "%s/saga", s->id);
	otlp_span_id(key, state < 0 ? sp->span_id : sp->parent_id);
	otlp_attr(sp, "saga.id", s->id);
	otlp_attr(sp, "saga.chart", c->name);
	if (state < 0) { /* its parent: the span that sent order.created */
		memcpy(sp->parent_id, trace + 36, 16);
		sp->kind = OTLP_SERVER;
		snprintf(sp->name, sizeof(sp->name), "saga %s", c->name);
		return;
	}
	snprintf(key, sizeof(key), "%s/%s@%lld", s->id, c->states[state].name,
	         (long long)s->step_started_ms);
	otlp_span_id(key, sp->span_id);
	sp->kind =
	        c->states[state].command != NULL ? OTLP_CLIENT : OTLP_INTERNAL;
	snprintf(sp->name, sizeof(sp->name), "%s",
	         c->states[state].command != NULL ? c->states[state].command
	                                          : c->states[state].name);
	otlp_attr(sp, "saga.state", c->states[state].name);
}

/* The spans a step ends: the state left, and the saga if it is over. */
static void
emit_spans(struct orch *o, const struct chart *c, const struct saga *before,
           const struct saga *s, const char *kind, const char *trace,
           int64_t now)
{
	struct otlp_span sp;

	if (o->cfg.otlp == NULL || trace == NULL || trace[0] == '\0')
		return;
	if (before != NULL && before->state != s->state) {
		span_of(c, before, before->state, trace, &sp);
		sp.start_ms = before->step_started_ms;
		sp.end_ms = now;
		otlp_attr(&sp, "saga.event", kind);
		sp.error = s->status == SAGA_COMPENSATING &&
		           before->status != SAGA_COMPENSATING;
		if (sp.trace_id[0] != '\0')
			otlp_emit(o->cfg.otlp, &sp);
	}
	if (saga_status_final(s->status) &&
	    (before == NULL || !saga_status_final(before->status))) {
		span_of(c, s, -1, trace, &sp);
		sp.start_ms = s->started_ms;
		sp.end_ms = now;
		otlp_attr(&sp, "saga.status", saga_status_name(s->status));
		sp.error = s->status != SAGA_COMPLETED;
		if (sp.trace_id[0] != '\0')
			otlp_emit(o->cfg.otlp, &sp);
	}
}

/* Writes what engine_step decided: saga, history, outbox, timer. */
static int
commit_step(struct orch *o, const struct chart *c, const struct saga *before,
            struct saga *s, struct engine_output *out, const char *kind,
            const char *message_id, const char *actor, const char *reason,
            const char *trace, int64_t now)
{
	if (store_saga_put(o->st, c, s, trace,
	                   before != NULL && before->status == s->status) != 0)
		return store_failed(o);
	if (history(o, c, s, kind, out->note, message_id, actor, reason, now))
		return -1;
	if (before != NULL && before->state != s->state &&
	    o->cfg.on_step != NULL)
		o->cfg.on_step(o->cfg.observer_arg, c->name,
		               c->states[before->state].name,
		               (double)(now - before->step_started_ms) /
		                       1000.0);
	for (size_t i = 0; i < out->nactions; i++) {
		struct engine_action *a = &out->actions[i];
		int rc = 0;
		switch (a->type) {
		case ACT_SEND:
			rc = send_command(o, s, a, trace, now);
			if (rc == 0)
				rc = history_send(o, s, a, now);
			break;
		case ACT_EMIT:
			rc = emit_event(o, c, s, a->event, trace, now);
			if (rc == 0)
				rc = history(o, c, s, "emit", a->event, NULL,
				             NULL, NULL, now);
			break;
		case ACT_SET_TIMER:
			if (store_timer_set(o->st, s->id, a->timer_seq,
			                    a->fire_at_ms, now) != 0)
				return store_failed(o);
			break;
		case ACT_CANCEL_TIMER:
			if (store_timer_cancel(o->st, s->id) != 0)
				return store_failed(o);
			break;
		case ACT_FINISH:
			rc = history(o, c, s, "finish",
			             saga_status_name(a->status), NULL, NULL,
			             NULL, now);
			break;
		}
		if (rc != 0)
			return -1;
	}
	if (before == NULL || before->status != s->status)
		count_status(o, c, s->status);
	emit_spans(o, c, before, s, kind, trace, now);
	log_set_trace(trace);
	log_info("saga=%s chart=%s state=%s status=%s event=%s note=\"%s\"",
	         s->id, c->name, c->states[s->state].name,
	         saga_status_name(s->status), kind, out->note);
	log_set_trace(NULL);
	return 0;
}

__attribute__((format(printf, 4, 5))) static int
reject(enum orch_verdict *verdict, char *reason, size_t cap, const char *fmt,
       ...)
{
	va_list ap;
	*verdict = ORCH_REJECT;
	va_start(ap, fmt);
	vsnprintf(reason, cap, fmt, ap);
	va_end(ap);
	return 0;
}

const char *
orch_outcome_name(enum orch_outcome o)
{
	static const char *const names[] = {"applied", "rejected", "ignored",
	                                    "repeated"};
	_Static_assert(ARRAY_LEN(names) == ORCH_REPEATED + 1, "a name each");
	return (size_t)o < ARRAY_LEN(names) ? names[o] : "unknown";
}

/* Tells the asker (in->answer, if any) what became of the request: the
 * outcome, the note, and the saga's state and status if known. */
static void
answer(const struct orch_input *in, enum orch_outcome outcome, const char *note,
       const struct chart *c, const struct saga *s)
{
	struct orch_answer *a = in->answer;

	if (a == NULL)
		return;
	a->outcome = outcome;
	snprintf(a->note, sizeof(a->note), "%s", note != NULL ? note : "");
	a->state[0] = a->status[0] = '\0';
	if (c != NULL && s != NULL) {
		snprintf(a->state, sizeof(a->state), "%s",
		         c->states[s->state].name);
		snprintf(a->status, sizeof(a->status), "%s",
		         saga_status_name(s->status));
	}
}

/* A request refused before the engine saw it: answered if someone asks
 * (then acknowledged: the asker is told, nothing to dead-letter), else
 * rejected (dead-lettered with the reason). */
static int
refuse(const struct orch_input *in, enum orch_verdict *verdict,
       const char *reason)
{
	if (in->answer == NULL) {
		*verdict = ORCH_REJECT;
		return 0;
	}
	answer(in, ORCH_REJECTED, reason, NULL, NULL);
	*verdict = ORCH_DONE;
	return 0;
}

/* Loads a saga and its chart. *found false (return 0) if there is none;
 * -1 on store failure; -2 if the record or its chart is unusable (reason
 * in why). */
static int
load_saga(struct orch *o, const char *id, struct saga *s,
          const struct chart **c, char *trace, size_t tracecap, bool *found,
          char *why, size_t whylen)
{
	char version[17];
	struct value rec = VALUE_NIL_INIT;

	if (store_saga_get(o->st, id, version, &rec, trace, tracecap, found) !=
	    0)
		return store_failed(o);
	if (!*found)
		return 0;
	*c = registry_version(o->reg, version, why, whylen);
	if (*c == NULL) {
		value_clear(&rec);
		return -2;
	}
	saga_init(s, id);
	if (saga_from_value(s, *c, &rec, why, whylen) != 0) {
		value_clear(&rec);
		saga_clear(s);
		return -2;
	}
	value_clear(&rec);
	return 0;
}

static int
start_saga(struct orch *o, const struct orch_input *in,
           enum orch_verdict *verdict, char *reason, size_t cap)
{
	const struct value *oid = value_map_get(in->payload, "order_id");
	const struct value *cv = value_map_get(in->payload, "chart");
	const char *chart_name = ORCH_DEFAULT_CHART;
	const struct chart *c;
	struct saga s;
	struct engine_event ev = {0};
	struct engine_output out;
	char version[17], trace[TRACE_PARENT_LEN + 1];
	struct value rec = VALUE_NIL_INIT;
	bool found = false;
	int rc;

	if (oid == NULL || oid->type != VALUE_STR)
		return reject(verdict, reason, cap,
		              "order.created has no string order_id");
	if (!valid_saga_id(oid->u.s.ptr))
		return reject(verdict, reason, cap,
		              "order id \"%.100s\" is not a valid saga id",
		              oid->u.s.ptr);
	if (cv != NULL && cv->type == VALUE_STR)
		chart_name = cv->u.s.ptr;
	c = registry_current(o->reg, chart_name);
	if (c == NULL)
		return reject(verdict, reason, cap,
		              "no statechart named \"%.64s\"", chart_name);
	if (store_saga_get(o->st, oid->u.s.ptr, version, &rec, NULL, 0,
	                   &found) != 0)
		return store_failed(o);
	value_clear(&rec);
	if (found) {
		/* a second order.created for the same order starts nothing */
		o->stats.duplicates++;
		*verdict = ORCH_DUPLICATE;
		return 0;
	}
	saga_init(&s, oid->u.s.ptr);
	memcpy(s.chart_version, c->version, sizeof(s.chart_version));
	ev.type = EV_START;
	ev.now_ms = in->now_ms;
	ev.payload = in->payload;
	if (engine_step(c, &s, &ev, &out) != ENGINE_OK) {
		*verdict = ORCH_REJECT;
		snprintf(reason, cap, "cannot start saga %s: %s", s.id,
		         out.note);
		engine_output_clear(&out);
		saga_clear(&s);
		return 0;
	}
	if (in->traceparent != NULL && trace_parse(in->traceparent, NULL) == 0)
		snprintf(trace, sizeof(trace), "%s", in->traceparent);
	else if (trace_new(trace, sizeof(trace)) != 0)
		trace[0] = '\0';
	o->stats.started++; /* commit_step reports the status change */
	rc = commit_step(o, c, NULL, &s, &out, "start", in->message_id, NULL,
	                 NULL, trace, in->now_ms);
	engine_output_clear(&out);
	saga_clear(&s);
	*verdict = ORCH_DONE;
	return rc;
}

static int
operator_event(const char *type, enum engine_event_type *ev)
{
	static const struct {
		const char *name;
		enum engine_event_type ev;
	} ops[] = {
	        {"operator.retry", EV_OP_RETRY},
	        {"operator.resume", EV_OP_RESUME},
	        {"operator.abort", EV_OP_ABORT},
	        {"operator.compensate", EV_OP_COMPENSATE},
	        {"operator.skip", EV_OP_SKIP},
	        {"operator.mark_compensated", EV_OP_MARK_COMPENSATED},
	};
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (strcmp(type, ops[i].name) == 0) {
			*ev = ops[i].ev;
			return 0;
		}
	}
	return -1;
}

static const char *
payload_str(const struct value *payload, const char *key)
{
	const struct value *v = value_map_get(payload, key);
	return v != NULL && v->type == VALUE_STR ? v->u.s.ptr : NULL;
}

/* Nobody took the saga's outstanding command during its attempt (the
 * attempt's window is the `timeout` before now). */
static bool
command_absent(const struct orch *o, const struct chart *c,
               const struct saga *s, int64_t now)
{
	char to[CHART_NAME_MAX], key[512];
	int64_t timeout;

	if (o->cfg.absent == NULL ||
	    engine_outstanding(c, s, to, sizeof(to), key, sizeof(key),
	                       &timeout) != 0)
		return false;
	return o->cfg.absent(o->cfg.absent_arg, to, key, now - timeout, now);
}

/* The same for each branch of a saga in a parallel state: bit k. */
static uint32_t
branches_absent(const struct orch *o, const struct chart *c,
                const struct saga *s, int64_t now)
{
	char to[CHART_NAME_MAX], key[512];
	int64_t timeout;
	uint32_t bits = 0;

	_Static_assert(ENGINE_BRANCHES_MAX <= 32, "a bit per branch");
	for (size_t k = 0; o->cfg.absent != NULL && k < s->nbranches; k++)
		if (engine_branch_outstanding(c, s, k, to, sizeof(to), key,
		                              sizeof(key), &timeout) == 0 &&
		    o->cfg.absent(o->cfg.absent_arg, to, key, now - timeout,
		                  now))
			bits |= UINT32_C(1) << k;
	return bits;
}

/* An input as the engine and the history see it. */
struct step_in {
	struct engine_event ev;
	const char *kind;  /* the history's kind: reply, timeout, ... */
	const char *actor; /* an operator's or a cancel's: who */
	const char *why;   /* and why */
};

/* The engine event for `in` on saga s (a fired timer is consumed: the
 * engine sets the next one). 0: ready; -1: the store failed; 1: not an
 * event, answered (verdict and reason set). */
static int
step_event(struct orch *o, const struct orch_input *in, const struct chart *c,
           const struct saga *s, struct step_in *e, enum orch_verdict *verdict,
           char *reason, size_t cap)
{
	memset(e, 0, sizeof(*e));
	e->ev.now_ms = in->now_ms;
	e->kind = "reply";
	switch (in->kind) {
	case IN_REPLY:
		e->ev.type = EV_REPLY;
		e->ev.reply_type = in->type;
		e->ev.in_reply_to =
		        in->in_reply_to != NULL ? in->in_reply_to : "";
		e->ev.payload = in->payload;
		return 0;
	case IN_TIMER:
		if (store_timer_cancel(o->st, in->saga_id) != 0)
			return store_failed(o);
		e->ev.type = EV_TIMEOUT;
		e->ev.timer_seq = in->timer_seq;
		e->ev.absent = command_absent(o, c, s, in->now_ms);
		e->ev.absent_branches = branches_absent(o, c, s, in->now_ms);
		e->kind = "timeout";
		return 0;
	case IN_OPERATOR:
		if (operator_event(in->type, &e->ev.type) != 0) {
			reject(verdict, reason, cap,
			       "unknown operator action \"%.60s\"", in->type);
			refuse(in, verdict, reason);
			return 1;
		}
		e->ev.step = payload_str(in->payload, "step");
		e->actor = in->actor != NULL
		                   ? in->actor
		                   : payload_str(in->payload, "actor");
		e->why = payload_str(in->payload, "reason");
		e->kind = "operator";
		return 0;
	case IN_CANCEL:
		e->ev.type = EV_CANCEL;
		e->actor = payload_str(in->payload, "actor");
		if (e->actor == NULL)
			e->actor = "customer";
		e->why = payload_str(in->payload, "reason");
		e->kind = "cancel";
		return 0;
	default:
		reject(verdict, reason, cap, "unexpected input");
		return 1;
	}
}

/* The engine rejected or ignored the input: nothing changed, the history
 * says what came and why not (a timer's is not worth a row), and a
 * refused cancel is told to the customer (order-api reads the event). */
static int
not_applied(struct orch *o, const struct orch_input *in, const struct chart *c,
            const struct saga *s, bool rejected, const char *note,
            const struct step_in *e, const char *trace)
{
	const char *k = rejected ? "rejected" : "ignored";
	char detail[ENGINE_NOTE_MAX + 128];
	int rc = 0;

	snprintf(detail, sizeof(detail), "%s: %s",
	         in->type != NULL ? in->type : e->kind, note);
	o->stats.ignored++;
	if (in->kind != IN_TIMER)
		rc = history(o, c, s, k, detail, in->message_id, e->actor,
		             e->why, in->now_ms);
	if (rc == 0 && in->kind == IN_CANCEL)
		rc = emit_event_why(o, c, s, ORCH_CANCEL_REFUSED, note, trace,
		                    in->now_ms);
	log_set_trace(trace);
	log_info("saga=%s state=%s event=%s %s note=\"%s\"", s->id,
	         c->states[s->state].name, e->kind, k, note);
	log_set_trace(NULL);
	return rc;
}

/* A reply, a timer, an operator request or a cancel for an existing
 * saga: loaded, stepped, committed (or noted as not applied). */
static int
step_saga(struct orch *o, const struct orch_input *in,
          enum orch_verdict *verdict, char *reason, size_t cap)
{
	const struct chart *c = NULL;
	struct saga s, before;
	struct step_in e;
	struct engine_output out;
	enum engine_result res;
	char trace[TRACE_PARENT_LEN + 1], why[300];
	bool found = false;
	int rc;

	rc = load_saga(o, in->saga_id, &s, &c, trace, sizeof(trace), &found,
	               why, sizeof(why));
	if (rc == -1)
		return -1;
	if (rc == -2) {
		reject(verdict, reason, cap, "saga %.100s: %.300s", in->saga_id,
		       why);
		return refuse(in, verdict, reason);
	}
	if (!found) {
		if (in->kind == IN_TIMER) { /* a timer left by a purge */
			*verdict = ORCH_DONE;
			return store_timer_cancel(o->st, in->saga_id) == 0
			               ? 0
			               : store_failed(o);
		}
		reject(verdict, reason, cap, "unknown saga \"%.100s\"",
		       in->saga_id);
		return refuse(in, verdict, reason);
	}
	rc = step_event(o, in, c, &s, &e, verdict, reason, cap);
	if (rc != 0) {
		saga_clear(&s);
		return rc < 0 ? -1 : 0;
	}
	if (saga_copy(&before, &s) != 0) {
		saga_clear(&s);
		snprintf(o->err, sizeof(o->err), "out of memory");
		return -1;
	}
	res = engine_step(c, &s, &e.ev, &out);
	*verdict = ORCH_DONE;
	answer(in,
	       res == ENGINE_OK         ? ORCH_APPLIED
	       : res == ENGINE_REJECTED ? ORCH_REJECTED
	                                : ORCH_IGNORED,
	       out.note, c, &s);
	if (res == ENGINE_OK)
		rc = commit_step(o, c, &before, &s, &out, e.kind,
		                 in->message_id, e.actor, e.why, trace,
		                 in->now_ms);
	else
		rc = not_applied(o, in, c, &s, res == ENGINE_REJECTED, out.note,
		                 &e, trace);
	engine_output_clear(&out);
	saga_clear(&before);
	saga_clear(&s);
	return rc;
}

int
orch_apply(struct orch *o, const struct orch_input *in,
           enum orch_verdict *verdict, char *reason, size_t reasonlen)
{
	bool dup = false;

	o->err[0] = '\0';
	reason[0] = '\0';
	*verdict = ORCH_DONE;
	if (in->message_id != NULL) {
		if (store_inbox_add(o->st, in->message_id, in->now_ms, &dup) !=
		    0)
			return store_failed(o);
		if (dup) {
			o->stats.duplicates++;
			*verdict = ORCH_DUPLICATE;
			answer(in, ORCH_REPEATED,
			       "this request was handled before: nothing done "
			       "again",
			       NULL, NULL);
			return 0;
		}
	}
	if (in->kind == IN_ORDER_CREATED)
		return start_saga(o, in, verdict, reason, reasonlen);
	if (in->saga_id == NULL || !valid_saga_id(in->saga_id)) {
		snprintf(reason, reasonlen, "bad saga id");
		return refuse(in, verdict, reason);
	}
	return step_saga(o, in, verdict, reason, reasonlen);
}

struct fire_ctx {
	struct orch *o;
	int64_t now;
	size_t fired;
};

static int
fire_one(void *arg, const char *saga_id, int64_t seq, int64_t fire_at_ms)
{
	struct fire_ctx *f = arg;
	struct orch_input in = {
	        .kind = IN_TIMER,
	        .saga_id = saga_id,
	        .type = "timeout",
	        .timer_seq = seq,
	        .now_ms = f->now > fire_at_ms ? f->now : fire_at_ms,
	};
	enum orch_verdict v;
	char reason[300];

	if (orch_apply(f->o, &in, &v, reason, sizeof(reason)) != 0)
		return -1;
	if (v == ORCH_REJECT) {
		/* a timer whose saga cannot run: drop it, say why */
		log_warnx("saga=%s timer dropped: %s", saga_id, reason);
		if (store_timer_cancel(f->o->st, saga_id) != 0)
			return store_failed(f->o);
	}
	f->fired++;
	return 0;
}

int
orch_fire_timers(struct orch *o, int64_t now_ms, size_t limit, size_t *fired)
{
	struct fire_ctx f = {o, now_ms, 0};
	int rc = store_timers_due(o->st, now_ms, limit, fire_one, &f);
	*fired = f.fired;
	if (rc != 0 && o->err[0] == '\0')
		store_failed(o);
	return rc;
}

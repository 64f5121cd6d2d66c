/* loop.c -- the orchestrator's handler for the durable loop (loop.h).
 * Every function is a short translation between lib/durable's handler
 * interface and the store's and the engine's; the loop's logic is all in
 * lib/durable.c. */
#include "loop.h"

#include "batch_metrics.h"
#include "clock.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct loop {
	struct store *st;
	struct orch *o;
	struct durable *d;
	const char *err; /* store_error or orch_error, whichever failed */
	struct batch_metrics *bm; /* or NULL */
	char operator_user[128];  /* who may act; "" anyone (loop.h) */
};

static int
store_rc(struct loop *l, int rc)
{
	if (rc != 0)
		l->err = store_error(l->st);
	return rc;
}

static int
orch_rc(struct loop *l, int rc)
{
	if (rc != 0)
		l->err = orch_error(l->o);
	return rc;
}

static int
h_begin(void *ctx)
{
	struct loop *l = ctx;
	return store_rc(l, store_begin(l->st));
}

static int
h_commit(void *ctx)
{
	struct loop *l = ctx;
	int64_t t0 = clock_mono_us();
	int rc = store_rc(l, store_commit(l->st));

	if (l->bm != NULL && rc == 0)
		batch_metrics_committed(l->bm,
		                        (double)(clock_mono_us() - t0) / 1e6);
	else if (l->bm != NULL)
		batch_metrics_rolled_back(l->bm);
	return rc;
}

static void
h_rollback(void *ctx)
{
	struct loop *l = ctx;
	store_rollback(l->st);
	if (l->bm != NULL)
		batch_metrics_rolled_back(l->bm);
}

/* Notes a delivery's outcome for the metrics (counted at commit). */
static void
note(struct loop *l, const char *type, const char *outcome, int64_t t0)
{
	if (l->bm != NULL)
		batch_metrics_note(l->bm, type, outcome,
		                   (double)(clock_mono_us() - t0) / 1e6);
}

static const char *
h_error(void *ctx)
{
	struct loop *l = ctx;
	return l->err != NULL ? l->err : "";
}

/* Once the batch's commands and events are out. */
static void
h_after(void *ctx)
{
	struct loop *l = ctx;
	if (store_wal_checkpoint(l->st) != 0)
		log_warnx("%s", store_error(l->st));
}

/* Why a message cannot come from its queue, or NULL. */
static const char *
wrong_queue(const struct durable_item *it)
{
	const char *type = it->env->type;

	/* the orders queue takes order.created and the customer's cancel
	 * (both bound to it) */
	if (it->source == SRC_ORDERS && strcmp(type, "order.created") != 0 &&
	    strcmp(type, ORCH_CANCEL_TYPE) != 0)
		return "orders";
	if (it->source == SRC_CONTROL && strncmp(type, "operator.", 9) != 0)
		return "control";
	return NULL;
}

static enum orch_input_kind
input_kind(const struct durable_item *it)
{
	switch ((enum loop_source)it->source) {
	case SRC_ORDERS:
		return strcmp(it->env->type, ORCH_CANCEL_TYPE) == 0
		               ? IN_CANCEL
		               : IN_ORDER_CREATED;
	case SRC_CONTROL:
		return IN_OPERATOR;
	case SRC_REPLIES:
		break;
	}
	return IN_REPLY;
}

/* The answer to an operator request, as an outbox row to saga.replies
 * keyed by the request's reply_to, in the batch's transaction: the
 * envelope {re: the request's id, saga, type operator.answer, payload
 * {outcome, note, state, status, actor}}. 0, or -1 (store failed). */
static int
send_answer(struct loop *l, const struct durable_item *it,
            const struct orch_answer *a, const char *actor, int64_t now_ms)
{
	struct envelope e;
	struct store_outbox m = {0};
	char *body = NULL;
	size_t len = 0;
	int rc = -1;

	envelope_init(&e);
	snprintf(e.saga, sizeof(e.saga), "%s", it->env->saga);
	snprintf(e.type, sizeof(e.type), "%s", ORCH_ANSWER_TYPE);
	snprintf(e.re, sizeof(e.re), "%s", it->env->id);
	e.ts = now_ms;
	if (envelope_new_id(e.id, sizeof(e.id), "ans") != 0 ||
	    value_map_put_str(&e.payload, "outcome",
	                      orch_outcome_name(a->outcome)) != 0 ||
	    value_map_put_str(&e.payload, "note", a->note) != 0 ||
	    value_map_put_str(&e.payload, "state", a->state) != 0 ||
	    value_map_put_str(&e.payload, "status", a->status) != 0 ||
	    value_map_put_str(&e.payload, "actor", actor) != 0 ||
	    envelope_encode(&e, &body, &len) != 0) {
		l->err = "out of memory: cannot answer an operator request";
		goto out;
	}
	m.saga_id = e.saga;
	m.exchange = ORCH_EXCHANGE_REPLIES;
	m.routing_key = it->reply_to;
	m.message_id = e.id;
	m.type = e.type;
	m.body = body;
	m.body_len = len;
	m.created_ms = now_ms;
	rc = store_rc(l, store_outbox_add(l->st, &m));
out:
	free(body);
	envelope_clear(&e);
	return rc;
}

/* An operator request: from the operator user (if one is named), applied
 * with the broker-validated sender as the actor, and answered if it says
 * where (reply_to). *ov and why as orch_apply's. */
static int
apply_operator(struct loop *l, const struct durable_item *it,
               struct orch_input *in, enum orch_verdict *ov, char *why,
               size_t whylen)
{
	struct orch_answer ans = {0};
	const char *actor;

	in->actor = it->user_id[0] != '\0' ? it->user_id : NULL;
	in->answer = it->reply_to[0] != '\0' ? &ans : NULL;
	if (l->operator_user[0] != '\0' &&
	    strcmp(it->user_id, l->operator_user) != 0) {
		log_warnx("saga=%s %s refused: from broker user \"%.100s\", "
		          "not the operator user \"%s\"",
		          in->saga_id, in->type,
		          it->user_id[0] ? it->user_id : "(none given)",
		          l->operator_user);
		snprintf(why, whylen, "not from the operator user");
		ans.outcome = ORCH_REJECTED;
		snprintf(ans.note, sizeof(ans.note), "%s", why);
		*ov = in->answer != NULL ? ORCH_DONE : ORCH_REJECT;
	} else if (orch_rc(l, orch_apply(l->o, in, ov, why, whylen)) != 0) {
		return -1;
	}
	if (in->answer == NULL)
		return 0;
	if (*ov == ORCH_REJECT) { /* refused before orch_apply answered */
		ans.outcome = ORCH_REJECTED;
		snprintf(ans.note, sizeof(ans.note), "%s", why);
		*ov = ORCH_DONE; /* the asker is told: nothing to dead-letter */
	}
	actor = in->actor;
	if (actor == NULL) {
		const struct value *v = value_map_get(in->payload, "actor");
		actor = v != NULL && v->type == VALUE_STR ? v->u.s.ptr : "";
	}
	return send_answer(l, it, &ans, actor, in->now_ms);
}

static int
h_apply(void *ctx, const struct durable_item *it, struct durable_time now,
        enum durable_verdict *v, char *why, size_t whylen)
{
	struct loop *l = ctx;
	const struct envelope *e = it->env;
	const char *q = wrong_queue(it);
	struct orch_input in = {0};
	enum orch_verdict ov = ORCH_DONE;
	int64_t t0 = clock_mono_us();

	if (q != NULL) {
		*v = DURABLE_REJECT;
		snprintf(why, whylen, "unexpected %.100s on the %s queue",
		         e->type, q);
		note(l, e->type, "dead_lettered", t0);
		return 0;
	}
	in.kind = input_kind(it);
	in.message_id = e->id;
	in.saga_id = e->saga;
	in.type = e->type;
	in.in_reply_to = e->re[0] != '\0' ? e->re : NULL;
	in.payload = &e->payload;
	in.traceparent = it->traceparent[0] ? it->traceparent : NULL;
	in.now_ms = now.wall_ms;
	if (in.kind == IN_OPERATOR) {
		if (apply_operator(l, it, &in, &ov, why, whylen) != 0)
			return -1;
	} else if (orch_rc(l, orch_apply(l->o, &in, &ov, why, whylen)) != 0) {
		return -1;
	}
	*v = ov == ORCH_REJECT ? DURABLE_REJECT : DURABLE_DONE;
	note(l, e->type,
	     ov == ORCH_REJECT      ? "dead_lettered"
	     : ov == ORCH_DUPLICATE ? "duplicate"
	                            : "ok",
	     t0);
	return 0;
}

static int
h_timer_next(void *ctx, int64_t *at_ms, bool *found)
{
	struct loop *l = ctx;
	return store_rc(l, store_timer_next(l->st, at_ms, found));
}

static int
h_fire(void *ctx, struct durable_time now, size_t max)
{
	struct loop *l = ctx;
	size_t fired = 0;
	return orch_rc(l, orch_fire_timers(l->o, now.wall_ms, max, &fired));
}

static int
h_prune(void *ctx, int64_t before_ms, size_t max, int64_t *pruned)
{
	struct loop *l = ctx;
	return store_rc(l, store_inbox_prune(l->st, before_ms, max, pruned));
}

struct scan_ctx {
	durable_row_fn fn;
	void *arg;
};

static int
scan_row(void *arg, const struct store_outbox *m)
{
	const struct scan_ctx *s = arg;
	struct durable_msg dm = {
	        .seq = m->seq,
	        .exchange = m->exchange,
	        .routing_key = m->routing_key,
	        .message_id = m->message_id,
	        .correlation_id = m->saga_id,
	        .type = m->type,
	        .reply_to = m->reply_to,
	        .traceparent = m->traceparent,
	        .body = m->body,
	        .len = m->body_len,
	        .created_ms = m->created_ms,
	};
	/* a command: unroutable is an answer, and the commands one pass
	 * makes ready for a queue may go as one bundle */
	dm.mandatory = dm.bundle =
	        strcmp(m->exchange, ORCH_EXCHANGE_COMMANDS) == 0;
	return s->fn(s->arg, &dm);
}

static int
h_outbox_scan(void *ctx, int64_t after_seq, size_t limit, durable_row_fn fn,
              void *arg)
{
	struct loop *l = ctx;
	struct scan_ctx s = {fn, arg};
	return store_rc(
	        l, store_outbox_scan(l->st, after_seq, limit, scan_row, &s));
}

static int
h_outbox_delete(void *ctx, int64_t seq, int64_t confirmed_ms)
{
	struct loop *l = ctx;
	return store_rc(l, store_outbox_delete(l->st, seq, confirmed_ms));
}

/* A batch of operator requests from loop_operate (the mailbox's data). */
struct op_batch {
	struct loop_op *ops;
	size_t n;
};

/* One request as orch_apply's IN_OPERATOR input. */
static int
operate_one(struct loop *l, struct loop_op *op, int64_t now_ms)
{
	struct value payload = VALUE_NIL_INIT;
	struct orch_input in = {
	        .kind = IN_OPERATOR,
	        .message_id = op->message_id,
	        .saga_id = op->saga_id,
	        .type = op->type,
	        .payload = &payload,
	        .now_ms = now_ms,
	        .actor = op->actor,
	        .answer = &op->answer,
	};
	enum orch_verdict ov;
	char why[320];
	int rc;

	value_set_map(&payload);
	if (value_map_put_str(&payload, "reason", op->reason) != 0 ||
	    (op->step != NULL &&
	     value_map_put_str(&payload, "step", op->step) != 0)) {
		value_clear(&payload);
		l->err = "out of memory";
		return -1;
	}
	rc = orch_rc(l, orch_apply(l->o, &in, &ov, why, sizeof(why)));
	value_clear(&payload);
	return rc;
}

static int
h_local(void *ctx, void *data, struct durable_time now)
{
	struct loop *l = ctx;
	struct op_batch *b = data;

	for (size_t i = 0; i < b->n; i++)
		if (operate_one(l, &b->ops[i], now.wall_ms) != 0)
			return -1;
	return 0;
}

int
loop_operate(struct loop *l, struct loop_op *ops, size_t n, int timeout_ms,
             char *err, size_t errlen)
{
	struct op_batch b = {ops, n};
	struct durable_local req = {.data = &b};
	int rc = durable_submit(l->d, &req, timeout_ms);

	if (rc != 0)
		snprintf(err, errlen, "%s", req.why);
	return rc;
}

struct loop *
loop_new(struct store *st, struct orch *o, const struct durable_transport *t,
         const struct durable_config *cfg)
{
	struct loop *l = calloc(1, sizeof(*l));
	struct durable_handler h = {
	        .ctx = l,
	        .begin = h_begin,
	        .commit = h_commit,
	        .rollback = h_rollback,
	        .error = h_error,
	        .apply = h_apply,
	        .timer_next = h_timer_next,
	        .fire = h_fire,
	        .prune = h_prune,
	        .outbox_scan = h_outbox_scan,
	        .outbox_delete = h_outbox_delete,
	        .local = h_local,
	        .after = h_after,
	};

	if (l == NULL)
		return NULL;
	l->st = st;
	l->o = o;
	l->d = durable_new(t, &h, cfg);
	if (l->d == NULL) {
		free(l);
		return NULL;
	}
	return l;
}

void
loop_free(struct loop *l)
{
	if (l == NULL)
		return;
	durable_free(l->d);
	free(l);
}

struct durable *
loop_durable(struct loop *l)
{
	return l->d;
}

void
loop_set_operator(struct loop *l, const char *user)
{
	snprintf(l->operator_user, sizeof(l->operator_user), "%s",
	         user != NULL ? user : "");
}

void
loop_observe(struct loop *l, struct batch_metrics *bm)
{
	l->bm = bm;
}

int
loop_turn(struct loop *l, int64_t now_ms)
{
	struct durable_time t = {now_ms, now_ms};
	return durable_turn(l->d, t);
}

int
loop_flush(struct loop *l, int64_t now_ms)
{
	struct durable_time t = {now_ms, now_ms};
	return durable_flush(l->d, t);
}

int
loop_run(struct loop *l, volatile sig_atomic_t *stop,
         volatile sig_atomic_t *reload, void (*on_reload)(void *arg), void *arg,
         int drain_ms)
{
	return durable_run(l->d, stop, reload, on_reload, arg, drain_ms);
}

bool
loop_healthy(const struct loop *l, const char **reason)
{
	return durable_healthy(l->d, reason);
}

const struct durable_stats *
loop_stats(const struct loop *l)
{
	return durable_stats(l->d);
}

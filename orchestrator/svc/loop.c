/* loop.c -- the durable loop (see loop.h).
 *
 * A batch is an array of decoded deliveries. It is committed when it holds
 * batch_max deliveries, when its input is drained (group commit: a poll
 * that does not wait brings nothing more), when its oldest has waited
 * batch_wait_ms, or when a timer is due; one transaction carries the whole
 * batch, the timers due, and the deletion of outbox rows confirmed since the
 * last commit. Only after COMMIT returns are deliveries settled and new outbox
 * rows published. A failed commit keeps everything in memory (deliveries stay
 * unacknowledged at the broker, so the prefetch window stops the flow:
 * the daemon stops taking work cleanly) and is retried with backoff.
 *
 * Publishing reads the outbox by seq, after the last row handed to the
 * transport, at most publish_window rows in flight; so rows left by a crash
 * are published at start like any other. A NACKed row is published again;
 * a RETURNED row (unroutable) is logged and deleted: nobody is bound to
 * receive it and republishing would loop forever.
 */
#include "clock.h"
#include "loop.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "log.h"

struct pending {
	uint64_t ref;
	enum loop_source source;
	bool bad;         /* failed to decode: dead-letter */
	char reason[300]; /* why it goes to the dead-letter queue */
	char traceparent[64];
	struct envelope env;
};

struct loop {
	struct store *st;
	struct orch *o;
	struct loop_transport t;
	struct loop_config cfg;
	struct loop_stats stats;

	struct pending *batch;
	size_t nbatch;
	int64_t batch_started_ms; /* when the first delivery arrived */

	int64_t *confirmed; /* outbox seqs to delete in the next commit */
	size_t nconfirmed, capconfirmed;
	int64_t last_commit_ms;

	int64_t last_published; /* highest outbox seq handed to publish */
	int64_t *resend;        /* NACKed seqs to publish again */
	size_t nresend, capresend;

	/* per batch: cap entries (cap + 1 for these), batch_max at first;
	 * grown when a transport hands over more at once (a bundle's items
	 * beyond batch_max), never shrunk */
	size_t cap;
	enum orch_verdict *verdicts;
	char (*reasons)[300];
	uint64_t *ok, *bad;
	const char **whys;

	int64_t last_prune_ms;  /* when pruning last found nothing more */
	bool down;              /* the transport could not publish */
	int64_t grace_until_ms; /* due timers wait until then */
	bool failing;
	int64_t retry_at_ms, backoff_ms;
	char why[512];
	int64_t now_ms;
};

struct loop *
loop_new(struct store *st, struct orch *o, const struct loop_transport *t,
         const struct loop_config *cfg)
{
	struct loop *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return NULL;
	l->st = st;
	l->o = o;
	l->t = *t;
	l->cfg = *cfg;
	l->down = true; /* the grace applies from the first connect */
	if (l->cfg.batch_max == 0)
		l->cfg.batch_max = 100;
	if (l->cfg.prune_per_turn == 0)
		l->cfg.prune_per_turn = 1000;
	if (l->cfg.timers_per_turn == 0)
		l->cfg.timers_per_turn = 500;
	if (l->cfg.publish_window == 0)
		l->cfg.publish_window = 1000;
	l->cap = l->cfg.batch_max;
	l->batch = calloc(l->cfg.batch_max, sizeof(*l->batch));
	l->verdicts = calloc(l->cfg.batch_max + 1, sizeof(*l->verdicts));
	l->reasons = calloc(l->cfg.batch_max + 1, sizeof(*l->reasons));
	l->ok = calloc(l->cfg.batch_max + 1, sizeof(*l->ok));
	l->bad = calloc(l->cfg.batch_max + 1, sizeof(*l->bad));
	l->whys = calloc(l->cfg.batch_max + 1, sizeof(*l->whys));
	if (l->batch == NULL || l->verdicts == NULL || l->reasons == NULL ||
	    l->ok == NULL || l->bad == NULL || l->whys == NULL) {
		loop_free(l);
		return NULL;
	}
	return l;
}

static void
batch_clear(struct loop *l)
{
	for (size_t i = 0; i < l->nbatch && l->batch != NULL; i++)
		envelope_clear(&l->batch[i].env);
	l->nbatch = 0;
}

void
loop_free(struct loop *l)
{
	if (l == NULL)
		return;
	batch_clear(l);
	free(l->batch);
	free(l->verdicts);
	free(l->reasons);
	free(l->ok);
	free(l->bad);
	free(l->whys);
	free(l->confirmed);
	free(l->resend);
	free(l);
}

bool
loop_healthy(const struct loop *l, const char **reason)
{
	if (reason != NULL)
		*reason = l->failing ? l->why : "";
	return !l->failing;
}

size_t
loop_batched(const struct loop *l)
{
	return l->nbatch;
}

const struct loop_stats *
loop_stats(const struct loop *l)
{
	return &l->stats;
}

static int
push_seq(int64_t **arr, size_t *n, size_t *cap, int64_t v)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 64;
		int64_t *na = realloc(*arr, nc * sizeof(*na));
		if (na == NULL)
			return -1;
		*arr = na;
		*cap = nc;
	}
	(*arr)[(*n)++] = v;
	return 0;
}

/* Doubles the batch's capacity: a poll may hand over more deliveries than
 * batch_max (a bundle of replies is one AMQP delivery, many for the
 * loop); the batch is committed as soon as it reaches batch_max. */
static int
batch_grow(struct loop *l)
{
	size_t cap = l->cap * 2;
	void *p;

#define GROW(field, n)                                                         \
	do {                                                                   \
		p = realloc(l->field, (n) * sizeof(*l->field));                \
		if (p == NULL)                                                 \
			return -1;                                             \
		l->field = p;                                                  \
	} while (0)
	GROW(batch, cap);
	GROW(verdicts, cap + 1);
	GROW(reasons, cap + 1);
	GROW(ok, cap + 1);
	GROW(bad, cap + 1);
	GROW(whys, cap + 1);
#undef GROW
	l->cap = cap;
	return 0;
}

void
loop_deliver(struct loop *l, const struct loop_delivery *d)
{
	struct pending *p;
	char err[256];

	if (l->nbatch == l->cap && batch_grow(l) != 0) {
		/* never drop a delivery: dead-letter is wrong too, so refuse
		 * loudly and requeue by not acking; the broker redelivers
		 * after a reconnect */
		log_error("out of memory: delivery %s left unacknowledged",
		          d->message_id != NULL ? d->message_id : "?");
		return;
	}
	if (l->nbatch == 0)
		l->batch_started_ms = l->now_ms;
	p = &l->batch[l->nbatch++];
	memset(p, 0, sizeof(*p));
	envelope_init(&p->env);
	p->ref = d->ref;
	p->source = d->source;
	snprintf(p->traceparent, sizeof(p->traceparent), "%s",
	         d->traceparent != NULL ? d->traceparent : "");
	l->stats.deliveries++;
	if (d->content_type != NULL && d->content_type[0] != '\0' &&
	    strcmp(d->content_type, "application/msgpack") != 0) {
		p->bad = true;
		snprintf(p->reason, sizeof(p->reason),
		         "content type \"%.60s\" is not application/msgpack",
		         d->content_type);
		return;
	}
	if (envelope_decode(d->body, d->len, &p->env, err, sizeof(err)) != 0) {
		p->bad = true;
		snprintf(p->reason, sizeof(p->reason), "bad envelope: %s", err);
		return;
	}
	if (d->message_id != NULL && d->message_id[0] != '\0' &&
	    strcmp(d->message_id, p->env.id) != 0) {
		p->bad = true;
		snprintf(p->reason, sizeof(p->reason),
		         "message_id property \"%.100s\" differs from "
		         "envelope id \"%.100s\"",
		         d->message_id, p->env.id);
		return;
	}
	/* the orders queue takes order.created and the customer's cancel
	 * (both bound to it, apply_batch makes the latter IN_CANCEL) */
	if (p->source == SRC_ORDERS &&
	    strcmp(p->env.type, "order.created") != 0 &&
	    strcmp(p->env.type, ORCH_CANCEL_TYPE) != 0) {
		p->bad = true;
		snprintf(p->reason, sizeof(p->reason),
		         "unexpected %.100s on the orders queue", p->env.type);
	} else if (p->source == SRC_CONTROL &&
	           strncmp(p->env.type, "operator.", 9) != 0) {
		p->bad = true;
		snprintf(p->reason, sizeof(p->reason),
		         "unexpected %.100s on the control queue", p->env.type);
	}
}

void
loop_confirmed(struct loop *l, uint64_t tag, enum loop_confirm c)
{
	switch (c) {
	case CONFIRM_ACK:
		l->stats.confirmed++;
		break;
	case CONFIRM_RETURNED:
		l->stats.returned++;
		log_error("outbox row %llu was unroutable (no queue bound); "
		          "dropped",
		          (unsigned long long)tag);
		break;
	case CONFIRM_NACK:
		l->stats.nacked++;
		if (push_seq(&l->resend, &l->nresend, &l->capresend,
		             (int64_t)tag) == 0)
			return;
		/* out of memory: it stays in the outbox and goes out again
		 * at the next start */
		log_error("outbox row %llu nacked; kept for the next start",
		          (unsigned long long)tag);
		return;
	}
	if (push_seq(&l->confirmed, &l->nconfirmed, &l->capconfirmed,
	             (int64_t)tag) != 0)
		log_error("outbox row %llu confirmed but not deleted (out of "
		          "memory): it is published again at the next start",
		          (unsigned long long)tag);
}

static enum orch_input_kind
source_kind(enum loop_source s)
{
	switch (s) {
	case SRC_ORDERS:
		return IN_ORDER_CREATED;
	case SRC_CONTROL:
		return IN_OPERATOR;
	case SRC_REPLIES:
		break;
	}
	return IN_REPLY;
}

/* Inbox ids past their retention are deleted with the next transaction
 * once LOOP_PRUNE_EVERY_MS have passed since the last time none were
 * left. */
static bool
prune_due(const struct loop *l)
{
	return l->cfg.inbox_retention_ms > 0 &&
	       l->now_ms - l->last_prune_ms >= LOOP_PRUNE_EVERY_MS;
}

static int64_t timers_from(struct loop *l);

/* The transaction: confirmed deletions, the batch, due timers, and a
 * share of the inbox pruning. */
static int
apply_batch(struct loop *l, enum orch_verdict *verdicts, char (*reasons)[300])
{
	size_t fired = 0;
	int64_t pruned = 0;

	if (store_begin(l->st) != 0)
		goto fail_store;
	for (size_t i = 0; i < l->nconfirmed; i++)
		if (store_outbox_delete(l->st, l->confirmed[i], l->now_ms) != 0)
			goto fail_store;
	for (size_t i = 0; i < l->nbatch; i++) {
		struct pending *p = &l->batch[i];
		struct orch_input in = {0};
		if (p->bad) {
			verdicts[i] = ORCH_REJECT;
			snprintf(reasons[i], sizeof(reasons[i]), "%s",
			         p->reason);
			continue;
		}
		in.kind = source_kind(p->source);
		if (in.kind == IN_ORDER_CREATED &&
		    strcmp(p->env.type, ORCH_CANCEL_TYPE) == 0)
			in.kind = IN_CANCEL;
		in.message_id = p->env.id;
		in.saga_id = p->env.saga;
		in.type = p->env.type;
		in.in_reply_to = p->env.re[0] != '\0' ? p->env.re : NULL;
		in.payload = &p->env.payload;
		in.traceparent = p->traceparent[0] ? p->traceparent : NULL;
		in.now_ms = l->now_ms;
		if (orch_apply(l->o, &in, &verdicts[i], reasons[i],
		               sizeof(reasons[i])) != 0)
			goto fail_orch;
	}
	if (timers_from(l) <= l->now_ms &&
	    orch_fire_timers(l->o, l->now_ms, l->cfg.timers_per_turn, &fired))
		goto fail_orch;
	if (prune_due(l)) {
		if (store_inbox_prune(l->st,
		                      l->now_ms - l->cfg.inbox_retention_ms,
		                      l->cfg.prune_per_turn, &pruned) != 0)
			goto fail_store;
		/* more left: go on at the next transaction, not in 10 s */
		if ((size_t)pruned < l->cfg.prune_per_turn)
			l->last_prune_ms = l->now_ms;
	}
	if (store_commit(l->st) != 0)
		goto fail_store;
	l->stats.inbox_pruned += (uint64_t)pruned;
	return 0;
fail_store:
	snprintf(l->why, sizeof(l->why), "%s", store_error(l->st));
	store_rollback(l->st);
	return -1;
fail_orch:
	snprintf(l->why, sizeof(l->why), "%s", orch_error(l->o));
	store_rollback(l->st);
	return -1;
}

static int
settle(struct loop *l, const enum orch_verdict *verdicts, char (*reasons)[300])
{
	size_t nok = 0, nbad = 0;

	for (size_t i = 0; i < l->nbatch; i++) {
		if (verdicts[i] == ORCH_REJECT) {
			log_warnx("dead-lettering message id=%s type=%s: %s",
			          l->batch[i].env.id[0] ? l->batch[i].env.id
			                                : "?",
			          l->batch[i].env.type[0] ? l->batch[i].env.type
			                                  : "?",
			          reasons[i]);
			l->bad[nbad] = l->batch[i].ref;
			l->whys[nbad++] = reasons[i];
			l->stats.dead_lettered++;
		} else {
			l->ok[nok++] = l->batch[i].ref;
		}
	}
	return l->t.settle(l->t.ctx, l->ok, nok, l->bad, l->whys, nbad);
}

struct publish_ctx {
	struct loop *l;
	size_t room;
	int rc;
};

static int
publish_row(void *arg, const struct store_outbox *m)
{
	struct publish_ctx *p = arg;
	if (p->l->t.publish(p->l->t.ctx, m, (uint64_t)m->seq) != 0) {
		p->rc = -1;
		return 1; /* stop; tried again next turn */
	}
	p->l->last_published = m->seq;
	p->l->stats.published++;
	return --p->room == 0;
}

static int
resend_row(void *arg, const struct store_outbox *m)
{
	struct publish_ctx *p = arg;
	if (p->l->t.publish(p->l->t.ctx, m, (uint64_t)m->seq) != 0)
		p->rc = -1;
	else
		p->l->stats.published++;
	return 1; /* one row */
}

static void
publish_outbox(struct loop *l)
{
	size_t inflight = l->t.unconfirmed(l->t.ctx);
	struct publish_ctx p = {l, 0, 0};

	/* NACKed rows first, each read back by seq */
	while (l->nresend > 0) {
		int64_t seq = l->resend[--l->nresend];
		if (store_outbox_scan(l->st, seq - 1, 1, resend_row, &p) != 0)
			log_error("cannot read outbox: %s", store_error(l->st));
	}
	if (inflight >= l->cfg.publish_window) {
		if (l->t.flush != NULL)
			l->t.flush(l->t.ctx);
		return;
	}
	p.room = l->cfg.publish_window - inflight;
	if (store_outbox_scan(l->st, l->last_published, p.room, publish_row,
	                      &p) != 0)
		log_error("cannot read outbox: %s", store_error(l->st));
	if (l->t.flush != NULL)
		l->t.flush(l->t.ctx);
}

/* The earliest time due timers may fire: never while the transport
 * cannot publish (INT64_MAX), then not before the grace after it can. */
static int64_t
timers_from(struct loop *l)
{
	if (l->t.ready != NULL && !l->t.ready(l->t.ctx)) {
		if (!l->down)
			log_warnx("cannot publish: due timers wait");
		l->down = true;
		return INT64_MAX;
	}
	if (l->down) {
		l->down = false;
		l->grace_until_ms = l->now_ms + l->cfg.reconnect_grace_ms;
		log_info("can publish: due timers fire in %lld ms",
		         (long long)l->cfg.reconnect_grace_ms);
	}
	return l->grace_until_ms;
}

static bool
timer_due(struct loop *l)
{
	int64_t at = 0;
	bool found = false;
	if (store_timer_next(l->st, &at, &found) != 0)
		return false;
	return found && at <= l->now_ms && timers_from(l) <= l->now_ms;
}

int
loop_flush(struct loop *l, int64_t now_ms)
{
	enum orch_verdict *verdicts = l->verdicts;
	char(*reasons)[300] = l->reasons;
	int rc = 0;

	l->now_ms = now_ms;
	if (l->failing && now_ms < l->retry_at_ms)
		return 0;
	if (apply_batch(l, verdicts, reasons) != 0) {
		l->stats.commit_failures++;
		if (!l->failing)
			log_error("cannot commit batch of %zu, nothing "
			          "acknowledged, will retry: %s",
			          l->nbatch, l->why);
		l->failing = true;
		l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : 100;
		if (l->backoff_ms > 5000)
			l->backoff_ms = 5000;
		l->retry_at_ms = now_ms + l->backoff_ms;
		goto out;
	}
	if (l->failing)
		log_info("commits work again after %llu failures",
		         (unsigned long long)l->stats.commit_failures);
	l->failing = false;
	l->backoff_ms = 0;
	l->nconfirmed = 0;
	l->last_commit_ms = now_ms;
	l->stats.batches++;
	if (l->nbatch > 0 && settle(l, verdicts, reasons) != 0)
		rc = -1;
	batch_clear(l);
	publish_outbox(l);
out:
	return rc;
}

/* Deleting confirmed outbox rows is bookkeeping: it rides along with the
 * next batch, and commits on its own only when many are waiting or the
 * loop has been quiet for a while (an fsync for deletions alone would
 * hold up the deliveries that arrive meanwhile). */
static bool
confirmed_due(const struct loop *l)
{
	return l->nconfirmed >= l->cfg.publish_window / 2 ||
	       (l->nconfirmed > 0 &&
	        l->now_ms - l->last_commit_ms >= LOOP_CONFIRMED_WAIT_MS);
}

/* How long a turn with nothing batched may poll: until the first thing
 * that can fall due without traffic -- the next timer, the deletion of
 * confirmed rows, pruning -- and at most LOOP_IDLE_MS. (It used to poll
 * batch_wait_ms, 200 empty turns a second, each with its queries.) */
static int
idle_wait(struct loop *l, int64_t now_ms)
{
	int64_t wait = LOOP_IDLE_MS, at = 0;
	bool found = false;

	if (l->nresend > 0)
		return 0;
	if (store_timer_next(l->st, &at, &found) != 0)
		found = false; /* the turn's timer_due meets the error */
	if (found && at < timers_from(l))
		at = timers_from(l);
	if (found && at - now_ms < wait)
		wait = at - now_ms;
	if (l->nconfirmed > 0 &&
	    l->last_commit_ms + LOOP_CONFIRMED_WAIT_MS - now_ms < wait)
		wait = l->last_commit_ms + LOOP_CONFIRMED_WAIT_MS - now_ms;
	if (l->cfg.inbox_retention_ms > 0 &&
	    l->last_prune_ms + LOOP_PRUNE_EVERY_MS - now_ms < wait)
		wait = l->last_prune_ms + LOOP_PRUNE_EVERY_MS - now_ms;
	return wait < 0 ? 0 : (int)wait;
}

int
loop_turn(struct loop *l, int64_t now_ms)
{
	int wait;
	bool ready, drained = false;

	l->now_ms = now_ms;
	if (l->nbatch > 0) {
		int64_t left =
		        l->batch_started_ms + l->cfg.batch_wait_ms - now_ms;
		wait = left < 0 ? 0 : (int)left;
	} else {
		wait = idle_wait(l, now_ms);
	}
	if (l->nbatch >= l->cfg.batch_max)
		wait = 0;
	if (l->failing) { /* commits fail (disk full): wait for the retry,
		           * serving the transport meanwhile, not spinning */
		int64_t left = l->retry_at_ms - now_ms;
		wait = left <= 0 ? 0 : left > 1000 ? 1000 : (int)left;
	}
	if (l->t.poll(l->t.ctx, l, wait) != 0)
		return -1;
	/* Group commit: a batch whose input is drained (a poll that does
	 * not wait finds nothing more) is committed now. Waiting out the
	 * batch window then only adds latency; under load the input is
	 * rarely drained and deliveries gather during the commit. */
	if (l->nbatch > 0 && l->nbatch < l->cfg.batch_max) {
		size_t had = l->nbatch;
		if (l->t.poll(l->t.ctx, l, 0) != 0)
			return -1;
		drained = l->nbatch == had;
	}
	l->now_ms = clock_wall_ms() > now_ms ? clock_wall_ms() : now_ms;
	ready = l->nbatch >= l->cfg.batch_max || drained ||
	        (l->nbatch > 0 &&
	         l->now_ms - l->batch_started_ms >= l->cfg.batch_wait_ms) ||
	        confirmed_due(l) || l->nresend > 0 || timer_due(l) ||
	        prune_due(l);
	if (!ready) {
		publish_outbox(l);
		return 0;
	}
	return loop_flush(l, l->now_ms);
}

int
loop_run(struct loop *l, volatile sig_atomic_t *stop,
         volatile sig_atomic_t *reload, void (*on_reload)(void *arg), void *arg,
         int drain_ms)
{
	int64_t deadline;

	/* rows left by a previous run go out first */
	l->now_ms = clock_wall_ms();
	publish_outbox(l);
	while (!*stop) {
		if (reload != NULL && *reload) {
			*reload = 0;
			if (on_reload != NULL)
				on_reload(arg);
		}
		if (loop_turn(l, clock_wall_ms()) != 0)
			return -1;
	}
	log_info("draining: %zu batched, %zu unconfirmed", l->nbatch,
	         l->t.unconfirmed(l->t.ctx));
	if (l->t.stop_consuming(l->t.ctx) != 0)
		log_warnx("cannot cancel consumers; draining anyway");
	deadline = clock_wall_ms() + drain_ms;
	while (clock_wall_ms() < deadline) {
		/* collect what is already in flight to us, commit it */
		if (l->t.poll(l->t.ctx, l, 50) != 0)
			return -1;
		l->failing = false; /* no backoff while draining */
		if (loop_flush(l, clock_wall_ms()) != 0)
			return -1;
		if (l->nbatch == 0 && l->t.unconfirmed(l->t.ctx) == 0)
			break;
	}
	/* delete what was confirmed last */
	if (l->nconfirmed > 0)
		loop_flush(l, clock_wall_ms());
	if (l->nbatch > 0 || l->t.unconfirmed(l->t.ctx) > 0) {
		log_warnx("drain timed out: %zu batched, %zu unconfirmed "
		          "(they are redelivered / republished at the next "
		          "start)",
		          l->nbatch, l->t.unconfirmed(l->t.ctx));
		return -1;
	}
	return 0;
}

/* durable.c -- the durable loop (see durable.h).
 *
 * A batch is an array of decoded deliveries. It is committed when it holds
 * batch_max deliveries, when its input is drained (group commit: a poll
 * that does not wait brings nothing more), when its oldest has waited
 * batch_wait_ms, or when a timer is due; one transaction carries the whole
 * batch, the timers due, and the deletion of outbox rows confirmed since
 * the last commit. Only after COMMIT returns are deliveries settled and
 * new outbox rows published. A failed commit keeps everything in memory
 * (deliveries stay unacknowledged at the broker, so the prefetch window
 * stops the flow: the daemon stops taking work cleanly) and is retried
 * with backoff.
 *
 * Why ack after commit and not after the reply's confirm: what a delivery
 * caused is in the outbox once COMMIT returns, and the outbox is published
 * until the broker confirms it, across crashes. Holding the delivery
 * until then would protect nothing more; it would only tie the prefetch
 * window to the broker's confirm latency.
 *
 * Publishing reads the outbox by seq, after the last row handed to the
 * transport, at most publish_window rows in flight; so rows left by a
 * crash are published at start like any other. A NACKed row is published
 * again; a RETURNED row (unroutable) is logged and deleted: nobody is
 * bound to receive it and republishing would loop forever. So is a
 * REFUSED one (the transport can never send it): the next rows go on.
 *
 * The mailbox (durable_submit) is the one thing shared with other
 * threads: a list under a mutex. The loop moves what is queued to its own
 * `taken` list when a transaction begins, so the handler runs without the
 * lock, and answers the whole list under the lock after COMMIT (or the
 * rollback). A submitter whose wait ends while its request is still
 * queued withdraws it; once taken it waits for the transaction.
 */
#include "durable.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"

#define REASON_MAX 300

struct pending {
	uint64_t ref;
	int source;
	int attempt;
	bool bundled;
	bool bad;                /* failed to decode: dead-letter */
	int64_t offset;          /* in its stream, -1 if none */
	char reason[REASON_MAX]; /* why it is dead-lettered or retried */
	enum durable_verdict verdict;
	char traceparent[ENVELOPE_TP_MAX];
	char reply_to[256];
	char user_id[256];
	struct envelope env;
};

struct seqs {
	int64_t *v;
	size_t n, cap;
};

struct durable {
	struct durable_transport t;
	struct durable_handler h;
	struct durable_config cfg;
	struct durable_stats stats;

	struct pending *batch;
	size_t nbatch, cap;       /* cap: batch_max at first, grown when a
	                           * poll hands over more (a bundle's items) */
	int64_t batch_started_ms; /* mono: when the first delivery arrived */

	struct seqs confirmed; /* outbox seqs to delete in the next commit */
	struct seqs resend;    /* NACKed seqs to publish again */
	int64_t resend_at_ms;  /* mono: not before (the last try's + wait) */
	int64_t last_commit_ms;
	int64_t last_published; /* highest outbox seq handed to publish */

	int64_t last_prune_ms;  /* mono: pruning last found nothing more */
	bool down;              /* the transport could not publish */
	int64_t grace_until_ms; /* mono: due timers wait until then */
	bool failing;
	int64_t retry_at_ms, backoff_ms; /* mono */
	char why[512];
	struct durable_time now;

	/* the mailbox (durable_submit): queued under mu; taken is the
	 * loop's own while its transaction runs */
	pthread_mutex_t mu;
	pthread_cond_t answered;
	struct durable_local *queued, *queued_tail, *taken;
	bool closed; /* durable_run returned: nothing is taken any more */
};

enum { LOCAL_QUEUED = 1, LOCAL_TAKEN, LOCAL_ANSWERED };

struct durable_time
durable_now(void)
{
	struct durable_time t = {clock_wall_ms(), clock_mono_ms()};
	return t;
}

static int
mailbox_init(struct durable *d)
{
	pthread_condattr_t ca;
	int rc;

	if (pthread_condattr_init(&ca) != 0)
		return -1;
	rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
	                     pthread_cond_init(&d->answered, &ca) == 0
	             ? 0
	             : -1;
	pthread_condattr_destroy(&ca);
	if (rc == 0 && pthread_mutex_init(&d->mu, NULL) != 0) {
		pthread_cond_destroy(&d->answered);
		rc = -1;
	}
	return rc;
}

/* Answers every request of list l (under d->mu). */
static void
mailbox_answer_list(struct durable_local *l, int rc, const char *why)
{
	while (l != NULL) {
		struct durable_local *next = l->next_;
		l->rc = rc;
		snprintf(l->why, sizeof(l->why), "%s", why);
		l->state_ = LOCAL_ANSWERED;
		l->next_ = NULL;
		l = next;
	}
}

/* Answers the requests taken by this transaction. */
static void
mailbox_answer(struct durable *d, int rc, const char *why)
{
	if (d->taken == NULL)
		return;
	pthread_mutex_lock(&d->mu);
	mailbox_answer_list(d->taken, rc, why);
	d->taken = NULL;
	pthread_cond_broadcast(&d->answered);
	pthread_mutex_unlock(&d->mu);
}

/* Answers what is queued without taking it (commits fail, the loop
 * stops); closed: nothing is queued any more. */
static void
mailbox_refuse(struct durable *d, const char *why, bool closed)
{
	pthread_mutex_lock(&d->mu);
	mailbox_answer_list(d->queued, -1, why);
	d->queued = d->queued_tail = NULL;
	d->closed = d->closed || closed;
	pthread_cond_broadcast(&d->answered);
	pthread_mutex_unlock(&d->mu);
}

/* Moves what is queued to the transaction's `taken`. */
static void
mailbox_take(struct durable *d)
{
	struct durable_local **end = &d->taken;

	while (*end != NULL)
		end = &(*end)->next_;
	pthread_mutex_lock(&d->mu);
	*end = d->queued;
	for (struct durable_local *l = d->queued; l != NULL; l = l->next_)
		l->state_ = LOCAL_TAKEN;
	d->queued = d->queued_tail = NULL;
	pthread_mutex_unlock(&d->mu);
}

static bool
mailbox_pending(struct durable *d)
{
	bool any;

	pthread_mutex_lock(&d->mu);
	any = d->queued != NULL;
	pthread_mutex_unlock(&d->mu);
	return any;
}

/* Unlinks a request still queued (under d->mu). */
static void
mailbox_withdraw(struct durable *d, struct durable_local *req)
{
	struct durable_local *prev = NULL;

	for (struct durable_local *l = d->queued; l != NULL; l = l->next_) {
		if (l != req) {
			prev = l;
			continue;
		}
		if (prev != NULL)
			prev->next_ = l->next_;
		else
			d->queued = l->next_;
		if (d->queued_tail == l)
			d->queued_tail = prev;
		return;
	}
}

static struct timespec
deadline_in(int ms)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

int
durable_submit(struct durable *d, struct durable_local *req, int timeout_ms)
{
	struct timespec until = deadline_in(timeout_ms);
	int rc = 0;

	req->rc = -1;
	req->why[0] = '\0';
	req->next_ = NULL;
	if (d->h.local == NULL) {
		snprintf(req->why, sizeof(req->why),
		         "this loop takes no local requests");
		return -1;
	}
	pthread_mutex_lock(&d->mu);
	if (d->closed) {
		pthread_mutex_unlock(&d->mu);
		snprintf(req->why, sizeof(req->why), "the loop has stopped");
		return -1;
	}
	req->state_ = LOCAL_QUEUED;
	if (d->queued_tail != NULL)
		d->queued_tail->next_ = req;
	else
		d->queued = req;
	d->queued_tail = req;
	while (req->state_ != LOCAL_ANSWERED) {
		if (req->state_ == LOCAL_TAKEN) {
			pthread_cond_wait(&d->answered, &d->mu);
			continue;
		}
		if (pthread_cond_timedwait(&d->answered, &d->mu, &until) ==
		            ETIMEDOUT &&
		    req->state_ == LOCAL_QUEUED) {
			mailbox_withdraw(d, req);
			snprintf(req->why, sizeof(req->why),
			         "the loop did not take the request within "
			         "%d ms",
			         timeout_ms);
			rc = -2;
			break;
		}
	}
	if (rc == 0)
		rc = req->rc;
	pthread_mutex_unlock(&d->mu);
	return rc;
}

struct durable *
durable_new(const struct durable_transport *t, const struct durable_handler *h,
            const struct durable_config *cfg)
{
	struct durable *d = calloc(1, sizeof(*d));

	assert(t->publish && t->settle && t->poll && t->stop_consuming &&
	       t->unconfirmed);
	assert(h->begin && h->commit && h->rollback && h->error && h->apply &&
	       h->outbox_scan && h->outbox_delete);
	if (d == NULL)
		return NULL;
	d->t = *t;
	d->h = *h;
	d->cfg = *cfg;
	d->down = true; /* the grace applies from the first connect */
	if (d->cfg.batch_max == 0)
		d->cfg.batch_max = 100;
	if (d->cfg.prune_per_turn == 0)
		d->cfg.prune_per_turn = 1000;
	if (d->cfg.timers_per_turn == 0)
		d->cfg.timers_per_turn = 500;
	if (d->cfg.publish_window == 0)
		d->cfg.publish_window = 1000;
	d->cap = d->cfg.batch_max;
	d->batch = calloc(d->cap, sizeof(*d->batch));
	if (mailbox_init(d) != 0) {
		free(d->batch);
		free(d);
		return NULL;
	}
	d->now = durable_now();
	d->last_prune_ms = d->now.mono_ms;
	if (d->batch == NULL) {
		free(d);
		return NULL;
	}
	return d;
}

static void
batch_clear(struct durable *d)
{
	for (size_t i = 0; i < d->nbatch; i++)
		envelope_clear(&d->batch[i].env);
	d->nbatch = 0;
}

void
durable_free(struct durable *d)
{
	if (d == NULL)
		return;
	batch_clear(d);
	mailbox_answer(d, -1, "the loop has stopped");
	mailbox_refuse(d, "the loop has stopped", true);
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->answered);
	free(d->batch);
	free(d->confirmed.v);
	free(d->resend.v);
	free(d);
}

bool
durable_healthy(const struct durable *d, const char **reason)
{
	if (reason != NULL)
		*reason = d->failing ? d->why : "";
	return !d->failing;
}

size_t
durable_batched(const struct durable *d)
{
	return d->nbatch;
}

const struct durable_stats *
durable_stats(const struct durable *d)
{
	return &d->stats;
}

static int
seqs_push(struct seqs *s, int64_t v)
{
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 64;
		int64_t *na = realloc(s->v, nc * sizeof(*na));
		if (na == NULL)
			return -1;
		s->v = na;
		s->cap = nc;
	}
	s->v[s->n++] = v;
	return 0;
}

/* Doubles the batch's capacity: a poll may hand over more deliveries than
 * batch_max (a bundle is one AMQP delivery, many for the loop); the batch
 * is committed as soon as it reaches batch_max. */
static int
batch_grow(struct durable *d)
{
	struct pending *p = realloc(d->batch, d->cap * 2 * sizeof(*p));
	if (p == NULL)
		return -1;
	d->batch = p;
	d->cap *= 2;
	return 0;
}

/* Why a delivery cannot be handled at all, or "" if it can. */
static void
check_delivery(struct pending *p, const struct durable_delivery *dv)
{
	char err[256];

	if (dv->content_type != NULL && dv->content_type[0] != '\0' &&
	    strcmp(dv->content_type, "application/msgpack") != 0) {
		snprintf(p->reason, sizeof(p->reason),
		         "content type \"%.60s\" is not application/msgpack",
		         dv->content_type);
	} else if (envelope_decode(dv->body, dv->len, &p->env, err,
	                           sizeof(err)) != 0) {
		snprintf(p->reason, sizeof(p->reason),
		         "bad envelope, cannot decode: %s", err);
	} else if (dv->message_id != NULL && dv->message_id[0] != '\0' &&
	           strcmp(dv->message_id, p->env.id) != 0) {
		snprintf(p->reason, sizeof(p->reason),
		         "message_id property \"%.100s\" differs from "
		         "envelope id \"%.100s\"",
		         dv->message_id, p->env.id);
	}
	p->bad = p->reason[0] != '\0';
}

void
durable_deliver(struct durable *d, const struct durable_delivery *dv)
{
	struct pending *p;

	if (d->nbatch == d->cap && batch_grow(d) != 0) {
		/* never drop a delivery: dead-lettering is wrong too, so
		 * refuse loudly and leave it unacked; the broker redelivers
		 * after a reconnect */
		log_error("out of memory: delivery %s left unacknowledged",
		          dv->message_id != NULL ? dv->message_id : "?");
		return;
	}
	if (d->nbatch == 0)
		d->batch_started_ms = d->now.mono_ms;
	p = &d->batch[d->nbatch++];
	memset(p, 0, sizeof(*p));
	envelope_init(&p->env);
	p->ref = dv->ref;
	p->source = dv->source;
	p->attempt = dv->attempt > 0 ? dv->attempt : 1;
	p->bundled = dv->bundled;
	p->offset = d->t.unsettled_floor != NULL ? dv->offset : -1;
	snprintf(p->traceparent, sizeof(p->traceparent), "%s",
	         dv->traceparent != NULL ? dv->traceparent : "");
	snprintf(p->reply_to, sizeof(p->reply_to), "%s",
	         dv->reply_to != NULL ? dv->reply_to : "");
	snprintf(p->user_id, sizeof(p->user_id), "%s",
	         dv->user_id != NULL ? dv->user_id : "");
	d->stats.deliveries++;
	check_delivery(p, dv);
}

void
durable_confirmed(struct durable *d, uint64_t tag, enum durable_confirm c)
{
	switch (c) {
	case DURABLE_ACK:
		d->stats.confirmed++;
		break;
	case DURABLE_RETURNED:
		d->stats.returned++;
		log_error("outbox row %llu was unroutable (no queue bound); "
		          "dropped",
		          (unsigned long long)tag);
		break;
	case DURABLE_REFUSED: /* the transport said why */
		d->stats.refused++;
		break;
	case DURABLE_NACK:
		d->stats.nacked++;
		if (seqs_push(&d->resend, (int64_t)tag) == 0)
			return;
		/* out of memory: it stays in the outbox and goes out again
		 * at the next start */
		log_error("outbox row %llu nacked; kept for the next start",
		          (unsigned long long)tag);
		return;
	}
	if (seqs_push(&d->confirmed, (int64_t)tag) != 0)
		log_error("outbox row %llu confirmed but not deleted (out of "
		          "memory): it is published again at the next start",
		          (unsigned long long)tag);
}

/* Dedup ids past their retention are deleted with the next transaction
 * once DURABLE_PRUNE_EVERY_MS have passed since the last time none were
 * left (or the start). */
static bool
prune_due(const struct durable *d)
{
	return d->h.prune != NULL && d->cfg.inbox_retention_ms > 0 &&
	       d->now.mono_ms - d->last_prune_ms >= DURABLE_PRUNE_EVERY_MS;
}

/* The earliest monotonic time due timers may fire: never while the
 * transport cannot publish (INT64_MAX), then not before the grace after
 * it can. */
static int64_t
timers_from(struct durable *d)
{
	if (d->t.ready != NULL && !d->t.ready(d->t.ctx)) {
		if (!d->down)
			log_warnx("cannot publish: due timers wait");
		d->down = true;
		return INT64_MAX;
	}
	if (d->down) {
		d->down = false;
		d->grace_until_ms = d->now.mono_ms + d->cfg.reconnect_grace_ms;
		if (d->h.fire != NULL)
			log_info("can publish: due timers fire in %lld ms",
			         (long long)d->cfg.reconnect_grace_ms);
	}
	return d->grace_until_ms;
}

/* The batch's deliveries, each applied or (bad) marked for the DLQ. */
static int
apply_each(struct durable *d)
{
	for (size_t i = 0; i < d->nbatch; i++) {
		struct pending *p = &d->batch[i];
		struct durable_item it = {
		        .ref = p->ref,
		        .source = p->source,
		        .attempt = p->attempt,
		        .env = &p->env,
		        .traceparent = p->traceparent,
		        .reply_to = p->reply_to,
		        .user_id = p->user_id,
		        .bundled = p->bundled,
		};
		if (p->bad) {
			p->verdict = DURABLE_REJECT;
			continue;
		}
		p->verdict = DURABLE_DONE;
		p->reason[0] = '\0';
		if (d->h.apply(d->h.ctx, &it, d->now, &p->verdict, p->reason,
		               sizeof(p->reason)) != 0)
			return -1;
	}
	return 0;
}

/* The stream position after this batch (durable.h, handler.position):
 * -1 when the batch read nothing from a stream. */
static int64_t
position_after(const struct durable *d)
{
	int64_t next = -1, floor = INT64_MAX;

	for (size_t i = 0; i < d->nbatch; i++) {
		const struct pending *p = &d->batch[i];
		if (p->offset < 0)
			continue;
		if (p->offset + 1 > next)
			next = p->offset + 1;
		if (p->verdict != DURABLE_DONE && p->offset < floor)
			floor = p->offset;
	}
	if (next < 0)
		return -1;
	if (d->t.unsettled_floor != NULL) {
		int64_t f = d->t.unsettled_floor(d->t.ctx);
		if (f < floor)
			floor = f;
	}
	return floor < next ? floor : next;
}

/* One share of the pruning; pruned is counted once committed. */
static int
prune_share(struct durable *d, int64_t *pruned)
{
	*pruned = 0;
	if (!prune_due(d))
		return 0;
	if (d->h.prune(d->h.ctx, d->now.wall_ms - d->cfg.inbox_retention_ms,
	               d->cfg.prune_per_turn, pruned) != 0)
		return -1;
	/* more left: go on at the next transaction, not in 10 s */
	if ((size_t)*pruned < d->cfg.prune_per_turn)
		d->last_prune_ms = d->now.mono_ms;
	return 0;
}

/* The transaction: confirmed deletions, the batch, due timers, and a
 * share of the pruning. */
static int
apply_batch(struct durable *d)
{
	int64_t pruned = 0;

	if (d->h.begin(d->h.ctx) != 0)
		goto fail;
	for (size_t i = 0; i < d->confirmed.n; i++)
		if (d->h.outbox_delete(d->h.ctx, d->confirmed.v[i],
		                       d->now.wall_ms) != 0)
			goto fail;
	if (apply_each(d) != 0)
		goto fail;
	for (struct durable_local *l = d->taken; l != NULL; l = l->next_)
		if (d->h.local(d->h.ctx, l->data, d->now) != 0)
			goto fail;
	if (d->h.fire != NULL && timers_from(d) <= d->now.mono_ms &&
	    d->h.fire(d->h.ctx, d->now, d->cfg.timers_per_turn) != 0)
		goto fail;
	if (d->h.position != NULL && position_after(d) >= 0 &&
	    d->h.position(d->h.ctx, position_after(d)) != 0)
		goto fail;
	if (prune_share(d, &pruned) != 0 || d->h.commit(d->h.ctx) != 0)
		goto fail;
	d->stats.inbox_pruned += (uint64_t)pruned;
	return 0;
fail:
	snprintf(d->why, sizeof(d->why), "%s", d->h.error(d->h.ctx));
	d->h.rollback(d->h.ctx);
	return -1;
}

/* After the commit: dead letters, then retries, then acks. */
static int
settle(struct durable *d)
{
	static const enum durable_verdict order[] = {
	        DURABLE_REJECT, DURABLE_RETRY, DURABLE_DONE};
	int rc = 0;

	for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++)
		for (size_t i = 0; i < d->nbatch; i++) {
			struct pending *p = &d->batch[i];
			if (p->verdict != order[k])
				continue;
			/* what is logged about it carries its trace */
			log_set_trace(p->traceparent);
			if (p->verdict == DURABLE_REJECT) {
				log_warnx("dead-lettering message id=%s "
				          "type=%s: %s",
				          p->env.id[0] ? p->env.id : "?",
				          p->env.type[0] ? p->env.type : "?",
				          p->reason);
				d->stats.dead_lettered++;
				d->stats.undecodable += p->bad;
			} else if (p->verdict == DURABLE_RETRY) {
				d->stats.retried++;
			}
			if (d->t.settle(d->t.ctx, p->ref, p->verdict,
			                p->reason) != 0)
				rc = -1;
			log_set_trace(NULL);
		}
	return rc;
}

struct publish_ctx {
	struct durable *d;
	size_t room;
};

static int
publish_row(void *arg, const struct durable_msg *m)
{
	struct publish_ctx *p = arg;
	if (p->d->t.publish(p->d->t.ctx, m, (uint64_t)m->seq) != 0)
		return 1; /* stop; tried again next turn */
	p->d->last_published = m->seq;
	p->d->stats.published++;
	return --p->room == 0;
}

/* One NACKed row read back: the row it is after, and what became of it. */
struct resend_ctx {
	struct durable *d;
	int64_t want;
	bool found, sent;
};

static int
resend_row(void *arg, const struct durable_msg *m)
{
	struct resend_ctx *p = arg;

	p->found = m->seq == p->want;
	if (!p->found)
		return 1; /* deleted meanwhile: nothing to send */
	p->sent = p->d->t.publish(p->d->t.ctx, m, (uint64_t)m->seq) == 0;
	if (p->sent)
		p->d->stats.published++;
	return 1; /* one row */
}

static bool
resend_due(const struct durable *d)
{
	return d->resend.n > 0 && d->now.mono_ms >= d->resend_at_ms;
}

/* The NACKed rows, each read back by seq and published again. A row
 * NACKed for the first time goes out at the next turn; one the
 * transport still cannot send (out of memory), or NACKed again, waits
 * DURABLE_RESEND_WAIT_MS after the last try, so that a shortage that
 * lasts does not spin the loop. (One whose read fails is left to the
 * next start, where every row goes out: a database that cannot be read
 * would make each try fail again.) */
static void
resend_rows(struct durable *d)
{
	struct seqs todo = d->resend;

	if (!resend_due(d))
		return;
	d->resend = (struct seqs){0};
	for (size_t i = 0; i < todo.n; i++) {
		struct resend_ctx r = {.d = d, .want = todo.v[i]};
		if (d->h.outbox_scan(d->h.ctx, r.want - 1, 1, resend_row, &r) !=
		    0)
			log_error("cannot read outbox: %s; row %lld goes out "
			          "at the next start",
			          d->h.error(d->h.ctx), (long long)r.want);
		if (r.found && !r.sent && seqs_push(&d->resend, r.want) != 0)
			log_error("outbox row %lld not sent; kept for the next "
			          "start (out of memory)",
			          (long long)r.want);
	}
	d->resend_at_ms = d->now.mono_ms + DURABLE_RESEND_WAIT_MS;
	free(todo.v);
}

void
durable_publish(struct durable *d)
{
	size_t inflight = d->t.unconfirmed(d->t.ctx);
	struct publish_ctx p = {.d = d};

	resend_rows(d); /* NACKed rows first */
	if (inflight < d->cfg.publish_window) {
		p.room = d->cfg.publish_window - inflight;
		if (d->h.outbox_scan(d->h.ctx, d->last_published, p.room,
		                     publish_row, &p) != 0)
			log_error("cannot read outbox: %s",
			          d->h.error(d->h.ctx));
	}
	if (d->t.flush != NULL)
		d->t.flush(d->t.ctx);
}

/* The next timer's due time (wall), *found false if none or unknown. */
static int64_t
timer_next(struct durable *d, bool *found)
{
	int64_t at = 0;

	*found = false;
	if (d->h.timer_next != NULL &&
	    d->h.timer_next(d->h.ctx, &at, found) != 0)
		*found = false; /* the transaction meets the error */
	return at;
}

static bool
timer_due(struct durable *d)
{
	bool found;
	int64_t at = timer_next(d, &found);
	return found && at <= d->now.wall_ms &&
	       timers_from(d) <= d->now.mono_ms;
}

static void
commit_failed(struct durable *d)
{
	d->stats.commit_failures++;
	if (!d->failing)
		log_error("cannot commit batch of %zu, nothing acknowledged, "
		          "will retry: %s",
		          d->nbatch, d->why);
	d->failing = true;
	d->backoff_ms = d->backoff_ms ? d->backoff_ms * 2 : 100;
	if (d->backoff_ms > DURABLE_BACKOFF_MAX_MS)
		d->backoff_ms = DURABLE_BACKOFF_MAX_MS;
	d->retry_at_ms = d->now.mono_ms + d->backoff_ms;
}

int
durable_flush(struct durable *d, struct durable_time now)
{
	int rc = 0;

	d->now = now;
	if (d->failing && now.mono_ms < d->retry_at_ms)
		return 0;
	mailbox_take(d);
	if (apply_batch(d) != 0) {
		commit_failed(d);
		mailbox_answer(d, -1, d->why);
		return 0;
	}
	mailbox_answer(d, 0, "");
	if (d->failing)
		log_info("commits work again after %llu failures",
		         (unsigned long long)d->stats.commit_failures);
	d->failing = false;
	d->backoff_ms = 0;
	d->confirmed.n = 0;
	d->last_commit_ms = now.mono_ms;
	d->stats.batches++;
	if (d->nbatch > 0 && settle(d) != 0)
		rc = -1;
	batch_clear(d);
	durable_publish(d);
	if (d->h.after != NULL)
		d->h.after(d->h.ctx);
	return rc;
}

/* Deleting confirmed outbox rows is bookkeeping: it rides along with the
 * next batch, and commits on its own only when many are waiting or the
 * loop has been quiet for a while (an fsync for deletions alone would
 * hold up the deliveries that arrive meanwhile). */
static bool
confirmed_due(const struct durable *d)
{
	return d->confirmed.n >= d->cfg.publish_window / 2 ||
	       (d->confirmed.n > 0 && d->now.mono_ms - d->last_commit_ms >=
	                                      DURABLE_CONFIRMED_WAIT_MS);
}

static int64_t
min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* How long a turn with nothing batched may poll: until the first thing
 * that can fall due without traffic -- the next timer (not before the
 * grace), the deletion of confirmed rows, pruning -- and at most
 * DURABLE_IDLE_MS. */
static int
idle_wait(struct durable *d)
{
	int64_t wait = DURABLE_IDLE_MS, mono = d->now.mono_ms, at, from;
	bool found;

	if (d->resend.n > 0)
		wait = min64(wait, d->resend_at_ms - mono);
	at = timer_next(d, &found);
	from = timers_from(d);
	if (found && from != INT64_MAX) {
		int64_t t = at - d->now.wall_ms;
		if (from - mono > t)
			t = from - mono;
		wait = min64(wait, t);
	}
	if (d->confirmed.n > 0)
		wait = min64(wait, d->last_commit_ms +
		                           DURABLE_CONFIRMED_WAIT_MS - mono);
	if (d->h.prune != NULL && d->cfg.inbox_retention_ms > 0)
		wait = min64(wait,
		             d->last_prune_ms + DURABLE_PRUNE_EVERY_MS - mono);
	return wait < 0 ? 0 : (int)wait;
}

/* How long this turn's poll may wait. */
static int
turn_wait(struct durable *d)
{
	int64_t left;

	if (d->failing) { /* commits fail (disk full): wait for the retry,
		           * serving the transport meanwhile, not spinning */
		left = d->retry_at_ms - d->now.mono_ms;
		return left <= 0 ? 0 : left > 1000 ? 1000 : (int)left;
	}
	if (d->nbatch >= d->cfg.batch_max || mailbox_pending(d))
		return 0;
	if (d->nbatch == 0)
		return idle_wait(d);
	left = d->batch_started_ms + d->cfg.batch_wait_ms - d->now.mono_ms;
	return left < 0 ? 0 : (int)left;
}

int
durable_turn(struct durable *d, struct durable_time now)
{
	struct durable_time real;
	bool ready, drained = false;

	d->now = now;
	if (d->failing) /* not until commits work again */
		mailbox_refuse(d, d->why, false);
	if (d->t.poll(d->t.ctx, d, turn_wait(d)) != 0)
		return -1;
	/* Group commit: a batch whose input is drained (a poll that does
	 * not wait finds nothing more) is committed now. Waiting out the
	 * batch window then only adds latency; under load the input is
	 * rarely drained and deliveries gather during the commit. */
	if (d->nbatch > 0 && d->nbatch < d->cfg.batch_max && !d->cfg.linger) {
		size_t had = d->nbatch;
		if (d->t.poll(d->t.ctx, d, 0) != 0)
			return -1;
		drained = d->nbatch == had;
	}
	real = durable_now();
	d->now.wall_ms =
	        real.wall_ms > now.wall_ms ? real.wall_ms : now.wall_ms;
	d->now.mono_ms =
	        real.mono_ms > now.mono_ms ? real.mono_ms : now.mono_ms;
	ready = d->nbatch >= d->cfg.batch_max || drained ||
	        (d->nbatch > 0 && d->now.mono_ms - d->batch_started_ms >=
	                                  d->cfg.batch_wait_ms) ||
	        confirmed_due(d) || resend_due(d) || timer_due(d) ||
	        prune_due(d) || mailbox_pending(d);
	if (!ready) {
		durable_publish(d);
		return 0;
	}
	return durable_flush(d, d->now);
}

/* After *stop: stop consuming, commit what is in flight to us, publish,
 * wait for the confirms until the monotonic deadline. */
static int
drain(struct durable *d, int drain_ms)
{
	int64_t deadline;

	log_info("draining: %zu batched, %zu unconfirmed", d->nbatch,
	         d->t.unconfirmed(d->t.ctx));
	if (d->t.stop_consuming(d->t.ctx) != 0)
		log_warnx("cannot cancel consumers; draining anyway");
	deadline = clock_mono_ms() + drain_ms;
	while (clock_mono_ms() < deadline) {
		if (d->t.poll(d->t.ctx, d, 50) != 0)
			return -1;
		d->failing = false; /* no backoff while draining */
		if (durable_flush(d, durable_now()) != 0)
			return -1;
		if (d->nbatch == 0 && d->t.unconfirmed(d->t.ctx) == 0)
			break;
	}
	/* delete what was confirmed last */
	if (d->confirmed.n > 0)
		durable_flush(d, durable_now());
	if (d->nbatch > 0 || d->t.unconfirmed(d->t.ctx) > 0) {
		log_warnx("drain timed out: %zu batched, %zu unconfirmed "
		          "(they are redelivered / republished at the next "
		          "start)",
		          d->nbatch, d->t.unconfirmed(d->t.ctx));
		return -1;
	}
	return 0;
}

int
durable_run(struct durable *d, const volatile sig_atomic_t *stop,
            volatile sig_atomic_t *reload, void (*on_reload)(void *arg),
            void *arg, int drain_ms)
{
	int rc;

	/* rows left by a previous run go out first */
	d->now = durable_now();
	durable_publish(d);
	while (!*stop) {
		if (reload != NULL && *reload) {
			*reload = 0;
			if (on_reload != NULL)
				on_reload(arg);
		}
		if (durable_turn(d, durable_now()) != 0) {
			mailbox_refuse(d, "the loop has stopped", true);
			return -1;
		}
	}
	rc = drain(d, drain_ms);
	mailbox_refuse(d, "the orchestrator is stopping", true);
	return rc;
}

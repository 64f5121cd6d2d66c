/* dlq_act.c -- dlq_group_act (dlq_group.h): read a whole dead-letter
 * queue over AMQP without acking, then act on one group and give the
 * rest back.
 *
 * Why consume and not basic.get: a get of a message the caller then
 * leaves would have to be requeued at once, and the next get would find
 * the same message again. Consuming with a prefetch as large as the queue
 * holds every message unacked on this connection at the same time; what
 * is not acked goes back, in order, when the connection closes.
 *
 * The bodies of the group's messages are copied while they arrive (the
 * bus lends a delivery only for its callback); the count is checked once
 * the whole queue (its depth when we started) has arrived, and only then
 * is anything published or acked.
 */
#include "dlq_group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "clock.h"

#define ARRIVE_MS  15000 /* every message of the queue delivered by then */
#define CONFIRM_MS 30000

/* A group message, copied for its replay. */
struct held {
	uint64_t ref;
	size_t msg; /* its record: r->msgs[msg] */
	char reply_to[256], traceparent[128], content_type[128];
	void *body;
	size_t len;
};

struct run {
	const struct dlq_act *a;
	struct dlq_act_result *r;
	struct bus *bus;
	long want;
	struct held *held;
	size_t nheld;
	long confirmed;
	bool oom, returned;
};

static bool
in_group(const struct run *run, const struct dlq_msg *m)
{
	return run->a->action != DLQ_SHOW && strcmp(m->key, run->a->key) == 0;
}

static void
on_delivery(void *arg, const struct bus_delivery *d)
{
	struct run *run = arg;
	struct dlq_msg *m;
	struct held *h;

	if ((long)run->r->n >= run->want)
		return; /* came after the count: given back at close */
	m = &run->r->msgs[run->r->n++];
	dlq_msg_from_delivery(m, d);
	if (!in_group(run, m))
		return;
	h = &run->held[run->nheld];
	h->ref = d->ref;
	h->msg = run->r->n - 1;
	snprintf(h->reply_to, sizeof(h->reply_to), "%s", d->reply_to);
	snprintf(h->traceparent, sizeof(h->traceparent), "%s", d->traceparent);
	snprintf(h->content_type, sizeof(h->content_type), "%s",
	         d->content_type);
	h->len = d->len;
	h->body = malloc(d->len + 1);
	if (h->body == NULL) {
		run->oom = true;
		return;
	}
	memcpy(h->body, d->body, d->len);
	run->nheld++;
}

static void
on_confirm(void *arg, uint64_t tag, enum bus_confirm c)
{
	struct run *run = arg;

	if (c == BUS_RETURNED) {
		run->returned = true; /* the original stays in the DLQ */
		return;
	}
	bus_ack(run->bus, tag, false); /* the copy is safe */
	run->confirmed++;
}

/* The number of messages in the queue, on a connection of its own. */
static long
depth(const struct dlq_act *a, char *err, size_t errlen)
{
	struct bus_config c = {.url = a->amqp,
	                       .name = "sagactl",
	                       .ca_file = a->ca_file,
	                       .cert_file = a->cert_file,
	                       .key_file = a->key_file};
	struct bus *b = bus_open(&c, err, errlen);
	uint32_t m = 0, cons = 0;
	long n = -1;

	if (b != NULL && bus_connect(b, err, errlen) == 0) {
		if (bus_queue_info(b, a->queue, &m, &cons) == 0)
			n = (long)m;
		else
			snprintf(err, errlen, "no queue %s", a->queue);
	}
	bus_close(b);
	return n;
}

static int
open_consumer(struct run *run, char *err, size_t errlen)
{
	const char *consume[1] = {run->a->queue};
	struct bus_config c = {.url = run->a->amqp,
	                       .name = "sagactl",
	                       .ca_file = run->a->ca_file,
	                       .cert_file = run->a->cert_file,
	                       .key_file = run->a->key_file,
	                       .prefetch = (uint16_t)run->want,
	                       .max_body = 128u * 1024 * 1024,
	                       .consume = consume,
	                       .nconsume = 1};

	run->bus = bus_open(&c, err, errlen);
	if (run->bus == NULL || bus_connect(run->bus, err, errlen) != 0)
		return -1;
	return 0;
}

void
dlq_replay_message(struct bus_message *bm, const struct dlq_msg *m,
                   const char *target, const struct bus_delivery *d)
{
	memset(bm, 0, sizeof(*bm));
	bm->exchange = "";
	bm->routing_key = target;
	bm->message_id = m->id[0] ? m->id : "replayed";
	bm->correlation_id = m->saga[0] ? m->saga : NULL;
	bm->type = m->type[0] ? m->type : NULL;
	bm->reply_to = d->reply_to[0] ? d->reply_to : NULL;
	bm->traceparent = d->traceparent[0] ? d->traceparent : NULL;
	bm->content_type = d->content_type[0] ? d->content_type : NULL;
	bm->timestamp_ms = clock_wall_ms();
	bm->mandatory = true;
	bm->body = d->body;
	bm->len = d->len;
}

/* Publishes a copy of the group's message i to where it failed. */
static int
replay_one(struct run *run, size_t i, char *err, size_t errlen)
{
	const struct held *h = &run->held[i];
	const struct dlq_msg *m = &run->r->msgs[h->msg];
	const struct bus_delivery d = {.reply_to = h->reply_to,
	                               .traceparent = h->traceparent,
	                               .content_type = h->content_type,
	                               .body = h->body,
	                               .len = h->len};
	struct bus_message bm;
	char target[256];

	if (!dlq_origin(m, run->a->queue, run->a->to, target, sizeof(target)))
		return -1; /* checked before: cannot happen */
	dlq_replay_message(&bm, m, target, &d);
	if (bus_publish(run->bus, &bm, h->ref) != 0) {
		snprintf(err, errlen, "message %s cannot be published again",
		         bm.message_id);
		return -1;
	}
	return 0;
}

/* The action itself, on a group that holds the count expected. */
static int
act(struct run *run, char *err, size_t errlen)
{
	struct bus_handlers h = {on_delivery, on_confirm, run};
	int64_t deadline = clock_mono_ms() + CONFIRM_MS;

	if (run->a->action == DLQ_DISCARD) {
		for (size_t i = 0; i < run->nheld; i++)
			bus_ack(run->bus, run->held[i].ref, false);
		run->r->done = (long)run->nheld;
		bus_flush(run->bus, 1000, &h); /* sends the acks */
		return 0;
	}
	for (size_t i = 0; i < run->nheld; i++) { /* all or none */
		const struct dlq_msg *m = &run->r->msgs[run->held[i].msg];
		char target[256];
		if (!dlq_origin(m, run->a->queue, run->a->to, target,
		                sizeof(target))) {
			snprintf(err, errlen,
			         "%s: cannot tell where message %s came from; "
			         "give --to QUEUE: nothing done",
			         run->a->queue, m->id);
			return -1;
		}
	}
	for (size_t i = 0; i < run->nheld; i++)
		if (replay_one(run, i, err, errlen) != 0)
			break; /* what was published is still confirmed */
	while (run->confirmed < (long)run->nheld && !run->returned &&
	       clock_mono_ms() < deadline)
		bus_poll(run->bus, 100, &h);
	bus_flush(run->bus, 5000, &h);
	run->r->done = run->confirmed;
	if (run->returned) {
		snprintf(err, errlen,
		         "a replayed message was unroutable (does its queue "
		         "exist?): it stays in %s",
		         run->a->queue);
		return -1;
	}
	if (run->confirmed < (long)run->nheld) {
		snprintf(err, errlen,
		         "the broker confirmed %ld of %zu copies: the others "
		         "stay in %s",
		         run->confirmed, run->nheld, run->a->queue);
		return -1;
	}
	return 0;
}

/* Reads every message; then checks the count and acts. */
static int
run_it(struct run *run, char *err, size_t errlen)
{
	struct bus_handlers h = {on_delivery, on_confirm, run};
	int64_t deadline = clock_mono_ms() + ARRIVE_MS;

	if (open_consumer(run, err, errlen) != 0)
		return -1;
	while ((long)run->r->n < run->want && clock_mono_ms() < deadline)
		bus_poll(run->bus, 100, &h);
	if (run->oom) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if ((long)run->r->n < run->want) {
		snprintf(err, errlen,
		         "%s: %zu of its %ld messages arrived (does another "
		         "consumer hold the rest?): nothing done",
		         run->a->queue, run->r->n, run->want);
		return -1;
	}
	run->r->group = (long)run->nheld;
	if (run->a->action == DLQ_SHOW)
		return 0;
	if (run->r->group != run->a->expect) {
		snprintf(err, errlen,
		         "group %s of %s holds %ld messages, not %ld: the "
		         "count changed, nothing done",
		         run->a->key, run->a->queue, run->r->group,
		         run->a->expect);
		run->r->refused = true;
		return 1;
	}
	return act(run, err, errlen);
}

int
dlq_group_act(const struct dlq_act *a, struct dlq_act_result *r, char *err,
              size_t errlen)
{
	struct run run = {.a = a, .r = r};
	int rc;

	memset(r, 0, sizeof(*r));
	if (a->action != DLQ_SHOW && (a->key == NULL || a->expect < 0)) {
		snprintf(err, errlen, "an action needs a group and a count");
		return -1;
	}
	run.want = depth(a, err, errlen);
	if (run.want < 0)
		return -1;
	if (run.want > DLQ_ACT_MAX) {
		snprintf(err, errlen,
		         "%s holds %ld messages, more than the %d one action "
		         "can hold at once",
		         a->queue, run.want, DLQ_ACT_MAX);
		return -1;
	}
	r->msgs = calloc((size_t)run.want + 1, sizeof(*r->msgs));
	run.held = calloc((size_t)run.want + 1, sizeof(*run.held));
	if (r->msgs == NULL || run.held == NULL) {
		free(run.held);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rc = run.want > 0 ? run_it(&run, err, errlen) : 0;
	if (rc == 0 && run.want == 0 && a->action != DLQ_SHOW &&
	    a->expect != 0) {
		snprintf(err, errlen,
		         "%s is empty, not %ld in group %s: the count changed, "
		         "nothing done",
		         a->queue, a->expect, a->key);
		r->refused = true;
		rc = 1;
	}
	bus_close(run.bus); /* what was not acked goes back, in order */
	for (size_t i = 0; i < run.nheld; i++)
		free(run.held[i].body);
	free(run.held);
	return rc;
}

void
dlq_act_result_clear(struct dlq_act_result *r)
{
	free(r->msgs);
	memset(r, 0, sizeof(*r));
}

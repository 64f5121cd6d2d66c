/* request.c -- see request.h. */
#include "request.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

struct call {
	struct bus *bus;
	const char *id; /* the request's message id */
	struct envelope *answer;
	bool answered, returned, confirmed;
	char bad[256]; /* an answer that did not decode */
};

static void
on_delivery(void *arg, const struct bus_delivery *d)
{
	struct call *c = arg;
	struct envelope e;
	char err[200];

	bus_ack(c->bus, d->ref, false);
	if (c->answered)
		return;
	if (envelope_decode(d->body, d->len, &e, err, sizeof(err)) != 0) {
		snprintf(c->bad, sizeof(c->bad),
		         "an answer that cannot be "
		         "decoded: %s",
		         err);
		envelope_clear(&e);
		return;
	}
	if (strcmp(e.re, c->id) != 0) { /* an answer to an earlier call */
		envelope_clear(&e);
		return;
	}
	*c->answer = e;
	c->answered = true;
}

static void
on_confirm(void *arg, uint64_t tag, enum bus_confirm st)
{
	struct call *c = arg;

	(void)tag;
	if (st == BUS_RETURNED)
		c->returned = true;
	else if (st == BUS_ACK)
		c->confirmed = true;
}

static int
publish(struct bus *b, const struct request *r, const struct envelope *req,
        const char *queue)
{
	struct envelope e = *req;
	struct bus_message m = {0};
	char *body = NULL;
	size_t len;
	int rc;

	e.ts = clock_wall_ms();
	if (envelope_encode(&e, &body, &len) != 0)
		return -1;
	m.exchange = r->exchange;
	m.routing_key = r->routing_key;
	m.message_id = req->id;
	m.correlation_id = req->saga;
	m.type = req->type;
	m.reply_to = queue;
	m.mandatory = true;
	m.body = body;
	m.len = len;
	rc = bus_publish(b, &m, 1);
	free(body);
	return rc;
}

/* Polls until the answer, a return, or the deadline. */
static int
wait_answer(struct call *c, const struct request *r, char *err, size_t errlen)
{
	const struct bus_handlers h = {on_delivery, on_confirm, c};
	int64_t until =
	        clock_mono_ms() +
	        (r->timeout_ms > 0 ? r->timeout_ms : REQUEST_TIMEOUT_MS);

	while (!c->answered && !c->returned && clock_mono_ms() < until)
		bus_poll(c->bus, 100, &h);
	if (c->answered)
		return 0;
	if (c->returned)
		snprintf(err, errlen, "nobody takes %s: is %s running?",
		         r->routing_key, r->server);
	else if (c->bad[0] != '\0')
		snprintf(err, errlen, "%s", c->bad);
	else if (!c->confirmed)
		snprintf(err, errlen, "the broker did not confirm the request");
	else
		snprintf(err, errlen,
		         "no answer from %s within %d s: the request stays "
		         "queued and is carried out once %s takes it",
		         r->server,
		         (r->timeout_ms > 0 ? r->timeout_ms
		                            : REQUEST_TIMEOUT_MS) /
		                 1000,
		         r->server);
	return -1;
}

int
request_call(const struct bus_config *bc, const struct request *r,
             const struct envelope *req, struct envelope *answer, char *err,
             size_t errlen)
{
	char queue[96], rnd[64];
	const char *consume[1] = {queue};
	/* saga.replies is the daemons' to declare (a client may not have
	 * configure permission on it): bound to, not declared */
	struct bus_queue q = {.name = queue, .exclusive = true};
	struct bus_binding bd = {REQUEST_EXCHANGE, queue, NULL, queue};
	struct bus_topology topo = {NULL, 0, &q, 1, &bd, 1};
	struct bus_config cfg = *bc;
	struct call c = {.id = req->id, .answer = answer};
	int rc = -1;

	envelope_init(answer);
	if (envelope_new_id(rnd, sizeof(rnd), "a") != 0) {
		snprintf(err, errlen, "no randomness for a queue name");
		return -1;
	}
	snprintf(queue, sizeof(queue), "%s.answers.%s",
	         bc->name != NULL ? bc->name : "client", rnd + 2);
	cfg.topology = &topo;
	cfg.consume = consume;
	cfg.nconsume = 1;
	c.bus = bus_open(&cfg, err, errlen);
	if (c.bus == NULL)
		return -1;
	if (bus_connect(c.bus, err, errlen) != 0)
		goto out;
	if (publish(c.bus, r, req, queue) != 0) {
		snprintf(err, errlen, "cannot encode the request %s",
		         req->type);
		goto out;
	}
	rc = wait_answer(&c, r, err, errlen);
out:
	if (rc != 0)
		envelope_clear(answer);
	bus_close(c.bus);
	return rc;
}

/* request.c -- see request.h.
 *
 * A session keeps one slot per request sent, in order, and an index of
 * the slots by request id (open addressing over FNV-1a) so that a bulk
 * action's thousands of answers are matched in constant time each. The
 * confirm tag of a request is its slot's index + 1. */
#include "request.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "hash.h"

struct slot {
	char id[ENVELOPE_ID_MAX];
	char routing_key[256], server[64];
	bool answered, returned, confirmed;
	struct envelope answer;
};

struct request_session {
	struct bus *bus;
	char queue[96];    /* the answers queue: reply_to of every request */
	char user_id[128]; /* the connection's user */
	struct slot *slots;
	size_t n, cap;
	size_t *index; /* slot + 1 by id hash; 0 empty; nindex a power of 2 */
	size_t nindex;
	size_t nanswered;
	char bad[256]; /* an answer that did not decode */
};

static size_t *
index_at(struct request_session *s, const char *id)
{
	size_t mask = s->nindex - 1;
	size_t i = (size_t)hash_fnv1a_str(HASH_FNV_INIT, id) & mask;

	while (s->index[i] != 0 && strcmp(s->slots[s->index[i] - 1].id, id))
		i = (i + 1) & mask;
	return &s->index[i];
}

/* Room for one more slot, the index at most half full. 0, or -1. */
static int
grow(struct request_session *s)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct slot *ns = realloc(s->slots, cap * sizeof(*ns));
		if (ns == NULL)
			return -1;
		s->slots = ns;
		s->cap = cap;
	}
	if ((s->n + 1) * 2 > s->nindex) {
		size_t n = s->nindex ? s->nindex * 2 : 64;
		size_t *ni = calloc(n, sizeof(*ni));
		if (ni == NULL)
			return -1;
		free(s->index);
		s->index = ni;
		s->nindex = n;
		for (size_t i = 0; i < s->n; i++)
			*index_at(s, s->slots[i].id) = i + 1;
	}
	return 0;
}

static void
on_delivery(void *arg, const struct bus_delivery *d)
{
	struct request_session *s = arg;
	struct envelope e;
	char err[200];
	size_t k;

	bus_ack(s->bus, d->ref, false);
	if (envelope_decode(d->body, d->len, &e, err, sizeof(err)) != 0) {
		snprintf(s->bad, sizeof(s->bad),
		         "an answer that cannot be decoded: %s", err);
		envelope_clear(&e);
		return;
	}
	k = *index_at(s, e.re);
	if (k == 0 || s->slots[k - 1].answered) { /* not ours, or again */
		envelope_clear(&e);
		return;
	}
	s->slots[k - 1].answer = e;
	s->slots[k - 1].answered = true;
	s->nanswered++;
}

static void
on_confirm(void *arg, uint64_t tag, enum bus_confirm st)
{
	struct request_session *s = arg;

	if (tag == 0 || tag > s->n)
		return;
	if (st == BUS_RETURNED)
		s->slots[tag - 1].returned = true;
	else if (st == BUS_ACK)
		s->slots[tag - 1].confirmed = true;
}

struct request_session *
request_open(const struct bus_config *bc, char *err, size_t errlen)
{
	struct request_session *s = calloc(1, sizeof(*s));
	const char *consume[1];
	/* saga.replies is the daemons' to declare (a client may not have
	 * configure permission on it): bound to, not declared */
	struct bus_queue q = {.exclusive = true};
	struct bus_binding bd = {REQUEST_EXCHANGE, NULL, NULL, NULL};
	struct bus_topology topo = {NULL, 0, &q, 1, &bd, 1};
	struct bus_config cfg = *bc;
	struct bus_url u;
	char rnd[64], first[1024];

	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (envelope_new_id(rnd, sizeof(rnd), "a") != 0) {
		snprintf(err, errlen, "no randomness for a queue name");
		goto fail;
	}
	snprintf(s->queue, sizeof(s->queue), "%s.answers.%s",
	         bc->name != NULL ? bc->name : "client", rnd + 2);
	/* the user of the first URL: all of them name the same user */
	snprintf(first, sizeof(first), "%s", bc->url != NULL ? bc->url : "");
	first[strcspn(first, ",")] = '\0';
	if (bus_url_parse(first, &u, err, errlen) != 0)
		goto fail;
	snprintf(s->user_id, sizeof(s->user_id), "%s", u.user);
	q.name = bd.queue = bd.key = consume[0] = s->queue;
	cfg.topology = &topo;
	cfg.consume = consume;
	cfg.nconsume = 1;
	s->bus = bus_open(&cfg, err, errlen);
	if (s->bus == NULL || bus_connect(s->bus, err, errlen) != 0)
		goto fail;
	return s;
fail:
	request_close(s);
	return NULL;
}

long
request_send(struct request_session *s, const struct request *r,
             const struct envelope *req, char *err, size_t errlen)
{
	struct envelope e = *req;
	struct bus_message m = {0};
	struct slot *sl;
	char *body = NULL;
	size_t len;
	int rc;

	if (grow(s) != 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (*index_at(s, req->id) != 0) {
		snprintf(err, errlen, "request id %.100s used twice", req->id);
		return -1;
	}
	e.ts = clock_wall_ms();
	if (envelope_encode(&e, &body, &len) != 0) {
		snprintf(err, errlen, "cannot encode the request %s",
		         req->type);
		return -1;
	}
	m.exchange = r->exchange;
	m.routing_key = r->routing_key;
	m.message_id = req->id;
	m.correlation_id = req->saga;
	m.type = req->type;
	m.reply_to = s->queue;
	m.user_id = s->user_id;
	m.mandatory = true;
	m.body = body;
	m.len = len;
	rc = bus_publish(s->bus, &m, (uint64_t)s->n + 1);
	free(body);
	if (rc != 0) {
		snprintf(err, errlen, "the request %s is invalid", req->type);
		return -1;
	}
	sl = &s->slots[s->n];
	memset(sl, 0, sizeof(*sl));
	envelope_init(&sl->answer);
	snprintf(sl->id, sizeof(sl->id), "%s", req->id);
	snprintf(sl->routing_key, sizeof(sl->routing_key), "%s",
	         r->routing_key);
	snprintf(sl->server, sizeof(sl->server), "%s",
	         r->server != NULL ? r->server : "the daemon");
	*index_at(s, sl->id) = s->n + 1;
	if (++s->n % 200 == 0) { /* read the confirms and answers so far */
		const struct bus_handlers h = {on_delivery, on_confirm, s};
		bus_poll(s->bus, 0, &h);
	}
	return (long)(s->n - 1);
}

/* Why a slot has no answer, into buf. */
static void
no_answer(const struct request_session *s, const struct slot *sl,
          int timeout_ms, char *buf, size_t cap)
{
	if (sl->returned)
		snprintf(buf, cap, "nobody takes %s: is %s running?",
		         sl->routing_key, sl->server);
	else if (s->bad[0] != '\0')
		snprintf(buf, cap, "%s", s->bad);
	else if (!sl->confirmed)
		snprintf(buf, cap, "the broker did not confirm the request");
	else
		snprintf(buf, cap,
		         "no answer from %s within %d s: the request stays "
		         "queued and is carried out once %s takes it",
		         sl->server, timeout_ms / 1000, sl->server);
}

size_t
request_wait(struct request_session *s, int timeout_ms, request_result_fn fn,
             void *arg)
{
	const struct bus_handlers h = {on_delivery, on_confirm, s};
	int ms = timeout_ms > 0 ? timeout_ms : REQUEST_TIMEOUT_MS;
	int64_t until = clock_mono_ms() + ms;
	size_t returned;
	char why[512];

	for (;;) {
		returned = 0;
		for (size_t i = 0; i < s->n; i++)
			returned +=
			        s->slots[i].returned && !s->slots[i].answered;
		if (s->nanswered + returned >= s->n || clock_mono_ms() >= until)
			break;
		bus_poll(s->bus, 100, &h);
	}
	for (size_t i = 0; i < s->n; i++) {
		struct slot *sl = &s->slots[i];
		if (sl->answered) {
			fn(arg, i, &sl->answer, NULL);
			continue;
		}
		no_answer(s, sl, ms, why, sizeof(why));
		fn(arg, i, NULL, why);
	}
	return s->nanswered;
}

void
request_close(struct request_session *s)
{
	if (s == NULL)
		return;
	bus_close(s->bus);
	for (size_t i = 0; i < s->n; i++)
		envelope_clear(&s->slots[i].answer);
	free(s->slots);
	free(s->index);
	free(s);
}

/* ---- one request ---- */

struct one {
	struct envelope *answer;
	char *err;
	size_t errlen;
	int rc;
};

static void
take_one(void *arg, size_t i, struct envelope *answer, const char *err)
{
	struct one *o = arg;

	(void)i;
	if (answer == NULL) {
		snprintf(o->err, o->errlen, "%s", err);
		return;
	}
	/* the answer moves out: the session's slot keeps an empty map */
	*o->answer = *answer;
	envelope_init(answer);
	o->rc = 0;
}

int
request_call(const struct bus_config *bc, const struct request *r,
             const struct envelope *req, struct envelope *answer, char *err,
             size_t errlen)
{
	struct request_session *s;
	struct one o = {answer, err, errlen, -1};

	envelope_init(answer);
	s = request_open(bc, err, errlen);
	if (s == NULL)
		return -1;
	if (request_send(s, r, req, err, errlen) >= 0)
		request_wait(s, r->timeout_ms, take_one, &o);
	request_close(s);
	return o.rc;
}

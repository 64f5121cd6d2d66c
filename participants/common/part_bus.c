/* part_bus.c -- a participant's broker (part_bus.h is its manual).
 *
 * Every delivery is held (copied) until it is settled: a dead letter or a
 * retry copy needs its body and properties after the batch's commit, when
 * the bus's own buffers are long gone. Publish tags: an outbox row's seq;
 * HELD_COPY_TAG | ref for a copy whose confirm settles `ref` (held.h); 0
 * for presence announcements (nothing to settle); BUNDLER_TAG for bundles of
 * replies.
 */
#include "part_bus.h"

#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bundler.h"
#include "bus.h"
#include "busloop.h"
#include "clock.h"
#include "envelope.h"
#include "held.h"
#include "log.h"
#include "presence.h"

#define REPLIES_EXCHANGE "saga.replies"
/* A daemon's topology at most (part_config): work queues (each with its
 * .retry and .dlq), exchanges besides the framework's own two
 * (saga.replies, saga.presence) and other queues. */
#define MAX_QUEUES       8
#define MAX_EXCHANGES    14
#define MAX_EXTRA_QUEUES 16
#define MAX_BINDINGS     64
_Static_assert(MAX_QUEUES + 1 <= BUS_MAX_CONSUME,
               "the bus consumes them all, and a stream");

struct part_bus {
	struct busloop bl; /* first: the transport's ctx is the part_bus */
	const struct part_config *cfg;
	struct presence_announce presence; /* name "" when not announcing */
	int64_t announced_ms;              /* mono */
	bool unbound;                      /* unbind_old has run */
	void (*on_poll)(void *);           /* part_bus_on_poll */
	void *on_poll_arg;
	char own[128]; /* the daemon's own exchange (part_own_exchange) */
	const char *consume[MAX_QUEUES + 1]; /* work queues, the stream */
	size_t nconsume;
	/* where the stream is read from after a (re)connect (part_stream_next)
	 */
	int64_t (*resume)(void *);
	void *resume_arg;
};

_Static_assert(offsetof(struct part_bus, bl) == 0,
               "busloop's functions take the part_bus as their ctx");

/* ---- holding deliveries until they are settled ---- */

static const char *
nz(const char *s)
{
	return s != NULL ? s : "";
}

static int
hold(struct part_bus *pb, const struct bus_delivery *d, int attempt, bool item)
{
	/* the shared stream's copies go to its home queue's .retry/.dlq */
	bool shared = pb->cfg->stream != NULL &&
	              strcmp(nz(d->queue), pb->cfg->stream) == 0;
	struct held *h =
	        held_add(&pb->bl.held, d, shared ? pb->cfg->stream_home : NULL);

	if (h == NULL)
		return -1;
	h->attempt = attempt;
	h->item = item;
	return 0;
}

/* Q.retry's TTL: how long a delivery waits to be tried again. */
static int64_t
retry_ms(const struct part_config *cfg)
{
	return cfg->retry_ms > 0 ? cfg->retry_ms : PART_RETRY_MS;
}

static void
dead_letter(struct part_bus *pb, struct held *h, const char *why)
{
	log_warnx("saga=%s dead-lettered %s from %s to %s.dlq: %s",
	          h->correlation_id, h->message_id, h->queue, h->queue, why);
	busloop_copy(&pb->bl, h, true, why, 0);
}

/* ---- the transport (durable.h) ---- */

/* The lowest offset whose copy is not confirmed yet (durable.h). */
static int64_t
t_unsettled_floor(void *ctx)
{
	const struct part_bus *pb = ctx;
	int64_t floor = INT64_MAX;

	for (size_t i = 0; i < pb->bl.held.n; i++)
		if (pb->bl.held.v[i].copying && pb->bl.held.v[i].offset >= 0 &&
		    pb->bl.held.v[i].offset < floor)
			floor = pb->bl.held.v[i].offset;
	return floor;
}

/* bus_config.start: the stream from its committed position, the oldest
 * message retained on a fresh database; other queues as they are. */
static void
start_at(void *arg, const char *queue, struct bus_start *out)
{
	const struct part_bus *pb = arg;
	int64_t next = pb->resume != NULL ? pb->resume(pb->resume_arg) : -1;

	if (pb->cfg->stream == NULL || strcmp(queue, pb->cfg->stream) != 0)
		return;
	if (next >= 0)
		*out = (struct bus_start){BUS_FROM_OFFSET, next};
	else if (pb->cfg->stream_from_end)
		*out = (struct bus_start){BUS_FROM_NEXT, 0};
	else
		*out = (struct bus_start){BUS_FROM_FIRST, 0};
	if (next >= 0)
		log_info("reading stream %s from offset %lld", queue,
		         (long long)next);
	else
		log_info("reading stream %s from %s (no offset stored yet)",
		         queue,
		         pb->cfg->stream_from_end ? "its end: only new messages"
		                                  : "its first message");
}

static int
t_settle(void *ctx, uint64_t ref, enum durable_verdict v, const char *why)
{
	struct part_bus *pb = ctx;
	struct held *h = held_find(&pb->bl.held, ref);

	if (v == DURABLE_DONE || h == NULL) {
		if (v != DURABLE_DONE) /* no copy (out of memory) */
			log_error("out of memory: a delivery goes round "
			          "the retry queue instead: %s",
			          why);
		busloop_settle(&pb->bl, ref, v != DURABLE_DONE);
	} else if (v == DURABLE_REJECT) {
		dead_letter(pb, h, why);
	} else if (!h->item && h->offset < 0) {
		busloop_settle(&pb->bl, ref, true); /* Q -> Q.retry -> Q */
	} else { /* an item, or from a stream: a copy, attempts in a header */
		busloop_copy(&pb->bl, h, false, NULL, h->attempt);
	}
	return 0;
}

static void
on_confirm(void *arg, uint64_t tag, enum bus_confirm c)
{
	struct part_bus *pb = arg;

	if (tag != 0) /* 0: a presence announcement */
		busloop_confirmed(&pb->bl, tag, c);
}

/* A bundle of commands: each item goes to the loop as a delivery of its
 * own, with the bundle's properties. One that cannot be decoded goes to
 * Q.dlq whole. */
static void
on_bundle(struct part_bus *pb, const struct bus_delivery *d)
{
	struct envelope_bundle b;
	char err[300], why[400];
	uint64_t first;
	int attempt = (int)d->rejected_count + 1;

	if (envelope_bundle_decode(d->body, d->len, &b, err, sizeof(err))) {
		snprintf(why, sizeof(why), "cannot decode the bundle: %s", err);
		if (hold(pb, d, attempt, false) != 0) {
			log_error("out of memory: a bad bundle goes round "
			          "the retry queue");
			bus_reject(pb->bl.bus, d->ref, false);
			return;
		}
		dead_letter(pb, held_find(&pb->bl.held, d->ref), why);
		return;
	}
	if (bundler_items(pb->bl.bundler, d->ref, b.n, &first) != 0) {
		log_error("out of memory: a bundle waits for redelivery");
		envelope_bundle_clear(&b);
		return;
	}
	for (size_t i = 0; i < b.n; i++) {
		struct bus_delivery item = *d;
		struct durable_delivery dd = {
		        .ref = first + i,
		        .body = b.items[i].body,
		        .len = b.items[i].len,
		        .traceparent = b.items[i].traceparent,
		        .reply_to = d->reply_to,
		        .user_id = d->user_id, /* the bundle's sender */
		        .attempt = attempt,
		        .bundled = true,
		        .offset = d->stream_offset,
		};
		item.ref = dd.ref;
		item.message_id = item.correlation_id = item.type = "";
		item.traceparent = b.items[i].traceparent;
		item.body = b.items[i].body;
		item.len = b.items[i].len;
		if (hold(pb, &item, attempt, true) != 0)
			log_error("out of memory: a refused item would go "
			          "round the retry queue");
		durable_deliver(pb->bl.d, &dd);
	}
	envelope_bundle_clear(&b);
}

static void
on_delivery(void *arg, const struct bus_delivery *d)
{
	struct part_bus *pb = arg;
	int attempt = (int)(d->attempts + d->rejected_count) + 1;
	struct durable_delivery dd = {
	        .ref = d->ref,
	        .body = d->body,
	        .len = d->len,
	        .message_id = d->message_id,
	        .content_type = d->content_type,
	        .traceparent = d->traceparent,
	        .reply_to = d->reply_to,
	        .user_id = d->user_id,
	        .attempt = attempt,
	        .offset = d->stream_offset,
	};

	/* a bundle of another content type is refused by the loop whole */
	if (strcmp(d->type, ENVELOPE_BUNDLE_TYPE) == 0 &&
	    (d->content_type[0] == '\0' ||
	     strcmp(d->content_type, "application/msgpack") == 0)) {
		on_bundle(pb, d);
		return;
	}
	if (hold(pb, d, attempt, false) != 0)
		log_error("out of memory: a refused message would go round "
		          "the retry queue");
	durable_deliver(pb->bl.d, &dd);
}

/* ---- topology and presence ---- */

void
part_own_exchange(const struct part_config *cfg, char *buf, size_t cap)
{
	const char *q = cfg->nqueues > 0 ? cfg->queues[0] : cfg->name;
	int n = (int)strcspn(q, ".");

	snprintf(buf, cap, "%.*s%s", n, q, PART_OWN_SUFFIX);
}

/* The topology part_bus_open declares, built in place. */
struct topo_parts {
	char names[MAX_QUEUES][3][256]; /* each work queue, .retry, .dlq */
	struct bus_exchange ex[3 + MAX_EXCHANGES];
	struct bus_queue qs[MAX_QUEUES * 3 + MAX_EXTRA_QUEUES + 1];
	struct bus_binding bd[MAX_BINDINGS + MAX_QUEUES * 3];
	size_t nex, nq, nbd;
};

/* Each work queue Q with Q.retry (its TTL dead-letters back to Q) and
 * Q.dlq, all three bound to the daemon's own exchange under their
 * names. */
static void
add_work_queues(struct topo_parts *t, const struct part_config *cfg,
                const char *own)
{
	int64_t ttl = retry_ms(cfg);

	assert(cfg->nqueues <= MAX_QUEUES);
	for (size_t i = 0; i < cfg->nqueues; i++) {
		char(*n)[256] = t->names[i];
		snprintf(n[0], 256, "%s", cfg->queues[i]);
		snprintf(n[1], 256, "%s.retry", cfg->queues[i]);
		snprintf(n[2], 256, "%s.dlq", cfg->queues[i]);
		t->qs[t->nq++] = (struct bus_queue){
		        .name = n[0], .dlx = own, .dlrk = n[1]};
		t->qs[t->nq++] = (struct bus_queue){
		        .name = n[1], .dlx = own, .dlrk = n[0], .ttl_ms = ttl};
		t->qs[t->nq++] = (struct bus_queue){.name = n[2]};
		for (int k = 0; k < 3; k++)
			t->bd[t->nbd++] =
			        (struct bus_binding){own, n[k], NULL, n[k]};
	}
}

/* The exchanges, queues and bindings of the daemon's topology into *t:
 * the replies exchange, its own, presence (a participant's), the
 * config's; its work queues; the config's queues and bindings; the
 * stream it reads, if any (another's: passive, it must exist). */
static void
build_topology(struct topo_parts *t, struct part_bus *p)
{
	const struct part_config *cfg = p->cfg;

	t->ex[t->nex++] =
	        (struct bus_exchange){REPLIES_EXCHANGE, "direct", NULL, NULL};
	t->ex[t->nex++] = (struct bus_exchange){p->own, "direct", NULL, NULL};
	if (cfg->participant != NULL)
		t->ex[t->nex++] = (struct bus_exchange){PRESENCE_EXCHANGE,
		                                        "fanout", NULL, NULL};
	for (size_t i = 0; i < cfg->nexchanges; i++)
		t->ex[t->nex++] = cfg->exchanges[i];
	for (size_t i = 0; i < cfg->nbindings; i++)
		t->bd[t->nbd++] = cfg->bindings[i];
	add_work_queues(t, cfg, p->own);
	for (size_t i = 0; i < cfg->nextra_queues; i++)
		t->qs[t->nq++] = cfg->extra_queues[i];
	if (cfg->stream != NULL) {
		t->qs[t->nq++] = (struct bus_queue){.name = cfg->stream,
		                                    .passive = true};
		p->consume[p->nconsume++] = cfg->stream;
	}
}

/* The topology: the daemon's plus, for each work queue Q, Q.retry and
 * Q.dlq (all three bound to the daemon's own exchange under their names,
 * which is also their dead-letter exchange: Q -> Q.retry -> Q), and
 * saga.replies. */
int
part_bus_open(struct part_bus *p, char *err, size_t errlen)
{
	const struct part_config *cfg = p->cfg;
	struct topo_parts t = {.nex = 0};
	struct bus_topology topo;
	struct bus_config bc = {0};

	if (cfg->nqueues > MAX_QUEUES || cfg->nexchanges > MAX_EXCHANGES ||
	    cfg->nextra_queues > MAX_EXTRA_QUEUES ||
	    cfg->nbindings > MAX_BINDINGS) {
		snprintf(err, errlen, "topology too large");
		return -1;
	}
	for (size_t i = 0; i < cfg->nqueues; i++)
		p->consume[p->nconsume++] = cfg->queues[i];
	part_own_exchange(cfg, p->own, sizeof(p->own));
	build_topology(&t, p);
	topo = (struct bus_topology){t.ex, t.nex, t.qs, t.nq, t.bd, t.nbd};
	bc.url = cfg->url;
	bc.name = cfg->name;
	bc.ca_file = getenv("SAGA_AMQP_CA");
	bc.cert_file = getenv("SAGA_AMQP_CERT");
	bc.key_file = getenv("SAGA_AMQP_KEY");
	bc.prefetch = cfg->prefetch ? cfg->prefetch : PART_PREFETCH;
	bc.queue_type = getenv("SAGA_QUEUE_TYPE");
	bc.topology = &topo; /* copied by bus_open */
	bc.consume = p->consume;
	bc.nconsume = p->nconsume;
	bc.start = start_at;
	bc.start_arg = p;
	p->bl.bus = bus_open(&bc, err, errlen);
	return p->bl.bus != NULL ? 0 : -1;
}

/* Is q one of the daemon's work queues? */
static bool
work_queue(const struct part_config *cfg, const char *q)
{
	for (size_t i = 0; q != NULL && i < cfg->nqueues; i++)
		if (strcmp(cfg->queues[i], q) == 0)
			return true;
	return false;
}

static void
add_key(struct presence_announce *a, const char *key)
{
	if (a->nkeys < PRESENCE_MAX_KEYS)
		snprintf(a->keys[a->nkeys++], sizeof(a->keys[0]), "%s", key);
	else
		log_warnx("more than %d bindings: presence lists the first",
		          PRESENCE_MAX_KEYS);
}

/* What this instance announces: the keys that reach its work queues. */
static void
presence_init(struct part_bus *p)
{
	const struct part_config *cfg = p->cfg;
	struct presence_announce *a = &p->presence;

	memset(a, 0, sizeof(*a));
	if (cfg->participant == NULL)
		return;
	snprintf(a->name, sizeof(a->name), "%s", cfg->participant);
	snprintf(a->instance, sizeof(a->instance), "%s/%ld",
	         cfg->instance != NULL ? cfg->instance : "", (long)getpid());
	a->interval_ms = PRESENCE_INTERVAL_MS;
	for (size_t i = 0; i < cfg->nbindings; i++) {
		const struct bus_binding *b = &cfg->bindings[i];
		if (!work_queue(cfg, b->queue))
			continue;
		if (b->key != NULL && b->key[0] != '\0')
			add_key(a, b->key);
		else
			a->fallback = true;
	}
	for (size_t i = 0; a->fallback && i < cfg->nbindings; i++) {
		const struct bus_binding *b = &cfg->bindings[i];
		if (b->dest_exchange != NULL && b->key != NULL &&
		    strcmp(b->exchange, "saga.commands") == 0)
			add_key(a, b->key);
	}
}

/* Every PRESENCE_INTERVAL_MS while connected: "I take these commands".
 * Not persistent, expiring: an old one means nothing. Its confirm (tag 0)
 * matches no delivery. */
static void
announce(struct part_bus *p)
{
	struct envelope e;
	struct bus_message m = {0};
	char *body = NULL;
	size_t len = 0;
	int64_t now = clock_wall_ms();

	if (p->presence.name[0] == '\0' || !bus_connected(p->bl.bus) ||
	    clock_mono_ms() - p->announced_ms < PRESENCE_INTERVAL_MS)
		return;
	p->announced_ms = clock_mono_ms();
	if (presence_encode(&p->presence, now, &e) != 0 ||
	    envelope_encode(&e, &body, &len) != 0) {
		envelope_clear(&e);
		log_error("cannot encode the presence announcement");
		return;
	}
	m.exchange = PRESENCE_EXCHANGE;
	m.routing_key = "";
	m.message_id = e.id;
	m.type = PRESENCE_TYPE;
	m.timestamp_ms = now;
	m.transient = true;
	m.expiration_ms = PRESENCE_TTL_MS;
	m.body = body;
	m.len = len;
	if (bus_publish(p->bl.bus, &m, 0) != 0)
		log_warnx("cannot announce presence");
	free(body);
	envelope_clear(&e);
}

/* cfg->unbindings, once, at the first moment the bus is connected. A
 * refusal (403: the broker user may not) closes the channel; the bus
 * reconnects, and the binding stays with a warning saying so. */
static void
unbind_old(struct part_bus *pb)
{
	const struct part_config *cfg = pb->cfg;

	if (pb->unbound || !bus_connected(pb->bl.bus))
		return;
	pb->unbound = true;
	for (size_t i = 0; i < cfg->nunbindings; i++) {
		const struct bus_binding *b = &cfg->unbindings[i];
		if (bus_unbind(pb->bl.bus, b->exchange, b->queue, b->key) != 0)
			log_warnx("cannot remove the binding %s -> %s (%s) an "
			          "earlier version made (the reason is logged "
			          "above); remove it by hand",
			          b->exchange, b->queue, b->key);
	}
}

static int
t_poll(void *ctx, struct durable *d, int timeout_ms)
{
	struct part_bus *pb = ctx;
	struct bus_handlers h = {on_delivery, on_confirm, pb};

	pb->bl.d = d;
	bus_poll(pb->bl.bus, timeout_ms, &h);
	busloop_copy_waiting(&pb->bl);
	unbind_old(pb);
	announce(pb);
	if (pb->on_poll != NULL)
		pb->on_poll(pb->on_poll_arg);
	return 0;
}

/* ---- set-up ---- */

struct part_bus *
part_bus_new(const struct part_config *cfg, struct durable_transport *t,
             char *err, size_t errlen)
{
	struct part_bus *pb = calloc(1, sizeof(*pb));

	if (pb != NULL)
		pb->bl.bundler = bundler_new(ENVELOPE_BUNDLE_MAX);
	if (pb == NULL || pb->bl.bundler == NULL) {
		free(pb);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pb->cfg = cfg;
	pb->bl.copy_exchange = pb->own; /* filled by part_bus_open */
	pb->bl.copy_retry_ms = retry_ms(cfg);
	presence_init(pb);
	*t = (struct durable_transport){
	        .ctx = pb,
	        .publish = busloop_publish,
	        .settle = t_settle,
	        .poll = t_poll,
	        .stop_consuming = busloop_stop,
	        .unconfirmed = busloop_unconfirmed,
	        .ready = busloop_ready,
	        .flush = busloop_flush,
	        .unsettled_floor =
	                cfg->stream != NULL ? t_unsettled_floor : NULL,
	};
	return pb;
}

void
part_bus_attach(struct part_bus *pb, struct durable *d)
{
	pb->bl.d = d;
}

void
part_bus_resume(struct part_bus *pb, int64_t (*next)(void *), void *arg)
{
	pb->resume = next;
	pb->resume_arg = arg;
}

int
part_bus_connect(struct part_bus *pb, char *err, size_t errlen)
{
	if (bus_connect(pb->bl.bus, err, errlen) != 0)
		return -1;
	unbind_old(pb);
	return 0;
}

uint64_t
part_bus_reconnects(const struct part_bus *pb)
{
	return pb->bl.bus != NULL ? bus_stats(pb->bl.bus)->reconnects : 0;
}

bool
part_bus_connected(const struct part_bus *pb)
{
	return pb->bl.bus != NULL && bus_connected(pb->bl.bus);
}

long long
part_bus_queue_depth(struct part_bus *pb, const char *queue)
{
	uint32_t messages, consumers;

	if (!part_bus_connected(pb) ||
	    bus_queue_info(pb->bl.bus, queue, &messages, &consumers) != 0)
		return -1;
	return messages;
}

void
part_bus_on_poll(struct part_bus *pb, void (*fn)(void *), void *arg)
{
	pb->on_poll = fn;
	pb->on_poll_arg = arg;
}

void
part_bus_free(struct part_bus *pb)
{
	if (pb == NULL)
		return;
	busloop_close(&pb->bl);
	free(pb);
}

/* daemon.c -- saga-orchestrator's wiring (see daemon.h): the store, the
 * chart registry, the processor, the durable loop and, behind the loop's
 * transport interface, the AMQP bus.
 *
 * The transport adapter is small on purpose: deliveries are mapped to a
 * source by the queue they came from, outbox rows become bus messages
 * (commands are mandatory, so a command nobody is bound to receive is
 * reported instead of vanishing), and settling is one `ack` per accepted
 * delivery. What it shares with the participants' adapter (publishing,
 * confirms, settling held deliveries) is lib/busloop.h. A refused delivery is
 * not rejected: RabbitMQ cannot add a header to a dead-lettered message, and
 * the reason belongs with it. So a copy goes to orchestrator.dlq with the
 * reason in `x-saga-error` ("from QUEUE: reason"), and the original is acked
 * once the broker confirms the copy. The adapter therefore holds each
 * delivery's bytes until the loop settles it. The adapter acks each accepted
 * delivery; the bus coalesces them into `ack multiple` without ever covering an
 * unsettled one, so a refusal in the middle of a batch cannot be acked by
 * mistake (NOTES pitfall 7).
 *
 * Bundles (bundler.h): the commands one pass over the outbox makes ready
 * for one participant queue go out as one message, and a bundle of replies
 * is handed to the loop item by item, each with a reference of its own;
 * the bundle's delivery is acked once every item is settled.
 */
#include "clock.h"
#include "daemon.h"

#include <assert.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "audit.h"
#include "bundler.h"
#include "bus.h"
#include "busloop.h"
#include "console.h"
#include "envelope.h"
#include "held.h"
#include "http.h"
#include "log.h"
#include "loop.h"
#include "orch.h"
#include "orch_metrics.h"
#include "otlp.h"
#include "overdue.h"
#include "presence.h"
#include "registry.h"
#include "shard.h"
#include "store.h"

#define DLX "saga.dlx"

struct adapter {
	struct busloop bl; /* first: the transport's ctx is the adapter */
	struct http *http;
	struct store *st;
	struct orch *o;
	struct orch_metrics *m; /* /metrics (orch_metrics.h) */
	char orders_q[128], replies_q[128], control_q[128], presence_q[140];
	struct shard sh;
	struct shard_times times;
	/* draining (daemon.h): where it is, and the stop flag to raise */
	enum {
		DRAIN_NO,
		DRAIN_ANNOUNCE,
		DRAIN_ANNOUNCED,
		DRAIN_UNBIND,
		DRAIN_FINISHING
	} drain;
	volatile sig_atomic_t *stop;
	int64_t announced_ms; /* the time the ring-change notice gave */
	int64_t next_check_ms;
	int quiet_checks;
	uint64_t refused;       /* order.created refused by the shard guard */
	size_t max_order;       /* --max-order-kib, in bytes */
	uint64_t too_large;     /* orders refused for their size */
	uint64_t reply_bundles; /* bundles of replies received */
	bool drained; /* draining found nothing left: delete the queues */
	struct presence *presence; /* who takes commands (lib/presence.h) */
	int64_t http_published_ms;
	uint64_t presence_heard;
	struct otlp *otlp;          /* spans (--otlp-url), or NULL */
	struct store_active active; /* render_gauges, counted at active_at */
	int64_t active_at_ms;
	struct registry *reg;       /* the charts, for their stuck_after */
	struct overdue_set overdue; /* saga_overdue_sagas, at active_at */
	/* bytes left where the database is, at the last publish; -1 unknown */
	long long disk_free;
};

/* Tags of dead-letter copies are HELD_COPY_TAG | ref (held.h); outbox
 * tags are seqs; the ring-change notice's is NOTICE_TAG alone (a copy's
 * may have that bit as well: a bundle item's ref sets it). */
#define NOTICE_TAG (UINT64_C(1) << 62)
_Static_assert((NOTICE_TAG & (HELD_COPY_TAG | BUNDLER_TAG)) == 0,
               "the notice's tag is told apart from copies and bundles");
#define DLQ "orchestrator.dlq"
/* A dead letter's copy that came back unroutable (orchestrator.dlq
 * deleted) is made again this long after. */
#define DLQ_RETRY_MS 1000

/* How often the unfinished sagas are counted again (an index scan of the
 * unfinished sagas: cheap, but not every 250 ms). */
#define GAUGES_EVERY_MS 2000

/* What is true now, read from its owners for /metrics. */
static void
metrics_now(struct adapter *a, struct orch_metrics_now *n)
{
	const struct orch_stats *os = orch_stats(a->o);
	const struct durable_stats *ls = durable_stats(a->bl.d);
	const struct bus_stats *bs = bus_stats(a->bl.bus);
	const struct store_active *v = &a->active;
	int64_t now = clock_mono_ms();

	if (a->active_at_ms == 0 || now - a->active_at_ms >= GAUGES_EVERY_MS) {
		char err[512];
		if (store_active(a->st, &a->active) != 0)
			log_warnx("metrics: %s", store_error(a->st));
		if (a->reg != NULL &&
		    overdue_count(a->st, a->reg, clock_wall_ms(), &a->overdue,
		                  err, sizeof(err)) != 0)
			log_warnx("metrics: overdue sagas: %s", err);
		a->active_at_ms = now;
	}
	*n = (struct orch_metrics_now){
	        .outbox_depth = -1,
	        .duplicates = os->duplicates,
	        .dead_lettered = ls->dead_lettered + a->too_large,
	        .published = ls->published,
	        .amqp_published = bs->published,
	        .dropped_unroutable = ls->returned,
	        .dropped_too_large = ls->refused,
	        .reply_bundles = a->reply_bundles,
	        .inbox_pruned = ls->inbox_pruned,
	        .batches = ls->batches,
	        .commit_failures = ls->commit_failures,
	        .shard_index = a->sh.index,
	        .shard_count = a->sh.count,
	        .shard_refused = a->refused,
	        .participants_present =
	                (int64_t)presence_live(a->presence, clock_wall_ms()),
	        .presence_heard = a->presence_heard,
	        .bus_connected = bus_connected(a->bl.bus),
	        .reconnects = bs->reconnects,
	        .disk_free = a->disk_free,
	        .overdue = &a->overdue,
	        .running = v->running,
	        .compensating = v->compensating,
	        .stuck = v->stuck,
	        .stuck_oldest_s = v->stuck > 0 && v->stuck_since_ms > 0
	                                  ? (double)(clock_wall_ms() -
	                                             v->stuck_since_ms) /
	                                            1000.0
	                                  : 0.0,
	};
	if (store_outbox_count(a->st, &n->outbox_depth) != 0)
		n->outbox_depth = -1;
}

/* /healthz and /metrics are snapshots the loop publishes every
 * HTTP_PUBLISH_MS (lib/http.h): no request waits for the loop, and a loop
 * that stops turning makes both answer 503 after HTTP_STALE_MS. */
#define HTTP_PUBLISH_MS 250
#define HTTP_STALE_MS   10000
/* Below this many bytes free where the database is, /healthz says the disk
 * is full: before SQLite notices (db.h, db_space_left), and with room
 * left for the commits in flight and a checkpoint. */
#define DISK_RESERVE_BYTES (16LL << 20)

/* Why the orchestrator is not healthy now, or NULL; buf holds the text. */
static const char *
unhealthy(struct adapter *a, char *buf, size_t cap)
{
	const char *why = "";
	unsigned long long left = 0;

	a->disk_free =
	        store_space_left(a->st, &left) == 0 ? (long long)left : -1;
	if (!durable_healthy(a->bl.d, &why))
		return why[0] ? why : "commits fail";
	if (a->disk_free >= 0 && a->disk_free < DISK_RESERVE_BYTES) {
		snprintf(buf, cap,
		         "disk full: %lld KiB left where the database is, "
		         "below the %lld MiB reserve",
		         a->disk_free >> 10, DISK_RESERVE_BYTES >> 20);
		return buf;
	}
	if (!bus_connected(a->bl.bus))
		return "not connected to the broker";
	return NULL;
}

static void
publish_http(struct adapter *a)
{
	struct http_response r = {0};
	char buf[160];
	const char *why;
	int64_t now = clock_mono_ms();

	if (a->http == NULL || now - a->http_published_ms < HTTP_PUBLISH_MS)
		return;
	a->http_published_ms = now;
	why = unhealthy(a, buf, sizeof(buf));
	if (why == NULL)
		http_printf(&r, "ok\n");
	else
		http_printf(&r, "unhealthy: %s\n", why);
	if (!r.oom)
		http_publish(a->http, "/healthz", why == NULL ? 200 : 503, NULL,
		             r.body, r.len, HTTP_STALE_MS);
	free(r.body);
	memset(&r, 0, sizeof(r));
	if (a->m != NULL) {
		struct orch_metrics_now n;
		metrics_now(a, &n);
		orch_metrics_render(a->m, &n, &r);
	}
	if (!r.oom)
		http_publish(a->http, "/metrics", 200,
		             "text/plain; version=0.0.4", r.body, r.len,
		             HTTP_STALE_MS);
	free(r.body);
}

_Static_assert(offsetof(struct adapter, bl) == 0,
               "busloop's functions take the adapter as their ctx");

/* Keeps a copy of a delivery until it is settled. */
static int
hold(struct adapter *a, const struct bus_delivery *d)
{
	return held_add(&a->bl.held, d, NULL) != NULL ? 0 : -1;
}

static void dead_letter(struct adapter *a, uint64_t ref, const char *reason);

/* A leaving shard's notice, on the control queue: remember the change. */
static void
ring_notice(struct adapter *a, const struct bus_delivery *d)
{
	char buf[32];
	size_t n = d->len < sizeof(buf) - 1 ? d->len : sizeof(buf) - 1;
	char *end;
	long long at;

	memcpy(buf, d->body, n);
	buf[n] = '\0';
	at = strtoll(buf, &end, 10);
	if (end == buf || *end != '\0' || at <= 0) {
		log_warnx("ignored a malformed ring-change notice");
	} else if (shard_note_ring_change(a->st, &a->times, at) != 0) {
		/* not acked: it comes back after a reconnect */
		log_error("cannot record a ring change: %s",
		          store_error(a->st));
		return;
	} else {
		log_info("the hash ring changed at %lld: resends of older "
		         "orders this shard does not know go to the DLQ",
		         at);
	}
	bus_ack(a->bl.bus, d->ref, false);
}

/* A shard is in the ring once it is connected with its topology, its
 * orders queue bound: the first time, that is when it joined (shard.h),
 * the time the bus declared it (before consuming, so no order it hands
 * over was published after that and judged before). A draining shard
 * does not bind its orders queue. */
static void
note_joined(struct adapter *a)
{
	int64_t at = bus_stats(a->bl.bus)->declared_ms;
	if (a->sh.index == 0 || a->times.joined_ms != 0 ||
	    a->drain != DRAIN_NO || !bus_connected(a->bl.bus) || at <= 0)
		return;
	if (shard_note_joined(a->st, &a->times, at) != 0)
		log_error("cannot record joining the hash ring (tried again "
		          "on the next poll): %s",
		          store_error(a->st));
	else
		log_info("joined the hash ring at %lld", (long long)at);
}

/* The shard guard (shard.h): 1 if the order was refused (dead-lettered). */
static int
guard_order(struct adapter *a, const struct bus_delivery *d)
{
	bool known = false;
	const char *why;
	if (a->sh.index == 0)
		return 0;
	/* a delivery means the topology is declared: joined by now */
	note_joined(a);
	if (a->times.joined_ms == 0 && a->drain == DRAIN_NO)
		return 0; /* cannot record it: the loop meets the same
		           * database error and the order comes back */
	why = shard_refuse(&a->sh, &a->times, d->timestamp_ms, d->republished,
	                   false);
	if (why == NULL)
		return 0;
	if (store_saga_exists(a->st, d->correlation_id, &known) != 0) {
		log_error("shard guard: %s", store_error(a->st));
		return 0; /* the loop hits the same error and retries */
	}
	if (known)
		return 0; /* a duplicate of ours: the loop drops it */
	log_warnx("order %s refused: %s", d->correlation_id, why);
	a->refused++;
	dead_letter(a, d->ref, why);
	return 1;
}

/* An order larger than --max-order-kib: 1 if refused (dead-lettered).
 * Each of its events carries the whole order, so past some size they
 * could not be published and the saga would run without them (the
 * loop's DURABLE_REFUSED). Refused at the door instead, with the reason
 * in the DLQ and the log. */
static int
guard_size(struct adapter *a, const struct bus_delivery *d)
{
	char why[200];

	if (d->len <= a->max_order)
		return 0;
	snprintf(why, sizeof(why),
	         "%s of %zu bytes is larger than the %zu an order may have "
	         "(--max-order-kib %zu)",
	         d->type[0] != '\0' ? d->type : "a message", d->len,
	         a->max_order, a->max_order / 1024);
	log_warnx("order %s refused: %s",
	          d->correlation_id[0] != '\0' ? d->correlation_id : "?", why);
	a->too_large++;
	dead_letter(a, d->ref, why);
	return 1;
}

/* A bundle of replies: each item goes to the loop as a delivery of its
 * own. One that cannot be decoded goes to the DLQ whole. */
static void
reply_bundle(struct adapter *a, const struct bus_delivery *d)
{
	struct envelope_bundle b;
	char err[300], why[400];
	uint64_t first;

	if (envelope_bundle_decode(d->body, d->len, &b, err, sizeof(err)) !=
	    0) {
		snprintf(why, sizeof(why), "cannot decode the bundle: %s", err);
		if (hold(a, d) != 0)
			log_error("out of memory: a refused bundle is "
			          "dead-lettered without its reason");
		dead_letter(a, d->ref, why);
		return;
	}
	a->reply_bundles++;
	if (bundler_items(a->bl.bundler, d->ref, b.n, &first) != 0) {
		log_error("out of memory: a bundle of replies waits for "
		          "redelivery");
		envelope_bundle_clear(&b);
		return;
	}
	for (size_t i = 0; i < b.n; i++) {
		struct bus_delivery item = *d;
		struct durable_delivery ld = {
		        .ref = first + i,
		        .source = SRC_REPLIES,
		        .body = b.items[i].body,
		        .len = b.items[i].len,
		        .traceparent = b.items[i].traceparent,
		};
		item.ref = ld.ref;
		item.message_id = item.correlation_id = item.type = "";
		item.traceparent = b.items[i].traceparent;
		item.body = b.items[i].body;
		item.len = b.items[i].len;
		if (hold(a, &item) != 0)
			log_error("out of memory: a refused reply would be "
			          "dead-lettered without its reason");
		durable_deliver(a->bl.d, &ld);
	}
	envelope_bundle_clear(&b);
}

/* A participant's announcement: noted and acked here, outside the
 * loop's transactions (it changes nothing durable); a malformed one is
 * dead-lettered with the reason. */
static void
presence_heard(struct adapter *a, const struct bus_delivery *d)
{
	struct envelope e;
	struct presence_announce pa;
	char why[300];

	envelope_init(&e);
	if (envelope_decode(d->body, d->len, &e, why, sizeof(why)) != 0 ||
	    presence_decode(&e, &pa, why, sizeof(why)) != 0) {
		envelope_clear(&e);
		if (hold(a, d) != 0)
			log_error("out of memory: a bad presence goes to the "
			          "dead-letter queue without its reason");
		dead_letter(a, d->ref, why);
		return;
	}
	envelope_clear(&e);
	presence_note(a->presence, &pa, clock_wall_ms());
	a->presence_heard++;
	if (bus_ack(a->bl.bus, d->ref, false) != 0)
		log_warnx("cannot ack a presence announcement");
}

static bool
absent(void *arg, const char *to, const char *key, int64_t since_ms,
       int64_t now_ms)
{
	struct adapter *a = arg;
	return presence_check(a->presence, to, key, since_ms, now_ms) ==
	       PRESENCE_ABSENT;
}

static void
on_delivery(void *arg, const struct bus_delivery *d)
{
	struct adapter *a = arg;
	struct durable_delivery ld = {
	        .ref = d->ref,
	        .body = d->body,
	        .len = d->len,
	        .message_id = d->message_id,
	        .content_type = d->content_type,
	        .traceparent = d->traceparent,
	        .reply_to = d->reply_to,
	        .user_id = d->user_id,
	};
	if (strcmp(d->queue, a->control_q) == 0 &&
	    strcmp(d->type, SHARD_NOTICE) == 0) {
		ring_notice(a, d);
		return;
	}
	if (strcmp(d->type, ENVELOPE_BUNDLE_TYPE) == 0 &&
	    strcmp(d->queue, a->replies_q) == 0) {
		reply_bundle(a, d);
		return;
	}
	if (strcmp(d->queue, a->presence_q) == 0) {
		presence_heard(a, d);
		return;
	}
	if (hold(a, d) != 0)
		log_error("out of memory: a refused message would be "
		          "dead-lettered without its reason");
	if (strcmp(d->queue, a->orders_q) == 0 &&
	    (guard_size(a, d) || guard_order(a, d)))
		return;
	if (strcmp(d->queue, a->orders_q) == 0)
		ld.source = SRC_ORDERS;
	else if (strcmp(d->queue, a->control_q) == 0)
		ld.source = SRC_CONTROL;
	else
		ld.source = SRC_REPLIES;
	durable_deliver(a->bl.d, &ld);
}

static void
on_confirm(void *arg, uint64_t tag, enum bus_confirm c)
{
	struct adapter *a = arg;

	if (tag == NOTICE_TAG) { /* every shard has heard: leave the ring */
		if (a->drain == DRAIN_ANNOUNCED)
			a->drain = DRAIN_UNBIND;
		return;
	}
	busloop_confirmed(&a->bl, tag, c);
}

static int
t_settle(void *ctx, uint64_t ref, enum durable_verdict v, const char *why)
{
	struct adapter *a = ctx;

	/* the orchestrator's handler never asks for a retry (it has no
	 * retry queue): anything not done goes to the DLQ with its reason */
	if (v == DURABLE_DONE)
		busloop_settle(&a->bl, ref, false);
	else
		dead_letter(a, ref, why);
	return 0;
}

/* A copy of a held delivery to orchestrator.dlq (through saga.dlx,
 * which only the orchestrator may write and which reaches only its DLQ:
 * no service user writes the default exchange) with the reason; the
 * original is acked when the copy is confirmed (busloop_copy). */
static void
dead_letter(struct adapter *a, uint64_t ref, const char *reason)
{
	struct held *h = held_find(&a->bl.held, ref);
	char why[512];

	if (h == NULL) { /* no copy (out of memory): reject, no reason */
		busloop_settle(&a->bl, ref, true);
		return;
	}
	snprintf(why, sizeof(why), "from %s: %s", h->queue, reason);
	busloop_copy(&a->bl, h, true, why, 0);
}

/* Sagas this shard still has to finish: running, compensating, stuck. */
static int64_t
unfinished(struct adapter *a)
{
	static const char *const st[] = {"running", "compensating", "stuck"};
	int64_t total = 0, n;
	for (size_t i = 0; i < 3; i++) {
		if (store_count_status(a->st, st[i], &n) != 0)
			return -1;
		total += n;
	}
	return total;
}

/* Tells every shard (the fanout orchestrator.ring) that the ring changes
 * at at_ms. 0 once queued; the confirm comes with NOTICE_TAG. */
static int
ring_notice_publish(struct adapter *a, int64_t at_ms)
{
	char body[32];
	struct bus_message m = {0};
	snprintf(body, sizeof(body), "%" PRId64, at_ms);
	m.exchange = SHARD_RING;
	m.routing_key = "";
	m.message_id = body;
	m.type = SHARD_NOTICE;
	m.content_type = "text/plain";
	m.timestamp_ms = at_ms;
	m.body = body;
	m.len = strlen(body);
	if (bus_publish(a->bl.bus, &m, NOTICE_TAG) != 0)
		return -1;
	log_info("draining: told every shard the ring changes at %s", body);
	return 0;
}

/* One step of draining (daemon.h), from the poll loop. */
static void
drain_step(struct adapter *a)
{
	int64_t now = clock_wall_ms(), left, outbox = -1;
	uint32_t ready = 0, consumers = 0;

	if (!bus_connected(a->bl.bus))
		return;
	if (a->drain == DRAIN_ANNOUNCE) {
		if (ring_notice_publish(a, now) == 0) {
			a->announced_ms = now;
			a->drain = DRAIN_ANNOUNCED;
		}
		return;
	}
	if (a->drain == DRAIN_UNBIND) {
		if (bus_unbind(a->bl.bus, SHARD_EXCHANGE, a->orders_q,
		               SHARD_WEIGHT) == 0) {
			int64_t unbound = clock_wall_ms();
			log_info("draining: %s left the hash ring; finishing "
			         "what it owns",
			         a->orders_q);
			/* the shards judge resends with a margin after the
			 * notice's time (shard.h); an unbind later than that
			 * is announced again, with its own time */
			if (unbound - a->announced_ms >= SHARD_RESEND_MARGIN_MS)
				(void)ring_notice_publish(a, unbound);
			a->drain = DRAIN_FINISHING;
			a->next_check_ms = now + 1000;
		}
		return;
	}
	if (a->drain != DRAIN_FINISHING || now < a->next_check_ms)
		return;
	a->next_check_ms = now + 1000;
	left = unfinished(a);
	if (store_outbox_count(a->st, &outbox) != 0 || left < 0) {
		log_error("draining: %s", store_error(a->st));
		return;
	}
	if (bus_queue_info(a->bl.bus, a->orders_q, &ready, &consumers) != 0)
		return;
	if (ready > 0 || left > 0 || outbox > 0 || a->bl.held.n > 0) {
		a->quiet_checks = 0;
		if (now / 1000 % 10 == 0)
			log_info("draining: %u orders queued, %lld sagas "
			         "unfinished (stuck ones wait for sagactl), "
			         "%lld messages unconfirmed",
			         ready, (long long)left, (long long)outbox);
		return;
	}
	/* twice in a row, a second apart: nothing was on its way */
	if (++a->quiet_checks < 2)
		return;
	/* the queues go after the loop has stopped consuming them
	 * (orch_daemon_run): deleting a consumed queue cancels the consumer,
	 * and the bus would consume (and so declare) it again */
	a->drained = true;
	*a->stop = 1;
}

static int
t_poll(void *ctx, struct durable *d, int timeout_ms)
{
	struct adapter *a = ctx;
	struct bus_handlers h = {on_delivery, on_confirm, a};
	a->bl.d = d;
	bus_poll(a->bl.bus, timeout_ms, &h);
	busloop_copy_waiting(&a->bl);
	note_joined(a);
	if (a->drain != DRAIN_NO)
		drain_step(a);
	publish_http(a);
	return 0;
}

struct reload_ctx {
	struct registry *reg;
	const char *dir;
};

static void
on_reload(void *arg)
{
	struct reload_ctx *r = arg;
	char err[8192];
	if (registry_load_dir(r->reg, r->dir, clock_wall_ms(), err,
	                      sizeof(err)) != 0) {
		log_error("reload of %s failed; the charts in use stay:\n%s",
		          r->dir, err);
		return;
	}
	log_info("reloaded statecharts from %s", r->dir);
}

/* ---- topology ----
 *
 * The orchestrator's exchanges, queues and bindings as data: one table
 * each, declared on every connect (bus.h). A queue's name depends on the
 * shard (shard.h), so the tables name those queues by their role (Q_*,
 * resolved by topo_name), and `when` says which orchestrators declare an
 * entry: a shard adds the hash ring, and a draining shard leaves its
 * orders queue off the ring (drain_step unbinds it once the other shards
 * have been told). */

#define Q_ORDERS    "$orders"
#define Q_REPLIES   "$replies"
#define Q_CONTROL   "$control"
#define Q_PRESENCE  "$presence"
#define K_REPLY_KEY "$reply_key"

enum topo_when {
	T_ALL,       /* every orchestrator */
	T_UNSHARDED, /* without --shard */
	T_SHARD,     /* a shard */
	T_SERVING,   /* a shard that is not draining */
};

static const struct {
	enum topo_when when;
	struct bus_exchange x;
} orch_exchanges[] = {
        {T_ALL, {ORCH_EXCHANGE_EVENTS, "topic", NULL, NULL}},
        {T_ALL, {ORCH_EXCHANGE_COMMANDS, "topic", NULL, NULL}},
        {T_ALL, {ORCH_EXCHANGE_REPLIES, "direct", NULL, NULL}},
        {T_ALL, {DLX, "direct", NULL, NULL}},
        {T_ALL, {PRESENCE_EXCHANGE, "fanout", NULL, NULL}},
        /* operator requests (sagactl): only the operator user may write
         * it; each control queue is bound under its own name */
        {T_ALL, {ORCH_EXCHANGE_CONTROL, "direct", NULL, NULL}},
        /* shards: order ids hashed over the orders queues */
        {T_SHARD,
         {SHARD_EXCHANGE, "x-consistent-hash", NULL, "correlation_id"}},
        {T_SHARD, {SHARD_RING, "fanout", NULL, NULL}},
};

static const struct bus_queue orch_queues[] = {
        {.name = Q_ORDERS, .dlx = DLX, .dlrk = DLQ},
        {.name = Q_REPLIES, .dlx = DLX, .dlrk = DLQ},
        {.name = Q_CONTROL, .dlx = DLX, .dlrk = DLQ},
        {.name = DLQ},
        /* participants' announcements: short-lived, never dead-lettered;
         * of the deployment's queue type: a classic queue is down with its
         * node, and the orchestrator could not connect to the rest of a
         * cluster */
        {.name = Q_PRESENCE, .ttl_ms = PRESENCE_TTL_MS, .max_length = 10000},
        /* every domain event, kept for audit (audit.h: sagactl audit,
         * the console's saga page); declared here, by the events' one
         * publisher of order.* besides order-api. A stream: read from any
         * time without removing anything, retained max_age (the flag
         * --audit-max-age, set in open_bus); an existing stream keeps
         * its own retention, a classic audit is refused by name */
        {.name = AUDIT_QUEUE,
         .stream = true,
         .max_age = AUDIT_MAX_AGE_DEFAULT,
         .keep_existing = true},
};

static const struct {
	enum topo_when when;
	struct bus_binding b;
} orch_bindings[] = {
        {T_ALL, {ORCH_EXCHANGE_REPLIES, Q_REPLIES, NULL, K_REPLY_KEY}},
        {T_ALL, {DLX, DLQ, NULL, DLQ}},
        {T_ALL, {ORCH_EXCHANGE_EVENTS, AUDIT_QUEUE, NULL, "order.#"}},
        {T_ALL, {PRESENCE_EXCHANGE, Q_PRESENCE, NULL, ""}},
        {T_ALL, {ORCH_EXCHANGE_CONTROL, Q_CONTROL, NULL, Q_CONTROL}},
        /* unsharded: order.created and cancels straight to the queue */
        {T_UNSHARDED, {ORCH_EXCHANGE_EVENTS, Q_ORDERS, NULL, "order.created"}},
        {T_UNSHARDED, {ORCH_EXCHANGE_EVENTS, Q_ORDERS, NULL, ORCH_CANCEL_TYPE}},
        /* sharded: through the ring (a cancel reaches its order's shard:
         * the ring hashes the order id), and told of changes */
        {T_SHARD,
         {ORCH_EXCHANGE_EVENTS, NULL, SHARD_EXCHANGE, "order.created"}},
        {T_SHARD,
         {ORCH_EXCHANGE_EVENTS, NULL, SHARD_EXCHANGE, ORCH_CANCEL_TYPE}},
        {T_SHARD, {SHARD_RING, Q_CONTROL, NULL, ""}},
        {T_SERVING, {SHARD_EXCHANGE, Q_ORDERS, NULL, SHARD_WEIGHT}},
};

/* The queues consumed; a drained shard deletes the same ones. */
static const char *const orch_consumed[] = {Q_ORDERS, Q_REPLIES, Q_CONTROL,
                                            Q_PRESENCE};
_Static_assert(ARRAY_LEN(orch_consumed) <= BUS_MAX_CONSUME,
               "the bus consumes at most BUS_MAX_CONSUME queues");

/* The tables with this orchestrator's names; the bus copies it. */
struct orch_topology {
	struct bus_exchange ex[ARRAY_LEN(orch_exchanges)];
	struct bus_queue qs[ARRAY_LEN(orch_queues)];
	struct bus_binding bd[ARRAY_LEN(orch_bindings)];
	const char *consume[ARRAY_LEN(orch_consumed)];
	struct bus_topology topo;
};

static bool
topo_wanted(const struct adapter *a, enum topo_when w)
{
	switch (w) {
	case T_ALL:
		return true;
	case T_UNSHARDED:
		return a->sh.index == 0;
	case T_SHARD:
		return a->sh.index != 0;
	case T_SERVING:
		return a->sh.index != 0 && a->drain == DRAIN_NO;
	}
	return false;
}

/* A table's name as this orchestrator's: a role (Q_*, K_*) or itself. */
static const char *
topo_name(const struct adapter *a, const char *name)
{
	static const struct {
		const char *role;
		size_t off;
	} roles[] = {
	        {Q_ORDERS, offsetof(struct adapter, orders_q)},
	        {Q_REPLIES, offsetof(struct adapter, replies_q)},
	        {Q_CONTROL, offsetof(struct adapter, control_q)},
	        {Q_PRESENCE, offsetof(struct adapter, presence_q)},
	        {K_REPLY_KEY, offsetof(struct adapter, sh.reply_key)},
	};
	for (size_t i = 0; name != NULL && i < ARRAY_LEN(roles); i++)
		if (strcmp(name, roles[i].role) == 0)
			return (const char *)a + roles[i].off;
	return name;
}

static void
topo_build(const struct adapter *a, struct orch_topology *t)
{
	struct bus_topology *tp = &t->topo;

	*tp = (struct bus_topology){
	        .exchanges = t->ex, .queues = t->qs, .bindings = t->bd};
	for (size_t i = 0; i < ARRAY_LEN(orch_exchanges); i++)
		if (topo_wanted(a, orch_exchanges[i].when))
			t->ex[tp->nexchanges++] = orch_exchanges[i].x;
	for (size_t i = 0; i < ARRAY_LEN(orch_queues); i++) {
		t->qs[i] = orch_queues[i];
		t->qs[i].name = topo_name(a, orch_queues[i].name);
	}
	tp->nqueues = ARRAY_LEN(orch_queues);
	for (size_t i = 0; i < ARRAY_LEN(orch_bindings); i++) {
		struct bus_binding *b = &t->bd[tp->nbindings];
		if (!topo_wanted(a, orch_bindings[i].when))
			continue;
		*b = orch_bindings[i].b;
		b->queue = topo_name(a, b->queue);
		b->key = topo_name(a, b->key);
		tp->nbindings++;
	}
	for (size_t i = 0; i < ARRAY_LEN(orch_consumed); i++)
		t->consume[i] = topo_name(a, orch_consumed[i]);
}

/* ---- start, run, stop ---- */

/* What orch_daemon_run holds; daemon_release frees it. */
struct daemon {
	const struct orch_daemon_config *cfg;
	struct adapter a;
	struct registry *reg;
	struct loop *l;
	size_t batch_max;
	struct console *console; /* its routes on a.http, or NULL */
	struct console_dlq *dlq; /* the /dlq pages on a.http, or NULL */
};

/* The shard, the database (claimed for the shard) and the charts. 0, or
 * the exit status. */
static int
daemon_open(struct daemon *d)
{
	const struct orch_daemon_config *cfg = d->cfg;
	struct adapter *a = &d->a;
	char err[8192];

	if (shard_parse(cfg->shard, &a->sh, err, sizeof(err)) != 0) {
		log_error("%s", err);
		return 2;
	}
	if (cfg->drain && a->sh.index == 0) {
		log_error("--drain is for a shard (--shard I/N)");
		return 2;
	}
	a->st = store_open(cfg->db, err, sizeof(err));
	if (a->st == NULL) {
		log_error("%s", err);
		return 1;
	}
	if (shard_claim(a->st, &a->sh, &a->times, err, sizeof(err)) != 0) {
		log_error("%s: %s", cfg->db, err);
		return 1;
	}
	d->reg = registry_new(a->st);
	if (d->reg == NULL ||
	    registry_load_dir(d->reg, cfg->statecharts, clock_wall_ms(), err,
	                      sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", d->reg == NULL ? "out of memory" : err);
		return 1;
	}
	a->reg = d->reg;
	return 0;
}

/* -n: what daemon_open loaded. */
static int
print_charts(struct registry *reg)
{
	const struct chart *cs[16];
	size_t n = registry_list(reg, cs, ARRAY_LEN(cs));

	for (size_t i = 0; i < n && i < ARRAY_LEN(cs); i++)
		printf("chart %s version %s (%s)\n", cs[i]->name,
		       cs[i]->version, cs[i]->file);
	printf("configuration ok\n");
	return 0;
}

/* This orchestrator's queues and reply key: the shard's, or for an
 * unsharded one with --reply-key KEY, KEY.replies. */
static void
name_queues(struct adapter *a, const char *reply_key)
{
	if (a->sh.index == 0 && strcmp(reply_key, "orchestrator") != 0)
		snprintf(a->sh.replies_q, sizeof(a->sh.replies_q), "%s.replies",
		         reply_key);
	if (a->sh.index == 0)
		snprintf(a->sh.reply_key, sizeof(a->sh.reply_key), "%s",
		         reply_key);
	snprintf(a->orders_q, sizeof(a->orders_q), "%s", a->sh.orders_q);
	snprintf(a->replies_q, sizeof(a->replies_q), "%s", a->sh.replies_q);
	snprintf(a->control_q, sizeof(a->control_q), "%s", a->sh.control_q);
	snprintf(a->presence_q, sizeof(a->presence_q), "%s.presence",
	         a->sh.replies_q);
}

static int
open_bus(struct adapter *a, const struct orch_daemon_config *cfg)
{
	struct orch_topology t;
	struct bus_config bc = {
	        .url = cfg->amqp,
	        .name = "saga-orchestrator",
	        .ca_file = getenv("SAGA_AMQP_CA"),
	        .cert_file = getenv("SAGA_AMQP_CERT"),
	        .key_file = getenv("SAGA_AMQP_KEY"),
	        .prefetch = (uint16_t)cfg->prefetch,
	        .queue_type = cfg->queue_type,
	        .topology = &t.topo,
	        .consume = t.consume,
	        .nconsume = ARRAY_LEN(t.consume),
	};
	char err[8192];

	topo_build(a, &t);
	for (size_t i = 0; i < t.topo.nqueues; i++)
		if (t.qs[i].stream && cfg->audit_max_age != NULL)
			t.qs[i].max_age = cfg->audit_max_age;
	a->bl.bus = bus_open(&bc, err, sizeof(err)); /* copies the topology */
	if (a->bl.bus == NULL) {
		log_error("%s", err);
		return -1;
	}
	return 0;
}

static int
start_http(struct adapter *a, const char *addr)
{
	char err[512];

	if (addr == NULL)
		return 0;
	a->http = http_listen(addr, err, sizeof(err));
	if (a->http == NULL) {
		log_error("%s", err);
		return -1;
	}
	log_info("http listening on port %d (/healthz, /metrics)",
	         http_port(a->http));
	return 0;
}

/* --otlp-url: the span exporter, or none. 0, or -1 (logged). */
static int
start_otlp(struct adapter *a, const char *url)
{
	char err[512];

	if (url == NULL || url[0] == '\0')
		return 0;
	a->otlp = otlp_start(url, "saga-orchestrator", err, sizeof(err));
	if (a->otlp == NULL) {
		log_error("%s", err);
		return -1;
	}
	log_info("exporting spans to %s", url);
	return 0;
}

/* Logs whom operator requests are taken from (--operator-user), and
 * warns when that is anyone who may write to the control exchange. */
static void
say_operator(const struct adapter *a, const char *user)
{
	if (user != NULL && user[0] != '\0')
		log_info("operator requests are taken from broker user \"%s\" "
		         "only (its validated AMQP user_id)",
		         user);
	else
		log_warnx("no --operator-user (SAGA_OPERATOR_USER): any broker "
		          "user with write access to %s (or to %s through the "
		          "default exchange) may act on sagas",
		          ORCH_EXCHANGE_CONTROL, a->control_q);
}

/* The processor and the durable loop over the adapter. */
static int
start_loop(struct daemon *d)
{
	const struct orch_daemon_config *cfg = d->cfg;
	struct adapter *a = &d->a;
	const struct durable_transport t = {
	        .ctx = a,
	        .publish = busloop_publish,
	        .settle = t_settle,
	        .poll = t_poll,
	        .stop_consuming = busloop_stop,
	        .unconfirmed = busloop_unconfirmed,
	        .flush = busloop_flush,
	        .ready = busloop_ready,
	};
	const struct durable_config lc = {
	        .batch_max = d->batch_max,
	        .batch_wait_ms = cfg->batch_wait_ms,
	        /* every queue's window can arrive at once */
	        .publish_window = 2000,
	        .inbox_retention_ms =
	                (int64_t)cfg->inbox_days * 24 * 3600 * 1000,
	        /* every participant announces itself in this time */
	        .reconnect_grace_ms = PRESENCE_LAPSE * PRESENCE_INTERVAL_MS,
	};
	struct orch_config oc = {.reply_to = a->sh.reply_key,
	                         .absent = absent,
	                         .absent_arg = a,
	                         .on_step = orch_metrics_on_step,
	                         .on_status = orch_metrics_on_status};

	a->m = orch_metrics_new();
	if (a->m == NULL) {
		log_error("out of memory");
		return -1;
	}
	oc.observer_arg = a->m;

	if (start_otlp(a, cfg->otlp_url) != 0)
		return -1;
	oc.otlp = a->otlp;
	a->o = orch_new(a->st, d->reg, &oc);
	d->l = a->o != NULL ? loop_new(a->st, a->o, &t, &lc) : NULL;
	if (d->l == NULL) {
		log_error("out of memory");
		return -1;
	}
	loop_observe(d->l, orch_metrics_batches(a->m));
	loop_set_operator(d->l, cfg->operator_user);
	say_operator(a, cfg->operator_user);
	return 0;
}

/* The console's actions: operator requests through the loop's mailbox
 * (loop_operate), called on HTTP threads. */
static int
console_operate(void *arg, struct loop_op *ops, size_t n, int timeout_ms,
                char *err, size_t errlen)
{
	struct daemon *d = arg;
	return loop_operate(d->l, ops, n, timeout_ms, err, errlen);
}

/* The console on the HTTP listener, once the loop exists. */
static int
start_console(struct daemon *d)
{
	const struct orch_daemon_config *cfg = d->cfg;
	struct console_config cc = {
	        .db_path = cfg->db,
	        .listen = cfg->http,
	        .users_file = cfg->console_users,
	        .trust_header = cfg->console_trust_header,
	        .audit_amqp = cfg->dlq_amqp,
	        .operate = console_operate,
	        .operate_arg = d,
	};
	char err[512];

	if (d->a.http == NULL)
		return 0;
	d->console = console_start(d->a.http, &cc, err, sizeof(err));
	if (d->console != NULL)
		d->dlq = console_dlq_start(d->a.http, d->console, cfg->amqp,
		                           cfg->mgmt_url, cfg->dlq_amqp, err,
		                           sizeof(err));
	if (d->console == NULL || d->dlq == NULL) {
		log_error("%s", err);
		return -1;
	}
	return 0;
}

/* Everything after daemon_open, up to the loop. 0, or -1 (logged). */
static int
daemon_start(struct daemon *d, volatile sig_atomic_t *stop)
{
	const struct orch_daemon_config *cfg = d->cfg;
	struct adapter *a = &d->a;
	char err[8192];

	name_queues(a, cfg->reply_key);
	a->stop = stop;
	a->drain = cfg->drain ? DRAIN_ANNOUNCE : DRAIN_NO;
	assert(cfg->max_order_kib >= 1 &&
	       cfg->max_order_kib <= ORCH_MAX_ORDER_KIB_MAX);
	a->max_order = (size_t)cfg->max_order_kib * 1024;
	d->batch_max = (size_t)cfg->batch;
	if ((size_t)cfg->prefetch * 3 > d->batch_max)
		d->batch_max = (size_t)cfg->prefetch * 3;
	if (open_bus(a, cfg) != 0)
		return -1;
	a->bl.bundler = bundler_new((size_t)cfg->bundle);
	a->bl.copy_exchange = DLX;
	a->bl.copy_dlq_key = DLQ;
	a->bl.copy_retry_ms = DLQ_RETRY_MS;
	a->presence = presence_new();
	if (a->bl.bundler == NULL || a->presence == NULL) {
		log_error("out of memory");
		return -1;
	}
	if (start_http(a, cfg->http) != 0)
		return -1;
	if (bus_connect(a->bl.bus, err, sizeof(err)) != 0)
		log_warnx("cannot connect yet (%s); retrying", err);
	return start_loop(d) == 0 && start_console(d) == 0 ? 0 : -1;
}

/* A drained shard's last act: its queues go (its database stays). */
static void
delete_queues(const struct adapter *a)
{
	for (size_t i = 0; i < ARRAY_LEN(orch_consumed); i++) {
		const char *q = topo_name(a, orch_consumed[i]);
		if (bus_queue_delete(a->bl.bus, q, true) != 0)
			log_warnx("cannot delete %s: delete it by hand once "
			          "empty",
			          q);
	}
	log_info("drained: every saga of this shard is finished; its "
	         "queues are gone and its database stays for history");
}

/* The loop until *stop, then the drain. The exit status. */
static int
daemon_loop(struct daemon *d, volatile sig_atomic_t *stop,
            volatile sig_atomic_t *reload)
{
	const struct orch_daemon_config *cfg = d->cfg;
	struct reload_ctx rctx = {d->reg, cfg->statecharts};
	int rc;

	log_info("running: db=%s statecharts=%s batch=%zu "
	         "prefetch=%d bundle=%d shard=%d/%d%s",
	         cfg->db, cfg->statecharts, d->batch_max, cfg->prefetch,
	         cfg->bundle, d->a.sh.index, d->a.sh.count,
	         cfg->drain ? " (draining)" : "");
	rc = loop_run(d->l, stop, reload, on_reload, &rctx, 10000) == 0 ? 0 : 1;
	log_info("stopped (%s)", rc == 0 ? "drained" : "not drained");
	if (d->a.drained)
		delete_queues(&d->a);
	return rc;
}

static void
daemon_release(struct daemon *d)
{
	struct adapter *a = &d->a;

	http_close(a->http);
	console_free(d->console);
	console_dlq_free(d->dlq);
	loop_free(d->l);
	orch_free(a->o);
	otlp_stop(a->otlp); /* posts the spans still queued */
	orch_metrics_free(a->m);
	busloop_close(&a->bl);
	presence_free(a->presence);
	registry_free(d->reg);
	store_close(a->st);
}

int
orch_daemon_run(const struct orch_daemon_config *cfg, int check_only,
                volatile sig_atomic_t *stop, volatile sig_atomic_t *reload)
{
	struct daemon d = {.cfg = cfg};
	int rc;

	d.a.disk_free = -1; /* unknown until publish_http looks */
	rc = daemon_open(&d);
	if (rc == 0 && check_only)
		rc = print_charts(d.reg);
	else if (rc == 0)
		rc = daemon_start(&d, stop) == 0 ? daemon_loop(&d, stop, reload)
		                                 : 1;
	daemon_release(&d);
	return rc;
}

/* daemon.c -- saga-orchestrator's wiring (see daemon.h): the store, the
 * chart registry, the processor, the durable loop and, behind the loop's
 * transport interface, the AMQP bus.
 *
 * The transport adapter is small on purpose: deliveries are mapped to a
 * source by the queue they came from, outbox rows become bus messages
 * (commands are mandatory, so a command nobody is bound to receive is
 * reported instead of vanishing), and settling is one `ack` per accepted
 * delivery. A refused delivery is not rejected: RabbitMQ cannot add a
 * header to a dead-lettered message, and the reason belongs with it. So a
 * copy goes to orchestrator.dlq with the reason in `x-saga-error` ("from
 * QUEUE: reason"), and the original is acked once the broker confirms the
 * copy. The adapter therefore holds each delivery's bytes until the loop
 * settles it. The adapter acks each accepted delivery; the bus coalesces
 * them into `ack multiple` without ever covering an unsettled one, so a
 * refusal in the middle of a batch cannot be acked by mistake (NOTES
 * pitfall 7).
 *
 * Bundles (bundler.h): the commands one pass over the outbox makes ready
 * for one participant queue go out as one message, and a bundle of replies
 * is handed to the loop item by item, each with a reference of its own;
 * the bundle's delivery is acked once every item is settled.
 */
#include "clock.h"
#include "daemon.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundler.h"
#include "bus.h"
#include "envelope.h"
#include "console.h"
#include "http.h"
#include "log.h"
#include "loop.h"
#include "orch.h"
#include "presence.h"
#include "registry.h"
#include "shard.h"
#include "store.h"

#define DLX "saga.dlx"

int
daemon_parse_count(const char *s, int min, int max, int *out)
{
	char *end;
	long v;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = (int)v;
	return 0;
}

/* ---- metrics: a few counters and one histogram, rendered in the
 * Prometheus text format (0.0.4) for GET /metrics ---- */

#define MAX_CHARTS 16
#define MAX_STEPS  128
static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                 1,     2.5,  5,     10,   30,  60};
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

struct chart_counts {
	char chart[CHART_NAME_MAX];
	uint64_t started, completed, failed, stuck, aborted, cancelled;
};

struct step_hist {
	char chart[CHART_NAME_MAX], state[CHART_NAME_MAX];
	uint64_t b[NBUCKETS], count;
	double sum;
};

struct metrics {
	struct chart_counts c[MAX_CHARTS];
	size_t nc;
	struct step_hist h[MAX_STEPS];
	size_t nh;
};

static struct chart_counts *
counts_for(struct metrics *m, const char *chart)
{
	for (size_t i = 0; i < m->nc; i++)
		if (strcmp(m->c[i].chart, chart) == 0)
			return &m->c[i];
	if (m->nc == MAX_CHARTS)
		return NULL;
	snprintf(m->c[m->nc].chart, sizeof(m->c[0].chart), "%s", chart);
	return &m->c[m->nc++];
}

static void
on_status(void *arg, const char *chart, enum saga_status st)
{
	struct chart_counts *c = counts_for(arg, chart);
	if (c == NULL)
		return;
	switch (st) {
	case SAGA_RUNNING:
		c->started++;
		break;
	case SAGA_COMPLETED:
		c->completed++;
		break;
	case SAGA_FAILED:
		c->failed++;
		break;
	case SAGA_STUCK:
		c->stuck++;
		break;
	case SAGA_ABORTED:
		c->aborted++;
		break;
	case SAGA_CANCELLED:
		c->cancelled++;
		break;
	case SAGA_COMPENSATING:
		break;
	}
}

static void
on_step(void *arg, const char *chart, const char *state, double seconds)
{
	struct metrics *m = arg;
	struct step_hist *h = NULL;
	for (size_t i = 0; i < m->nh && h == NULL; i++)
		if (strcmp(m->h[i].chart, chart) == 0 &&
		    strcmp(m->h[i].state, state) == 0)
			h = &m->h[i];
	if (h == NULL) {
		if (m->nh == MAX_STEPS)
			return;
		h = &m->h[m->nh++];
		snprintf(h->chart, sizeof(h->chart), "%s", chart);
		snprintf(h->state, sizeof(h->state), "%s", state);
	}
	for (size_t i = 0; i < NBUCKETS; i++)
		if (seconds <= buckets[i])
			h->b[i]++;
	h->count++;
	h->sum += seconds;
}

struct adapter {
	struct bus *bus;
	struct loop *l;
	struct http *http;
	struct store *st;
	struct orch *o;
	struct metrics m;
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
	uint64_t reply_bundles; /* bundles of replies received */
	bool drained; /* draining found nothing left: delete the queues */
	/* deliveries not yet settled: kept for a dead-letter copy */
	struct held *held;
	size_t nheld, capheld;
	struct bundler *bundler;
	struct presence *presence; /* who takes commands (lib/presence.h) */
	int64_t http_published_ms;
	uint64_t presence_heard;
	/* bytes left where the database is, at the last publish; -1 unknown */
	long long disk_free;
};

/* A delivery's bytes and properties, one allocation. */
struct held {
	uint64_t ref;
	char *mem; /* queue, message_id, type, correlation_id, traceparent,
	            * content_type, then the body */
	const char *queue, *message_id, *type, *correlation_id, *traceparent,
	        *content_type;
	const void *body;
	size_t len;
	int64_t timestamp_ms;
};

/* Tags of dead-letter copies have the top bit set; outbox tags are seqs;
 * the ring-change notice has the next bit. */
#define DLQ_TAG    (UINT64_C(1) << 63)
#define NOTICE_TAG (UINT64_C(1) << 62)
#define DLQ        "orchestrator.dlq"

static void
counter(struct http_response *r, const char *name, const char *help,
        const char *type)
{
	http_printf(r, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
render_metrics(struct adapter *a, struct http_response *r)
{
	static const struct {
		const char *name, *help;
		size_t off;
	} per_chart[] = {
	        {"saga_started_total", "Sagas started.",
	         offsetof(struct chart_counts, started)},
	        {"saga_completed_total", "Sagas completed.",
	         offsetof(struct chart_counts, completed)},
	        {"saga_failed_total", "Sagas failed (compensated).",
	         offsetof(struct chart_counts, failed)},
	        {"saga_stuck_total", "Sagas left stuck for an operator.",
	         offsetof(struct chart_counts, stuck)},
	        {"saga_aborted_total", "Sagas aborted by an operator.",
	         offsetof(struct chart_counts, aborted)},
	        {"saga_cancelled_total", "Sagas cancelled by the customer.",
	         offsetof(struct chart_counts, cancelled)},
	};
	const struct orch_stats *os = orch_stats(a->o);
	const struct loop_stats *ls = loop_stats(a->l);
	int64_t depth = -1;

	for (size_t k = 0; k < sizeof(per_chart) / sizeof(per_chart[0]); k++) {
		counter(r, per_chart[k].name, per_chart[k].help, "counter");
		for (size_t i = 0; i < a->m.nc; i++)
			http_printf(
			        r, "%s{chart=\"%s\"} %llu\n", per_chart[k].name,
			        a->m.c[i].chart,
			        (unsigned long long)*(
			                const uint64_t *)((const char *)&a->m
			                                          .c[i] +
			                                  per_chart[k].off));
	}
	counter(r, "saga_step_duration_seconds",
	        "Time from entering a state to leaving it.", "histogram");
	for (size_t i = 0; i < a->m.nh; i++) {
		const struct step_hist *h = &a->m.h[i];
		for (size_t b = 0; b < NBUCKETS; b++)
			http_printf(r,
			            "saga_step_duration_seconds_bucket{chart="
			            "\"%s\",state=\"%s\",le=\"%g\"} %llu\n",
			            h->chart, h->state, buckets[b],
			            (unsigned long long)h->b[b]);
		http_printf(r,
		            "saga_step_duration_seconds_bucket{chart=\"%s\","
		            "state=\"%s\",le=\"+Inf\"} %llu\n"
		            "saga_step_duration_seconds_sum{chart=\"%s\","
		            "state=\"%s\"} %.6f\n"
		            "saga_step_duration_seconds_count{chart=\"%s\","
		            "state=\"%s\"} %llu\n",
		            h->chart, h->state, (unsigned long long)h->count,
		            h->chart, h->state, h->sum, h->chart, h->state,
		            (unsigned long long)h->count);
	}
	if (store_outbox_count(a->st, &depth) != 0)
		depth = -1;
	counter(r, "saga_outbox_depth",
	        "Messages committed and not yet confirmed by the broker.",
	        "gauge");
	http_printf(r, "saga_outbox_depth %lld\n", (long long)depth);
	counter(r, "saga_duplicates_dropped_total",
	        "Messages dropped as already processed.", "counter");
	http_printf(r, "saga_duplicates_dropped_total %llu\n",
	            (unsigned long long)os->duplicates);
	counter(r, "saga_dead_lettered_total",
	        "Messages rejected to the dead-letter queue.", "counter");
	http_printf(r, "saga_dead_lettered_total %llu\n",
	            (unsigned long long)ls->dead_lettered);
	counter(r, "saga_messages_published_total",
	        "Commands and events handed to the broker (outbox rows).",
	        "counter");
	http_printf(r, "saga_messages_published_total %llu\n",
	            (unsigned long long)ls->published);
	counter(r, "saga_amqp_published_total",
	        "AMQP messages published (a bundle of commands counts once).",
	        "counter");
	http_printf(r, "saga_amqp_published_total %llu\n",
	            (unsigned long long)bus_stats(a->bus)->published);
	counter(r, "saga_reply_bundles_total",
	        "Bundles of replies received (each item counts as a reply).",
	        "counter");
	http_printf(r, "saga_reply_bundles_total %llu\n",
	            (unsigned long long)a->reply_bundles);
	counter(r, "saga_inbox_pruned_total",
	        "Processed message ids deleted from the inbox after "
	        "--inbox-days.",
	        "counter");
	http_printf(r, "saga_inbox_pruned_total %llu\n",
	            (unsigned long long)ls->inbox_pruned);
	counter(r, "saga_batches_total", "Transactions committed.", "counter");
	http_printf(r, "saga_batches_total %llu\n",
	            (unsigned long long)ls->batches);
	counter(r, "saga_commit_failures_total",
	        "Batches whose commit failed (retried).", "counter");
	http_printf(r, "saga_commit_failures_total %llu\n",
	            (unsigned long long)ls->commit_failures);
	if (a->sh.index > 0) {
		counter(r, "saga_shard",
		        "This shard's index, labelled with the "
		        "shard count.",
		        "gauge");
		http_printf(r, "saga_shard{count=\"%d\"} %d\n", a->sh.count,
		            a->sh.index);
		counter(r, "saga_shard_refused_total",
		        "order.created refused: another shard may own it.",
		        "counter");
		http_printf(r, "saga_shard_refused_total %llu\n",
		            (unsigned long long)a->refused);
	}
	counter(r, "saga_participants_present",
	        "Participant instances heard announcing themselves lately.",
	        "gauge");
	http_printf(r, "saga_participants_present %zu\n",
	            presence_live(a->presence, clock_wall_ms()));
	counter(r, "saga_presence_heard_total",
	        "Participant announcements received.", "counter");
	http_printf(r, "saga_presence_heard_total %llu\n",
	            (unsigned long long)a->presence_heard);
	counter(r, "saga_bus_connected", "1 while connected to the broker.",
	        "gauge");
	http_printf(r, "saga_bus_connected %d\n", bus_connected(a->bus));
	counter(r, "saga_bus_reconnects_total", "Reconnections to the broker.",
	        "counter");
	http_printf(r, "saga_bus_reconnects_total %llu\n",
	            (unsigned long long)bus_stats(a->bus)->reconnects);
	if (a->disk_free >= 0) {
		counter(r, "saga_disk_free_bytes",
		        "Bytes left on the database's file system.", "gauge");
		http_printf(r, "saga_disk_free_bytes %lld\n", a->disk_free);
	}
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
	if (!loop_healthy(a->l, &why))
		return why[0] ? why : "commits fail";
	if (a->disk_free >= 0 && a->disk_free < DISK_RESERVE_BYTES) {
		snprintf(buf, cap,
		         "disk full: %lld KiB left where the database is, "
		         "below the %lld MiB reserve",
		         a->disk_free >> 10, DISK_RESERVE_BYTES >> 20);
		return buf;
	}
	if (!bus_connected(a->bus))
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
	render_metrics(a, &r);
	if (!r.oom)
		http_publish(a->http, "/metrics", 200,
		             "text/plain; version=0.0.4", r.body, r.len,
		             HTTP_STALE_MS);
	free(r.body);
}

/* Keeps a copy of a delivery until it is settled. */
static int
hold(struct adapter *a, const struct bus_delivery *d)
{
	const char *f[6] = {d->queue,          d->message_id,  d->type,
	                    d->correlation_id, d->traceparent, d->content_type};
	size_t n = d->len, l[6];
	struct held *h;
	char *w;

	for (int i = 0; i < 6; i++)
		n += (l[i] = strlen(f[i] != NULL ? f[i] : "")) + 1;
	if (a->nheld == a->capheld) {
		size_t cap = a->capheld ? a->capheld * 2 : 256;
		struct held *nh = realloc(a->held, cap * sizeof(*nh));
		if (nh == NULL)
			return -1;
		a->held = nh;
		a->capheld = cap;
	}
	h = &a->held[a->nheld];
	h->mem = malloc(n + 1);
	if (h->mem == NULL)
		return -1;
	w = h->mem;
	for (int i = 0; i < 6; i++) {
		const char **dst[6] = {&h->queue,       &h->message_id,
		                       &h->type,        &h->correlation_id,
		                       &h->traceparent, &h->content_type};
		memcpy(w, f[i] != NULL ? f[i] : "", l[i] + 1);
		*dst[i] = w;
		w += l[i] + 1;
	}
	if (d->len > 0)
		memcpy(w, d->body, d->len);
	h->body = w;
	h->len = d->len;
	h->ref = d->ref;
	h->timestamp_ms = d->timestamp_ms;
	a->nheld++;
	return 0;
}

/* The held copy of ref (NULL if none). */
static struct held *
held_find(struct adapter *a, uint64_t ref)
{
	for (size_t i = 0; i < a->nheld; i++)
		if (a->held[i].ref == ref)
			return &a->held[i];
	return NULL;
}

static void
held_drop(struct adapter *a, uint64_t ref)
{
	struct held *h = held_find(a, ref);
	if (h == NULL)
		return;
	free(h->mem);
	*h = a->held[--a->nheld];
}

/* A delivery (or a bundle's item) is done with: acked, or rejected to its
 * queue's dead-letter exchange without a reason (no copy could be made).
 * An item's bundle is acked once all its items are; a rejected item takes
 * its whole bundle with it. */
static void
settle_ref(struct adapter *a, uint64_t ref, bool reject)
{
	uint64_t target = ref;
	enum bundler_settle s;

	held_drop(a, ref);
	s = bundler_settle(a->bundler, ref, reject, &target);
	if (s == BUNDLER_REJECT || (s == BUNDLER_PLAIN && reject))
		bus_reject(a->bus, target, false);
	else if (s != BUNDLER_WAIT)
		bus_ack(a->bus, target, false);
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
	bus_ack(a->bus, d->ref, false);
}

/* A shard is in the ring once it is connected with its topology, its
 * orders queue bound: the first time, that is when it joined (shard.h),
 * the time the bus declared it (before consuming, so no order it hands
 * over was published after that and judged before). A draining shard
 * does not bind its orders queue. */
static void
note_joined(struct adapter *a)
{
	int64_t at = bus_stats(a->bus)->declared_ms;
	if (a->sh.index == 0 || a->times.joined_ms != 0 ||
	    a->drain != DRAIN_NO || !bus_connected(a->bus) || at <= 0)
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
	if (bundler_items(a->bundler, d->ref, b.n, &first) != 0) {
		log_error("out of memory: a bundle of replies waits for "
		          "redelivery");
		envelope_bundle_clear(&b);
		return;
	}
	for (size_t i = 0; i < b.n; i++) {
		struct bus_delivery item = *d;
		struct loop_delivery ld = {
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
		loop_deliver(a->l, &ld);
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
	if (bus_ack(a->bus, d->ref, false) != 0)
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
	struct loop_delivery ld = {
	        .ref = d->ref,
	        .body = d->body,
	        .len = d->len,
	        .message_id = d->message_id,
	        .content_type = d->content_type,
	        .traceparent = d->traceparent,
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
	if (strcmp(d->queue, a->orders_q) == 0 && guard_order(a, d))
		return;
	if (strcmp(d->queue, a->orders_q) == 0)
		ld.source = SRC_ORDERS;
	else if (strcmp(d->queue, a->control_q) == 0)
		ld.source = SRC_CONTROL;
	else
		ld.source = SRC_REPLIES;
	loop_deliver(a->l, &ld);
}

/* The broker's answer for a bundle, passed on to each of its rows. */
struct row_answer {
	struct loop *l;
	enum loop_confirm c;
};

static void
row_confirmed(void *arg, uint64_t tag)
{
	const struct row_answer *r = arg;
	loop_confirmed(r->l, tag, r->c);
}

static void
on_confirm(void *arg, uint64_t tag, enum bus_confirm c)
{
	struct adapter *a = arg;
	struct row_answer r = {a->l,
	                       c == BUS_ACK ? CONFIRM_ACK : CONFIRM_RETURNED};
	if (tag & DLQ_TAG) { /* the copy is safe: drop the original */
		settle_ref(a, tag & ~DLQ_TAG, false);
		return;
	}
	if (tag & NOTICE_TAG) { /* every shard has heard: leave the ring */
		if (a->drain == DRAIN_ANNOUNCED)
			a->drain = DRAIN_UNBIND;
		return;
	}
	if (bundler_confirmed(a->bundler, tag, row_confirmed, &r) == 0)
		row_confirmed(&r, tag); /* a row published alone */
}

static int
publish_fn(void *arg, const struct bus_message *m, uint64_t tag)
{
	struct adapter *a = arg;
	return bus_publish(a->bus, m, tag);
}

static void
t_flush(void *ctx)
{
	struct adapter *a = ctx;
	bundler_flush(a->bundler, publish_fn, a);
}

static int
t_publish(void *ctx, const struct store_outbox *m, uint64_t tag)
{
	struct adapter *a = ctx;
	struct bus_message bm = {
	        .exchange = m->exchange,
	        .routing_key = m->routing_key,
	        .message_id = m->message_id,
	        .correlation_id = m->saga_id,
	        .type = m->type,
	        .reply_to = m->reply_to,
	        .traceparent = m->traceparent,
	        .timestamp_ms = m->created_ms,
	        .mandatory = strcmp(m->exchange, ORCH_EXCHANGE_COMMANDS) == 0,
	        .body = m->body,
	        .len = m->body_len,
	};
	if (bm.mandatory &&
	    bundler_hold(a->bundler, &bm, tag, publish_fn, a) == 0)
		return 0; /* goes out at t_flush, maybe with others */
	return bus_publish(a->bus, &bm, tag);
}

static int
t_settle(void *ctx, const uint64_t *acks, size_t nacks, const uint64_t *rejects,
         const char *const *reasons, size_t nrej)
{
	struct adapter *a = ctx;

	for (size_t i = 0; i < nrej; i++)
		dead_letter(a, rejects[i], reasons[i]);
	for (size_t i = 0; i < nacks; i++)
		settle_ref(a, acks[i], false);
	return 0;
}

/* A copy of a held delivery to orchestrator.dlq with the reason; the
 * original is acked when the copy is confirmed (on_confirm). */
static void
dead_letter(struct adapter *a, uint64_t ref, const char *reason)
{
	const struct held *h = held_find(a, ref);
	char why[512];
	struct bus_message m = {0};
	struct envelope e;
	if (h == NULL) { /* no copy (out of memory): reject, no reason */
		settle_ref(a, ref, true);
		return;
	}
	envelope_init(&e);
	if (h->message_id[0] == '\0' &&
	    envelope_decode(h->body, h->len, &e, why, sizeof(why)) != 0)
		envelope_clear(&e); /* an item: its own properties if it has
		                     * them */
	snprintf(why, sizeof(why), "from %s: %s", h->queue, reason);
	m.exchange = "";
	m.routing_key = DLQ;
	m.message_id = h->message_id[0] ? h->message_id
	               : e.id[0]        ? e.id
	                                : "unknown";
	m.correlation_id = h->correlation_id[0] ? h->correlation_id
	                   : e.saga[0]          ? e.saga
	                                        : NULL;
	m.type = h->type[0] ? h->type : e.type[0] ? e.type : NULL;
	m.traceparent = h->traceparent[0] ? h->traceparent : NULL;
	m.content_type = h->content_type[0] ? h->content_type : NULL;
	m.error = why;
	m.timestamp_ms = h->timestamp_ms;
	m.body = h->body;
	m.len = h->len;
	if (bus_publish(a->bus, &m, ref | DLQ_TAG) != 0)
		settle_ref(a, ref, true);
	else
		held_drop(a, ref);
	envelope_clear(&e);
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
	if (bus_publish(a->bus, &m, NOTICE_TAG) != 0)
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

	if (!bus_connected(a->bus))
		return;
	if (a->drain == DRAIN_ANNOUNCE) {
		if (ring_notice_publish(a, now) == 0) {
			a->announced_ms = now;
			a->drain = DRAIN_ANNOUNCED;
		}
		return;
	}
	if (a->drain == DRAIN_UNBIND) {
		if (bus_unbind(a->bus, SHARD_EXCHANGE, a->orders_q,
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
	if (bus_queue_info(a->bus, a->orders_q, &ready, &consumers) != 0)
		return;
	if (ready > 0 || left > 0 || outbox > 0 || a->nheld > 0) {
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
t_poll(void *ctx, struct loop *l, int timeout_ms)
{
	struct adapter *a = ctx;
	struct bus_handlers h = {on_delivery, on_confirm, a};
	a->l = l;
	bus_poll(a->bus, timeout_ms, &h);
	note_joined(a);
	if (a->drain != DRAIN_NO)
		drain_step(a);
	publish_http(a);
	return 0;
}

static bool
t_ready(void *ctx)
{
	struct adapter *a = ctx;
	return bus_connected(a->bus) && !bus_blocked(a->bus);
}

static int
t_stop(void *ctx)
{
	struct adapter *a = ctx;
	return bus_cancel(a->bus);
}

static size_t
t_unconfirmed(void *ctx)
{
	struct adapter *a = ctx;
	return bus_unconfirmed(a->bus) + bundler_rows_extra(a->bundler);
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

int
orch_daemon_run(const struct orch_daemon_config *cfg, int check_only,
                volatile sig_atomic_t *stop, volatile sig_atomic_t *reload)
{
	char err[8192];
	struct store *st = NULL;
	struct registry *reg = NULL;
	struct orch *o = NULL;
	struct loop *l = NULL;
	struct console *con = NULL;
	struct bus *bus = NULL;
	struct adapter a;
	int rc = 1;

	memset(&a, 0, sizeof(a));
	a.disk_free = -1;
	if (shard_parse(cfg->shard, &a.sh, err, sizeof(err)) != 0) {
		log_error("%s", err);
		return 2;
	}
	if (cfg->drain && a.sh.index == 0) {
		log_error("--drain is for a shard (--shard I/N)");
		return 2;
	}
	st = store_open(cfg->db, err, sizeof(err));
	if (st == NULL) {
		log_error("%s", err);
		return 1;
	}
	if (shard_claim(st, &a.sh, &a.times, err, sizeof(err)) != 0) {
		log_error("%s: %s", cfg->db, err);
		goto out;
	}
	reg = registry_new(st);
	if (reg == NULL ||
	    registry_load_dir(reg, cfg->statecharts, clock_wall_ms(), err,
	                      sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", reg == NULL ? "out of memory" : err);
		goto out;
	}
	if (check_only) {
		const struct chart *cs[16];
		size_t n = registry_list(reg, cs, 16);
		for (size_t i = 0; i < n && i < 16; i++)
			printf("chart %s version %s (%s)\n", cs[i]->name,
			       cs[i]->version, cs[i]->file);
		printf("configuration ok\n");
		rc = 0;
		goto out;
	}

	if (a.sh.index == 0 && strcmp(cfg->reply_key, "orchestrator") != 0)
		snprintf(a.sh.replies_q, sizeof(a.sh.replies_q), "%s.replies",
		         cfg->reply_key);
	if (a.sh.index == 0)
		snprintf(a.sh.reply_key, sizeof(a.sh.reply_key), "%s",
		         cfg->reply_key);
	snprintf(a.orders_q, sizeof(a.orders_q), "%s", a.sh.orders_q);
	snprintf(a.replies_q, sizeof(a.replies_q), "%s", a.sh.replies_q);
	snprintf(a.control_q, sizeof(a.control_q), "%s", a.sh.control_q);
	/* participants' announcements: short-lived, never dead-lettered */
	snprintf(a.presence_q, sizeof(a.presence_q), "%s.presence",
	         a.sh.replies_q);
	a.stop = stop;
	a.drain = cfg->drain ? DRAIN_ANNOUNCE : DRAIN_NO;
	{
		const struct bus_exchange ex[] = {
		        {ORCH_EXCHANGE_EVENTS, "topic", NULL, NULL},
		        {ORCH_EXCHANGE_COMMANDS, "topic", NULL, NULL},
		        {ORCH_EXCHANGE_REPLIES, "direct", NULL, NULL},
		        {DLX, "direct", NULL, NULL},
		        {PRESENCE_EXCHANGE, "fanout", NULL, NULL},
		        /* shards: order ids hashed over the orders queues */
		        {SHARD_EXCHANGE, "x-consistent-hash", NULL,
		         "correlation_id"},
		        {SHARD_RING, "fanout", NULL, NULL},
		};
		const struct bus_queue qs[] = {
		        {.name = a.orders_q,
		         .dlx = DLX,
		         .dlrk = "orchestrator.dlq"},
		        {.name = a.replies_q,
		         .dlx = DLX,
		         .dlrk = "orchestrator.dlq"},
		        {.name = a.control_q,
		         .dlx = DLX,
		         .dlrk = "orchestrator.dlq"},
		        {.name = "orchestrator.dlq"},
		        /* of the deployment's queue type: a classic queue
		         * is down with its node, and the orchestrator could
		         * not connect to the rest of a cluster */
		        {.name = a.presence_q,
		         .ttl_ms = PRESENCE_TTL_MS,
		         .max_length = 10000},
		        /* every domain event, kept for audit (the demo
		         * prints it); declared here, by the events' one
		         * publisher of order.* besides order-api */
		        {.name = "audit"},
		};
		const struct bus_binding bd_common[] = {
		        {ORCH_EXCHANGE_REPLIES, a.replies_q, NULL,
		         a.sh.reply_key},
		        {DLX, "orchestrator.dlq", NULL, "orchestrator.dlq"},
		        {ORCH_EXCHANGE_EVENTS, "audit", NULL, "order.#"},
		        {PRESENCE_EXCHANGE, a.presence_q, NULL, ""},
		        /* unsharded: order.created and cancels straight to
		         * the queue */
		        {ORCH_EXCHANGE_EVENTS, a.orders_q, NULL,
		         "order.created"},
		        {ORCH_EXCHANGE_EVENTS, a.orders_q, NULL,
		         ORCH_CANCEL_TYPE},
		};
		const struct bus_binding bd_shard[] = {
		        bd_common[0],
		        bd_common[1],
		        bd_common[2],
		        bd_common[3],
		        /* sharded: through the ring (a cancel reaches its
		         * order's shard: the ring hashes the order id), and
		         * told of changes */
		        {ORCH_EXCHANGE_EVENTS, NULL, SHARD_EXCHANGE,
		         "order.created"},
		        {ORCH_EXCHANGE_EVENTS, NULL, SHARD_EXCHANGE,
		         ORCH_CANCEL_TYPE},
		        {SHARD_RING, a.control_q, NULL, ""},
		        {SHARD_EXCHANGE, a.orders_q, NULL, SHARD_WEIGHT},
		};
		/* a draining shard does not bind its orders queue: drain_step
		 * unbinds it once the other shards have been told */
		const struct bus_topology topo =
		        a.sh.index == 0
		                ? (struct bus_topology){ex, 5,         qs,
		                                        6,  bd_common, 6}
		                : (struct bus_topology){
		                          ex,
		                          7,
		                          qs,
		                          6,
		                          bd_shard,
		                          a.drain != DRAIN_NO ? 7 : 8};
		const char *consume[] = {a.orders_q, a.replies_q, a.control_q,
		                         a.presence_q};
		struct bus_config bc = {
		        .url = cfg->amqp,
		        .name = "saga-orchestrator",
		        .ca_file = getenv("SAGA_AMQP_CA"),
		        .cert_file = getenv("SAGA_AMQP_CERT"),
		        .key_file = getenv("SAGA_AMQP_KEY"),
		        .prefetch = (uint16_t)cfg->prefetch,
		        .queue_type = cfg->queue_type,
		        .topology = &topo,
		        .consume = consume,
		        .nconsume = 4,
		};
		struct loop_transport t = {
		        .ctx = &a,
		        .publish = t_publish,
		        .settle = t_settle,
		        .poll = t_poll,
		        .stop_consuming = t_stop,
		        .unconfirmed = t_unconfirmed,
		        .flush = t_flush,
		        .ready = t_ready,
		};
		struct loop_config lc = {
		        .batch_max = (size_t)cfg->batch,
		        .batch_wait_ms = cfg->batch_wait_ms,
		        /* every queue's window can arrive at once */
		        .publish_window = 2000,
		        .inbox_retention_ms =
		                (int64_t)cfg->inbox_days * 24 * 3600 * 1000,
		        /* every participant announces itself in this time */
		        .reconnect_grace_ms =
		                PRESENCE_LAPSE * PRESENCE_INTERVAL_MS,
		};
		struct orch_config oc = {.reply_to = a.sh.reply_key,
		                         .absent = absent,
		                         .absent_arg = &a,
		                         .on_step = on_step,
		                         .on_status = on_status,
		                         .observer_arg = &a.m};
		struct reload_ctx rctx = {reg, cfg->statecharts};

		if ((size_t)cfg->prefetch * 3 > lc.batch_max)
			lc.batch_max = (size_t)cfg->prefetch * 3;
		bus = bus_open(&bc, err, sizeof(err));
		if (bus == NULL) {
			log_error("%s", err);
			goto out;
		}
		a.bus = bus;
		a.st = st;
		a.bundler = bundler_new((size_t)cfg->bundle);
		a.presence = presence_new();
		if (a.bundler == NULL || a.presence == NULL) {
			log_error("out of memory");
			goto out;
		}
		if (cfg->http != NULL) {
			a.http = http_listen(cfg->http, err, sizeof(err));
			if (a.http == NULL) {
				log_error("%s", err);
				goto out;
			}
			con = console_start(a.http, cfg->db, err, sizeof(err));
			if (con == NULL) {
				log_error("%s", err);
				goto out;
			}
			log_info("http listening on port %d (/healthz, "
			         "/metrics, the console)",
			         http_port(a.http));
		}
		if (bus_connect(bus, err, sizeof(err)) != 0)
			log_warnx("cannot connect yet (%s); retrying", err);
		o = orch_new(st, reg, &oc);
		a.o = o;
		l = o != NULL ? loop_new(st, o, &t, &lc) : NULL;
		if (l == NULL) {
			log_error("out of memory");
			goto out;
		}
		log_info("running: db=%s statecharts=%s batch=%zu "
		         "prefetch=%d bundle=%d shard=%d/%d%s",
		         cfg->db, cfg->statecharts, lc.batch_max, cfg->prefetch,
		         cfg->bundle, a.sh.index, a.sh.count,
		         cfg->drain ? " (draining)" : "");
		rc = loop_run(l, stop, reload, on_reload, &rctx, 10000) == 0
		             ? 0
		             : 1;
		log_info("stopped (%s)", rc == 0 ? "drained" : "not drained");
		if (a.drained) {
			const char *qs_[] = {a.orders_q, a.replies_q,
			                     a.control_q, a.presence_q};
			for (size_t i = 0; i < 4; i++)
				if (bus_queue_delete(bus, qs_[i], true) != 0)
					log_warnx("cannot delete %s: delete it "
					          "by hand once empty",
					          qs_[i]);
			log_info("drained: every saga of this shard is "
			         "finished; its queues are gone and its "
			         "database stays for history");
		}
	}
out:
	http_close(a.http);
	console_free(con);
	loop_free(l);
	orch_free(o);
	bus_close(bus);
	for (size_t i = 0; i < a.nheld; i++)
		free(a.held[i].mem);
	free(a.held);
	bundler_free(a.bundler);
	presence_free(a.presence);
	registry_free(reg);
	store_close(st);
	return rc;
}

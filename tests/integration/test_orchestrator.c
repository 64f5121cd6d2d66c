/* saga-orchestrator as a process against a private broker, with scripted
 * fake participants in this test: sagas of statecharts/order.yaml end in
 * the expected state; SIGKILL in the middle of 2,000 sagas and a restart
 * end every saga exactly once with no command lost; a broker restart
 * mid-run loses nothing; duplicates are dropped and malformed messages go
 * to the dead-letter queue while the rest goes on; SIGHUP with a broken
 * chart keeps the old one; SIGTERM drains and exits 0; replies that come
 * in bundles count one by one, and a bad item is dead-lettered alone. */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>

#include "bus.h"
#include "envelope.h"
#include "http.h"
#include "log.h"
#include "testorder.h"
#include "testutil.h"

static const char *srcdir, *bindir;

struct orch_proc {
	pid_t pid;
	char db[512], charts[512], log[512];
	int http_port;        /* 0: no --http */
	const char *extra[4]; /* more flags, e.g. "--shard", "1/2" */
};

/* every orchestrator started, so a failed test leaves none behind */
static pid_t running[16];

static void
kill_running(void)
{
	for (size_t i = 0; i < 16; i++) {
		if (running[i] > 0) {
			kill(running[i], SIGKILL);
			waitpid(running[i], NULL, 0);
			running[i] = 0;
		}
	}
}

static int
orch_start(struct orch_proc *p, const char *url)
{
	fflush(NULL);
	p->pid = fork();
	if (p->pid < 0)
		return -1;
	if (p->pid == 0) {
		char exe[600];
		FILE *f = freopen(p->log, "a", stderr);
		(void)f;
		snprintf(exe, sizeof(exe), "%s/saga-orchestrator", bindir);
		char http[64];
		const char *argv[20] = {
		        exe,   "--amqp",        url,       "--db",
		        p->db, "--statecharts", p->charts, "--batch-wait",
		        "2",   "--log-level",   "warn"};
		size_t n = 11;
		snprintf(http, sizeof(http), "127.0.0.1:%d", p->http_port);
		if (p->http_port > 0) {
			argv[n++] = "--http";
			argv[n++] = http;
		}
		for (size_t i = 0; i < 4 && p->extra[i] != NULL; i++)
			argv[n++] = p->extra[i];
		execv(exe, (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	for (size_t i = 0; i < 16; i++) {
		if (running[i] == 0) {
			running[i] = p->pid;
			break;
		}
	}
	return 0;
}

static int
orch_stop(struct orch_proc *p, int sig)
{
	int status = 0;
	if (p->pid <= 0)
		return -1;
	kill(p->pid, sig);
	waitpid(p->pid, &status, 0);
	for (size_t i = 0; i < 16; i++)
		if (running[i] == p->pid)
			running[i] = 0;
	p->pid = 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Waits up to secs for the process to exit by itself: its status, or -1
 * (still running). */
static int
orch_wait(struct orch_proc *p, int secs)
{
	int status = 0;
	for (int i = 0; i < secs * 10; i++) {
		if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
			for (size_t k = 0; k < 16; k++)
				if (running[k] == p->pid)
					running[k] = 0;
			p->pid = 0;
			return WIFEXITED(status) ? WEXITSTATUS(status)
			                         : 128 + WTERMSIG(status);
		}
		usleep(100 * 1000);
	}
	return -1;
}

/* ---- fake participants and an event watcher, one bus ---- */

struct world {
	struct bus *bus;
	size_t ncommands;
	/* final events seen, by saga index; ids deduplicated */
	int *completed, *failed;
	char **last_final_id;
	size_t nsagas;
	const char *decline_prefix;
	size_t silent_charges; /* charges to leave unanswered */
	/* answer each delivery's commands with one bundle of replies, and
	 * put an undecodable item into the first junk_items bundles */
	bool bundle_replies;
	size_t junk_items, bundles_sent;
	char *pend[ENVELOPE_BUNDLE_MAX];
	size_t pend_len[ENVELOPE_BUNDLE_MAX], npend;
};

static int
saga_index(const char *id)
{
	int n;
	if (sscanf(id, "ord-%d", &n) == 1)
		return n;
	return -1;
}

static void
reply(struct world *w, const struct bus_delivery *d, const struct envelope *c,
      const char *type)
{
	struct envelope r;
	char *body = NULL;
	size_t len;
	struct bus_message m = {0};
	envelope_init(&r);
	envelope_new_id(r.id, sizeof(r.id), "rep");
	snprintf(r.saga, sizeof(r.saga), "%s", c->saga);
	snprintf(r.type, sizeof(r.type), "%s", type);
	snprintf(r.step, sizeof(r.step), "%s", c->step);
	snprintf(r.re, sizeof(r.re), "%s", c->id);
	r.attempt = c->attempt;
	r.ts = 1;
	if (strcmp(type, "payment.charged") == 0)
		value_map_put_str(&r.payload, "charge_id", "ch-1");
	if (envelope_encode(&r, &body, &len) == 0 && w->bundle_replies &&
	    w->npend < ENVELOPE_BUNDLE_MAX - 1) {
		w->pend[w->npend] = body; /* sent with the others (on_msg) */
		w->pend_len[w->npend++] = len;
	} else if (body != NULL) {
		m.exchange = "saga.replies";
		m.routing_key = d->reply_to[0] ? d->reply_to : "orchestrator";
		m.message_id = r.id;
		m.correlation_id = r.saga;
		m.type = r.type;
		m.body = body;
		m.len = len;
		bus_publish(w->bus, &m, 0);
		free(body);
	}
	envelope_clear(&r);
}

struct one_ctx {
	struct world *w;
	const struct bus_delivery *d;
};

/* One envelope of a delivery (a command may come in a bundle). */
static void
on_one(void *arg, const void *body, size_t len, const char *tp)
{
	struct one_ctx *c = arg;
	struct world *w = c->w;
	const struct bus_delivery *d = c->d;
	struct envelope e;
	char err[256];
	(void)tp;
	envelope_init(&e);
	if (envelope_decode(body, len, &e, err, sizeof(err)) != 0)
		return;
	if (strcmp(d->queue, "fake.commands") == 0) {
		const char *t = e.type, *r = NULL;
		w->ncommands++;
		if (strcmp(t, "inventory.reserve") == 0)
			r = "inventory.reserved";
		else if (strcmp(t, "payment.charge") == 0) {
			if (w->silent_charges > 0) {
				w->silent_charges--;
				r = NULL;
			} else if (w->decline_prefix != NULL &&
			           strncmp(e.saga, w->decline_prefix,
			                   strlen(w->decline_prefix)) == 0)
				r = "payment.declined";
			else
				r = "payment.charged";
		} else if (strcmp(t, "shipping.create") == 0)
			r = "shipping.created";
		else if (strcmp(t, "inventory.release") == 0)
			r = "inventory.released";
		else if (strcmp(t, "payment.refund") == 0)
			r = "payment.refunded";
		else if (strcmp(t, "shipping.cancel") == 0)
			r = "shipping.cancelled";
		if (r != NULL)
			reply(w, d, &e, r);
	} else {
		int i = saga_index(e.saga);
		if (i >= 0 && (size_t)i < w->nsagas &&
		    (w->last_final_id[i] == NULL ||
		     strcmp(w->last_final_id[i], e.id) != 0)) {
			if (strcmp(e.type, "order.completed") == 0 ||
			    strcmp(e.type, "order.failed") == 0) {
				/* a republished copy has the same id */
				free(w->last_final_id[i]);
				w->last_final_id[i] = strdup(e.id);
				if (e.type[6] == 'c')
					w->completed[i]++;
				else
					w->failed[i]++;
			}
		}
	}
	envelope_clear(&e);
}

/* The replies on_one held back, out as one bundle (world.bundle_replies),
 * with an undecodable item while junk_items lasts. */
static void
send_bundle(struct world *w, const struct bus_delivery *d)
{
	static const char junk[] = "\xc1 not msgpack";
	struct envelope_item it[ENVELOPE_BUNDLE_MAX];
	struct bus_message m = {0};
	char id[64], *body;
	size_t n = 0, len;

	for (; n < w->npend; n++)
		it[n] = (struct envelope_item){w->pend[n], w->pend_len[n], ""};
	if (w->junk_items > 0) {
		it[n++] = (struct envelope_item){junk, sizeof(junk) - 1, ""};
		w->junk_items--;
	}
	snprintf(id, sizeof(id), "bundle-%zu", w->bundles_sent);
	if (envelope_bundle_encode(it, n, &body, &len) == 0) {
		m.exchange = "saga.replies";
		m.routing_key = d->reply_to[0] ? d->reply_to : "orchestrator";
		m.message_id = id;
		m.type = ENVELOPE_BUNDLE_TYPE;
		m.body = body;
		m.len = len;
		if (bus_publish(w->bus, &m, 0) == 0)
			w->bundles_sent++;
		free(body);
	}
	for (size_t i = 0; i < w->npend; i++)
		free(w->pend[i]);
	w->npend = 0;
}

static void
on_msg(void *arg, const struct bus_delivery *d)
{
	struct one_ctx c = {arg, d};
	char err[256];
	if (envelope_each(d->type, d->body, d->len, d->traceparent, on_one, &c,
	                  err, sizeof(err)) != 0)
		fprintf(stderr, "fake participants: %s\n", err);
	if (c.w->npend > 0)
		send_bundle(c.w, d);
	bus_ack(c.w->bus, d->ref, false);
}

static int
world_open(struct world *w, const char *url, size_t nsagas)
{
	static const struct bus_exchange ex[] = {
	        {"saga.commands", "topic", NULL, NULL},
	        {"saga.replies", "direct", NULL, NULL},
	        {"order_events", "topic", NULL, NULL},
	};
	static const struct bus_queue q[] = {{.name = "fake.commands"},
	                                     {.name = "test.events"}};
	static const struct bus_binding bd[] = {
	        {"saga.commands", "fake.commands", NULL, "#"},
	        {"order_events", "test.events", NULL, "order.*"},
	};
	static const struct bus_topology t = {ex, 3, q, 2, bd, 2};
	static const char *consume[] = {"fake.commands", "test.events"};
	struct bus_config cfg = {.url = url,
	                         .name = "fake",
	                         .prefetch = 500,
	                         .topology = &t,
	                         .consume = consume,
	                         .nconsume = 2};
	char err[512];
	uint32_t n;

	memset(w, 0, sizeof(*w));
	w->bus = bus_open(&cfg, err, sizeof(err));
	if (w->bus == NULL || bus_connect(w->bus, err, sizeof(err)) != 0)
		return -1;
	bus_queue_purge(w->bus, "fake.commands", &n);
	bus_queue_purge(w->bus, "test.events", &n);
	/* what an earlier test left in the orchestrator's queues; a queue
	 * that does not exist yet costs a reconnect, nothing more */
	for (size_t i = 0; i < 4; i++) {
		static const char *const oq[] = {
		        "orchestrator.orders", "orchestrator.replies",
		        "orchestrator.control", "orchestrator.dlq"};
		if (bus_queue_purge(w->bus, oq[i], &n) != 0)
			bus_connect(w->bus, err, sizeof(err));
	}
	w->nsagas = nsagas;
	w->completed = calloc(nsagas, sizeof(int));
	w->failed = calloc(nsagas, sizeof(int));
	w->last_final_id = calloc(nsagas, sizeof(char *));
	return 0;
}

static void
world_close(struct world *w)
{
	bus_close(w->bus);
	for (size_t i = 0; i < w->nsagas; i++)
		free(w->last_final_id[i]);
	free(w->last_final_id);
	free(w->completed);
	free(w->failed);
}

static void
pump(struct world *w, int ms)
{
	struct bus_handlers h = {on_msg, NULL, w};
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		bus_poll(w->bus, 20, &h);
		clock_gettime(CLOCK_MONOTONIC, &t1);
	} while ((t1.tv_sec - t0.tv_sec) * 1000 +
	                 (t1.tv_nsec - t0.tv_nsec) / 1000000 <
	         ms);
}

/* Waits until a queue has a consumer. */
static int
wait_consumed(struct world *w, const char *queue)
{
	char err[256];
	for (int i = 0; i < 200; i++) {
		uint32_t msgs = 0, cons = 0;
		if (!bus_connected(w->bus))
			bus_connect(w->bus, err, sizeof(err));
		if (bus_queue_info(w->bus, queue, &msgs, &cons) == 0 &&
		    cons > 0)
			return 0;
		usleep(100 * 1000);
	}
	return -1;
}

/* Waits until the orchestrator consumes its orders queue: before that an
 * order.created has nowhere to go. */
static int
wait_ready(struct world *w)
{
	return wait_consumed(w, "orchestrator.orders");
}

/* An order.created for ord-i, to exchange/key, published at ts_ms (0:
 * now). */
static void
post_order_ex(struct world *w, int i, const char *method, const char *msgid,
              const char *exchange, const char *key, int64_t ts_ms)
{
	struct envelope e;
	char id[32], created[48];

	snprintf(id, sizeof(id), "ord-%d", i);
	snprintf(created, sizeof(created), "created-%d", i);
	testorder_envelope(&e, &(struct testorder){
	                               .id = id,
	                               .msgid = msgid != NULL ? msgid : created,
	                               .method = method});
	testorder_publish(w->bus, &e,
	                  &(struct testorder_route){exchange, key, ts_ms, 0});
	envelope_clear(&e);
}

static void
post_order(struct world *w, int i, const char *method, const char *msgid)
{
	post_order_ex(w, i, method, msgid, "order_events", "order.created", 0);
}

static int
db_count(const char *db, const char *sql)
{
	return testutil_db_count(db, sql);
}

static size_t
finals(struct world *w, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		k += (w->completed[i] + w->failed[i]) > 0;
	return k;
}

static int
setup(struct orch_proc *p, const char *name)
{
	char *dir = testutil_tmpdir(name);
	if (dir == NULL)
		return -1;
	memset(p, 0, sizeof(*p));
	snprintf(p->db, sizeof(p->db), "%s/orch.db", dir);
	snprintf(p->log, sizeof(p->log), "%s/orch.log", dir);
	snprintf(p->charts, sizeof(p->charts), "%s/charts", dir);
	testutil_sh(NULL,
	            "mkdir -p '%s' && cp '%s/statecharts/order.yaml' '%s/'",
	            p->charts, srcdir, p->charts);
	free(dir);
	return 0;
}

/* Each test gets a broker of its own (*url), so what one test leaves in
 * the orchestrator's queues cannot reach the next one, then the daemon's
 * files (setup) and a world for n orders. 0 or -1. */
static int
own_world(struct orch_proc *p, struct world *w, const char *name, size_t n,
          char **url)
{
	*url = testbroker_start(name);
	if (*url == NULL || setup(p, name) != 0)
		return -1;
	return world_open(w, *url, n);
}

/* Undoes own_world (the orchestrator is the test's to stop). */
static void
close_world(struct world *w, const char *name, char *url)
{
	world_close(w);
	testbroker_ctl(name, "stop");
	free(url);
}

/* bus_get callback: a dead letter's type and x-saga-error header; the
 * message is consumed when `take`, else it goes back. */
struct dead_letter {
	char type[64], why[512];
	bool take;
};

static int
read_dead_letter(void *arg, const struct bus_delivery *d)
{
	struct dead_letter *dl = arg;
	snprintf(dl->type, sizeof(dl->type), "%s", d->type);
	snprintf(dl->why, sizeof(dl->why), "%s", d->error);
	return dl->take;
}

/* A small OpenTelemetry collector (lib/http on a loopback port): every
 * span the orchestrator exports with --otlp-url, as JSON. */
static struct {
	pthread_mutex_t mu;
	json_t *spans;
} collector = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void
collect_spans(void *arg, const struct http_request *req,
              struct http_response *r)
{
	json_t *j = json_loads(req->body != NULL ? req->body : "", 0, NULL);
	json_t *rs = json_object_get(j, "resourceSpans"), *x;
	size_t i, k;

	(void)arg;
	pthread_mutex_lock(&collector.mu);
	json_array_foreach(rs, i, x)
	{
		json_t *ss = json_object_get(x, "scopeSpans"), *y;
		json_array_foreach(ss, k, y)
		{
			json_array_extend(collector.spans,
			                  json_object_get(y, "spans"));
		}
	}
	pthread_mutex_unlock(&collector.mu);
	json_decref(j);
	http_printf(r, "{}");
}

/* The value of attribute key of span s, "" if absent. */
static const char *
span_attr(json_t *s, const char *key)
{
	json_t *a;
	size_t i;

	json_array_foreach(json_object_get(s, "attributes"), i, a)
	{
		if (strcmp(json_string_value(json_object_get(a, "key")), key) ==
		    0)
			return json_string_value(json_object_get(
			        json_object_get(a, "value"), "stringValue"));
	}
	return "";
}

static const char *
span_str(json_t *s, const char *key)
{
	const char *v = json_string_value(json_object_get(s, key));
	return v != NULL ? v : "";
}

/* The spans of one run (test_paths_and_bad_input): one per saga, from its
 * order to its end, with its status, child of the order's span, in the
 * trace the saga keeps; one per step it left, child of the saga's. */
static void
check_spans(const struct orch_proc *p)
{
	json_t *s, *saga = NULL;
	size_t i;
	int sagas = 0, failed = 0, steps = 0, children = 0;
	char *trace = NULL;

	pthread_mutex_lock(&collector.mu);
	json_array_foreach(collector.spans, i, s)
	{
		if (strcmp(span_str(s, "name"), "saga order") == 0) {
			sagas++;
			failed += json_object_get(s, "status") != NULL;
			if (strcmp(span_attr(s, "saga.id"), "ord-0") == 0)
				saga = s;
		}
	}
	CHECK_EQ(sagas, 20);
	CHECK_EQ(failed, 11); /* ord-1, ord-10..19 declined */
	CHECK(saga != NULL);
	if (saga != NULL) {
		CHECK_STR(span_attr(saga, "saga.status"), "completed");
		CHECK(testutil_sh(&trace,
		                  "sqlite3 '%s' \"SELECT substr(trace, 4, 32) "
		                  "FROM sagas WHERE id = 'ord-0'\"",
		                  p->db) == 0);
		CHECK_STR(span_str(saga, "traceId"), trace ? trace : "?");
		json_array_foreach(collector.spans, i, s)
		{
			if (strcmp(span_str(s, "traceId"),
			           span_str(saga, "traceId")) != 0 ||
			    s == saga)
				continue;
			steps++;
			children += strcmp(span_str(s, "parentSpanId"),
			                   span_str(saga, "spanId")) == 0;
		}
		/* reserve, payment, ship, ... each a child of the saga */
		CHECK_MSG(steps >= 3 && children == steps,
		          "%d steps, %d children", steps, children);
	}
	pthread_mutex_unlock(&collector.mu);
	free(trace);
}

static void
test_paths_and_bad_input(void)
{
	struct orch_proc p;
	struct world w;
	char *url = NULL;
	static const unsigned char junk[] = {0xde, 0xad, 0xbe, 0xef};
	struct bus_message m = {.exchange = "order_events",
	                        .routing_key = "order.created",
	                        .message_id = "junk-1",
	                        .body = junk,
	                        .len = sizeof(junk)};
	uint32_t msgs = 0, cons = 0;
	struct http *col;
	char err[256], otlp[128];

	CHECK(own_world(&p, &w, "orch-paths", 20, &url) == 0);
	p.http_port = testutil_free_port();
	w.decline_prefix = "ord-1"; /* ord-1, ord-10..19 are declined */
	collector.spans = json_array();
	col = http_listen("127.0.0.1:0", err, sizeof(err));
	CHECK_MSG(col != NULL, "%s", err);
	CHECK(http_route(col, "/v1/traces", HTTP_POST, collect_spans, NULL) ==
	      0);
	snprintf(otlp, sizeof(otlp), "http://127.0.0.1:%d/v1/traces",
	         http_port(col));
	p.extra[0] = "--otlp-url";
	p.extra[1] = otlp;
	CHECK(orch_start(&p, url) == 0);
	CHECK(wait_ready(&w) == 0);
	for (int i = 0; i < 20; i++)
		post_order(&w, i, i % 3 == 0 ? "cod" : "card", NULL);
	post_order(&w, 2, "card", "created-2");        /* redelivery */
	post_order(&w, 3, "card", "another-id-for-3"); /* same order again */
	bus_publish(w.bus, &m, 0);
	for (int t = 0; t < 100 && finals(&w, 20) < 20; t++)
		pump(&w, 100);
	CHECK_EQ(finals(&w, 20), 20);
	for (int i = 0; i < 20; i++) {
		bool declined = i == 1 || (i >= 10 && i <= 19);
		CHECK_MSG(w.completed[i] == (declined ? 0 : 1) &&
		                  w.failed[i] == (declined ? 1 : 0),
		          "ord-%d: completed %d failed %d", i, w.completed[i],
		          w.failed[i]);
	}
	CHECK_EQ(db_count(p.db, "SELECT count(*) FROM sagas"), 20);
	CHECK_EQ(db_count(p.db, "SELECT count(*) FROM sagas WHERE status = "
	                        "'failed'"),
	         11);
	CHECK(bus_queue_info(w.bus, "orchestrator.dlq", &msgs, &cons) == 0);
	CHECK_EQ(msgs, 1);
	{ /* the dead letter carries its reason and where it came from */
		struct dead_letter dl = {.take = false};
		bool got = false;
		CHECK(bus_get(w.bus, "orchestrator.dlq", read_dead_letter, &dl,
		              &got) == 0 &&
		      got);
		CHECK_MSG(strstr(dl.why,
		                 "from orchestrator.orders: bad envelope") !=
		                  NULL,
		          "x-saga-error: %s", dl.why);
	}
	{
		int sh = 0, sm = 0, sx = 0;
		char *health = testutil_http(p.http_port, "GET", "/healthz",
		                             NULL, NULL, &sh);
		static const char *const want[] = {
		        "saga_completed_total{chart=\"order\"} 9\n",
		        "saga_failed_total{chart=\"order\"} 11\n",
		        "saga_started_total{chart=\"order\"} 20\n",
		        "saga_dead_lettered_total 1\n",
		        "saga_duplicates_dropped_total 2\n",
		        /* by type and outcome, counted once committed */
		        "saga_messages_total{type=\"order.created\","
		        "outcome=\"ok\"} 20\n",
		        "saga_messages_total{type=\"order.created\","
		        "outcome=\"duplicate\"} 2\n",
		        /* what is true now: every saga has finished */
		        "saga_sagas{status=\"running\"} 0\n",
		        "saga_sagas{status=\"stuck\"} 0\n",
		        "saga_stuck_oldest_seconds 0\n", NULL};
		char *metrics = testutil_http_until(p.http_port, "/metrics",
		                                    want, 5000, &sm);
		char *missing = testutil_http(p.http_port, "GET", "/nope", NULL,
		                              NULL, &sx);
		CHECK(health != NULL && metrics != NULL && missing != NULL);
		CHECK_MSG(sh == 200 && strncmp(health, "ok", 2) == 0, "%d %s",
		          sh, health);
		CHECK_MSG(sm == 200 && sx == 404, "%d %d", sm, sx);
		CHECK_MSG(
		        strstr(metrics,
		               "saga_completed_total{chart=\"order\"} 9\n") &&
		                strstr(metrics,
		                       "saga_failed_total{chart=\"order\"} "
		                       "11\n") &&
		                strstr(metrics,
		                       "saga_started_total{chart=\"order\"} "
		                       "20\n") &&
		                strstr(metrics,
		                       "saga_dead_lettered_total 1\n") &&
		                strstr(metrics,
		                       "saga_duplicates_dropped_total 2\n") &&
		                strstr(metrics,
		                       "saga_step_duration_seconds_count{"
		                       "chart=\"order\",state=\"payment\"}") &&
		                strstr(metrics, "saga_outbox_depth ") &&
		                strstr(metrics, "saga_batch_size_count ") &&
		                strstr(metrics, "saga_commit_seconds_count ") &&
		                strstr(metrics,
		                       "saga_handle_seconds_count{type="
		                       "\"order.created\"} 22\n") &&
		                strstr(metrics,
		                       "saga_sagas{status=\"running\"} 0\n"),
		        "%s", metrics);
		free(health);
		free(metrics);
		free(missing);
	}
	CHECK_EQ(orch_stop(&p, SIGTERM), 0); /* posts its last spans */
	check_spans(&p);
	http_close(col);
	json_decref(collector.spans);
	close_world(&w, "orch-paths", url);
}

/* An order just under the bus's 16 MiB limit for a message, let in by
 * --max-order-kib 16384: its events, which carry the whole order and a
 * few fields more, can never be published. Each is dropped with its
 * reason, and the sagas behind it are not held up: the outbox goes on
 * past the row. (test_order_too_large: the default keeps such orders
 * out.) */
/* ord-i with `n` notes of NOTE bytes and one of `pad` (256..65535: the
 * same msgpack header): e is filled */
#define NOTE 60000
static void
huge_envelope(struct envelope *e, const char *id, size_t n, size_t pad,
              const char *text)
{
	struct value notes = VALUE_NIL_INIT, s = VALUE_NIL_INIT;

	testorder_envelope(e, &(struct testorder){.id = id});
	value_set_array(&notes);
	for (size_t k = 0; k <= n; k++) {
		CHECK(value_set_strn(&s, text, k < n ? NOTE : pad) == 0);
		CHECK(value_array_push(&notes, &s) == 0);
	}
	CHECK(value_map_put(&e->payload, "notes", &notes) == 0);
}

/* An order.created of exactly `target` bytes. */
static void
post_huge_order(struct world *w, int i, size_t target)
{
	struct envelope e;
	size_t n, len = 0;
	char id[32], *body = NULL, *text = malloc(2 * NOTE);

	CHECK(text != NULL);
	memset(text, 'n', 2 * NOTE);
	snprintf(id, sizeof(id), "ord-%d", i);
	/* as many whole notes as fit, then the last grows by what is
	 * missing (less than a note: its header stays the same) */
	for (size_t k = 0; k < 2; k++) {
		n = k == 0 ? 0 : (target - len) / (NOTE + 3);
		huge_envelope(&e, id, n, 1000, text);
		CHECK(envelope_encode(&e, &body, &len) == 0 && len <= target);
		free(body);
		envelope_clear(&e);
	}
	huge_envelope(&e, id, n, 1000 + (target - len), text);
	CHECK(envelope_encode(&e, &body, &len) == 0);
	CHECK_EQ(len, target);
	free(body);
	CHECK(testorder_publish(w->bus, &e, NULL) == 0);
	envelope_clear(&e);
	free(text);
}

/* Ordinary orders ord-FIRST..ord-9 posted, and ord-1..ord-9 (the huge
 * ones among them) completed, whatever became of ord-0. */
static void
nine_complete(struct world *w, int first)
{
	for (int i = first; i < 10; i++)
		post_order(w, i, "card", NULL);
	for (int t = 0; t < 300 && finals(w, 10) < 9; t++)
		pump(w, 100);
	for (int i = 1; i < 10; i++)
		CHECK_MSG(w->completed[i] == 1, "ord-%d: completed %d", i,
		          w->completed[i]);
}

static void
test_unpublishable_event(void)
{
	struct orch_proc p;
	struct world w;
	char *url = NULL, *log;
	size_t loglen = 0;

	CHECK(own_world(&p, &w, "orch-huge", 10, &url) == 0);
	p.http_port = testutil_free_port();
	p.extra[0] = "--max-order-kib";
	p.extra[1] = "16384";
	CHECK(orch_start(&p, url) == 0);
	CHECK(wait_ready(&w) == 0);
	post_huge_order(&w, 0, (16u << 20) - 16);
	nine_complete(&w, 1);
	/* its own saga goes on without its events */
	for (int t = 0;
	     t < 100 && db_count(p.db, "SELECT count(*) FROM sagas "
	                               "WHERE status = 'completed'") < 10;
	     t++)
		pump(&w, 100);
	CHECK_EQ(db_count(p.db, "SELECT count(*) FROM sagas WHERE id = 'ord-0' "
	                        "AND status = 'completed'"),
	         1);
	{ /* its four events, counted */
		static const char *const want[] = {
		        "saga_messages_dropped_total{reason=\"too_large\"} 4\n",
		        "saga_messages_dropped_total{reason=\"unroutable\"} "
		        "0\n",
		        NULL};
		int sm = 0;
		char *metrics = testutil_http_until(p.http_port, "/metrics",
		                                    want, 5000, &sm);
		CHECK_MSG(metrics != NULL && strstr(metrics, want[0]) != NULL &&
		                  strstr(metrics, want[1]) != NULL,
		          "%s", metrics != NULL ? metrics : "");
		free(metrics);
	}
	CHECK_EQ(orch_stop(&p, SIGTERM), 0);
	/* the dropped rows went with the confirmed ones */
	CHECK_EQ(db_count(p.db, "SELECT count(*) FROM outbox"), 0);
	log = testutil_slurp(p.log, &loglen);
	CHECK(log != NULL);
	CHECK_MSG(log != NULL &&
	                  strstr(log, "cannot publish order.inventory_checked "
	                              "(ord-0:") != NULL &&
	                  strstr(log, "16777216 a message may have") != NULL,
	          "%s", log != NULL ? log : "");
	free(log);
	close_world(&w, "orch-huge", url);
}

/* orchestrator.dlq deleted under the running orchestrator: a dead
 * letter's copy comes back unroutable, the order stays unacked (copied
 * again every second), and a restart, which declares the queue again,
 * dead-letters it with its reason. Before, the copy was dropped and the
 * order acked: lost. */
static void
dead_letter_without_dlq(struct orch_proc *p, struct world *w, const char *url)
{
	uint32_t msgs = 0, cons = 0;
	struct dead_letter dl = {.take = true};
	bool got = false, said = false;

	CHECK_EQ(bus_queue_delete(w->bus, "orchestrator.dlq", false), 0);
	post_huge_order(w, 42, (1u << 20) + 1);
	for (int t = 0; t < 100 && !said; t++) {
		char *log = testutil_slurp(p->log, NULL);
		said = log != NULL &&
		       strstr(log, "orchestrator.dlq came back unroutable");
		free(log);
		if (!said)
			pump(w, 100);
	}
	CHECK_EQ(orch_stop(p, SIGTERM), 0);
	CHECK(orch_start(p, url) == 0);
	CHECK(wait_ready(w) == 0);
	for (int t = 0; t < 100 && msgs == 0; t++) { /* declared: ready */
		CHECK(bus_queue_info(w->bus, "orchestrator.dlq", &msgs,
		                     &cons) == 0);
		if (msgs == 0)
			pump(w, 100);
	}
	CHECK_EQ(msgs, 1);
	CHECK(bus_get(w->bus, "orchestrator.dlq", read_dead_letter, &dl,
	              &got) == 0 &&
	      got);
	CHECK_MSG(strstr(dl.why, "order.created of 1048577 bytes") != NULL,
	          "x-saga-error: %s", dl.why);
	CHECK(said); /* and the log said so */
}

/* The door's limit: with the default --max-order-kib (1024), an order of
 * 1 MiB goes through and one a byte larger goes to orchestrator.dlq with
 * its reason, starting no saga and holding up none. */
static void
test_order_too_large(void)
{
	struct orch_proc p;
	struct world w;
	char *url = NULL, *metrics;
	uint32_t msgs = 0, cons = 0;
	struct dead_letter dl = {.take = true};
	bool got = false;
	int sm = 0;
	static const char *const want[] = {"saga_dead_lettered_total 1\n",
	                                   NULL};

	CHECK(own_world(&p, &w, "orch-door", 10, &url) == 0);
	p.http_port = testutil_free_port();
	CHECK(orch_start(&p, url) == 0);
	CHECK(wait_ready(&w) == 0);
	post_huge_order(&w, 0, (1u << 20) + 1);
	post_huge_order(&w, 1, 1u << 20);
	nine_complete(&w, 2);
	CHECK_EQ(w.completed[0] + w.failed[0], 0);
	CHECK_EQ(db_count(p.db, "SELECT count(*) FROM sagas WHERE id = "
	                        "'ord-0'"),
	         0);
	for (int t = 0; t < 50 && msgs == 0; t++) {
		CHECK(bus_queue_info(w.bus, "orchestrator.dlq", &msgs, &cons) ==
		      0);
		if (msgs == 0)
			pump(&w, 100);
	}
	CHECK_EQ(msgs, 1);
	CHECK(bus_get(w.bus, "orchestrator.dlq", read_dead_letter, &dl, &got) ==
	              0 &&
	      got);
	CHECK_MSG(strcmp(dl.type, "order.created") == 0 &&
	                  strstr(dl.why,
	                         "from orchestrator.orders: "
	                         "order.created of 1048577 bytes is "
	                         "larger than the 1048576 an order "
	                         "may have (--max-order-kib 1024)") != NULL,
	          "type '%s', x-saga-error: %s", dl.type, dl.why);
	metrics = testutil_http_until(p.http_port, "/metrics", want, 5000, &sm);
	CHECK_MSG(metrics != NULL && strstr(metrics, want[0]) != NULL, "%s",
	          metrics != NULL ? metrics : "");
	free(metrics);
	dead_letter_without_dlq(&p, &w, url);
	CHECK_EQ(orch_stop(&p, SIGTERM), 0);
	close_world(&w, "orch-door", url);
}

/* Participants that answer in bundles (as ours do to bundled commands):
 * each item is a reply of its own to the loop. Every saga completes, and
 * an item that cannot be decoded goes to orchestrator.dlq alone, with its
 * reason, while the replies beside it in the same bundle count. */
static void
test_reply_bundles(void)
{
	struct orch_proc p;
	struct world w;
	char *url = NULL;
	const size_t n = 300;
	uint32_t msgs = 0, cons = 0;

	CHECK(own_world(&p, &w, "orch-bundles", n, &url) == 0);
	p.http_port = testutil_free_port();
	w.bundle_replies = true;
	w.junk_items = 3;
	CHECK(orch_start(&p, url) == 0);
	CHECK(wait_ready(&w) == 0);
	for (size_t i = 0; i < n; i++)
		post_order(&w, (int)i, "card", NULL);
	for (int t = 0; t < 600 && finals(&w, n) < n; t++)
		pump(&w, 100);
	CHECK_EQ(finals(&w, n), n);
	for (size_t i = 0; i < n; i++)
		CHECK_MSG(w.completed[i] == 1 && w.failed[i] == 0,
		          "ord-%zu: completed %d failed %d", i, w.completed[i],
		          w.failed[i]);
	CHECK_EQ(w.junk_items, 0);
	/* one bundle per delivery of commands (one command or a bundle) */
	CHECK(w.bundles_sent > 3 && w.bundles_sent <= 3 * n);
	CHECK_EQ(db_count(p.db, "SELECT count(*) FROM history WHERE kind = "
	                        "'reply'"),
	         (int)(3 * n));
	for (int t = 0; t < 50; t++) { /* the copies are confirmed first */
		CHECK(bus_queue_info(w.bus, "orchestrator.dlq", &msgs, &cons) ==
		      0);
		if (msgs >= 3)
			break;
		pump(&w, 100);
	}
	CHECK_EQ(msgs, 3);
	for (int i = 0; i < 3; i++) {
		struct dead_letter dl = {.take = true};
		bool got = false;
		CHECK(bus_get(w.bus, "orchestrator.dlq", read_dead_letter, &dl,
		              &got) == 0 &&
		      got);
		CHECK_MSG(strcmp(dl.type, ENVELOPE_BUNDLE_TYPE) != 0 &&
		                  strstr(dl.why, "from orchestrator.replies") !=
		                          NULL,
		          "type '%s', x-saga-error: %s", dl.type, dl.why);
	}
	{
		int sm = 0;
		char want[128];
		const char *wants[3] = {want, "saga_dead_lettered_total 3\n",
		                        NULL};
		char *metrics;
		snprintf(want, sizeof(want), "saga_reply_bundles_total %zu\n",
		         w.bundles_sent);
		metrics = testutil_http_until(p.http_port, "/metrics", wants,
		                              3000, &sm);
		CHECK(metrics != NULL && sm == 200);
		CHECK_MSG(metrics != NULL && strstr(metrics, want) != NULL &&
		                  strstr(metrics,
		                         "saga_dead_lettered_total 3\n") !=
		                          NULL,
		          "want %s in %s", want, metrics ? metrics : "");
		free(metrics);
	}
	fprintf(stderr, "     %zu sagas, %zu bundles of replies\n", n,
	        w.bundles_sent);
	CHECK_EQ(orch_stop(&p, SIGTERM), 0);
	/* every bundle was acked, those with a dead-lettered item too:
	 * none went back to the queue when the orchestrator left */
	CHECK(bus_queue_info(w.bus, "orchestrator.replies", &msgs, &cons) == 0);
	CHECK_EQ(msgs, 0);
	close_world(&w, "orch-bundles", url);
}

static void
test_sigkill_midway_2000(void)
{
	struct orch_proc p;
	struct world w;
	char *url = NULL;
	const size_t n = 2000;
	int kills = 0;

	CHECK(own_world(&p, &w, "orch-kill", n, &url) == 0);
	CHECK(orch_start(&p, url) == 0);
	CHECK(wait_ready(&w) == 0);
	for (size_t i = 0; i < n; i++)
		post_order(&w, (int)i, "card", NULL);
	for (int t = 0; t < 600 && finals(&w, n) < n; t++) {
		pump(&w, 100);
		if (kills < 2 && finals(&w, n) > (size_t)(kills + 1) * n / 3) {
			CHECK_EQ(orch_stop(&p, SIGKILL), 128 + SIGKILL);
			kills++;
			CHECK(orch_start(&p, url) == 0);
		}
	}
	CHECK_EQ(kills, 2);
	CHECK_EQ(finals(&w, n), n);
	for (size_t i = 0; i < n; i++)
		CHECK_MSG(w.completed[i] == 1 && w.failed[i] == 0,
		          "ord-%zu: completed %d failed %d", i, w.completed[i],
		          w.failed[i]);
	CHECK_EQ(db_count(p.db, "SELECT count(*) FROM sagas WHERE status = "
	                        "'completed'"),
	         (int)n);
	/* nothing was compensated: no command was lost on the way (a lost
	 * one would time out, retry and at worst fail the saga) */
	CHECK_EQ(db_count(p.db, "SELECT count(*) FROM history WHERE kind = "
	                        "'send' AND detail IN ('inventory.release', "
	                        "'payment.refund', 'shipping.cancel')"),
	         0);
	/* every message confirmed, so none left to publish again (the last
	 * confirms may land just after the test saw the last event) */
	for (int t = 0;
	     t < 100 && db_count(p.db, "SELECT count(*) FROM outbox") != 0; t++)
		pump(&w, 100);
	CHECK_EQ(db_count(p.db, "SELECT count(*) FROM outbox"), 0);
	fprintf(stderr, "     %zu sagas, %d kills, %zu commands seen\n", n,
	        kills, w.ncommands);
	CHECK_EQ(orch_stop(&p, SIGTERM), 0);
	close_world(&w, "orch-kill", url);
}

static void
test_broker_restart_midway(void)
{
	struct orch_proc p;
	struct world w;
	char *url = testbroker_start("orch-restart");
	const size_t n = 500;
	bool restarted = false;

	CHECK(url != NULL);
	CHECK(setup(&p, "orch-brk") == 0);
	/* step timeouts longer than a broker restart (and the reconnect
	 * backoff) even under the sanitizers: what is proved is that the
	 * restart loses nothing, not that retries cover it */
	CHECK(testutil_sh(NULL,
	                  "sed -i 's/timeout: 5s/timeout: 60s/' "
	                  "'%s/order.yaml'",
	                  p.charts) == 0);
	CHECK(world_open(&w, url, n) == 0);
	CHECK(orch_start(&p, url) == 0);
	CHECK(wait_ready(&w) == 0);
	for (size_t i = 0; i < n; i++)
		post_order(&w, (int)i, "card", NULL);
	for (int t = 0; t < 900 && finals(&w, n) < n; t++) {
		pump(&w, 100);
		if (!restarted && finals(&w, n) > n / 3) {
			CHECK(testbroker_ctl("orch-restart", "restart") == 0);
			restarted = true;
		}
	}
	CHECK(restarted);
	CHECK_EQ(finals(&w, n), n);
	CHECK_EQ(db_count(p.db, "SELECT count(*) FROM sagas WHERE status = "
	                        "'completed'"),
	         (int)n);
	CHECK_EQ(orch_stop(&p, SIGTERM), 0);
	world_close(&w);
	testbroker_ctl("orch-restart", "stop");
	free(url);
}

/* After shard 2 drained: the two databases hold 650 sagas between them,
 * none twice, each shard a fair share, shard 2's all completed. */
static void
check_shards_disjoint(const struct orch_proc *p1, const struct orch_proc *p2,
                      int *in1, int *in2)
{
	sqlite3 *h = NULL;
	char *q;
	int both = -1;

	*in1 = db_count(p1->db, "SELECT count(*) FROM sagas");
	*in2 = db_count(p2->db, "SELECT count(*) FROM sagas");
	CHECK_MSG(*in1 + *in2 == 650 && *in2 > 50 && *in2 < 600,
	          "shard 1 has %d sagas, shard 2 %d", *in1, *in2);
	CHECK_EQ(db_count(p2->db, "SELECT count(*) FROM sagas WHERE status != "
	                          "'completed'"),
	         0);
	CHECK_EQ(db_count(p1->db, "SELECT count(*) FROM sagas WHERE id IN "
	                          "('ord-600', 'ord-649')"),
	         2);
	q = sqlite3_mprintf("ATTACH %Q AS s2", p2->db);
	if (sqlite3_open_v2(p1->db, &h, SQLITE_OPEN_READONLY, NULL) ==
	            SQLITE_OK &&
	    sqlite3_exec(h, q, NULL, NULL, NULL) == SQLITE_OK)
		both = (int)testutil_db_int(h,
		                            "SELECT count(*) FROM sagas WHERE "
		                            "id IN (SELECT id FROM s2.sagas)");
	sqlite3_free(q);
	sqlite3_close(h);
	CHECK_EQ(both, 0);
}

/* sagactl over both databases sends a request to the saga's owner; a
 * completed saga's resume is recorded as rejected. */
static void
check_resume_reaches_owner(struct world *w, const struct orch_proc *p1,
                           const struct orch_proc *p2, const char *url)
{
	/* sagactl over both databases sends a request to the saga's owner
	 * (saga.control, shard 1's control queue): a completed saga's resume
	 * is recorded there as rejected, and shard 1 answers so (exit 1) */
	{
		char *o = NULL;
		CHECK_EQ(
		        testutil_sh(&o,
		                    "'%s/sagactl' --db '%s' --db '%s' --amqp "
		                    "'%s' resume ord-600 --reason 'shard test' "
		                    "2>&1",
		                    bindir, p2->db, p1->db, url),
		        1);
		CHECK_MSG(o != NULL && strstr(o, "resume ord-600: rejected: "),
		          "%s", o ? o : "");
		free(o);
	}
	for (int t = 0;
	     t < 100 && db_count(p1->db, "SELECT count(*) FROM history "
	                                 "WHERE saga_id = 'ord-600' AND kind "
	                                 "IN ('rejected', 'ignored')") < 1;
	     t++)
		pump(w, 100);
	CHECK_EQ(db_count(p1->db,
	                  "SELECT count(*) FROM history WHERE saga_id = "
	                  "'ord-600' AND kind IN ('rejected', 'ignored')"),
	         1);
}

/* Two shards share the orders by id; shard 2 leaves the ring (--drain)
 * while orders keep coming: it finishes what it owns and exits 0, its
 * queues go, and every order ends once, on one shard. A shard that joins
 * refuses an order published before it joined (another shard may own
 * it): to the DLQ with the reason. */
static void
test_shards_drain_and_join(void)
{
	struct orch_proc p1, p2, p3;
	struct world w;
	char *url = testbroker_start("orch-shards");
	const size_t n = 700;
	int in1, in2;
	char why[512] = "";
	struct dead_letter refused = {.take = false};
	bool got = false;
	uint32_t msgs = 0, cons = 0;

	CHECK(url != NULL);
	CHECK(setup(&p1, "orch-shard1") == 0);
	CHECK(setup(&p2, "orch-shard2") == 0);
	CHECK(setup(&p3, "orch-shard3") == 0);
	p1.extra[0] = p2.extra[0] = p3.extra[0] = "--shard";
	p1.extra[1] = "1/2";
	p2.extra[1] = "2/2";
	p3.extra[1] = "3/3";
	CHECK(world_open(&w, url, n) == 0);
	CHECK(orch_start(&p1, url) == 0);
	CHECK(orch_start(&p2, url) == 0);
	CHECK(wait_consumed(&w, "orchestrator-1.orders") == 0);
	CHECK(wait_consumed(&w, "orchestrator-2.orders") == 0);
	/* at once: published after both joined, to the millisecond */
	for (size_t i = 0; i < 300; i++)
		post_order(&w, (int)i, "card", NULL);
	for (int t = 0; t < 600 && finals(&w, n) < 100; t++)
		pump(&w, 100);
	/* shard 2 leaves while orders keep coming */
	CHECK_EQ(orch_stop(&p2, SIGTERM), 0);
	p2.extra[2] = "--drain";
	CHECK(orch_start(&p2, url) == 0);
	for (size_t i = 300; i < 600; i++) {
		post_order(&w, (int)i, "card", NULL);
		if (i % 50 == 0)
			pump(&w, 50);
	}
	for (int t = 0; t < 900 && finals(&w, n) < 600; t++)
		pump(&w, 100);
	CHECK_EQ(finals(&w, n), 600);
	CHECK_EQ(orch_wait(&p2, 60), 0); /* it exits by itself, 0 */
	CHECK(bus_queue_info(w.bus, "orchestrator-2.orders", &msgs, &cons) ==
	      -1); /* gone */
	bus_connect(w.bus, why, sizeof(why));
	/* after it left, every order goes to shard 1 */
	for (size_t i = 600; i < 650; i++)
		post_order(&w, (int)i, "card", NULL);
	for (int t = 0; t < 600 && finals(&w, n) < 650; t++)
		pump(&w, 100);
	CHECK_EQ(finals(&w, n), 650);
	for (size_t i = 0; i < 650; i++)
		CHECK_MSG(w.completed[i] == 1 && w.failed[i] == 0,
		          "ord-%zu: completed %d failed %d", i, w.completed[i],
		          w.failed[i]);
	check_shards_disjoint(&p1, &p2, &in1, &in2);
	/* shard 1 heard of the ring change */
	CHECK(db_count(p1.db, "SELECT value > 0 FROM node WHERE key = "
	                      "'ring_changed_at'") == 1);
	fprintf(stderr, "     shard 1: %d sagas, shard 2 (drained): %d\n", in1,
	        in2);

	/* shard 3 joins: an order published a minute ago that reaches it is
	 * refused, with the reason, not started */
	CHECK(orch_start(&p3, url) == 0);
	CHECK(wait_consumed(&w, "orchestrator-3.orders") == 0);
	{
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		post_order_ex(&w, 690, "card", NULL, "",
		              "orchestrator-3.orders",
		              ((int64_t)now.tv_sec - 60) * 1000);
	}
	for (int t = 0; t < 100 && !got; t++) {
		pump(&w, 100);
		if (bus_get(w.bus, "orchestrator.dlq", read_dead_letter,
		            &refused, &got) != 0)
			got = false;
	}
	CHECK(got);
	CHECK_MSG(strstr(refused.why, "orchestrator-3.orders") &&
	                  strstr(refused.why, "before this shard joined"),
	          "%s", refused.why);
	CHECK_EQ(db_count(p3.db, "SELECT count(*) FROM sagas"), 0);
	/* the operator finds no owner and replays it at once: stamped anew
	 * (after the join, to the millisecond), shard 3 takes it */
	CHECK(testutil_sh(
	              NULL,
	              "'%s/sagactl' --amqp '%s' dlq replay orchestrator.dlq "
	              ">&2",
	              bindir, url) == 0);
	for (int t = 0; t < 300 && w.completed[690] == 0; t++)
		pump(&w, 100);
	CHECK_EQ(w.completed[690], 1);
	CHECK_EQ(db_count(p3.db, "SELECT count(*) FROM sagas WHERE id = "
	                         "'ord-690'"),
	         1);
	check_resume_reaches_owner(&w, &p1, &p2, url);
	CHECK_EQ(orch_stop(&p3, SIGTERM), 0);
	CHECK_EQ(orch_stop(&p1, SIGTERM), 0);
	world_close(&w);
	testbroker_ctl("orch-shards", "stop");
	free(url);
}

static void
test_sighup_broken_chart_keeps_old(void)
{
	struct orch_proc p;
	struct world w;
	char *url = NULL;
	char *log = NULL;

	CHECK(own_world(&p, &w, "orch-hup", 4, &url) == 0);
	CHECK(orch_start(&p, url) == 0);
	CHECK(wait_ready(&w) == 0);
	post_order(&w, 0, "card", "hup-0");
	for (int t = 0; t < 100 && finals(&w, 1) < 1; t++)
		pump(&w, 100);
	CHECK_EQ(w.completed[0], 1);
	testutil_sh(
	        NULL,
	        "printf 'saga: order\\ninitial: nowhere\\n' > '%s/order.yaml'",
	        p.charts);
	kill(p.pid, SIGHUP);
	pump(&w, 500);
	post_order(&w, 1, "card", "hup-1");
	for (int t = 0; t < 100 && finals(&w, 2) < 2; t++)
		pump(&w, 100);
	CHECK_EQ(w.completed[1], 1);
	CHECK_EQ(orch_stop(&p, SIGTERM), 0);
	log = testutil_slurp(p.log, NULL);
	CHECK(log != NULL);
	CHECK_MSG(strstr(log, "reload of") != NULL &&
	                  strstr(log,
	                         "order.yaml:1:1: the statechart: missing key "
	                         "\"states\"") != NULL,
	          "log: %s", log);
	free(log);
	close_world(&w, "orch-hup", url);
}

/* saga-orchestrator --db x.db FLAGS exits 2 saying `want`. */
static void
usage_error(const char *flags, const char *want)
{
	char *out = NULL;
	CHECK_EQ(testutil_sh(&out, "'%s/saga-orchestrator' --db x.db %s 2>&1",
	                     bindir, flags),
	         2);
	CHECK_MSG(out != NULL && strstr(out, want) != NULL, "%s: %s", flags,
	          out != NULL ? out : "");
	free(out);
}

static void
test_check_mode_and_bad_flags(void)
{
	char *out = NULL;
	CHECK_EQ(testutil_sh(&out,
	                     "'%s/saga-orchestrator' -n --db /tmp/nope-%d.db "
	                     "--statecharts '%s/statecharts' 2>&1",
	                     bindir, (int)getpid(), srcdir),
	         0);
	CHECK_MSG(strstr(out, "configuration ok") != NULL, "%s", out);
	free(out);
	testutil_sh(NULL, "rm -f /tmp/nope-%d.db*", (int)getpid());
	usage_error("--batch zero", "--batch wants a number");
	usage_error("--inbox-days -1", "--inbox-days wants a number of days");
	usage_error("--max-order-kib 16385",
	            "--max-order-kib wants a number of KiB from 1 to 16384, "
	            "not \"16385\"");
	/* the whole usage, both of its strings */
	CHECK_EQ(testutil_sh(&out, "'%s/saga-orchestrator' --help", bindir), 0);
	CHECK_MSG(strstr(out, "--max-order-kib N  an order") != NULL &&
	                  strstr(out, "-n                 check the "
	                              "configuration") != NULL,
	          "%s", out);
	free(out);
	CHECK_EQ(testutil_sh(&out,
	                     "SAGA_BUNDLE=300 '%s/saga-orchestrator' --db x.db "
	                     "2>&1",
	                     bindir),
	         2);
	CHECK_MSG(strstr(out, "--bundle (or SAGA_BUNDLE) wants a number from "
	                      "1 to 256") != NULL,
	          "%s", out);
	free(out);
	CHECK_EQ(testutil_sh(&out, "'%s/saga-orchestrator' 2>&1", bindir), 2);
	CHECK_MSG(strstr(out, "--db PATH is required") != NULL, "%s", out);
	free(out);
	CHECK_EQ(testutil_sh(&out,
	                     "'%s/saga-orchestrator' -n --db /tmp/nope2-%d.db "
	                     "--statecharts '%s/tests/statecharts' 2>&1",
	                     bindir, (int)getpid(), srcdir),
	         1);
	CHECK_MSG(strstr(out, "no *.yaml statecharts") != NULL, "%s", out);
	free(out);
	testutil_sh(NULL, "rm -f /tmp/nope2-%d.db*", (int)getpid());
}

int
main(void)
{
	log_init("test_orchestrator", LOG_WARN);
	srcdir = getenv("SAGA_SOURCE_DIR");
	bindir = getenv("SAGA_BIN_DIR");
	if (srcdir == NULL || bindir == NULL) {
		fprintf(stderr, "SAGA_SOURCE_DIR and SAGA_BIN_DIR must be set "
		                "(ctest sets them)\n");
		return 1;
	}
	atexit(kill_running);
	RUN(test_check_mode_and_bad_flags);
	RUN(test_paths_and_bad_input);
	RUN(test_reply_bundles);
	kill_running();
	RUN(test_unpublishable_event);
	RUN(test_order_too_large);
	kill_running();
	RUN(test_sighup_broken_chart_keeps_old);
	testutil_kill_all();
	RUN(test_shards_drain_and_join);
	kill_running();
	RUN(test_sigkill_midway_2000);
	kill_running();
	RUN(test_broker_restart_midway);
	kill_running();
	return check_summary();
}

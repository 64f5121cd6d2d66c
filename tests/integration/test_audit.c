/* The audit stream through the real path: a saga-orchestrator and a
 * private broker, with scripted fake participants in this test that
 * answer every command with success. Orders complete; then
 *  - `sagactl audit ORDER` prints exactly that order's events, in order
 *    (and --json the same), a future --since finds none (exit 1), a bad
 *    --since is a usage error (exit 2), an unknown order exit 1;
 *  - the console's /api/sagas/ID and /sagas/ID list them (--dlq-amqp);
 *  - restarted with another --audit-max-age, the orchestrator still
 *    connects (the stream keeps its retention, logged) and sagas run;
 *    the console says when the audit URL is unset or unreachable;
 *  - a classic queue `audit` from before gives the error that names it.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "bus.h"
#include "clock.h"
#include "envelope.h"
#include "log.h"
#include "testorder.h"
#include "testutil.h"

static const char *srcdir, *bindir;
static char *dir, *url;
static char db[512], orch_log[512], http_addr[64];
static int orch_port;
static int orch_pid = -1;
static struct bus *W;

static const char *const want_types[] = {
        "order.created", "order.inventory_checked", "order.payment_success",
        "order.shipped", "order.completed"};
#define NWANT (sizeof(want_types) / sizeof(want_types[0]))

static void
reply(const struct bus_delivery *d, const struct envelope *c, const char *type)
{
	struct envelope r;
	struct bus_message m = {0};
	char *body;
	size_t len;

	envelope_init(&r);
	envelope_new_id(r.id, sizeof(r.id), "rep");
	snprintf(r.saga, sizeof(r.saga), "%s", c->saga);
	snprintf(r.type, sizeof(r.type), "%s", type);
	snprintf(r.step, sizeof(r.step), "%s", c->step);
	snprintf(r.re, sizeof(r.re), "%s", c->id);
	r.attempt = c->attempt;
	r.ts = clock_wall_ms();
	if (strcmp(type, "payment.charged") == 0)
		value_map_put_str(&r.payload, "charge_id", "ch-1");
	if (envelope_encode(&r, &body, &len) == 0) {
		m.exchange = "saga.replies";
		m.routing_key = d->reply_to[0] ? d->reply_to : "orchestrator";
		m.message_id = r.id;
		m.correlation_id = r.saga;
		m.type = r.type;
		m.body = body;
		m.len = len;
		bus_publish(W, &m, 0);
		free(body);
	}
	envelope_clear(&r);
}

static void
on_one(void *arg, const void *body, size_t len, const char *tp)
{
	const struct bus_delivery *d = *(const struct bus_delivery **)arg;
	static const char *const answers[][2] = {
	        {"inventory.reserve", "inventory.reserved"},
	        {"payment.charge", "payment.charged"},
	        {"shipping.create", "shipping.created"},
	};
	struct envelope e;
	char err[256];

	(void)tp;
	if (envelope_decode(body, len, &e, err, sizeof(err)) == 0)
		for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]);
		     i++)
			if (strcmp(e.type, answers[i][0]) == 0)
				reply(d, &e, answers[i][1]);
	envelope_clear(&e);
}

static void
on_msg(void *arg, const struct bus_delivery *d)
{
	char err[256];

	(void)arg;
	envelope_each(d->type, d->body, d->len, d->traceparent, on_one, &d, err,
	              sizeof(err));
	bus_ack(W, d->ref, false);
}

static int
world_open(void)
{
	static const struct bus_exchange ex[] = {
	        {"saga.commands", "topic", NULL, NULL},
	        {"saga.replies", "direct", NULL, NULL},
	        {"order_events", "topic", NULL, NULL},
	};
	static const struct bus_queue q[] = {{.name = "fake.commands"}};
	static const struct bus_binding bd[] = {
	        {"saga.commands", "fake.commands", NULL, "#"},
	};
	static const struct bus_topology t = {ex, 3, q, 1, bd, 1};
	static const char *consume[] = {"fake.commands"};
	struct bus_config cfg = {.url = url,
	                         .name = "fake",
	                         .prefetch = 100,
	                         .topology = &t,
	                         .consume = consume,
	                         .nconsume = 1};
	char err[512];

	W = bus_open(&cfg, err, sizeof(err));
	if (W == NULL || bus_connect(W, err, sizeof(err)) != 0) {
		fprintf(stderr, "fake participants: %s\n", err);
		return -1;
	}
	return 0;
}

static void
pump(int ms)
{
	struct bus_handlers h = {on_msg, NULL, NULL};
	int64_t end = clock_mono_ms() + ms;

	do
		bus_poll(W, 20, &h);
	while (clock_mono_ms() < end);
}

static void
post_order(const char *id)
{
	struct envelope e;

	testorder_envelope(
	        &e, &(struct testorder){.id = id, .ts = clock_wall_ms()});
	testorder_publish(W, &e, NULL);
	envelope_clear(&e);
}

static int
db_count(const char *sql)
{
	return testutil_db_count(db, sql);
}

/* Pumps the fake participants until `want` sagas completed (~secs). */
static bool
wait_completed(int want, int secs)
{
	for (int t = 0; t < secs * 10; t++) {
		if (db_count("SELECT count(*) FROM sagas WHERE status = "
		             "'completed'") == want)
			return true;
		pump(100);
	}
	return false;
}

/* The orchestrator with these extra flags (NULL-ended), its log
 * truncated; waits for /healthz 200 when `ready`. */
static bool
start_orch(const char *const *extra, bool ready)
{
	const char *a[32] = {"saga-orchestrator",
	                     "--amqp",
	                     url,
	                     "--db",
	                     db,
	                     "--statecharts",
	                     "statecharts",
	                     "--batch-wait",
	                     "2",
	                     "--http",
	                     http_addr};
	size_t n = 11;
	int status = 0;
	char *body;
	FILE *f;

	for (; extra != NULL && *extra != NULL && n < 31; extra++)
		a[n++] = *extra;
	a[n] = NULL;
	f = fopen(orch_log, "w"); /* this run's lines only */
	if (f != NULL)
		fclose(f);
	orch_pid = testutil_spawn(a, orch_log);
	if (orch_pid < 0)
		return false;
	for (int t = 0; ready && t < 100; t++) {
		body = testutil_http(orch_port, "GET", "/healthz", NULL, NULL,
		                     &status);
		free(body);
		if (status == 200)
			return true;
		pump(100);
	}
	return !ready;
}

static void
stop_orch(void)
{
	if (orch_pid > 0)
		CHECK_EQ(testutil_stop(orch_pid, SIGTERM), 0);
	orch_pid = -1;
}

/* The last output of ctl (freed on the next call and at exit). */
static char *out;

static int
ctl(const char *args)
{
	free(out);
	out = NULL;
	return testutil_sh(&out, "'%s/sagactl' --amqp '%s' %s 2>&1", bindir,
	                   url, args);
}

/* sagactl audit ID: one line per event, exactly the order's, in order;
 * --json the same; then the ways it finds nothing or refuses. */
static void
test_sagactl_audit(void)
{
	char *p, *line, *save = NULL;
	size_t i = 0;
	json_t *doc, *ev;
	json_error_t jerr;
	size_t k;

	CHECK_MSG(ctl("audit aud-1") == 0, "%s", out);
	for (line = strtok_r(out, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save), i++) {
		CHECK_MSG(i < NWANT, "more lines than events: %s", line);
		if (i >= NWANT)
			break;
		p = strchr(line, ' ');
		CHECK_MSG(p != NULL &&
		                  strncmp(p + 1, want_types[i],
		                          strlen(want_types[i])) == 0 &&
		                  p[1 + strlen(want_types[i])] == ' ',
		          "line %zu: want %s: %s", i, want_types[i], line);
		CHECK_MSG(strstr(line, "aud-2") == NULL, "%s", line);
	}
	CHECK_EQ(i, NWANT);

	free(out);
	out = NULL;
	CHECK_EQ(testutil_sh(&out,
	                     "'%s/sagactl' --amqp '%s' --json audit aud-1",
	                     bindir, url),
	         0);
	doc = json_loads(out != NULL ? out : "", 0, &jerr);
	CHECK_MSG(doc != NULL, "--json: %s", out);
	CHECK(json_is_true(json_object_get(doc, "complete")));
	CHECK_EQ(json_array_size(json_object_get(doc, "events")), NWANT);
	json_array_foreach(json_object_get(doc, "events"), k, ev)
	{
		const char *t = json_string_value(json_object_get(ev, "type"));
		CHECK_MSG(k < NWANT && t != NULL &&
		                  strcmp(t, want_types[k]) == 0,
		          "event %zu: %s", k, t);
		CHECK(json_integer_value(json_object_get(ev, "offset")) >= 0);
	}
	ev = json_array_get(json_object_get(doc, "events"), 0);
	CHECK_MSG(strcmp(json_string_value(json_object_get(ev, "message_id")),
	                 "created-aud-1") == 0,
	          "%s", out);
	json_decref(doc);

	CHECK_MSG(ctl("audit aud-1 --since 1h") == 0, "%s", out);
	CHECK_MSG(ctl("audit aud-1 --since 2099-01-01T00:00:00Z") == 1, "%s",
	          out);
	CHECK_MSG(strstr(out, "no events of order aud-1") != NULL, "%s", out);
	CHECK_MSG(ctl("audit nosuch-order") == 1, "%s", out);
	CHECK_MSG(strstr(out, "no events of order nosuch-order") != NULL, "%s",
	          out);
	CHECK_MSG(ctl("audit aud-1 --since yesterday") == 2, "%s", out);
	CHECK_MSG(strstr(out, "--since wants an RFC 3339 time") != NULL, "%s",
	          out);
	CHECK_MSG(ctl("audit aud-1 --since 2026-02-30T00:00:00Z") == 2, "%s",
	          out);
	CHECK_MSG(ctl("audit") == 2, "%s", out);
	CHECK_MSG(ctl("list --since 1h") == 2, "%s", out);
	CHECK_MSG(ctl("audit --help") == 0 && strncmp(out, "usage:", 6) == 0,
	          "%s", out);
	/* no broker there: exit 1 with the reason */
	free(out);
	out = NULL;
	CHECK_EQ(testutil_sh(
	                 &out,
	                 "'%s/sagactl' --amqp amqp://guest:guest@127.0.0.1:1/ "
	                 "audit aud-1 2>&1",
	                 bindir),
	         1);
	CHECK_MSG(strstr(out, "cannot read audit") != NULL, "%s", out);
}

/* GET /api/sagas/ID: its "audit" document, or NULL (said on stderr). */
static json_t *
api_audit(const char *id)
{
	char path[128];
	int status = 0;
	char *body;
	json_t *doc, *a;

	snprintf(path, sizeof(path), "/api/sagas/%s", id);
	body = testutil_http(orch_port, "GET", path, NULL, NULL, &status);
	doc = status == 200 ? json_loads(body, 0, NULL) : NULL;
	a = json_incref(json_object_get(doc, "audit"));
	if (a == NULL)
		fprintf(stderr, "%s: %d %s\n", path, status, body);
	free(body);
	json_decref(doc);
	return a;
}

static void
test_console(void)
{
	json_t *a = api_audit("aud-2"), *ev;
	size_t k;
	int status = 0;
	char *page;

	CHECK(a != NULL);
	CHECK(json_is_null(json_object_get(a, "error")));
	CHECK(json_is_true(json_object_get(a, "complete")));
	CHECK_EQ(json_array_size(json_object_get(a, "events")), NWANT);
	json_array_foreach(json_object_get(a, "events"), k, ev)
	{
		const char *t = json_string_value(json_object_get(ev, "type"));
		CHECK_MSG(k < NWANT && t != NULL &&
		                  strcmp(t, want_types[k]) == 0,
		          "event %zu: %s", k, t);
	}
	json_decref(a);
	page = testutil_http(orch_port, "GET", "/sagas/aud-2", NULL, NULL,
	                     &status);
	CHECK_EQ(status, 200);
	CHECK_MSG(page != NULL && strstr(page, "id=\"events\"") != NULL &&
	                  strstr(page, "<code>created-aud-2</code>") != NULL &&
	                  strstr(page, "order.payment_success") != NULL &&
	                  strstr(page, "created-aud-1") == NULL &&
	                  strstr(page, "events-error") == NULL,
	          "%s", page);
	free(page);
}

/* Another --audit-max-age on a broker where the stream exists: it
 * connects, logs the retention kept, and sagas run; the console's
 * audit URL unreachable or unset is said on the page. */
static void
test_restarts(void)
{
	const char *const flags[] = {"--audit-max-age", "3D", "--dlq-amqp",
	                             "amqp://guest:guest@127.0.0.1:1/", NULL};
	json_t *a;
	char *log;
	int status = 0;
	char *page;

	stop_orch();
	CHECK(start_orch(flags, true));
	log = testutil_slurp(orch_log, NULL);
	CHECK_MSG(log != NULL &&
	                  strstr(log, "queue audit kept as it exists") !=
	                          NULL &&
	                  strstr(log, "current is '7D'") != NULL,
	          "%s", log);
	free(log);
	post_order("aud-3");
	CHECK(wait_completed(3, 20));
	a = api_audit("aud-3");
	CHECK(a != NULL && json_is_string(json_object_get(a, "error")));
	CHECK_MSG(strstr(json_string_value(json_object_get(a, "error")),
	                 "cannot read audit") != NULL,
	          "%s", json_string_value(json_object_get(a, "error")));
	CHECK_EQ(json_array_size(json_object_get(a, "events")), 0);
	json_decref(a);
	page = testutil_http(orch_port, "GET", "/sagas/aud-3", NULL, NULL,
	                     &status);
	CHECK_MSG(status == 200 && page != NULL &&
	                  strstr(page, "events-error") != NULL,
	          "%s", page);
	free(page);

	stop_orch();
	CHECK(start_orch(NULL, true));
	a = api_audit("aud-3");
	CHECK(a != NULL && json_is_string(json_object_get(a, "error")));
	CHECK_MSG(strstr(json_string_value(json_object_get(a, "error")),
	                 "not configured") != NULL,
	          "%s", json_string_value(json_object_get(a, "error")));
	json_decref(a);
	/* sagactl reads what the restarted orchestrator emitted */
	CHECK_MSG(ctl("audit aud-3") == 0 && strstr(out, "order.completed"),
	          "%s", out);
}

/* A classic `audit` from before the stream: the error names it. */
static void
test_classic_audit(void)
{
	static const struct bus_queue q[] = {{.name = "audit"}};
	static const struct bus_topology t = {NULL, 0, q, 1, NULL, 0};
	struct bus_config cfg = {.url = url, .name = "classic", .topology = &t};
	struct bus *b;
	char err[512], *log = NULL;
	int status = 0;

	stop_orch();
	CHECK_EQ(bus_queue_delete(W, "audit", false), 0);
	b = bus_open(&cfg, err, sizeof(err));
	CHECK_MSG(b != NULL && bus_connect(b, err, sizeof(err)) == 0, "%s",
	          err);
	bus_close(b);
	CHECK(start_orch(NULL, false));
	for (int i = 0; i < 50; i++) {
		free(log);
		log = testutil_slurp(orch_log, NULL);
		if (log != NULL && strstr(log, "is not a stream") != NULL)
			break;
		usleep(100000);
	}
	CHECK_MSG(log != NULL &&
	                  strstr(log, "queue audit exists and is not a "
	                              "stream") != NULL &&
	                  strstr(log, "delete it once") != NULL &&
	                  strstr(log, "deploy/README.md") != NULL,
	          "%s", log);
	free(log);
	free(testutil_http(orch_port, "GET", "/healthz", NULL, NULL, &status));
	CHECK_MSG(status != 200, "/healthz %d", status);
	/* deleted once, as deploy/README.md says: it comes back a stream */
	CHECK_EQ(bus_queue_delete(W, "audit", false), 0);
	for (int i = 0; i < 100 && status != 200; i++) {
		free(testutil_http(orch_port, "GET", "/healthz", NULL, NULL,
		                   &status));
		pump(100);
	}
	CHECK_EQ(status, 200);
	post_order("aud-4");
	CHECK(wait_completed(4, 20));
	CHECK_MSG(ctl("audit aud-4") == 0 && strstr(out, "order.completed"),
	          "%s", out);
}

int
main(void)
{
	const char *const flags[] = {"--dlq-amqp", NULL, NULL};
	const char *f[3];

	log_init("test_audit", LOG_WARN);
	srcdir = getenv("SAGA_SOURCE_DIR");
	bindir = getenv("SAGA_BIN_DIR");
	if (srcdir == NULL || bindir == NULL) {
		fprintf(stderr, "SAGA_SOURCE_DIR and SAGA_BIN_DIR must be set "
		                "(ctest sets them)\n");
		return 1;
	}
	atexit(testutil_kill_all);
	dir = testutil_tmpdir("audit");
	if (dir == NULL)
		return 1;
	snprintf(db, sizeof(db), "%s/orch.db", dir);
	snprintf(orch_log, sizeof(orch_log), "%s/orch.log", dir);
	orch_port = testutil_free_port();
	snprintf(http_addr, sizeof(http_addr), "127.0.0.1:%d", orch_port);
	url = testbroker_start("audit");
	if (url == NULL || world_open() != 0) {
		fprintf(stderr, "no broker\n");
		return 1;
	}
	memcpy(f, flags, sizeof(f));
	f[1] = url;
	if (!start_orch(f, true)) {
		fprintf(stderr, "the orchestrator did not start (%s)\n",
		        orch_log);
		return 1;
	}
	post_order("aud-1");
	post_order("aud-2");
	if (!wait_completed(2, 20)) {
		fprintf(stderr, "the orders did not complete (%s)\n", orch_log);
		return 1;
	}
	RUN(test_sagactl_audit);
	RUN(test_console);
	RUN(test_restarts);
	RUN(test_classic_audit);
	stop_orch();
	bus_close(W);
	free(out);
	testbroker_ctl("audit", "stop");
	free(url);
	if (check_failed == 0)
		testutil_rmtree(dir);
	free(dir);
	return check_summary();
}

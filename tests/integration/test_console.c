/* The console's JSON API (orchestrator/svc/console.h) against a real
 * saga-orchestrator (--http) and a private broker, with scripted fake
 * participants (statecharts/order.yaml with short timeouts): sagas that
 * complete, fail (compensated) and get stuck, then every /api/ document,
 * its filters, keyset paging, search by order data, and the errors a bad
 * parameter or an unknown saga get; hostile query strings must not crash
 * the daemon.
 *
 * Then the actions (console_act.c): login (a users file made by
 * saga-orchestrator --hash-password, and a $6$ line), the CSRF header,
 * previews matching what applying sends (the same command ids, seen by
 * the fake participants), the actor recorded in the history, refusals,
 * and bulk preview and apply with the `expect` guard; the guard against
 * password guessing (429 and Retry-After after five failures).
 *
 * With --browser (ctest: test_console_browser) the same world is set up
 * and tests/console/browser.sh checks the pages in headless chromium;
 * exit 77 (skipped) when chromium is missing. */
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "bus.h"
#include "envelope.h"
#include "log.h"
#include "testorder.h"
#include "testutil.h"

static const char *srcdir, *bindir;
static char *dir, *url;
static char db[512], charts[512], orch_log[512], users[600];
static int orch_pid = -1;

struct world {
	struct bus *bus;
	bool refund_ok;        /* false: payment.refund is never answered */
	char refunds[16][128]; /* the ids of the payment.refund commands */
	size_t nrefunds;       /* seen once refund_ok (at most 16 kept) */
};
static struct world W;

static void
reply(const struct bus_delivery *d, const struct envelope *c, const char *type)
{
	struct envelope r;
	char *body;
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
	if (envelope_encode(&r, &body, &len) == 0) {
		m.exchange = "saga.replies";
		m.routing_key = d->reply_to[0] ? d->reply_to : "orchestrator";
		m.message_id = r.id;
		m.correlation_id = r.saga;
		m.type = r.type;
		m.body = body;
		m.len = len;
		bus_publish(W.bus, &m, 0);
		free(body);
	}
	envelope_clear(&r);
}

/* ok-*: every step succeeds. fl-*: the payment is declined, the stock
 * released: failed. stk-*: shipping fails, so the payment is refunded --
 * and the refund is never answered: stuck. hld-* (test_stuck_after): the
 * charge is never answered, and the step's timeout is long: it waits in
 * payment, past its stuck_after. */
static void
on_one(void *arg, const void *body, size_t len, const char *tp)
{
	const struct bus_delivery *d = *(const struct bus_delivery **)arg;
	struct envelope e;
	char err[256];
	const char *t, *r = NULL;
	(void)tp;
	envelope_init(&e);
	if (envelope_decode(body, len, &e, err, sizeof(err)) != 0)
		return;
	t = e.type;
	if (strcmp(t, "inventory.reserve") == 0)
		r = "inventory.reserved";
	else if (strcmp(t, "payment.charge") == 0 &&
	         strncmp(e.saga, "hld-", 4) != 0) /* hld-*: never answered */
		r = strncmp(e.saga, "fl-", 3) == 0 ? "payment.declined"
		                                   : "payment.charged";
	else if (strcmp(t, "shipping.create") == 0)
		r = strncmp(e.saga, "stk-", 4) == 0 ? "shipping.failed"
		                                    : "shipping.created";
	else if (strcmp(t, "inventory.release") == 0)
		r = "inventory.released";
	else if (strcmp(t, "payment.refund") == 0)
		r = W.refund_ok ? "payment.refunded" : NULL;
	if (W.refund_ok && strcmp(t, "payment.refund") == 0 && W.nrefunds < 16)
		snprintf(W.refunds[W.nrefunds++], sizeof(W.refunds[0]), "%s",
		         e.id);
	else if (strcmp(t, "shipping.cancel") == 0)
		r = "shipping.cancelled";
	if (r != NULL)
		reply(d, &e, r);
	envelope_clear(&e);
}

/* A command may come in a bundle (lib/envelope.h). */
static void
on_msg(void *arg, const struct bus_delivery *d)
{
	char err[256];
	(void)arg;
	if (envelope_each(d->type, d->body, d->len, d->traceparent, on_one, &d,
	                  err, sizeof(err)) != 0)
		fprintf(stderr, "fake participants: %s\n", err);
	bus_ack(W.bus, d->ref, false);
}

static int
world_open(void)
{
	static const struct bus_exchange ex[] = {
	        {"saga.commands", "topic", NULL, NULL},
	        {"saga.replies", "direct", NULL, NULL},
	};
	static const struct bus_queue q[] = {{.name = "fake.commands"}};
	static const struct bus_binding bd[] = {
	        {"saga.commands", "fake.commands", NULL, "#"},
	};
	static const struct bus_topology t = {ex, 2, q, 1, bd, 1};
	static const char *consume[] = {"fake.commands"};
	struct bus_config cfg = {.url = url,
	                         .name = "fake",
	                         .prefetch = 100,
	                         .topology = &t,
	                         .consume = consume,
	                         .nconsume = 1};
	char err[512];

	W.bus = bus_open(&cfg, err, sizeof(err));
	if (W.bus == NULL || bus_connect(W.bus, err, sizeof(err)) != 0) {
		fprintf(stderr, "fake participants: %s\n", err);
		return -1;
	}
	return 0;
}

static void
pump(int ms)
{
	struct bus_handlers h = {on_msg, NULL, NULL};
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		bus_poll(W.bus, 20, &h);
		clock_gettime(CLOCK_MONOTONIC, &t1);
	} while ((t1.tv_sec - t0.tv_sec) * 1000 +
	                 (t1.tv_nsec - t0.tv_nsec) / 1000000 <
	         ms);
}

static int
wait_ready(void)
{
	char err[256];
	for (int i = 0; i < 300; i++) {
		uint32_t msgs = 0, cons = 0;
		if (!bus_connected(W.bus))
			bus_connect(W.bus, err, sizeof(err));
		if (bus_queue_info(W.bus, "orchestrator.orders", &msgs,
		                   &cons) == 0 &&
		    cons > 0)
			return 0;
		pump(100);
	}
	return -1;
}

static void
post_order(const char *id, const char *customer, const char *sku)
{
	struct envelope e;

	testorder_envelope(&e, &(struct testorder){.id = id,
	                                           .customer = customer,
	                                           .sku = sku});
	testorder_publish(W.bus, &e, NULL);
	envelope_clear(&e);
}

static int
db_count(const char *sql)
{
	return testutil_db_count(db, sql);
}

/* Pumps the fake participants until sql counts `want` (at most ~secs). */
static int
wait_count(const char *sql, int want, int secs)
{
	for (int t = 0; t < secs * 10; t++) {
		if (db_count(sql) == want)
			return 0;
		pump(100);
	}
	return db_count(sql);
}

static int port;
static char *out;

/* GETs path from the console and prints `expr` (python3, with d the
 * parsed JSON and s the status) into out. The shell's exit status. */
static int
api(const char *path, const char *expr)
{
	free(out);
	out = NULL;
	return testutil_sh(&out,
	                   "python3 '%s/get.py' 'http://127.0.0.1:%d%s' "
	                   "\"%s\"",
	                   dir, port, path, expr);
}

/* The helper call() runs: METHOD URL BODY|- EXPR [HEADER: VALUE]... */
static int
write_req_py(void)
{
	static const char py[] =
	        "import json, sys, urllib.request, urllib.error\n"
	        "m, u, body, expr = sys.argv[1:5]\n"
	        "hdr = dict(a.split(': ', 1) for a in sys.argv[5:] if a)\n"
	        "data = None if body == '-' else body.encode()\n"
	        "if data is not None:\n"
	        "    hdr['Content-Type'] = 'application/json'\n"
	        "q = urllib.request.Request(u, data=data, method=m, "
	        "headers=hdr)\n"
	        "try:\n"
	        "    r = urllib.request.urlopen(q); s = r.status\n"
	        "except urllib.error.HTTPError as e:\n"
	        "    r = e; s = e.code\n"
	        "h = r.headers\n"
	        "d = json.load(r)\n"
	        "print(repr(eval(expr)))\n";
	char path[600];
	FILE *f;

	snprintf(path, sizeof(path), "%s/req.py", dir);
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fputs(py, f);
	return fclose(f);
}

/* The helper api() runs: GET argv[1], print repr(eval(argv[2])). */
static int
write_get_py(void)
{
	static const char py[] =
	        "import json, sys, urllib.request, urllib.error\n"
	        "try:\n"
	        "    r = urllib.request.urlopen(sys.argv[1]); s = r.status\n"
	        "except urllib.error.HTTPError as e:\n"
	        "    r = e; s = e.code\n"
	        "d = json.load(r)\n"
	        "print(repr(eval(sys.argv[2])))\n";
	char path[600];
	FILE *f;

	snprintf(path, sizeof(path), "%s/get.py", dir);
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fputs(py, f);
	if (fclose(f) != 0)
		return -1;
	return write_req_py();
}

static void
world_run(void)
{
	post_order("ok-1", "c-alice", "sku-book");
	post_order("ok-2", "c-bob", "sku-pen");
	post_order("ok-3", "c-alice", "sku-lamp");
	post_order("fl-1", "c-carol", "sku-book");
	post_order("stk-1", "c-dave", "sku-desk");
	post_order("stk-2", "c-erin", "sku-desk");
	CHECK_EQ(wait_count("SELECT count(*) FROM sagas WHERE status = "
	                    "'completed'",
	                    3, 20),
	         0);
	CHECK_EQ(wait_count("SELECT count(*) FROM sagas WHERE status = "
	                    "'failed'",
	                    1, 20),
	         0);
	CHECK_EQ(wait_count("SELECT count(*) FROM sagas WHERE status = "
	                    "'stuck'",
	                    2, 30),
	         0);
}

static void
test_summary_and_charts(void)
{
	CHECK_EQ(api("/api/summary",
	             "s, d['counts'], d['total'], "
	             "d['throughput']['completed_last_hour'], "
	             "sorted(x['state'] for x in d['steps']), "
	             "all(x['p50_ms'] <= x['p99_ms'] for x in d['steps'])"),
	         0);
	CHECK_STR(out, "(200, {'completed': 3, 'failed': 1, 'stuck': 2}, 6, "
	               "3, ['create_shipment', 'payment', 'reserve_stock'], "
	               "True)");
	CHECK_EQ(api("/api/charts",
	             "s, [c['name'] for c in d['charts']], "
	             "d['charts'][0]['versions'][0]['sagas'], "
	             "d['charts'][0]['versions'][0]['by_status'], "
	             "[(x['state'], x['sagas']) for x in "
	             "d['charts'][0]['states'] if x['sagas']]"),
	         0);
	CHECK_STR(out, "(200, ['order'], 6, {'completed': 3, 'failed': 1, "
	               "'stuck': 2}, [('payment', 2), ('completed', 3), "
	               "('failed', 1)])");
	CHECK_EQ(api("/api/stuck",
	             "s, sorted(x['id'] for x in d['stuck']), "
	             "all(x['for_ms'] >= 0 and x['why']['detail'] for x in "
	             "d['stuck'])"),
	         0);
	CHECK_STR(out, "(200, ['stk-1', 'stk-2'], True)");
	fprintf(stderr, "     stuck: %s\n", out);
}

static void
test_list_filters(void)
{
	static const struct {
		const char *query, *want;
	} cases[] = {
	        {"", "['fl-1', 'ok-1', 'ok-2', 'ok-3', 'stk-1', 'stk-2']"},
	        {"?status=stuck", "['stk-1', 'stk-2']"},
	        {"?status=completed&chart=order&state=completed",
	         "['ok-1', 'ok-2', 'ok-3']"},
	        {"?id_prefix=ok-&status=", "['ok-1', 'ok-2', 'ok-3']"},
	        {"?q=c-carol", "['fl-1']"},
	        {"?q=sku-desk", "['stk-1', 'stk-2']"},
	        {"?q=c-alice&status=completed", "['ok-1', 'ok-3']"},
	        {"?q=nobody", "[]"},
	        {"?older_than=1d", "[]"},
	        {"?older_than=10ms", "['fl-1', 'ok-1', 'ok-2', 'ok-3', "
	                             "'stk-1', 'stk-2']"},
	        {"?chart=nope", "[]"},
	};
	char path[256], want[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(path, sizeof(path), "/api/sagas%s", cases[i].query);
		CHECK_EQ(api(path, "s, sorted(x['id'] for x in d['sagas']), "
		                   "d['next']"),
		         0);
		snprintf(want, sizeof(want), "(200, %s, None)", cases[i].want);
		CHECK_MSG(strcmp(out, want) == 0, "%s: %s, not %s", path, out,
		          want);
	}
	/* newest first; the same start: by id */
	CHECK_EQ(api("/api/sagas",
	             "[x['id'] for x in d['sagas']] == "
	             "[x['id'] for x in sorted(d['sagas'], "
	             "key=lambda x: (-x['started_at'], x['id']))]"),
	         0);
	CHECK_STR(out, "True");
}

/* Pages of 2 by key: every saga once, in the list's order (orders that
 * started in one batch share started_at: the key's id breaks the tie). */
static void
test_paging(void)
{
	char path[256] = "/api/sagas?limit=2";
	char ids[512] = "", all[512];
	int pages = 0;

	CHECK_EQ(api("/api/sagas", "' '.join(x['id'] for x in d['sagas'])"), 0);
	snprintf(all, sizeof(all), "%s", out);
	for (; pages < 10; pages++) {
		CHECK_EQ(api(path, "' '.join(x['id'] for x in d['sagas']) + "
		                   "'|' + (d['next'] or '')"),
		         0);
		char *bar = strchr(out, '|');
		CHECK(bar != NULL);
		if (bar == NULL)
			return;
		*bar = '\0';
		if (ids[0] != '\0')
			strcat(ids, " ");
		strncat(ids, out + 1, sizeof(ids) - strlen(ids) - 2);
		bar[strlen(bar + 1)] = '\0'; /* the closing quote */
		if (bar[1] == '\0')
			break;
		snprintf(path, sizeof(path), "/api/sagas?limit=2&after=%s",
		         bar + 1);
	}
	CHECK_EQ(pages, 2);
	snprintf(path, sizeof(path), "'%s'", ids);
	CHECK_STR(path, all);
}

static void
test_one_saga(void)
{
	CHECK_EQ(api("/api/sagas/stk-1",
	             "s, d['status'], d['state'], d['data']['customer_id'], "
	             "d['data']['items'][0]['sku'], "
	             "[(u['command'], u['message_id']) for u in "
	             "d['compensation']], "
	             "[v for v in d['path']['visited']], "
	             "len(d['history']) > 5, d['actions']"),
	         0);
	/* the refund it is stuck on, at the attempt it reached */
	CHECK_STR(out, "(200, 'stuck', 'payment', 'c-dave', "
	               "'sku-desk', [('payment.refund', "
	               "'stk-1:payment:undo:3'), ('inventory.release', "
	               "'stk-1:reserve_stock:undo:1')], ['reserve_stock', "
	               "'cod_limit', 'payment', 'create_shipment'], True, [])");
	fprintf(stderr, "     stk-1: %s\n", out);
	CHECK_EQ(api("/api/sagas/ok-1",
	             "s, d['status'], d['compensation'], d['timer'], "
	             "'completed' in d['path']['visited'], "
	             "['create_shipment', 'completed'] in d['path']['edges']"),
	         0);
	CHECK_STR(out, "(200, 'completed', [], None, True, True)");
	CHECK_EQ(api("/api/sagas/fl-1", "s, d['status'], d['path']['undone'], "
	                                "[h['kind'] for h in d['history']][0]"),
	         0);
	CHECK_STR(out, "(200, 'failed', ['reserve_stock'], 'start')");
	CHECK_EQ(api("/api/sagas/nope-1", "s, d"), 0);
	CHECK_STR(out, "(404, {'error': 'no saga nope-1'})");
	CHECK_EQ(api("/api/nope", "s"), 0);
	CHECK_STR(out, "404");
}

static void
test_bad_parameters(void)
{
	static const struct {
		const char *query, *msg;
	} cases[] = {
	        {"status=nope", "status: not a status"},
	        {"limit=0", "limit: not a whole number from 1 to 500"},
	        {"limit=ten", "limit: not a whole number"},
	        {"limit=501", "limit: not a whole number"},
	        {"limit=-1", "limit: not a whole number"},
	        {"older_than=5x", "older_than: not a duration"},
	        {"older_than=-5s", "older_than: not a duration"},
	        {"after=abc", "after: not a page key"},
	        {"after=12", "after: not a page key"},
	};
	char path[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(path, sizeof(path), "/api/sagas?%s", cases[i].query);
		CHECK_EQ(api(path, "s, d['error']"), 0);
		CHECK_MSG(strncmp(out, "(400, '", 7) == 0 &&
		                  strstr(out, cases[i].msg) != NULL,
		          "%s: %s", path, out);
	}
	CHECK_EQ(api("/api/stuck?for=forever", "s"), 0);
	CHECK_STR(out, "400");
}

/* Whatever comes from the network, the daemon answers and lives on. */
static void
test_hostile_requests(void)
{
	static const char *const paths[] = {
	        "/api/sagas?q=%00%01%ff%fe",
	        "/api/sagas?status=%ZZ&chart=%",
	        "/api/sagas?after=99999999999999999999999.x",
	        "/api/sagas?after=1.",
	        "/api/sagas/%2e%2e%2f%2e%2e",
	        "/api/sagas/\xff\xfe",
	        "/api/sagas?q='%20OR%201=1--",
	        "/sagas?status=%3Cscript%3E&q=%22%3E%3Cb%3E",
	        "/sagas/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
	        "/charts?x=1",
	        "/nope",
	};
	char longq[6000];
	int status = 0;
	char *body;

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		bool got, escaped;
		body = testutil_http(port, "GET", paths[i], NULL, NULL,
		                     &status);
		got = body != NULL;
		escaped = got && strstr(body, "<script>alert") == NULL &&
		          strstr(body, "\"><b>") == NULL;
		free(body);
		CHECK_MSG(got && status >= 200 && status < 500, "%s: %d",
		          paths[i], status);
		CHECK_MSG(escaped, "%s: unescaped", paths[i]);
	}
	memcpy(longq, "/api/sagas?q=", 13);
	memset(longq + 13, 'a', sizeof(longq) - 14);
	longq[sizeof(longq) - 1] = '\0';
	body = testutil_http(port, "GET", longq, NULL, NULL, &status);
	free(body);
	CHECK(status == 400 || status == 414);
	body = testutil_http(port, "GET", "/healthz", NULL, NULL, &status);
	free(body);
	CHECK(status == 200);
}

/* ---- actions ---- */

static char cookie[128]; /* "saga_session=..." once logged in */

/* METHOD path with a JSON body (or NULL), printing `expr` (python3: d
 * the JSON answer, s the status, h the headers) into out. csrf: send
 * X-Saga-Console; with the session cookie once there is one. */
static int
call(const char *method, const char *path, const char *body, bool csrf,
     const char *expr)
{
	free(out);
	out = NULL;
	return testutil_sh(&out,
	                   "python3 '%s/req.py' %s 'http://127.0.0.1:%d%s' "
	                   "'%s' \"%s\" %s %s%s%s",
	                   dir, method, port, path, body ? body : "-", expr,
	                   csrf ? "'X-Saga-Console: 1'" : "",
	                   cookie[0] ? "'Cookie: " : "", cookie,
	                   cookie[0] ? "'" : "");
}

static void
test_actions_need_login(void)
{
	static const char resume[] =
	        "{\"action\": \"resume\", \"reason\": \"try\"}";

	CHECK_EQ(call("POST", "/api/sagas/stk-1/actions", resume, true,
	              "s, d['error']"),
	         0);
	CHECK_STR(out, "(401, 'not logged in: POST /login first')");
	CHECK_EQ(call("POST", "/api/sagas/stk-1/actions", resume, false,
	              "s, 'X-Saga-Console' in d['error']"),
	         0);
	CHECK_STR(out, "(403, True)");
	CHECK_EQ(call("POST", "/login",
	              "{\"user\": \"alice\", \"password\": \"nope\"}", true,
	              "s, d['error'], 'Set-Cookie' in h"),
	         0);
	CHECK_STR(out, "(401, 'wrong user name or password', False)");
	CHECK_EQ(call("POST", "/login",
	              "{\"user\": \"mallory\", \"password\": \"s3cret\"}", true,
	              "s, d['error']"),
	         0);
	CHECK_STR(out, "(401, 'wrong user name or password')");
	/* no CSRF header: refused even with the right password */
	CHECK_EQ(call("POST", "/login",
	              "{\"user\": \"alice\", \"password\": \"s3cret\"}", false,
	              "s"),
	         0);
	CHECK_STR(out, "403");
	/* nothing was applied */
	CHECK_EQ(db_count("SELECT count(*) FROM history WHERE kind = "
	                  "'operator'"),
	         0);
}

static void
test_login(void)
{
	const char *c;

	CHECK_EQ(call("POST", "/login",
	              "{\"user\": \"alice\", \"password\": \"s3cret\"}", true,
	              "s, d['user'], h['Set-Cookie'].split(';')[0], "
	              "sorted(x.strip() for x in "
	              "h['Set-Cookie'].split(';')[1:])"),
	         0);
	CHECK(strncmp(out, "(200, 'alice', 'saga_session=", 29) == 0);
	CHECK(strstr(out, "['HttpOnly', 'Max-Age=28800', 'Path=/', "
	                  "'SameSite=Strict']") != NULL);
	c = out + strlen("(200, 'alice', '");
	snprintf(cookie, sizeof(cookie), "%.*s", (int)strcspn(c, "'"), c);
	/* the $6$ line (openssl passwd -6) logs in too */
	if (testutil_sh(NULL, "grep -q '^bob:' '%s/users'", dir) == 0) {
		CHECK_EQ(call("POST", "/login",
		              "{\"user\": \"bob\", \"password\": \"pw-b\"}",
		              true, "s, d['user']"),
		         0);
		CHECK_STR(out, "(200, 'bob')");
	}
	/* logged in, still no CSRF header: refused */
	CHECK_EQ(call("POST", "/api/sagas/stk-1/actions",
	              "{\"action\": \"resume\", \"reason\": \"x\"}", false,
	              "s"),
	         0);
	CHECK_STR(out, "403");
}

/* The preview of resume names the refund it re-sends; applying sends
 * that very id, records alice and the reason, and the saga finishes its
 * compensation. */
static void
test_preview_then_apply(void)
{
	char mid[128];

	CHECK_EQ(call("GET", "/api/sagas/stk-1/preview?action=resume", NULL,
	              false,
	              "s, d['result'], d['status'], "
	              "[(c['command'], c['message_id']) for c in "
	              "d['commands']], [(u['command'], u['current']) for u "
	              "in d['compensations']], d['compensations_run']"),
	         0);
	CHECK_STR(out, "(200, 'ok', 'compensating', [('payment.refund', "
	               "'stk-1:payment:undo:4')], [('payment.refund', True), "
	               "('inventory.release', False)], True)");
	snprintf(mid, sizeof(mid), "stk-1:payment:undo:4");
	CHECK_EQ(call("GET", "/api/sagas/stk-1/preview?action=compensate", NULL,
	              false, "s, d['result'], d['note']"),
	         0);
	CHECK_STR(out, "(200, 'rejected', 'compensate: saga is stuck, not "
	               "running')");
	CHECK_EQ(call("POST", "/api/sagas/stk-1/actions",
	              "{\"action\": \"resume\"}", true, "s, d['error']"),
	         0);
	CHECK(strncmp(out, "(400, 'reason: required", 23) == 0);
	CHECK_EQ(call("POST", "/api/sagas/stk-1/actions",
	              "{\"action\": \"undo\", \"reason\": \"x\"}", true,
	              "s, d['error'][:7]"),
	         0);
	CHECK_STR(out, "(400, 'action:')");
	W.refund_ok = true;
	CHECK_EQ(call("POST", "/api/sagas/stk-1/actions",
	              "{\"action\": \"resume\", \"reason\": \"gateway "
	              "fixed\"}",
	              true, "s, d['outcome'], d['status'], d['state']"),
	         0);
	CHECK_STR(out, "(200, 'applied', 'compensating', 'payment')");
	CHECK_EQ(wait_count("SELECT count(*) FROM sagas WHERE id = 'stk-1' "
	                    "AND status = 'failed'",
	                    1, 20),
	         0);
	CHECK(W.nrefunds >= 1);
	CHECK_STR(W.refunds[0], mid);
	CHECK_EQ(db_count("SELECT count(*) FROM history WHERE saga_id = "
	                  "'stk-1' AND kind = 'operator' AND actor = 'alice' "
	                  "AND reason = 'gateway fixed'"),
	         1);
	/* a finished saga: refused with the engine's reason, 409 */
	CHECK_EQ(call("POST", "/api/sagas/ok-1/actions",
	              "{\"action\": \"abort\", \"reason\": \"x\"}", true,
	              "s, d['outcome'], d['note']"),
	         0);
	CHECK_STR(out, "(409, 'rejected', 'saga is completed: operator event "
	               "does not apply')");
	CHECK_EQ(call("POST", "/api/sagas/nope-1/actions",
	              "{\"action\": \"abort\", \"reason\": \"x\"}", true, "s"),
	         0);
	CHECK_STR(out, "404");
}

static void
test_bulk(void)
{
	CHECK_EQ(call("GET", "/api/actions/preview?action=resume&status=stuck",
	              NULL, false,
	              "s, d['sagas'], d['applicable'], d['stuck'], "
	              "d['commands'] == {'payment.refund': 1, "
	              "'inventory.release': 1}, d['ids'], d['summary']"),
	         0);
	CHECK_STR(out, "(200, 1, 1, 1, True, ['stk-2'], '1 saga: 1 "
	               "payment.refund, 1 inventory.release, 1 stuck on an "
	               "undo')");
	CHECK_EQ(call("GET", "/api/actions/preview?action=resume", NULL, false,
	              "s, d['sagas'], d['applicable'], "
	              "sum(d['refused'].values()), d['refused'].get('saga is "
	              "completed: operator event does not apply')"),
	         0);
	/* 7: hld-1 (test_stuck_after) runs in payment: refused too */
	CHECK_STR(out, "(200, 7, 1, 6, 3)");
	CHECK_EQ(call("GET", "/api/actions/preview?action=resume&status=bad",
	              NULL, false, "s, d['error'][:7]"),
	         0);
	CHECK_STR(out, "(400, 'status:')");
	/* the set changed since the preview (or the operator miscounted) */
	CHECK_EQ(call("POST", "/api/actions",
	              "{\"action\": \"resume\", \"reason\": \"all\", "
	              "\"status\": \"stuck\", \"expect\": 3}",
	              true, "s, d['sagas'], d['expect']"),
	         0);
	CHECK_STR(out, "(409, 1, 3)");
	CHECK_EQ(call("POST", "/api/actions",
	              "{\"action\": \"resume\", \"reason\": \"all\", "
	              "\"status\": \"stuck\"}",
	              true, "s, d['error'][:7]"),
	         0);
	CHECK_STR(out, "(400, 'expect:')");
	CHECK_EQ(call("POST", "/api/actions",
	              "{\"action\": \"resume\", \"reason\": \"all\", "
	              "\"status\": \"stuck\", \"expect\": 1}",
	              true,
	              "s, d['sagas'], d['outcomes'], [(r['saga'], "
	              "r['outcome'], r['status']) for r in d['results']]"),
	         0);
	CHECK_STR(out, "(200, 1, {'applied': 1}, [('stk-2', 'applied', "
	               "'compensating')])");
	CHECK_EQ(wait_count("SELECT count(*) FROM sagas WHERE id = 'stk-2' "
	                    "AND status = 'failed'",
	                    1, 20),
	         0);
	CHECK_EQ(db_count("SELECT count(*) FROM history WHERE saga_id = "
	                  "'stk-2' AND kind = 'operator' AND actor = 'alice' "
	                  "AND reason = 'all'"),
	         1);
	/* logged out: acting is refused again */
	CHECK_EQ(call("POST", "/logout", "{}", true, "s"), 0);
	CHECK_STR(out, "200");
	CHECK_EQ(call("POST", "/api/actions",
	              "{\"action\": \"resume\", \"reason\": \"all\", "
	              "\"status\": \"stuck\", \"expect\": 0}",
	              true, "s"),
	         0);
	CHECK_STR(out, "401");
	cookie[0] = '\0';
}

/* A reverse proxy's trusted header names the user (no session). */
static void
test_trusted_header(void)
{
	free(out);
	out = NULL;
	CHECK_EQ(
	        testutil_sh(&out,
	                    "python3 '%s/req.py' POST "
	                    "'http://127.0.0.1:%d/api/sagas/ok-2/actions' "
	                    "'{\"action\": \"abort\", \"reason\": \"via "
	                    "proxy\"}' \"s, d['outcome']\" 'X-Saga-Console: 1' "
	                    "'X-Forwarded-User: carol'",
	                    dir, port),
	        0);
	CHECK_STR(out, "(409, 'rejected')");
	CHECK_EQ(db_count("SELECT count(*) FROM history WHERE saga_id = "
	                  "'ok-2' AND kind = 'rejected' AND actor = 'carol' "
	                  "AND reason = 'via proxy'"),
	         1);
	/* a name the header cannot carry is nobody */
	free(out);
	out = NULL;
	CHECK_EQ(testutil_sh(&out,
	                     "python3 '%s/req.py' POST "
	                     "'http://127.0.0.1:%d/api/sagas/ok-2/actions' "
	                     "'{\"action\": \"abort\", \"reason\": \"x\"}' "
	                     "s 'X-Saga-Console: 1' "
	                     "'X-Forwarded-User: <carol>'",
	                     dir, port),
	         0);
	CHECK_STR(out, "401");
}

/* Wrong passwords cost time (login_guard.h): five from one address are
 * free; then /login answers 429 with Retry-After and checks no password,
 * not even the right one, until the wait is over. A success starts the
 * address over; a name that keeps failing waits on its own, and other
 * names from the same address do not. Last: it leaves eve waiting. */
static void
test_login_guard(void)
{
	static const char guess[] =
	        "{\"user\": \"eve\", \"password\": \"guess\"}";
	static const char right[] =
	        "{\"user\": \"alice\", \"password\": \"s3cret\"}";
	static const char expr[] =
	        "s, h.get('Retry-After', '-'), d.get('error')";
	int wait_s = 0, fails = 0;

	cookie[0] = '\0';
	/* a success first: this address starts from nothing */
	CHECK_EQ(call("POST", "/login", right, true, "s"), 0);
	CHECK_STR(out, "200");
	/* until a wait of 2 s or more (1 s after the 6th failure, then 2) */
	for (int tries = 0; wait_s < 2 && tries < 30; tries++) {
		CHECK_EQ(call("POST", "/login", guess, true, expr), 0);
		if (strncmp(out, "(429, '", 7) == 0) {
			wait_s = atoi(out + 7);
			if (wait_s < 2)
				sleep((unsigned)wait_s);
			continue;
		}
		CHECK_STR(out, "(401, '-', 'wrong user name or password')");
		fails++;
	}
	CHECK(fails >= 7); /* 5 free, 1 s after the 6th, 2 s after the 7th */
	CHECK(wait_s >= 2);
	/* the right password is not even checked */
	CHECK_EQ(call("POST", "/login", right, true, expr), 0);
	CHECK(strncmp(out, "(429, '", 7) == 0);
	CHECK(strstr(out, "'too many failed logins from 127.0.0.1: try "
	                  "again in ") != NULL);
	sleep((unsigned)wait_s + 1);
	CHECK_EQ(call("POST", "/login", right, true, "s, d['user']"), 0);
	CHECK_STR(out, "(200, 'alice')");
	/* eve's own count goes on: one more failure, then a wait */
	CHECK_EQ(call("POST", "/login", guess, true, "s"), 0);
	CHECK_STR(out, "401");
	CHECK_EQ(call("POST", "/login", guess, true, expr), 0);
	CHECK(strstr(out, "'too many failed logins for eve: try again in ") !=
	      NULL);
	CHECK_EQ(call("POST", "/login", right, true, "s"), 0);
	CHECK_STR(out, "200");
	CHECK_EQ(testutil_sh(NULL,
	                     "grep -q 'login from 127.0.0.1 refused' '%s'",
	                     orch_log),
	         0);
}

/* A saga held in payment past the state's stuck_after (1s in the test
 * chart) is listed by /api/stuck with the limit that applied, even when
 * `for` is longer, and counted by saga_overdue_sagas; every other state
 * with a limit is served at 0. */
static void
test_stuck_after(void)
{
	char *body = NULL;
	int status = 0;
	bool counted = false;

	post_order("hld-1", "c-fay", "sku-vase");
	CHECK_EQ(wait_count("SELECT count(*) FROM sagas WHERE id = 'hld-1' "
	                    "AND state = 'payment' AND status = 'running'",
	                    1, 20),
	         0);
	pump(1500);
	CHECK_EQ(api("/api/stuck?for=1d",
	             "s, sorted((x['id'], x['limit'], x['text'][:11], "
	             "x['for_ms'] >= 1000) for x in d['stuck'])"),
	         0);
	CHECK_STR(out, "(200, [('hld-1', {'ms': 1000, 'from': "
	               "'stuck_after'}, 'in payment ', True), ('stk-1', "
	               "None, 'stuck in pa', True), ('stk-2', None, "
	               "'stuck in pa', True)])");
	fprintf(stderr, "     stuck_after: %s\n", out);
	/* the summary's counts, kept since test_summary_and_charts asked,
	 * see the saga that started since */
	CHECK_EQ(api("/api/summary", "s, d['counts'], d['total'], "
	                             "d['throughput']['completed_last_hour']"),
	         0);
	CHECK_STR(out, "(200, {'completed': 3, 'failed': 1, 'running': 1, "
	               "'stuck': 2}, 7, 3)");
	for (int i = 0; i < 50 && !counted; i++) {
		free(body);
		body = testutil_http(port, "GET", "/metrics", NULL, NULL,
		                     &status);
		counted = body != NULL &&
		          strstr(body, "saga_overdue_sagas{chart=\"order\","
		                       "state=\"payment\"} 1\n") != NULL;
		if (!counted)
			pump(100);
	}
	CHECK_MSG(counted, "saga_overdue_sagas: %s", body ? body : "none");
	CHECK(body != NULL &&
	      strstr(body, "saga_overdue_sagas{chart=\"order\","
	                   "state=\"reserve_stock\"} 0\n") != NULL);
	free(body);
	body = testutil_http(port, "GET", "/stuck", NULL, NULL, &status);
	CHECK(status == 200 && body != NULL &&
	      strstr(body, "stuck_after 1.0 s") != NULL);
	free(body);
}

/* tests/console/browser.sh: the pages in headless chromium. */
static int browser_rc;

static void
test_browser(void)
{
	char cmd[2048], log[600];
	int pid, status = 0;
	size_t len;

	/* the fake participants answer while the browser acts: a stuck
	 * saga resumed there finishes its compensation */
	W.refund_ok = true;
	snprintf(log, sizeof(log), "%s/browser.log", dir);
	snprintf(cmd, sizeof(cmd),
	         "SAGA_CONSOLE_USER=alice SAGA_CONSOLE_PASSWORD=s3cret "
	         "'%s/tests/console/browser.sh' %d > '%s' 2>&1",
	         srcdir, port, log);
	pid = fork();
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	CHECK(pid > 0);
	while (waitpid(pid, &status, WNOHANG) == 0)
		pump(100);
	free(out);
	out = testutil_slurp(log, &len);
	fprintf(stderr, "%s\n", out != NULL ? out : "");
	browser_rc = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
	if (browser_rc != 77)
		CHECK_EQ(browser_rc, 0);
}

int
main(int argc, char **argv)
{
	char *chart_out = NULL, haddr[64];
	bool in_browser = argc > 1 && strcmp(argv[1], "--browser") == 0;
	int rc = 0;

	log_init("test_console", LOG_WARN);
	srcdir = getenv("SAGA_SOURCE_DIR");
	bindir = getenv("SAGA_BIN_DIR");
	if (srcdir == NULL || bindir == NULL) {
		fprintf(stderr, "SAGA_SOURCE_DIR and SAGA_BIN_DIR must be set "
		                "(ctest sets them)\n");
		return 1;
	}
	if (in_browser &&
	    testutil_sh(NULL, "command -v chromium >/dev/null") != 0) {
		fprintf(stderr,
		        "SKIP: no chromium (apt-get install chromium)\n");
		return 77;
	}
	atexit(testutil_kill_all);
	dir = testutil_tmpdir("console");
	if (dir == NULL)
		return 1;
	snprintf(db, sizeof(db), "%s/orch.db", dir);
	if (write_get_py() != 0)
		return 1;
	snprintf(charts, sizeof(charts), "%s/charts", dir);
	snprintf(orch_log, sizeof(orch_log), "%s/orch.log", dir);
	/* order.yaml with short timeouts and few undo attempts: a stuck saga
	 * in about a second; payment overdue after 1s (test_stuck_after) */
	if (testutil_sh(
	            &chart_out,
	            "mkdir -p '%s' && sed -e 's/timeout: 5s/timeout: "
	            "300ms/' -e 's/backoff: 500ms/backoff: 50ms/g' -e "
	            "'s/cap: 5s/cap: 200ms/g' -e '/^  retry: {attempts: 3/a\\' "
	            "-e '  compensate_retry: {attempts: 3, backoff: 50ms, "
	            "cap: 200ms}' -e 's/stuck_after: 1m/stuck_after: 1s/' "
	            "-e '/stuck_after: 1s/a\\' -e '    timeout: 20s' "
	            "'%s/statecharts/order.yaml' "
	            "> '%s/order.yaml'",
	            charts, srcdir, charts) != 0) {
		fprintf(stderr, "cannot write the test chart\n");
		return 1;
	}
	free(chart_out);
	/* the console's users: alice by --hash-password (yescrypt), bob by
	 * openssl passwd -6 (SHA-512 crypt) where openssl is installed */
	if (testutil_sh(NULL,
	                "printf 's3cret\\n' | '%s/saga-orchestrator' "
	                "--hash-password alice > '%s/users' && { ! command "
	                "-v openssl >/dev/null || printf 'bob:%%s\\n' "
	                "\"$(printf pw-b | openssl passwd -6 -stdin)\" >> "
	                "'%s/users'; }",
	                bindir, dir, dir) != 0) {
		fprintf(stderr, "cannot write the users file\n");
		return 1;
	}
	snprintf(users, sizeof(users), "%s/users", dir);
	port = testutil_free_port();
	snprintf(haddr, sizeof(haddr), "127.0.0.1:%d", port);
	url = testbroker_start(in_browser ? "consoleb" : "console");
	if (port == 0 || url == NULL || world_open() != 0) {
		fprintf(stderr, "no broker\n");
		return 1;
	}
	{
		const char *const a[] = {"saga-orchestrator",
		                         "--amqp",
		                         url,
		                         "--db",
		                         db,
		                         "--statecharts",
		                         charts,
		                         "--batch-wait",
		                         "2",
		                         "--http",
		                         haddr,
		                         "--console-users",
		                         users,
		                         "--console-trust-header",
		                         "X-Forwarded-User",
		                         "--log-level",
		                         "warn",
		                         NULL};
		orch_pid = testutil_spawn(a, orch_log);
	}
	if (orch_pid < 0 || wait_ready() != 0) {
		fprintf(stderr, "the orchestrator did not start (%s)\n",
		        orch_log);
		return 1;
	}
	RUN(world_run);
	if (in_browser) {
		RUN(test_browser);
		rc = browser_rc;
	} else {
		RUN(test_summary_and_charts);
		RUN(test_list_filters);
		RUN(test_paging);
		RUN(test_one_saga);
		RUN(test_bad_parameters);
		RUN(test_hostile_requests);
		RUN(test_stuck_after);
		RUN(test_actions_need_login);
		RUN(test_login);
		RUN(test_preview_then_apply);
		RUN(test_bulk);
		RUN(test_trusted_header);
		RUN(test_login_guard);
	}
	bus_close(W.bus);
	if (testutil_stop(orch_pid, SIGTERM) != 0) {
		fprintf(stderr, "orchestrator did not exit cleanly: see %s\n",
		        orch_log);
		check_failed++;
	}
	free(out);
	testbroker_ctl(in_browser ? "consoleb" : "console", "stop");
	free(url);
	if (check_failed == 0)
		testutil_rmtree(dir);
	free(dir);
	if (rc == 77 && check_failed == 0)
		return 77;
	return check_summary();
}

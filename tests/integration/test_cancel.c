/* test_cancel -- a customer's cancel end to end, against the real daemons
 * on the shared private broker (SAGA_TEST_AMQP_URL): order-api,
 * saga-orchestrator, inventory-svc, payment-svc, shipping-svc and
 * notification-svc. The orchestrator's only chart is
 * statecharts/examples/cancellable.yaml made the default (saga: order),
 * its cooling-off lengthened to 3 s (time to ask), and its cancel.in cut
 * to the states before the shipment, so that a saga waiting for a stopped
 * shipping-svc is one the orchestrator refuses while order-api, whose
 * last event is order.payment_success, does not know better.
 *
 *   accepted: the order waits in cooling_off; POST cancel -> 202; the
 *     order ends cancelled, its stock is back, its charge refunded, no
 *     shipment; the history has the cancel with actor customer; a second
 *     POST (another key) replays, a key reused with another body is 409;
 *   too late: a completed order -> 409 at once with its state;
 *   refused: shipping-svc stopped, the saga waits in create_shipment;
 *     POST cancel -> 202, then GET .../cancel -> 409 refused with the
 *     orchestrator's reason and state; the order's status is untouched
 *     and it completes once shipping-svc is back. */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "testutil.h"

enum { D_ORCH, D_INV, D_PAY, D_SHIP, D_NOTIF, D_API, D_COUNT };

static struct {
	char *dir, *url;
	int port;
	int pid[D_COUNT];
} T;

static const char *
path(const char *name)
{
	static char bufs[16][600];
	static int next;
	char *b = bufs[next++ % 16];

	snprintf(b, sizeof(bufs[0]), "%s/%s", T.dir, name);
	return b;
}

/* The first column of the first row of sql on database db (?1 bound to
 * arg), as an integer; -1 if there is none. */
static long long
db_int(const char *db, const char *sql, const char *arg)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *s;
	long long n = -1;

	if (sqlite3_open_v2(path(db), &h, SQLITE_OPEN_READONLY, NULL) !=
	    SQLITE_OK) {
		sqlite3_close(h);
		return -1;
	}
	sqlite3_busy_timeout(h, 5000);
	if (sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK) {
		sqlite3_bind_text(s, 1, arg, -1, SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_ROW)
			n = sqlite3_column_int64(s, 0);
		sqlite3_finalize(s);
	} else {
		fprintf(stderr, "    %s: %s\n", db, sqlite3_errmsg(h));
	}
	sqlite3_close(h);
	return n;
}

/* Waits up to secs for db_int(db, sql, arg) to be want. */
static bool
wait_db(const char *db, const char *sql, const char *arg, long long want,
        int secs)
{
	struct timespec ts = {0, 100 * 1000000};
	long long n = -1;

	for (int t = 0; t < secs * 10 && n != want; t++) {
		n = db_int(db, sql, arg);
		if (n != want)
			nanosleep(&ts, NULL);
	}
	if (n != want)
		fprintf(stderr, "    %s: %s: %lld, not %lld\n", db, sql, n,
		        want);
	return n == want;
}

/* The charts folder (the cancellable chart as the default), the seed. */
static int
write_files(const char *src)
{
	return testutil_sh(
	        NULL,
	        "mkdir -p '%s' && sed -e 's/^saga: order_cancellable$/saga: "
	        "order/' -e 's/duration: 2s$/duration: 3s/' -e 's/^  in: "
	        "\\[reserve_stock, payment, cooling_off, create_shipment\\]$/"
	        "  in: [reserve_stock, payment, cooling_off]/' "
	        "'%s/statecharts/examples/cancellable.yaml' > '%s' && grep -q "
	        "'^saga: order$' '%s' && grep -q 'duration: 3s' '%s' && grep "
	        "-q 'in: \\[reserve_stock, payment, cooling_off\\]$' '%s' && "
	        "echo 'sku-1 10' > '%s'",
	        path("charts"), src, path("charts/order.yaml"),
	        path("charts/order.yaml"), path("charts/order.yaml"),
	        path("charts/order.yaml"), path("seed.txt"));
}

static int
spawn(int d)
{
	static const char *const logs[D_COUNT] = {"orch.log",  "inv.log",
	                                          "pay.log",   "ship.log",
	                                          "notif.log", "api.log"};
	char listen[64];
	const char *u = T.url;
	const char *const argv[D_COUNT][12] = {
	        {"saga-orchestrator", "--amqp", u, "--db", path("orch.db"),
	         "--statecharts", path("charts"), "--log-level", "info", NULL},
	        {"inventory-svc", "--amqp", u, "--db", path("inv.db"), "--seed",
	         path("seed.txt"), "--log-level", "warn", NULL},
	        {"payment-svc", "--amqp", u, "--db", path("pay.db"), NULL},
	        {"shipping-svc", "--amqp", u, "--db", path("ship.db"),
	         "--log-level", "warn", NULL},
	        {"notification-svc", "--amqp", u, "--db", path("notif.db"),
	         "--log-level", "warn", NULL},
	        {"order-api", "--amqp", u, "--db", path("api.db"), "--listen",
	         listen, NULL},
	};

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", T.port);
	T.pid[d] = testutil_spawn(argv[d], path(logs[d]));
	return T.pid[d] > 0 ? 0 : -1;
}

/* One request; its status, and its body into *out (or freed). */
static int
http(const char *method, const char *url, const char *headers, const char *body,
     char **out)
{
	int st = 0;
	char *r = testutil_http(T.port, method, url, headers, body, &st);

	fprintf(stderr, "    %s %s: %d %s\n", method, url, st, r ? r : "");
	if (out != NULL)
		*out = r;
	else
		free(r);
	return st;
}

/* Waits up to secs for GET url to answer code with want in its body. */
static bool
wait_get(const char *url, int code, const char *want, int secs)
{
	struct timespec ts = {0, 100 * 1000000};

	for (int t = 0; t < secs * 10; t++) {
		int st = 0;
		char *r = testutil_http(T.port, "GET", url, NULL, NULL, &st);
		bool ok = st == code && r != NULL && strstr(r, want) != NULL;
		if (ok || t == secs * 10 - 1)
			fprintf(stderr, "    GET %s: %d %s\n", url, st,
			        r ? r : "");
		free(r);
		if (ok)
			return true;
		nanosleep(&ts, NULL);
	}
	return false;
}

/* POSTs a card order of 2 x sku-1; its id into id. */
static int
post_order(char id[128])
{
	static const char body[] =
	        "{\"customer_id\":\"c-1\",\"items\":[{\"sku\":\"sku-1\","
	        "\"quantity\":2,\"unit_price_cents\":1999}],\"currency\":"
	        "\"EUR\",\"payment_method\":\"card\",\"card_token\":\"tok_ok\","
	        "\"ship_to\":{\"country\":\"india\"},\"category\":\"books\"}";
	char *r = NULL;
	const char *p;
	int st = http("POST", "/orders", NULL, body, &r);

	id[0] = '\0';
	p = r != NULL ? strstr(r, "\"order_id\":\"") : NULL;
	if (p != NULL)
		sscanf(p + 12, "%127[^\"]", id);
	free(r);
	return st == 202 && id[0] != '\0' ? 0 : -1;
}

static const char *
url_of(const char *id, const char *tail)
{
	static char bufs[4][256];
	static int next;
	char *b = bufs[next++ % 4];

	snprintf(b, sizeof(bufs[0]), "/orders/%s%s", id, tail);
	return b;
}

/* POSTs a cancel; the status, and whether the body contains want. */
static int
cancel(const char *id, const char *headers, const char *body, const char *want)
{
	char *r = NULL;
	int st = http("POST", url_of(id, "/cancel"), headers, body, &r);

	if (want != NULL && (r == NULL || strstr(r, want) == NULL)) {
		fprintf(stderr, "    (no %s in it)\n", want);
		st = -st;
	}
	free(r);
	return st;
}

/* Waits up to secs for the orchestrator's saga to be in state. */
static bool
wait_orch_state(const char *id, const char *state, int secs)
{
	char sql[160];
	struct timespec ts = {0, 100 * 1000000};

	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM sagas WHERE id = ?1 AND state = '%s'",
	         state);
	for (int t = 0; t < secs * 10; t++) {
		if (db_int("orch.db", sql, id) == 1)
			return true;
		nanosleep(&ts, NULL);
	}
	return false;
}

/* (a) accepted before the shipment: everything done is undone. */
static void
test_accepted(void)
{
	char id[128];

	CHECK_EQ(post_order(id), 0);
	CHECK(wait_get(url_of(id, ""), 200, "\"state\":\"cooling_off\"", 30));
	CHECK_EQ(cancel(id, "Idempotency-Key: cancel-a\r\n",
	                "{\"reason\":\"found it cheaper\"}",
	                "\"status\":\"cancel_requested\""),
	         202);
	CHECK(wait_get(url_of(id, ""), 200, "\"status\":\"cancelled\"", 30));
	CHECK(wait_get(url_of(id, "/cancel"), 200, "\"status\":\"cancelled\"",
	               5));
	CHECK(wait_get(url_of(id, ""), 200,
	               "\"cancel\":{\"status\":\"cancelled\"", 5));
	/* the same key and body, another key: the first cancel's state */
	CHECK_EQ(cancel(id, "Idempotency-Key: cancel-a\r\n",
	                "{\"reason\":\"found it cheaper\"}",
	                "\"replayed\":true"),
	         202);
	CHECK_EQ(cancel(id, "Idempotency-Key: cancel-a2\r\n", NULL,
	                "\"status\":\"cancelled\""),
	         202);
	CHECK_EQ(cancel(id, "Idempotency-Key: cancel-a\r\n",
	                "{\"reason\":\"another\"}", NULL),
	         409);
	/* stock back, charge refunded, nothing shipped */
	CHECK_EQ(db_int("inv.db", "SELECT on_hand FROM stock WHERE sku = ?1",
	                "sku-1"),
	         10);
	CHECK_EQ(db_int("inv.db",
	                "SELECT count(*) FROM reservations WHERE saga_id = ?1",
	                id),
	         0);
	CHECK_EQ(db_int("pay.db",
	                "SELECT count(*) FROM ledger WHERE saga_id = ?1 AND "
	                "kind = 'refund'",
	                id),
	         1);
	CHECK_EQ(db_int("pay.db",
	                "SELECT count(*) FROM payments WHERE saga_id = ?1 AND "
	                "status = 'refunded'",
	                id),
	         1);
	CHECK_EQ(db_int("ship.db",
	                "SELECT count(*) FROM shipments WHERE saga_id = ?1",
	                id),
	         0);
	/* the orchestrator's account: the customer's cancel, then the end */
	CHECK_EQ(db_int("orch.db",
	                "SELECT count(*) FROM history WHERE saga_id = ?1 AND "
	                "kind = 'cancel' AND actor = 'customer' AND reason = "
	                "'found it cheaper'",
	                id),
	         1);
	CHECK_EQ(db_int("orch.db",
	                "SELECT count(*) FROM sagas WHERE id = ?1 AND status = "
	                "'cancelled' AND state = 'cancelled'",
	                id),
	         1);
	/* and the customer was told: request received, then cancelled */
	CHECK(wait_db("notif.db",
	              "SELECT count(*) FROM notifications WHERE saga_id = ?1 "
	              "AND kind IN ('order.cancel_requested', "
	              "'order.cancelled')",
	              id, 2, 10));
}

/* (b) a completed order: 409 too late at once, nothing stored. */
static void
test_too_late(void)
{
	char id[128];

	CHECK_EQ(post_order(id), 0);
	CHECK(wait_get(url_of(id, ""), 200, "\"status\":\"completed\"", 40));
	CHECK_EQ(cancel(id, NULL, NULL,
	                "\"error\":\"too late\",\"status\":\"completed\","
	                "\"state\":\"completed\""),
	         409);
	CHECK_EQ(http("GET", url_of(id, "/cancel"), NULL, NULL, NULL), 404);
	CHECK(wait_get(url_of(id, ""), 200, "\"status\":\"completed\"", 1));
	CHECK_EQ(db_int("orch.db",
	                "SELECT count(*) FROM history WHERE saga_id = ?1 AND "
	                "actor = 'customer'",
	                id),
	         0);
}

/* (c) order-api does not know the saga moved on; the orchestrator
 * refuses, and says why. */
static void
test_refused(void)
{
	char id[128];

	CHECK_EQ(testutil_stop(T.pid[D_SHIP], SIGTERM), 0);
	T.pid[D_SHIP] = 0;
	CHECK_EQ(post_order(id), 0);
	CHECK(wait_orch_state(id, "create_shipment", 40));
	CHECK(wait_get(url_of(id, ""), 200, "\"status\":\"running\"", 1));
	CHECK_EQ(cancel(id, "Idempotency-Key: cancel-c\r\n", NULL,
	                "\"status\":\"cancel_requested\""),
	         202);
	CHECK(wait_get(url_of(id, "/cancel"), 409, "\"status\":\"refused\"",
	               30));
	CHECK(wait_get(url_of(id, "/cancel"), 409,
	               "\"state\":\"create_shipment\"", 1));
	CHECK(wait_get(url_of(id, "/cancel"), 409, "\"reason\":\"", 1));
	/* the refusal is the cancel's, not the order's */
	CHECK(wait_get(url_of(id, ""), 200, "\"status\":\"running\"", 1));
	CHECK(!wait_get(url_of(id, ""), 200, "order.cancel_refused", 1));
	CHECK_EQ(cancel(id, "Idempotency-Key: cancel-c2\r\n", NULL,
	                "\"status\":\"refused\""),
	         409);
	CHECK_EQ(db_int("orch.db",
	                "SELECT count(*) FROM history WHERE saga_id = ?1 AND "
	                "kind = 'rejected' AND actor = 'customer'",
	                id),
	         1);
	CHECK(wait_db("notif.db",
	              "SELECT count(*) FROM notifications WHERE saga_id = ?1 "
	              "AND kind = 'order.cancel_refused'",
	              id, 1, 10));
	/* shipping back: the order goes on and completes */
	CHECK_EQ(spawn(D_SHIP), 0);
	CHECK(wait_get(url_of(id, ""), 200, "\"status\":\"completed\"", 40));
	CHECK(wait_get(url_of(id, "/cancel"), 409, "\"status\":\"refused\"",
	               1));
	CHECK_EQ(db_int("ship.db",
	                "SELECT count(*) FROM shipments WHERE saga_id = ?1 AND "
	                "status = 'created'",
	                id),
	         1);
}

static bool
api_up(void)
{
	for (int t = 0; t < 100; t++) {
		int st = 0;
		free(testutil_http(T.port, "GET", "/healthz", NULL, NULL, &st));
		if (st == 200)
			return true;
		usleep(100000);
	}
	return false;
}

static void
test_start(void)
{
	const char *url = testutil_amqp_url();
	const char *src = getenv("SAGA_SOURCE_DIR");

	if (url == NULL || src == NULL)
		SKIP("SAGA_TEST_AMQP_URL or SAGA_SOURCE_DIR not set");
	T.url = strdup(url);
	T.dir = testutil_tmpdir("cancel");
	T.port = testutil_free_port();
	CHECK(T.dir != NULL && T.port > 0);
	CHECK_EQ(write_files(src), 0);
	for (int d = 0; d < D_COUNT; d++)
		CHECK_EQ(spawn(d), 0);
	CHECK(api_up());
	sleep(2); /* queues declared, consumers up */
}

static void
stop_all(void)
{
	int bad = 0;

	for (int d = 0; d < D_COUNT; d++)
		if (T.pid[d] > 0)
			bad += testutil_stop(T.pid[d], SIGTERM) != 0;
	CHECK_EQ(bad, 0);
	if (check_failed != 0) {
		testutil_sh(NULL, "tail -n 30 '%s'/*.log >&2", T.dir);
		fprintf(stderr, "logs kept in %s\n", T.dir);
	} else {
		testutil_rmtree(T.dir);
	}
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	atexit(testutil_kill_all);
	RUN(test_start);
	if (T.dir == NULL)
		return check_summary();
	if (check_failed == 0) {
		RUN(test_accepted);
		RUN(test_too_late);
		RUN(test_refused);
	}
	RUN(stop_all);
	free(T.dir);
	free(T.url);
	return check_summary();
}

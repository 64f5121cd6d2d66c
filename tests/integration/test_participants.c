/* test_participants -- each participant daemon against a private broker,
 * driven by this test as if it were the orchestrator: idempotent replies,
 * a late original refused after its compensation, the retry queue and the
 * dead-letter queue with reasons, the ledger's rules, order-api's
 * validation, the daemons' errors for bad flags and files, the pruning of
 * processed message ids after their retention, and notification-svc
 * refusing events it has no template for, and a participant's --http
 * pages (/metrics counting what it did, /healthz) and trace ids in its
 * log.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "bus.h"
#include "db.h"
#include "envelope.h"
#include "participant.h"
#include "testutil.h"

#define MAXR 64

struct reply {
	char re[ENVELOPE_ID_MAX], id[ENVELOPE_ID_MAX], type[ENVELOPE_TYPE_MAX];
	struct value payload;
};

static struct {
	struct bus *bus;
	struct reply r[MAXR];
	size_t n;
	size_t bundles; /* replies that came in bundles */
	char *dir, *url, broker[64];
} T;

static char *
path(const char *name)
{
	static char buf[8][600];
	static int k;
	k = (k + 1) % 8;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", T.dir, name);
	return buf[k];
}

static void
on_reply(void *arg, const void *body, size_t len, const char *tp)
{
	struct envelope e;
	char err[256];
	(void)arg;
	(void)tp;
	envelope_init(&e);
	if (envelope_decode(body, len, &e, err, sizeof(err)) == 0 &&
	    T.n < MAXR) {
		struct reply *r = &T.r[T.n++];
		snprintf(r->re, sizeof(r->re), "%s", e.re);
		snprintf(r->id, sizeof(r->id), "%s", e.id);
		snprintf(r->type, sizeof(r->type), "%s", e.type);
		r->payload = e.payload;
		value_set_map(&e.payload);
	}
	envelope_clear(&e);
}

static void
on_delivery(void *arg, const struct bus_delivery *d)
{
	char err[256];
	if (strcmp(d->type, ENVELOPE_BUNDLE_TYPE) == 0)
		T.bundles++;
	if (envelope_each(d->type, d->body, d->len, d->traceparent, on_reply,
	                  arg, err, sizeof(err)) != 0)
		fprintf(stderr, "a bad bundle of replies: %s\n", err);
	bus_ack(T.bus, d->ref, false);
}

static const struct bus_handlers H = {on_delivery, NULL, NULL};

/* The test's own connection, its topology declared. */
static int
world_bus(void)
{
	static const struct bus_exchange ex[] = {
	        {"saga.commands", "topic", NULL, NULL},
	        {"saga.replies", "direct", NULL, NULL},
	        {"order_events", "topic", NULL, NULL},
	};
	/* audit: the stream the orchestrator keeps the events in, which
	 * notification-svc reads */
	static const struct bus_queue q[] = {
	        {.name = "test.replies"},
	        {.name = "test.orders"},
	        {.name = "audit", .stream = true, .max_age = "7D"},
	};
	static const struct bus_binding b[] = {
	        {"saga.replies", "test.replies", NULL, "test"},
	        {"order_events", "test.orders", NULL, "order.created"},
	        {"order_events", "audit", NULL, "order.#"},
	};
	static const struct bus_topology topo = {ex, 3, q, 3, b, 3};
	static const char *consume[] = {"test.replies"};
	struct bus_config c = {.name = "test",
	                       .topology = &topo,
	                       .consume = consume,
	                       .nconsume = 1};
	char err[256];

	c.url = T.url;
	T.bus = bus_open(&c, err, sizeof(err));
	return T.bus != NULL && bus_connect(T.bus, err, sizeof(err)) == 0 ? 0
	                                                                  : -1;
}

static int
world_open(void)
{
	memset(&T, 0, sizeof(T));
	T.dir = testutil_tmpdir("parts");
	snprintf(T.broker, sizeof(T.broker), "parts");
	T.url = testbroker_start(T.broker);
	if (T.dir == NULL || T.url == NULL)
		return -1;
	return world_bus();
}

static void
world_close(void)
{
	testutil_kill_all();
	for (size_t i = 0; i < T.n; i++)
		value_clear(&T.r[i].payload);
	bus_close(T.bus);
	testbroker_ctl(T.broker, "stop");
	if (check_current_failed == 0)
		testutil_rmtree(T.dir);
	else
		fprintf(stderr, "kept %s\n", T.dir);
	free(T.dir);
	free(T.url);
}

/* A command's body; payload (or an empty map) taken. */
static int
cmd_body(const char *type, const char *id, const char *saga,
         struct value *payload, char **body, size_t *len)
{
	struct envelope e;
	int rc;

	envelope_init(&e);
	snprintf(e.id, sizeof(e.id), "%s", id);
	snprintf(e.saga, sizeof(e.saga), "%s", saga);
	snprintf(e.type, sizeof(e.type), "%s", type);
	snprintf(e.step, sizeof(e.step), "step");
	e.attempt = 1;
	e.ts = (int64_t)time(NULL) * 1000;
	if (payload != NULL) {
		value_clear(&e.payload);
		e.payload = *payload;
		value_set_map(payload);
	}
	rc = envelope_encode(&e, body, len);
	envelope_clear(&e);
	return rc;
}

/* The traceparent publish_cmd gives its commands; NULL: none. */
static const char *send_tp;

/* Publishes a command's body (or a bundle's) to rk as the orchestrator
 * would, and waits for the confirm. */
static void
publish_cmd(const char *rk, const char *id, const char *saga, const char *type,
            const void *body, size_t len)
{
	struct bus_message m = {.exchange = "saga.commands",
	                        .routing_key = rk,
	                        .message_id = id,
	                        .correlation_id = saga,
	                        .type = type,
	                        .reply_to = "test",
	                        .traceparent = send_tp,
	                        .body = body,
	                        .len = len};
	bus_publish(T.bus, &m, 0);
	bus_flush(T.bus, 5000, &H);
}

/* Sends a command as the orchestrator would; payload takes ownership. */
static void
send_cmd(const char *rk, const char *type, const char *id, const char *saga,
         struct value *payload)
{
	char *body = NULL;
	size_t len = 0;

	if (cmd_body(type, id, saga, payload, &body, &len) == 0)
		publish_cmd(rk, id, saga, type, body, len);
	free(body);
}

static void
send_raw(const char *rk, const char *id, const void *body, size_t len,
         const char *type)
{
	struct bus_message m = {.exchange = "saga.commands",
	                        .routing_key = rk,
	                        .message_id = id,
	                        .type = type,
	                        .body = body,
	                        .len = len};
	bus_publish(T.bus, &m, 0);
	bus_flush(T.bus, 5000, &H);
}

/* The k-th reply to command `re` (0-based), waiting up to ms. */
static const struct reply *
await(const char *re, int k, int ms)
{
	for (int t = 0; t <= ms / 50; t++) {
		int seen = 0;
		for (size_t i = 0; i < T.n; i++)
			if (strcmp(T.r[i].re, re) == 0 && seen++ == k)
				return &T.r[i];
		bus_poll(T.bus, 50, &H);
	}
	return NULL;
}

static struct value
items(const char *sku, int64_t qty)
{
	struct value p, arr, it;
	value_set_map(&p);
	value_set_array(&arr);
	value_set_map(&it);
	value_map_put_str(&it, "sku", sku);
	value_map_put_int(&it, "quantity", qty);
	value_array_push(&arr, &it);
	value_map_put(&p, "items", &arr);
	return p;
}

static long long
q1(const char *db_name, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	char err[256];
	long long v = -1;
	if (db_open(path(db_name), DB_READONLY, &db, err, sizeof(err)) != 0)
		return -1;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			v = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	db_close(db);
	return v;
}

struct dlq_seen {
	char error[512], id[ENVELOPE_ID_MAX];
};

static int
take_dlq(void *arg, const struct bus_delivery *d)
{
	struct dlq_seen *s = arg;
	snprintf(s->error, sizeof(s->error), "%s", d->error);
	snprintf(s->id, sizeof(s->id), "%s", d->message_id);
	return 1;
}

/* The next message of a DLQ (waits up to ms); false if none came. */
static bool
dlq_next(const char *queue, struct dlq_seen *s, int ms)
{
	bool got = false;
	memset(s, 0, sizeof(*s));
	for (int t = 0; t <= ms / 100 && !got; t++) {
		if (bus_get(T.bus, queue, take_dlq, s, &got) != 0 || !got)
			bus_poll(T.bus, 100, &H);
	}
	return got;
}

static bool
wait_consumer(const char *queue)
{
	for (int t = 0; t < 200; t++) {
		uint32_t m, c;
		if (bus_queue_info(T.bus, queue, &m, &c) == 0 && c > 0)
			return true;
		bus_poll(T.bus, 100, &H);
	}
	return false;
}

/* Whether the log at path has `what` within 10 s. */
static bool
wait_log(const char *path, const char *what)
{
	for (int t = 0; t < 100; t++) {
		char *text = testutil_slurp(path, NULL);
		bool found = text != NULL && strstr(text, what) != NULL;
		free(text);
		if (found)
			return true;
		usleep(100 * 1000);
	}
	return false;
}

static void
test_inventory(void)
{
	const struct reply *r, *r2;
	struct value p;
	struct dlq_seen dl;
	FILE *f;
	int pid;
	bool unroutable;

	CHECK(world_open() == 0);
	f = fopen(path("seed.txt"), "w");
	CHECK(f != NULL);
	fputs("# sku quantity\nsku-a 10\n", f);
	fclose(f);
	{
		const char *a[] = {"inventory-svc",
		                   "--amqp",
		                   T.url,
		                   "--db",
		                   path("inv.db"),
		                   "--seed",
		                   path("seed.txt"),
		                   NULL};
		pid = testutil_spawn(a, path("inv.log"));
	}
	CHECK(pid > 0 && wait_consumer("inventory.commands"));

	/* reserve, then the same message again: the same reply, once */
	p = items("sku-a", 3);
	send_cmd("inventory", "inventory.reserve", "c1", "s1", &p);
	r = await("c1", 0, 10000);
	CHECK(r != NULL);
	CHECK_STR(r->type, "inventory.reserved");
	p = items("sku-a", 3);
	send_cmd("inventory", "inventory.reserve", "c1", "s1", &p);
	r2 = await("c1", 1, 10000);
	CHECK(r2 != NULL);
	CHECK_STR(r2->id, r->id);
	CHECK_STR(r2->type, "inventory.reserved");
	/* a retry of the step (a new message id) takes nothing more */
	p = items("sku-a", 3);
	send_cmd("inventory", "inventory.reserve", "c1b", "s1", &p);
	r = await("c1b", 0, 10000);
	CHECK(r != NULL);
	CHECK_STR(r->type, "inventory.reserved");
	CHECK(q1("inv.db", "SELECT on_hand FROM stock WHERE sku='sku-a'") == 7);

	/* a release for something never reserved, then the late reserve */
	send_cmd("inventory", "inventory.release", "r2", "s2", NULL);
	r = await("r2", 0, 10000);
	CHECK(r != NULL);
	CHECK_STR(r->type, "inventory.released");
	p = items("sku-a", 1);
	send_cmd("inventory", "inventory.reserve", "c2", "s2", &p);
	r = await("c2", 0, 10000);
	CHECK(r != NULL);
	CHECK_STR(r->type, "inventory.rejected");
	CHECK(strstr(value_map_get(&r->payload, "reason")->u.s.ptr,
	             "compensated") != NULL);
	CHECK(q1("inv.db", "SELECT on_hand FROM stock WHERE sku='sku-a'") == 7);

	/* all lines or none: short skus named */
	p = items("sku-a", 8);
	send_cmd("inventory", "inventory.reserve", "c3", "s3", &p);
	r = await("c3", 0, 10000);
	CHECK(r != NULL);
	CHECK_STR(r->type, "inventory.rejected");
	CHECK(value_map_get(&r->payload, "short") != NULL &&
	      value_map_get(&r->payload, "short")->u.a.len == 1);
	CHECK(q1("inv.db", "SELECT on_hand FROM stock WHERE sku='sku-a'") == 7);

	/* the compensation gives everything back */
	send_cmd("inventory", "inventory.release", "r1", "s1", NULL);
	r = await("r1", 0, 10000);
	CHECK(r != NULL);
	CHECK(q1("inv.db", "SELECT on_hand FROM stock WHERE sku='sku-a'") ==
	      10);
	CHECK(q1("inv.db", "SELECT count(*) FROM reservations") == 0);
	/* times are milliseconds, to the millisecond (clock_wall_ms): of the
	 * seed, the reserve and the release, not every one falls on a whole
	 * second (the old second-resolution clock made all of them do so) */
	CHECK(q1("inv.db", "SELECT count(*) FROM movements") >= 3);
	CHECK(q1("inv.db", "SELECT count(*) FROM movements WHERE at % 1000 != "
	                   "0") > 0);
	CHECK(q1("inv.db", "SELECT count(*) FROM movements WHERE at > "
	                   "(unixepoch() - 600) * 1000") ==
	      q1("inv.db", "SELECT count(*) FROM movements"));

	/* undecodable and unknown: straight to the DLQ, with the reason */
	send_raw("inventory", "junk-1", "\xc1garbage", 8, "inventory.reserve");
	CHECK(dlq_next("inventory.commands.dlq", &dl, 10000));
	CHECK_STR(dl.id, "junk-1");
	CHECK_MSG(strstr(dl.error, "cannot decode") != NULL, "error: %s",
	          dl.error);
	send_cmd("inventory", "inventory.explode", "x1", "s9", NULL);
	CHECK(dlq_next("inventory.commands.dlq", &dl, 10000));
	CHECK_MSG(strstr(dl.error, "unknown message type inventory.explode"),
	          "error: %s", dl.error);

	/* the DLQ deleted under the running daemon: the dead letter's copy
	 * comes back unroutable, the message stays unacked (copied again
	 * every second), and the restart below, which declares the queue
	 * again, dead-letters it (before, it was acked and lost) */
	CHECK_EQ(bus_queue_delete(T.bus, "inventory.commands.dlq", false), 0);
	send_raw("inventory", "junk-2", "\xc1garbage", 8, "inventory.reserve");
	unroutable =
	        wait_log(path("inv.log"), "junk-2 to inventory.commands.dlq "
	                                  "came back unroutable");

	/* seeding again adds nothing; SIGTERM stops it cleanly */
	CHECK(testutil_stop(pid, SIGTERM) == 0);
	{
		const char *a[] = {"inventory-svc",
		                   "--amqp",
		                   T.url,
		                   "--db",
		                   path("inv.db"),
		                   "--seed",
		                   path("seed.txt"),
		                   NULL};
		pid = testutil_spawn(a, path("inv.log"));
	}
	CHECK(pid > 0 && wait_consumer("inventory.commands"));
	CHECK(q1("inv.db", "SELECT on_hand FROM stock WHERE sku='sku-a'") ==
	      10);
	CHECK(testutil_stop(pid, SIGTERM) == 0);
	CHECK(dlq_next("inventory.commands.dlq", &dl, 10000));
	CHECK_STR(dl.id, "junk-2");
	CHECK_MSG(strstr(dl.error, "cannot decode") != NULL, "error: %s",
	          dl.error);
	CHECK(unroutable); /* and the log said so */
	world_close();
}

static struct value
charge_payload(const char *method, int64_t cents)
{
	struct value p;
	value_set_map(&p);
	value_map_put_str(&p, "payment_method", method);
	value_map_put_int(&p, "total_cents", cents);
	value_map_put_str(&p, "currency", "EUR");
	value_map_put_str(&p, "card_token", "tok_visa");
	return p;
}

static int
start_payment(int transient_pct)
{
	FILE *f = fopen(path("pay.conf"), "w");
	if (f == NULL)
		return -1;
	fprintf(f,
	        "decline_token = tok_decline\ncard_limit_cents = 5000\n"
	        "transient_failure_percent = %d\n",
	        transient_pct);
	fclose(f);
	const char *a[] = {
	        "payment-svc", "--amqp",         T.url, "--db", path("pay.db"),
	        "--config",    path("pay.conf"), NULL};
	int pid = testutil_spawn(a, path("pay.log"));
	if (pid > 0 &&
	    (!wait_consumer("payment.card") || !wait_consumer("payment.cod")))
		return -1;
	return pid;
}

static void
test_payment(void)
{
	const struct reply *r;
	struct value p;
	struct dlq_seen dl;
	int pid;

	CHECK(world_open() == 0);
	/* a gateway that always fails: the retry queue, then the DLQ */
	pid = start_payment(100);
	CHECK(pid > 0);
	p = charge_payload("card", 1000);
	send_cmd("payment.card", "payment.charge", "k1", "s1", &p);
	CHECK(dlq_next("payment.card.dlq", &dl, 30000));
	CHECK_STR(dl.id, "k1");
	CHECK_MSG(strstr(dl.error, "failed 5 times: gateway unavailable"),
	          "error: %s", dl.error);
	CHECK(await("k1", 0, 100) == NULL);

	/* cash on delivery: a collection, cancelled by the compensation */
	p = charge_payload("cod", 3000);
	send_cmd("payment.cod", "payment.charge", "k2", "s2", &p);
	r = await("k2", 0, 10000);
	CHECK(r != NULL);
	CHECK_STR(r->type, "payment.collection_registered");
	p = charge_payload("cod", 3000);
	send_cmd("payment.cod", "payment.refund", "f2", "s2", &p);
	r = await("f2", 0, 10000);
	CHECK(r != NULL);
	CHECK_STR(r->type, "payment.collection_cancelled");
	CHECK(testutil_stop(pid, SIGTERM) == 0);

	/* a healthy gateway: one charge, one refund, never more */
	pid = start_payment(0);
	CHECK(pid > 0);
	p = charge_payload("card", 1000);
	send_cmd("payment.card", "payment.charge", "k3", "s3", &p);
	r = await("k3", 0, 10000);
	CHECK(r != NULL);
	CHECK_STR(r->type, "payment.charged");
	p = charge_payload("card", 1000);
	send_cmd("payment.card", "payment.charge", "k3b", "s3", &p);
	r = await("k3b", 0, 10000);
	CHECK(r != NULL);
	CHECK_STR(r->type, "payment.charged");
	for (int i = 0; i < 2; i++) {
		char id[16];
		snprintf(id, sizeof(id), "f3-%d", i);
		p = charge_payload("card", 1000);
		send_cmd("payment.card", "payment.refund", id, "s3", &p);
		r = await(id, 0, 10000);
		CHECK(r != NULL);
		CHECK_STR(r->type, "payment.refunded");
	}
	CHECK(q1("pay.db", "SELECT count(*) FROM ledger WHERE saga_id='s3' "
	                   "AND kind='charge'") == 1);
	CHECK(q1("pay.db", "SELECT sum(amount_cents) FROM ledger WHERE "
	                   "saga_id='s3' AND kind='refund'") == 1000);
	/* the declines: a token, the limit; then a refund that came first */
	p = charge_payload("card", 9000);
	send_cmd("payment.card", "payment.charge", "k4", "s4", &p);
	r = await("k4", 0, 10000);
	CHECK(r != NULL);
	CHECK_STR(r->type, "payment.declined");
	send_cmd("payment.card", "payment.refund", "f5", "s5", NULL);
	r = await("f5", 0, 10000);
	CHECK(r != NULL);
	CHECK_STR(r->type, "payment.refunded");
	p = charge_payload("card", 1000);
	send_cmd("payment.card", "payment.charge", "k5", "s5", &p);
	r = await("k5", 0, 10000);
	CHECK(r != NULL);
	CHECK_STR(r->type, "payment.declined");
	CHECK(q1("pay.db", "SELECT count(*) FROM ledger WHERE saga_id IN "
	                   "('s4', 's5')") == 0);
	CHECK(testutil_stop(pid, SIGTERM) == 0);
	world_close();
}

static const char good_order[] =
        "{\"customer_id\":\"c1\",\"items\":[{\"sku\":\"a\",\"quantity\":2,"
        "\"unit_price_cents\":150},{\"sku\":\"b\",\"quantity\":1,"
        "\"unit_price_cents\":1000}],\"currency\":\"EUR\","
        "\"payment_method\":\"card\",\"card_token\":\"tok\","
        "\"ship_to\":{\"country\":\"india\",\"city\":\"Pune\"}}";

static void
expect_400(int port, const char *body, const char *field)
{
	int st = 0;
	char want[128], *r;
	r = testutil_http(port, "POST", "/orders", NULL, body, &st);
	snprintf(want, sizeof(want), "\"field\":\"%s\"", field);
	CHECK_MSG(st == 400 && r != NULL && strstr(r, want) != NULL,
	          "%s -> %d %s (want 400 naming %s)", body, st, r ? r : "",
	          field);
	free(r);
}

static int
take_order(void *arg, const struct bus_delivery *d)
{
	struct envelope *e = arg;
	char err[256];
	return envelope_decode(d->body, d->len, e, err, sizeof(err)) == 0;
}

static void
test_order_api(void)
{
	int port, st = 0, pid;
	char listen[64], *r, *big, id[64] = "", url[128];
	struct envelope e;
	bool got = false;
	int64_t total = 0;

	CHECK(world_open() == 0);
	port = testutil_free_port();
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	{
		const char *a[] = {"order-api",    "--amqp",   T.url,  "--db",
		                   path("api.db"), "--listen", listen, NULL};
		pid = testutil_spawn(a, path("api.log"));
	}
	for (int t = 0; t < 100 && st != 200; t++) {
		free(testutil_http(port, "GET", "/healthz", NULL, NULL, &st));
		if (st != 200)
			usleep(100000);
	}
	CHECK(pid > 0 && st == 200);

	/* accepted only once the broker has it: then published intact */
	r = testutil_http(port, "POST", "/orders", "Idempotency-Key: k1\r\n",
	                  good_order, &st);
	CHECK_MSG(st == 202, "%d %s", st, r ? r : "");
	if (r != NULL && strstr(r, "\"order_id\":\"") != NULL)
		sscanf(strstr(r, "\"order_id\":\"") + 12, "%63[^\"]", id);
	free(r);
	envelope_init(&e);
	for (int t = 0; t < 50 && !got; t++) {
		CHECK(bus_get(T.bus, "test.orders", take_order, &e, &got) == 0);
		if (!got)
			bus_poll(T.bus, 100, &H);
	}
	CHECK(got);
	CHECK_STR(e.type, "order.created");
	CHECK_STR(e.saga, id);
	CHECK(part_int(&e.payload, "total_cents", &total) && total == 1300);
	envelope_clear(&e);

	/* the same key: the same order, not published again (it was
	 * confirmed: a second copy could reach another shard); another
	 * body: 409 */
	r = testutil_http(port, "POST", "/orders", "Idempotency-Key: k1\r\n",
	                  good_order, &st);
	CHECK(st == 202 && r != NULL && strstr(r, id) != NULL);
	CHECK(strstr(r, "\"replayed\":true") != NULL);
	free(r);
	{
		uint32_t msgs = 1, cons = 0;
		bus_poll(T.bus, 300, &H);
		CHECK(bus_queue_info(T.bus, "test.orders", &msgs, &cons) == 0);
		CHECK_EQ(msgs, 0);
	}
	r = testutil_http(port, "POST", "/orders", "Idempotency-Key: k1\r\n",
	                  "{\"customer_id\":\"other\"}", &st);
	CHECK(st == 409);
	free(r);

	/* every rejection names the field */
	expect_400(port, "{\"items\":[]}", "customer_id");
	expect_400(port,
	           "{\"customer_id\":\"c\",\"currency\":\"EUR\","
	           "\"payment_method\":\"bitcoin\"}",
	           "payment_method");
	expect_400(port,
	           "{\"customer_id\":\"c\",\"currency\":\"EUR\","
	           "\"payment_method\":\"card\"}",
	           "card_token");
	expect_400(port,
	           "{\"customer_id\":\"c\",\"currency\":\"EUR\","
	           "\"payment_method\":\"cod\",\"ship_to\":{\"country\":"
	           "\"New York\"}}",
	           "ship_to.country");
	expect_400(port,
	           "{\"customer_id\":\"c\",\"currency\":\"EUR\","
	           "\"payment_method\":\"cod\",\"ship_to\":{\"country\":"
	           "\"us\"},\"items\":[{\"sku\":\"a\",\"quantity\":1,"
	           "\"unit_price_cents\":1},{\"sku\":\"b\",\"quantity\":-1,"
	           "\"unit_price_cents\":1}]}",
	           "items[1].quantity");
	expect_400(port, "{\"customer_id\": ", "");
	big = malloc(70000);
	CHECK(big != NULL);
	memset(big, ' ', 69999);
	big[69999] = '\0';
	free(testutil_http(port, "POST", "/orders", NULL, big, &st));
	free(big);
	CHECK(st == 413);

	/* status: accepted until an order.* event comes (no orchestrator
	 * runs here); unknown: 404 */
	snprintf(url, sizeof(url), "/orders/%s", id);
	r = testutil_http(port, "GET", url, NULL, NULL, &st);
	CHECK_MSG(st == 200 && r != NULL &&
	                  strstr(r, "\"status\":\"accepted\"") != NULL,
	          "%d %s", st, r ? r : "");
	free(r);
	free(testutil_http(port, "GET", "/orders/nope", NULL, NULL, &st));
	CHECK(st == 404);
	free(testutil_http(port, "DELETE", "/orders", NULL, NULL, &st));
	CHECK(st == 405);
	CHECK(testutil_stop(pid, SIGTERM) == 0);
	world_close();
}

/* Bad flags and files: a clear message and a non-zero exit, no broker. */
static void
test_bad_flags_and_files(void)
{
	char *out = NULL, *dir = testutil_tmpdir("partflags");
	const char *bin = getenv("SAGA_BIN_DIR");
	CHECK(dir != NULL && bin != NULL);
#define RUN_SH(want_rc, want_text, ...)                                        \
	do {                                                                   \
		int rc_ = testutil_sh(&out, __VA_ARGS__);                      \
		CHECK_MSG(rc_ == (want_rc) && out != NULL &&                   \
		                  strstr(out, want_text) != NULL,              \
		          "rc %d, output: %s", rc_, out ? out : "");           \
		free(out);                                                     \
		out = NULL;                                                    \
	} while (0)
	RUN_SH(2, "--db PATH is required",
	       "SAGA_AMQP_URL=amqp://x %s/inventory-svc 2>&1", bin);
	RUN_SH(2, "no broker",
	       "env -u SAGA_AMQP_URL %s/payment-svc --db x 2>&1", bin);
	RUN_SH(2, "is not one of debug",
	       "%s/shipping-svc --log-level loud 2>&1", bin);
	RUN_SH(2, "needs its own --instance NAME",
	       "%s/shipping-svc --amqp amqp://x --db %s/s.db --bind 'a.*' 2>&1",
	       bin, dir);
	RUN_SH(2, "pay.conf:2: bad setting \"card_limit_cent\"",
	       "printf 'decline_token = t\\ncard_limit_cent = 5\\n' > "
	       "%s/pay.conf; %s/payment-svc --amqp amqp://x --db %s/p.db "
	       "--config %s/pay.conf 2>&1",
	       dir, bin, dir, dir);
	RUN_SH(1, "seed.txt:2: expected \"SKU QUANTITY\"",
	       "printf 'a 1\\nb lots\\n' > %s/seed.txt; %s/inventory-svc "
	       "--amqp amqp://127.0.0.1:1 --db %s/i.db --seed %s/seed.txt 2>&1",
	       dir, bin, dir, dir);
	RUN_SH(2, "--confirm-delay: \"soon\"",
	       "%s/notification-svc --confirm-delay soon 2>&1", bin);
	RUN_SH(2, "--events: \"stream\" is not audit or queue",
	       "%s/notification-svc --events stream 2>&1", bin);
	RUN_SH(2, "--from: \"last\" is not first or end",
	       "%s/notification-svc --from last 2>&1", bin);
	RUN_SH(2, "templates.txt:1: expected",
	       "echo 'no colon here' > %s/templates.txt; %s/notification-svc "
	       "--templates %s/templates.txt 2>&1",
	       dir, bin, dir);
	RUN_SH(2, "--processed-days: \"soon\" is not a number of days",
	       "%s/inventory-svc --processed-days soon 2>&1", bin);
	RUN_SH(2, "templates.txt:1: expected \"order.type: text\"",
	       "echo 'inventory.reserved: hi' > %s/templates.txt; "
	       "%s/notification-svc --templates %s/templates.txt 2>&1",
	       dir, bin, dir);
	RUN_SH(2, "--listen: \"nowhere\" is not",
	       "%s/order-api --amqp amqp://x --db %s/a.db --listen nowhere "
	       "2>&1",
	       bin, dir);
	RUN_SH(2, "unexpected argument \"extra\"",
	       "%s/inventory-svc --db x extra 2>&1", bin);
#undef RUN_SH
	testutil_rmtree(dir);
	free(dir);
}

static long
queue_depth(const char *q)
{
	uint32_t m = 0, c = 0;
	for (int t = 0; t < 50; t++) {
		if (bus_queue_info(T.bus, q, &m, &c) == 0)
			return (long)m;
		bus_poll(T.bus, 100, &H);
	}
	return -1;
}

/* Sends n commands in one bundle (lib/envelope.h) to rk; bodies[i]
 * NULL: an item that is not an envelope. */
static void
send_bundle(const char *rk, char *const *bodies, const size_t *lens, size_t n)
{
	struct envelope_item it[8];
	char *body = NULL;
	size_t len = 0;

	for (size_t i = 0; i < n; i++)
		it[i] = (struct envelope_item){
		        bodies[i] != NULL ? bodies[i] : "\x01",
		        bodies[i] != NULL ? lens[i] : 1, ""};
	if (envelope_bundle_encode(it, n, &body, &len) == 0)
		publish_cmd(rk, "bundle-1", NULL, ENVELOPE_BUNDLE_TYPE, body,
		            len);
	free(body);
}

/* Bundles of commands: each item is handled as if it came alone (its
 * reply, its dead letter with its own id and reason, its retries counted
 * alone), replies to a bundle come back bundled, a bundle sent again is
 * answered again without charging twice, and the bundle is acked. */
static void
test_bundles(void)
{
	char *b[4] = {NULL, NULL, NULL, NULL};
	size_t l[4] = {0};
	struct value p;
	struct dlq_seen dl;
	const struct reply *r1, *r2;
	char first1[ENVELOPE_ID_MAX];
	int pid, bad = 0, unknown = 0;

	CHECK(world_open() == 0);
	pid = start_payment(0);
	CHECK(pid > 0);
	p = charge_payload("card", 1000);
	CHECK(cmd_body("payment.charge", "kb1", "b1", &p, &b[0], &l[0]) == 0);
	p = charge_payload("card", 2000);
	CHECK(cmd_body("payment.charge", "kb2", "b2", &p, &b[1], &l[1]) == 0);
	/* b[2] stays NULL: not an envelope */
	CHECK(cmd_body("payment.bogus", "kb4", "b4", NULL, &b[3], &l[3]) == 0);
	send_bundle("payment.card", b, l, 4);
	r1 = await("kb1", 0, 10000);
	r2 = await("kb2", 0, 10000);
	CHECK(r1 != NULL && r2 != NULL);
	CHECK_STR(r1->type, "payment.charged");
	CHECK_STR(r2->type, "payment.charged");
	snprintf(first1, sizeof(first1), "%s", r1->id);
	CHECK_MSG(T.bundles >= 1, "the two replies came alone");
	for (int i = 0; i < 2; i++) {
		CHECK(dlq_next("payment.card.dlq", &dl, 10000));
		if (strcmp(dl.id, "kb4") == 0) {
			CHECK_MSG(strstr(dl.error, "unknown message type "
			                           "payment.bogus"),
			          "error: %s", dl.error);
			unknown++;
		} else {
			CHECK_MSG(strstr(dl.error, "cannot decode"),
			          "error: %s", dl.error);
			bad++;
		}
	}
	CHECK(bad == 1 && unknown == 1);
	/* the same bundle again: the same replies, no second charge */
	send_bundle("payment.card", b, l, 4);
	r1 = await("kb1", 1, 10000);
	CHECK(r1 != NULL);
	CHECK_STR(r1->id, first1);
	CHECK(await("kb2", 1, 10000) != NULL);
	CHECK(q1("pay.db", "SELECT count(*) FROM ledger WHERE saga_id IN "
	                   "('b1', 'b2') AND kind='charge'") == 2);
	CHECK(dlq_next("payment.card.dlq", &dl, 10000));
	CHECK(dlq_next("payment.card.dlq", &dl, 10000));
	CHECK(testutil_stop(pid, SIGTERM) == 0);
	/* nothing left unacked: the queue is empty once the consumer is
	 * gone */
	CHECK_EQ(queue_depth("payment.card"), 0);

	/* a gateway that always fails: each item goes round payment.card.retry
	 * alone, its attempts counted, and ends in the DLQ after 5 */
	pid = start_payment(100);
	CHECK(pid > 0);
	for (int i = 0; i < 4; i++)
		free(b[i]);
	memset(b, 0, sizeof(b));
	p = charge_payload("card", 1000);
	CHECK(cmd_body("payment.charge", "kt1", "t1", &p, &b[0], &l[0]) == 0);
	p = charge_payload("card", 1000);
	CHECK(cmd_body("payment.charge", "kt2", "t2", &p, &b[1], &l[1]) == 0);
	send_bundle("payment.card", b, l, 2);
	for (int i = 0; i < 2; i++) {
		CHECK(dlq_next("payment.card.dlq", &dl, 30000));
		CHECK_MSG(strcmp(dl.id, "kt1") == 0 ||
		                  strcmp(dl.id, "kt2") == 0,
		          "id %s", dl.id);
		CHECK_MSG(
		        strstr(dl.error, "failed 5 times: gateway unavailable"),
		        "error: %s", dl.error);
	}
	CHECK(await("kt1", 0, 100) == NULL);
	CHECK(testutil_stop(pid, SIGTERM) == 0);
	CHECK_EQ(queue_depth("payment.card"), 0);
	CHECK_EQ(queue_depth("payment.card.retry"), 0);
	for (int i = 0; i < 4; i++)
		free(b[i]);
	world_close();
}

/* sagactl dlq: list, show (leaves the messages), replay, purge. */
static void
test_sagactl_dlq(void)
{
	const char *bin = getenv("SAGA_BIN_DIR");
	const struct reply *r;
	struct value p;
	char *out = NULL, *mgmt;
	int pid, rc;

	CHECK(world_open() == 0 && bin != NULL);
	pid = start_payment(100);
	CHECK(pid > 0);
	p = charge_payload("card", 1000);
	send_cmd("payment.card", "payment.charge", "k1", "s1", &p);
	for (int t = 0; t < 300 && queue_depth("payment.card.dlq") != 1; t++)
		bus_poll(T.bus, 100, &H);
	CHECK(queue_depth("payment.card.dlq") == 1);

	mgmt = testbroker_mgmt_url(T.broker);
	CHECK(mgmt != NULL);
	rc = testutil_sh(&out,
	                 "%s/sagactl --amqp %s dlq list --mgmt-url %s 2>&1",
	                 bin, T.url, mgmt ? mgmt : "none");
	CHECK_MSG(rc == 0 && out != NULL && strstr(out, "payment.card.dlq"),
	          "rc %d: %s", rc, out ? out : "");
	free(out);
	free(mgmt);
	rc = testutil_sh(&out, "%s/sagactl --amqp %s dlq show payment.card.dlq",
	                 bin, T.url);
	CHECK_MSG(rc == 0 && out != NULL && strstr(out, "k1") &&
	                  strstr(out, "failed 5 times: gateway unavailable"),
	          "rc %d: %s", rc, out ? out : "");
	free(out);
	rc = testutil_sh(
	        &out, "%s/sagactl --amqp %s --json dlq show payment.card.dlq",
	        bin, T.url);
	CHECK_MSG(rc == 0 && out != NULL &&
	                  strstr(out, "\"message_id\":\"k1\""),
	          "rc %d: %s", rc, out ? out : "");
	free(out);
	CHECK(queue_depth("payment.card.dlq") == 1); /* show took nothing */

	/* the gateway is back: replay, and the charge goes through */
	CHECK(testutil_stop(pid, SIGTERM) == 0);
	pid = start_payment(0);
	CHECK(pid > 0);
	rc = testutil_sh(&out,
	                 "%s/sagactl --amqp %s dlq replay payment.card.dlq",
	                 bin, T.url);
	CHECK_MSG(rc == 0 && out != NULL && strstr(out, "replayed 1 of 1"),
	          "rc %d: %s", rc, out ? out : "");
	free(out);
	r = await("k1", 0, 15000);
	CHECK(r != NULL);
	CHECK_STR(r->type, "payment.charged");
	CHECK(queue_depth("payment.card.dlq") == 0);

	/* purge asks for --yes */
	send_raw("payment.cod", "junk-2", "\xc1", 1, "payment.charge");
	for (int t = 0; t < 100 && queue_depth("payment.cod.dlq") != 1; t++)
		bus_poll(T.bus, 100, &H);
	rc = testutil_sh(&out,
	                 "%s/sagactl --amqp %s dlq purge payment.cod.dlq 2>&1",
	                 bin, T.url);
	CHECK_MSG(rc == 2 && out != NULL && strstr(out, "--yes"), "rc %d", rc);
	free(out);
	rc = testutil_sh(&out,
	                 "%s/sagactl --amqp %s dlq purge payment.cod.dlq --yes",
	                 bin, T.url);
	CHECK_MSG(rc == 0 && out != NULL && strstr(out, "purged 1"),
	          "rc %d: %s", rc, out ? out : "");
	free(out);
	/* usage errors: 2 */
	CHECK(testutil_sh(NULL, "%s/sagactl --amqp %s dlq 2>/dev/null", bin,
	                  T.url) == 2);
	CHECK(testutil_sh(NULL, "%s/sagactl --amqp %s dlq show 2>/dev/null",
	                  bin, T.url) == 2);
	CHECK(testutil_sh(
	              NULL,
	              "%s/sagactl --amqp %s dlq show q --limit x 2>/dev/null",
	              bin, T.url) == 2);
	CHECK(testutil_sh(NULL,
	                  "%s/sagactl --amqp %s dlq show nosuch.dlq "
	                  "2>/dev/null",
	                  bin, T.url) == 1);
	CHECK(testutil_stop(pid, SIGTERM) == 0);
	world_close();
}

/* part_run refuses a retention the retry queue can outlast, or out of
 * range, before it opens the database (here: one that cannot open). */
static void
test_retention_bounds(void)
{
	static const volatile sig_atomic_t stop = 1;
	static const char *q[] = {"x.commands"};
	struct part_config c = {.name = "t",
	                        .url = "amqp://127.0.0.1:1",
	                        .db_path = "/nonexistent/dir/x.db",
	                        .queues = q,
	                        .nqueues = 1,
	                        .max_attempts = 5,
	                        .retry_ms = 1000,
	                        .retention_ms = 4999};
	char err[512] = "";

	CHECK(part_run(&c, &stop, err, sizeof(err)) == -1);
	CHECK_MSG(strstr(err, "retention 4999 ms is shorter than the retry "
	                      "queue can still redeliver a message (5 "
	                      "attempts x 1000 ms)") != NULL,
	          "err: %s", err);
	c.retention_ms = PART_RETENTION_MAX_MS + 1;
	CHECK(part_run(&c, &stop, err, sizeof(err)) == -1);
	CHECK_MSG(strstr(err, "is not 1 to") != NULL, "err: %s", err);
	c.retention_ms = -2;
	CHECK(part_run(&c, &stop, err, sizeof(err)) == -1);
	CHECK_MSG(strstr(err, "is not 1 to") != NULL, "err: %s", err);
	/* exactly the retry path, or forever: past the check, to the db */
	c.retention_ms = 5000;
	CHECK(part_run(&c, &stop, err, sizeof(err)) == -1);
	CHECK_MSG(strstr(err, "retention") == NULL, "err: %s", err);
	c.retention_ms = PART_KEEP_FOREVER;
	CHECK(part_run(&c, &stop, err, sizeof(err)) == -1);
	CHECK_MSG(strstr(err, "retention") == NULL, "err: %s", err);
}

static int
start_inventory(void)
{
	const char *a[] = {"inventory-svc", "--amqp",       T.url,
	                   "--db",          path("inv.db"), NULL};
	int pid = testutil_spawn(a, path("inv.log"));
	return pid > 0 && wait_consumer("inventory.commands") ? pid : -1;
}

/* Runs sql on a participant's database (stopped), checked. */
static int
exec_db(const char *db_name, const char *sql)
{
	sqlite3 *db;
	char err[256];
	int rc;

	if (db_open(path(db_name), DB_READWRITE, &db, err, sizeof(err)) != 0)
		return -1;
	rc = db_exec(db, sql, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "%s\n", err);
	db_close(db);
	return rc;
}

/* Does the daemon's log say s? */
static bool
log_says(const char *log, const char *s)
{
	char *out = NULL;
	int rc = testutil_sh(&out, "cat '%s'", path(log));
	bool found = rc == 0 && out != NULL && strstr(out, s) != NULL;
	free(out);
	return found;
}

/* Processed ids older than the retention (7 days by default) are pruned,
 * younger ones stay and still answer a duplicate with the stored reply;
 * part_compensated keeps its rows 4 times as long, so a late original
 * whose processed row is gone is still refused. */
static void
test_processed_pruned(void)
{
	char r2id[ENVELOPE_ID_MAX];
	const struct reply *r;
	struct value p;
	FILE *f;
	int pid;

	CHECK(world_open() == 0);
	f = fopen(path("seed.txt"), "w");
	CHECK(f != NULL);
	fputs("sku-a 10\n", f);
	fclose(f);
	{
		const char *a[] = {"inventory-svc",
		                   "--amqp",
		                   T.url,
		                   "--db",
		                   path("inv.db"),
		                   "--seed",
		                   path("seed.txt"),
		                   "--processed-days",
		                   "7",
		                   NULL};
		pid = testutil_spawn(a, path("inv.log"));
	}
	CHECK(pid > 0 && wait_consumer("inventory.commands"));
	p = items("sku-a", 1);
	send_cmd("inventory", "inventory.reserve", "p1", "ps1", &p);
	CHECK(await("p1", 0, 10000) != NULL);
	p = items("sku-a", 1);
	send_cmd("inventory", "inventory.reserve", "p2", "ps2", &p);
	r = await("p2", 0, 10000);
	CHECK(r != NULL);
	snprintf(r2id, sizeof(r2id), "%s", r->id);
	send_cmd("inventory", "inventory.release", "pr1", "ps1", NULL);
	CHECK(await("pr1", 0, 10000) != NULL);
	CHECK(testutil_stop(pid, SIGTERM) == 0);

	/* p1 and its undo 8 days old, the undo's mark too (kept 28 days),
	 * and a mark 29 days old */
	CHECK(exec_db("inv.db",
	              "UPDATE part_processed SET at = at - 8 * 86400000 "
	              "WHERE message_id IN ('p1', 'pr1');"
	              "UPDATE part_compensated SET at = at - 8 * 86400000;"
	              "INSERT INTO part_compensated(saga_id, command, at) "
	              "VALUES ('ps-old', 'inventory.reserve', "
	              "(unixepoch() - 29 * 86400) * 1000);") == 0);
	pid = start_inventory();
	CHECK(pid > 0);
	/* the first pruning comes PART_PRUNE_EVERY_MS after the start */
	for (int t = 0; t < 150 && q1("inv.db", "SELECT count(*) FROM "
	                                        "part_processed") != 1;
	     t++)
		bus_poll(T.bus, 200, &H);
	CHECK(q1("inv.db", "SELECT count(*) FROM part_processed WHERE "
	                   "message_id = 'p2'") == 1);
	CHECK(q1("inv.db", "SELECT count(*) FROM part_processed") == 1);
	CHECK(q1("inv.db", "SELECT count(*) FROM part_compensated WHERE "
	                   "saga_id = 'ps1'") == 1);
	CHECK(q1("inv.db", "SELECT count(*) FROM part_compensated") == 1);

	/* a duplicate inside the retention: the stored reply */
	p = items("sku-a", 1);
	send_cmd("inventory", "inventory.reserve", "p2", "ps2", &p);
	r = await("p2", 1, 10000);
	CHECK(r != NULL);
	CHECK_STR(r->id, r2id);
	/* p1 forgotten: handled again, and refused (compensated) */
	p = items("sku-a", 1);
	send_cmd("inventory", "inventory.reserve", "p1", "ps1", &p);
	r = await("p1", 1, 10000);
	CHECK(r != NULL);
	CHECK_STR(r->type, "inventory.rejected");
	CHECK(q1("inv.db", "SELECT on_hand FROM stock WHERE sku='sku-a'") == 9);
	CHECK(testutil_stop(pid, SIGTERM) == 0);
	CHECK(log_says("inv.log", "pruned 3,"));
	world_close();
}

/* Publishes an envelope to exchange/rk; payload taken. */
static void
publish_event(const char *exchange, const char *rk, const char *type,
              const char *id, const char *saga, struct value *payload)
{
	struct bus_message m = {.exchange = exchange,
	                        .routing_key = rk,
	                        .message_id = id,
	                        .correlation_id = saga,
	                        .type = type};
	char *body = NULL;
	size_t len = 0;

	if (cmd_body(type, id, saga, payload, &body, &len) == 0) {
		m.body = body;
		m.len = len;
		bus_publish(T.bus, &m, 0);
		bus_flush(T.bus, 5000, &H);
	}
	free(body);
}

/* A stream's consumers are not counted by queue.declare-ok (RabbitMQ
 * 3.10 answers 0): wait for the daemon to say it consumes. */
static bool
wait_ready(const char *log)
{
	for (int t = 0; t < 200; t++) {
		if (log_says(log, "ready: consuming"))
			return true;
		bus_poll(T.bus, 100, &H);
	}
	return false;
}

static struct value
order_payload(const char *order_id)
{
	struct value p;
	value_set_map(&p);
	value_map_put_str(&p, "order_id", order_id);
	value_map_put_str(&p, "tracking_number", "TRK-1");
	return p;
}

/* notification-svc notifies the order.* events it has templates for, once
 * each, and dead-letters anything else with the reason. */
static void
test_notification_events(void)
{
	struct dlq_seen dl;
	struct value p;
	int pid;

	CHECK(world_open() == 0);
	{
		const char *a[] = {"notification-svc", "--amqp", T.url, "--db",
		                   path("notif.db"),   NULL};
		pid = testutil_spawn(a, path("notif.log"));
	}
	CHECK(pid > 0 && wait_ready("notif.log"));
	/* the issue's case: a well-formed envelope of another participant's
	 * type, for a saga nobody knows */
	p = order_payload("nobody");
	publish_event("", "notification.events", "inventory.reserved", "n-bad1",
	              "nobody", &p);
	p = order_payload("o1");
	publish_event("order_events", "order.exploded", "order.exploded",
	              "n-bad2", "o1", &p);
	value_set_map(&p); /* no order_id */
	publish_event("order_events", "order.shipped", "order.shipped",
	              "n-bad3", "o1", &p);
	p = order_payload("o1");
	publish_event("order_events", "order.shipped", "order.shipped", "n-ok",
	              "o1", &p);
	p = order_payload("o1"); /* again: still one */
	publish_event("order_events", "order.shipped", "order.shipped", "n-ok",
	              "o1", &p);

	CHECK(dlq_next("notification.events.dlq", &dl, 10000));
	CHECK_STR(dl.id, "n-bad1");
	CHECK_MSG(strstr(dl.error, "no template for event type "
	                           "inventory.reserved") != NULL,
	          "error: %s", dl.error);
	CHECK(dlq_next("notification.events.dlq", &dl, 10000));
	CHECK_STR(dl.id, "n-bad2");
	CHECK_MSG(strstr(dl.error, "no template for event type "
	                           "order.exploded") != NULL,
	          "error: %s", dl.error);
	CHECK(dlq_next("notification.events.dlq", &dl, 10000));
	CHECK_STR(dl.id, "n-bad3");
	CHECK_MSG(strstr(dl.error, "order.shipped names no order") != NULL,
	          "error: %s", dl.error);
	/* a stream keeps what was read: wait for the position instead */
	for (int t = 0; t < 100 && q1("notif.db", "SELECT next_offset FROM "
	                                          "part_stream") < 5;
	     t++)
		bus_poll(T.bus, 100, &H);
	CHECK(testutil_stop(pid, SIGTERM) == 0);
	CHECK(q1("notif.db", "SELECT count(*) FROM notifications") == 1);
	CHECK(q1("notif.db", "SELECT count(*) FROM notifications WHERE "
	                     "saga_id = 'o1' AND kind = 'order.shipped' AND "
	                     "text LIKE '%TRK-1%'") == 1);
	CHECK_EQ(queue_depth("notification.events.dlq"), 0);
	world_close();
}

/* Publishes order.shipped for orders o<from>..o<to-1>, confirmed. */
static void
publish_shipped(int from, int to)
{
	for (int i = from; i < to; i++) {
		char id[32], order[32];
		struct bus_message m = {.exchange = "order_events",
		                        .routing_key = "order.shipped",
		                        .type = "order.shipped"};
		struct value p;
		char *body = NULL;
		size_t len = 0;
		snprintf(id, sizeof(id), "ev-%d", i);
		snprintf(order, sizeof(order), "o%d", i);
		p = order_payload(order);
		m.message_id = id;
		m.correlation_id = order;
		if (cmd_body("order.shipped", id, order, &p, &body, &len) ==
		    0) {
			m.body = body;
			m.len = len;
			bus_publish(T.bus, &m, 0);
		}
		free(body);
	}
	bus_flush(T.bus, 10000, &H);
}

/* Waits up to 4 s for notif.db to hold n notifications. */
static void
wait_notified(long long n)
{
	for (int t = 0; t < 200 && q1("notif.db", "SELECT count(*) FROM "
	                                          "notifications") < n;
	     t++)
		usleep(20000);
}

/* notification-svc with --events queue (the layout before the stream),
 * logging to `log`, once it consumes notification.events: its pid, or
 * -1. */
static int
start_notification_queue(const char *log)
{
	const char *a[] = {"notification-svc", "--amqp", NULL, "--db", NULL,
	                   "--events",         "queue",  NULL};
	int pid;

	a[2] = T.url;
	a[4] = path("notif.db");
	pid = testutil_spawn(a, path(log));
	return pid > 0 && wait_consumer("notification.events") ? pid : -1;
}

static int
start_notification(const char *delay)
{
	const char *a[] = {"notification-svc", "--amqp",          T.url, "--db",
	                   path("notif.db"),   "--confirm-delay", delay, NULL};
	return testutil_spawn(a, path("notif.log"));
}

/* notification.events is a stream: the daemon stores its offset with
 * each batch, so after a SIGKILL in the middle of 3000 events it resumes
 * exactly after its last commit -- nothing is read twice (no "seen
 * before"), nothing is skipped -- and the order confirmation, a row due
 * later in its own database, is sent once after the restart even though
 * it fell due while the daemon was dead. */
static void
test_notification_stream_resume(void)
{
	long long at_kill, n;
	int pid;

	CHECK(world_open() == 0);
	/* the broker's data outlives a test: start from an empty stream
	 * (the test's bus declares it again when it reconnects) */
	bus_queue_delete(T.bus, "audit", false);
	bus_close(T.bus);
	T.bus = NULL;
	CHECK(world_bus() == 0);
	pid = start_notification("1500");
	CHECK(pid > 0 && wait_ready("notif.log"));
	{
		struct value p = order_payload("oc");
		publish_event("order_events", "order.completed",
		              "order.completed", "ev-c", "oc", &p);
	}
	publish_shipped(0, 3000);
	for (int t = 0; t < 200 && q1("notif.db", "SELECT count(*) FROM "
	                                          "notifications") < 300;
	     t++)
		usleep(10000);
	CHECK(testutil_stop(pid, SIGKILL) == 128 + SIGKILL);
	at_kill = q1("notif.db", "SELECT count(*) FROM notifications");
	CHECK_MSG(at_kill > 0 && at_kill < 3002, "%lld at the kill", at_kill);
	/* the position is what was committed: one event per offset here */
	CHECK_EQ(q1("notif.db", "SELECT next_offset FROM part_stream"),
	         at_kill);
	CHECK_EQ(q1("notif.db", "SELECT count(*) FROM notifications WHERE "
	                        "kind = 'order.confirmation'"),
	         0);
	usleep(1600 * 1000); /* the confirmation falls due meanwhile */
	pid = start_notification("1500");
	CHECK(pid > 0);
	for (int t = 0; t < 300 && q1("notif.db", "SELECT count(*) FROM "
	                                          "notifications") < 3002;
	     t++)
		usleep(20000);
	CHECK(testutil_stop(pid, SIGTERM) == 0);
	n = q1("notif.db", "SELECT count(*) FROM notifications");
	CHECK_EQ(n, 3002); /* 3000 shipped, completed, its confirmation */
	CHECK_EQ(q1("notif.db", "SELECT count(DISTINCT event_id) FROM "
	                        "notifications"),
	         3002);
	CHECK_EQ(q1("notif.db", "SELECT next_offset FROM part_stream"), 3001);
	CHECK_EQ(q1("notif.db", "SELECT count(*) FROM confirmations"), 0);
	{
		char want[64];
		snprintf(want, sizeof(want), "from offset %lld", at_kill);
		CHECK_MSG(log_says("notif.log", want), "no \"%s\"", want);
	}
	CHECK(!log_says("notif.log", "seen before"));
	world_close();
}

/* An `audit` that is a classic queue (left by an older orchestrator) is
 * never read: RabbitMQ refuses x-stream-offset on a classic queue, which
 * notification-svc always passes, so it keeps retrying with the broker's
 * reason in its log and the message stays in the queue. */
static void
test_notification_audit_not_stream(void)
{
	static const struct bus_queue q[] = {{.name = "audit"}};
	static const struct bus_binding b[] = {
	        {"order_events", "audit", NULL, "order.#"}};
	static const struct bus_topology topo = {NULL, 0, q, 1, b, 1};
	struct bus_config c = {.name = "old", .topology = &topo};
	struct bus *old;
	char err[256];
	int pid;

	CHECK(world_open() == 0);
	bus_queue_delete(T.bus, "audit", false);
	c.url = T.url;
	old = bus_open(&c, err, sizeof(err));
	CHECK(old != NULL && bus_connect(old, err, sizeof(err)) == 0);
	bus_close(old);
	publish_shipped(0, 1);
	pid = start_notification("100");
	CHECK(pid > 0);
	for (int t = 0; t < 100 && !log_says("notif.log", "x-stream-offset");
	     t++)
		usleep(100000);
	CHECK(log_says("notif.log", "invalid arg 'x-stream-offset' for queue "
	                            "'audit'"));
	CHECK(testutil_stop(pid, SIGTERM) == 0);
	CHECK_EQ(queue_depth("audit"), 1);
	CHECK_EQ(q1("notif.db", "SELECT count(*) FROM notifications"), 0);
	world_close();
}

/* A fresh database started with --from end (its old one was lost) does
 * not notify what the stream already holds, only what comes after; once
 * it has committed, a restart without the flag goes on from its stored
 * offset and replays nothing. */
static void
test_notification_from_end(void)
{
	const char *a[] = {"notification-svc", "--amqp", NULL, "--db", NULL,
	                   "--from",           "end",    NULL};
	int pid;

	CHECK(world_open() == 0);
	bus_queue_delete(T.bus, "audit", false); /* an empty stream */
	bus_close(T.bus);
	T.bus = NULL;
	CHECK(world_bus() == 0);
	publish_shipped(0, 20); /* notified by the lost database */
	a[2] = T.url;
	a[4] = path("notif.db");
	pid = testutil_spawn(a, path("notif.log"));
	CHECK(pid > 0 && wait_ready("notif.log"));
	CHECK(log_says("notif.log", "from its end"));
	usleep(300000);
	publish_shipped(20, 25);
	wait_notified(5);
	CHECK(testutil_stop(pid, SIGTERM) == 0);
	CHECK_EQ(q1("notif.db", "SELECT count(*) FROM notifications"), 5);
	CHECK_EQ(q1("notif.db", "SELECT count(*) FROM notifications WHERE "
	                        "saga_id IN ('o20','o21','o22','o23','o24')"),
	         5);
	CHECK_EQ(q1("notif.db", "SELECT next_offset FROM part_stream"), 25);
	pid = start_notification("100"); /* no --from: its stored offset */
	CHECK(pid > 0 && wait_ready("notif.log"));
	publish_shipped(25, 26);
	wait_notified(6);
	CHECK(testutil_stop(pid, SIGTERM) == 0);
	CHECK_EQ(q1("notif.db", "SELECT count(*) FROM notifications"), 6);
	CHECK(!log_says("notif.log", "seen before"));
	world_close();
}

/* --events queue: notification.events bound to order.*, consumed and
 * acked, nothing stays in it, and the audit stream is not read. */
static void
test_notification_classic(void)
{
	int pid;

	CHECK(world_open() == 0);
	pid = start_notification_queue("notif.log");
	CHECK(pid > 0);
	publish_shipped(0, 50);
	wait_notified(50);
	CHECK_EQ(q1("notif.db", "SELECT count(*) FROM notifications"), 50);
	CHECK_EQ(queue_depth("notification.events"), 0);
	CHECK(testutil_stop(pid, SIGTERM) == 0);
	CHECK_EQ(q1("notif.db", "SELECT count(*) FROM part_stream"), 0);
	CHECK(!log_says("notif.log", "reading stream"));
	world_close();
}

/* How many bindings order_events -> notification.events (order.*) the
 * broker has: what --events queue declares (-1 if it cannot say). */
static int
old_bindings(void)
{
	char *out = NULL;
	int n = -1;

	if (testutil_sh(&out,
	                "scripts/broker ctl '%s-%ld' list_bindings -q "
	                "source_name destination_name routing_key | "
	                "grep -c '^order_events.notification[.]events.order[.]"
	                "[*]$'; true",
	                T.broker, (long)getpid()) == 0 &&
	    out != NULL)
		n = atoi(out);
	free(out);
	return n;
}

/* Upgrading from --events queue to the audit stream: the binding the
 * old layout declared is removed when the daemon starts on the stream,
 * so the broker stops storing a second copy of every event in
 * notification.events; each event is notified once, from the stream. */
static void
test_notification_upgrade(void)
{
	int pid;

	CHECK(world_open() == 0);
	pid = start_notification_queue("notif-queue.log");
	CHECK(pid > 0);
	CHECK(testutil_stop(pid, SIGTERM) == 0);
	CHECK_EQ(old_bindings(), 1);
	pid = start_notification("100");
	CHECK(pid > 0 && wait_ready("notif.log"));
	CHECK_EQ(old_bindings(), 0);
	publish_shipped(0, 20);
	wait_notified(20);
	CHECK(testutil_stop(pid, SIGTERM) == 0);
	CHECK_EQ(q1("notif.db", "SELECT count(*) FROM notifications"), 20);
	CHECK_EQ(queue_depth("notification.events"), 0);
	world_close();
}

/* Stock as an operation: `sagactl stock set|add` changes a running
 * inventory and waits for its answer; each change is a movement with its
 * actor and reason; on hand never goes below 0; orders then reserve the
 * new stock; with inventory-svc stopped the client says nobody answered. */
static void
test_stock_admin(void)
{
	const char *bin = getenv("SAGA_BIN_DIR");
	const struct reply *r;
	struct value p;
	char *out = NULL;
	int pid, rc;

	CHECK(world_open() == 0 && bin != NULL);
	{
		const char *a[] = {"inventory-svc", "--amqp",       T.url,
		                   "--db",          path("inv.db"), NULL};
		pid = testutil_spawn(a, path("inv.log"));
	}
	CHECK(pid > 0 && wait_consumer("inventory.commands"));
	rc = testutil_sh(&out,
	                 "SAGA_AMQP_URL='%s' %s/sagactl stock add sku-n 5 "
	                 "--reason 'first delivery' 2>&1",
	                 T.url, bin);
	CHECK_MSG(rc == 0 && strstr(out, "sku-n: on hand 0 -> 5") != NULL,
	          "rc %d: %s", rc, out);
	free(out);
	/* an order takes 2; a recount sets what is on the shelf */
	p = items("sku-n", 2);
	send_cmd("inventory", "inventory.reserve", "st1", "s-st1", &p);
	r = await("st1", 0, 10000);
	CHECK(r != NULL && strcmp(r->type, "inventory.reserved") == 0);
	rc = testutil_sh(&out,
	                 "SAGA_AMQP_URL='%s' %s/sagactl --json stock set sku-n "
	                 "10 --reason recount 2>&1",
	                 T.url, bin);
	CHECK_MSG(rc == 0 && strstr(out, "\"before\":3,\"on_hand\":10,"
	                                 "\"held\":2") != NULL,
	          "rc %d: %s", rc, out);
	free(out);
	/* below zero: refused, exit 1, nothing changed */
	rc = testutil_sh(&out,
	                 "SAGA_AMQP_URL='%s' %s/sagactl stock add sku-n -11 "
	                 "--reason breakage 2>&1",
	                 T.url, bin);
	CHECK_MSG(rc == 1 && strstr(out, "refused: sku-n has 10 on hand: "
	                                 "cannot take 11") != NULL,
	          "rc %d: %s", rc, out);
	free(out);
	CHECK(q1("inv.db", "SELECT on_hand FROM stock WHERE sku='sku-n'") ==
	      10);
	CHECK(q1("inv.db", "SELECT count(*) FROM movements WHERE kind IN "
	                   "('set','add') AND reason IN ('first delivery', "
	                   "'recount') AND actor != ''") == 2);
	/* usage errors never reach the broker */
	CHECK(testutil_sh(NULL,
	                  "%s/sagactl --amqp '%s' stock add sku-n 1 "
	                  ">/dev/null 2>&1",
	                  bin, T.url) == 2);
	CHECK(testutil_sh(NULL,
	                  "%s/sagactl --amqp '%s' stock add sku-n ten "
	                  "--reason x >/dev/null 2>&1",
	                  bin, T.url) == 2);
	CHECK(testutil_stop(pid, SIGTERM) == 0);
	/* nobody consuming: the request waits in the queue, the client says
	 * so instead of hanging */
	rc = testutil_sh(&out,
	                 "SAGA_AMQP_URL='%s' %s/sagactl stock add sku-n 1 "
	                 "--reason late 2>&1",
	                 T.url, bin);
	CHECK_MSG(rc == 1 &&
	                  strstr(out, "no answer from inventory-svc") != NULL,
	          "rc %d: %s", rc, out);
	free(out);
	world_close();
}

/* True if a line of the log holds both has and also. */
static bool
log_line_has(const char *log, const char *has, const char *also)
{
	char *text = testutil_slurp(log, NULL);
	bool found = false;

	for (char *l = text; l != NULL && *l != '\0' && !found;) {
		char *nl = strchr(l, '\n');
		if (nl != NULL)
			*nl = '\0';
		found = strstr(l, has) != NULL && strstr(l, also) != NULL;
		l = nl != NULL ? nl + 1 : NULL;
	}
	free(text);
	return found;
}

#define TP_OK  "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
#define TP_BAD "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

/* inventory-svc with --http: the counters of what it did, the depth of
 * its DLQ, /healthz, and log lines carrying each message's trace id. */
static void
test_metrics_http(void)
{
	const char *want[] = {
	        "part_messages_total{type=\"inventory.reserve\",outcome=\"ok\"}"
	        " 1\n",
	        "part_messages_total{type=\"inventory.reserve\",outcome="
	        "\"duplicate\"} 1\n",
	        "part_messages_total{type=\"inventory.explode\",outcome="
	        "\"dead_lettered\"} 1\n",
	        "part_queue_messages{queue=\"inventory.commands.dlq\"} 1\n",
	        "part_bus_connected 1\n",
	        "part_outbox_depth 0\n",
	        "part_batch_size_count",
	        "part_commit_seconds_count",
	        "part_handle_seconds_bucket{type=\"inventory.reserve\"",
	        "part_disk_free_bytes ",
	        NULL};
	int port = testutil_free_port(), pid, st = 0;
	char addr[64], *body;
	struct value p;
	FILE *f;

	CHECK(world_open() == 0);
	f = fopen(path("seed.txt"), "w");
	CHECK(f != NULL);
	fputs("sku-a 10\n", f);
	fclose(f);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	{
		const char *a[] = {"inventory-svc",
		                   "--amqp",
		                   T.url,
		                   "--db",
		                   path("inv.db"),
		                   "--seed",
		                   path("seed.txt"),
		                   "--http",
		                   addr,
		                   NULL};
		pid = testutil_spawn(a, path("inv.log"));
	}
	CHECK(pid > 0 && wait_consumer("inventory.commands"));
	send_tp = TP_OK;
	p = items("sku-a", 2);
	send_cmd("inventory", "inventory.reserve", "m1", "ms1", &p);
	CHECK(await("m1", 0, 10000) != NULL);
	p = items("sku-a", 2);
	send_cmd("inventory", "inventory.reserve", "m1", "ms1", &p);
	CHECK(await("m1", 1, 10000) != NULL);
	send_tp = TP_BAD;
	send_cmd("inventory", "inventory.explode", "m2", "ms2", NULL);
	send_tp = NULL;
	body = testutil_http_until(port, "/metrics", want, 15000, &st);
	for (int i = 0; want[i] != NULL; i++)
		CHECK_MSG(body != NULL && strstr(body, want[i]) != NULL,
		          "no %s in %s", want[i], body ? body : "(none)");
	free(body);
	body = testutil_http(port, "GET", "/healthz", NULL, NULL, &st);
	CHECK_MSG(st == 200 && body != NULL && strcmp(body, "ok\n") == 0,
	          "%d %s", st, body ? body : "(none)");
	free(body);
	/* each message's lines carry its own trace id */
	CHECK(log_line_has(path("inv.log"), "saga=ms1 step=step",
	                   "trace_id=0af7651916cd43dd8448eb211c80319c"));
	CHECK(log_line_has(path("inv.log"), "seen before",
	                   "trace_id=0af7651916cd43dd8448eb211c80319c"));
	CHECK(log_line_has(path("inv.log"), "dead-lettered m2",
	                   "trace_id=4bf92f3577b34da6a3ce929d0e0e4736"));
	CHECK(!log_line_has(path("inv.log"), "http listening", "trace_id="));
	CHECK_EQ(testutil_stop(pid, SIGTERM), 0);
	world_close();
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	atexit(testutil_kill_all);
	RUN(test_bad_flags_and_files);
	RUN(test_retention_bounds);
	RUN(test_processed_pruned);
	testutil_kill_all();
	RUN(test_notification_events);
	RUN(test_notification_stream_resume);
	RUN(test_notification_classic);
	RUN(test_notification_upgrade);
	RUN(test_notification_audit_not_stream);
	RUN(test_notification_from_end);
	testutil_kill_all();
	RUN(test_inventory);
	testutil_kill_all();
	RUN(test_metrics_http);
	testutil_kill_all();
	RUN(test_stock_admin);
	testutil_kill_all();
	RUN(test_payment);
	testutil_kill_all();
	RUN(test_bundles);
	testutil_kill_all();
	RUN(test_order_api);
	testutil_kill_all();
	RUN(test_sagactl_dlq);
	return check_summary();
}

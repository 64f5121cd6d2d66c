/* test_order_api -- order-api's outbox, group commit and event-fed
 * status against a private RabbitMQ (no mock): POSTs while the broker is
 * away are accepted and published when it returns, also across a SIGKILL;
 * 64 concurrent POSTs each publish their order.created exactly once;
 * concurrent POSTs with one new Idempotency-Key make one order; GET
 * follows the order.* events; malformed events are dead-lettered with a
 * reason; the old version's unconfirmed orders are published after the
 * migration; /healthz says 200 with the broker away. Cancels (no
 * orchestrator here: the events are the test's): 404, 400, one per
 * order, Idempotency-Keys, too late from a final event, a refusal that
 * leaves the order's status alone, the order.cancel_requested message as
 * published, and a cancel taken with the broker away. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "clock.h"
#include "bus.h"
#include "envelope.h"
#include "testutil.h"

#define NCONC 64

static struct {
	char *dir, *url;
	char broker[32];
	struct bus *bus;
	int port, pid;
} T;

static const struct bus_handlers H = {NULL, NULL, NULL};

static const char *
path(const char *name)
{
	static char buf[4][512];
	static int k;
	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", T.dir, name);
	return buf[k];
}

static void
order_body(int i, char *buf, size_t cap)
{
	snprintf(buf, cap,
	         "{\"customer_id\":\"c-%d\",\"items\":[{\"sku\":\"a\","
	         "\"quantity\":1,\"unit_price_cents\":%d}],\"currency\":"
	         "\"EUR\",\"payment_method\":\"cod\",\"ship_to\":{\"country\":"
	         "\"india\"}}",
	         i, 100 + i);
}

/* The test's own connection: test.created takes every order.created. */
static int
world_open(void)
{
	static const struct bus_exchange ex[] = {
	        {"order_events", "topic", NULL, NULL}};
	static const struct bus_queue q[] = {{.name = "test.created"},
	                                     {.name = "test.cancels"}};
	static const struct bus_binding b[] = {
	        {"order_events", "test.created", NULL, "order.created"},
	        {"order_events", "test.cancels", NULL,
	         "order.cancel_requested"}};
	static const struct bus_topology topo = {ex, 1, q, 2, b, 2};
	struct bus_config c = {.name = "test", .topology = &topo};
	char err[256];

	memset(&T, 0, sizeof(T));
	T.dir = testutil_tmpdir("orderapi");
	snprintf(T.broker, sizeof(T.broker), "oapi");
	T.url = testbroker_start(T.broker);
	if (T.dir == NULL || T.url == NULL)
		return -1;
	c.url = T.url;
	T.bus = bus_open(&c, err, sizeof(err));
	return T.bus != NULL && bus_connect(T.bus, err, sizeof(err)) == 0 ? 0
	                                                                  : -1;
}

static void
world_close(void)
{
	testutil_kill_all();
	bus_close(T.bus);
	testbroker_ctl(T.broker, "stop");
	if (check_current_failed == 0)
		testutil_rmtree(T.dir);
	else
		fprintf(stderr, "logs kept in %s\n", T.dir);
	free(T.dir);
	free(T.url);
}

/* Waits for /healthz to answer 200 and contain want (NULL: anything). */
static bool
api_health(const char *want, int tries)
{
	for (int t = 0; t < tries; t++) {
		int st = 0;
		char *r = testutil_http(T.port, "GET", "/healthz", NULL, NULL,
		                        &st);
		bool ok = st == 200 && r != NULL &&
		          (want == NULL || strstr(r, want) != NULL);
		free(r);
		if (ok)
			return true;
		usleep(100000);
	}
	return false;
}

static int
api_start(void)
{
	char listen[64];
	const char *a[] = {"order-api",    "--amqp",   T.url,  "--db",
	                   path("api.db"), "--listen", listen, NULL};
	if (T.port == 0)
		T.port = testutil_free_port();
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", T.port);
	T.pid = testutil_spawn(a, path("api.log"));
	return T.pid > 0 && api_health(NULL, 100) ? 0 : -1;
}

/* POSTs an order; its id into id (if given) and the status back. */
static int
post(const char *headers, const char *body, char id[64], char **out)
{
	int st = 0;
	char *r = testutil_http(T.port, "POST", "/orders", headers, body, &st);
	const char *p = r != NULL ? strstr(r, "\"order_id\":\"") : NULL;
	if (id != NULL) {
		id[0] = '\0';
		if (p != NULL)
			sscanf(p + 12, "%63[^\"]", id);
	}
	if (out != NULL)
		*out = r;
	else
		free(r);
	return st;
}

/* The order.created messages on test.created: their message ids. */
struct created {
	char ids[256][80];
	int n;
	int bad; /* not created-<saga> */
};

static int
take_created(void *arg, const struct bus_delivery *d)
{
	struct created *c = arg;
	struct envelope e;
	char err[256], want[80];

	envelope_init(&e);
	if (envelope_decode(d->body, d->len, &e, err, sizeof(err)) != 0) {
		fprintf(stderr, "    %s: %s\n", d->message_id, err);
		c->bad++;
	}
	snprintf(want, sizeof(want), "created-%s", e.saga);
	if (strcmp(want, d->message_id) != 0 || strcmp(e.saga, "") == 0) {
		fprintf(stderr, "    %s is not %s\n", d->message_id, want);
		c->bad++;
	}
	if (c->n < 256)
		snprintf(c->ids[c->n++], sizeof(c->ids[0]), "%s",
		         d->message_id);
	envelope_clear(&e);
	return 1;
}

/* Takes what test.created holds until want arrived and then 500 ms more
 * (a duplicate would show up), or 20 s pass. */
static void
collect(struct created *c, int want)
{
	int quiet = 0;
	for (int t = 0; t < 400 && (c->n < want || quiet < 10); t++) {
		bool got = false;
		if (bus_get(T.bus, "test.created", take_created, c, &got) != 0)
			bus_poll(T.bus, 50, &H);
		else if (!got) {
			quiet += c->n >= want;
			bus_poll(T.bus, 50, &H);
		}
	}
}

static int
count_id(const struct created *c, const char *order_id)
{
	char want[80];
	int n = 0;
	snprintf(want, sizeof(want), "created-%s", order_id);
	for (int i = 0; i < c->n; i++)
		n += strcmp(c->ids[i], want) == 0;
	return n;
}

/* ---- concurrency ---- */

struct poster {
	pthread_t t;
	const char *headers;
	char body[512];
	char id[64];
	int status;
	bool replayed;
};

static void *
poster_main(void *arg)
{
	struct poster *p = arg;
	char *r = NULL;
	p->status = post(p->headers, p->body, p->id, &r);
	p->replayed = r != NULL && strstr(r, "\"replayed\":true") != NULL;
	free(r);
	return NULL;
}

static void
post_all(struct poster *p, int n)
{
	for (int i = 0; i < n; i++)
		CHECK(pthread_create(&p[i].t, NULL, poster_main, &p[i]) == 0);
	for (int i = 0; i < n; i++)
		pthread_join(p[i].t, NULL);
}

/* (b) 64 concurrent POSTs: all 202, 64 orders, each order.created
 * published exactly once with its own id. */
static void
test_concurrent_posts(void)
{
	static struct poster p[NCONC];
	static struct created c;
	int ok = 0;

	memset(p, 0, sizeof(p));
	memset(&c, 0, sizeof(c));
	for (int i = 0; i < NCONC; i++)
		order_body(i, p[i].body, sizeof(p[i].body));
	post_all(p, NCONC);
	for (int i = 0; i < NCONC; i++) {
		CHECK_MSG(p[i].status == 202 && p[i].id[0] != '\0',
		          "POST %d: %d", i, p[i].status);
		for (int k = 0; k < i; k++)
			CHECK(strcmp(p[i].id, p[k].id) != 0);
	}
	collect(&c, NCONC);
	CHECK_EQ(c.bad, 0);
	CHECK_EQ(c.n, NCONC);
	for (int i = 0; i < NCONC; i++)
		ok += count_id(&c, p[i].id) == 1;
	CHECK_EQ(ok, NCONC);
	CHECK(api_health("\"outbox\":0", 50));
}

/* (c) 16 concurrent POSTs with the same new key and body: one order,
 * created once, the others replays; another body: 409. */
static void
test_concurrent_same_key(void)
{
	static struct poster p[16];
	static struct created c;
	int fresh = 0;
	char body[512];

	memset(p, 0, sizeof(p));
	memset(&c, 0, sizeof(c));
	for (int i = 0; i < 16; i++) {
		p[i].headers = "Idempotency-Key: same-new-key\r\n";
		order_body(1000, p[i].body, sizeof(p[i].body));
	}
	post_all(p, 16);
	for (int i = 0; i < 16; i++) {
		CHECK_MSG(p[i].status == 202, "POST %d: %d", i, p[i].status);
		CHECK_STR(p[i].id, p[0].id);
		fresh += !p[i].replayed;
	}
	CHECK_EQ(fresh, 1);
	order_body(1001, body, sizeof(body));
	CHECK_EQ(post("Idempotency-Key: same-new-key\r\n", body, NULL, NULL),
	         409);
	CHECK_EQ(post("Idempotency-Key: same-new-key\r\n", "{}", NULL, NULL),
	         409);
	collect(&c, 1);
	CHECK_EQ(c.n, 1);
	CHECK_EQ(count_id(&c, p[0].id), 1);
}

/* ---- the status from the events ---- */

static void
send_event(const char *saga, const char *type, const char *id, int64_t ts)
{
	struct envelope e;
	char *body = NULL;
	size_t len = 0;
	struct bus_message m = {.exchange = "order_events"};

	envelope_init(&e);
	snprintf(e.id, sizeof(e.id), "%s", id);
	snprintf(e.saga, sizeof(e.saga), "%s", saga);
	snprintf(e.type, sizeof(e.type), "%s", type);
	snprintf(e.step, sizeof(e.step), "step-of-%s", type + 6);
	e.ts = ts;
	CHECK(envelope_encode(&e, &body, &len) == 0);
	envelope_clear(&e);
	m.routing_key = type;
	m.message_id = id;
	m.correlation_id = saga;
	m.type = type;
	m.body = body;
	m.len = len;
	CHECK(bus_publish(T.bus, &m, 0) == 0);
	CHECK(bus_flush(T.bus, 10000, &H) == 0);
	free(body);
}

/* Waits until GET /orders/id contains want. */
static bool
status_is(const char *id, const char *want)
{
	char url[128];
	snprintf(url, sizeof(url), "/orders/%s", id);
	for (int t = 0; t < 100; t++) {
		int st = 0;
		char *r = testutil_http(T.port, "GET", url, NULL, NULL, &st);
		bool ok = st == 200 && r != NULL && strstr(r, want) != NULL;
		if (t == 99 || ok)
			fprintf(stderr, "    GET %s: %d %s\n", url, st,
			        r ? r : "");
		free(r);
		if (ok)
			return true;
		usleep(50000);
	}
	return false;
}

static void
send_raw(const char *rk, const char *id, const void *body, size_t len,
         const char *type)
{
	struct bus_message m = {.exchange = "order_events",
	                        .routing_key = rk,
	                        .message_id = id,
	                        .type = type,
	                        .body = body,
	                        .len = len};
	CHECK(bus_publish(T.bus, &m, 0) == 0);
	CHECK(bus_flush(T.bus, 10000, &H) == 0);
}

static int
take_dlq(void *arg, const struct bus_delivery *d)
{
	int *with_reason = arg;
	fprintf(stderr, "    dead letter %s: %s\n", d->message_id, d->error);
	*with_reason += d->error[0] != '\0';
	return 1;
}

/* accepted -> running -> completed from the events; an older event or
 * order-api's own order.created changes nothing; malformed events go to
 * order-api.events.dlq with a reason and order-api goes on. */
static void
test_status_from_events(void)
{
	static const unsigned char garbage[] = {0xde, 0xad, 0xbe, 0xef};
	char body[512], id[64], *other = NULL;
	int64_t now = clock_wall_ms();
	int reasons = 0, st = 0;
	uint32_t purged = 0;
	size_t len = 0;
	struct envelope e;

	order_body(2000, body, sizeof(body));
	CHECK_EQ(post(NULL, body, id, NULL), 202);
	CHECK(status_is(id, "\"status\":\"accepted\""));
	send_event(id, "order.inventory_checked", "ev-1", now);
	CHECK(status_is(id, "\"status\":\"running\""));
	CHECK(status_is(id, "\"last_event\":\"order.inventory_checked\""));
	CHECK(status_is(id, "\"state\":\"step-of-inventory_checked\""));
	send_event(id, "order.completed", "ev-2", now + 2);
	CHECK(status_is(id, "\"status\":\"completed\""));
	send_event(id, "order.payment_success", "ev-3", now + 1);
	send_event(id, "order.created", "ev-4", now + 3);
	send_event(id, "order.shipped", "ev-5", now + 5);   /* after final */
	send_event(id, "order.completed", "ev-2", now + 2); /* again */
	usleep(300000);
	CHECK(status_is(id, "\"status\":\"completed\""));
	CHECK(status_is(id, "\"last_event\":\"order.completed\""));
	/* an event for an order this order-api never took: recorded */
	send_event("ord-elsewhere", "order.failed", "ev-6", now);
	CHECK(status_is("ord-elsewhere", "\"status\":\"failed\""));
	free(testutil_http(T.port, "GET", "/orders/nope", NULL, NULL, &st));
	CHECK_EQ(st, 404);

	/* malformed: not msgpack; an envelope of another type */
	send_raw("order.garbage", "bad-1", garbage, sizeof(garbage), NULL);
	envelope_init(&e);
	snprintf(e.id, sizeof(e.id), "bad-2");
	snprintf(e.saga, sizeof(e.saga), "%s", id);
	snprintf(e.type, sizeof(e.type), "inventory.reserve");
	CHECK(envelope_encode(&e, &other, &len) == 0);
	envelope_clear(&e);
	send_raw("order.odd", "bad-2", other, len, "inventory.reserve");
	free(other);
	for (int t = 0; t < 100 && reasons < 2; t++) {
		bool got = false;
		if (bus_get(T.bus, "order-api.events.dlq", take_dlq, &reasons,
		            &got) != 0 ||
		    !got)
			usleep(50000);
	}
	CHECK_EQ(reasons, 2);
	CHECK(api_health("\"status\":\"ok\"", 10));
	CHECK(status_is(id, "\"status\":\"completed\""));
	/* the fake order.created (ev-4) and the order's own */
	CHECK(bus_queue_purge(T.bus, "test.created", &purged) == 0);
}

/* ---- cancels ---- */

/* POST /orders/id/cancel; the status, and whether the body has want. */
static int
cancel(const char *id, const char *headers, const char *body, const char *want)
{
	char url[160];
	int st = 0;
	char *r;

	snprintf(url, sizeof(url), "/orders/%s/cancel", id);
	r = testutil_http(T.port, "POST", url, headers, body, &st);
	fprintf(stderr, "    POST %s: %d %s\n", url, st, r ? r : "");
	if (want != NULL && (r == NULL || strstr(r, want) == NULL))
		st = -st;
	free(r);
	return st;
}

/* GET /orders/id/cancel until it answers code with want (5 s). */
static bool
cancel_is(const char *id, int code, const char *want)
{
	char url[160];
	snprintf(url, sizeof(url), "/orders/%s/cancel", id);
	for (int t = 0; t < 100; t++) {
		int st = 0;
		char *r = testutil_http(T.port, "GET", url, NULL, NULL, &st);
		bool ok = st == code && r != NULL && strstr(r, want) != NULL;
		if (t == 99 || ok)
			fprintf(stderr, "    GET %s: %d %s\n", url, st,
			        r ? r : "");
		free(r);
		if (ok)
			return true;
		usleep(50000);
	}
	return false;
}

/* The order.cancel_requested messages on test.cancels. */
struct cancels {
	int n, bad;
	char saga[64], reason[64], actor[32];
};

static int
take_cancel(void *arg, const struct bus_delivery *d)
{
	struct cancels *c = arg;
	struct envelope e;
	const struct value *v;
	char err[256], want[96];

	envelope_init(&e);
	if (envelope_decode(d->body, d->len, &e, err, sizeof(err)) != 0)
		c->bad++;
	snprintf(want, sizeof(want), "cancel-%s", e.saga);
	c->bad += strcmp(want, d->message_id) != 0 ||
	          strcmp(e.saga, d->correlation_id) != 0 ||
	          strcmp(e.type, "order.cancel_requested") != 0;
	snprintf(c->saga, sizeof(c->saga), "%s", e.saga);
	v = value_map_get(&e.payload, "reason");
	snprintf(c->reason, sizeof(c->reason), "%s",
	         v != NULL && v->type == VALUE_STR ? v->u.s.ptr : "");
	v = value_map_get(&e.payload, "actor");
	snprintf(c->actor, sizeof(c->actor), "%s",
	         v != NULL && v->type == VALUE_STR ? v->u.s.ptr : "");
	c->n++;
	envelope_clear(&e);
	return 1;
}

static void
collect_cancels(struct cancels *c, int want)
{
	for (int t = 0; t < 100 && c->n < want; t++) {
		bool got = false;
		if (bus_get(T.bus, "test.cancels", take_cancel, c, &got) != 0 ||
		    !got)
			bus_poll(T.bus, 50, &H);
	}
}

/* What order-api answers alone: 404, 400, one cancel per order, keys. */
static void
test_cancel_requests(void)
{
	static struct cancels c;
	char body[512], id[64], big[300];
	int st = 0;

	memset(&c, 0, sizeof(c));
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK_EQ(cancel("ord-nobody", NULL, NULL, "no such order"), 404);
	order_body(4000, body, sizeof(body));
	CHECK_EQ(post(NULL, body, id, NULL), 202);
	free(testutil_http(T.port, "GET", "/orders/nope/cancel", NULL, NULL,
	                   &st));
	CHECK_EQ(st, 404);
	CHECK(!cancel_is(id, 200, "")); /* 404: none requested */
	CHECK_EQ(cancel(id, NULL, "{\"reason\":1}", "\"field\":\"reason\""),
	         400);
	CHECK_EQ(cancel(id, NULL, "{\"why\":\"x\"}", "\"field\":\"why\""), 400);
	CHECK_EQ(cancel(id, NULL, "[]", NULL), 400);
	snprintf(body, sizeof(body), "{\"reason\":\"%s\"}", big);
	CHECK_EQ(cancel(id, NULL, body, "\"field\":\"reason\""), 400);
	CHECK_EQ(cancel(id, "Idempotency-Key: c-1\r\n", "{\"reason\":\"late\"}",
	                "\"replayed\":false"),
	         202);
	CHECK_EQ(cancel(id, "Idempotency-Key: c-1\r\n", "{\"reason\":\"late\"}",
	                "\"replayed\":true"),
	         202);
	CHECK_EQ(cancel(id, "Idempotency-Key: c-1\r\n", "{}", NULL), 409);
	CHECK_EQ(cancel(id, "Idempotency-Key: c-1\r\n", "[]", NULL), 409);
	CHECK_EQ(cancel("ord-nobody", "Idempotency-Key: c-1\r\n",
	                "{\"reason\":\"late\"}", NULL),
	         409);
	CHECK_EQ(cancel(id, NULL, NULL, "\"status\":\"cancel_requested\""),
	         202);
	CHECK(cancel_is(id, 202, "\"status\":\"cancel_requested\""));
	CHECK(status_is(id, "\"cancel\":{\"status\":\"cancel_requested\""));
	/* published once, as the orchestrator wants it */
	collect_cancels(&c, 1);
	CHECK_EQ(c.n, 1);
	CHECK_EQ(c.bad, 0);
	CHECK_STR(c.saga, id);
	CHECK_STR(c.reason, "late");
	CHECK_STR(c.actor, "customer");
}

/* The orchestrator's answers, played by the test: a refusal is the
 * cancel's and leaves the order running; order.cancelled ends both;
 * a final order is too late at once. */
static void
test_cancel_events(void)
{
	char body[512], a[64], b[64], d[64];
	int64_t now = clock_wall_ms();
	uint32_t purged = 0;

	order_body(4100, body, sizeof(body));
	CHECK_EQ(post(NULL, body, a, NULL), 202);
	order_body(4101, body, sizeof(body));
	CHECK_EQ(post(NULL, body, b, NULL), 202);
	order_body(4102, body, sizeof(body));
	CHECK_EQ(post(NULL, body, d, NULL), 202);
	send_event(a, "order.payment_success", "ev-c1", now);
	CHECK(status_is(a, "\"status\":\"running\""));
	CHECK_EQ(cancel(a, NULL, NULL, NULL), 202);
	CHECK_EQ(cancel(b, NULL, NULL, NULL), 202);
	send_event(a, "order.cancel_refused", "ev-c2", now + 1);
	CHECK(cancel_is(a, 409, "\"status\":\"refused\""));
	CHECK(cancel_is(a, 409, "\"state\":\"step-of-cancel_refused\""));
	CHECK(status_is(a, "\"last_event\":\"order.payment_success\""));
	CHECK(status_is(a, "\"status\":\"running\""));
	CHECK_EQ(cancel(a, NULL, NULL, "\"status\":\"refused\""), 409);
	send_event(b, "order.cancelled", "ev-c3", now + 1);
	CHECK(cancel_is(b, 200, "\"status\":\"cancelled\""));
	CHECK(status_is(b, "\"status\":\"cancelled\""));
	send_event(d, "order.failed", "ev-c4", now + 1);
	CHECK(status_is(d, "\"status\":\"failed\""));
	CHECK_EQ(cancel(d, NULL, NULL,
	                "\"error\":\"too late\",\"status\":\"failed\""),
	         409);
	CHECK(!cancel_is(d, 202, ""));
	/* order-api's own order.cancel_requested came back: not recorded */
	CHECK(status_is(b, "\"last_event\":\"order.cancelled\""));
	CHECK(api_health("\"outbox\":0,", 50));
	/* the orders and cancels of these two tests, for the next ones */
	CHECK(bus_queue_purge(T.bus, "test.created", &purged) == 0);
	CHECK(bus_queue_purge(T.bus, "test.cancels", &purged) == 0);
}

/* ---- the broker away ---- */

/* scripts/broker VERB <our node> ARGS (testbroker_ctl puts no flags after
 * the node's name) */
static int
broker_ctl(const char *verb, const char *args)
{
	return testutil_sh(NULL, "'%s/scripts/broker' %s '%s-%ld' %s >&2",
	                   getenv("SAGA_SOURCE_DIR"), verb, T.broker,
	                   (long)getpid(), args);
}

/* (a) (d) (f): with the broker stopped a POST is accepted at once, and
 * /healthz says 200 with the broker disconnected and the outbox depth;
 * order-api SIGKILLed and started again (broker still away) keeps the
 * order and takes another; when the broker returns both order.created
 * arrive, once each. */
static void
test_broker_away(void)
{
	static struct created c;
	static struct cancels k;
	char b1[512], b2[512], id1[64], id2[64];
	int64_t t0;

	memset(&c, 0, sizeof(c));
	CHECK(broker_ctl("stop", "--keep") == 0);
	CHECK(api_health("\"broker\":\"disconnected\"", 100));
	order_body(3000, b1, sizeof(b1));
	t0 = clock_wall_ms();
	CHECK_EQ(post("Idempotency-Key: away-1\r\n", b1, id1, NULL), 202);
	CHECK_MSG(clock_wall_ms() - t0 < 1000, "took %lld ms",
	          (long long)(clock_wall_ms() - t0));
	CHECK(api_health("\"outbox\":1,", 10));
	CHECK(api_health("\"broker\":\"disconnected\"", 10));

	CHECK(testutil_stop(T.pid, SIGKILL) == 128 + SIGKILL);
	CHECK(api_start() == 0);
	CHECK(api_health("\"outbox\":1,", 10));
	order_body(3001, b2, sizeof(b2));
	CHECK_EQ(post(NULL, b2, id2, NULL), 202);
	/* the replay of a key whose order waits in the outbox */
	CHECK_EQ(post("Idempotency-Key: away-1\r\n", b1, NULL, NULL), 202);
	CHECK(api_health("\"outbox\":2,", 10));
	/* a cancel waits in the outbox too */
	CHECK_EQ(cancel(id1, NULL, "{\"reason\":\"away\"}", NULL), 202);
	CHECK(api_health("\"outbox\":3,", 10));
	{ /* /metrics says the same, with the 202s since the restart */
		static const char *const want[] = {
		        "orderapi_outbox_depth 3\n",
		        "orderapi_bus_connected 0\n",
		        "orderapi_responses_total{code=\"202\"} 3\n", NULL};
		int st = 0;
		char *m = testutil_http_until(T.port, "/metrics", want, 3000,
		                              &st);
		CHECK_MSG(
		        st == 200 && m != NULL && strstr(m, want[0]) &&
		                strstr(m, want[1]) && strstr(m, want[2]) &&
		                strstr(m, "orderapi_outbox_oldest_seconds ") &&
		                strstr(m, "# TYPE orderapi_responses_total "
		                          "counter\n"),
		        "%d %s", st, m ? m : "");
		free(m);
	}

	CHECK(broker_ctl("start", "") == 0);
	CHECK(api_health("\"broker\":\"connected\"", 300));
	CHECK(api_health("\"outbox\":0,", 300));
	for (int t = 0; t < 100 && !bus_connected(T.bus); t++)
		bus_poll(T.bus, 100, &H);
	collect(&c, 2);
	CHECK_EQ(c.bad, 0);
	CHECK_EQ(count_id(&c, id1), 1);
	CHECK_EQ(count_id(&c, id2), 1);
	CHECK_EQ(c.n, 2);
	memset(&k, 0, sizeof(k));
	collect_cancels(&k, 1);
	CHECK_EQ(k.n, 1);
	CHECK_EQ(k.bad, 0);
	CHECK_STR(k.saga, id1);
	CHECK_STR(k.reason, "away");
}

/* ---- the migration ---- */

/* A database of the old version (migrations 1-2) with one order never
 * confirmed and one confirmed: only the first is published. */
static void
test_migration(void)
{
	static struct created c;
	char *m1 = NULL, *m2 = NULL, *body = NULL, sql[256];
	const char *src = getenv("SAGA_SOURCE_DIR");
	struct envelope e;
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	size_t len = 0;

	memset(&c, 0, sizeof(c));
	CHECK(testutil_stop(T.pid, SIGTERM) == 0);
	snprintf(sql, sizeof(sql), "%s/schema/orderapi/001_init.sql", src);
	m1 = testutil_slurp(sql, NULL);
	snprintf(sql, sizeof(sql), "%s/schema/orderapi/002_confirmed.sql", src);
	m2 = testutil_slurp(sql, NULL);
	CHECK(m1 != NULL && m2 != NULL);
	CHECK(sqlite3_open(path("old.db"), &db) == SQLITE_OK);
	CHECK(sqlite3_exec(db, m1, NULL, NULL, NULL) == SQLITE_OK);
	CHECK(sqlite3_exec(db, m2, NULL, NULL, NULL) == SQLITE_OK);
	CHECK(sqlite3_exec(db, "PRAGMA user_version = 2", NULL, NULL, NULL) ==
	      SQLITE_OK);
	CHECK(sqlite3_prepare_v2(db,
	                         "INSERT INTO orders(order_id, body, "
	                         "created_at, confirmed_at) VALUES (?1, ?2, 1, "
	                         "?3)",
	                         -1, &st, NULL) == SQLITE_OK);
	for (int i = 0; i < 2; i++) {
		envelope_init(&e);
		snprintf(e.saga, sizeof(e.saga), "ord-old-%d", i);
		snprintf(e.id, sizeof(e.id), "created-ord-old-%d", i);
		snprintf(e.type, sizeof(e.type), "order.created");
		CHECK(envelope_encode(&e, &body, &len) == 0);
		envelope_clear(&e);
		sqlite3_bind_text(st, 1, i == 0 ? "ord-old-0" : "ord-old-1", -1,
		                  SQLITE_STATIC);
		sqlite3_bind_blob(st, 2, body, (int)len, SQLITE_TRANSIENT);
		if (i == 1)
			sqlite3_bind_int(st, 3, 5);
		else
			sqlite3_bind_null(st, 3);
		CHECK(sqlite3_step(st) == SQLITE_DONE);
		sqlite3_reset(st);
		free(body);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	free(m1);
	free(m2);
	CHECK(rename(path("old.db"), path("api.db")) == 0);
	unlink(path("api.db-wal"));
	unlink(path("api.db-shm"));
	CHECK(api_start() == 0);
	collect(&c, 1);
	CHECK_EQ(c.bad, 0);
	CHECK_EQ(count_id(&c, "ord-old-0"), 1);
	CHECK_EQ(c.n, 1);
	CHECK(status_is("ord-old-1", "\"status\":\"accepted\""));
}

static void
test_start(void)
{
	CHECK_MSG(world_open() == 0, "no private broker");
	CHECK_MSG(api_start() == 0, "order-api did not come up: see %s", T.dir);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	atexit(testutil_kill_all);
	RUN(test_start);
	if (check_failed == 0) {
		RUN(test_concurrent_posts);
		RUN(test_concurrent_same_key);
		RUN(test_status_from_events);
		RUN(test_cancel_requests);
		RUN(test_cancel_events);
		RUN(test_broker_away);
		RUN(test_migration);
	}
	world_close();
	return check_summary();
}

/* The bus against private RabbitMQ brokers: many messages with confirms
 * and no loss or duplicate; a broker restart and a forced close in the
 * middle of a run lose nothing; an unroutable mandatory publish is
 * reported RETURNED; a rejected delivery reaches the dead-letter queue
 * with its x-death count; a publish to a missing exchange (404) is
 * published again once the exchange exists; TLS connects with the right
 * CA and is refused with the wrong one or by IP. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include "bus.h"
#include "log.h"
#include "testutil.h"

static char *own_url;

static const char *
shared_url(void)
{
	if (testutil_amqp_url() != NULL)
		return testutil_amqp_url();
	if (own_url == NULL)
		own_url = testbroker_start("bus-shared");
	return own_url;
}

struct counter {
	uint8_t *seen; /* per sequence number: times delivered */
	size_t n, dups, delivered;
	size_t acked, returned;
	uint64_t *returned_tags;
	struct bus *bus; /* to ack from the delivery callback */
	bool ack_each;
};

static void
on_delivery(void *arg, const struct bus_delivery *d)
{
	struct counter *c = arg;
	unsigned long seq = 0;
	if (sscanf(d->message_id, "m-%lu", &seq) == 1 && seq < c->n) {
		if (c->seen[seq]++ > 0)
			c->dups++;
	}
	c->delivered++;
	if (c->ack_each)
		bus_ack(c->bus, d->ref, false);
}

static void
on_confirm(void *arg, uint64_t tag, enum bus_confirm st)
{
	struct counter *c = arg;
	if (st == BUS_ACK) {
		c->acked++;
	} else {
		c->returned_tags[c->returned++ % 16] = tag;
	}
}

static struct bus *
open_bus(const char *url, const char *queue, const struct bus_topology *t,
         struct counter *c)
{
	const char *consume[1] = {queue};
	struct bus_config cfg = {
	        .url = url,
	        .name = "test",
	        .heartbeat_s = 5,
	        .prefetch = 500,
	        .topology = t,
	        .consume = queue != NULL ? consume : NULL,
	        .nconsume = queue != NULL ? 1 : 0,
	};
	char err[512];
	struct bus *b = bus_open(&cfg, err, sizeof(err));
	if (b == NULL) {
		fprintf(stderr, "bus_open: %s\n", err);
		return NULL;
	}
	if (bus_connect(b, err, sizeof(err)) != 0) {
		fprintf(stderr, "bus_connect: %s\n", err);
		bus_close(b);
		return NULL;
	}
	if (c != NULL)
		c->bus = b;
	return b;
}

static int
publish_seq(struct bus *b, const char *exchange, const char *rk,
            unsigned long seq, bool mandatory)
{
	char id[32], body[64];
	struct bus_message m = {
	        .exchange = exchange,
	        .routing_key = rk,
	        .message_id = id,
	        .type = "test.message",
	        .mandatory = mandatory,
	        .body = body,
	};
	snprintf(id, sizeof(id), "m-%lu", seq);
	m.len = (size_t)snprintf(body, sizeof(body), "payload %lu", seq);
	return bus_publish(b, &m, seq);
}

static const struct bus_queue q_many[] = {{.name = "bus.test.many"}};
static const struct bus_topology t_many = {NULL, 0, q_many, 1, NULL, 0};

/* Publishes n messages (pipelined confirms) and consumes them all. */
static void
run_many(const char *url, size_t n, const char *broker_to_disturb,
         const char *how)
{
	struct counter c = {0};
	struct bus_handlers h = {on_delivery, on_confirm, &c};
	struct bus *pub, *sub;
	uint64_t rt[16];
	size_t sent = 0;
	int rounds = 0;

	c.n = n;
	c.returned_tags = rt;
	c.ack_each = true;
	pub = open_bus(url, NULL, &t_many, NULL);
	CHECK(pub != NULL);
	c.seen = calloc(n, 1);
	{
		uint32_t purged;
		bus_queue_purge(pub, "bus.test.many", &purged);
	}
	sub = open_bus(url, "bus.test.many", &t_many, &c);
	CHECK(sub != NULL);
	while ((c.delivered - c.dups < n || bus_unconfirmed(pub) > 0) &&
	       rounds < 200000) {
		rounds++;
		/* keep at most 2000 unconfirmed */
		while (sent < n && bus_unconfirmed(pub) < 2000) {
			CHECK(publish_seq(pub, "", "bus.test.many", sent,
			                  false) == 0);
			sent++;
			if (broker_to_disturb != NULL && sent == n / 2) {
				if (strcmp(how, "restart") == 0)
					CHECK(testbroker_ctl(broker_to_disturb,
					                     how) == 0);
				else
					CHECK(testutil_sh(
					              NULL,
					              "'%s/scripts/broker' ctl "
					              "%s-%ld "
					              "close_all_connections "
					              "test >/dev/null 2>&1",
					              getenv("SAGA_SOURCE_DIR"),
					              broker_to_disturb,
					              (long)getpid()) == 0);
			}
		}
		bus_poll(pub, 5, &h);
		bus_poll(sub, 5, &h);
	}
	for (size_t i = 0; i < n; i++)
		CHECK_MSG(c.seen[i] >= 1, "message %zu lost", i);
	CHECK_EQ(c.acked, n);
	CHECK_EQ(bus_unconfirmed(pub), 0);
	if (broker_to_disturb == NULL)
		CHECK_EQ(c.dups, 0);
	else
		CHECK(bus_stats(pub)->reconnects >= 1 ||
		      bus_stats(sub)->reconnects >= 1);
	fprintf(stderr,
	        "     %zu messages, %zu duplicates, reconnects %llu/%llu\n", n,
	        c.dups, (unsigned long long)bus_stats(pub)->reconnects,
	        (unsigned long long)bus_stats(sub)->reconnects);
	bus_close(pub);
	bus_close(sub);
	free(c.seen);
}

static void
test_100k_no_loss_no_dup(void)
{
	const char *url = shared_url();
	CHECK(url != NULL);
	run_many(url, 100000, NULL, NULL);
}

static void
test_broker_restart_mid_run(void)
{
	char *url = testbroker_start("bus-restart");
	CHECK(url != NULL);
	run_many(url, 20000, "bus-restart", "restart");
	testbroker_ctl("bus-restart", "stop");
	free(url);
}

static void
test_forced_close_mid_run(void)
{
	char *url = testbroker_start("bus-close");
	CHECK(url != NULL);
	run_many(url, 20000, "bus-close", "close");
	testbroker_ctl("bus-close", "stop");
	free(url);
}

static void
test_unroutable_mandatory_returned(void)
{
	static const struct bus_exchange ex[] = {
	        {"bus.test.direct", "direct", NULL, NULL}};
	static const struct bus_queue q[] = {{.name = "bus.test.routed"}};
	static const struct bus_binding bd[] = {
	        {"bus.test.direct", "bus.test.routed", NULL, "yes"}};
	static const struct bus_topology t = {ex, 1, q, 1, bd, 1};
	struct counter c = {0};
	uint64_t rt[16];
	struct bus_handlers h = {on_delivery, on_confirm, &c};
	struct bus *b = open_bus(shared_url(), NULL, &t, NULL);

	c.returned_tags = rt;
	CHECK(b != NULL);
	CHECK(publish_seq(b, "bus.test.direct", "yes", 1, true) == 0);
	CHECK(publish_seq(b, "bus.test.direct", "nobody", 2, true) == 0);
	CHECK(publish_seq(b, "bus.test.direct", "yes", 3, true) == 0);
	CHECK_EQ(bus_flush(b, 10000, &h), 0);
	CHECK_EQ(c.acked, 2);
	CHECK_EQ(c.returned, 1);
	CHECK_EQ(rt[0], 2);
	bus_close(b);
}

/* A quiet bus_poll sleeps out its timeout. rabbitmq-c polls for the whole
 * milliseconds left (rounded down), so a wait under 1 ms was poll(fd, 0):
 * every bus_poll spun through its last millisecond, hundreds of empty
 * reads (a 1 ms poll loop took a whole core). */
static void
test_quiet_poll_sleeps(void)
{
	static const struct bus_queue q[] = {{.name = "bus.test.quiet"}};
	static const struct bus_topology t = {NULL, 0, q, 1, NULL, 0};
	struct counter c = {0};
	struct bus_handlers h = {on_delivery, on_confirm, &c};
	struct bus *b = open_bus(shared_url(), NULL, &t, NULL);
	uint64_t before;

	CHECK(b != NULL);
	CHECK_EQ(bus_poll(b, 50, &h), 0); /* connects */
	CHECK(bus_connected(b));
	before = bus_stats(b)->idle_reads;
	for (int i = 0; i < 20; i++)
		CHECK_EQ(bus_poll(b, i % 4 + 1, &h), 0); /* 1 to 4 ms */
	CHECK_EQ(bus_poll(b, 30, &h), 0);
	/* one empty read a poll, a second now and then (the remainder) */
	CHECK(bus_stats(b)->idle_reads - before <= 42);
	CHECK(bus_stats(b)->idle_reads - before >= 21);
	CHECK_EQ(c.delivered, 0);
	bus_close(b);
}

struct dlq_seen {
	long count;
	char error[256], queue[256], reason[64];
	int got;
};

static int
on_dlq(void *arg, const struct bus_delivery *d)
{
	struct dlq_seen *s = arg;
	s->count = d->rejected_count;
	snprintf(s->queue, sizeof(s->queue), "%s", d->death_queue);
	snprintf(s->reason, sizeof(s->reason), "%s", d->death_reason);
	snprintf(s->error, sizeof(s->error), "%s", d->error);
	s->got++;
	return 1;
}

/* Another publisher: rabbitmq-c alone, to the default exchange, with an
 * AMQP timestamp (secs > 0) and a header x-published-ms of the given
 * kind (AMQP_FIELD_KIND_VOID: none). */
static int
raw_publish(const char *url, const char *queue, int64_t secs,
            uint8_t header_kind, int64_t header_ms)
{
	char *u = strdup(url);
	struct amqp_connection_info ci;
	amqp_connection_state_t conn = amqp_new_connection();
	amqp_socket_t *sock = amqp_tcp_socket_new(conn);
	amqp_basic_properties_t p = {0};
	amqp_table_entry_t e;
	int ok = -1;

	if (u == NULL || sock == NULL || amqp_parse_url(u, &ci) != 0 ||
	    amqp_socket_open(sock, ci.host, ci.port) != 0)
		goto out;
	/* "amqp://host:port/": the empty vhost is "/", as lib/bus reads it */
	if (amqp_login(conn, ci.vhost[0] != '\0' ? ci.vhost : "/", 0, 131072, 0,
	               AMQP_SASL_METHOD_PLAIN, ci.user, ci.password)
	            .reply_type != AMQP_RESPONSE_NORMAL)
		goto close;
	amqp_channel_open(conn, 1);
	if (secs > 0) {
		p._flags |= AMQP_BASIC_TIMESTAMP_FLAG;
		p.timestamp = (uint64_t)secs;
	}
	if (header_kind != AMQP_FIELD_KIND_VOID) {
		e.key = amqp_cstring_bytes(BUS_HEADER_PUBLISHED_MS);
		e.value.kind = header_kind;
		if (header_kind == AMQP_FIELD_KIND_I64)
			e.value.value.i64 = header_ms;
		else
			e.value.value.bytes = amqp_cstring_bytes("soon");
		p._flags |= AMQP_BASIC_HEADERS_FLAG;
		p.headers = (amqp_table_t){1, &e};
	}
	p._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
	p.message_id = amqp_cstring_bytes("raw");
	if (amqp_basic_publish(conn, 1, amqp_cstring_bytes(""),
	                       amqp_cstring_bytes(queue), 0, 0, &p,
	                       amqp_cstring_bytes("x")) == AMQP_STATUS_OK)
		ok = 0;
	amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
close:
	amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
out:
	amqp_destroy_connection(conn);
	free(u);
	return ok;
}

static int
on_stamp(void *arg, const struct bus_delivery *d)
{
	*(int64_t *)arg = d->timestamp_ms;
	return 1;
}

/* The next message of queue's timestamp_ms (waits for it up to 5 s; -1
 * if none came). */
static int64_t
next_stamp(struct bus *b, const char *queue)
{
	int64_t ms = -1;
	bool got = false;
	for (int i = 0; i < 100 && !got; i++)
		if (bus_get(b, queue, on_stamp, &ms, &got) != 0 || !got)
			usleep(50 * 1000);
	return ms;
}

/* A message's publish time to the millisecond: the bus sends it in the
 * header x-published-ms beside the AMQP timestamp (whole seconds), and
 * reads it back only when the two agree; without it, the second. */
static void
test_published_ms(void)
{
	static const struct bus_queue q[] = {{.name = "bus.test.stamps"}};
	static const struct bus_topology t = {NULL, 0, q, 1, NULL, 0};
	const int64_t ms = INT64_C(1795615857123), secs = ms / 1000;
	struct counter c = {0};
	struct bus *b = open_bus(shared_url(), NULL, &t, &c);
	struct bus_handlers h = {NULL, on_confirm, &c};
	struct bus_message m = {.exchange = "",
	                        .routing_key = "bus.test.stamps",
	                        .message_id = "ts-1",
	                        .timestamp_ms = ms,
	                        .body = "x",
	                        .len = 1};
	int64_t s;
	uint32_t n = 0, cons = 0;

	CHECK(b != NULL);
	CHECK(bus_connect(b, NULL, 0) == 0);
	CHECK(bus_queue_purge(b, "bus.test.stamps", &n) == 0);
	CHECK(bus_publish(b, &m, 1) == 0);
	CHECK(bus_flush(b, 5000, &h) == 0);
	s = next_stamp(b, "bus.test.stamps");
	CHECK_EQ(s, ms);
	/* another publisher: the header when it agrees with the second */
	CHECK(raw_publish(shared_url(), "bus.test.stamps", secs,
	                  AMQP_FIELD_KIND_I64, ms) == 0);
	s = next_stamp(b, "bus.test.stamps");
	CHECK_EQ(s, ms);
	/* no header: the second's start */
	CHECK(raw_publish(shared_url(), "bus.test.stamps", secs,
	                  AMQP_FIELD_KIND_VOID, 0) == 0);
	s = next_stamp(b, "bus.test.stamps");
	CHECK_EQ(s, secs * 1000);
	/* a header that disagrees with the timestamp, or is not a number */
	CHECK(raw_publish(shared_url(), "bus.test.stamps", secs,
	                  AMQP_FIELD_KIND_I64, ms + 5000) == 0);
	s = next_stamp(b, "bus.test.stamps");
	CHECK_EQ(s, secs * 1000);
	CHECK(raw_publish(shared_url(), "bus.test.stamps", secs,
	                  AMQP_FIELD_KIND_UTF8, 0) == 0);
	s = next_stamp(b, "bus.test.stamps");
	CHECK_EQ(s, secs * 1000);
	/* a header alone is taken; nothing at all is 0 */
	CHECK(raw_publish(shared_url(), "bus.test.stamps", 0,
	                  AMQP_FIELD_KIND_I64, ms) == 0);
	s = next_stamp(b, "bus.test.stamps");
	CHECK_EQ(s, ms);
	CHECK(raw_publish(shared_url(), "bus.test.stamps", 0,
	                  AMQP_FIELD_KIND_VOID, 0) == 0);
	s = next_stamp(b, "bus.test.stamps");
	CHECK_EQ(s, 0);
	CHECK(bus_queue_info(b, "bus.test.stamps", &n, &cons) == 0);
	CHECK_EQ(n, 0);
	bus_close(b);
}

static void
reject_all(void *arg, const struct bus_delivery *d)
{
	struct counter *c = arg;
	c->delivered++;
	/* the first is rejected alone, the rest acked with `multiple` on the
	 * last one: pitfall 7, no 406 */
	if (c->delivered == 1)
		bus_reject(c->bus, d->ref, false);
	else if (c->delivered == 3)
		bus_ack(c->bus, d->ref, true);
}

static void
test_reject_reaches_dlq(void)
{
	static const struct bus_exchange ex[] = {
	        {"bus.test.dlx", "fanout", NULL, NULL}};
	static const struct bus_queue q[] = {
	        {.name = "bus.test.work", .dlx = "bus.test.dlx"},
	        {.name = "bus.test.dlq"},
	};
	static const struct bus_binding bd[] = {
	        {"bus.test.dlx", "bus.test.dlq", NULL, ""}};
	static const struct bus_topology t = {ex, 1, q, 2, bd, 1};
	struct counter c = {0};
	uint64_t rt[16];
	struct bus_handlers h = {reject_all, on_confirm, &c};
	struct bus *b = open_bus(shared_url(), "bus.test.work", &t, &c);
	struct dlq_seen s = {0};
	uint32_t msgs = 0, cons = 0;
	bool got = false;

	c.returned_tags = rt;
	CHECK(b != NULL);
	for (unsigned long i = 1; i <= 3; i++)
		CHECK(publish_seq(b, "", "bus.test.work", i, false) == 0);
	for (int i = 0; i < 200 && c.delivered < 3; i++)
		bus_poll(b, 20, &h);
	CHECK_EQ(c.delivered, 3);
	for (int i = 0; i < 50; i++) {
		bus_poll(b, 20, &h);
		if (bus_queue_info(b, "bus.test.dlq", &msgs, &cons) == 0 &&
		    msgs == 1)
			break;
	}
	CHECK(bus_connected(b)); /* no 406 from the multiple ack */
	CHECK_EQ(msgs, 1);
	CHECK(bus_get(b, "bus.test.dlq", on_dlq, &s, &got) == 0);
	CHECK(got);
	CHECK_EQ(s.count, 0); /* counted for bus.test.work, not the DLQ */
	CHECK_STR(s.queue, "bus.test.work");
	CHECK_STR(s.reason, "rejected");
	CHECK(bus_queue_info(b, "bus.test.work", &msgs, &cons) == 0);
	CHECK_EQ(msgs, 0);
	bus_close(b);
}

static void
test_missing_exchange_republished(void)
{
	static char xname[64], qname[64];
	static struct bus_exchange ex[] = {{xname, "fanout", NULL, NULL}};
	static struct bus_queue q[] = {{.name = qname}};
	static struct bus_binding bd[] = {{xname, qname, NULL, ""}};
	static const struct bus_topology later = {ex, 1, q, 1, bd, 1};
	struct counter c = {0};
	uint64_t rt[16];
	struct bus_handlers h = {on_delivery, on_confirm, &c};
	struct bus *b = open_bus(shared_url(), NULL, NULL, NULL);
	struct bus *admin;

	c.returned_tags = rt;
	CHECK(b != NULL);
	/* a fresh name: the exchange does not exist yet, 404 closes the
	 * channel */
	snprintf(xname, sizeof(xname), "bus.test.late.%ld", (long)getpid());
	snprintf(qname, sizeof(qname), "bus.test.lateq.%ld", (long)getpid());
	CHECK(publish_seq(b, xname, "", 7, false) == 0);
	for (int i = 0; i < 20; i++)
		bus_poll(b, 20, &h);
	CHECK(bus_stats(b)->reconnects >= 1);
	CHECK_EQ(bus_unconfirmed(b), 1);
	/* someone declares it: the kept message goes out and is confirmed */
	admin = open_bus(shared_url(), NULL, &later, NULL);
	CHECK(admin != NULL);
	CHECK_EQ(bus_flush(b, 20000, &h), 0);
	CHECK_EQ(c.acked, 1);
	{
		uint32_t msgs = 0, cons = 0;
		CHECK(bus_queue_info(admin, qname, &msgs, &cons) == 0);
		CHECK_EQ(msgs, 1);
		bus_queue_purge(admin, qname, &msgs);
	}
	bus_close(admin);
	bus_close(b);
}

/* A queue that refuses (x-overflow reject-publish, full): the broker
 * nacks. The bus keeps the message and publishes it again after a
 * backoff, never in a busy loop; a run of nacks reopens the connection;
 * once the queue has room the message is confirmed, once. */
static void
test_nacked_resent_with_backoff(void)
{
	static char qname[64];
	static struct bus_queue q[] = {
	        {.name = qname, .max_length = 1, .overflow = "reject-publish"}};
	static const struct bus_topology t = {NULL, 0, q, 1, NULL, 0};
	struct counter c = {0};
	uint64_t rt[16];
	struct bus_handlers h = {on_delivery, on_confirm, &c};
	struct bus *b;
	uint32_t msgs = 0, cons = 0, n = 0;

	snprintf(qname, sizeof(qname), "bus.test.full.%ld", (long)getpid());
	b = open_bus(shared_url(), NULL, &t, NULL);
	c.returned_tags = rt;
	CHECK(b != NULL);
	CHECK(publish_seq(b, "", qname, 1, false) == 0);
	CHECK_EQ(bus_flush(b, 10000, &h), 0);
	CHECK(publish_seq(b, "", qname, 2, false) == 0);
	for (int i = 0; i < 150; i++) /* 3 s */
		bus_poll(b, 20, &h);
	/* kept, refused a handful of times, not thousands */
	CHECK_EQ(bus_unconfirmed(b), 1);
	CHECK_MSG(bus_stats(b)->nacked >= 2 && bus_stats(b)->nacked <= 12,
	          "%llu nacks in 3 s",
	          (unsigned long long)bus_stats(b)->nacked);
	CHECK_MSG(bus_stats(b)->reconnects >= 1,
	          "five nacks running did not reopen the connection");
	/* room again: it goes through, and only once */
	for (int i = 0; i < 100 && !bus_connected(b); i++)
		bus_poll(b, 20, &h);
	CHECK(bus_queue_purge(b, qname, &n) == 0);
	CHECK_EQ(bus_flush(b, 10000, &h), 0);
	CHECK_EQ(c.acked, 2);
	CHECK(bus_queue_info(b, qname, &msgs, &cons) == 0);
	CHECK_EQ(msgs, 1);
	bus_queue_delete(b, qname, false);
	bus_close(b);
}

static void
requeue_all(void *arg, const struct bus_delivery *d)
{
	struct counter *c = arg;
	c->delivered++;
	bus_reject(c->bus, d->ref, true); /* as if the consumer crashed */
}

/* Connects with one queue; 0 or -1 (err) as bus_connect. */
static int
connect_with(struct bus_queue *q, size_t n, char *err, size_t errlen)
{
	struct bus_topology t = {NULL, 0, q, n, NULL, 0};
	struct bus_config cfg = {
	        .url = shared_url(), .name = "test-if-exists", .topology = &t};
	struct bus *b = bus_open(&cfg, err, errlen);
	int rc;

	if (b == NULL)
		return -1;
	rc = bus_connect(b, err, errlen);
	bus_close(b);
	return rc;
}

/* passive + if_exists (order-api's view of the audit stream): a queue
 * that does not exist is skipped and the topology goes on (the queue
 * after it is declared); plain passive refuses it; once it exists, it
 * is declared as it is. */
static void
test_passive_if_exists(void)
{
	char maybe[64], after[64], err[512];
	struct bus_queue q[2] = {
	        {.name = maybe, .passive = true, .if_exists = true},
	        {.name = after}};

	snprintf(maybe, sizeof(maybe), "bus.test.maybe.%ld", (long)getpid());
	snprintf(after, sizeof(after), "bus.test.after.%ld", (long)getpid());
	CHECK_MSG(connect_with(q, 2, err, sizeof(err)) == 0, "%s", err);
	q[1].passive = true; /* it was declared: it exists now */
	CHECK_MSG(connect_with(&q[1], 1, err, sizeof(err)) == 0, "%s", err);
	q[0].if_exists = false;
	CHECK(connect_with(q, 1, err, sizeof(err)) == -1);
	CHECK_MSG(strstr(err, "404") != NULL || strstr(err, "no queue") != NULL,
	          "%s", err);
	q[0].passive = false; /* make it */
	CHECK_MSG(connect_with(q, 1, err, sizeof(err)) == 0, "%s", err);
	q[0].passive = true;
	q[0].if_exists = true;
	CHECK_MSG(connect_with(q, 2, err, sizeof(err)) == 0, "%s", err);
	{
		struct bus_topology t = {NULL, 0, q, 2, NULL, 0};
		struct bus_config cfg = {.url = shared_url(),
		                         .name = "test-if-exists",
		                         .topology = &t};
		struct bus *b = bus_open(&cfg, err, sizeof(err));
		CHECK(b != NULL && bus_connect(b, err, sizeof(err)) == 0);
		if (b != NULL) {
			bus_queue_delete(b, maybe, false);
			bus_queue_delete(b, after, false);
			bus_close(b);
		}
	}
}

/* queue_type quorum: every queue of the topology a quorum queue; one
 * with a dead-letter exchange gets the delivery limit, so a message that
 * keeps coming back is dead-lettered (reason delivery_limit) instead of
 * looping forever. */
static void
test_quorum_delivery_limit(void)
{
	static char qname[64], dlq[80];
	static struct bus_queue q[] = {{.name = qname, .dlx = "", .dlrk = dlq},
	                               {.name = dlq}};
	static const struct bus_topology t = {NULL, 0, q, 2, NULL, 0};
	const char *consume[1] = {qname};
	struct bus_config cfg = {.url = shared_url(),
	                         .name = "test-quorum",
	                         .topology = &t,
	                         .consume = consume,
	                         .nconsume = 1,
	                         .queue_type = "quorum",
	                         .delivery_limit = 2};
	struct counter c = {0};
	uint64_t rt[16];
	struct bus_handlers h = {requeue_all, on_confirm, &c};
	struct dlq_seen seen = {0};
	char err[512];
	bool got = false;
	struct bus *b;

	snprintf(qname, sizeof(qname), "bus.test.poison.%ld", (long)getpid());
	snprintf(dlq, sizeof(dlq), "%s.dlq", qname);
	cfg.queue_type = "bogus";
	CHECK(bus_open(&cfg, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "classic or quorum") != NULL);
	cfg.queue_type = "quorum";
	b = bus_open(&cfg, err, sizeof(err));
	CHECK_MSG(b != NULL && bus_connect(b, err, sizeof(err)) == 0, "%s",
	          err);
	c.bus = b;
	c.returned_tags = rt;
	CHECK(publish_seq(b, "", qname, 1, false) == 0);
	for (int i = 0; i < 200 && !got; i++) {
		bus_poll(b, 20, &h);
		if (i % 10 == 9 && bus_get(b, dlq, on_dlq, &seen, &got) != 0)
			got = false;
	}
	CHECK_MSG(got, "not dead-lettered after %zu deliveries", c.delivered);
	CHECK_EQ(c.delivered, 3); /* the first and two redeliveries */
	CHECK_STR(seen.queue, qname);
	CHECK_STR(seen.reason, "delivery_limit");
	bus_queue_delete(b, qname, false);
	bus_queue_delete(b, dlq, false);
	bus_close(b);
}

static void
test_tls(void)
{
	char *url = testbroker_start_args("bus-tls", "--tls"), *urls = NULL;
	char *amqps, ca[512], other[512], ipurl[600], err[512];
	struct bus_config cfg = {.name = "tls", .heartbeat_s = 5};
	struct bus *b;
	const char *base = getenv("SAGA_BROKER_BASE")
	                           ? getenv("SAGA_BROKER_BASE")
	                           : "/tmp/saga-brokers";

	CHECK(url != NULL);
	CHECK(testutil_sh(&urls, "'%s/scripts/broker' url bus-tls-%ld",
	                  getenv("SAGA_SOURCE_DIR"), (long)getpid()) == 0);
	amqps = strstr(urls, "amqps://");
	CHECK(amqps != NULL);
	*strchr(amqps, '\n') = '\0';
	snprintf(ca, sizeof(ca), "%s/bus-tls-%ld/tls/ca.pem", base,
	         (long)getpid());
	snprintf(other, sizeof(other), "%s/bus-tls-%ld/tls/other-ca.pem", base,
	         (long)getpid());

	cfg.url = amqps;
	cfg.ca_file = ca;
	b = bus_open(&cfg, err, sizeof(err));
	CHECK(b != NULL);
	CHECK_MSG(bus_connect(b, err, sizeof(err)) == 0, "%s", err);
	bus_close(b);

	cfg.ca_file = other; /* a CA that signed nothing here */
	b = bus_open(&cfg, err, sizeof(err));
	CHECK(b != NULL);
	CHECK(bus_connect(b, err, sizeof(err)) != 0);
	bus_close(b);

	/* by IP: the certificate names "localhost" only */
	snprintf(ipurl, sizeof(ipurl), "%s", amqps);
	{
		char *h = strstr(ipurl, "localhost");
		CHECK(h != NULL);
		memmove(h + 9, h + 9, strlen(h + 9) + 1);
		memcpy(h, "127.0.0.1", 9);
	}
	cfg.url = ipurl;
	cfg.ca_file = ca;
	b = bus_open(&cfg, err, sizeof(err));
	CHECK(b != NULL);
	CHECK(bus_connect(b, err, sizeof(err)) != 0);
	bus_close(b);

	/* amqps without a CA is a configuration error */
	cfg.url = amqps;
	cfg.ca_file = NULL;
	CHECK(bus_open(&cfg, err, sizeof(err)) == NULL);
	CHECK_MSG(strstr(err, "CA") != NULL, "%s", err);
	testbroker_ctl("bus-tls", "stop");
	free(urls);
	free(url);
}

static void
test_unreachable_broker(void)
{
	struct bus_config cfg = {.url = "amqp://u:secret@127.0.0.1:1/",
	                         .name = "nowhere",
	                         .connect_timeout_ms = 500};
	char err[512];
	struct bus *b = bus_open(&cfg, err, sizeof(err));
	CHECK(b != NULL);
	CHECK(bus_connect(b, err, sizeof(err)) != 0);
	CHECK_MSG(strstr(err, "127.0.0.1:1") != NULL, "%s", err);
	CHECK_MSG(strstr(err, "secret") == NULL, "password in error: %s", err);
	CHECK(!bus_connected(b));
	bus_close(b);
}

int
main(void)
{
	log_init("test_bus", LOG_WARN);
	RUN(test_unreachable_broker);
	RUN(test_unroutable_mandatory_returned);
	RUN(test_quiet_poll_sleeps);
	RUN(test_reject_reaches_dlq);
	RUN(test_published_ms);
	RUN(test_missing_exchange_republished);
	RUN(test_nacked_resent_with_backoff);
	RUN(test_quorum_delivery_limit);
	RUN(test_100k_no_loss_no_dup);
	RUN(test_broker_restart_mid_run);
	RUN(test_forced_close_mid_run);
	RUN(test_tls);
	RUN(test_passive_if_exists);
	if (own_url != NULL) {
		testbroker_ctl("bus-shared", "stop");
		free(own_url);
	}
	return check_summary();
}

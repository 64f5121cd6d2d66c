/* test_held -- lib/held: a delivery's properties and body are copied
 * (the bus reuses its buffers), "" stands for what it did not carry, the
 * queue can be replaced (a shared stream's copies go to its home queue),
 * a dropped copy leaves the others findable, and a held delivery becomes
 * its copy's message with its own properties, or a bundle's item (or a
 * delivery without a message id) with its envelope's. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "held.h"

static struct bus_delivery
delivery(uint64_t ref, char *body)
{
	struct bus_delivery d;

	memset(&d, 0, sizeof(d));
	d.ref = ref;
	d.queue = "inventory.commands";
	d.message_id = "m-1";
	d.type = "inventory.reserve";
	d.traceparent =
	        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
	d.content_type = "application/msgpack";
	d.timestamp_ms = 1700000000123;
	d.stream_offset = -1;
	d.body = body;
	d.len = strlen(body);
	return d;
}

static void
test_copies_what_the_bus_lends(void)
{
	struct held_set s = {0};
	char body[] = "\x82\xa1v\x01";
	struct bus_delivery d = delivery(7, body);
	struct held *h = held_add(&s, &d, NULL);

	CHECK(h != NULL);
	memset(body, 'x', sizeof(body) - 1); /* the bus reuses its buffer */
	h = held_find(&s, 7);
	CHECK(h != NULL);
	CHECK_EQ((int)h->len, 4);
	CHECK(memcmp(h->body, "\x82\xa1v\x01", 4) == 0);
	CHECK_STR(h->queue, "inventory.commands");
	CHECK_STR(h->message_id, "m-1");
	CHECK_STR(h->correlation_id, ""); /* NULL in the delivery */
	CHECK_STR(h->reply_to, "");
	CHECK_STR(h->content_type, "application/msgpack");
	CHECK_EQ(h->timestamp_ms, 1700000000123);
	CHECK_EQ(h->offset, -1);
	CHECK_EQ(h->attempt, 0);
	CHECK(!h->item && !h->copying);
	held_clear(&s);
	CHECK(s.n == 0 && s.v == NULL);
}

static void
test_queue_replaced(void)
{
	struct held_set s = {0};
	char body[] = "b";
	struct bus_delivery d = delivery(1, body);

	d.queue = "notification.events";
	d.stream_offset = 42;
	CHECK(held_add(&s, &d, "notification.commands") != NULL);
	CHECK_STR(held_find(&s, 1)->queue, "notification.commands");
	CHECK_EQ(held_find(&s, 1)->offset, 42);
	held_clear(&s);
}

/* 600 held (past the first array's 256), every third dropped: the others
 * are still found with their own bodies, the dropped ones are not. */
static void
test_drop_keeps_the_rest(void)
{
	struct held_set s = {0};
	char body[32];

	for (uint64_t r = 1; r <= 600; r++) {
		struct bus_delivery d;
		snprintf(body, sizeof(body), "body-%llu",
		         (unsigned long long)r);
		d = delivery(r, body);
		CHECK(held_add(&s, &d, NULL) != NULL);
	}
	for (uint64_t r = 3; r <= 600; r += 3)
		held_drop(&s, r);
	held_drop(&s, 9999); /* not held: nothing */
	CHECK_EQ((int)s.n, 400);
	for (uint64_t r = 1; r <= 600; r++) {
		struct held *h = held_find(&s, r);
		if (r % 3 == 0) {
			CHECK(h == NULL);
			continue;
		}
		snprintf(body, sizeof(body), "body-%llu",
		         (unsigned long long)r);
		CHECK(h != NULL && h->len == strlen(body) &&
		      memcmp(h->body, body, h->len) == 0);
	}
	held_clear(&s);
}

/* A whole delivery: its own properties, its body, its AMQP timestamp; the
 * body is not read (it need not be an envelope). */
static void
test_message_of_a_delivery(void)
{
	struct held_set s = {0};
	char body[] = "not an envelope";
	struct bus_delivery d = delivery(5, body);
	struct bus_message m;
	struct envelope e;

	d.correlation_id = "order-9";
	d.reply_to = "sagactl.answers";
	CHECK(held_add(&s, &d, NULL) != NULL);
	held_message(held_find(&s, 5), &e, &m);
	CHECK_STR(m.message_id, "m-1");
	CHECK_STR(m.correlation_id, "order-9");
	CHECK_STR(m.type, "inventory.reserve");
	CHECK_STR(m.reply_to, "sagactl.answers");
	CHECK_STR(m.content_type, "application/msgpack");
	CHECK(m.traceparent != NULL && m.exchange == NULL && m.error == NULL);
	CHECK_EQ(m.timestamp_ms, 1700000000123);
	CHECK(m.len == strlen(body) && memcmp(m.body, body, m.len) == 0);
	envelope_clear(&e);
	held_clear(&s);
}

/* A delivery without a message id whose body is an envelope of step
 * "reserve", encoded into *buf (the caller frees it). */
static struct bus_delivery
enveloped(uint64_t ref, const char *id, const char *saga, const char *type,
          int64_t ts, char **buf)
{
	static char none[] = "";
	struct envelope src;
	struct bus_delivery d;
	size_t len = 0;

	envelope_init(&src);
	snprintf(src.id, sizeof(src.id), "%s", id);
	snprintf(src.saga, sizeof(src.saga), "%s", saga);
	snprintf(src.type, sizeof(src.type), "%s", type);
	snprintf(src.step, sizeof(src.step), "reserve");
	src.ts = ts;
	*buf = NULL;
	if (envelope_encode(&src, buf, &len) != 0)
		len = 0; /* the caller's CHECK of d.len fails */
	envelope_clear(&src);
	d = delivery(ref, none);
	d.message_id = NULL;
	d.body = *buf;
	d.len = len;
	return d;
}

/* A bundle's item carries no properties: its envelope's id, saga, type
 * and time stand in; one that cannot be decoded is "unknown". */
static void
test_message_of_an_item(void)
{
	struct held_set s = {0};
	struct envelope e;
	struct bus_message m;
	char *buf;
	struct bus_delivery d =
	        enveloped(BUNDLER_ITEM | 1, "reply-1", "order-7",
	                  "inventory.reserved", 1700000000999, &buf);
	struct held *h;

	CHECK(d.len > 0);
	d.type = d.content_type = NULL;
	h = held_add(&s, &d, NULL);
	CHECK(h != NULL);
	h->item = true;
	held_message(h, &e, &m);
	CHECK_STR(m.message_id, "reply-1");
	CHECK_STR(m.correlation_id, "order-7");
	CHECK_STR(m.type, "inventory.reserved");
	CHECK(m.content_type == NULL && m.reply_to == NULL);
	CHECK_EQ(m.timestamp_ms, 1700000000999);
	envelope_clear(&e);

	d.ref = BUNDLER_ITEM | 2;
	d.body = "\xc1"; /* never valid msgpack */
	d.len = 1;
	CHECK((h = held_add(&s, &d, NULL)) != NULL);
	h->item = true;
	held_message(h, &e, &m);
	CHECK_STR(m.message_id, "unknown");
	CHECK(m.correlation_id == NULL && m.type == NULL);
	CHECK_EQ(m.timestamp_ms, 1700000000123);
	envelope_clear(&e);
	free(buf);
	held_clear(&s);
}

/* A whole delivery that came without a message id (any client may send
 * one): its envelope's id and time stand in, its own properties stay. */
static void
test_message_without_an_id(void)
{
	struct held_set s = {0};
	struct envelope e;
	struct bus_message m;
	char *buf;
	struct bus_delivery d =
	        enveloped(9, "cmd-3", "order-3", "inventory.reserve",
	                  1700000000555, &buf);

	CHECK(d.len > 0);
	d.reply_to = "orchestrator";
	CHECK(held_add(&s, &d, NULL) != NULL);
	held_message(held_find(&s, 9), &e, &m);
	CHECK_STR(m.message_id, "cmd-3");
	CHECK_STR(m.correlation_id, "order-3");
	CHECK_STR(m.type, "inventory.reserve");
	CHECK_STR(m.reply_to, "orchestrator");
	CHECK_STR(m.content_type, "application/msgpack");
	CHECK_EQ(m.timestamp_ms, 1700000000555);
	CHECK(m.len == d.len && memcmp(m.body, buf, d.len) == 0);
	envelope_clear(&e);
	free(buf);
	held_clear(&s);
}

int
main(void)
{
	RUN(test_copies_what_the_bus_lends);
	RUN(test_queue_replaced);
	RUN(test_drop_keeps_the_rest);
	RUN(test_message_of_a_delivery);
	RUN(test_message_of_an_item);
	RUN(test_message_without_an_id);
	return check_summary();
}

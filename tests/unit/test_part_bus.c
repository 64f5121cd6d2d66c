/* test_part_bus -- how a participant settles a delivery it cannot take
 * (participants/common/part_bus.c) when the copy that settles it cannot
 * be published for want of memory: a dead letter's copy to Q.dlq, and a
 * stream delivery's retry copy to its home queue's .retry. The original
 * is neither acked nor rejected until a copy is confirmed, the copy is
 * made again at the next poll with the reason it was first given, and a
 * stream's stored position does not pass the delivery meanwhile. A copy
 * that comes back unroutable (its queue deleted) is made again after the
 * retry delay, the original unsettled meanwhile. A copy the bus can
 * never take is acked at once, and not tried again.
 *
 * The bus is replaced at link time (-Wl,--wrap, tests/CMakeLists.txt):
 * an allocation failure inside bus_publish cannot be caused on purpose
 * through a real connection. Everything above it -- part_bus, busloop,
 * the held copies and the durable loop -- is the daemons' code. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "envelope.h"
#include "held.h"
#include "log.h"
#include "part_bus.h"
#include "testloop.h"

/* ---- the bus, wrapped ---- */

#define MAX 16

static struct {
	struct bus_delivery next[MAX]; /* handed over at the next poll */
	size_t nnext;
	uint64_t sent[MAX]; /* tags bus_publish took, in order */
	char sent_rk[MAX][64], sent_error[MAX][64];
	size_t nsent, nconfirmed;
	bool confirm;  /* polls confirm what was sent ... */
	bool returned; /* ... as unroutable */
	bool sent_mandatory[MAX];
	int fail_times; /* bus_publish fails this many times */
	int tries;
	bool never_fits;
	uint64_t acked[MAX];
	size_t nacked, nrejected;
} bus;

static char fake_bus; /* what bus_open returns: never dereferenced */

struct bus *__wrap_bus_open(const struct bus_config *cfg, char *err,
                            size_t errlen);
int __wrap_bus_poll(struct bus *b, int timeout_ms,
                    const struct bus_handlers *h);
int __wrap_bus_publish(struct bus *b, const struct bus_message *m,
                       uint64_t tag);
bool __wrap_bus_message_fits(const struct bus *b, const struct bus_message *m);
int __wrap_bus_ack(struct bus *b, uint64_t ref, bool multiple);
int __wrap_bus_reject(struct bus *b, uint64_t ref, bool requeue);
bool __wrap_bus_connected(const struct bus *b);
void __wrap_bus_close(struct bus *b);

struct bus *
__wrap_bus_open(const struct bus_config *cfg, char *err, size_t errlen)
{
	(void)cfg, (void)err, (void)errlen;
	return (struct bus *)&fake_bus;
}

int
__wrap_bus_poll(struct bus *b, int timeout_ms, const struct bus_handlers *h)
{
	int n = 0;

	(void)b, (void)timeout_ms;
	for (size_t i = 0; i < bus.nnext; i++, n++)
		h->on_delivery(h->arg, &bus.next[i]);
	bus.nnext = 0;
	for (; bus.confirm && bus.nconfirmed < bus.nsent; n++)
		h->on_confirm(h->arg, bus.sent[bus.nconfirmed++],
		              bus.returned ? BUS_RETURNED : BUS_ACK);
	return n;
}

int
__wrap_bus_publish(struct bus *b, const struct bus_message *m, uint64_t tag)
{
	(void)b;
	bus.tries++;
	if (bus.never_fits || bus.fail_times > 0) {
		bus.fail_times -= bus.fail_times > 0;
		return -1;
	}
	if (bus.nsent < MAX) {
		snprintf(bus.sent_rk[bus.nsent], sizeof(bus.sent_rk[0]), "%s",
		         m->routing_key);
		snprintf(bus.sent_error[bus.nsent], sizeof(bus.sent_error[0]),
		         "%s", m->error != NULL ? m->error : "");
		bus.sent_mandatory[bus.nsent] = m->mandatory;
		bus.sent[bus.nsent++] = tag;
	}
	return 0;
}

bool
__wrap_bus_message_fits(const struct bus *b, const struct bus_message *m)
{
	(void)b, (void)m;
	return !bus.never_fits;
}

int
__wrap_bus_ack(struct bus *b, uint64_t ref, bool multiple)
{
	(void)b, (void)multiple;
	if (bus.nacked < MAX)
		bus.acked[bus.nacked++] = ref;
	return 0;
}

int
__wrap_bus_reject(struct bus *b, uint64_t ref, bool requeue)
{
	(void)b, (void)ref, (void)requeue;
	bus.nrejected++; /* none is: each case checks the count */
	return 0;
}

bool
__wrap_bus_connected(const struct bus *b)
{
	(void)b;
	return true;
}

void
__wrap_bus_close(struct bus *b)
{
	(void)b;
}

/* ---- a participant in memory: its verdict, its stored position ---- */

static enum durable_verdict verdict;
static int64_t position = -1; /* the last one stored with a batch */

static int
h_apply(void *ctx, const struct durable_item *it, struct durable_time now,
        enum durable_verdict *v, char *why, size_t whylen)
{
	(void)ctx, (void)now;
	*v = strcmp(it->env->type, "inventory.ok") == 0 ? DURABLE_DONE
	                                                : verdict;
	snprintf(why, whylen, "no such sku");
	return 0;
}

static int
h_position(void *ctx, int64_t next)
{
	(void)ctx;
	position = next;
	return 0;
}

static const char *const inventory_queues[] = {"inventory"};
static const char *const notification_queues[] = {"notification"};

struct world {
	struct part_config cfg;
	struct part_bus *pb;
	struct durable *d;
	char body[MAX][256], id[MAX][32];
	size_t nbody;
};

/* A participant reading queue "inventory", or with stream true the
 * stream "audit" as well, whose copies go to "notification". */
static int
world_open(struct world *w, bool stream)
{
	struct durable_transport t;
	struct durable_handler h;
	struct durable_config dc = {.batch_max = 10};
	char err[256];

	testloop_handler(&h); /* an empty outbox */
	h.apply = h_apply;
	h.position = stream ? h_position : NULL;

	memset(&bus, 0, sizeof(bus));
	memset(w, 0, sizeof(*w));
	position = -1;
	verdict = DURABLE_REJECT;
	w->cfg.name = "test";
	w->cfg.url = "amqp://localhost";
	w->cfg.queues = stream ? notification_queues : inventory_queues;
	w->cfg.nqueues = 1;
	w->cfg.retry_ms = 200; /* an unroutable copy is made again after it */
	w->cfg.stream = stream ? "audit" : NULL;
	w->cfg.stream_home = stream ? "notification" : NULL;
	w->pb = part_bus_new(&w->cfg, &t, err, sizeof(err));
	if (w->pb == NULL || part_bus_open(w->pb, err, sizeof(err)) != 0)
		return -1;
	w->d = durable_new(&t, &h, &dc);
	if (w->d == NULL)
		return -1;
	part_bus_attach(w->pb, w->d);
	return 0;
}

static void
world_close(struct world *w)
{
	durable_free(w->d);
	part_bus_free(w->pb);
}

/* A delivery of `type` from queue (ref; offset -1 if not a stream's),
 * handed over at the next poll. */
static void
deliver(struct world *w, const char *queue, uint64_t ref, int64_t offset,
        const char *type)
{
	struct envelope e;
	char *buf = NULL;
	size_t len = 0, k = w->nbody++;
	struct bus_delivery *d = &bus.next[bus.nnext++];

	envelope_init(&e);
	snprintf(e.id, sizeof(e.id), "m-%llu", (unsigned long long)ref);
	snprintf(w->id[k], sizeof(w->id[0]), "%s", e.id);
	snprintf(e.saga, sizeof(e.saga), "order-1");
	snprintf(e.type, sizeof(e.type), "%s", type);
	if (envelope_encode(&e, &buf, &len) == 0 && len <= sizeof(w->body[0]))
		memcpy(w->body[k], buf, len);
	free(buf);
	envelope_clear(&e);
	*d = (struct bus_delivery){
	        .ref = ref,
	        .queue = queue,
	        .exchange = "",
	        .routing_key = queue,
	        .message_id = w->id[k],
	        .correlation_id = "order-1",
	        .type = type,
	        .reply_to = "",
	        .content_type = "application/msgpack",
	        .traceparent = "",
	        .error = "",
	        .user_id = "",
	        .death_queue = "",
	        .death_reason = "",
	        .stream_offset = offset,
	        .body = w->body[k],
	        .len = len,
	};
}

static int
turns(struct world *w, int n)
{
	for (int i = 0; i < n; i++)
		if (durable_turn(w->d, durable_now()) != 0)
			return -1;
	return 0;
}

static bool
acked(uint64_t ref)
{
	for (size_t i = 0; i < bus.nacked; i++)
		if (bus.acked[i] == ref)
			return true;
	return false;
}

/* ---- the cases ---- */

static void
test_a_dead_letter_not_copied_is_copied_again(void)
{
	struct world w;

	CHECK_EQ(world_open(&w, false), 0);
	deliver(&w, "inventory", 5, -1, "inventory.reserve");
	bus.fail_times = 2; /* the copy fails twice */
	CHECK_EQ(turns(&w, 2), 0);
	CHECK_EQ(bus.tries, 2);
	CHECK_EQ(bus.nsent, 0);
	CHECK(!acked(5)); /* neither acked nor rejected: kept */
	CHECK_EQ(bus.nrejected, 0);
	CHECK_EQ(turns(&w, 1), 0); /* memory is back */
	CHECK_EQ(bus.nsent, 1);
	CHECK_EQ(bus.sent[0], 5 | HELD_COPY_TAG);
	CHECK_STR(bus.sent_rk[0], "inventory.dlq");
	CHECK_STR(bus.sent_error[0], "no such sku"); /* the first reason */
	CHECK(!acked(5));
	bus.confirm = true; /* the copy is safe: now the original goes */
	CHECK_EQ(turns(&w, 1), 0);
	CHECK(acked(5));
	CHECK_EQ(bus.nrejected, 0);
	CHECK_EQ(turns(&w, 2), 0);
	CHECK_EQ(bus.nsent, 1); /* made once */
	world_close(&w);
}

/* A stream's delivery sent to retry, whose copy cannot be made: a later
 * batch must not store a position past it, or a restart would skip it. */
static void
test_a_stream_delivery_not_copied_holds_the_position(void)
{
	struct world w;

	CHECK_EQ(world_open(&w, true), 0);
	verdict = DURABLE_RETRY;
	bus.fail_times = 1000;
	deliver(&w, "audit", 1, 7, "order.created");
	CHECK_EQ(turns(&w, 1), 0);
	CHECK_EQ(position, 7);
	deliver(&w, "audit", 2, 8, "inventory.ok");
	CHECK_EQ(turns(&w, 2), 0);
	CHECK(acked(2));
	CHECK_EQ(position, 7); /* not 9 */
	CHECK(!acked(1));
	CHECK_EQ(bus.nsent, 0);
	bus.fail_times = 0;
	bus.confirm = true;
	CHECK_EQ(turns(&w, 2), 0);
	CHECK_EQ(bus.nsent, 1);
	CHECK_STR(bus.sent_rk[0], "notification.retry");
	CHECK(acked(1));
	deliver(&w, "audit", 3, 9, "inventory.ok");
	CHECK_EQ(turns(&w, 2), 0);
	CHECK_EQ(position, 10);
	world_close(&w);
}

/* A copy that comes back unroutable (someone deleted Q.dlq): the
 * original is neither acked nor rejected, and the copy is made again
 * after the retry delay, with its reason. */
static void
test_an_unroutable_copy_is_made_again(void)
{
	struct world w;

	CHECK_EQ(world_open(&w, false), 0);
	bus.confirm = bus.returned = true;
	deliver(&w, "inventory", 5, -1, "inventory.reserve");
	CHECK_EQ(turns(&w, 2), 0);
	CHECK_EQ(bus.nsent, 1);
	CHECK(bus.sent_mandatory[0]); /* else the broker drops it unsaid */
	CHECK_EQ(bus.nconfirmed, 1);
	CHECK(!acked(5));
	CHECK_EQ(bus.nrejected, 0);
	CHECK_EQ(turns(&w, 2), 0); /* not before the retry delay */
	CHECK_EQ(bus.nsent, 1);
	bus.returned = false; /* the queue is back */
	usleep(250 * 1000);
	CHECK_EQ(turns(&w, 2), 0);
	CHECK_EQ(bus.nsent, 2);
	CHECK_STR(bus.sent_rk[1], "inventory.dlq");
	CHECK_STR(bus.sent_error[1], "no such sku");
	CHECK(acked(5));
	world_close(&w);
}

/* A copy the bus can never take is acked at once, and not tried again. */
static void
test_a_copy_that_can_never_be_made_is_acked(void)
{
	struct world w;

	CHECK_EQ(world_open(&w, false), 0);
	bus.never_fits = true;
	deliver(&w, "inventory", 5, -1, "inventory.reserve");
	CHECK_EQ(turns(&w, 1), 0);
	CHECK(acked(5));
	CHECK_EQ(bus.tries, 1);
	CHECK_EQ(turns(&w, 3), 0);
	CHECK_EQ(bus.tries, 1);
	world_close(&w);
}

int
main(void)
{
	log_init("test_part_bus", LOG_ERROR);
	RUN(test_a_dead_letter_not_copied_is_copied_again);
	RUN(test_a_stream_delivery_not_copied_holds_the_position);
	RUN(test_an_unroutable_copy_is_made_again);
	RUN(test_a_copy_that_can_never_be_made_is_acked);
	return check_summary();
}

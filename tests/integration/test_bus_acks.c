/* The bus's coalesced acks against a private RabbitMQ: bus_ack only notes
 * a tag and the bus sends `ack multiple` for the run of settled tags, so
 * these check that a multiple ack never covers a delivery the caller has
 * not settled: deliveries acked out of order around two left unacked and
 * one rejected, then the consumer closes: exactly the two unacked come
 * back. And bus_ack(multiple) over a gap left by a reject acks the rest,
 * with no 406 (the channel stays up). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "log.h"
#include "testutil.h"

#define N 60

static char *own_url;

static const char *
url(void)
{
	if (testutil_amqp_url() != NULL)
		return testutil_amqp_url();
	if (own_url == NULL)
		own_url = testbroker_start("bus-acks");
	return own_url;
}

struct seen {
	uint64_t ref[N];
	int got[N];
	size_t n;
};

static void
on_delivery(void *arg, const struct bus_delivery *d)
{
	struct seen *s = arg;
	int i;
	if (sscanf(d->message_id, "a-%d", &i) == 1 && i >= 0 && i < N) {
		s->ref[i] = d->ref;
		s->got[i]++;
	}
	s->n++;
}

static struct bus *
open_bus(const char *queue)
{
	static const struct bus_queue q[] = {{.name = "bus.test.acks"}};
	static const struct bus_topology t = {NULL, 0, q, 1, NULL, 0};
	const char *consume[1] = {queue};
	struct bus_config cfg = {.url = url(),
	                         .name = "test-acks",
	                         .prefetch = 500,
	                         .topology = &t,
	                         .consume = queue != NULL ? consume : NULL,
	                         .nconsume = queue != NULL ? 1 : 0};
	char err[512];
	struct bus *b = bus_open(&cfg, err, sizeof(err));
	if (b != NULL && bus_connect(b, err, sizeof(err)) != 0) {
		fprintf(stderr, "bus_connect: %s\n", err);
		bus_close(b);
		return NULL;
	}
	return b;
}

static int
fill(void)
{
	struct bus *b = open_bus(NULL);
	uint32_t purged;
	int rc = 0;

	if (b == NULL)
		return -1;
	bus_queue_purge(b, "bus.test.acks", &purged);
	for (int i = 0; i < N && rc == 0; i++) {
		char id[32];
		struct bus_message m = {.exchange = "",
		                        .routing_key = "bus.test.acks",
		                        .message_id = id,
		                        .body = "x",
		                        .len = 1};
		snprintf(id, sizeof(id), "a-%d", i);
		rc = bus_publish(b, &m, (uint64_t)i);
	}
	if (rc == 0)
		rc = bus_flush(b, 10000, NULL);
	bus_close(b);
	return rc;
}

/* Consumes until n deliveries arrived or ms passed. */
static void
drain(struct bus *b, struct seen *s, size_t n, int ms)
{
	struct bus_handlers h = {on_delivery, NULL, s};
	for (int t = 0; t < ms / 50 && s->n < n; t++)
		bus_poll(b, 50, &h);
}

/* A full queue and a consumer that has received all of it, unsettled. */
static struct bus *
filled(struct seen *s)
{
	struct bus *b;

	if (fill() != 0 || (b = open_bus("bus.test.acks")) == NULL)
		return NULL;
	drain(b, s, N, 10000);
	return b;
}

static void
test_unsettled_come_back(void)
{
	struct seen s = {0}, again = {0};
	struct bus *b;

	b = filled(&s);
	CHECK(b != NULL);
	CHECK_MSG(s.n == N, "got %zu of %d", s.n, N);
	/* settle all but 10 and 30, out of order: the top half first, one
	 * by one, then the bottom half; reject 40 */
	for (int i = N - 1; i >= N / 2; i--)
		if (i != 30 && i != 40)
			bus_ack(b, s.ref[i], false);
	bus_reject(b, s.ref[40], false);
	drain(b, &s, N + 1, 200); /* acks go out */
	for (int i = 0; i < N / 2; i++)
		if (i != 10)
			bus_ack(b, s.ref[i], false);
	drain(b, &s, N + 1, 200);
	CHECK(bus_connected(b));
	bus_close(b); /* 10 and 30 are requeued */
	b = open_bus("bus.test.acks");
	CHECK(b != NULL);
	drain(b, &again, 3, 3000);
	CHECK_MSG(again.n == 2, "%zu redelivered, want 2", again.n);
	CHECK(again.got[10] == 1 && again.got[30] == 1);
	bus_ack(b, again.ref[10], false);
	bus_ack(b, again.ref[30], false);
	drain(b, &again, 3, 200);
	bus_close(b);
}

static void
test_multiple_over_a_reject(void)
{
	struct seen s = {0}, again = {0};
	struct bus *b;

	b = filled(&s);
	CHECK(b != NULL);
	CHECK(s.n == N);
	bus_reject(b, s.ref[5], false);
	bus_ack(b, s.ref[N - 2], true); /* all but 5 (rejected), N-1 */
	drain(b, &s, N + 1, 300);
	CHECK_MSG(bus_connected(b), "the channel closed (406?)");
	CHECK(bus_stats(b)->reconnects == 0);
	bus_close(b); /* N-1 comes back */
	b = open_bus("bus.test.acks");
	CHECK(b != NULL);
	drain(b, &again, 2, 3000);
	CHECK_MSG(again.n == 1 && again.got[N - 1] == 1, "%zu redelivered",
	          again.n);
	bus_ack(b, again.ref[N - 1], false);
	drain(b, &again, 2, 200);
	bus_close(b);
}

int
main(void)
{
	log_init("test_bus_acks", LOG_WARN);
	RUN(test_unsettled_come_back);
	RUN(test_multiple_over_a_reject);
	if (own_url != NULL) {
		testbroker_ctl("bus-acks", "stop");
		free(own_url);
	}
	return check_summary();
}

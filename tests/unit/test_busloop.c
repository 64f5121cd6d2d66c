/* test_busloop -- lib/busloop between the durable loop and the bus: a row
 * the bundler held that then cannot go out (bus_publish fails for lack of
 * memory, the only way it fails for a row that fits) is handed back to
 * the loop, which publishes it again at its next turn; a bundle the bus
 * does not take goes out as singles, and only the rows themselves come
 * back; a row that keeps failing is tried again after a wait, neither
 * again and again inside one turn nor at every turn; and a NACKed row
 * whose second publish fails is kept to be sent again.
 *
 * The bus is replaced at link time (-Wl,--wrap, tests/CMakeLists.txt):
 * an allocation failure inside bus_publish cannot be caused on purpose
 * through a real connection. Everything above it -- busloop, the bundler,
 * the durable loop -- is the daemons' code. */
#include <stdlib.h>
#include <string.h>

#include "busloop.h"
#include "check.h"
#include "testloop.h"

/* ---- the bus, wrapped ---- */

#define SENT_MAX 64

static struct {
	uint64_t sent[SENT_MAX]; /* tags bus_publish took, in order */
	size_t nsent;
	uint64_t fail_tag; /* bus_publish fails for this tag ... */
	int fail_times;    /* ... this many times */
	int tries;         /* calls for fail_tag */
	bool fail_bundles; /* and for every bundle */
	size_t bundle_items;
} bus;

int __wrap_bus_publish(struct bus *b, const struct bus_message *m,
                       uint64_t tag);
bool __wrap_bus_message_fits(const struct bus *b, const struct bus_message *m);
size_t __wrap_bus_max_body(const struct bus *b);
size_t __wrap_bus_unconfirmed(const struct bus *b);
bool __wrap_bus_connected(const struct bus *b);
bool __wrap_bus_blocked(const struct bus *b);

int
__wrap_bus_publish(struct bus *b, const struct bus_message *m, uint64_t tag)
{
	(void)b;
	(void)m;
	if (tag & BUNDLER_TAG) {
		if (bus.fail_bundles)
			return -1;
		bus.bundle_items++;
	} else if (tag == bus.fail_tag && bus.tries++ >= 0 &&
	           bus.fail_times > 0) {
		bus.fail_times--;
		return -1;
	}
	if (bus.nsent < SENT_MAX)
		bus.sent[bus.nsent++] = tag;
	return 0;
}

bool
__wrap_bus_message_fits(const struct bus *b, const struct bus_message *m)
{
	(void)b;
	(void)m;
	return true;
}

size_t
__wrap_bus_max_body(const struct bus *b)
{
	(void)b;
	return 1 << 20;
}

size_t
__wrap_bus_unconfirmed(const struct bus *b)
{
	(void)b;
	return 0;
}

bool
__wrap_bus_connected(const struct bus *b)
{
	(void)b;
	return true;
}

bool
__wrap_bus_blocked(const struct bus *b)
{
	(void)b;
	return false;
}

static size_t
times_sent(uint64_t tag)
{
	size_t n = 0;
	for (size_t i = 0; i < bus.nsent; i++)
		n += bus.sent[i] == tag;
	return n;
}

/* ---- an outbox in memory, and the loop over busloop ---- */

#define ROWS 3

static struct busloop bl;
static bool events;   /* the rows are events: never held for a bundle */
static int last_wait; /* what the loop's last poll would have waited */
static struct durable_time clock_now; /* turns() moves it on */

/* Rows 1..ROWS: three commands for one participant (one bundle). */
static int
h_scan(void *ctx, int64_t after, size_t limit, durable_row_fn fn, void *arg)
{
	static const char body[] = "\x81\xa1v\x01";

	(void)ctx;
	for (int64_t seq = after + 1; seq <= ROWS && limit > 0;
	     seq++, limit--) {
		char id[16];
		struct durable_msg m = {
		        .seq = seq,
		        .exchange = "saga.commands",
		        .routing_key = "inventory",
		        .message_id = id,
		        .type = "inventory.reserve",
		        .reply_to = "orchestrator",
		        .body = body,
		        .len = sizeof(body) - 1,
		        .bundle = !events,
		        .mandatory = !events,
		};
		snprintf(id, sizeof(id), "m-%lld", (long long)seq);
		if (fn(arg, &m) != 0)
			break;
	}
	return 0;
}

static int
t_settle(void *ctx, uint64_t ref, enum durable_verdict v, const char *why)
{
	(void)ctx, (void)ref, (void)v, (void)why;
	return 0;
}

static int
t_stop(void *ctx)
{
	(void)ctx;
	return 0;
}

static int
t_poll(void *ctx, struct durable *d, int timeout_ms)
{
	last_wait = timeout_ms;
	((struct busloop *)ctx)->d = d; /* as the adapters' polls do */
	return 0;
}

/* A loop over busloop, its bundler holding up to max rows a bundle. */
static struct durable *
loop_new(size_t max)
{
	struct durable_transport t = {
	        .ctx = &bl,
	        .publish = busloop_publish,
	        .flush = busloop_flush,
	        .ready = busloop_ready,
	        .unconfirmed = busloop_unconfirmed,
	        .poll = t_poll,
	        .settle = t_settle,
	        .stop_consuming = t_stop,
	};
	struct durable_handler h;
	struct durable_config cfg = {.batch_max = 10};

	testloop_handler(&h); /* every delivery done */
	h.outbox_scan = h_scan;
	memset(&bus, 0, sizeof(bus));
	memset(&bl, 0, sizeof(bl));
	events = false;
	clock_now = durable_now();
	bl.bundler = bundler_new(max);
	if (bl.bundler == NULL)
		return NULL;
	return durable_new(&t, &h, &cfg);
}

static void
loop_free(struct durable *d)
{
	durable_free(d);
	bundler_free(bl.bundler);
	bl.bundler = NULL;
}

/* n turns, each DURABLE_RESEND_WAIT_MS after the one before (a turn's
 * clock is the later of this and the real one). */
static int
turns(struct durable *d, int n)
{
	for (int i = 0; i < n; i++) {
		clock_now.mono_ms += DURABLE_RESEND_WAIT_MS;
		clock_now.wall_ms += DURABLE_RESEND_WAIT_MS;
		if (durable_turn(d, clock_now) != 0)
			return -1;
	}
	return 0;
}

static void
test_a_bundle_goes_out_whole(void)
{
	struct durable *d = loop_new(64);

	CHECK(d != NULL);
	CHECK_EQ(turns(d, 2), 0);
	CHECK_EQ(bus.nsent, 1);
	CHECK(bus.sent[0] & BUNDLER_TAG);
	CHECK_EQ(bus.bundle_items, 1);
	loop_free(d);
}

static void
test_a_row_not_sent_goes_out_again(void)
{
	struct durable *d = loop_new(64);

	CHECK(d != NULL);
	bus.fail_bundles = true; /* the three go out one by one ... */
	bus.fail_tag = 2;        /* ... and the second fails once */
	bus.fail_times = 1;
	CHECK_EQ(turns(d, 1), 0);
	CHECK_EQ(times_sent(1), 1);
	CHECK_EQ(times_sent(2), 0);
	CHECK_EQ(times_sent(3), 1);
	/* the loop has it back: the next turn publishes it, and only it */
	CHECK_EQ(turns(d, 2), 0);
	CHECK_EQ(times_sent(2), 1);
	CHECK_EQ(times_sent(1), 1);
	CHECK_EQ(times_sent(3), 1);
	CHECK_EQ(bus.nsent, 3);
	loop_free(d);
}

static void
test_a_row_failing_again_is_not_lost(void)
{
	struct durable *d = loop_new(64);

	CHECK(d != NULL);
	bus.fail_bundles = true;
	bus.fail_tag = 3;
	bus.fail_times = 3; /* three turns without memory */
	CHECK_EQ(turns(d, 6), 0);
	CHECK_EQ(times_sent(3), 1);
	CHECK_EQ(bus.nsent, 3);
	loop_free(d);
}

/* Bundles off (--bundle 1): a held row goes out at once, and one that
 * keeps failing is tried again DURABLE_RESEND_WAIT_MS later: not again
 * and again inside one turn, nor at every turn, which would spin the
 * loop as long as memory stays short. */
static void
test_a_row_failing_waits_to_be_tried_again(void)
{
	struct durable *d = loop_new(1);

	CHECK(d != NULL);
	bus.fail_tag = 2;
	bus.fail_times = 100;
	CHECK_EQ(turns(d, 1), 0);
	CHECK_EQ(bus.tries, 1);
	CHECK_EQ(turns(d, 1), 0); /* handed back: tried at the next turn */
	CHECK_EQ(bus.tries, 2);
	CHECK_EQ(durable_turn(d, clock_now), 0); /* no time has passed */
	CHECK_EQ(bus.tries, 2);
	CHECK(last_wait > 0); /* its poll waits: the loop does not spin */
	CHECK_EQ(turns(d, 1), 0);
	CHECK_EQ(bus.tries, 3);
	bus.fail_times = 0;
	CHECK_EQ(turns(d, 1), 0);
	CHECK_EQ(times_sent(2), 1);
	CHECK_EQ(bus.nsent, 3);
	loop_free(d);
}

/* An event the broker NACKed whose publish then fails (no bundler
 * involved: busloop_publish says "not sent") stays to be sent again. */
static void
test_a_nacked_row_not_sent_stays(void)
{
	struct durable *d = loop_new(64);

	CHECK(d != NULL);
	events = true;
	CHECK_EQ(turns(d, 1), 0);
	CHECK_EQ(bus.nsent, 3);
	durable_confirmed(d, 2, DURABLE_NACK); /* as the bus's poll would */
	bus.fail_tag = 2;
	bus.fail_times = 1;
	CHECK_EQ(turns(d, 1), 0);
	CHECK_EQ(bus.tries, 1);
	CHECK_EQ(times_sent(2), 1); /* the first time only */
	CHECK_EQ(turns(d, 1), 0);
	CHECK_EQ(times_sent(2), 2);
	loop_free(d);
}

int
main(void)
{
	RUN(test_a_bundle_goes_out_whole);
	RUN(test_a_row_not_sent_goes_out_again);
	RUN(test_a_row_failing_again_is_not_lost);
	RUN(test_a_row_failing_waits_to_be_tried_again);
	RUN(test_a_nacked_row_not_sent_stays);
	return check_summary();
}

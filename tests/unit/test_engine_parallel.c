/* Unit tests of parallel states in the saga engine (engine.h, "Parallel
 * states"), on statecharts/examples/parallel.yaml: the fork, the join, a
 * branch failing while the other is in flight or done, per-branch timers
 * behind the saga's one timer, late replies, operator events, and the
 * storage form. Action lists are compared as text, as in test_engine.c:
 *   send <to>/<command> [<route>] <message id> | emit <event> |
 *   timer <seq> @<fire at> | cancel | finish <status> */
#include <stdarg.h>
#include <stdlib.h>

#include "chart_load.h"
#include "engine.h"
#include "testutil.h"

#define PAR_YAML "statecharts/examples/parallel.yaml"
#define T0       1000000
#define TMO      5000 /* the chart's timeout */

struct h {
	struct chart *c;
	struct saga s;
	struct engine_output out;
	enum engine_result res;
	int64_t now;
	char acts[4096];
};

static void
cat(char *buf, size_t cap, const char *s)
{
	size_t len = strlen(buf);
	snprintf(buf + len, cap - len, "%s", s);
}

static void
render(struct h *h)
{
	char b[512];
	size_t i;

	h->acts[0] = '\0';
	for (i = 0; i < h->out.nactions; i++) {
		const struct engine_action *a = &h->out.actions[i];

		if (i > 0)
			cat(h->acts, sizeof(h->acts), " | ");
		switch (a->type) {
		case ACT_SEND:
			snprintf(b, sizeof(b), "send %s/%s [%s] %s", a->to,
			         a->command, a->route, a->message_id);
			break;
		case ACT_EMIT:
			snprintf(b, sizeof(b), "emit %s", a->event);
			break;
		case ACT_SET_TIMER:
			snprintf(b, sizeof(b), "timer %" PRId64 " @%" PRId64,
			         a->timer_seq, a->fire_at_ms - T0);
			break;
		case ACT_CANCEL_TIMER:
			snprintf(b, sizeof(b), "cancel");
			break;
		case ACT_FINISH:
			snprintf(b, sizeof(b), "finish %s",
			         saga_status_name(a->status));
			break;
		}
		cat(h->acts, sizeof(h->acts), b);
	}
}

static enum engine_result
h_step(struct h *h, struct engine_event *ev)
{
	engine_output_clear(&h->out);
	ev->now_ms = h->now;
	h->res = engine_step(h->c, &h->s, ev, &h->out);
	render(h);
	return h->res;
}

static enum engine_result
h_reply(struct h *h, const char *type, const char *re)
{
	struct value empty = VALUE_NIL_INIT;
	struct engine_event ev = {.type = EV_REPLY,
	                          .reply_type = type,
	                          .in_reply_to = re,
	                          .payload = &empty};

	value_set_map(&empty);
	return h_step(h, &ev);
}

/* Fires the saga's timer at its time. */
static enum engine_result
h_fire(struct h *h)
{
	struct engine_event ev = {.type = EV_TIMEOUT,
	                          .timer_seq = h->s.timer_seq};

	h->now = h->s.timer_at_ms;
	return h_step(h, &ev);
}

static enum engine_result
h_op(struct h *h, enum engine_event_type t, const char *step)
{
	struct engine_event ev = {.type = t, .step = step};
	return h_step(h, &ev);
}

static void
make_order(struct value *o, const char *method, int64_t total)
{
	struct value ship = VALUE_NIL_INIT, items = VALUE_NIL_INIT;

	value_set_map(o);
	value_map_put_str(o, "order_id", "o1");
	value_map_put_str(o, "customer_id", "c-7");
	value_map_put_int(o, "total_cents", total);
	value_map_put_str(o, "payment_method", method);
	value_set_map(&ship);
	value_map_put_str(&ship, "country", "DE");
	value_map_put(o, "ship_to", &ship);
	value_map_put_str(o, "category", "books");
	value_set_array(&items);
	value_map_put(o, "items", &items);
}

/* Opens the chart and starts saga o1 (a card order unless told). */
static int
h_start(struct h *h, const char *method, int64_t total)
{
	struct chart_errors errs;
	struct value o = VALUE_NIL_INIT;
	struct engine_event ev = {.type = EV_START, .payload = &o};

	memset(h, 0, sizeof(*h));
	chart_errors_init(&errs);
	h->c = chart_load_file(PAR_YAML, &errs);
	if (h->c == NULL)
		fprintf(stderr, "cannot load %s: %s\n", PAR_YAML,
		        errs.count > 0 ? errs.items[0].text : "?");
	chart_errors_clear(&errs);
	saga_init(&h->s, "o1");
	h->now = T0;
	if (h->c == NULL)
		return -1;
	make_order(&o, method, total);
	h_step(h, &ev);
	value_clear(&o);
	return h->res == ENGINE_OK ? 0 : -1;
}

static void
h_close(struct h *h)
{
	engine_output_clear(&h->out);
	saga_clear(&h->s);
	chart_free(h->c);
}

static const char *
state_of(const struct h *h)
{
	return h->c->states[h->s.state].name;
}

static const char *
stack(const struct h *h)
{
	static char buf[512];
	size_t i;

	buf[0] = '\0';
	for (i = 0; i < h->s.ndone; i++) {
		cat(buf, sizeof(buf), i > 0 ? " " : "");
		cat(buf, sizeof(buf), h->c->states[h->s.done[i].state].name);
		cat(buf, sizeof(buf), h->s.done[i].unknown ? "?" : "");
	}
	return buf;
}

/* The record survives saga_to_value / saga_from_value unchanged. */
static void
check_roundtrip(const struct h *h)
{
	struct value v = VALUE_NIL_INIT, w = VALUE_NIL_INIT;
	struct saga back;
	char err[256] = "";

	CHECK_EQ(saga_to_value(&h->s, h->c, &v), 0);
	CHECK_MSG(saga_from_value(&back, h->c, &v, err, sizeof(err)) == 0, "%s",
	          err);
	CHECK_EQ(saga_to_value(&back, h->c, &w), 0);
	CHECK(value_equal(&v, &w));
	CHECK_EQ(back.nbranches, h->s.nbranches);
	saga_clear(&back);
	value_clear(&v);
	value_clear(&w);
}

#define FORK                                                                   \
	"send inventory/inventory.reserve [] o1:reserve_stock:1 | "            \
	"send payment/payment.charge [card] o1:payment:1 | timer 1 @5000"

static void
test_fork_and_join(void)
{
	struct h h;

	CHECK_EQ(h_start(&h, "card", 1000), 0);
	CHECK_STR(h.acts, FORK);
	CHECK_STR(state_of(&h), "reserve_and_pay");
	CHECK_EQ(h.s.phase, PHASE_PARALLEL);
	CHECK_EQ(h.s.nbranches, 2);
	check_roundtrip(&h);
	h.now = T0 + 100;
	CHECK_EQ(h_reply(&h, "payment.charged", "o1:payment:1"), ENGINE_OK);
	CHECK_STR(h.acts, "emit order.payment_success | timer 2 @5000");
	CHECK_EQ(h.s.branches[1].phase, PHASE_NONE);
	check_roundtrip(&h);
	/* a duplicate of the joined branch's reply */
	CHECK_EQ(h_reply(&h, "payment.charged", "o1:payment:1"),
	         ENGINE_IGNORED);
	h.now = T0 + 200;
	CHECK_EQ(h_reply(&h, "inventory.reserved", "o1:reserve_stock:1"),
	         ENGINE_OK);
	CHECK_STR(h.acts, "emit order.inventory_checked | send "
	                  "shipping/shipping.create [DE.books] "
	                  "o1:create_shipment:1 | timer 3 @5200");
	CHECK_STR(state_of(&h), "create_shipment");
	CHECK_EQ(h.s.nbranches, 0);
	CHECK_STR(stack(&h), "payment reserve_stock");
	check_roundtrip(&h);
	CHECK_EQ(h_reply(&h, "shipping.created", "o1:create_shipment:1"),
	         ENGINE_OK);
	CHECK_EQ(h.s.status, SAGA_COMPLETED);
	h_close(&h);
}

/* Payment declined while the stock is in flight: the reservation may
 * happen, so it is undone too. */
static void
test_fail_other_in_flight(void)
{
	struct h h;

	CHECK_EQ(h_start(&h, "card", 1000), 0);
	h.now = T0 + 100;
	CHECK_EQ(h_reply(&h, "payment.declined", "o1:payment:1"), ENGINE_OK);
	CHECK_STR(h.acts, "send inventory/inventory.release [] "
	                  "o1:reserve_stock:undo:1 | timer 2 @5100");
	CHECK_EQ(h.s.status, SAGA_COMPENSATING);
	CHECK_STR(stack(&h), "reserve_stock?");
	CHECK_EQ(h.s.nbranches, 0);
	/* the reservation's reply arrives late: ignored */
	CHECK_EQ(h_reply(&h, "inventory.reserved", "o1:reserve_stock:1"),
	         ENGINE_IGNORED);
	CHECK_EQ(h_reply(&h, "inventory.released", "o1:reserve_stock:undo:1"),
	         ENGINE_OK);
	CHECK_STR(h.acts, "emit order.failed | cancel | finish failed");
	h_close(&h);
}

/* Stock reserved, then payment declined: release the stock. */
static void
test_fail_other_done(void)
{
	struct h h;

	CHECK_EQ(h_start(&h, "card", 1000), 0);
	CHECK_EQ(h_reply(&h, "inventory.reserved", "o1:reserve_stock:1"),
	         ENGINE_OK);
	CHECK_EQ(h_reply(&h, "payment.declined", "o1:payment:1"), ENGINE_OK);
	CHECK_STR(h.acts, "send inventory/inventory.release [] "
	                  "o1:reserve_stock:undo:1 | timer 3 @5000");
	CHECK_STR(stack(&h), "reserve_stock");
	h_close(&h);
}

/* Out of stock with the payment done: refund it. */
static void
test_stock_out_refund(void)
{
	struct h h;

	CHECK_EQ(h_start(&h, "card", 1000), 0);
	CHECK_EQ(h_reply(&h, "payment.charged", "o1:payment:1"), ENGINE_OK);
	CHECK_EQ(h_reply(&h, "inventory.rejected", "o1:reserve_stock:1"),
	         ENGINE_OK);
	CHECK_STR(h.acts, "send payment/payment.refund [card] "
	                  "o1:payment:undo:1 | timer 3 @5000");
	CHECK_EQ(h_reply(&h, "payment.refunded", "o1:payment:undo:1"),
	         ENGINE_OK);
	CHECK_EQ(h.s.status, SAGA_FAILED);
	h_close(&h);
}

/* A branch that fails at the fork (the choice refuses cod over the limit)
 * fails the parallel state: the reservation just sent is undone. */
static void
test_fail_at_fork(void)
{
	struct h h;

	CHECK_EQ(h_start(&h, "cod", 60000), 0);
	CHECK_STR(h.acts, "send inventory/inventory.reserve [] "
	                  "o1:reserve_stock:1 | send "
	                  "inventory/inventory.release [] "
	                  "o1:reserve_stock:undo:1 | timer 1 @5000");
	CHECK_STR(stack(&h), "reserve_stock?");
	h_close(&h);
}

/* One timer: at the earliest branch time; a TIMEOUT runs every branch
 * due, others keep their time. */
static void
test_branch_timers(void)
{
	struct h h;

	CHECK_EQ(h_start(&h, "card", 1000), 0);
	h.now = T0 + 1000;
	CHECK_EQ(h_reply(&h, "payment.unavailable", "o1:payment:1"), ENGINE_OK);
	CHECK_STR(h.acts, "timer 2 @1500"); /* payment's backoff */
	CHECK_EQ(h.s.branches[1].phase, PHASE_BACKOFF);
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	CHECK_STR(h.acts, "send payment/payment.charge [card] o1:payment:2 | "
	                  "timer 3 @5000"); /* the stock's timeout */
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	CHECK_STR(h.acts, "timer 4 @5500"); /* stock: backoff 500 */
	CHECK_EQ(h_reply(&h, "o1", "o1:reserve_stock:1"), ENGINE_IGNORED);
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	CHECK_STR(h.acts, "send inventory/inventory.reserve [] "
	                  "o1:reserve_stock:2 | timer 5 @6500");
	/* a stale timer */
	{
		struct engine_event ev = {.type = EV_TIMEOUT, .timer_seq = 4};
		CHECK_EQ(h_step(&h, &ev), ENGINE_IGNORED);
	}
	check_roundtrip(&h);
	h_close(&h);
}

/* Both branches time out at once and are handled by one TIMEOUT. */
static void
test_timeout_together(void)
{
	struct h h;

	CHECK_EQ(h_start(&h, "card", 1000), 0);
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	CHECK_STR(h.acts, "timer 2 @5500");
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	CHECK_STR(h.acts, "send inventory/inventory.reserve [] "
	                  "o1:reserve_stock:2 | send payment/payment.charge "
	                  "[card] o1:payment:2 | timer 3 @10500");
	h_close(&h);
}

/* Both branches time out together, but only inventory was away: its
 * attempt is not counted (armed again, nothing resent), payment's is. */
static void
test_timeout_one_branch_absent(void)
{
	struct h h;
	struct engine_event ev = {.type = EV_TIMEOUT};

	CHECK_EQ(h_start(&h, "card", 1000), 0);
	ev.timer_seq = h.s.timer_seq;
	ev.absent_branches = 1u << 0; /* branch 1: reserve_stock */
	h.now = h.s.timer_at_ms;
	CHECK_EQ(h_step(&h, &ev), ENGINE_OK);
	CHECK_EQ(h.s.branches[0].attempt, 1);
	CHECK_EQ(h.s.branches[0].phase, PHASE_AWAIT);
	CHECK_EQ(h.s.branches[0].timer_at_ms, h.now + TMO);
	CHECK_EQ(h.s.branches[1].phase, PHASE_BACKOFF);
	CHECK_MSG(strstr(h.out.note, "not counted") != NULL, "%s", h.out.note);
	/* the reply to inventory's first attempt still counts */
	CHECK_EQ(h_reply(&h, "inventory.reserved", "o1:reserve_stock:1"),
	         ENGINE_OK);
	CHECK_EQ(h.s.branches[0].phase, PHASE_NONE);
	h_close(&h);
}

/* Attempts exhausted in a branch: that step and the other branch's in
 * flight are both unknown. */
static void
test_exhausted(void)
{
	struct h h;
	int i;

	CHECK_EQ(h_start(&h, "card", 1000), 0);
	CHECK_EQ(h_reply(&h, "payment.charged", "o1:payment:1"), ENGINE_OK);
	for (i = 0; i < 20 && h.s.status == SAGA_RUNNING; i++)
		CHECK_EQ(h_fire(&h), ENGINE_OK);
	CHECK_EQ(h.s.status, SAGA_COMPENSATING);
	CHECK_STR(stack(&h), "payment reserve_stock?");
	CHECK_STR(state_of(&h), "reserve_stock");
	h_close(&h);
}

static void
test_op_retry(void)
{
	struct h h;

	CHECK_EQ(h_start(&h, "card", 1000), 0);
	h.now = T0 + 300;
	CHECK_EQ(h_op(&h, EV_OP_RETRY, NULL), ENGINE_OK);
	CHECK_STR(h.acts, "send inventory/inventory.reserve [] "
	                  "o1:reserve_stock:2 | send payment/payment.charge "
	                  "[card] o1:payment:2 | timer 2 @5300");
	CHECK_EQ(h.s.branches[0].attempt_base, 1);
	check_roundtrip(&h);
	h_close(&h);
}

static void
test_op_skip(void)
{
	struct h h;

	CHECK_EQ(h_start(&h, "card", 1000), 0);
	CHECK_EQ(h_op(&h, EV_OP_SKIP, NULL), ENGINE_REJECTED);
	CHECK_EQ(h_op(&h, EV_OP_SKIP, "create_shipment"), ENGINE_REJECTED);
	CHECK_EQ(h_op(&h, EV_OP_SKIP, "payment"), ENGINE_OK);
	CHECK_STR(h.acts, "emit order.payment_success | timer 2 @5000");
	CHECK_EQ(h_op(&h, EV_OP_SKIP, NULL), ENGINE_OK); /* the only one */
	CHECK_STR(state_of(&h), "create_shipment");
	h_close(&h);
}

static void
test_op_compensate_abort(void)
{
	struct h h;

	CHECK_EQ(h_start(&h, "card", 1000), 0);
	CHECK_EQ(h_reply(&h, "inventory.reserved", "o1:reserve_stock:1"),
	         ENGINE_OK);
	CHECK_EQ(h_op(&h, EV_OP_RESUME, NULL), ENGINE_REJECTED);
	CHECK_EQ(h_op(&h, EV_OP_MARK_COMPENSATED, "payment"), ENGINE_REJECTED);
	CHECK_EQ(h_op(&h, EV_OP_COMPENSATE, NULL), ENGINE_OK);
	CHECK_STR(h.acts, "send payment/payment.refund [card] "
	                  "o1:payment:undo:1 | timer 3 @5000");
	CHECK_STR(stack(&h), "reserve_stock payment?");
	h_close(&h);

	CHECK_EQ(h_start(&h, "card", 1000), 0);
	CHECK_EQ(h_op(&h, EV_OP_ABORT, NULL), ENGINE_OK);
	CHECK_STR(h.acts, "cancel | finish aborted");
	CHECK_EQ(h.s.nbranches, 0);
	check_roundtrip(&h);
	h_close(&h);
}

/* A record of a parallel saga that does not hold together is refused. */
static void
test_storage_rejects(void)
{
	struct h h;
	struct value v = VALUE_NIL_INIT;
	struct value *br = NULL;
	struct saga back;
	size_t i;
	char err[256] = "";

	CHECK_EQ(h_start(&h, "card", 1000), 0);
	CHECK_EQ(saga_to_value(&h.s, h.c, &v), 0);
	for (i = 0; i < v.u.m.len; i++)
		if (strcmp(v.u.m.items[i].key, "branches") == 0)
			br = &v.u.m.items[i].val;
	CHECK(br != NULL && br->u.a.len == 2);
	value_map_put_int(&br->u.a.items[0], "state",
	                  chart_state_index(h.c, "create_shipment"));
	CHECK(saga_from_value(&back, h.c, &v, err, sizeof(err)) != 0);
	CHECK(strstr(err, "branch 1: create_shipment is not a step of it") !=
	      NULL);
	saga_clear(&back);
	value_clear(&v);
	h_close(&h);
}

int
main(void)
{
	RUN(test_fork_and_join);
	RUN(test_fail_other_in_flight);
	RUN(test_fail_other_done);
	RUN(test_stock_out_refund);
	RUN(test_fail_at_fork);
	RUN(test_branch_timers);
	RUN(test_timeout_together);
	RUN(test_timeout_one_branch_absent);
	RUN(test_exhausted);
	RUN(test_op_retry);
	RUN(test_op_skip);
	RUN(test_op_compensate_abort);
	RUN(test_storage_rejects);
	return check_summary();
}

/* Unit tests of the saga engine (orchestrator/core/engine.h): every path
 * of statecharts/order.yaml with exact action lists, the wait chart
 * (tests/statecharts/valid/engine_wait.yaml), operator events in valid and
 * invalid statuses, late and duplicate input, the storage form and its
 * validation, and the guards (transition loop, full stack) on charts built
 * in C.
 *
 * Action lists are compared as text, one action per " | "-separated item:
 *   send <to>/<command> [<route>] <message id>
 *   emit <event>    timer <seq> @<fire at>    cancel    finish <status>
 * Payloads are checked separately (payload_text). */
#include <stdarg.h>
#include <stdlib.h>

#include "chart_load.h"
#include "engine.h"
#include "testutil.h"

/* ---- harness ---- */

struct h {
	struct chart *c;
	struct saga s;
	struct engine_output out;
	enum engine_result res;
	int64_t now;
	char acts[4096];
};

/* A rotating set of buffers for formatted expectations. */
static const char *fmt(const char *f, ...)
        __attribute__((format(printf, 1, 2)));

static const char *
fmt(const char *f, ...)
{
	static char bufs[8][1024];
	static int next;
	char *b = bufs[next++ % 8];
	va_list ap;

	va_start(ap, f);
	vsnprintf(b, sizeof(bufs[0]), f, ap);
	va_end(ap);
	return b;
}

static void
cat(char *buf, size_t cap, const char *s)
{
	size_t len = strlen(buf);
	snprintf(buf + len, cap - len, "%s", s);
}

/* Compact JSON-like text of a value, for payload checks. */
static void
vtext(const struct value *v, char *buf, size_t cap)
{
	char tmp[64];
	size_t i;

	switch (v->type) {
	case VALUE_NIL:
		cat(buf, cap, "nil");
		break;
	case VALUE_BOOL:
		cat(buf, cap, v->u.b ? "true" : "false");
		break;
	case VALUE_INT:
		snprintf(tmp, sizeof(tmp), "%" PRId64, v->u.i);
		cat(buf, cap, tmp);
		break;
	case VALUE_FLOAT:
		snprintf(tmp, sizeof(tmp), "%g", v->u.f);
		cat(buf, cap, tmp);
		break;
	case VALUE_STR:
	case VALUE_BIN:
		cat(buf, cap, "\"");
		cat(buf, cap, v->u.s.ptr);
		cat(buf, cap, "\"");
		break;
	case VALUE_ARRAY:
		cat(buf, cap, "[");
		for (i = 0; i < v->u.a.len; i++) {
			if (i > 0)
				cat(buf, cap, ",");
			vtext(&v->u.a.items[i], buf, cap);
		}
		cat(buf, cap, "]");
		break;
	case VALUE_MAP:
		cat(buf, cap, "{");
		for (i = 0; i < v->u.m.len; i++) {
			if (i > 0)
				cat(buf, cap, ",");
			cat(buf, cap, v->u.m.items[i].key);
			cat(buf, cap, ":");
			vtext(&v->u.m.items[i].val, buf, cap);
		}
		cat(buf, cap, "}");
		break;
	}
}

static const char *
vstr(const struct value *v)
{
	static char bufs[4][2048];
	static int next;
	char *b = bufs[next++ % 4];

	b[0] = '\0';
	if (v == NULL)
		return "(none)";
	vtext(v, b, sizeof(bufs[0]));
	return b;
}

/* Renders out->actions; a SEND whose fields disagree with its message id
 * renders as BAD. */
static void
render(struct h *h)
{
	size_t i;

	h->acts[0] = '\0';
	for (i = 0; i < h->out.nactions; i++) {
		const struct engine_action *a = &h->out.actions[i];
		char id[ENGINE_MSGID_MAX];

		if (i > 0)
			cat(h->acts, sizeof(h->acts), " | ");
		switch (a->type) {
		case ACT_SEND:
			engine_message_id(id, sizeof(id), h->s.id, a->step,
			                  a->visit, a->compensation,
			                  a->attempt);
			cat(h->acts, sizeof(h->acts),
			    fmt("send %s/%s [%s] %s", a->to, a->command,
			        a->route,
			        strcmp(id, a->message_id) == 0 ? a->message_id
			                                       : "BAD"));
			break;
		case ACT_EMIT:
			cat(h->acts, sizeof(h->acts), fmt("emit %s", a->event));
			break;
		case ACT_SET_TIMER:
			cat(h->acts, sizeof(h->acts),
			    fmt("timer %" PRId64 " @%" PRId64, a->timer_seq,
			        a->fire_at_ms));
			break;
		case ACT_CANCEL_TIMER:
			cat(h->acts, sizeof(h->acts), "cancel");
			break;
		case ACT_FINISH:
			cat(h->acts, sizeof(h->acts),
			    fmt("finish %s", saga_status_name(a->status)));
			break;
		}
	}
}

static struct chart *
load(const char *path)
{
	struct chart_errors errs;
	struct chart *c;

	chart_errors_init(&errs);
	c = chart_load_file(path, &errs);
	if (c == NULL)
		fprintf(stderr, "cannot load %s: %s\n", path,
		        errs.count > 0 ? errs.items[0].text : "?");
	chart_errors_clear(&errs);
	return c;
}

static int
h_open(struct h *h, const char *path, const char *id)
{
	memset(h, 0, sizeof(*h));
	h->c = load(path);
	saga_init(&h->s, id);
	h->now = 1000000;
	return h->c != NULL ? 0 : -1;
}

static void
h_close(struct h *h)
{
	engine_output_clear(&h->out);
	saga_clear(&h->s);
	chart_free(h->c);
	h->c = NULL;
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
h_start(struct h *h, const struct value *order)
{
	struct engine_event ev = {.type = EV_START, .payload = order};
	return h_step(h, &ev);
}

static enum engine_result
h_reply_p(struct h *h, const char *type, const char *re,
          const struct value *payload)
{
	struct engine_event ev = {.type = EV_REPLY,
	                          .reply_type = type,
	                          .in_reply_to = re,
	                          .payload = payload};
	return h_step(h, &ev);
}

static enum engine_result
h_reply(struct h *h, const char *type, const char *re)
{
	struct value empty = VALUE_NIL_INIT;
	value_set_map(&empty);
	return h_reply_p(h, type, re, &empty);
}

static enum engine_result
h_timeout(struct h *h, int64_t seq)
{
	struct engine_event ev = {.type = EV_TIMEOUT, .timer_seq = seq};
	return h_step(h, &ev);
}

/* Fires the saga's current timer at its time. */
static enum engine_result
h_fire(struct h *h)
{
	h->now = h->s.timer_at_ms;
	return h_timeout(h, h->s.timer_seq);
}

static enum engine_result
h_op(struct h *h, enum engine_event_type t, const char *step)
{
	struct engine_event ev = {.type = t, .step = step};
	return h_step(h, &ev);
}

/* The message id of `state`'s command (or undo command) for visit v and
 * attempt n. */
static const char *
midv(const struct h *h, const char *state, int v, bool undo, int n)
{
	static char bufs[8][ENGINE_MSGID_MAX];
	static int next;
	char *b = bufs[next++ % 8];

	engine_message_id(b, ENGINE_MSGID_MAX, h->s.id, state, v, undo, n);
	return b;
}

/* The same on the first visit. */
static const char *
mid(const struct h *h, const char *state, bool undo, int n)
{
	return midv(h, state, 1, undo, n);
}

static const struct chart_state *
st(const struct h *h, const char *name)
{
	int i = chart_state_index(h->c, name);
	return i >= 0 ? &h->c->states[i] : NULL;
}

static const char *
state_of(const struct h *h)
{
	return h->s.state >= 0 ? h->c->states[h->s.state].name : "(none)";
}

/* The completed stack as text: "reserve_stock payment?" (? = unknown). */
static const char *
stack(const struct h *h)
{
	static char buf[1024];
	size_t i;

	buf[0] = '\0';
	for (i = 0; i < h->s.ndone; i++) {
		if (i > 0)
			cat(buf, sizeof(buf), " ");
		cat(buf, sizeof(buf), h->c->states[h->s.done[i].state].name);
		if (h->s.done[i].unknown)
			cat(buf, sizeof(buf), "?");
	}
	return buf;
}

/* "emit <event> | " for a state with an emit, "" otherwise. */
static const char *
emits(const struct h *h, const char *state)
{
	const struct chart_state *s = st(h, state);
	return (s != NULL && s->emit != NULL) ? fmt("emit %s | ", s->emit) : "";
}

/* The text of SEND number n (0-based among the sends) of the last step. */
static const char *
payload_text(const struct h *h, int n)
{
	size_t i;

	for (i = 0; i < h->out.nactions; i++)
		if (h->out.actions[i].type == ACT_SEND && n-- == 0)
			return vstr(&h->out.actions[i].payload);
	return "(no send)";
}

/* The storage form as msgpack bytes, for "unchanged" checks. */
static char *
packed(const struct h *h, size_t *len)
{
	struct value v = VALUE_NIL_INIT;
	char *buf = NULL;

	*len = 0;
	if (saga_to_value(&h->s, h->c, &v) != 0)
		return NULL;
	if (value_to_msgpack(&v, &buf, len) != 0)
		buf = NULL;
	value_clear(&v);
	return buf;
}

/* ---- orders ---- */

static void
make_order(struct value *o, const char *id, const char *method, int64_t total,
           const char *country, const char *category)
{
	struct value ship = VALUE_NIL_INIT, items = VALUE_NIL_INIT,
	             item = VALUE_NIL_INIT;

	value_set_map(o);
	value_map_put_str(o, "order_id", id);
	value_map_put_str(o, "customer_id", "c-7");
	value_map_put_int(o, "total_cents", total);
	value_map_put_str(o, "payment_method", method);
	value_set_map(&ship);
	if (country != NULL)
		value_map_put_str(&ship, "country", country);
	value_map_put_str(&ship, "city", "Berlin");
	value_map_put(o, "ship_to", &ship);
	if (category != NULL)
		value_map_put_str(o, "category", category);
	value_set_array(&items);
	value_set_map(&item);
	value_map_put_str(&item, "sku", "bk-1");
	value_map_put_int(&item, "qty", 2);
	value_array_push(&items, &item);
	value_map_put(o, "items", &items);
}

#define ORDER_YAML "statecharts/order.yaml"

/* Opens order.yaml and starts saga `id` with a standard order. */
static int
order_start(struct h *h, const char *id, const char *method, int64_t total)
{
	struct value o = VALUE_NIL_INIT;
	enum engine_result r;

	if (h_open(h, ORDER_YAML, id) != 0)
		return -1;
	make_order(&o, id, method, total, "DE", "books");
	r = h_start(h, &o);
	value_clear(&o);
	return r == ENGINE_OK ? 0 : -1;
}

/* ---- chart parameters (so that tuning the YAML does not break tests) */

static int64_t
T(const struct h *h, const char *state, bool undo)
{
	const struct chart_state *s = st(h, state);
	return undo ? s->compensate->timeout_ms : s->timeout_ms;
}

static const struct chart_retry *
P(const struct h *h, const char *state, bool undo)
{
	const struct chart_state *s = st(h, state);
	return undo ? &s->compensate->retry : &s->retry;
}

/* Runs the helper and stops the test if it failed. */
#define DO(call)                                                               \
	do {                                                                   \
		call;                                                          \
		if (check_current_failed)                                      \
			return;                                                \
	} while (0)

#define EXPECT(h, ...) CHECK_STR((h)->acts, fmt(__VA_ARGS__))

/* The current attempt of `state` fails by timeout and the next one goes
 * out: "send <sendto> [<route>] <id of attempt+1> | timer", through a
 * backoff timer when the policy asks for a delay. */
static void
expect_resend(struct h *h, const char *sendto, const char *route,
              const char *state, bool undo)
{
	int a = h->s.attempt, used = a - h->s.attempt_base;
	int64_t seq = h->s.timer_seq;
	int64_t d = chart_retry_delay(P(h, state, undo), used + 1);

	CHECK_EQ(h_fire(h), ENGINE_OK);
	if (d > 0) {
		EXPECT(h, "timer %" PRId64 " @%" PRId64, seq + 1, h->now + d);
		CHECK_EQ(h->s.phase, PHASE_BACKOFF);
		CHECK_EQ(h->s.attempt, a);
		CHECK_EQ(h_fire(h), ENGINE_OK);
		seq++;
	}
	EXPECT(h, "send %s [%s] %s | timer %" PRId64 " @%" PRId64, sendto,
	       route, mid(h, state, undo, a + 1), seq + 1,
	       h->now + T(h, state, undo));
	CHECK_EQ(h->s.phase, PHASE_AWAIT);
	CHECK_EQ(h->s.attempt, a + 1);
}

/* An input that must change nothing: result `want`, no actions, the
 * stored form byte-identical, a note. */
#define CHECK_NOOP(h, want, call)                                              \
	do {                                                                   \
		size_t l0_, l1_;                                               \
		char *b0_ = packed(h, &l0_), *b1_;                             \
		enum engine_result r_ = (call);                                \
		b1_ = packed(h, &l1_);                                         \
		int same_ = b0_ != NULL && b1_ != NULL && l0_ == l1_ &&        \
		            memcmp(b0_, b1_, l0_) == 0;                        \
		free(b0_);                                                     \
		free(b1_);                                                     \
		CHECK_MSG(r_ == (want), "result %d, want %d (note: %s)",       \
		          (int)r_, (int)(want), (h)->out.note);                \
		CHECK_EQ((h)->out.nactions, 0);                                \
		CHECK((h)->out.note[0] != '\0');                               \
		CHECK_MSG(same_, "saga changed by a no-op");                   \
	} while (0)

/* Drives a started order saga to the payment step (card or cod). */
static void
to_payment(struct h *h, const char *method)
{
	h->now += 100;
	CHECK_EQ(h_reply(h, "inventory.reserved",
	                 mid(h, "reserve_stock", false, 1)),
	         ENGINE_OK);
	EXPECT(h, "%ssend payment/payment.charge [%s] %s | timer 2 @%" PRId64,
	       emits(h, "reserve_stock"), method, mid(h, "payment", false, 1),
	       h->now + T(h, "payment", false));
	CHECK_STR(state_of(h), "payment");
	CHECK_STR(stack(h), "reserve_stock");
}

/* ... and on to create_shipment. */
static void
to_shipment(struct h *h, const char *reply)
{
	struct value p = VALUE_NIL_INIT;

	h->now += 100;
	value_set_map(&p);
	value_map_put_str(&p, "charge_id", "ch_1");
	value_map_put_str(&p, "noise", "not saved");
	CHECK_EQ(
	        h_reply_p(h, reply, mid(h, "payment", false, h->s.attempt), &p),
	        ENGINE_OK);
	value_clear(&p);
	EXPECT(h,
	       "%ssend shipping/shipping.create [DE.books] %s | timer %" PRId64
	       " @%" PRId64,
	       emits(h, "payment"), mid(h, "create_shipment", false, 1),
	       h->s.timer_seq, h->now + T(h, "create_shipment", false));
	CHECK_STR(stack(h), "reserve_stock payment");
	CHECK_STR(vstr(value_map_get(&h->s.data, "charge_id")), "\"ch_1\"");
	CHECK(value_map_get(&h->s.data, "noise") == NULL);
}

/* ---- order.yaml: the happy paths ---- */

static void
test_card_success(void)
{
	struct h h;

	CHECK(order_start(&h, "o1", "card", 12000) == 0);
	EXPECT(&h,
	       "send inventory/inventory.reserve [] o1:reserve_stock:1 | "
	       "timer 1 @%" PRId64,
	       h.now + T(&h, "reserve_stock", false));
	CHECK_EQ(h.s.status, SAGA_RUNNING);
	CHECK_EQ(h.s.phase, PHASE_AWAIT);
	CHECK_EQ(h.s.attempt, 1);
	CHECK_EQ(h.s.started_ms, h.now);
	CHECK_STR(h.s.chart_version, h.c->version);
	CHECK(strstr(payload_text(&h, 0), "order_id:\"o1\"") != NULL);
	DO(to_payment(&h, "card"));
	DO(to_shipment(&h, "payment.charged"));
	h.now += 100;
	CHECK_EQ(h_reply(&h, "shipping.created",
	                 mid(&h, "create_shipment", false, 1)),
	         ENGINE_OK);
	EXPECT(&h, "%semit order.completed | cancel | finish completed",
	       emits(&h, "create_shipment"));
	CHECK_EQ(h.s.status, SAGA_COMPLETED);
	CHECK_EQ(h.s.phase, PHASE_NONE);
	CHECK_STR(state_of(&h), "completed");
	CHECK_EQ(h.s.timer_at_ms, 0);
	CHECK_EQ(h.s.updated_ms, h.now);
	/* after the finish: nothing applies */
	CHECK_NOOP(&h, ENGINE_IGNORED,
	           h_reply(&h, "shipping.created",
	                   mid(&h, "create_shipment", false, 1)));
	CHECK(strstr(h.out.note, "completed") != NULL);
	CHECK_NOOP(&h, ENGINE_IGNORED, h_timeout(&h, h.s.timer_seq));
	CHECK_NOOP(&h, ENGINE_REJECTED, h_op(&h, EV_OP_ABORT, NULL));
	CHECK_NOOP(&h, ENGINE_ERROR, h_start(&h, &h.s.data));
	h_close(&h);
}

static void
test_cod_success(void)
{
	struct h h;

	CHECK(order_start(&h, "o2", "cod", 50000) == 0); /* at the limit */
	DO(to_payment(&h, "cod"));
	DO(to_shipment(&h, "payment.collection_registered"));
	CHECK_EQ(h_reply(&h, "shipping.created",
	                 mid(&h, "create_shipment", false, 1)),
	         ENGINE_OK);
	EXPECT(&h, "%semit order.completed | cancel | finish completed",
	       emits(&h, "create_shipment"));
	h_close(&h);
}

/* ---- order.yaml: failures and compensation ---- */

static void
test_cod_over_limit(void)
{
	struct h h;

	CHECK(order_start(&h, "o3", "cod", 50001) == 0);
	h.now += 10;
	CHECK_EQ(h_reply(&h, "inventory.reserved",
	                 mid(&h, "reserve_stock", false, 1)),
	         ENGINE_OK);
	EXPECT(&h,
	       "%ssend inventory/inventory.release [] o3:reserve_stock:undo:1 "
	       "| timer 2 @%" PRId64,
	       emits(&h, "reserve_stock"),
	       h.now + T(&h, "reserve_stock", true));
	CHECK_EQ(h.s.status, SAGA_COMPENSATING);
	CHECK_STR(state_of(&h), "reserve_stock");
	CHECK_STR(h.c->states[h.s.fail_target].name, "failed");
	CHECK_STR(payload_text(&h, 0),
	          "{order_id:\"o3\",items:[{sku:\"bk-1\",qty:2}]}");
	CHECK_EQ(h_reply(&h, "inventory.released",
	                 mid(&h, "reserve_stock", true, 1)),
	         ENGINE_OK);
	EXPECT(&h, "emit order.failed | cancel | finish failed");
	CHECK_EQ(h.s.status, SAGA_FAILED);
	CHECK_STR(state_of(&h), "failed");
	CHECK_STR(stack(&h), "");
	h_close(&h);
}

static void
test_decline(void)
{
	struct h h;

	CHECK(order_start(&h, "o4", "card", 12000) == 0);
	DO(to_payment(&h, "card"));
	CHECK_EQ(h_reply(&h, "payment.declined", mid(&h, "payment", false, 1)),
	         ENGINE_OK);
	/* no refund: the charge did not happen; the stock is released */
	EXPECT(&h,
	       "send inventory/inventory.release [] o4:reserve_stock:undo:1 | "
	       "timer 3 @%" PRId64,
	       h.now + T(&h, "reserve_stock", true));
	CHECK_STR(stack(&h), "reserve_stock");
	CHECK_EQ(h_reply(&h, "inventory.released",
	                 mid(&h, "reserve_stock", true, 1)),
	         ENGINE_OK);
	EXPECT(&h, "emit order.failed | cancel | finish failed");
	h_close(&h);
}

static void
test_stock_out(void)
{
	struct h h;

	CHECK(order_start(&h, "o5", "card", 12000) == 0);
	CHECK_EQ(h_reply(&h, "inventory.rejected",
	                 mid(&h, "reserve_stock", false, 1)),
	         ENGINE_OK);
	EXPECT(&h, "emit order.failed | cancel | finish failed");
	CHECK_EQ(h.s.status, SAGA_FAILED);
	CHECK_EQ(h.s.ndone, 0);
	h_close(&h);
}

static void
test_shipment_failure(void)
{
	struct h h;

	CHECK(order_start(&h, "o6", "card", 12000) == 0);
	DO(to_payment(&h, "card"));
	DO(to_shipment(&h, "payment.charged"));
	CHECK_EQ(h_reply(&h, "shipping.failed",
	                 mid(&h, "create_shipment", false, 1)),
	         ENGINE_OK);
	/* refund first (completed last), then release */
	EXPECT(&h,
	       "send payment/payment.refund [card] o6:payment:undo:1 | timer 4 "
	       "@%" PRId64,
	       h.now + T(&h, "payment", true));
	CHECK_STR(state_of(&h), "payment");
	CHECK(strstr(payload_text(&h, 0), "charge_id:\"ch_1\"") != NULL);
	CHECK_EQ(h_reply(&h, "payment.refunded", mid(&h, "payment", true, 1)),
	         ENGINE_OK);
	EXPECT(&h,
	       "send inventory/inventory.release [] o6:reserve_stock:undo:1 | "
	       "timer 5 @%" PRId64,
	       h.now + T(&h, "reserve_stock", true));
	CHECK_EQ(h_reply(&h, "inventory.released",
	                 mid(&h, "reserve_stock", true, 1)),
	         ENGINE_OK);
	EXPECT(&h, "emit order.failed | cancel | finish failed");
	h_close(&h);
}

/* A COD collection is undone with its own ok reply. */
static void
test_cod_collection_cancelled(void)
{
	struct h h;

	CHECK(order_start(&h, "o7", "cod", 100) == 0);
	DO(to_payment(&h, "cod"));
	DO(to_shipment(&h, "payment.collection_registered"));
	CHECK_EQ(h_reply(&h, "shipping.failed",
	                 mid(&h, "create_shipment", false, 1)),
	         ENGINE_OK);
	EXPECT(&h,
	       "send payment/payment.refund [cod] o7:payment:undo:1 | timer 4 "
	       "@%" PRId64,
	       h.now + T(&h, "payment", true));
	CHECK_EQ(h_reply(&h, "payment.collection_cancelled",
	                 mid(&h, "payment", true, 1)),
	         ENGINE_OK);
	CHECK_STR(state_of(&h), "reserve_stock");
	h_close(&h);
}

/* A placeholder of the shipment route is missing: the step fails at once
 * (nothing was sent, so it is not undone) and the rest is compensated. */
static void
test_route_missing(void)
{
	struct h h;
	struct value o = VALUE_NIL_INIT;

	CHECK(h_open(&h, ORDER_YAML, "o8") == 0);
	make_order(&o, "o8", "card", 12000, "DE", NULL);
	CHECK_EQ(h_start(&h, &o), ENGINE_OK);
	value_clear(&o);
	DO(to_payment(&h, "card"));
	h.now += 5;
	CHECK_EQ(h_reply(&h, "payment.charged", mid(&h, "payment", false, 1)),
	         ENGINE_OK);
	EXPECT(&h,
	       "%ssend payment/payment.refund [card] o8:payment:undo:1 | timer "
	       "3 @%" PRId64,
	       emits(&h, "payment"), h.now + T(&h, "payment", true));
	CHECK_MSG(strstr(h.out.note, "cannot route") != NULL, "%s", h.out.note);
	CHECK_EQ(h.s.status, SAGA_COMPENSATING);
	CHECK_STR(stack(&h), "reserve_stock payment");
	h_close(&h);
}

/* ---- order.yaml: retries and timeouts ---- */

static void
test_timeouts_then_success(void)
{
	struct h h;

	CHECK(order_start(&h, "o10", "card", 12000) == 0);
	CHECK(P(&h, "reserve_stock", false)->attempts >= 2);
	DO(expect_resend(&h, "inventory/inventory.reserve", "", "reserve_stock",
	                 false));
	/* the first attempt's late success does not count */
	CHECK_NOOP(&h, ENGINE_IGNORED,
	           h_reply(&h, "inventory.reserved",
	                   mid(&h, "reserve_stock", false, 1)));
	CHECK(strstr(h.out.note, "late reply") != NULL);
	CHECK_EQ(h_reply(&h, "inventory.reserved",
	                 mid(&h, "reserve_stock", false, 2)),
	         ENGINE_OK);
	CHECK_STR(state_of(&h), "payment");
	CHECK_EQ(h.s.attempt, 1);
	CHECK_EQ(h.s.step_started_ms, h.now);
	h_close(&h);
}

/* ---- timeouts that mean what they say (statecharts/README.md) ---- */

static enum engine_result
h_fire_absent(struct h *h)
{
	struct engine_event ev = {.type = EV_TIMEOUT,
	                          .timer_seq = h->s.timer_seq,
	                          .absent = true};
	h->now = h->s.timer_at_ms;
	return h_step(h, &ev);
}

/* A timeout while nobody took the command is not a failed attempt: the
 * timer is armed again, nothing is resent, and the participant's answer to
 * attempt 1 still counts when it comes. */
static void
test_absent_not_counted(void)
{
	struct h h;
	int64_t tmo;

	CHECK(order_start(&h, "o60", "card", 12000) == 0);
	tmo = st(&h, "reserve_stock")->timeout_ms;
	for (int i = 0; i < 10; i++) {
		int64_t seq = h.s.timer_seq;
		CHECK_EQ(h_fire_absent(&h), ENGINE_OK);
		EXPECT(&h, "timer %" PRId64 " @%" PRId64, seq + 1, h.now + tmo);
		CHECK_EQ(h.s.attempt, 1);
		CHECK_EQ(h.s.phase, PHASE_AWAIT);
		CHECK_MSG(strstr(h.out.note, "not counted") != NULL, "%s",
		          h.out.note);
	}
	CHECK_EQ(h_reply(&h, "inventory.reserved",
	                 mid(&h, "reserve_stock", false, 1)),
	         ENGINE_OK);
	CHECK_STR(state_of(&h), "payment");
	h_close(&h);
}

/* The deadline bounds the step: its timers never go past it, and a
 * timeout at the deadline ends the step as exhausted (outcome unknown,
 * compensated too), whether the participant was away or not. */
static void
test_deadline_ends_step(void)
{
	struct h h;
	int64_t dl;

	CHECK(order_start(&h, "o61", "card", 12000) == 0);
	DO(to_payment(&h, "card"));
	dl = h.now + st(&h, "payment")->deadline_ms;
	CHECK_EQ(h.s.deadline_ms, dl);
	while (h.s.timer_at_ms < dl) {
		CHECK_EQ(h_fire_absent(&h), ENGINE_OK);
		CHECK(h.s.timer_at_ms <= dl);
	}
	CHECK_EQ(h.s.attempt, 1);
	CHECK_EQ(h_fire_absent(&h), ENGINE_OK);
	CHECK_MSG(strstr(h.out.note, "deadline passed") != NULL, "%s",
	          h.out.note);
	CHECK_STR(stack(&h), "reserve_stock payment?");
	CHECK_EQ(h.s.status, SAGA_COMPENSATING);
	CHECK_EQ(h.s.deadline_ms, 0);
	/* an undo whose participant is away waits, however long */
	for (int i = 0; i < 1000; i++)
		CHECK_EQ(h_fire_absent(&h), ENGINE_OK);
	CHECK_EQ(h.s.status, SAGA_COMPENSATING);
	CHECK_EQ(h.s.attempt, 1);
	h_close(&h);
}

/* A deadline shorter than timeout x attempts: the backoff timer is
 * capped at the deadline and firing it ends the step. An operator's
 * retry gives the step a fresh deadline. */
static void
test_deadline_caps_backoff(void)
{
	struct h h;
	struct chart_state *p;

	CHECK(order_start(&h, "o62", "card", 12000) == 0);
	p = &h.c->states[chart_state_index(h.c, "reserve_stock")];
	p->deadline_ms = p->timeout_ms + 100; /* inside the first backoff */
	h.s.deadline_ms = h.s.step_started_ms + p->deadline_ms;
	CHECK_EQ(h_fire(&h), ENGINE_OK); /* attempt 1 failed: back off */
	CHECK_EQ(h.s.phase, PHASE_BACKOFF);
	CHECK_EQ(h.s.timer_at_ms, h.s.deadline_ms);
	CHECK_EQ(h_op(&h, EV_OP_RETRY, NULL), ENGINE_OK);
	CHECK_EQ(h.s.deadline_ms, h.now + p->deadline_ms);
	CHECK_EQ(h.s.timer_at_ms, h.now + p->timeout_ms);
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	CHECK_EQ(h.s.phase, PHASE_BACKOFF);
	CHECK_EQ(h.s.timer_at_ms, h.s.deadline_ms);
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	CHECK_MSG(strstr(h.out.note, "deadline passed") != NULL, "%s",
	          h.out.note);
	CHECK_STR(stack(&h), "reserve_stock?");
	h_close(&h);
}

static void
drop_key(struct value *m, const char *key)
{
	for (size_t i = 0; i < m->u.m.len; i++) {
		if (strcmp(m->u.m.items[i].key, key) != 0)
			continue;
		free(m->u.m.items[i].key);
		value_clear(&m->u.m.items[i].val);
		memmove(&m->u.m.items[i], &m->u.m.items[i + 1],
		        (m->u.m.len - i - 1) * sizeof(m->u.m.items[0]));
		m->u.m.len--;
		return;
	}
}

/* A record written before deadlines (no deadline_ms) reads with the
 * step's deadline from its entry. */
static void
test_storage_without_deadline(void)
{
	struct h h;
	struct value v = VALUE_NIL_INIT;
	struct saga back;
	char err[256];

	CHECK(order_start(&h, "o63", "card", 12000) == 0);
	CHECK(saga_to_value(&h.s, h.c, &v) == 0);
	saga_init(&back, "x");
	for (size_t i = 0; i < v.u.m.len; i++)
		if (strcmp(v.u.m.items[i].key, "deadline_ms") == 0)
			memcpy(v.u.m.items[i].key, "started_ms_", 11);
	CHECK(saga_from_value(&back, h.c, &v, err, sizeof(err)) != 0);
	CHECK_MSG(strstr(err, "started_ms_") != NULL, "%s", err);
	drop_key(&v, "started_ms_");
	CHECK_MSG(saga_from_value(&back, h.c, &v, err, sizeof(err)) == 0, "%s",
	          err);
	CHECK_EQ(back.deadline_ms,
	         h.s.step_started_ms + st(&h, "reserve_stock")->deadline_ms);
	saga_clear(&back);
	value_clear(&v);
	h_close(&h);
}

/* ---- a customer's cancel (statecharts/examples/cancellable.yaml) ---- */

#define CANCEL_YAML "statecharts/examples/cancellable.yaml"

static int
cancel_start(struct h *h, const char *id)
{
	struct value o = VALUE_NIL_INIT;
	enum engine_result r;

	if (h_open(h, CANCEL_YAML, id) != 0)
		return -1;
	make_order(&o, id, "card", 12000, "DE", "books");
	r = h_start(h, &o);
	value_clear(&o);
	return r == ENGINE_OK ? 0 : -1;
}

/* While the card is being charged: the charge's outcome is unknown, so
 * it is refunded, then the stock released; the saga is cancelled. */
static void
test_cancel_during_payment(void)
{
	struct h h;

	CHECK(cancel_start(&h, "c1") == 0);
	DO(to_payment(&h, "card"));
	h.now += 50;
	CHECK_EQ(h_op(&h, EV_CANCEL, NULL), ENGINE_OK);
	EXPECT(&h,
	       "send payment/payment.refund [card] c1:payment:undo:1 | timer "
	       "%" PRId64 " @%" PRId64,
	       h.s.timer_seq, h.now + T(&h, "payment", true));
	CHECK_STR(stack(&h), "reserve_stock payment?");
	CHECK_MSG(strstr(h.out.note, "cancel accepted in payment") != NULL,
	          "%s", h.out.note);
	/* the charge's late success changes nothing now */
	CHECK_NOOP(
	        &h, ENGINE_IGNORED,
	        h_reply(&h, "payment.charged", mid(&h, "payment", false, 1)));
	CHECK_EQ(h_reply(&h, "payment.refunded", mid(&h, "payment", true, 1)),
	         ENGINE_OK);
	CHECK_EQ(h_reply(&h, "inventory.released",
	                 mid(&h, "reserve_stock", true, 1)),
	         ENGINE_OK);
	EXPECT(&h, "emit order.cancelled | cancel | finish cancelled");
	CHECK_EQ(h.s.status, SAGA_CANCELLED);
	CHECK_STR(state_of(&h), "cancelled");
	CHECK(saga_status_final(h.s.status));
	h_close(&h);
}

/* In the cooling-off wait: both completed steps are undone, newest
 * first; nothing was in flight. */
static void
test_cancel_while_waiting(void)
{
	struct h h;

	CHECK(cancel_start(&h, "c2") == 0);
	DO(to_payment(&h, "card"));
	CHECK_EQ(h_reply(&h, "payment.charged", mid(&h, "payment", false, 1)),
	         ENGINE_OK);
	CHECK_STR(state_of(&h), "cooling_off");
	CHECK_EQ(h_op(&h, EV_CANCEL, NULL), ENGINE_OK);
	CHECK_STR(stack(&h), "reserve_stock payment");
	CHECK_EQ(h.s.status, SAGA_COMPENSATING);
	h_close(&h);
}

/* Too late, or not at all: refused with the reason, nothing changes. */
static void
test_cancel_refused(void)
{
	struct h h;

	CHECK(cancel_start(&h, "c3") == 0);
	DO(to_payment(&h, "card"));
	CHECK_EQ(h_reply(&h, "payment.charged", mid(&h, "payment", false, 1)),
	         ENGINE_OK);
	CHECK_EQ(h_fire(&h), ENGINE_OK); /* cooling off over: shipping */
	CHECK_STR(state_of(&h), "create_shipment");
	CHECK_EQ(h_reply(&h, "shipping.created",
	                 mid(&h, "create_shipment", false, 1)),
	         ENGINE_OK);
	CHECK_EQ(h.s.status, SAGA_COMPLETED);
	CHECK_NOOP(&h, ENGINE_REJECTED, h_op(&h, EV_CANCEL, NULL));
	CHECK_MSG(strstr(h.out.note, "saga is completed in completed") != NULL,
	          "%s", h.out.note);
	h_close(&h);
	/* a chart without cancel: */
	CHECK(order_start(&h, "c4", "card", 12000) == 0);
	CHECK_NOOP(&h, ENGINE_REJECTED, h_op(&h, EV_CANCEL, NULL));
	CHECK_MSG(strstr(h.out.note, "accepts no cancel") != NULL, "%s",
	          h.out.note);
	h_close(&h);
	/* compensating already (declined): refused */
	CHECK(cancel_start(&h, "c5") == 0);
	DO(to_payment(&h, "card"));
	CHECK_EQ(h_reply(&h, "payment.declined", mid(&h, "payment", false, 1)),
	         ENGINE_OK);
	CHECK_NOOP(&h, ENGINE_REJECTED, h_op(&h, EV_CANCEL, NULL));
	CHECK_MSG(strstr(h.out.note, "compensating") != NULL, "%s", h.out.note);
	h_close(&h);
}

/* Every attempt of the payment times out: its outcome is unknown, so it
 * is refunded too, then the stock is released, then order.failed. */
static void
test_retries_exhausted(void)
{
	struct h h;
	int n;

	CHECK(order_start(&h, "o11", "card", 12000) == 0);
	DO(to_payment(&h, "card"));
	for (n = 1; n < P(&h, "payment", false)->attempts; n++)
		DO(expect_resend(&h, "payment/payment.charge", "card",
		                 "payment", false));
	CHECK_EQ(h.s.attempt, P(&h, "payment", false)->attempts);
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	EXPECT(&h,
	       "send payment/payment.refund [card] o11:payment:undo:1 | timer "
	       "%" PRId64 " @%" PRId64,
	       h.s.timer_seq, h.now + T(&h, "payment", true));
	CHECK_STR(stack(&h), "reserve_stock payment?");
	CHECK_EQ(h.s.status, SAGA_COMPENSATING);
	CHECK_STR(h.c->states[h.s.fail_target].name,
	          h.c->states[st(&h, "payment")->exhausted_target].name);
	CHECK_EQ(h_reply(&h, "payment.refunded", mid(&h, "payment", true, 1)),
	         ENGINE_OK);
	CHECK_EQ(h_reply(&h, "inventory.released",
	                 mid(&h, "reserve_stock", true, 1)),
	         ENGINE_OK);
	EXPECT(&h, "emit order.failed | cancel | finish failed");
	h_close(&h);
}

static void
test_payment_unavailable(void)
{
	struct h h;
	int64_t d;

	CHECK(order_start(&h, "o12", "card", 12000) == 0);
	DO(to_payment(&h, "card"));
	d = chart_retry_delay(P(&h, "payment", false), 2);
	h.now += 7;
	CHECK_EQ(h_reply(&h, "payment.unavailable",
	                 mid(&h, "payment", false, 1)),
	         ENGINE_OK);
	if (d > 0) {
		EXPECT(&h, "timer 3 @%" PRId64, h.now + d);
		CHECK_EQ(h.s.phase, PHASE_BACKOFF);
		/* a duplicate of the same reply finds nothing outstanding */
		CHECK_NOOP(&h, ENGINE_IGNORED,
		           h_reply(&h, "payment.unavailable",
		                   mid(&h, "payment", false, 1)));
		CHECK_EQ(h_fire(&h), ENGINE_OK);
	}
	EXPECT(&h,
	       "send payment/payment.charge [card] o12:payment:2 | timer "
	       "%" PRId64 " @%" PRId64,
	       h.s.timer_seq, h.now + T(&h, "payment", false));
	DO(to_shipment(&h, "payment.charged"));
	h_close(&h);
}

/* ---- late, unknown and duplicate input ---- */

static void
test_late_and_duplicate(void)
{
	struct h h;

	CHECK(order_start(&h, "o13", "card", 12000) == 0);
	/* unmapped reply type for the outstanding command */
	CHECK_NOOP(&h, ENGINE_IGNORED,
	           h_reply(&h, "inventory.bogus",
	                   mid(&h, "reserve_stock", false, 1)));
	CHECK(strstr(h.out.note, "does not map") != NULL);
	/* a reply to a command never sent */
	CHECK_NOOP(&h, ENGINE_IGNORED,
	           h_reply(&h, "inventory.reserved",
	                   mid(&h, "reserve_stock", false, 2)));
	CHECK_NOOP(&h, ENGINE_IGNORED,
	           h_reply(&h, "inventory.reserved", "other:reserve_stock:1"));
	DO(to_payment(&h, "card"));
	/* duplicate of the reply just applied: the step was left */
	CHECK_NOOP(&h, ENGINE_IGNORED,
	           h_reply(&h, "inventory.reserved",
	                   mid(&h, "reserve_stock", false, 1)));
	CHECK(strstr(h.out.note, "outstanding is o13:payment:1") != NULL);
	/* the stale timer of reserve_stock */
	CHECK_NOOP(&h, ENGINE_IGNORED, h_timeout(&h, 1));
	CHECK(strstr(h.out.note, "stale timer 1") != NULL);
	CHECK_NOOP(&h, ENGINE_IGNORED, h_timeout(&h, 3));
	/* an undo's ok reply while running forward */
	CHECK_NOOP(&h, ENGINE_IGNORED,
	           h_reply(&h, "inventory.released",
	                   mid(&h, "reserve_stock", true, 1)));
	h_close(&h);
}

/* ---- compensation retries, stuck, resume ---- */

/* Declined payment; the stock release then times out `n` times. */
static void
to_release_timeouts(struct h *h, const char *id, int n)
{
	int i;

	CHECK(order_start(h, id, "card", 12000) == 0);
	DO(to_payment(h, "card"));
	CHECK_EQ(h_reply(h, "payment.declined", mid(h, "payment", false, 1)),
	         ENGINE_OK);
	for (i = 0; i < n; i++)
		DO(expect_resend(h, "inventory/inventory.release", "",
		                 "reserve_stock", true));
}

static void
test_compensation_retries(void)
{
	struct h h;

	DO(to_release_timeouts(&h, "o14", 1));
	CHECK_EQ(h_reply(&h, "inventory.released",
	                 mid(&h, "reserve_stock", true, 2)),
	         ENGINE_OK);
	EXPECT(&h, "emit order.failed | cancel | finish failed");
	h_close(&h);
}

static void
test_compensation_stuck_resume(void)
{
	struct h h;
	int n;

	CHECK(h_open(&h, ORDER_YAML, "x") == 0); /* for the policy */
	n = P(&h, "reserve_stock", true)->attempts;
	h_close(&h);
	DO(to_release_timeouts(&h, "o15", n - 1));
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	EXPECT(&h, "cancel");
	CHECK_EQ(h.s.status, SAGA_STUCK);
	CHECK_EQ(h.s.phase, PHASE_NONE);
	CHECK_EQ(h.s.timer_at_ms, 0);
	CHECK_STR(state_of(&h), "reserve_stock");
	/* stuck: late replies and timers change nothing */
	CHECK_NOOP(&h, ENGINE_IGNORED,
	           h_reply(&h, "inventory.released",
	                   mid(&h, "reserve_stock", true, n)));
	CHECK_NOOP(&h, ENGINE_IGNORED, h_timeout(&h, h.s.timer_seq));
	CHECK_NOOP(&h, ENGINE_REJECTED, h_op(&h, EV_OP_RETRY, NULL));
	CHECK(strstr(h.out.note, "resume") != NULL);
	CHECK_NOOP(&h, ENGINE_REJECTED, h_op(&h, EV_OP_COMPENSATE, NULL));
	/* resume: fresh attempts, numbering goes on */
	h.now += 1000;
	CHECK_EQ(h_op(&h, EV_OP_RESUME, NULL), ENGINE_OK);
	EXPECT(&h,
	       "send inventory/inventory.release [] %s | timer %" PRId64
	       " @%" PRId64,
	       mid(&h, "reserve_stock", true, n + 1), h.s.timer_seq,
	       h.now + T(&h, "reserve_stock", true));
	CHECK_EQ(h.s.status, SAGA_COMPENSATING);
	CHECK_EQ(h.s.attempt_base, n);
	CHECK_NOOP(&h, ENGINE_REJECTED, h_op(&h, EV_OP_RESUME, NULL));
	/* the fresh budget allows n attempts again */
	while (h.s.attempt - h.s.attempt_base < n)
		DO(expect_resend(&h, "inventory/inventory.release", "",
		                 "reserve_stock", true));
	CHECK_EQ(h.s.attempt, 2 * n);
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	CHECK_EQ(h.s.status, SAGA_STUCK);
	CHECK_EQ(h_op(&h, EV_OP_RESUME, NULL), ENGINE_OK);
	CHECK_EQ(h_reply(&h, "inventory.released",
	                 mid(&h, "reserve_stock", true, 2 * n + 1)),
	         ENGINE_OK);
	EXPECT(&h, "emit order.failed | cancel | finish failed");
	h_close(&h);
}

/* ---- operator events ---- */

static void
test_op_retry(void)
{
	struct h h;

	CHECK(order_start(&h, "o20", "card", 12000) == 0);
	/* awaiting attempt 1: resend now as attempt 2, fresh budget */
	h.now += 50;
	CHECK_EQ(h_op(&h, EV_OP_RETRY, NULL), ENGINE_OK);
	EXPECT(&h,
	       "send inventory/inventory.reserve [] o20:reserve_stock:2 | "
	       "timer 2 @%" PRId64,
	       h.now + T(&h, "reserve_stock", false));
	CHECK_EQ(h.s.attempt, 2);
	CHECK_EQ(h.s.attempt_base, 1);
	CHECK_NOOP(&h, ENGINE_IGNORED,
	           h_reply(&h, "inventory.reserved",
	                   mid(&h, "reserve_stock", false, 1)));
	/* in backoff: resend at once */
	if (chart_retry_delay(P(&h, "reserve_stock", false), 2) > 0) {
		CHECK_EQ(h_fire(&h), ENGINE_OK);
		CHECK_EQ(h.s.phase, PHASE_BACKOFF);
		h.now += 1;
		CHECK_EQ(h_op(&h, EV_OP_RETRY, NULL), ENGINE_OK);
		EXPECT(&h,
		       "send inventory/inventory.reserve [] "
		       "o20:reserve_stock:3 | timer 4 @%" PRId64,
		       h.now + T(&h, "reserve_stock", false));
		CHECK_EQ(h.s.attempt_base, 2);
	}
	CHECK_EQ(h_reply(&h, "inventory.reserved",
	                 mid(&h, "reserve_stock", false, h.s.attempt)),
	         ENGINE_OK);
	CHECK_STR(state_of(&h), "payment");
	CHECK_EQ(h.s.attempt_base, 0);
	/* compensating: resend the undo */
	CHECK_EQ(h_reply(&h, "payment.declined", mid(&h, "payment", false, 1)),
	         ENGINE_OK);
	CHECK_EQ(h_op(&h, EV_OP_RETRY, NULL), ENGINE_OK);
	EXPECT(&h,
	       "send inventory/inventory.release [] o20:reserve_stock:undo:2 | "
	       "timer %" PRId64 " @%" PRId64,
	       h.s.timer_seq, h.now + T(&h, "reserve_stock", true));
	CHECK_EQ(h_reply(&h, "inventory.released",
	                 mid(&h, "reserve_stock", true, 2)),
	         ENGINE_OK);
	CHECK_EQ(h.s.status, SAGA_FAILED);
	CHECK_NOOP(&h, ENGINE_REJECTED, h_op(&h, EV_OP_RETRY, NULL));
	h_close(&h);
}

static void
test_op_resume_rejected(void)
{
	struct h h;

	CHECK(order_start(&h, "o21", "card", 12000) == 0);
	CHECK_NOOP(&h, ENGINE_REJECTED, h_op(&h, EV_OP_RESUME, NULL));
	CHECK(strstr(h.out.note, "not stuck") != NULL);
	CHECK_EQ(h_reply(&h, "inventory.reserved",
	                 mid(&h, "reserve_stock", false, 1)),
	         ENGINE_OK);
	CHECK_EQ(h_reply(&h, "payment.declined", mid(&h, "payment", false, 1)),
	         ENGINE_OK);
	CHECK_NOOP(&h, ENGINE_REJECTED, h_op(&h, EV_OP_RESUME, NULL));
	h_close(&h);
}

static void
test_op_abort(void)
{
	struct h h;
	int n;

	/* running */
	CHECK(order_start(&h, "o22", "card", 12000) == 0);
	DO(to_payment(&h, "card"));
	CHECK_EQ(h_op(&h, EV_OP_ABORT, NULL), ENGINE_OK);
	EXPECT(&h, "cancel | finish aborted");
	CHECK_EQ(h.s.status, SAGA_ABORTED);
	CHECK_STR(stack(&h), "reserve_stock"); /* nothing undone */
	CHECK_NOOP(
	        &h, ENGINE_IGNORED,
	        h_reply(&h, "payment.charged", mid(&h, "payment", false, 1)));
	CHECK_NOOP(&h, ENGINE_REJECTED, h_op(&h, EV_OP_ABORT, NULL));
	CHECK_NOOP(&h, ENGINE_REJECTED, h_op(&h, EV_OP_COMPENSATE, NULL));
	h_close(&h);

	/* compensating */
	CHECK(order_start(&h, "o23", "card", 12000) == 0);
	DO(to_payment(&h, "card"));
	CHECK_EQ(h_reply(&h, "payment.declined", mid(&h, "payment", false, 1)),
	         ENGINE_OK);
	CHECK_EQ(h_op(&h, EV_OP_ABORT, NULL), ENGINE_OK);
	EXPECT(&h, "cancel | finish aborted");
	h_close(&h);

	/* stuck: no timer to cancel */
	CHECK(h_open(&h, ORDER_YAML, "x") == 0);
	n = P(&h, "reserve_stock", true)->attempts;
	h_close(&h);
	DO(to_release_timeouts(&h, "o24", n - 1));
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	CHECK_EQ(h.s.status, SAGA_STUCK);
	CHECK_EQ(h_op(&h, EV_OP_ABORT, NULL), ENGINE_OK);
	EXPECT(&h, "finish aborted");
	h_close(&h);
}

static void
test_op_compensate(void)
{
	struct h h;

	/* the payment is in flight: unknown, refunded too */
	CHECK(order_start(&h, "o25", "card", 12000) == 0);
	DO(to_payment(&h, "card"));
	h.now += 9;
	CHECK_EQ(h_op(&h, EV_OP_COMPENSATE, NULL), ENGINE_OK);
	EXPECT(&h,
	       "send payment/payment.refund [card] o25:payment:undo:1 | timer "
	       "3 "
	       "@%" PRId64,
	       h.now + T(&h, "payment", true));
	CHECK_STR(stack(&h), "reserve_stock payment?");
	CHECK_EQ(h.s.status, SAGA_COMPENSATING);
	CHECK_NOOP(&h, ENGINE_REJECTED, h_op(&h, EV_OP_COMPENSATE, NULL));
	/* the charge's late reply is ignored */
	CHECK_NOOP(
	        &h, ENGINE_IGNORED,
	        h_reply(&h, "payment.charged", mid(&h, "payment", false, 1)));
	CHECK_EQ(h_reply(&h, "payment.refunded", mid(&h, "payment", true, 1)),
	         ENGINE_OK);
	CHECK_EQ(h_reply(&h, "inventory.released",
	                 mid(&h, "reserve_stock", true, 1)),
	         ENGINE_OK);
	EXPECT(&h, "emit order.failed | cancel | finish failed");
	CHECK_NOOP(&h, ENGINE_REJECTED, h_op(&h, EV_OP_COMPENSATE, NULL));
	h_close(&h);
}

static void
test_op_skip(void)
{
	struct h h;

	/* a step: as if its first success reply came (nothing saved) */
	CHECK(order_start(&h, "o26", "card", 12000) == 0);
	DO(to_payment(&h, "card"));
	CHECK_EQ(h_op(&h, EV_OP_SKIP, NULL), ENGINE_OK);
	EXPECT(&h,
	       "%ssend shipping/shipping.create [DE.books] "
	       "o26:create_shipment:1 | timer 3 @%" PRId64,
	       emits(&h, "payment"), h.now + T(&h, "create_shipment", false));
	CHECK_STR(stack(&h), "reserve_stock payment");
	CHECK(value_map_get(&h.s.data, "charge_id") == NULL);
	/* compensating: the current undo is taken as done */
	CHECK_EQ(h_reply(&h, "shipping.failed",
	                 mid(&h, "create_shipment", false, 1)),
	         ENGINE_OK);
	CHECK_STR(state_of(&h), "payment");
	CHECK_EQ(h_op(&h, EV_OP_SKIP, NULL), ENGINE_OK);
	EXPECT(&h,
	       "send inventory/inventory.release [] o26:reserve_stock:undo:1 | "
	       "timer 5 @%" PRId64,
	       h.now + T(&h, "reserve_stock", true));
	CHECK_NOOP(
	        &h, ENGINE_IGNORED,
	        h_reply(&h, "payment.refunded", mid(&h, "payment", true, 1)));
	CHECK_EQ(h_op(&h, EV_OP_SKIP, NULL), ENGINE_OK);
	EXPECT(&h, "emit order.failed | cancel | finish failed");
	CHECK_NOOP(&h, ENGINE_REJECTED, h_op(&h, EV_OP_SKIP, NULL));
	h_close(&h);
}

static void
test_op_skip_stuck(void)
{
	struct h h;
	int n;

	CHECK(h_open(&h, ORDER_YAML, "x") == 0);
	n = P(&h, "reserve_stock", true)->attempts;
	h_close(&h);
	DO(to_release_timeouts(&h, "o27", n - 1));
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	CHECK_EQ(h.s.status, SAGA_STUCK);
	CHECK_EQ(h_op(&h, EV_OP_SKIP, NULL), ENGINE_OK);
	EXPECT(&h, "emit order.failed | finish failed"); /* no timer armed */
	h_close(&h);
}

static void
test_op_mark_compensated(void)
{
	struct h h;
	int n;

	CHECK(order_start(&h, "o28", "card", 12000) == 0);
	CHECK_NOOP(&h, ENGINE_REJECTED,
	           h_op(&h, EV_OP_MARK_COMPENSATED, "reserve_stock"));
	CHECK(strstr(h.out.note, "not compensating") != NULL);
	DO(to_payment(&h, "card"));
	DO(to_shipment(&h, "payment.charged"));
	CHECK_EQ(h_reply(&h, "shipping.failed",
	                 mid(&h, "create_shipment", false, 1)),
	         ENGINE_OK);
	/* not the current undo: it just leaves the stack */
	CHECK_EQ(h_op(&h, EV_OP_MARK_COMPENSATED, "reserve_stock"), ENGINE_OK);
	EXPECT(&h, "%s", "");
	CHECK_STR(stack(&h), "payment");
	CHECK_NOOP(&h, ENGINE_REJECTED,
	           h_op(&h, EV_OP_MARK_COMPENSATED, "reserve_stock"));
	CHECK_NOOP(&h, ENGINE_REJECTED,
	           h_op(&h, EV_OP_MARK_COMPENSATED, "create_shipment"));
	CHECK_NOOP(&h, ENGINE_REJECTED,
	           h_op(&h, EV_OP_MARK_COMPENSATED, "nope"));
	CHECK_NOOP(&h, ENGINE_REJECTED, h_op(&h, EV_OP_MARK_COMPENSATED, NULL));
	/* the refund in flight still completes the saga */
	CHECK_EQ(h_reply(&h, "payment.refunded", mid(&h, "payment", true, 1)),
	         ENGINE_OK);
	EXPECT(&h, "emit order.failed | cancel | finish failed");
	h_close(&h);

	/* the current undo: the next one starts */
	CHECK(order_start(&h, "o29", "card", 12000) == 0);
	DO(to_payment(&h, "card"));
	DO(to_shipment(&h, "payment.charged"));
	CHECK_EQ(h_reply(&h, "shipping.failed",
	                 mid(&h, "create_shipment", false, 1)),
	         ENGINE_OK);
	CHECK_EQ(h_op(&h, EV_OP_MARK_COMPENSATED, "payment"), ENGINE_OK);
	EXPECT(&h,
	       "send inventory/inventory.release [] o29:reserve_stock:undo:1 | "
	       "timer 5 @%" PRId64,
	       h.now + T(&h, "reserve_stock", true));
	h_close(&h);

	/* stuck on the last undo: marking it finishes the saga */
	CHECK(h_open(&h, ORDER_YAML, "x") == 0);
	n = P(&h, "reserve_stock", true)->attempts;
	h_close(&h);
	DO(to_release_timeouts(&h, "o30", n - 1));
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	CHECK_EQ(h.s.status, SAGA_STUCK);
	CHECK_EQ(h_op(&h, EV_OP_MARK_COMPENSATED, "reserve_stock"), ENGINE_OK);
	EXPECT(&h, "emit order.failed | finish failed");
	h_close(&h);
}

/* ---- the wait chart ---- */

#define WAIT_YAML "tests/statecharts/valid/engine_wait.yaml"

static int
wait_start(struct h *h, const char *id, bool region, bool depot, int64_t amount)
{
	struct value o = VALUE_NIL_INIT, cust = VALUE_NIL_INIT;
	enum engine_result r;

	if (h_open(h, WAIT_YAML, id) != 0)
		return -1;
	value_set_map(&o);
	value_map_put_str(&o, "order_id", id);
	if (region)
		value_map_put_str(&o, "region", "eu");
	if (depot)
		value_map_put_str(&o, "depot", "central");
	value_set_map(&cust);
	value_map_put_str(&cust, "tier", "gold");
	value_map_put_str(&cust, "name", "not passed");
	value_map_put(&o, "customer", &cust);
	value_map_put_int(&o, "amount", amount);
	r = h_start(h, &o);
	value_clear(&o);
	return r == ENGINE_OK ? 0 : -1;
}

static void
test_wait_chart(void)
{
	struct h h;
	struct value p = VALUE_NIL_INIT;

	CHECK(wait_start(&h, "w1", true, true, 1500) == 0);
	EXPECT(&h, "timer 1 @%" PRId64, h.now + 10000);
	CHECK_EQ(h.s.phase, PHASE_WAIT);
	CHECK_EQ(h.s.attempt, 0);
	CHECK_STR(state_of(&h), "hold");
	/* nothing to retry or skip in a wait */
	CHECK_NOOP(&h, ENGINE_REJECTED, h_op(&h, EV_OP_RETRY, NULL));
	CHECK_NOOP(&h, ENGINE_REJECTED, h_op(&h, EV_OP_SKIP, NULL));
	CHECK_NOOP(&h, ENGINE_IGNORED, h_timeout(&h, 0));
	CHECK_NOOP(&h, ENGINE_IGNORED,
	           h_reply(&h, "stock.held", mid(&h, "reserve", false, 1)));
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	EXPECT(&h,
	       "send stock/stock.hold [eu] w1:reserve:1 | timer 2 @%" PRId64,
	       h.now + 2000);
	/* pass: nested paths kept nested, missing ones left out */
	CHECK_STR(payload_text(&h, 0),
	          "{order_id:\"w1\",customer:{tier:\"gold\"},amount:1500}");
	value_set_map(&p);
	value_map_put_str(&p, "hold_id", "h-9");
	CHECK_EQ(h_reply_p(&h, "stock.held", mid(&h, "reserve", false, 1), &p),
	         ENGINE_OK);
	value_clear(&p);
	EXPECT(&h,
	       "emit order.held | send mail/mail.send [] w1:notify:1 | timer 3 "
	       "@%" PRId64,
	       h.now + 2000);
	CHECK_STR(payload_text(&h, 0), "{order_id:\"w1\"}");
	/* a zero backoff resends at once */
	h.now += 3;
	CHECK_EQ(h_reply(&h, "mail.bounced", mid(&h, "notify", false, 1)),
	         ENGINE_OK);
	EXPECT(&h, "send mail/mail.send [] w1:notify:2 | timer 4 @%" PRId64,
	       h.now + 2000);
	/* success: amount >= 1000 cools off first */
	CHECK_EQ(h_reply(&h, "mail.sent", mid(&h, "notify", false, 2)),
	         ENGINE_OK);
	EXPECT(&h, "timer 5 @%" PRId64, h.now + 1000);
	CHECK_STR(state_of(&h), "cooloff");
	CHECK_STR(stack(&h), "reserve"); /* notify has nothing to undo */
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	EXPECT(&h, "emit order.done | cancel | finish completed");
	h_close(&h);

	/* below the amount: straight to done */
	CHECK(wait_start(&h, "w2", true, true, 10) == 0);
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	CHECK_EQ(h_reply(&h, "stock.held", mid(&h, "reserve", false, 1)),
	         ENGINE_OK);
	CHECK_EQ(h_reply(&h, "mail.sent", mid(&h, "notify", false, 1)),
	         ENGINE_OK);
	EXPECT(&h, "emit order.done | cancel | finish completed");
	h_close(&h);
}

/* notify runs out of attempts: it has no compensation, so only the
 * reservation is undone, through the undo's own route and timeout. */
static void
test_wait_chart_exhausted(void)
{
	struct h h;

	CHECK(wait_start(&h, "w3", true, true, 10) == 0);
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	CHECK_EQ(h_reply(&h, "stock.held", mid(&h, "reserve", false, 1)),
	         ENGINE_OK);
	CHECK_EQ(h_reply(&h, "mail.bounced", mid(&h, "notify", false, 1)),
	         ENGINE_OK);
	CHECK_EQ(h_reply(&h, "mail.bounced", mid(&h, "notify", false, 2)),
	         ENGINE_OK);
	EXPECT(&h,
	       "send stock/stock.unhold [central] w3:reserve:undo:1 | timer 5 "
	       "@%" PRId64,
	       h.now + 1000);
	CHECK_STR(payload_text(&h, 0), "{order_id:\"w3\"}"); /* no hold_id */
	CHECK_STR(stack(&h), "reserve");
	/* the undo's backoff: 500 ms */
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	EXPECT(&h, "timer 6 @%" PRId64, h.now + 500);
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	EXPECT(&h,
	       "send stock/stock.unhold [central] w3:reserve:undo:2 | timer 7 "
	       "@%" PRId64,
	       h.now + 1000);
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	EXPECT(&h, "cancel");
	CHECK_EQ(h.s.status, SAGA_STUCK);
	h_close(&h);
}

/* Routes that cannot be rendered: the first step fails with nothing to
 * undo; an undo command leaves the saga stuck. */
static void
test_wait_chart_routes(void)
{
	struct h h;

	CHECK(wait_start(&h, "w4", false, true, 10) == 0);
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	EXPECT(&h, "emit order.failed | cancel | finish failed");
	CHECK(strstr(h.out.note, "cannot route") != NULL);
	h_close(&h);

	CHECK(wait_start(&h, "w5", true, false, 10) == 0);
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	CHECK_EQ(h_reply(&h, "stock.held", mid(&h, "reserve", false, 1)),
	         ENGINE_OK);
	CHECK_EQ(h_op(&h, EV_OP_COMPENSATE, NULL), ENGINE_OK);
	EXPECT(&h, "cancel");
	CHECK_EQ(h.s.status, SAGA_STUCK);
	CHECK_STR(state_of(&h), "reserve");
	CHECK(strstr(h.out.note, "cannot route") != NULL);
	/* notify was in flight but has nothing to undo */
	CHECK_STR(stack(&h), "reserve");
	/* resuming cannot help; marking it compensated ends the saga */
	CHECK_EQ(h_op(&h, EV_OP_RESUME, NULL), ENGINE_OK);
	EXPECT(&h, "%s", "");
	CHECK_EQ(h.s.status, SAGA_STUCK);
	CHECK_EQ(h_op(&h, EV_OP_MARK_COMPENSATED, "reserve"), ENGINE_OK);
	EXPECT(&h, "emit order.failed | finish failed");
	h_close(&h);
}

/* Compensate while waiting: nothing in flight, the chart's failure. */
static void
test_wait_chart_compensate(void)
{
	struct h h;

	CHECK(wait_start(&h, "w6", true, true, 10) == 0);
	CHECK_EQ(h_op(&h, EV_OP_COMPENSATE, NULL), ENGINE_OK);
	EXPECT(&h, "emit order.failed | cancel | finish failed");
	CHECK_STR(state_of(&h), "failed");
	h_close(&h);
}

/* ---- bad input ---- */

static void
test_start_errors(void)
{
	struct h h;
	struct value o = VALUE_NIL_INIT;
	struct saga empty;

	CHECK(h_open(&h, ORDER_YAML, "o40") == 0);
	CHECK_EQ(h_reply(&h, "inventory.reserved", "o40:reserve_stock:1"),
	         ENGINE_ERROR);
	CHECK(strstr(h.out.note, "not started") != NULL);
	CHECK_EQ(h_timeout(&h, 0), ENGINE_ERROR);
	CHECK_EQ(h_op(&h, EV_OP_ABORT, NULL), ENGINE_ERROR);
	CHECK_EQ(h_start(&h, NULL), ENGINE_ERROR);
	CHECK(strstr(h.out.note, "not a map") != NULL);
	value_set_int(&o, 3);
	CHECK_EQ(h_start(&h, &o), ENGINE_ERROR);
	make_order(&o, "o40", "card", 100, "DE", "books");
	value_map_put_str(&o, "total_cents", "100");
	CHECK_EQ(h_start(&h, &o), ENGINE_ERROR);
	CHECK_MSG(strstr(h.out.note, "total_cents") != NULL, "%s", h.out.note);
	CHECK_EQ(h.out.nactions, 0);
	CHECK_EQ(h.s.state, -1);
	value_clear(&o);
	make_order(&o, "o40", "card", 100, "DE", "books");
	CHECK_EQ(h_start(&h, &o), ENGINE_OK);
	CHECK_NOOP(&h, ENGINE_ERROR, h_start(&h, &o));
	CHECK(strstr(h.out.note, "already started") != NULL);
	/* the wrong chart */
	h.s.chart_version[0] ^= 1;
	CHECK_EQ(h_timeout(&h, h.s.timer_seq), ENGINE_ERROR);
	CHECK(strstr(h.out.note, "chart version") != NULL);
	h.s.chart_version[0] ^= 1;
	/* a saga without an id cannot start */
	saga_init(&empty, "");
	CHECK_EQ(engine_step(h.c, &empty,
	                     &(struct engine_event){.type = EV_START,
	                                            .payload = &o},
	                     &h.out),
	         ENGINE_ERROR);
	saga_clear(&empty);
	value_clear(&o);
	h_close(&h);
}

/* ---- guards, on charts built in C ---- */

static void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);
	if (p == NULL)
		abort();
	return p;
}

static char *
xs(const char *s)
{
	char *p = strdup(s);
	if (p == NULL)
		abort();
	return p;
}

static struct chart *
cb_new(size_t n)
{
	struct chart *c = xcalloc(1, sizeof(*c));

	c->name = xs("built");
	c->file = xs("<test>");
	snprintf(c->version, sizeof(c->version), "b0b0b0b0b0b0b0b0");
	c->states = xcalloc(n, sizeof(*c->states));
	c->nstates = n;
	c->failure = (int)n - 1;
	return c;
}

static void
cb_final(struct chart *c, int i)
{
	struct chart_state *s = &c->states[i];
	char name[32];

	snprintf(name, sizeof(name), "s%d", i);
	s->name = xs(name);
	s->type = STATE_FINAL;
}

static void
cb_choice(struct chart *c, int i, int dflt)
{
	cb_final(c, i);
	c->states[i].type = STATE_CHOICE;
	c->states[i].default_target = dflt;
}

static void
cb_step(struct chart *c, int i, int next)
{
	struct chart_state *s = &c->states[i];
	struct chart_compensation *cp;

	cb_final(c, i);
	s->type = STATE_STEP;
	s->to = xs("p");
	s->command = xs("p.do");
	s->replies = xcalloc(1, sizeof(*s->replies));
	s->nreplies = 1;
	s->replies[0].type = xs("p.done");
	s->replies[0].kind = REPLY_GOTO;
	s->replies[0].target = next;
	s->timeout_ms = 1000;
	s->retry.attempts = 1;
	s->retry.multiplier = 1.0;
	s->exhausted_target = c->failure;
	cp = s->compensate = xcalloc(1, sizeof(*cp));
	cp->to = xs("p");
	cp->command = xs("p.undo");
	cp->ok = xcalloc(1, sizeof(*cp->ok));
	cp->ok[0] = xs("p.undone");
	cp->nok = 1;
	cp->timeout_ms = 1000;
	cp->retry = s->retry;
}

static void
h_built(struct h *h, struct chart *c)
{
	memset(h, 0, sizeof(*h));
	h->c = c;
	saga_init(&h->s, "b1");
	h->now = 5000;
}

/* `n` choices in a row, then a final: n + 1 entries in one step. */
static enum engine_result
choice_chain(int n)
{
	struct h h;
	struct value o = VALUE_NIL_INIT;
	enum engine_result r;
	int i;

	h_built(&h, cb_new((size_t)n + 1));
	for (i = 0; i < n; i++)
		cb_choice(h.c, i, i + 1);
	cb_final(h.c, n);
	value_set_map(&o);
	r = h_start(&h, &o);
	if (r != ENGINE_OK && (h.s.state != -1 || h.out.nactions != 0))
		r = (enum engine_result) - 1; /* changed on failure */
	value_clear(&o);
	h_close(&h);
	return r;
}

static void
test_transition_loop(void)
{
	struct h h;
	struct value o = VALUE_NIL_INIT;

	CHECK_EQ(choice_chain(63), ENGINE_OK);
	CHECK_EQ(choice_chain(64), ENGINE_ERROR);
	/* two choices pointing at each other */
	h_built(&h, cb_new(3));
	cb_choice(h.c, 0, 1);
	cb_choice(h.c, 1, 0);
	cb_final(h.c, 2);
	value_set_map(&o);
	CHECK_EQ(h_start(&h, &o), ENGINE_ERROR);
	CHECK(strstr(h.out.note, "transition loop") != NULL);
	CHECK_EQ(h.s.state, -1);
	CHECK_EQ(h.out.nactions, 0);
	value_clear(&o);
	h_close(&h);
}

/* 65 steps with a compensation: the 65th cannot be pushed. */
static void
test_stack_full(void)
{
	struct h h;
	struct value o = VALUE_NIL_INIT;
	int i, n = ENGINE_STACK_MAX + 1;

	h_built(&h, cb_new((size_t)n + 1));
	for (i = 0; i < n; i++)
		cb_step(h.c, i, i + 1);
	cb_final(h.c, n);
	value_set_map(&o);
	CHECK_EQ(h_start(&h, &o), ENGINE_OK);
	value_clear(&o);
	for (i = 0; i < n - 1; i++)
		CHECK_EQ(h_reply(&h, "p.done",
		                 mid(&h, h.c->states[i].name, false, 1)),
		         ENGINE_OK);
	CHECK_EQ(h.s.ndone, ENGINE_STACK_MAX);
	CHECK_NOOP(&h, ENGINE_ERROR,
	           h_reply(&h, "p.done",
	                   mid(&h, h.c->states[n - 1].name, false, 1)));
	CHECK(strstr(h.out.note, "stack full") != NULL);
	/* the step in flight cannot be pushed as unknown either; abort can */
	CHECK_NOOP(&h, ENGINE_ERROR, h_op(&h, EV_OP_COMPENSATE, NULL));
	CHECK_EQ(h_op(&h, EV_OP_ABORT, NULL), ENGINE_OK);
	EXPECT(&h, "cancel | finish aborted");
	h_close(&h);
}

/* ---- the storage form ---- */

/* The stored form of h's saga, through saga_from_value and back. */
static void
check_roundtrip(struct h *h)
{
	struct value v = VALUE_NIL_INIT, v2 = VALUE_NIL_INIT;
	struct saga back;
	char err[256];

	CHECK(saga_to_value(&h->s, h->c, &v) == 0);
	CHECK_MSG(saga_from_value(&back, h->c, &v, err, sizeof(err)) == 0, "%s",
	          err);
	CHECK(saga_to_value(&back, h->c, &v2) == 0);
	CHECK(value_equal(&v, &v2));
	CHECK_STR(back.id, h->s.id);
	CHECK_EQ(back.ndone, h->s.ndone);
	CHECK(value_equal(&back.data, &h->s.data));
	saga_clear(&back);
	value_clear(&v);
	value_clear(&v2);
}

static void
test_storage_roundtrip(void)
{
	struct h h;
	int n;

	CHECK(order_start(&h, "o50", "card", 12000) == 0);
	DO(check_roundtrip(&h));
	DO(to_payment(&h, "card"));
	DO(to_shipment(&h, "payment.charged"));
	DO(check_roundtrip(&h));
	CHECK_EQ(h_op(&h, EV_OP_COMPENSATE, NULL), ENGINE_OK);
	DO(check_roundtrip(&h)); /* compensating, with an unknown entry */
	CHECK_EQ(h_op(&h, EV_OP_ABORT, NULL), ENGINE_OK);
	DO(check_roundtrip(&h));
	h_close(&h);

	CHECK(h_open(&h, ORDER_YAML, "x") == 0);
	n = P(&h, "reserve_stock", true)->attempts;
	h_close(&h);
	DO(to_release_timeouts(&h, "o51", n - 1));
	DO(check_roundtrip(&h));
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	DO(check_roundtrip(&h)); /* stuck */
	CHECK_EQ(h_op(&h, EV_OP_RESUME, NULL), ENGINE_OK);
	DO(check_roundtrip(&h)); /* fresh budget */
	h_close(&h);

	CHECK(wait_start(&h, "w50", true, true, 10) == 0);
	DO(check_roundtrip(&h)); /* waiting */
	h_close(&h);
}

/* ---- loops (tests/statecharts/valid/engine_loop.yaml) ---- */

#define LOOP_YAML "tests/statecharts/valid/engine_loop.yaml"

/* Opens the loop chart, starts saga `id` and reserves. */
static int
loop_start(struct h *h, const char *id)
{
	struct value o = VALUE_NIL_INIT;
	enum engine_result r;

	if (h_open(h, LOOP_YAML, id) != 0)
		return -1;
	value_set_map(&o);
	value_map_put_str(&o, "order_id", id);
	value_map_put_int(&o, "amount", 700);
	r = h_start(h, &o);
	value_clear(&o);
	if (r != ENGINE_OK)
		return -1;
	return h_reply(h, "stock.held", mid(h, "reserve", false, 1)) ==
	                       ENGINE_OK
	               ? 0
	               : -1;
}

/* Declined on every visit: the first one waits in `pause`, the second in
 * `slow` (the guard visits.charge >= 2), the third finds `slow` past its
 * bound and goes to `manual`. Each visit sends new ids; a reply to an
 * earlier visit's id is late. Rejected by ops: every visit of `charge`
 * is undone with its own ids, newest first. */
static void
test_loop_declined(void)
{
	struct h h;

	CHECK(loop_start(&h, "L1") == 0);
	EXPECT(&h, "send pay/pay.charge [] L1:charge:1 | timer 2 @%" PRId64,
	       h.now + 2000);
	CHECK_EQ(h_reply(&h, "pay.declined", "L1:charge:1"), ENGINE_OK);
	EXPECT(&h, "timer 3 @%" PRId64, h.now + 1000);
	CHECK_STR(state_of(&h), "pause");
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	EXPECT(&h, "send pay/pay.charge [] L1:charge@2:1 | timer 4 @%" PRId64,
	       h.now + 2000);
	CHECK_STR(payload_text(&h, 0), "{order_id:\"L1\",amount:700}");
	CHECK_EQ(h.s.visits[chart_state_index(h.c, "charge")], 2);
	/* the first visit's reply, replayed: a duplicate, not an answer */
	CHECK_NOOP(&h, ENGINE_IGNORED,
	           h_reply(&h, "pay.declined", "L1:charge:1"));
	CHECK_EQ(h_reply(&h, "pay.declined", "L1:charge@2:1"), ENGINE_OK);
	EXPECT(&h, "timer 5 @%" PRId64, h.now + 5000);
	CHECK_STR(state_of(&h), "slow");
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	EXPECT(&h, "send pay/pay.charge [] L1:charge@3:1 | timer 6 @%" PRId64,
	       h.now + 2000);
	/* a retry within the visit: a new attempt, the same visit */
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	EXPECT(&h, "timer 7 @%" PRId64, h.now + 500);
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	EXPECT(&h, "send pay/pay.charge [] L1:charge@3:2 | timer 8 @%" PRId64,
	       h.now + 2000);
	CHECK_EQ(h_reply(&h, "pay.declined", "L1:charge@3:2"), ENGINE_OK);
	EXPECT(&h, "send ops/ops.review [] L1:manual:1 | timer 9 @%" PRId64,
	       h.now + 2000);
	CHECK(strstr(h.out.note, "slow: visit 2 refused (max_visits 1) -> "
	                         "manual") != NULL);
	CHECK_EQ(h.s.visits[chart_state_index(h.c, "slow")], 1);
	CHECK_STR(stack(&h), "reserve charge charge charge");
	CHECK_EQ(h.s.done[1].visit, 1);
	CHECK_EQ(h.s.done[3].visit, 3);
	DO(check_roundtrip(&h));
	CHECK_EQ(h_reply(&h, "ops.rejected", "L1:manual:1"), ENGINE_OK);
	EXPECT(&h,
	       "send pay/pay.refund [] L1:charge@3:undo:1 | timer 10 "
	       "@%" PRId64,
	       h.now + 2000);
	CHECK_EQ(h_reply(&h, "pay.refunded", "L1:charge@3:undo:1"), ENGINE_OK);
	EXPECT(&h,
	       "send pay/pay.refund [] L1:charge@2:undo:1 | timer 11 "
	       "@%" PRId64,
	       h.now + 2000);
	DO(check_roundtrip(&h));
	CHECK_NOOP(&h, ENGINE_IGNORED,
	           h_reply(&h, "pay.refunded", "L1:charge@3:undo:1"));
	CHECK_EQ(h_reply(&h, "pay.refunded", "L1:charge@2:undo:1"), ENGINE_OK);
	EXPECT(&h,
	       "send pay/pay.refund [] L1:charge:undo:1 | timer 12 @%" PRId64,
	       h.now + 2000);
	CHECK_EQ(h_reply(&h, "pay.refunded", "L1:charge:undo:1"), ENGINE_OK);
	EXPECT(&h,
	       "send stock/stock.unhold [] L1:reserve:undo:1 | timer 13 "
	       "@%" PRId64,
	       h.now + 2000);
	CHECK_EQ(h_reply(&h, "stock.unheld", "L1:reserve:undo:1"), ENGINE_OK);
	EXPECT(&h, "emit order.failed | cancel | finish failed");
	h_close(&h);
}

/* Past a step's own bound: ops sends the card round once more, but
 * `charge` was entered 3 times, its max_visits: its too_many fails the
 * saga instead of a fourth charge. */
static void
test_loop_step_bound(void)
{
	struct h h;

	CHECK(loop_start(&h, "L2") == 0);
	CHECK_EQ(h_reply(&h, "pay.declined", "L2:charge:1"), ENGINE_OK);
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	CHECK_EQ(h_reply(&h, "pay.declined", "L2:charge@2:1"), ENGINE_OK);
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	CHECK_EQ(h_reply(&h, "pay.declined", "L2:charge@3:1"), ENGINE_OK);
	CHECK_STR(state_of(&h), "manual");
	CHECK_EQ(h_reply(&h, "ops.retry_card", "L2:manual:1"), ENGINE_OK);
	EXPECT(&h,
	       "send pay/pay.refund [] L2:charge@3:undo:1 | timer 8 @%" PRId64,
	       h.now + 2000);
	CHECK(strstr(h.out.note, "charge: visit 4 refused (max_visits 3) -> "
	                         "fail failed") != NULL);
	CHECK_EQ(h.s.status, SAGA_COMPENSATING);
	CHECK_EQ(h.s.visits[chart_state_index(h.c, "charge")], 3);
	h_close(&h);
}

/* A wait bounds a step's loop: `ship` is lost twice and sent again after
 * `resend`; the third loss finds `resend` past its bound and fails. */
static void
test_loop_wait_bound(void)
{
	struct h h;

	CHECK(loop_start(&h, "L3") == 0);
	CHECK_EQ(h_reply(&h, "pay.charged", "L3:charge:1"), ENGINE_OK);
	EXPECT(&h, "send ship/ship.send [] L3:ship:1 | timer 3 @%" PRId64,
	       h.now + 2000);
	CHECK_EQ(h_reply(&h, "ship.lost", "L3:ship:1"), ENGINE_OK);
	EXPECT(&h, "timer 4 @%" PRId64, h.now + 2000);
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	EXPECT(&h, "send ship/ship.send [] L3:ship@2:1 | timer 5 @%" PRId64,
	       h.now + 2000);
	CHECK_EQ(h_reply(&h, "ship.lost", "L3:ship@2:1"), ENGINE_OK);
	CHECK_EQ(h_fire(&h), ENGINE_OK);
	EXPECT(&h, "send ship/ship.send [] L3:ship@3:1 | timer 7 @%" PRId64,
	       h.now + 2000);
	CHECK_EQ(h_reply(&h, "ship.lost", "L3:ship@3:1"), ENGINE_OK);
	EXPECT(&h,
	       "send ship/ship.recall [] L3:ship@3:undo:1 | timer 8 @%" PRId64,
	       h.now + 2000);
	CHECK(strstr(h.out.note, "resend: visit 3 refused (max_visits 2)") !=
	      NULL);
	CHECK_STR(stack(&h), "reserve charge ship ship ship");
	/* an operator marks visit 3 undone by hand: visit 2 is next */
	CHECK_EQ(h_op(&h, EV_OP_MARK_COMPENSATED, "ship"), ENGINE_OK);
	EXPECT(&h,
	       "send ship/ship.recall [] L3:ship@2:undo:1 | timer 9 @%" PRId64,
	       h.now + 2000);
	h_close(&h);
}

/* A record written before loops has no visits: it reads as the first
 * visit of its state and of every step on its stack, so the ids in
 * flight stay the same. A record with a visit out of range is refused. */
static void
test_storage_without_visits(void)
{
	struct h h;
	struct value v = VALUE_NIL_INIT, e = VALUE_NIL_INIT;
	struct saga back;
	char err[256];
	const struct value *done;

	CHECK(order_start(&h, "o64", "card", 12000) == 0);
	DO(to_payment(&h, "card"));
	CHECK(saga_to_value(&h.s, h.c, &v) == 0);
	drop_key(&v, "visits");
	done = value_map_get(&v, "done");
	CHECK(done != NULL && done->u.a.len == 1);
	for (size_t i = 0; i < v.u.m.len; i++)
		if (strcmp(v.u.m.items[i].key, "done") == 0)
			drop_key(&v.u.m.items[i].val.u.a.items[0], "visit");
	saga_init(&back, "x");
	CHECK_MSG(saga_from_value(&back, h.c, &v, err, sizeof(err)) == 0, "%s",
	          err);
	CHECK_EQ(back.visits[chart_state_index(h.c, "payment")], 1);
	CHECK_EQ(back.visits[chart_state_index(h.c, "reserve_stock")], 1);
	CHECK_EQ(back.done[0].visit, 1);
	saga_clear(&h.s);
	h.s = back;
	CHECK_EQ(h_reply(&h, "payment.charged", mid(&h, "payment", false, 1)),
	         ENGINE_OK);
	value_clear(&v);
	/* visit beyond the entries counted */
	CHECK(saga_to_value(&h.s, h.c, &v) == 0);
	value_set_array(&e);
	value_map_put(&v, "visits", &e);
	CHECK(saga_from_value(&back, h.c, &v, err, sizeof(err)) != 0);
	CHECK_MSG(strstr(err, "entered 0 times") != NULL ||
	                  strstr(err, "never entered") != NULL,
	          "%s", err);
	value_clear(&v);
	h_close(&h);
}

/* A copy of map `v` without `key`. */
static void
without(struct value *out, const struct value *v, const char *key)
{
	size_t i;

	value_set_map(out);
	for (i = 0; i < v->u.m.len; i++) {
		struct value c = VALUE_NIL_INIT;
		if (strcmp(v->u.m.items[i].key, key) == 0)
			continue;
		value_copy(&c, &v->u.m.items[i].val);
		value_map_put(out, v->u.m.items[i].key, &c);
	}
}

/* Applies one corruption to a good record and checks the message. */
enum corrupt { C_PUT_INT, C_PUT_STR, C_DROP, C_DONE_STATE, C_DONE_NOT_MAP };

static void
expect_rejected(struct h *h, enum corrupt how, const char *key, int64_t i,
                const char *s, const char *msg)
{
	struct value good = VALUE_NIL_INIT, bad = VALUE_NIL_INIT,
	             x = VALUE_NIL_INIT;
	struct saga out;
	char err[256];
	int rc;

	CHECK(saga_to_value(&h->s, h->c, &good) == 0);
	switch (how) {
	case C_DROP:
		without(&bad, &good, key);
		break;
	case C_PUT_INT:
	case C_PUT_STR:
		value_copy(&bad, &good);
		if (how == C_PUT_INT)
			value_set_int(&x, i);
		else
			value_set_str(&x, s);
		value_map_put(&bad, key, &x);
		break;
	case C_DONE_STATE:
	case C_DONE_NOT_MAP: {
		struct value done = VALUE_NIL_INIT, e = VALUE_NIL_INIT;
		value_copy(&bad, &good);
		value_set_array(&done);
		if (how == C_DONE_STATE) {
			struct value b = VALUE_NIL_INIT;
			value_set_map(&e);
			value_map_put_int(&e, "state", i);
			value_set_bool(&b, false);
			value_map_put(&e, "unknown", &b);
		} else {
			value_set_int(&e, i);
		}
		value_array_push(&done, &e);
		value_map_put(&bad, "done", &done);
		break;
	}
	}
	memset(&out, 0x5a, sizeof(out));
	rc = saga_from_value(&out, h->c, &bad, err, sizeof(err));
	CHECK_EQ(rc, -1);
	CHECK_MSG(strstr(err, msg) != NULL, "error \"%s\", want \"%s\"", err,
	          msg);
	CHECK_MSG(strncmp(err, "saga record: ", 13) == 0, "%s", err);
	CHECK_EQ(out.state, -1); /* left initialised and empty */
	saga_clear(&out);
	value_clear(&good);
	value_clear(&bad);
}

static void
test_storage_rejects(void)
{
	struct h h;
	struct value v = VALUE_NIL_INIT;
	struct saga out;
	char err[256];
	int pay, done;

	CHECK(order_start(&h, "o52", "card", 12000) == 0);
	DO(to_payment(&h, "card"));
	pay = chart_state_index(h.c, "payment");
	done = chart_state_index(h.c, "completed");
	value_set_int(&v, 1);
	CHECK_EQ(saga_from_value(&out, h.c, &v, err, sizeof(err)), -1);
	CHECK_STR(err, "saga record: not a map");
	saga_clear(&out);
	DO(expect_rejected(&h, C_DROP, "phase", 0, NULL, "missing \"phase\""));
	DO(expect_rejected(&h, C_DROP, "data", 0, NULL, "missing \"data\""));
	DO(expect_rejected(&h, C_PUT_INT, "zzz", 1, NULL,
	                   "unknown key \"zzz\""));
	DO(expect_rejected(&h, C_PUT_STR, "state", 0, "payment",
	                   "state is string, expected integer"));
	DO(expect_rejected(&h, C_PUT_INT, "status", 1, NULL,
	                   "status is integer, expected string"));
	DO(expect_rejected(&h, C_PUT_INT, "state", 99, NULL,
	                   "state 99 out of range"));
	DO(expect_rejected(&h, C_PUT_INT, "state", -1, NULL,
	                   "state -1 out of range"));
	DO(expect_rejected(&h, C_PUT_STR, "status", 0, "bogus",
	                   "unknown status \"bogus\""));
	DO(expect_rejected(&h, C_PUT_STR, "phase", 0, "bogus",
	                   "unknown phase \"bogus\""));
	DO(expect_rejected(&h, C_PUT_STR, "chart_version", 0, "ffff",
	                   "chart version ffff"));
	DO(expect_rejected(&h, C_PUT_INT, "v", 2, NULL, "format version 2"));
	DO(expect_rejected(&h, C_PUT_STR, "id", 0, "", "id is empty"));
	DO(expect_rejected(&h, C_DONE_STATE, NULL, done, NULL,
	                   "is not a step with a compensation"));
	DO(expect_rejected(&h, C_DONE_STATE, NULL, 1000, NULL,
	                   "is not a step with a compensation"));
	DO(expect_rejected(&h, C_DONE_NOT_MAP, NULL, 1, NULL,
	                   "done[0] is not"));
	DO(expect_rejected(&h, C_PUT_INT, "fail_target", pay, NULL,
	                   "is not a final state"));
	DO(expect_rejected(&h, C_PUT_INT, "attempt", 99, NULL,
	                   "outside the policy"));
	DO(expect_rejected(&h, C_PUT_INT, "attempt", 0, NULL,
	                   "outside the policy"));
	DO(expect_rejected(&h, C_PUT_INT, "attempt_base", 5, NULL,
	                   "out of range"));
	DO(expect_rejected(&h, C_PUT_STR, "phase", 0, "none",
	                   "does not fit status"));
	DO(expect_rejected(&h, C_PUT_STR, "phase", 0, "wait",
	                   "does not fit step state"));
	DO(expect_rejected(&h, C_PUT_STR, "status", 0, "compensating",
	                   "is not the top of done"));
	DO(expect_rejected(&h, C_PUT_STR, "status", 0, "completed",
	                   "does not fit status"));
	DO(expect_rejected(&h, C_PUT_INT, "timer_seq", -1, NULL,
	                   "timer_seq is negative"));
	DO(expect_rejected(&h, C_PUT_INT, "timer_seq", 0, NULL,
	                   "without a timer"));
	DO(expect_rejected(&h, C_PUT_INT, "state", done, NULL,
	                   "running in final state completed"));
	h_close(&h);
}

/* ---- determinism, ids, names ---- */

/* A scenario with retries and compensation; returns everything it saw. */
static void
transcript(char *buf, size_t cap)
{
	struct h h;
	size_t len;
	char *p;

	buf[0] = '\0';
	if (order_start(&h, "o60", "card", 12000) != 0)
		return;
	cat(buf, cap, h.acts);
	h_fire(&h);
	cat(buf, cap, h.acts);
	h_fire(&h);
	cat(buf, cap, h.acts);
	h_reply(&h, "inventory.reserved", mid(&h, "reserve_stock", false, 2));
	cat(buf, cap, h.acts);
	h_reply(&h, "payment.declined", mid(&h, "payment", false, 1));
	cat(buf, cap, h.acts);
	cat(buf, cap, h.out.note);
	p = packed(&h, &len);
	if (p != NULL)
		cat(buf, cap,
		    fmt("%zu:%02x%02x", len, (unsigned char)p[0],
		        (unsigned char)p[len - 1]));
	free(p);
	h_close(&h);
}

static void
test_deterministic(void)
{
	char a[8192], b[8192];
	char id[ENGINE_MSGID_MAX];

	transcript(a, sizeof(a));
	transcript(b, sizeof(b));
	CHECK(strlen(a) > 100);
	CHECK_STR(a, b);
	CHECK_EQ(
	        engine_message_id(id, sizeof(id), "o1", "payment", 1, false, 3),
	        12);
	CHECK_STR(id, "o1:payment:3");
	engine_message_id(id, sizeof(id), "o1", "payment", 1, true, 2);
	CHECK_STR(id, "o1:payment:undo:2");
	CHECK_EQ(engine_message_id(id, 5, "o1", "payment", 1, false, 3), 12);
	CHECK_STR(id, "o1:p");
	/* the first visit keeps the form ids had before loops */
	engine_message_id(id, sizeof(id), "o1", "payment", 0, false, 1);
	CHECK_STR(id, "o1:payment:1");
	engine_message_id(id, sizeof(id), "o1", "payment", 2, false, 1);
	CHECK_STR(id, "o1:payment@2:1");
	engine_message_id(id, sizeof(id), "o1", "payment", 3, true, 2);
	CHECK_STR(id, "o1:payment@3:undo:2");
}

static void
test_names(void)
{
	static const char *const names[] = {"running",   "compensating",
	                                    "completed", "failed",
	                                    "stuck",     "aborted"};
	enum saga_status st;
	int i;

	for (i = 0; i < 6; i++) {
		CHECK_STR(saga_status_name((enum saga_status)i), names[i]);
		CHECK_EQ(saga_status_parse(names[i], &st), 0);
		CHECK_EQ(st, i);
	}
	CHECK_EQ(saga_status_parse("Running", &st), -1);
	CHECK_EQ(saga_status_parse("", &st), -1);
	CHECK_EQ(saga_status_parse(NULL, &st), -1);
	CHECK_STR(saga_status_name((enum saga_status)42), "unknown");
	CHECK_STR(saga_phase_name(PHASE_NONE), "none");
	CHECK_STR(saga_phase_name(PHASE_AWAIT), "await");
	CHECK_STR(saga_phase_name(PHASE_BACKOFF), "backoff");
	CHECK_STR(saga_phase_name(PHASE_WAIT), "wait");
	CHECK_STR(engine_result_name(ENGINE_OK), "ok");
	CHECK_STR(engine_result_name(ENGINE_IGNORED), "ignored");
	CHECK_STR(engine_result_name(ENGINE_REJECTED), "rejected");
	CHECK_STR(engine_result_name(ENGINE_ERROR), "error");
	CHECK_STR(engine_result_name((enum engine_result)9), "unknown");
	CHECK(!saga_status_final(SAGA_RUNNING));
	CHECK(!saga_status_final(SAGA_COMPENSATING));
	CHECK(!saga_status_final(SAGA_STUCK));
	CHECK(saga_status_final(SAGA_COMPLETED));
	CHECK(saga_status_final(SAGA_FAILED));
	CHECK(saga_status_final(SAGA_ABORTED));
}

static void
test_saga_init_copy(void)
{
	struct saga a, b;
	char longid[300];

	memset(longid, 'x', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	saga_init(&a, longid);
	CHECK_EQ(strlen(a.id), SAGA_ID_MAX - 1);
	CHECK_EQ(a.state, -1);
	CHECK_EQ(a.fail_target, -1);
	CHECK_EQ(a.timer_seq, 0);
	CHECK_EQ(a.data.type, VALUE_MAP);
	value_map_put_str(&a.data, "k", "v");
	CHECK_EQ(saga_copy(&b, &a), 0);
	saga_clear(&a);
	CHECK_STR(vstr(&b.data), "{k:\"v\"}"); /* deep */
	saga_clear(&b);
	saga_clear(NULL);
}

int
main(void)
{
	RUN(test_card_success);
	RUN(test_cod_success);
	RUN(test_cod_over_limit);
	RUN(test_decline);
	RUN(test_stock_out);
	RUN(test_shipment_failure);
	RUN(test_cod_collection_cancelled);
	RUN(test_route_missing);
	RUN(test_timeouts_then_success);
	RUN(test_absent_not_counted);
	RUN(test_cancel_during_payment);
	RUN(test_cancel_while_waiting);
	RUN(test_cancel_refused);
	RUN(test_deadline_ends_step);
	RUN(test_deadline_caps_backoff);
	RUN(test_storage_without_deadline);
	RUN(test_retries_exhausted);
	RUN(test_payment_unavailable);
	RUN(test_late_and_duplicate);
	RUN(test_compensation_retries);
	RUN(test_compensation_stuck_resume);
	RUN(test_op_retry);
	RUN(test_op_resume_rejected);
	RUN(test_op_abort);
	RUN(test_op_compensate);
	RUN(test_op_skip);
	RUN(test_op_skip_stuck);
	RUN(test_op_mark_compensated);
	RUN(test_wait_chart);
	RUN(test_wait_chart_exhausted);
	RUN(test_wait_chart_routes);
	RUN(test_wait_chart_compensate);
	RUN(test_start_errors);
	RUN(test_transition_loop);
	RUN(test_stack_full);
	RUN(test_storage_roundtrip);
	RUN(test_storage_rejects);
	RUN(test_loop_declined);
	RUN(test_loop_step_bound);
	RUN(test_loop_wait_bound);
	RUN(test_storage_without_visits);
	RUN(test_deterministic);
	RUN(test_names);
	RUN(test_saga_init_copy);
	return check_summary();
}

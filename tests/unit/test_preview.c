/* test_preview.c -- what an operator action would do (preview.h), on
 * statecharts/order.yaml: the preview is the engine's own answer (same
 * commands and message ids as applying the action), the saga previewed is
 * not changed, refusals carry the engine's note, and the compensation
 * plans list every undo in the order the engine runs them. */
#include <stdio.h>
#include <string.h>

#include "chart_load.h"
#include "check.h"
#include "engine.h"
#include "preview.h"
#include "value.h"

#define ORDER_YAML "statecharts/order.yaml"
#define NOW        1000000

struct w {
	struct chart *c;
	struct saga s;
	struct engine_output out;
};

static struct chart *
load(void)
{
	struct chart_errors errs;
	struct chart *c;

	chart_errors_init(&errs);
	c = chart_load_file(ORDER_YAML, &errs);
	chart_errors_clear(&errs);
	return c;
}

static void
order(struct value *o)
{
	struct value items = VALUE_NIL_INIT, ship = VALUE_NIL_INIT;

	value_set_map(o);
	value_map_put_str(o, "order_id", "o1");
	value_map_put_str(o, "customer_id", "c1");
	value_set_array(&items);
	value_map_put(o, "items", &items);
	value_map_put_int(o, "total_cents", 1200);
	value_map_put_str(o, "currency", "EUR");
	value_map_put_str(o, "payment_method", "card");
	value_map_put_str(o, "card_token", "tok");
	value_set_map(&ship);
	value_map_put_str(&ship, "country", "india");
	value_map_put(o, "ship_to", &ship);
	value_map_put_str(o, "category", "books");
}

static enum engine_result
step(struct w *w, struct engine_event *ev)
{
	engine_output_clear(&w->out);
	return engine_step(w->c, &w->s, ev, &w->out);
}

/* A saga of o1 awaiting its payment (attempt 1). */
static int
at_payment(struct w *w)
{
	struct value o = VALUE_NIL_INIT, empty = VALUE_NIL_INIT;
	struct engine_event ev = {.type = EV_START, .now_ms = NOW};
	int rc;

	memset(w, 0, sizeof(*w));
	w->c = load();
	if (w->c == NULL)
		return -1;
	saga_init(&w->s, "o1");
	order(&o);
	ev.payload = &o;
	rc = step(w, &ev) == ENGINE_OK ? 0 : -1;
	value_set_map(&empty);
	ev = (struct engine_event){.type = EV_REPLY,
	                           .now_ms = NOW,
	                           .reply_type = "inventory.reserved",
	                           .in_reply_to = "o1:reserve_stock:1",
	                           .payload = &empty};
	if (rc == 0 && step(w, &ev) != ENGINE_OK)
		rc = -1;
	value_clear(&o);
	value_clear(&empty);
	return rc;
}

static void
w_clear(struct w *w)
{
	engine_output_clear(&w->out);
	saga_clear(&w->s);
	chart_free(w->c);
}

/* The first SEND of out, or NULL. */
static const struct engine_action *
first_send(const struct engine_output *out)
{
	for (size_t i = 0; i < out->nactions; i++)
		if (out->actions[i].type == ACT_SEND)
			return &out->actions[i];
	return NULL;
}

static void
test_names(void)
{
	enum engine_event_type op;

	CHECK_EQ(preview_op_parse("mark-compensated", &op), 0);
	CHECK_EQ(op, EV_OP_MARK_COMPENSATED);
	CHECK_EQ(preview_op_parse("mark_compensated", &op), 0);
	CHECK_STR(preview_op_type(op), "operator.mark_compensated");
	CHECK_EQ(preview_op_parse("resume", &op), 0);
	CHECK_STR(preview_op_name(op), "resume");
	CHECK_EQ(preview_op_parse("delete", &op), -1);
	CHECK_EQ(preview_op_parse(NULL, &op), -1);
}

/* retry: the command re-sent with the id applying it sends; the saga
 * previewed stays as it was. */
static void
test_retry_matches_apply(void)
{
	struct w w;
	struct preview p;
	struct engine_event ev = {.type = EV_OP_RETRY, .now_ms = NOW + 10};
	const struct engine_action *a;
	char id[ENGINE_MSGID_MAX];

	CHECK(at_payment(&w) == 0);
	CHECK_EQ(preview_run(w.c, &w.s, EV_OP_RETRY, NULL, NOW + 10, &p), 0);
	CHECK_EQ(p.out.result, ENGINE_OK);
	a = first_send(&p.out);
	CHECK(a != NULL);
	CHECK_STR(a->command, "payment.charge");
	CHECK_STR(a->message_id, "o1:payment:2");
	CHECK_STR(p.state, "payment");
	CHECK_EQ(p.status, SAGA_RUNNING);
	CHECK_EQ(p.nplan, 0);
	CHECK_EQ(w.s.attempt, 1); /* untouched */
	snprintf(id, sizeof(id), "%s", a->message_id);
	preview_clear(&p);
	CHECK_EQ(step(&w, &ev), ENGINE_OK);
	a = first_send(&w.out);
	CHECK(a != NULL);
	CHECK_STR(a->message_id, id);
	w_clear(&w);
}

/* compensate: the step in flight (unknown) is undone first, then the
 * stock; abort lists the same undos as left undone. */
static void
test_compensate_and_abort_plans(void)
{
	struct w w;
	struct preview p;
	const struct engine_action *a;

	CHECK(at_payment(&w) == 0);
	CHECK_EQ(preview_run(w.c, &w.s, EV_OP_COMPENSATE, NULL, NOW, &p), 0);
	CHECK_EQ(p.out.result, ENGINE_OK);
	CHECK_EQ(p.status, SAGA_COMPENSATING);
	CHECK(p.plan_runs);
	CHECK_EQ(p.nplan, 2);
	CHECK_STR(p.plan[0].state, "payment");
	CHECK_STR(p.plan[0].command, "payment.refund");
	CHECK_STR(p.plan[0].message_id, "o1:payment:undo:1");
	CHECK(p.plan[0].unknown && p.plan[0].current);
	CHECK_STR(p.plan[1].command, "inventory.release");
	CHECK_STR(p.plan[1].to, "inventory");
	CHECK(!p.plan[1].unknown && !p.plan[1].current);
	a = first_send(&p.out);
	CHECK(a != NULL && a->compensation);
	CHECK_STR(a->message_id, p.plan[0].message_id);
	preview_clear(&p);

	CHECK_EQ(preview_run(w.c, &w.s, EV_OP_ABORT, NULL, NOW, &p), 0);
	CHECK_EQ(p.out.result, ENGINE_OK);
	CHECK_EQ(p.status, SAGA_ABORTED);
	CHECK(!p.plan_runs);
	CHECK_EQ(p.nplan, 2);
	CHECK(first_send(&p.out) == NULL);
	preview_clear(&p);
	CHECK_EQ(w.s.status, SAGA_RUNNING);
	w_clear(&w);
}

/* An action the saga's status does not allow: the engine's refusal. */
static void
test_refused(void)
{
	struct w w;
	struct preview p;

	CHECK(at_payment(&w) == 0);
	CHECK_EQ(preview_run(w.c, &w.s, EV_OP_RESUME, NULL, NOW, &p), 0);
	CHECK_EQ(p.out.result, ENGINE_REJECTED);
	CHECK(p.out.note[0] != '\0');
	CHECK_EQ(p.out.nactions, 0);
	CHECK_EQ(p.status, SAGA_RUNNING);
	CHECK_STR(p.state, "payment");
	preview_clear(&p);
	w_clear(&w);
}

/* A saga stuck on the refund: resume re-sends that undo as a new
 * attempt, then the stock is released; its plan says so. */
static void
test_stuck_resume(void)
{
	struct w w;
	struct preview p;
	struct preview_undo plan[PREVIEW_PLAN_MAX];
	struct engine_event ev = {.type = EV_OP_COMPENSATE, .now_ms = NOW};
	const struct engine_action *a;
	int n;

	CHECK(at_payment(&w) == 0);
	CHECK_EQ(step(&w, &ev), ENGINE_OK);
	for (int i = 0; i < 20 && w.s.status == SAGA_COMPENSATING; i++) {
		ev = (struct engine_event){.type = EV_TIMEOUT,
		                           .now_ms = w.s.timer_at_ms,
		                           .timer_seq = w.s.timer_seq};
		CHECK_EQ(step(&w, &ev), ENGINE_OK);
	}
	CHECK_EQ(w.s.status, SAGA_STUCK);
	n = preview_compensation(w.c, &w.s, NOW, plan, PREVIEW_PLAN_MAX);
	CHECK_EQ(n, 2);
	CHECK(plan[0].current);
	CHECK_STR(plan[0].command, "payment.refund");
	CHECK_EQ(preview_run(w.c, &w.s, EV_OP_RESUME, NULL, NOW, &p), 0);
	CHECK_EQ(p.out.result, ENGINE_OK);
	CHECK_EQ(p.status, SAGA_COMPENSATING);
	a = first_send(&p.out);
	CHECK(a != NULL && a->compensation);
	CHECK_STR(a->message_id, p.plan[0].message_id);
	CHECK(strcmp(a->message_id, plan[0].message_id) != 0); /* new id */
	CHECK_EQ(p.nplan, 2);
	CHECK_STR(p.plan[1].command, "inventory.release");
	preview_clear(&p);
	/* a finished saga has nothing to compensate */
	ev = (struct engine_event){.type = EV_OP_ABORT, .now_ms = NOW};
	CHECK_EQ(step(&w, &ev), ENGINE_OK);
	CHECK_EQ(preview_compensation(w.c, &w.s, NOW, plan, PREVIEW_PLAN_MAX),
	         0);
	w_clear(&w);
}

int
main(void)
{
	RUN(test_names);
	RUN(test_retry_matches_apply);
	RUN(test_compensate_and_abort_plans);
	RUN(test_refused);
	RUN(test_stuck_resume);
	return check_summary();
}

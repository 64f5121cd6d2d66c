/* Unit tests of the statechart tools (orchestrator/core/chart_tools.h):
 * dot output of statecharts/order.yaml and the wait chart, diff against
 * modified copies written to a temporary directory (and sagactl's exit
 * codes for it), the failure plan's compensation order, and simulations
 * of the order flow: happy path, payment declined, shipping timeouts,
 * a compensation that fails, a cash-on-delivery order over the limit, and
 * bad scripts. Output is captured with open_memstream and searched. */
#include <stdlib.h>

#include "chart_load.h"
#include "chart_tools.h"
#include "testutil.h"

#define ORDER_YAML "statecharts/order.yaml"
#define WAIT_YAML  "tests/statecharts/valid/engine_wait.yaml"

/* ---- harness ---- */

struct cap {
	FILE *f;
	char *buf;
	size_t len;
};

static int
cap_open(struct cap *c)
{
	memset(c, 0, sizeof(*c));
	c->f = open_memstream(&c->buf, &c->len);
	return c->f != NULL ? 0 : -1;
}

/* Closes the stream; c->buf holds the text (freed by cap_free). */
static const char *
cap_text(struct cap *c)
{
	if (c->f != NULL) {
		fclose(c->f);
		c->f = NULL;
	}
	return c->buf != NULL ? c->buf : "";
}

static void
cap_free(struct cap *c)
{
	if (c->f != NULL)
		fclose(c->f);
	free(c->buf);
	memset(c, 0, sizeof(*c));
}

static struct chart *
load(const char *path)
{
	struct chart *c = chart_tools_load(path, stderr);
	if (c == NULL)
		fprintf(stderr, "cannot load %s\n", path);
	return c;
}

/* True if `b` occurs after `a` in text (both present). */
/* "finishes on <version>,\n" (one at a time). */
static const char *
finishes_on(const char *v)
{
	static char buf[256];

	snprintf(buf, sizeof(buf), "finishes on %s,\n", v);
	return buf;
}

static int
in_order(const char *text, const char *a, const char *b)
{
	const char *pa = strstr(text, a);
	return pa != NULL && strstr(pa + strlen(a), b) != NULL;
}

/* Writes text with `from` replaced by `to` (once) to dir/name. */
static int
write_variant(const char *dir, const char *name, const char *text,
              const char *from, const char *to, char *path, size_t cap)
{
	const char *at = from != NULL ? strstr(text, from) : NULL;
	FILE *f;

	snprintf(path, cap, "%s/%s", dir, name);
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	if (at == NULL) {
		fputs(text, f);
	} else {
		fwrite(text, 1, (size_t)(at - text), f);
		fputs(to, f);
		fputs(at + strlen(from), f);
	}
	return fclose(f);
}

/* ---- dot ---- */

static void
test_dot_order(void)
{
	static const char *const want[] = {
	        "digraph \"order\" {",
	        "\"__start\" -> \"reserve_stock\";",
	        "\"reserve_stock\" [label=\"reserve_stock\\ninventory.reserve",
	        "\"cod_limit\" [label=\"cod_limit\", shape=diamond",
	        "\"payment\" [label=\"payment\\npayment.charge",
	        "\"create_shipment\" [label=\"create_shipment",
	        "\"completed\" [label=\"completed\\norder.completed\", "
	        "shape=doublecircle, color=darkgreen",
	        "\"failed\" [label=\"failed\\norder.failed\", "
	        "shape=doublecircle, color=red",
	        /* reply edges */
	        "\"reserve_stock\" -> \"cod_limit\" "
	        "[label=\"inventory.reserved\"];",
	        "\"reserve_stock\" -> \"failed\" "
	        "[label=\"inventory.rejected\", "
	        "style=dashed, color=red",
	        "\"payment\" -> \"create_shipment\" [label=\"payment.charged"
	        "\\npayment.collection_registered\"];",
	        "\"payment\" -> \"failed\" [label=\"payment.declined\", "
	        "style=dashed, color=red",
	        "\"payment\" -> \"payment\" [label=\"payment.unavailable"
	        "\\n(retry)\", style=dotted",
	        "\"create_shipment\" -> \"completed\" "
	        "[label=\"shipping.created\"];",
	        "\"create_shipment\" -> \"failed\" [label=\"shipping.failed\", "
	        "style=dashed, color=red",
	        /* exhausted attempts */
	        "\"payment\" -> \"failed\" [label=\"4 attempts exhausted"
	        "\\n(timeout 5s each)\", style=dashed, color=red",
	        /* choice */
	        "\"cod_limit\" -> \"failed\" [label=\"payment_method == "
	        "\\\"cod\\\" &&\\ntotal_cents > 50000\", style=dashed, "
	        "color=red",
	        "\"cod_limit\" -> \"payment\" [label=\"default\"];",
	        /* compensations */
	        "\"reserve_stock.undo\" [label=\"undo: inventory.release -> "
	        "inventory",
	        "\"reserve_stock.undo\" -> \"reserve_stock\" "
	        "[label=\"compensates\", style=dotted",
	        "\"payment.undo\" [label=\"undo: payment.refund -> payment",
	        "\"create_shipment.undo\" [label=\"undo: shipping.cancel",
	};
	struct chart *c = load(ORDER_YAML);
	struct cap o;
	const char *t;
	size_t i;

	CHECK(c != NULL);
	CHECK(cap_open(&o) == 0);
	CHECK_EQ(chart_dot(o.f, c), 0);
	t = cap_text(&o);
	for (i = 0; i < c->nstates; i++) {
		char node[CHART_NAME_MAX + 8];
		snprintf(node, sizeof(node), "\"%s\" [", c->states[i].name);
		if (strstr(t, node) == NULL) {
			CHECK_FAIL_("no node for state %s", c->states[i].name);
			break;
		}
	}
	for (i = 0; i < sizeof(want) / sizeof(want[0]) && !check_current_failed;
	     i++)
		if (strstr(t, want[i]) == NULL)
			CHECK_FAIL_("dot output lacks: %s\n%s", want[i], t);
	/* the failure final is red, the success final is not */
	CHECK(strstr(t, "\"completed\" [label=\"completed\\norder.completed\", "
	                "shape=doublecircle, color=red") == NULL);
	CHECK(t[strlen(t) - 2] == '}');
	cap_free(&o);
	chart_free(c);
}

static void
test_dot_wait(void)
{
	struct chart *c = load(WAIT_YAML);
	struct cap o;
	const char *t;

	CHECK(c != NULL);
	CHECK(cap_open(&o) == 0);
	CHECK_EQ(chart_dot(o.f, c), 0);
	t = cap_text(&o);
	CHECK(strstr(t, "\"hold\" [label=\"hold\\nwait 10s\", shape=ellipse") !=
	      NULL);
	CHECK(strstr(t, "\"hold\" -> \"reserve\" [label=\"after 10s\"];") !=
	      NULL);
	CHECK(strstr(t, "\"big\" -> \"cooloff\" [label=\"amount >= 1000\"];") !=
	      NULL);
	CHECK(strstr(t, "\"big\" -> \"done\" [label=\"default\"];") != NULL);
	CHECK(strstr(t, "\"notify\" -> \"notify\" [label=\"mail.bounced") !=
	      NULL);
	/* a step without compensation has no note */
	CHECK(strstr(t, "\"notify.undo\"") == NULL);
	CHECK(strstr(t, "route {depot}") != NULL);
	cap_free(&o);
	chart_free(c);
}

/* ---- diff ---- */

static void
test_diff(void)
{
	char *dir = testutil_tmpdir("chart_tools"), *text = NULL, *out = NULL;
	char pa[512], pb[512], pc[512], pd[512];
	struct chart *a = NULL, *b = NULL, *d;
	struct cap o = {0};
	const char *bin = getenv("SAGA_BIN_DIR");
	const char *t;
	int rc;

	CHECK(dir != NULL);
	text = testutil_slurp(ORDER_YAML, NULL);
	CHECK(text != NULL);
	CHECK(write_variant(dir, "a.yaml", text, NULL, NULL, pa, sizeof(pa)) ==
	      0);
	CHECK(write_variant(dir, "b.yaml", text,
	                    "payment.declined: {fail: failed}",
	                    "payment.declined: retry", pb, sizeof(pb)) == 0);
	/* only a comment changed: same version */
	CHECK(write_variant(dir, "c.yaml", text, "# The order flow.",
	                    "# The order flow (reworded).", pc,
	                    sizeof(pc)) == 0);
	/* a wait state added before completing */
	CHECK(write_variant(
	              dir, "d0.yaml", text, "      shipping.created: completed",
	              "      shipping.created: review", pd, sizeof(pd)) == 0);
	free(text);
	text = testutil_slurp(pd, NULL);
	CHECK(text != NULL);
	CHECK(write_variant(dir, "d.yaml", text, "  completed:\n",
	                    "  review: {type: wait, duration: 1m, next: "
	                    "completed}\n  completed:\n",
	                    pd, sizeof(pd)) == 0);
	free(text);
	text = NULL;

	a = load(pa);
	b = load(pb);
	CHECK(a != NULL && b != NULL);
	CHECK(cap_open(&o) == 0);
	CHECK_EQ(chart_diff(o.f, a, b), 1);
	t = cap_text(&o);
	CHECK_MSG(strstr(t, "~ payment: on payment.declined: {fail: failed} "
	                    "-> retry\n") != NULL,
	          "%s", t);
	CHECK(strstr(t, a->version) != NULL && strstr(t, b->version) != NULL);
	/* nothing else changed */
	CHECK(strstr(t, "cod_limit") == NULL && strstr(t, "\n+ ") == NULL);
	cap_free(&o);

	CHECK(cap_open(&o) == 0);
	CHECK_EQ(chart_diff(o.f, a, a), 0);
	CHECK(strstr(cap_text(&o), "same version") != NULL);
	cap_free(&o);

	d = load(pd);
	CHECK(d != NULL);
	CHECK(cap_open(&o) == 0);
	CHECK_EQ(chart_diff(o.f, a, d), 1);
	t = cap_text(&o);
	CHECK_MSG(strstr(t, "+ state review (wait)\n") != NULL &&
	                  strstr(t, "~ create_shipment: on shipping.created: "
	                            "completed -> review\n") != NULL,
	          "%s", t);
	cap_free(&o);
	chart_free(d);

	if (bin == NULL)
		SKIP("SAGA_BIN_DIR not set: sagactl exit codes not checked");
	rc = testutil_sh(&out, "%s/sagactl statechart diff %s %s", bin, pa, pb);
	CHECK_EQ(rc, 1);
	CHECK(out != NULL &&
	      strstr(out, "~ payment: on payment.declined") != NULL);
	free(out);
	out = NULL;
	CHECK_EQ(testutil_sh(NULL, "%s/sagactl statechart diff %s %s", bin, pa,
	                     pc),
	         0);
	CHECK_EQ(testutil_sh(NULL, "%s/sagactl statechart diff %s 2>/dev/null",
	                     bin, pa),
	         2);
	CHECK_EQ(testutil_sh(NULL,
	                     "%s/sagactl statechart diff %s %s/none.yaml "
	                     "2>/dev/null",
	                     bin, pa, dir),
	         2);
	CHECK_EQ(testutil_sh(NULL, "%s/sagactl statechart diff --help", bin),
	         0);

	chart_free(a);
	chart_free(b);
	testutil_rmtree(dir);
	free(dir);
}

/* ---- plan ---- */

static void
test_plan(void)
{
	struct chart *c = load(ORDER_YAML);
	struct cap o;
	const char *t, *p;

	CHECK(c != NULL);
	CHECK(cap_open(&o) == 0);
	CHECK_EQ(chart_plan(o.f, c), 0);
	t = cap_text(&o);
	/* the success path */
	CHECK(strstr(t, "reserve_stock -[inventory.reserved]-> cod_limit "
	                "-[default]-> payment -[payment.charged|payment."
	                "collection_registered]-> create_shipment "
	                "-[shipping.created]-> completed\n") != NULL);
	/* a shipping failure: refund, then release */
	p = strstr(t, "create_shipment: reply shipping.failed\n");
	CHECK_MSG(p != NULL, "%s", t);
	CHECK(strncmp(strstr(p, "compensate: "),
	              "compensate: payment.refund (payment), then "
	              "inventory.release (reserve_stock)\n",
	              strlen("compensate: payment.refund (payment), then "
	                     "inventory.release (reserve_stock)\n")) == 0);
	CHECK(strstr(p, "final:      failed") != NULL);
	/* shipping attempts exhausted: the shipment may exist, cancel first */
	p = strstr(t, "create_shipment: attempts exhausted or deadline 10m "
	              "passed (3 attempts");
	CHECK(p != NULL);
	CHECK(in_order(p, "shipping.cancel (create_shipment, outcome unknown)",
	               "payment.refund (payment), then inventory.release"));
	/* out of stock: nothing to undo */
	p = strstr(t, "reserve_stock: reply inventory.rejected\n");
	CHECK(p != NULL);
	CHECK(strncmp(strstr(p, "compensate: "), "compensate: nothing\n", 20) ==
	      0);
	/* the cod limit branch */
	p = strstr(t, "cod_limit: branch payment_method == \"cod\" && "
	              "total_cents > 50000\n");
	CHECK(p != NULL);
	CHECK(strncmp(strstr(p, "compensate: "),
	              "compensate: inventory.release (reserve_stock)\n",
	              46) == 0);
	/* 2 per step (failure reply, exhausted) + the branch */
	CHECK(strstr(t, "  7. ") != NULL && strstr(t, "  8. ") == NULL);
	cap_free(&o);
	chart_free(c);
}

/* ---- simulate ---- */

static int
sim(const char *path, const char *script, const struct value *order,
    int64_t latency, struct chart_sim_result *res, char **text)
{
	struct chart_sim_options so = {
	        .script = script, .order = order, .latency_ms = latency};
	struct chart *c = load(path);
	char err[512];
	struct cap o;
	int rc;

	*text = NULL;
	if (c == NULL || cap_open(&o) != 0) {
		chart_free(c);
		return -9;
	}
	memset(res, 0, sizeof(*res));
	rc = chart_simulate(o.f, c, &so, res, err, sizeof(err));
	cap_text(&o);
	if (rc < 0) {
		/* the error replaces the timeline, for the checks */
		free(o.buf);
		o.buf = strdup(err);
	}
	*text = o.buf;
	chart_free(c);
	return rc;
}

static void
test_sim_happy(void)
{
	struct chart_sim_result r;
	char *t;

	CHECK_EQ(sim(ORDER_YAML,
	             "reserve_stock=ok, payment=ok, "
	             "create_shipment=shipping.created",
	             NULL, 100, &r, &t),
	         0);
	CHECK_EQ(r.status, SAGA_COMPLETED);
	CHECK_STR(r.state, "completed");
	CHECK_EQ(r.unused_items, 0);
	CHECK_EQ(r.end_ms, 300);
	CHECK(in_order(t, "send    inventory.reserve -> inventory",
	               "send    payment.charge -> payment [card]"));
	CHECK(in_order(t, "payment.charge",
	               "send    shipping.create -> "
	               "shipping [india.electronics]"));
	CHECK(in_order(t, "emit    order.shipped", "emit    order.completed"));
	CHECK(strstr(t, "finish  completed") != NULL);
	CHECK(strstr(t, "undo") == NULL);
	free(t);

	/* no script at all: every command gets ok */
	CHECK_EQ(sim(ORDER_YAML, NULL, NULL, 0, &r, &t), 0);
	CHECK_EQ(r.status, SAGA_COMPLETED);
	free(t);
}

static void
test_sim_declined(void)
{
	struct chart_sim_result r;
	char *t;

	CHECK_EQ(sim(ORDER_YAML, "reserve_stock=ok, payment=declined", NULL,
	             100, &r, &t),
	         0);
	CHECK_EQ(r.status, SAGA_FAILED);
	CHECK_STR(r.state, "failed");
	CHECK_MSG(in_order(t, "REPLY payment.declined",
	                   "send    undo inventory.release -> inventory"),
	          "%s", t);
	CHECK(strstr(t, "payment.refund") == NULL);
	CHECK(strstr(t, "finish  failed") != NULL);
	free(t);
}

static void
test_sim_shipping_timeout(void)
{
	struct chart_sim_result r;
	char *t;

	CHECK_EQ(sim(ORDER_YAML, "create_shipment=timeout x3", NULL, 100, &r,
	             &t),
	         0);
	CHECK_EQ(r.status, SAGA_FAILED);
	CHECK_EQ(r.unused_items, 0);
	CHECK(strstr(t, "id order-1:create_shipment:3") != NULL);
	CHECK(strstr(t, "id order-1:create_shipment:4") == NULL);
	/* the shipment's outcome is unknown: it is cancelled too, first */
	CHECK_MSG(in_order(t, "send    undo shipping.cancel",
	                   "send    undo payment.refund"),
	          "%s", t);
	CHECK(in_order(t, "send    undo payment.refund",
	               "send    undo inventory.release"));
	CHECK(strstr(t, "finish  failed") != NULL);
	/* 3 attempts of 5s with backoffs 500ms and 1s, replies at 100ms */
	CHECK(strstr(t, " 16.700s  TIMEOUT #7") != NULL);
	free(t);
}

static void
test_sim_undo_fails(void)
{
	struct chart_sim_result r;
	char *t;

	CHECK_EQ(sim(ORDER_YAML,
	             "payment=ok, create_shipment=failed, "
	             "payment.undo=fail",
	             NULL, 100, &r, &t),
	         1);
	CHECK_EQ(r.status, SAGA_STUCK);
	CHECK_STR(r.state, "payment");
	CHECK(strstr(t, "not final: stuck undoing payment") != NULL);
	/* inventory is never released while the refund is unresolved */
	CHECK(strstr(t, "inventory.release") == NULL);
	free(t);

	/* an undo that times out once, then succeeds */
	CHECK_EQ(sim(ORDER_YAML, "payment=declined, reserve_stock.undo=timeout",
	             NULL, 100, &r, &t),
	         0);
	CHECK_EQ(r.status, SAGA_FAILED);
	CHECK(strstr(t, "id order-1:reserve_stock:undo:2") != NULL);
	free(t);
}

static void
test_sim_order(void)
{
	struct chart_sim_result r;
	struct value order = VALUE_NIL_INIT, given = VALUE_NIL_INIT;
	struct chart *c = load(ORDER_YAML);
	char err[256], *t;
	size_t i;

	CHECK(c != NULL);
	CHECK(chart_sim_default_order(c, &order) == 0);
	for (i = 0; i < c->nfields; i++)
		CHECK_MSG(value_path_get(&order, c->fields[i].path) != NULL,
		          "default order lacks %s", c->fields[i].path);
	CHECK(chart_sim_parse_order("{payment_method: cod, total_cents: "
	                            "60000, \"note\": \"5\"}",
	                            &given, err, sizeof(err)) == 0);
	CHECK_EQ(value_path_get(&given, "total_cents")->type, VALUE_INT);
	CHECK_EQ(value_path_get(&given, "note")->type, VALUE_STR);
	for (i = 0; i < given.u.m.len; i++)
		CHECK(value_map_put(&order, given.u.m.items[i].key,
		                    &given.u.m.items[i].val) == 0);
	value_clear(&given);
	CHECK_EQ(sim(ORDER_YAML, NULL, &order, 100, &r, &t), 0);
	CHECK_EQ(r.status, SAGA_FAILED);
	CHECK(strstr(t, "cod_limit: branch 1 -> fail failed") != NULL);
	CHECK(strstr(t, "payment.charge") == NULL);
	free(t);

	CHECK(chart_sim_parse_order("[1, 2]", &given, err, sizeof(err)) != 0);
	CHECK(chart_sim_parse_order("{a: [", &given, err, sizeof(err)) != 0);
	CHECK(given.type == VALUE_NIL);

	/* a declared field of the wrong type: the engine refuses the start */
	value_clear(&order);
	CHECK(chart_sim_parse_order("{total_cents: \"lots\"}", &order, err,
	                            sizeof(err)) == 0);
	CHECK_EQ(sim(ORDER_YAML, NULL, &order, 100, &r, &t), -1);
	CHECK(strstr(t, "total_cents") != NULL);
	free(t);
	value_clear(&order);
	chart_free(c);
}

static void
test_sim_bad_script(void)
{
	static const char *const bad[] = {
	        "payment",                      /* no '=' */
	        "nosuch=ok",                    /* not a state */
	        "cod_limit=ok",                 /* not a step */
	        "payment=bogus",                /* not a reply of payment */
	        "payment=declined x0",          /* bad repeat */
	        "create_shipment.undo=",        /* no outcome */
	        "payment.undo=payment.charged", /* not an ok reply */
	};
	struct chart_sim_result r;
	size_t i;
	char *t;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = sim(ORDER_YAML, bad[i], NULL, 0, &r, &t);
		CHECK_MSG(rc == -2, "script %s: rc %d", bad[i], rc);
		CHECK_MSG(strstr(t, "script: ") != NULL, "%s", t);
		free(t);
	}
	/* suffixes and full types are both accepted */
	CHECK_EQ(sim(ORDER_YAML,
	             "payment=payment.charged, "
	             "create_shipment=created",
	             NULL, 0, &r, &t),
	         0);
	CHECK_EQ(r.status, SAGA_COMPLETED);
	free(t);
	/* a reply slower than the timeout becomes the timeout: every
	 * attempt, the undo's too */
	CHECK_EQ(sim(ORDER_YAML, NULL, NULL, 6000, &r, &t), 1);
	CHECK_EQ(r.status, SAGA_STUCK);
	CHECK(strstr(t, "would come after") != NULL);
	free(t);
}

static void
test_sim_wait_chart(void)
{
	struct chart_sim_result r;
	char *t;

	CHECK_EQ(sim(WAIT_YAML, "notify=bounced x2", NULL, 10, &r, &t), 0);
	CHECK_EQ(r.status, SAGA_FAILED);
	CHECK(strstr(t, "TIMER #1 (wait over)") != NULL);
	CHECK(in_order(t, "REPLY mail.bounced", "undo stock.unhold"));
	free(t);
}

/* ---- loops (statecharts/examples/dunning.yaml) ---- */

#define DUNNING_YAML "statecharts/examples/dunning.yaml"

/* plan unrolls the loop up to pause's bound, then takes its too_many;
 * each visit of payment is undone with its visit named. dot draws the
 * bound and its edge. */
static void
test_loop_plan_dot(void)
{
	struct chart *c = load(DUNNING_YAML);
	struct cap o;
	const char *t, *p;

	CHECK(c != NULL);
	CHECK(cap_open(&o) == 0);
	CHECK_EQ(chart_plan(o.f, c), 0);
	t = cap_text(&o);
	CHECK(strstr(t, "  3. reserve_stock -[inventory.reserved]-> payment "
	                "-[payment.declined]-> pause -[wait]-> payment "
	                "-[payment.declined]-> pause -[wait]-> payment "
	                "-[payment.charged|payment.collection_registered]-> "
	                "create_shipment -[shipping.created]-> completed\n") !=
	      NULL);
	CHECK(strstr(t, "  4. ") == strstr(t, "  4. create_shipment"));
	p = strstr(t, "pause: entered past max_visits 2 (too_many)\n");
	CHECK_MSG(p != NULL, "%s", t);
	CHECK(strstr(p, "-[payment.declined]-> pause (past max_visits 2)\n") !=
	      NULL);
	CHECK(strstr(p, "compensate: payment.refund (payment, visit 3), then "
	                "payment.refund (payment, visit 2), then "
	                "payment.refund (payment), then inventory.release "
	                "(reserve_stock)\n") != NULL);
	CHECK(strstr(t, "loop:") == NULL);
	cap_free(&o);

	CHECK(cap_open(&o) == 0);
	CHECK_EQ(chart_dot(o.f, c), 0);
	t = cap_text(&o);
	CHECK(strstr(t,
	             "\"pause\" [label=\"pause\\nwait 1h\\nmax_visits 2\"") !=
	      NULL);
	CHECK(strstr(t,
	             "\"pause\" -> \"failed\" [label=\"visit 3\\n(too_many)\", "
	             "style=dashed, color=red") != NULL);
	CHECK(strstr(t, "\"pause\" -> \"payment\" [label=\"after 1h\"]") !=
	      NULL);
	cap_free(&o);
	chart_free(c);
}

/* A card declined twice is charged on the third visit, each visit with
 * its own ids; declined three times, pause's bound fails the order. */
static void
test_loop_sim(void)
{
	struct chart_sim_result res;
	char *t = NULL;

	CHECK_EQ(sim(DUNNING_YAML, "payment=declined x2", NULL, 100, &res, &t),
	         0);
	CHECK_EQ(res.status, SAGA_COMPLETED);
	CHECK(in_order(t, "id order-1:payment:1\n",
	               "id order-1:payment@2:1\n"));
	CHECK(in_order(t, "id order-1:payment@2:1\n",
	               "id order-1:payment@3:1\n"));
	CHECK(strstr(t, "id order-1:payment@4") == NULL);
	free(t);
	CHECK_EQ(sim(DUNNING_YAML, "payment=declined x3", NULL, 100, &res, &t),
	         0);
	CHECK_EQ(res.status, SAGA_FAILED);
	CHECK(strstr(t, "pause: visit 3 refused (max_visits 2) -> fail "
	                "failed") != NULL);
	CHECK(in_order(t, "id order-1:payment@3:undo:1\n",
	               "id order-1:payment@2:undo:1\n"));
	CHECK(in_order(t, "id order-1:payment@2:undo:1\n",
	               "id order-1:payment:undo:1\n"));
	free(t);
	/* a misspelt reply in the script: the closest one is suggested */
	CHECK_EQ(sim(DUNNING_YAML, "payment=declnied", NULL, 100, &res, &t),
	         -2);
	CHECK(strstr(t, "; did you mean \"declined\"?") != NULL);
	free(t);
}

/* After the differences, diff says what a reload does to running
 * sagas: they finish on their version; the states gone are named. */
static void
test_diff_running(void)
{
	struct chart *a = load(ORDER_YAML), *b = load(DUNNING_YAML);
	struct cap o;
	const char *t;

	CHECK(a != NULL && b != NULL);
	CHECK(cap_open(&o) == 0);
	CHECK_EQ(chart_diff(o.f, a, b), 1);
	t = cap_text(&o);
	CHECK(strstr(t, "+ pause: max_visits: 2") == NULL); /* a new state */
	CHECK(strstr(t, "+ state pause (wait)\n") != NULL);
	CHECK(in_order(t, "~ payment: on payment.declined",
	               "\nrunning sagas: every saga started on "));
	CHECK(strstr(t, finishes_on(a->version)) != NULL);
	CHECK(strstr(t, "starts only new sagas of chart dunning\n  on ") !=
	      NULL);
	CHECK(strstr(t, "(sagas in them\n  finish there, on the old version): "
	                "cod_limit (choice)\n") != NULL);
	cap_free(&o);
	CHECK(cap_open(&o) == 0);
	CHECK_EQ(chart_diff(o.f, b, b), 0);
	t = cap_text(&o);
	CHECK(strstr(t, "running sagas: nothing changes for them") != NULL);
	cap_free(&o);
	CHECK(cap_open(&o) == 0);
	CHECK_EQ(chart_diff(o.f, b, a), 1);
	t = cap_text(&o);
	CHECK(strstr(t, "~ pause") == NULL &&
	      strstr(t, "- state pause") != NULL);
	CHECK(strstr(t, "on the old version): pause (wait)\n") != NULL);
	cap_free(&o);
	chart_free(a);
	chart_free(b);
}

int
main(void)
{
	RUN(test_dot_order);
	RUN(test_dot_wait);
	RUN(test_diff);
	RUN(test_plan);
	RUN(test_loop_plan_dot);
	RUN(test_loop_sim);
	RUN(test_diff_running);
	RUN(test_sim_happy);
	RUN(test_sim_declined);
	RUN(test_sim_shipping_timeout);
	RUN(test_sim_undo_fails);
	RUN(test_sim_order);
	RUN(test_sim_bad_script);
	RUN(test_sim_wait_chart);
	return check_summary();
}

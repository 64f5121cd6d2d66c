/* Parallel states in the chart tools (chart_tools.h) on
 * statecharts/examples/parallel.yaml: dot draws a fork and a join node,
 * plan lists each branch's failure points with what the other branches
 * add, simulate scripts each branch's step by its name; and diff sees a
 * changed branch. */
#include <stdlib.h>

#include "chart_load.h"
#include "chart_tools.h"
#include "testutil.h"

#define PAR_YAML "statecharts/examples/parallel.yaml"

struct cap {
	FILE *f;
	char *buf;
	size_t len;
};

static const char *
cap_text(struct cap *c)
{
	fclose(c->f);
	return c->buf != NULL ? c->buf : "";
}

static struct chart *
load(void)
{
	struct chart_errors errs;
	struct chart *c;

	chart_errors_init(&errs);
	c = chart_load_file(PAR_YAML, &errs);
	if (c == NULL)
		fprintf(stderr, "%s\n", errs.count ? errs.items[0].text : "?");
	chart_errors_clear(&errs);
	return c;
}

static void
test_dot(void)
{
	struct chart *c = load();
	struct cap o = {0};
	const char *t;

	CHECK(c != NULL);
	o.f = open_memstream(&o.buf, &o.len);
	CHECK_EQ(chart_dot(o.f, c), 0);
	t = cap_text(&o);
	CHECK(strstr(t, "\"reserve_and_pay\" -> \"reserve_stock\" "
	                "[label=\"branch 1\"]") != NULL);
	CHECK(strstr(t, "\"reserve_and_pay\" -> \"cod_limit\" "
	                "[label=\"branch 2\"]") != NULL);
	CHECK(strstr(t, "\"reserve_stock\" -> \"reserve_and_pay.join\"") !=
	      NULL);
	CHECK(strstr(t, "\"reserve_and_pay.join\" -> \"create_shipment\" "
	                "[label=\"all joined\"]") != NULL);
	free(o.buf);
	chart_free(c);
}

static void
test_plan(void)
{
	struct chart *c = load();
	struct cap o = {0};
	const char *t, *p;

	CHECK(c != NULL);
	o.f = open_memstream(&o.buf, &o.len);
	CHECK_EQ(chart_plan(o.f, c), 0);
	t = cap_text(&o);
	CHECK_MSG(strstr(t, "reserve_and_pay -[fork: branch 1]-> reserve_stock "
	                    "-[inventory.reserved; join; branch 2]-> "
	                    "cod_limit -[default]-> payment") != NULL,
	          "%s", t);
	p = strstr(t, "reserve_stock: reply inventory.rejected\n");
	CHECK(p != NULL);
	CHECK(strncmp(strstr(p, "compensate: "),
	              "compensate: nothing\n     and, if done or in flight "
	              "by then: payment.refund (payment, branch 2)\n",
	              90) == 0);
	free(o.buf);
	chart_free(c);
}

/* Runs a script; returns the final status and end time. */
static int
sim(const struct chart *c, const char *script, struct chart_sim_result *res,
    char **text)
{
	struct chart_sim_options opt = {script, NULL, 200, 0};
	struct cap o = {0};
	char err[256];
	int rc;

	o.f = open_memstream(&o.buf, &o.len);
	rc = chart_simulate(o.f, c, &opt, res, err, sizeof(err));
	cap_text(&o);
	*text = o.buf;
	return rc;
}

static void
test_simulate(void)
{
	struct chart *c = load();
	struct chart_sim_result res;
	char *t = NULL;

	CHECK(c != NULL);
	/* both at once: 200 ms for the pair, 200 ms to ship */
	CHECK_EQ(sim(c, "", &res, &t), 0);
	CHECK_EQ(res.status, SAGA_COMPLETED);
	CHECK_EQ(res.end_ms, 400);
	free(t);
	/* the card declined after the stock was reserved: released */
	CHECK_EQ(sim(c, "payment=declined", &res, &t), 0);
	CHECK_EQ(res.status, SAGA_FAILED);
	CHECK(strstr(t, "undo inventory.release") != NULL);
	free(t);
	/* declined while the stock is in flight (its reply would be late):
	 * the reservation may happen, so it is released too */
	CHECK_EQ(sim(c, "payment=declined, reserve_stock=timeout", &res, &t),
	         0);
	CHECK_EQ(res.status, SAGA_FAILED);
	CHECK(strstr(t, "reserve_stock in flight: outcome unknown") != NULL);
	CHECK(strstr(t, "undo inventory.release") != NULL);
	free(t);
	/* the stock times out twice while the payment is done */
	CHECK_EQ(sim(c, "reserve_stock=timeout x2", &res, &t), 0);
	CHECK_EQ(res.status, SAGA_COMPLETED);
	CHECK_EQ(res.unused_items, 0);
	CHECK(strstr(t, "branch 2: joined") != NULL);
	free(t);
	chart_free(c);
}

int
main(void)
{
	RUN(test_dot);
	RUN(test_plan);
	RUN(test_simulate);
	return check_summary();
}

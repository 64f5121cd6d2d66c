/* test_jsonout -- orchestrator/svc/jsonout: what sagactl --json and the
 * console's JSON API print. Text that is not UTF-8 becomes U+FFFD and the
 * document still parses; a value tree maps to JSON as the header says;
 * a saga's summary has its fields in one fixed order (both sagactl and
 * the console print it, so a script reads either the same way). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "jsonout.h"

/* j written compact, then released; the text is the caller's. */
static char *
text_of(json_t *j)
{
	char *s = j != NULL ? jsonout_text(j) : NULL;
	json_decref(j);
	return s;
}

/* A string alone is no JSON document for jansson: in an array. */
static char *
str_text(const char *in)
{
	json_t *a = json_array();
	if (a != NULL && json_array_append_new(a, jsonout_str(in)) != 0) {
		json_decref(a);
		return NULL;
	}
	return text_of(a);
}

static void
test_str_repairs_bad_utf8(void)
{
	char *s = str_text("ok \xff caf\xc3\xa9 \xe2\x82");

	CHECK_STR(s,
	          "[\"ok \xef\xbf\xbd caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd\"]");
	free(s);
	s = str_text(NULL);
	CHECK_STR(s, "[\"\"]");
	free(s);
}

static void
test_value_tree(void)
{
	struct value m, v;
	char *s;

	value_set_map(&m);
	value_set_nil(&v);
	CHECK(value_map_put(&m, "nil", &v) == 0);
	value_set_float(&v, NAN);
	CHECK(value_map_put(&m, "nan", &v) == 0);
	CHECK(value_set_bin(&v, "\x00\x01\x02", 3) == 0);
	CHECK(value_map_put(&m, "bin", &v) == 0);
	value_set_int(&v, -7);
	CHECK(value_map_put(&m, "int", &v) == 0);
	CHECK(value_set_str(&v, "\xc0z") == 0);
	CHECK(value_map_put(&m, "str", &v) == 0);
	s = text_of(jsonout_value(&m));
	CHECK_STR(s, "{\"nil\":null,\"nan\":null,\"bin\":\"(3 bytes)\","
	             "\"int\":-7,\"str\":\"\xef\xbf\xbdz\"}");
	free(s);
	value_clear(&m);
}

static void
test_saga_summary(void)
{
	struct store_saga_summary sum;
	char *s;

	memset(&sum, 0, sizeof(sum));
	snprintf(sum.id, sizeof(sum.id), "order-1");
	snprintf(sum.chart, sizeof(sum.chart), "order");
	snprintf(sum.chart_version, sizeof(sum.chart_version),
	         "0123456789abcdef");
	snprintf(sum.status, sizeof(sum.status), "running");
	snprintf(sum.state, sizeof(sum.state), "charge_payment");
	snprintf(sum.phase, sizeof(sum.phase), "forward");
	sum.attempt = 2;
	sum.started_ms = 1700000000000;
	sum.state_entered_ms = 1700000000500;
	sum.updated_ms = 1700000000900;
	snprintf(sum.trace_id, sizeof(sum.trace_id), "not printed");
	s = text_of(jsonout_saga_summary(&sum));
	CHECK_STR(s, "{\"id\":\"order-1\",\"chart\":\"order\","
	             "\"chart_version\":\"0123456789abcdef\","
	             "\"status\":\"running\",\"state\":\"charge_payment\","
	             "\"phase\":\"forward\",\"attempt\":2,"
	             "\"started_at\":1700000000000,"
	             "\"state_entered_at\":1700000000500,"
	             "\"updated_at\":1700000000900}");
	free(s);
}

int
main(void)
{
	RUN(test_str_repairs_bad_utf8);
	RUN(test_value_tree);
	RUN(test_saga_summary);
	return check_summary();
}

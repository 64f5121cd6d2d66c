/* Unit tests of lib/metrics: the exposition text of counters, gauges and
 * histograms, label escaping, the bound on series a family may hold (label
 * values come from the network), gauge reset, and families declared
 * twice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "testutil.h"

/* The rendered text, NUL-terminated; the caller frees it. */
static char *
render(const struct metrics *m)
{
	struct http_response r = {0};

	metrics_render(m, &r);
	http_append(&r, "", 1);
	if (r.oom) {
		free(r.body);
		return strdup("out of memory");
	}
	return r.body;
}

static void
test_counter_and_gauge(void)
{
	struct metrics *m = metrics_new("part");
	char lv[METRIC_LABELS_MAX];
	char *text;
	int c, g;

	CHECK(m != NULL);
	c = metrics_family(m, "messages_total", METRIC_COUNTER,
	                   "Messages handled.");
	g = metrics_family(m, "bus_connected", METRIC_GAUGE, "1 if up.");
	CHECK(c >= 0 && g >= 0 && c != g);
	CHECK_EQ(metrics_family(m, "messages_total", METRIC_COUNTER, "x"), c);
	metrics_labels(lv, sizeof(lv), "type", "inventory.reserve", "outcome",
	               "ok", METRIC_END);
	metrics_add(m, c, lv, 1);
	metrics_add(m, c, lv, 2);
	metrics_set(m, g, NULL, 1);
	text = render(m);
	CHECK_MSG(strstr(text, "# HELP part_messages_total Messages handled.\n"
	                       "# TYPE part_messages_total counter\n"
	                       "part_messages_total{type=\"inventory.reserve\","
	                       "outcome=\"ok\"} 3\n") != NULL,
	          "%s", text);
	CHECK_MSG(strstr(text, "# TYPE part_bus_connected gauge\n"
	                       "part_bus_connected 1\n") != NULL,
	          "%s", text);
	/* nothing dropped: the family with no series is not rendered */
	CHECK_MSG(strstr(text, "dropped") == NULL, "%s", text);
	free(text);
	metrics_reset(m, g);
	text = render(m);
	CHECK_MSG(strstr(text, "bus_connected") == NULL, "%s", text);
	free(text);
	metrics_free(m);
}

static void
test_label_escaping(void)
{
	char lv[METRIC_LABELS_MAX], small[16];

	metrics_labels(lv, sizeof(lv), "type", "a\"b\\c\nd", METRIC_END);
	CHECK_STR(lv, "type=\"a\\\"b\\\\c\\nd\"");
	/* cut, but never in the middle of an escape, and always closed */
	metrics_labels(small, sizeof(small), "t", "\"\"\"\"\"\"\"\"",
	               METRIC_END);
	CHECK_MSG(strlen(small) < sizeof(small), "%s", small);
	CHECK_MSG(small[strlen(small) - 1] == '"', "%s", small);
	CHECK_MSG(strstr(small, "\\\"\"") != NULL ||
	                  strcmp(small, "t=\"\"") == 0,
	          "%s", small);
	metrics_labels(lv, sizeof(lv), METRIC_END);
	CHECK_STR(lv, "");
}

static void
test_histogram(void)
{
	static const double le[] = {0.1, 1};
	struct metrics *m = metrics_new("saga");
	char *text;
	int h = metrics_family(m, "commit_seconds", METRIC_HISTOGRAM,
	                       "Commit time.");

	CHECK(metrics_buckets(m, h, le, 2) == 0);
	metrics_observe(m, h, NULL, 0.05);
	metrics_observe(m, h, NULL, 0.5);
	metrics_observe(m, h, NULL, 5);
	text = render(m);
	CHECK_MSG(strstr(text, "saga_commit_seconds_bucket{le=\"0.1\"} 1\n"
	                       "saga_commit_seconds_bucket{le=\"1\"} 2\n"
	                       "saga_commit_seconds_bucket{le=\"+Inf\"} 3\n"
	                       "saga_commit_seconds_sum 5.550000\n"
	                       "saga_commit_seconds_count 3\n") != NULL,
	          "%s", text);
	free(text);
	/* bounds only before the first observation, ascending */
	CHECK(metrics_buckets(m, h, le, 2) == -1);
	h = metrics_family(m, "other_seconds", METRIC_HISTOGRAM, "x");
	{
		static const double bad[] = {1, 1};
		CHECK(metrics_buckets(m, h, bad, 2) == -1);
	}
	metrics_free(m);
}

static void
test_series_bounded(void)
{
	struct metrics *m = metrics_new("part");
	int c = metrics_family(m, "messages_total", METRIC_COUNTER, "x");
	char lv[METRIC_LABELS_MAX], type[32];
	char *text, *p;
	int lines = 0;

	for (int i = 0; i < 10 * METRIC_SERIES_MAX; i++) {
		snprintf(type, sizeof(type), "junk.%d", i);
		metrics_labels(lv, sizeof(lv), "type", type, METRIC_END);
		metrics_add(m, c, lv, 1);
	}
	text = render(m);
	for (p = text; (p = strstr(p, "\npart_messages_total")) != NULL; p++)
		lines++;
	CHECK_EQ(lines, METRIC_SERIES_MAX);
	/* what did not fit is counted, not lost */
	CHECK_MSG(
	        strstr(text, "part_messages_total{overflow=\"true\"} 2305\n") !=
	                NULL,
	        "%s",
	        strstr(text, "overflow") ? strstr(text, "overflow")
	                                 : "no overflow series");
	free(text);
	metrics_free(m);
}

int
main(void)
{
	RUN(test_counter_and_gauge);
	RUN(test_label_escaping);
	RUN(test_histogram);
	RUN(test_series_bounded);
	return check_summary();
}

/* Unit tests of participants/common/part_metrics: outcomes count only once
 * their batch commits (a rolled-back batch is applied again and must not
 * count twice), the gauges of now, the loop's totals added by growth, and
 * the health verdict's order of reasons. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "part_metrics.h"
#include "testutil.h"

static char *
render(struct part_metrics *pm, const struct part_now *now)
{
	struct http_response r = {0};

	part_metrics_render(pm, now, &r);
	http_append(&r, "", 1);
	if (r.oom) {
		free(r.body);
		return strdup("out of memory");
	}
	return r.body;
}

static const struct part_now NOW = {
        .connected = true, .outbox_depth = 3, .disk_free = 1LL << 30};

static void
test_counted_at_commit(void)
{
	struct part_metrics *pm = part_metrics_new();
	char *text;

	CHECK(pm != NULL);
	part_metrics_note(pm, "inventory.reserve", PART_OUT_OK, 0.002);
	part_metrics_rolled_back(pm); /* applied again below */
	part_metrics_note(pm, "inventory.reserve", PART_OUT_OK, 0.002);
	part_metrics_note(pm, "inventory.reserve", PART_OUT_DUPLICATE, 0.001);
	part_metrics_note(pm, "bogus", PART_OUT_DEAD_LETTERED, 0.001);
	text = render(pm, &NOW);
	CHECK_MSG(strstr(text, "part_messages_total{") == NULL, "%s", text);
	free(text);
	part_metrics_committed(pm, 0.004);
	text = render(pm, &NOW);
	CHECK_MSG(strstr(text, "part_messages_total{type=\"inventory.reserve\","
	                       "outcome=\"ok\"} 1\n") != NULL,
	          "%s", text);
	CHECK_MSG(strstr(text, "part_messages_total{type=\"inventory.reserve\","
	                       "outcome=\"duplicate\"} 1\n") != NULL,
	          "%s", text);
	CHECK_MSG(strstr(text, "part_messages_total{type=\"bogus\","
	                       "outcome=\"dead_lettered\"} 1\n") != NULL,
	          "%s", text);
	CHECK_MSG(strstr(text, "part_batch_size_count 1\n") != NULL &&
	                  strstr(text, "part_batch_size_sum 3") != NULL,
	          "%s", text);
	CHECK_MSG(strstr(text, "part_commit_seconds_count 1\n") != NULL, "%s",
	          text);
	CHECK_MSG(strstr(text, "part_handle_seconds_count{type=\"inventory."
	                       "reserve\"} 2\n") != NULL,
	          "%s", text);
	free(text);
	/* a commit with no deliveries (outbox deletions) is no batch */
	part_metrics_committed(pm, 0.001);
	text = render(pm, &NOW);
	CHECK_MSG(strstr(text, "part_batch_size_count 1\n") != NULL &&
	                  strstr(text, "part_commit_seconds_count 2\n"),
	          "%s", text);
	free(text);
	part_metrics_free(pm);
}

static void
test_gauges_and_totals(void)
{
	struct part_metrics *pm = part_metrics_new();
	struct part_now now = NOW;
	char *text;

	CHECK(pm != NULL);
	part_metrics_queue(pm, "inventory.commands.dlq", 4);
	part_metrics_queue(pm, "inventory.commands.retry", -1); /* unread */
	now.reconnects = 2;
	now.undecodable = 1;
	text = render(pm, &now);
	CHECK_MSG(strstr(text, "part_queue_messages{queue=\"inventory.commands"
	                       ".dlq\"} 4\n") != NULL &&
	                  strstr(text, ".retry") == NULL,
	          "%s", text);
	CHECK_MSG(strstr(text, "part_outbox_depth 3\n") != NULL, "%s", text);
	CHECK_MSG(strstr(text, "part_bus_connected 1\n") != NULL, "%s", text);
	CHECK_MSG(strstr(text, "part_bus_reconnects_total 2\n") != NULL, "%s",
	          text);
	CHECK_MSG(strstr(text, "part_commit_failures_total 0\n") != NULL, "%s",
	          text);
	CHECK_MSG(strstr(text, "part_disk_free_bytes 1073741824\n") != NULL,
	          "%s", text);
	CHECK_MSG(strstr(text, "{type=\"\",outcome=\"dead_lettered\"} 1\n"),
	          "%s", text);
	free(text);
	/* totals are added by growth, not again */
	now.reconnects = 3;
	now.connected = false;
	text = render(pm, &now);
	CHECK_MSG(strstr(text, "part_bus_reconnects_total 3\n") != NULL &&
	                  strstr(text, "part_bus_connected 0\n") != NULL &&
	                  strstr(text, "outcome=\"dead_lettered\"} 1\n"),
	          "%s", text);
	free(text);
	part_metrics_free(pm);
}

static void
test_unhealthy(void)
{
	struct part_now now = NOW;
	char buf[160];

	CHECK(part_unhealthy(NULL, &now, buf, sizeof(buf)) == NULL);
	now.connected = false;
	CHECK_STR(part_unhealthy(NULL, &now, buf, sizeof(buf)),
	          "not connected to the broker");
	now.disk_free = 1024;
	CHECK_MSG(strncmp(part_unhealthy(NULL, &now, buf, sizeof(buf)),
	                  "disk full", 9) == 0,
	          "%s", buf);
	CHECK_STR(part_unhealthy("disk I/O error", &now, buf, sizeof(buf)),
	          "disk I/O error");
	CHECK_STR(part_unhealthy("", &now, buf, sizeof(buf)), "commits fail");
	now.disk_free = -1; /* unknown: not a reason */
	now.connected = true;
	CHECK(part_unhealthy(NULL, &now, buf, sizeof(buf)) == NULL);
}

int
main(void)
{
	RUN(test_counted_at_commit);
	RUN(test_gauges_and_totals);
	RUN(test_unhealthy);
	return check_summary();
}

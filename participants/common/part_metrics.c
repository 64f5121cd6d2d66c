/* part_metrics.c -- a participant's counters and health (part_metrics.h is
 * its manual).
 *
 * The messages, handling times, batch sizes and commit times are
 * lib/batch_metrics's, shared with the orchestrator: counted once the
 * batch commits, never for an attempt that rolled back.
 */
#include "part_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch_metrics.h"
#include "metrics.h"

static const char *const outcome_names[PART_OUT_N] = {
        "ok", "refused", "retried", "dead_lettered", "duplicate"};

struct part_metrics {
	struct metrics *m;
	struct batch_metrics *bm; /* messages, handling, batches, commits */
	int queue, outbox, connected, reconnects, disk, failures;
	/* the counters the loop and the bus keep: added by difference */
	uint64_t reconnects_seen, failures_seen, undecodable_seen;
};

static int
declare(struct part_metrics *pm)
{
	struct metrics *m = pm->m;

	pm->bm = batch_metrics_new(m);
	pm->failures = metrics_family(m, "commit_failures_total",
	                              METRIC_COUNTER, "Commits that failed.");
	pm->queue = metrics_family(m, "queue_messages", METRIC_GAUGE,
	                           "Messages in a work queue's retry and "
	                           "dead-letter queues.");
	pm->outbox = metrics_family(m, "outbox_depth", METRIC_GAUGE,
	                            "Replies written and not yet confirmed "
	                            "by the broker.");
	pm->connected = metrics_family(m, "bus_connected", METRIC_GAUGE,
	                               "1 while connected to the broker.");
	pm->reconnects =
	        metrics_family(m, "bus_reconnects_total", METRIC_COUNTER,
	                       "Connections to the broker re-made.");
	pm->disk = metrics_family(m, "disk_free_bytes", METRIC_GAUGE,
	                          "Bytes left on the database's file system.");
	return pm->bm == NULL || pm->failures < 0 || pm->queue < 0 ||
	                       pm->outbox < 0 || pm->connected < 0 ||
	                       pm->reconnects < 0 || pm->disk < 0
	               ? -1
	               : 0;
}

struct part_metrics *
part_metrics_new(void)
{
	struct part_metrics *pm = calloc(1, sizeof(*pm));

	if (pm == NULL)
		return NULL;
	pm->m = metrics_new("part");
	if (pm->m == NULL || declare(pm) != 0) {
		part_metrics_free(pm);
		return NULL;
	}
	return pm;
}

void
part_metrics_free(struct part_metrics *pm)
{
	if (pm == NULL)
		return;
	batch_metrics_free(pm->bm);
	metrics_free(pm->m);
	free(pm);
}

void
part_metrics_note(struct part_metrics *pm, const char *type,
                  enum part_outcome o, double seconds)
{
	batch_metrics_note(
	        pm->bm, type,
	        outcome_names[o < PART_OUT_N ? o : PART_OUT_DEAD_LETTERED],
	        seconds);
}

void
part_metrics_committed(struct part_metrics *pm, double commit_s)
{
	batch_metrics_committed(pm->bm, commit_s);
}

void
part_metrics_rolled_back(struct part_metrics *pm)
{
	batch_metrics_rolled_back(pm->bm);
}

void
part_metrics_queue(struct part_metrics *pm, const char *queue,
                   long long messages)
{
	char lv[METRIC_LABELS_MAX];

	if (messages < 0)
		return;
	metrics_labels(lv, sizeof(lv), "queue", queue, METRIC_END);
	metrics_set(pm->m, pm->queue, lv, (double)messages);
}

/* Adds to a counter what a kept total grew by since last time. */
static void
add_growth(struct part_metrics *pm, int family, const char *labels,
           uint64_t total, uint64_t *seen)
{
	if (total > *seen)
		metrics_add(pm->m, family, labels, (double)(total - *seen));
	else if (*seen == 0)
		metrics_add(pm->m, family, labels,
		            0); /* shown from the start */
	*seen = total;
}

void
part_metrics_render(struct part_metrics *pm, const struct part_now *now,
                    struct http_response *r)
{
	char lv[METRIC_LABELS_MAX];

	metrics_labels(lv, sizeof(lv), "type", "", "outcome", "dead_lettered",
	               METRIC_END);
	if (now->undecodable > pm->undecodable_seen)
		add_growth(pm, batch_metrics_messages(pm->bm), lv,
		           now->undecodable, &pm->undecodable_seen);
	add_growth(pm, pm->reconnects, NULL, now->reconnects,
	           &pm->reconnects_seen);
	add_growth(pm, pm->failures, NULL, now->commit_failures,
	           &pm->failures_seen);
	metrics_set(pm->m, pm->connected, NULL, now->connected ? 1 : 0);
	if (now->outbox_depth >= 0)
		metrics_set(pm->m, pm->outbox, NULL, (double)now->outbox_depth);
	if (now->disk_free >= 0)
		metrics_set(pm->m, pm->disk, NULL, (double)now->disk_free);
	metrics_render(pm->m, r);
}

const char *
part_unhealthy(const char *commit_why, const struct part_now *now, char *buf,
               size_t cap)
{
	if (commit_why != NULL)
		return commit_why[0] ? commit_why : "commits fail";
	if (now->disk_free >= 0 && now->disk_free < PART_DISK_RESERVE_BYTES) {
		snprintf(buf, cap,
		         "disk full: %lld KiB left where the database is, "
		         "below the %lld MiB reserve",
		         now->disk_free >> 10, PART_DISK_RESERVE_BYTES >> 20);
		return buf;
	}
	if (!now->connected)
		return "not connected to the broker";
	return NULL;
}

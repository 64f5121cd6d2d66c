/* part_metrics.c -- a participant's counters and health (part_metrics.h is
 * its manual).
 *
 * Why notes before counts: the durable loop applies a batch, then
 * commits; a commit that fails (disk full) rolls the batch back and
 * applies it again later. Counting in the handler would count every
 * failed attempt as handled, so outcomes wait in a small list until the
 * commit says they happened. The list grows to the batch (the prefetch
 * window, a few hundred); when it cannot grow a note is lost, which
 * only makes a counter low.
 */
#include "part_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "metrics.h"

static const char *const outcome_names[PART_OUT_N] = {
        "ok", "refused", "retried", "dead_lettered", "duplicate"};

/* Deliveries per batch: 1 up to the largest prefetch window. */
static const double batch_le[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};

struct note {
	char type[ENVELOPE_TYPE_MAX];
	enum part_outcome outcome;
	double seconds;
};

struct part_metrics {
	struct metrics *m;
	int messages, handle, batch, commit, queue, outbox, connected,
	        reconnects, disk, failures;
	struct note *notes; /* the batch's, until it commits */
	size_t nnotes, capnotes;
	/* the counters the loop and the bus keep: added by difference */
	uint64_t reconnects_seen, failures_seen, undecodable_seen;
};

static int
declare(struct part_metrics *pm)
{
	struct metrics *m = pm->m;

	pm->messages = metrics_family(m, "messages_total", METRIC_COUNTER,
	                              "Messages handled, by type and outcome.");
	pm->handle = metrics_family(m, "handle_seconds", METRIC_HISTOGRAM,
	                            "Time to handle one message, by type.");
	pm->batch = metrics_family(m, "batch_size", METRIC_HISTOGRAM,
	                           "Messages committed per transaction.");
	pm->commit = metrics_family(m, "commit_seconds", METRIC_HISTOGRAM,
	                            "Time of a transaction's COMMIT.");
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
	if (pm->messages < 0 || pm->handle < 0 || pm->batch < 0 ||
	    pm->commit < 0 || pm->failures < 0 || pm->queue < 0 ||
	    pm->outbox < 0 || pm->connected < 0 || pm->reconnects < 0 ||
	    pm->disk < 0)
		return -1;
	return metrics_buckets(m, pm->batch, batch_le,
	                       sizeof(batch_le) / sizeof(batch_le[0]));
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
	metrics_free(pm->m);
	free(pm->notes);
	free(pm);
}

void
part_metrics_note(struct part_metrics *pm, const char *type,
                  enum part_outcome o, double seconds)
{
	struct note *n;

	if (pm->nnotes == pm->capnotes) {
		size_t cap = pm->capnotes ? pm->capnotes * 2 : 64;
		struct note *nn = realloc(pm->notes, cap * sizeof(*nn));
		if (nn == NULL)
			return; /* a counter stays low (file top) */
		pm->notes = nn;
		pm->capnotes = cap;
	}
	n = &pm->notes[pm->nnotes++];
	snprintf(n->type, sizeof(n->type), "%s", type != NULL ? type : "");
	n->outcome = o < PART_OUT_N ? o : PART_OUT_DEAD_LETTERED;
	n->seconds = seconds;
}

void
part_metrics_committed(struct part_metrics *pm, double commit_s)
{
	char lv[METRIC_LABELS_MAX];

	metrics_observe(pm->m, pm->commit, NULL, commit_s);
	if (pm->nnotes > 0)
		metrics_observe(pm->m, pm->batch, NULL, (double)pm->nnotes);
	for (size_t i = 0; i < pm->nnotes; i++) {
		const struct note *n = &pm->notes[i];
		metrics_labels(lv, sizeof(lv), "type", n->type, "outcome",
		               outcome_names[n->outcome], METRIC_END);
		metrics_add(pm->m, pm->messages, lv, 1);
		metrics_labels(lv, sizeof(lv), "type", n->type, METRIC_END);
		metrics_observe(pm->m, pm->handle, lv, n->seconds);
	}
	pm->nnotes = 0;
}

void
part_metrics_rolled_back(struct part_metrics *pm)
{
	pm->nnotes = 0;
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
		add_growth(pm, pm->messages, lv, now->undecodable,
		           &pm->undecodable_seen);
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

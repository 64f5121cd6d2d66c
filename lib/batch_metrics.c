/* batch_metrics.c -- see batch_metrics.h. The notes grow to the batch
 * (the prefetch window, a few hundred); when they cannot grow a note is
 * lost, which only makes a counter low. */
#include "batch_metrics.h"

#include <stdio.h>
#include <stdlib.h>

#include "envelope.h"

/* Deliveries per batch: 1 up to the largest prefetch window. */
static const double batch_le[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};

struct note {
	char type[ENVELOPE_TYPE_MAX];
	const char *outcome; /* a literal */
	double seconds;
};

struct batch_metrics {
	struct metrics *m;
	int messages, handle, batch, commit;
	struct note *notes; /* the batch's, until it commits */
	size_t n, cap;
};

struct batch_metrics *
batch_metrics_new(struct metrics *m)
{
	struct batch_metrics *bm = calloc(1, sizeof(*bm));

	if (bm == NULL)
		return NULL;
	bm->m = m;
	bm->messages = metrics_family(m, "messages_total", METRIC_COUNTER,
	                              "Messages handled, by type and outcome.");
	bm->handle = metrics_family(m, "handle_seconds", METRIC_HISTOGRAM,
	                            "Time to handle one message, by type.");
	bm->batch = metrics_family(m, "batch_size", METRIC_HISTOGRAM,
	                           "Messages committed per transaction.");
	bm->commit = metrics_family(m, "commit_seconds", METRIC_HISTOGRAM,
	                            "Time of a transaction's COMMIT.");
	if (bm->messages < 0 || bm->handle < 0 || bm->batch < 0 ||
	    bm->commit < 0 ||
	    metrics_buckets(m, bm->batch, batch_le,
	                    sizeof(batch_le) / sizeof(batch_le[0])) != 0) {
		free(bm);
		return NULL;
	}
	return bm;
}

void
batch_metrics_free(struct batch_metrics *bm)
{
	if (bm == NULL)
		return;
	free(bm->notes);
	free(bm);
}

void
batch_metrics_note(struct batch_metrics *bm, const char *type,
                   const char *outcome, double seconds)
{
	struct note *n;

	if (bm->n == bm->cap) {
		size_t cap = bm->cap ? bm->cap * 2 : 64;
		struct note *nn = realloc(bm->notes, cap * sizeof(*nn));
		if (nn == NULL)
			return; /* a counter stays low (file top) */
		bm->notes = nn;
		bm->cap = cap;
	}
	n = &bm->notes[bm->n++];
	snprintf(n->type, sizeof(n->type), "%s", type != NULL ? type : "");
	n->outcome = outcome;
	n->seconds = seconds;
}

void
batch_metrics_committed(struct batch_metrics *bm, double commit_s)
{
	char lv[METRIC_LABELS_MAX];

	metrics_observe(bm->m, bm->commit, NULL, commit_s);
	if (bm->n > 0)
		metrics_observe(bm->m, bm->batch, NULL, (double)bm->n);
	for (size_t i = 0; i < bm->n; i++) {
		const struct note *n = &bm->notes[i];
		metrics_labels(lv, sizeof(lv), "type", n->type, "outcome",
		               n->outcome, METRIC_END);
		metrics_add(bm->m, bm->messages, lv, 1);
		metrics_labels(lv, sizeof(lv), "type", n->type, METRIC_END);
		metrics_observe(bm->m, bm->handle, lv, n->seconds);
	}
	bm->n = 0;
}

void
batch_metrics_rolled_back(struct batch_metrics *bm)
{
	bm->n = 0;
}

int
batch_metrics_messages(const struct batch_metrics *bm)
{
	return bm->messages;
}

/* orch_metrics.c -- see orch_metrics.h. */
#include "orch_metrics.h"

#include <stdio.h>
#include <stdlib.h>

#include "batch_metrics.h"
#include "metrics.h"

/* The families, in the order the page lists them. */
enum fam {
	F_STARTED,
	F_COMPLETED,
	F_FAILED,
	F_STUCK_TOTAL,
	F_ABORTED,
	F_CANCELLED,
	F_STEP,
	F_OUTBOX,
	F_DUPLICATES,
	F_DEAD_LETTERED,
	F_PUBLISHED,
	F_AMQP_PUBLISHED,
	F_DROPPED,
	F_REPLY_BUNDLES,
	F_INBOX_PRUNED,
	F_BATCHES,
	F_COMMIT_FAILURES,
	F_SHARD,
	F_SHARD_REFUSED,
	F_PRESENT,
	F_HEARD,
	F_CONNECTED,
	F_RECONNECTS,
	F_DISK_FREE,
	F_SAGAS,
	F_STUCK_OLDEST,
	F_OVERDUE,
	F__COUNT
};

static const struct {
	const char *name;
	enum metric_type type;
	const char *help;
} fams[F__COUNT] = {
        [F_STARTED] = {"started_total", METRIC_COUNTER, "Sagas started."},
        [F_COMPLETED] = {"completed_total", METRIC_COUNTER, "Sagas completed."},
        [F_FAILED] = {"failed_total", METRIC_COUNTER,
                      "Sagas failed (compensated)."},
        [F_STUCK_TOTAL] = {"stuck_total", METRIC_COUNTER,
                           "Sagas left stuck for an operator."},
        [F_ABORTED] = {"aborted_total", METRIC_COUNTER,
                       "Sagas aborted by an operator."},
        [F_CANCELLED] = {"cancelled_total", METRIC_COUNTER,
                         "Sagas cancelled by the customer."},
        [F_STEP] = {"step_duration_seconds", METRIC_HISTOGRAM,
                    "Time from entering a state to leaving it."},
        [F_OUTBOX] = {"outbox_depth", METRIC_GAUGE,
                      "Messages committed and not yet confirmed by the "
                      "broker."},
        [F_DUPLICATES] = {"duplicates_dropped_total", METRIC_COUNTER,
                          "Messages dropped as already processed."},
        [F_DEAD_LETTERED] = {"dead_lettered_total", METRIC_COUNTER,
                             "Messages rejected to the dead-letter queue."},
        [F_PUBLISHED] = {"messages_published_total", METRIC_COUNTER,
                         "Commands and events handed to the broker "
                         "(outbox rows)."},
        [F_AMQP_PUBLISHED] = {"amqp_published_total", METRIC_COUNTER,
                              "AMQP messages published (a bundle of "
                              "commands counts once)."},
        [F_DROPPED] = {"messages_dropped_total", METRIC_COUNTER,
                       "Commands and events dropped undelivered, by "
                       "reason: unroutable (no queue bound) or too_large "
                       "(more than a message may be); each is logged."},
        [F_REPLY_BUNDLES] = {"reply_bundles_total", METRIC_COUNTER,
                             "Bundles of replies received (each item "
                             "counts as a reply)."},
        [F_INBOX_PRUNED] = {"inbox_pruned_total", METRIC_COUNTER,
                            "Processed message ids deleted from the inbox "
                            "after --inbox-days."},
        [F_BATCHES] = {"batches_total", METRIC_COUNTER,
                       "Transactions committed."},
        [F_COMMIT_FAILURES] = {"commit_failures_total", METRIC_COUNTER,
                               "Batches whose commit failed (retried)."},
        [F_SHARD] = {"shard", METRIC_GAUGE,
                     "This shard's index, labelled with the shard count."},
        [F_SHARD_REFUSED] = {"shard_refused_total", METRIC_COUNTER,
                             "order.created refused: another shard may own "
                             "it."},
        [F_PRESENT] = {"participants_present", METRIC_GAUGE,
                       "Participant instances heard announcing themselves "
                       "lately."},
        [F_HEARD] = {"presence_heard_total", METRIC_COUNTER,
                     "Participant announcements received."},
        [F_CONNECTED] = {"bus_connected", METRIC_GAUGE,
                         "1 while connected to the broker."},
        [F_RECONNECTS] = {"bus_reconnects_total", METRIC_COUNTER,
                          "Reconnections to the broker."},
        [F_DISK_FREE] = {"disk_free_bytes", METRIC_GAUGE,
                         "Bytes left on the database's file system."},
        [F_SAGAS] = {"sagas", METRIC_GAUGE,
                     "Sagas not finished, by status, now."},
        [F_STUCK_OLDEST] = {"stuck_oldest_seconds", METRIC_GAUGE,
                            "How long the oldest stuck saga has waited (0: "
                            "none)."},
        [F_OVERDUE] = {"overdue_sagas", METRIC_GAUGE,
                       "Sagas running or compensating in their state longer "
                       "than its stuck_after, by chart and state (0 for "
                       "every state with a stuck_after)."},
};

struct orch_metrics {
	struct metrics *reg;
	struct batch_metrics *bm;
	int f[F__COUNT];
};

struct orch_metrics *
orch_metrics_new(void)
{
	struct orch_metrics *m = calloc(1, sizeof(*m));

	if (m == NULL || (m->reg = metrics_new("saga")) == NULL) {
		free(m);
		return NULL;
	}
	for (int i = 0; i < F__COUNT; i++) {
		m->f[i] = metrics_family(m->reg, fams[i].name, fams[i].type,
		                         fams[i].help);
		if (m->f[i] < 0) {
			orch_metrics_free(m);
			return NULL;
		}
	}
	m->bm = batch_metrics_new(m->reg);
	if (m->bm == NULL) {
		orch_metrics_free(m);
		return NULL;
	}
	return m;
}

void
orch_metrics_free(struct orch_metrics *m)
{
	if (m == NULL)
		return;
	batch_metrics_free(m->bm);
	metrics_free(m->reg);
	free(m);
}

void
orch_metrics_on_status(void *arg, const char *chart, enum saga_status st)
{
	struct orch_metrics *m = arg;
	char lv[METRIC_LABELS_MAX];
	int f;

	switch (st) {
	case SAGA_RUNNING:
		f = F_STARTED;
		break;
	case SAGA_COMPLETED:
		f = F_COMPLETED;
		break;
	case SAGA_FAILED:
		f = F_FAILED;
		break;
	case SAGA_STUCK:
		f = F_STUCK_TOTAL;
		break;
	case SAGA_ABORTED:
		f = F_ABORTED;
		break;
	case SAGA_CANCELLED:
		f = F_CANCELLED;
		break;
	default: /* compensating: counted when it ends */
		return;
	}
	metrics_labels(lv, sizeof(lv), "chart", chart, METRIC_END);
	/* every per-chart family gets the chart, at 0 until it happens */
	for (int i = F_STARTED; i <= F_CANCELLED; i++)
		metrics_add(m->reg, m->f[i], lv, i == f ? 1 : 0);
}

void
orch_metrics_on_step(void *arg, const char *chart, const char *state,
                     double seconds)
{
	struct orch_metrics *m = arg;
	char lv[METRIC_LABELS_MAX];

	metrics_labels(lv, sizeof(lv), "chart", chart, "state", state,
	               METRIC_END);
	metrics_observe(m->reg, m->f[F_STEP], lv, seconds);
}

struct batch_metrics *
orch_metrics_batches(struct orch_metrics *m)
{
	return m->bm;
}

static void
set(struct orch_metrics *m, int f, double v)
{
	metrics_set(m->reg, m->f[f], NULL, v);
}

/* The shard's figures, for a shard only. */
static void
set_shard(struct orch_metrics *m, const struct orch_metrics_now *n)
{
	char lv[METRIC_LABELS_MAX], count[16];

	if (n->shard_index <= 0)
		return;
	snprintf(count, sizeof(count), "%d", n->shard_count);
	metrics_reset(m->reg, m->f[F_SHARD]);
	metrics_labels(lv, sizeof(lv), "count", count, METRIC_END);
	metrics_set(m->reg, m->f[F_SHARD], lv, n->shard_index);
	set(m, F_SHARD_REFUSED, (double)n->shard_refused);
}

static void
set_sagas(struct orch_metrics *m, const struct orch_metrics_now *n)
{
	metrics_set(m->reg, m->f[F_SAGAS], "status=\"running\"",
	            (double)n->running);
	metrics_set(m->reg, m->f[F_SAGAS], "status=\"compensating\"",
	            (double)n->compensating);
	metrics_set(m->reg, m->f[F_SAGAS], "status=\"stuck\"",
	            (double)n->stuck);
	set(m, F_STUCK_OLDEST, n->stuck_oldest_s);
	metrics_reset(m->reg, m->f[F_OVERDUE]);
	for (size_t i = 0; n->overdue != NULL && i < n->overdue->n; i++) {
		const struct overdue *o = &n->overdue->v[i];
		char lv[METRIC_LABELS_MAX];
		metrics_labels(lv, sizeof(lv), "chart", o->chart, "state",
		               o->state, METRIC_END);
		metrics_set(m->reg, m->f[F_OVERDUE], lv, (double)o->n);
	}
}

void
orch_metrics_render(struct orch_metrics *m, const struct orch_metrics_now *n,
                    struct http_response *r)
{
	set(m, F_OUTBOX, (double)n->outbox_depth);
	set(m, F_DUPLICATES, (double)n->duplicates);
	set(m, F_DEAD_LETTERED, (double)n->dead_lettered);
	set(m, F_PUBLISHED, (double)n->published);
	set(m, F_AMQP_PUBLISHED, (double)n->amqp_published);
	metrics_set(m->reg, m->f[F_DROPPED], "reason=\"unroutable\"",
	            (double)n->dropped_unroutable);
	metrics_set(m->reg, m->f[F_DROPPED], "reason=\"too_large\"",
	            (double)n->dropped_too_large);
	set(m, F_REPLY_BUNDLES, (double)n->reply_bundles);
	set(m, F_INBOX_PRUNED, (double)n->inbox_pruned);
	set(m, F_BATCHES, (double)n->batches);
	set(m, F_COMMIT_FAILURES, (double)n->commit_failures);
	set_shard(m, n);
	set(m, F_PRESENT, (double)n->participants_present);
	set(m, F_HEARD, (double)n->presence_heard);
	set(m, F_CONNECTED, n->bus_connected ? 1 : 0);
	set(m, F_RECONNECTS, (double)n->reconnects);
	if (n->disk_free >= 0)
		set(m, F_DISK_FREE, (double)n->disk_free);
	set_sagas(m, n);
	metrics_render(m->reg, r);
}

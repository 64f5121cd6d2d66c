/* orch_metrics.h -- what saga-orchestrator serves at GET /metrics, on
 * lib/metrics (the registry every daemon uses).
 *
 * Three kinds of figures. What happens to sagas is counted as it
 * happens, by the processor's observers (orch.h): sagas started,
 * completed, failed, stuck, aborted, cancelled, per chart, and the time
 * each state took (saga_step_duration_seconds, per chart and state). The
 * batches are counted as the participants count theirs
 * (lib/batch_metrics.h): saga_messages_total{type,outcome} (ok,
 * duplicate, dead_lettered), saga_handle_seconds{type}, saga_batch_size,
 * saga_commit_seconds, fed by the loop (loop_observe) once a batch
 * commits. What is true now is read from its owners when the page is
 * rendered, handed over in a struct orch_metrics_now: the loop's and the
 * bus's counters, the outbox, the unfinished sagas (saga_sagas{status}),
 * the disk, and the sagas past their state's stuck_after
 * (saga_overdue_sagas{chart,state}, overdue.h).
 *
 * Threading: none; the loop renders, lib/http serves the copy.
 */
#ifndef SAGA_ORCH_METRICS_H
#define SAGA_ORCH_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "http.h"
#include "overdue.h"

struct orch_metrics;

/* NULL on out of memory. */
struct orch_metrics *orch_metrics_new(void);
void orch_metrics_free(struct orch_metrics *m);

/* The processor's observers (orch_config.on_status, .on_step), with the
 * orch_metrics as their arg. */
void orch_metrics_on_status(void *m, const char *chart, enum saga_status st);
void orch_metrics_on_step(void *m, const char *chart, const char *state,
                          double seconds);

/* The figures read when the page is rendered (-1: unknown, not shown). */
struct orch_metrics_now {
	int64_t outbox_depth;
	uint64_t duplicates, dead_lettered, published, amqp_published;
	/* outbox rows dropped undelivered: returned unroutable, or refused
	 * by the bus (larger than a message may be) */
	uint64_t dropped_unroutable, dropped_too_large;
	uint64_t reply_bundles, inbox_pruned, batches, commit_failures;
	int shard_index, shard_count; /* index 0: unsharded, not shown */
	uint64_t shard_refused;
	int64_t participants_present;
	uint64_t presence_heard;
	bool bus_connected;
	uint64_t reconnects;
	int64_t disk_free;
	int64_t running, compensating, stuck; /* unfinished sagas now */
	double stuck_oldest_s;                /* 0: none stuck */
	/* saga_overdue_sagas{chart,state} (overdue.h); NULL: no series */
	const struct overdue_set *overdue;
};

/* The batches' counts (messages by type and outcome, handling time,
 * batch size, commit time), for loop_observe: saga_messages_total, ... */
struct batch_metrics *orch_metrics_batches(struct orch_metrics *m);

void orch_metrics_render(struct orch_metrics *m,
                         const struct orch_metrics_now *now,
                         struct http_response *r);

#endif

/* part_metrics.h -- what a participant counts and how healthy it is:
 * the pages its --http endpoint serves (/metrics with prefix "part",
 * /healthz), built on lib/metrics.h. Pure: no broker, no database, no
 * clock; participant.c feeds it and publishes the pages.
 *
 * Outcomes are counted once their batch is committed, never before: a
 * delivery's outcome is noted inside the transaction (part_metrics_note)
 * and counted by part_metrics_committed, or forgotten by
 * part_metrics_rolled_back (the batch is applied again after a failed
 * commit, and must not count twice).
 *
 * The families (docs/operations.md lists them with the alerts):
 *   part_messages_total{type,outcome}  counter; outcome ok | refused |
 *                                      retried | dead_lettered | duplicate
 *   part_handle_seconds{type}          histogram, one delivery's handling
 *   part_batch_size                    histogram, deliveries per commit
 *   part_commit_seconds                histogram, the COMMIT (fsync)
 *   part_queue_messages{queue}         gauge, each work queue's .retry/.dlq
 *   part_outbox_depth                  gauge, replies not yet confirmed
 *   part_bus_connected                 gauge, 1 or 0
 *   part_bus_reconnects_total          counter
 *   part_disk_free_bytes               gauge (absent when unknown)
 *   part_commit_failures_total         counter
 *
 * Failure contract: part_metrics_new returns NULL on out of memory; the
 * rest cannot fail (an update that cannot allocate is dropped, lib/metrics
 * counts it).
 */
#ifndef SAGA_PART_METRICS_H
#define SAGA_PART_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

enum part_outcome {
	PART_OUT_OK,            /* handled, its reply written */
	PART_OUT_REFUSED,       /* a late original, answered with refusal */
	PART_OUT_RETRIED,       /* sent round the retry queue */
	PART_OUT_DEAD_LETTERED, /* to Q.dlq: refused, unknown, out of tries */
	PART_OUT_DUPLICATE,     /* seen before: its stored reply sent again */
	PART_OUT_N,
};

/* Below this many bytes free where the database is, /healthz fails. */
#define PART_DISK_RESERVE_BYTES (16LL << 20)

struct part_metrics;

struct part_metrics *part_metrics_new(void);
void part_metrics_free(struct part_metrics *pm); /* NULL is fine */

/* Inside the transaction: one delivery of `type` (from the network:
 * lib/metrics bounds the label values) ended with outcome o after
 * seconds of handling. Kept until the batch commits or rolls back. */
void part_metrics_note(struct part_metrics *pm, const char *type,
                       enum part_outcome o, double seconds);
/* The batch committed in commit_s seconds: its notes are counted, and
 * its size (when it had deliveries) observed. */
void part_metrics_committed(struct part_metrics *pm, double commit_s);
/* The batch rolled back: its notes are forgotten. */
void part_metrics_rolled_back(struct part_metrics *pm);

/* What is true now, read by the daemon before each render. */
struct part_now {
	bool connected;
	uint64_t reconnects;
	uint64_t commit_failures;
	uint64_t undecodable;   /* dead-lettered before any handler saw them */
	long long outbox_depth; /* -1: unknown */
	long long disk_free;    /* -1: unknown */
};

/* A queue's depth (Q.retry, Q.dlq), kept until set again; -1 forgets it
 * (the queue could not be read). */
void part_metrics_queue(struct part_metrics *pm, const char *queue,
                        long long messages);

/* Appends the /metrics page. */
void part_metrics_render(struct part_metrics *pm, const struct part_now *now,
                         struct http_response *r);

/* Why the daemon is unhealthy now, or NULL: commits failing (commit_why,
 * NULL when they work), the disk below PART_DISK_RESERVE_BYTES, or no
 * broker. buf holds the text when needed. Can't fail. */
const char *part_unhealthy(const char *commit_why, const struct part_now *now,
                           char *buf, size_t cap);

#endif

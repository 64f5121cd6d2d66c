/* batch_metrics.h -- what every daemon on the durable loop (lib/durable.h)
 * counts about its batches, on a lib/metrics registry:
 *
 *   <prefix>_messages_total{type,outcome}  counter
 *   <prefix>_handle_seconds{type}          histogram, one delivery
 *   <prefix>_batch_size                    histogram, deliveries a commit
 *   <prefix>_commit_seconds                histogram, the COMMIT (fsync)
 *
 * Outcomes are counted once their batch is committed, never before: a
 * handler notes each delivery inside the transaction (batch_metrics_note)
 * and the commit counts the notes (batch_metrics_committed), or a rollback
 * forgets them (batch_metrics_rolled_back): a batch whose commit fails is
 * applied again later and must not count twice. The outcome is the
 * daemon's word ("ok", "duplicate", "dead_lettered", ...).
 *
 * Threading: none (the loop's thread). Failure contract: new returns NULL
 * on out of memory; a note that cannot be kept is lost (a counter stays
 * low), never an error.
 */
#ifndef SAGA_BATCH_METRICS_H
#define SAGA_BATCH_METRICS_H

#include <stddef.h>

#include "metrics.h"

struct batch_metrics;

/* Declares the four families in m (which it borrows). */
struct batch_metrics *batch_metrics_new(struct metrics *m);
void batch_metrics_free(struct batch_metrics *bm); /* NULL is fine */

/* Inside the transaction: one delivery of `type` (from the network:
 * lib/metrics bounds the label values) ended with `outcome` (a literal)
 * after seconds of handling. */
void batch_metrics_note(struct batch_metrics *bm, const char *type,
                        const char *outcome, double seconds);
/* The batch committed in commit_s seconds: its notes count, and its size
 * (when it had deliveries) is observed. */
void batch_metrics_committed(struct batch_metrics *bm, double commit_s);
/* The batch rolled back: its notes are forgotten. */
void batch_metrics_rolled_back(struct batch_metrics *bm);

/* The family handle of <prefix>_messages_total (for counts a daemon adds
 * outside a batch, e.g. undecodable deliveries). */
int batch_metrics_messages(const struct batch_metrics *bm);

#endif

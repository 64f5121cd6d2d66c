/* part_bus.h -- a participant's broker: lib/bus adapted to the durable
 * loop's transport (lib/durable.h), with the participant's topology
 * (each work queue Q with Q.retry and Q.dlq), its presence
 * announcements, and its settling:
 *
 *   - done: the delivery is acked (a bundle once all its items are);
 *   - dead letter: a copy to Q.dlq with the reason (x-saga-error), the
 *     original acked once the copy is confirmed;
 *   - retry: a plain delivery is rejected (Q -> Q.retry -> Q); an item
 *     of a bundle cannot be, nor can a stream's delivery (a stream keeps
 *     everything), so a copy of it alone goes to Q.retry with its
 *     attempts in a header, and it is acked once that is confirmed.
 *
 * Copies are mandatory. One that does not land is made again, with the
 * reason it was first given: at the next poll when the bus could not
 * take it for want of memory, after the retry delay when it came back
 * unroutable (its queue deleted: a restart declares it again). The
 * delivery stays unsettled meanwhile, and the stream's position does
 * not pass it, so a crash or a stop loses nothing.
 *
 * The stream (part_config.stream) is read from the offset the daemon
 * committed (part_bus_resume), always with x-stream-offset, which
 * RabbitMQ refuses on a queue that is not a stream (so a classic queue
 * of that name is never drained by mistake); its deliveries' copies go
 * to stream_home's .retry and .dlq, and the loop is told which offsets
 * still wait for their copies' confirms (unsettled_floor).
 *
 * Bundles in (type saga.bundle) become one delivery per item; replies
 * marked `bundle` in the outbox leave in bundles per destination
 * (lib/bundler.h). Private to participants/common.
 */
#ifndef SAGA_PART_BUS_H
#define SAGA_PART_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "durable.h"
#include "participant.h"

struct part_bus;

/* Makes the adapter and fills *t with its transport; touches no network.
 * Borrows cfg. NULL with the reason on out of memory. */
struct part_bus *part_bus_new(const struct part_config *cfg,
                              struct durable_transport *t, char *err,
                              size_t errlen);
/* The loop the transport feeds (before the first publish or poll). */
void part_bus_attach(struct part_bus *pb, struct durable *d);
/* Where the daemon's stream (part_config.stream) is read from on every
 * (re)connect: next(arg) is the offset stored with the last commit, -1
 * for none (then from the oldest message retained). */
void part_bus_resume(struct part_bus *pb, int64_t (*next)(void *), void *arg);
/* Validates the configuration and declares nothing yet (bus_open). */
int part_bus_open(struct part_bus *pb, char *err, size_t errlen);
/* Tries to connect once (the bus keeps retrying from its polls). */
int part_bus_connect(struct part_bus *pb, char *err, size_t errlen);
uint64_t part_bus_reconnects(const struct part_bus *pb);
bool part_bus_connected(const struct part_bus *pb);
/* Messages ready in queue (a passive declare: one round trip to the
 * broker), or -1 when not connected or the queue is missing. */
long long part_bus_queue_depth(struct part_bus *pb, const char *queue);
/* fn(arg) after every poll of the loop (the daemon's --http pages);
 * NULL for none. */
void part_bus_on_poll(struct part_bus *pb, void (*fn)(void *), void *arg);
void part_bus_free(struct part_bus *pb);

#endif

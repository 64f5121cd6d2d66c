/* busloop.h -- the durable loop's transport on lib/bus: the part every
 * daemon's adapter shares (the orchestrator's daemon.c, the participants'
 * part_bus.c). Outbox rows go out, alone or held for a bundle; the
 * broker's answers come back to the loop row by row; held deliveries
 * are settled. What differs between daemons (what they consume, how a
 * delivery becomes the loop's, where a refused one goes) stays in their
 * adapters.
 *
 * The adapter embeds a struct busloop as its FIRST member, so one
 * pointer is the transport's ctx for these functions and for its own:
 *
 *   struct adapter { struct busloop bl; ... };
 *   struct durable_transport t = {
 *           .ctx = a, .publish = busloop_publish,
 *           .flush = busloop_flush, .ready = busloop_ready,
 *           .stop_consuming = busloop_stop,
 *           .unconfirmed = busloop_unconfirmed,
 *           .poll = own_poll, .settle = own_settle};
 *
 * The adapter's poll sets bl.d (the loop) before it polls the bus, and
 * its on_confirm hands every tag that is not its own to
 * busloop_confirmed.
 *
 * Rows: a row is published mandatory when durable_msg.mandatory (a
 * command: nobody bound is an answer the loop must hear), and may wait
 * in the bundler for the flush when durable_msg.bundle. A row the bus can
 * never take (bus_message_fits: larger than its max_body, a name over
 * AMQP's 255 bytes) is logged with its type, id and size and given back
 * to the loop as DURABLE_REFUSED, which drops it: the loop publishes in
 * seq order, so keeping it would hold up every row after it, every saga's
 * commands and events, for good. Any other failure (out of memory) is
 * the loop's "not sent": it tries again at its next turn. A row the
 * bundler held and then could not send alone at the flush (out of memory
 * again) comes back to the loop as DURABLE_NACK, and goes out at its next
 * turn (tests/unit/test_busloop.c).
 *
 * Ownership: the busloop owns its bus, bundler and held deliveries; the
 * adapter opens the bus and makes the bundler, busloop_close frees all
 * three.
 */
#ifndef SAGA_BUSLOOP_H
#define SAGA_BUSLOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bundler.h"
#include "bus.h"
#include "durable.h"
#include "held.h"

struct busloop {
	struct bus *bus;
	struct bundler *bundler;
	struct durable *d;    /* the loop, as the adapter's poll last saw it */
	struct held_set held; /* deliveries until settled */
	/* Where busloop_copy sends held deliveries' copies, set by the
	 * adapter: the exchange (borrowed), and the routing key: dlq_key
	 * for every dead letter if set (borrowed), else "<queue>.dlq" or
	 * "<queue>.retry" after the held delivery's queue. retry_ms: how
	 * long a copy that came back unroutable waits to be made again. */
	const char *copy_exchange, *copy_dlq_key;
	int64_t copy_retry_ms;
	bool copies_wait; /* a held delivery is copy_again */
};

/* struct durable_transport's functions; ctx points at a struct busloop
 * (the adapter, whose first member it is). */
int busloop_publish(void *ctx, const struct durable_msg *m, uint64_t tag);
void busloop_flush(void *ctx);
bool busloop_ready(void *ctx);
int busloop_stop(void *ctx);
size_t busloop_unconfirmed(void *ctx);

/* The broker's answer for a tag that is not the adapter's own: a held
 * copy's (HELD_COPY_TAG) settles its original, or, when it came back
 * unroutable, is made again (busloop_copy); an outbox row's, alone or in
 * a bundle, goes to the loop (BUS_ACK as DURABLE_ACK, BUS_RETURNED as
 * DURABLE_RETURNED). */
void busloop_confirmed(struct busloop *bl, uint64_t tag, enum bus_confirm c);

/* A copy of the held delivery h (an item alone, as a message of its
 * own: held_message) to its dead-letter route (dlq) or its retry route,
 * mandatory, with the reason why (x-saga-error) and attempts; the
 * original is acked when the copy is confirmed, and h is `copying` until
 * then. A copy that does not land is made again by busloop_copy_waiting,
 * with the reason it was first given, the original unsettled meanwhile,
 * so neither a crash nor a stop loses it: at once when the bus could not
 * take it for want of memory, copy_retry_ms later when it came back
 * unroutable (someone deleted the queue; a reconnect declares it
 * again). Each is logged once. One the bus can never take (a name over
 * 255 bytes) is logged and the original acked: copying it again would
 * not change that. */
void busloop_copy(struct busloop *bl, struct held *h, bool dlq, const char *why,
                  int64_t attempts);
/* The copies that did not land, made again once due: from the
 * adapter's poll, after the bus's. */
void busloop_copy_waiting(struct busloop *bl);

/* Settles a held delivery (held.h's held_settle): acked, or rejected. */
void busloop_settle(struct busloop *bl, uint64_t ref, bool reject);

/* Closes the bus, drops every held delivery and frees the bundler (the
 * adapter's close; NULL members are skipped). */
void busloop_close(struct busloop *bl);

#endif

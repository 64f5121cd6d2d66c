/* held.h -- deliveries kept until they are settled.
 *
 * The bus lends a delivery's bytes only for its callback, while a daemon
 * on the durable loop settles it after its batch commits: acked, or
 * copied to its queue's retry or dead-letter route with its properties
 * and the reason. So each delivery (or bundle item) is held: its
 * properties and body copied into one allocation, found again by its
 * ref, dropped when settled.
 *
 * A set holds at most the consumer's prefetch window (a few hundred), so
 * finding is a scan; dropping moves the last entry into the hole, so a
 * pointer from held_find is good until the next held_add or held_drop.
 *
 * Settling (held_settle) and copying (held_message) are the same for
 * every daemon on the durable loop: the orchestrator's adapter
 * (orchestrator/svc/daemon.c) and the participants' (part_bus.c).
 *
 * Failure contract: held_add returns NULL when memory runs out; the set
 * is then as it was.
 */
#ifndef SAGA_HELD_H
#define SAGA_HELD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bundler.h"
#include "bus.h"
#include "envelope.h"

/* The publish tag of a held delivery's copy (to its retry or dead-letter
 * route) is HELD_COPY_TAG | ref: its confirm settles ref. The bus's own
 * refs, the bundler's items and tags, and outbox seqs never set it. */
#define HELD_COPY_TAG (UINT64_C(1) << 63)

struct held {
	uint64_t ref;
	int64_t offset; /* in the stream it came from, -1 if none */
	int64_t timestamp_ms;
	/* never NULL: "" for what the delivery did not carry */
	const char *queue, *message_id, *correlation_id, *type, *reply_to,
	        *traceparent, *content_type;
	const void *body;
	size_t len;
	/* the holder's own, zero after held_add */
	int attempt;
	bool item;    /* a bundle's item, not a whole delivery */
	bool copying; /* its dead-letter or retry copy is unconfirmed */
	/* Its copy, as last made: to Q.dlq (copy_dlq) or Q.retry, with
	 * copy_attempts and the reason copy_why (owned; NULL for none, or
	 * if it could not be kept). copy_again: it did not land (out of
	 * memory, or unroutable) and is made again from copy_at_ms (mono)
	 * on. */
	bool copy_again, copy_dlq;
	int64_t copy_attempts, copy_at_ms;
	char *copy_why;
	char *mem; /* owns the strings and the body */
};

struct held_set {
	struct held *v;
	size_t n, cap;
};

/* Copies d; queue, when not NULL, replaces d->queue (where its copies
 * go). */
struct held *held_add(struct held_set *s, const struct bus_delivery *d,
                      const char *queue);
/* The held copy of ref, NULL if none. */
struct held *held_find(struct held_set *s, uint64_t ref);
/* Frees ref's copy and its copy_why (nothing if none). */
void held_drop(struct held_set *s, uint64_t ref);
/* Frees every copy and the set's array. */
void held_clear(struct held_set *s);

/* ref is done with: its copy dropped (if held), and acked on bus, or
 * rejected (reject true: to its queue's dead-letter exchange, which
 * routes it round a retry queue or to the DLQ). A bundle's item (b says
 * which refs are) settles its bundle instead: acked once every item is,
 * rejected whole with the first item rejected. */
void held_settle(struct held_set *s, struct bundler *b, struct bus *bus,
                 uint64_t ref, bool reject);

/* m becomes h as a message of its own, for a copy to its retry or
 * dead-letter route: h's properties and body, and where h carries no
 * properties (a bundle's item: they are in its envelope) the envelope's
 * id, saga, type and time, decoded into e, which the caller clears
 * after publishing. exchange, routing_key, error and attempts are left
 * to the caller. Pointers into h and e: valid while both are. */
void held_message(const struct held *h, struct envelope *e,
                  struct bus_message *m);

#endif

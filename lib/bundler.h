/* bundler.h -- bundles (lib/envelope.h) for the durable loop's bus
 * transports: the messages for one queue that one pass over an outbox
 * makes ready go out as one message (the orchestrator's commands for a
 * participant, a participant's replies to bundled commands), and a bundle
 * that comes in becomes its items (replies at the orchestrator, commands
 * at a participant). The broker's work is per message, so under load a
 * saga's three commands and three replies cost a fraction of a message
 * each; at low load a pass holds one message per queue and nothing
 * changes on the wire.
 *
 * Outgoing: bundler_hold() keeps a copy of a command (an outbox row, its
 * publish tag the row's seq); bundler_flush() sends what is held through
 * the caller's publish function: a lone command as itself (v1, with its
 * own properties), several for one routing key as one bundle (type
 * saga.bundle, one fresh message id, the shared reply_to, mandatory) with
 * one tag of its own. bundler_confirmed() turns the broker's answer for
 * that tag back into one answer per row, so the loop deletes each row as
 * before. A bundle the broker cannot take (too large) goes out as singles.
 *
 * Incoming: bundler_items() gives a bundle delivery's items references of
 * their own, which the loop acks, rejects or dead-letters like any
 * delivery; bundler_settle() says when the bundle's own delivery is
 * settled: acked once every item is, or rejected (redelivered whole) when
 * an item cannot be handled and has no other way out.
 *
 * No I/O of its own: the publish function is the caller's, so this is
 * unit-tested without a broker. Ownership: the bundler copies what it
 * holds; pointers handed to the publish function are valid for the call.
 */
#ifndef SAGA_BUNDLER_H
#define SAGA_BUNDLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"

/* Publish tags of bundles have this bit set (outbox seqs never do). */
#define BUNDLER_TAG (UINT64_C(1) << 61)
/* Item references are BUNDLER_ITEM | slot << 9 | item: bits the bus
 * keeps out of its own delivery refs (BUS_REF_FOREIGN, bus.h). */
#define BUNDLER_ITEM BUS_REF_FOREIGN

struct bundler;

/* max: items per bundle, 1..ENVELOPE_BUNDLE_MAX (1: never bundle; held
 * commands go out alone). NULL on out of memory. */
struct bundler *bundler_new(size_t max);
void bundler_free(struct bundler *b);

typedef int (*bundler_publish_fn)(void *arg, const struct bus_message *m,
                                  uint64_t tag);

/* Holds m (copied) to go out at the next flush; tag comes back through
 * bundler_confirmed. A bundle that reaches max is sent at once through
 * fn. 0, or -1 (nothing held) on out of memory: publish m alone. */
int bundler_hold(struct bundler *b, const struct bus_message *m, uint64_t tag,
                 bundler_publish_fn fn, void *arg);

/* Sends everything held. 0, or -1 if fn failed for a row sent alone: a
 * row fn does not send is fn's to answer for (its tag is never confirmed
 * here; busloop hands it back to the loop, which sends it again). A
 * bundle fn does not take goes out as its rows, one by one. */
int bundler_flush(struct bundler *b, bundler_publish_fn fn, void *arg);

/* If tag is one of the bundles sent: calls row(arg, t) for each row's tag
 * and returns 1; 0 for any other tag. */
int bundler_confirmed(struct bundler *b, uint64_t tag,
                      void (*row)(void *arg, uint64_t tag), void *arg);

/* Rows in bundles sent and not confirmed, minus those bundles: add it to
 * the bus's count of unconfirmed messages to count rows. */
size_t bundler_rows_extra(const struct bundler *b);

/* A bundle delivery `ref` with n items: *first gets item 0's reference
 * (item i's is *first + i). 0, or -1 on out of memory. */
int bundler_items(struct bundler *b, uint64_t ref, size_t n, uint64_t *first);

enum bundler_settle {
	BUNDLER_PLAIN,  /* not an item: settle ref itself */
	BUNDLER_WAIT,   /* other items are open, or the bundle is rejected */
	BUNDLER_ACK,    /* the last item: ack *bundle */
	BUNDLER_REJECT, /* reject *bundle (the first item rejected) */
};

/* An item is settled: done (reject false) or it must come back (reject
 * true: the whole bundle is rejected, once). */
enum bundler_settle bundler_settle(struct bundler *b, uint64_t ref, bool reject,
                                   uint64_t *bundle);

/* 1 if ref is an open item's reference. */
bool bundler_is_item(const struct bundler *b, uint64_t ref);

#endif

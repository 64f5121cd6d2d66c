/* envelope.h -- the message envelope every daemon sends and receives.
 *
 * Wire format (schema/envelope.md): the AMQP body is a msgpack map
 *   {v: 1, id, saga, type, step, attempt, ts, payload, re?}
 * with the AMQP properties message_id = id, correlation_id = saga,
 * type = type, content_type = application/msgpack, delivery_mode = 2,
 * timestamp = ts / 1000, and a `traceparent` header.
 *
 * Decoding is strict and bounded: every byte goes through value_unpack
 * (lib/value.h) with value_default_limits, then each field is checked for
 * presence, type and size; unknown fields are an error. Nothing from the
 * network can make it crash or allocate without bound.
 *
 * Bundles (v 2): several envelopes bound for one queue in one AMQP
 * message, so that the broker does its per-message work once for many
 * commands (or replies). The AMQP type is "saga.bundle", reply_to is the
 * bundle's (every item shares it), and the body is the msgpack map
 *   {v: 2, items: [{m: bin, tp?: str}, ...]}
 * with 1..ENVELOPE_BUNDLE_MAX items: `m` is an item's v1 body exactly as
 * it would travel alone, `tp` its traceparent. Each item keeps its own
 * message id, saga, reply and dead-lettering: a consumer handles the items
 * one by one and sends a failing one alone (a v1 message) to its retry or
 * dead-letter queue. Decoding a bundle checks the bundle only; each item's
 * body goes through envelope_decode, so one bad item spoils nothing else.
 *
 * Ownership: struct envelope owns its payload; envelope_clear releases it.
 * The id fields are fixed-size arrays so that decoding allocates nothing
 * but the payload.
 */
#ifndef SAGA_ENVELOPE_H
#define SAGA_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "value.h"

#define ENVELOPE_VERSION  1
#define ENVELOPE_ID_MAX   201 /* id, saga, re: 1..200 bytes */
#define ENVELOPE_TYPE_MAX 121 /* type: 1..120 bytes of [a-z0-9_.-] */
#define ENVELOPE_STEP_MAX 65  /* step: 0..64 bytes */

struct envelope {
	int v;
	char id[ENVELOPE_ID_MAX];     /* message id */
	char saga[ENVELOPE_ID_MAX];   /* saga id = order id */
	char type[ENVELOPE_TYPE_MAX]; /* e.g. inventory.reserve */
	char step[ENVELOPE_STEP_MAX]; /* statechart state, may be "" */
	char re[ENVELOPE_ID_MAX];     /* replies: the message id replied to */
	int64_t attempt;              /* >= 0 */
	int64_t ts;                   /* ms since the epoch */
	struct value payload;         /* a map */
};

/* An empty envelope: v 1, empty strings, attempt 0, ts 0, payload an
 * empty map. Can't fail. */
void envelope_init(struct envelope *e);
/* Releases the payload and re-initialises. NULL is fine. */
void envelope_clear(struct envelope *e);

/* Encodes e into a fresh malloc'd buffer (*buf, *len; the caller frees).
 * -1 (nothing allocated) if a field is invalid (empty id/saga/type, bad
 * type characters, payload not a map) or on out of memory. */
int envelope_encode(const struct envelope *e, char **buf, size_t *len);

/* Decodes body into *out (initialised by this call; the caller clears it
 * on success and on failure). -1 with a precise message in err, e.g.
 * "missing field \"saga\"", "field \"attempt\" must be an integer, got
 * string", "unknown field \"x\"", "unsupported envelope version 2", or the
 * decoder's "at byte 17: map key is not a string". */
int envelope_decode(const void *body, size_t len, struct envelope *out,
                    char *err, size_t errlen);

/* ---- bundles ---- */

#define ENVELOPE_BUNDLE_TYPE "saga.bundle"
#define ENVELOPE_BUNDLE_MAX  256 /* items in one bundle */
#define ENVELOPE_TP_MAX      128 /* traceparent: 0..127 bytes */

struct envelope_item {
	const void *body; /* a v1 envelope, not yet checked */
	size_t len;
	const char *traceparent; /* "" if none */
};

/* A decoded bundle: items[0..n) point into `root`, which it owns. */
struct envelope_bundle {
	struct value root;
	struct envelope_item *items;
	size_t n;
};

/* Encodes n (1..ENVELOPE_BUNDLE_MAX) items into a fresh malloc'd buffer
 * (*buf, *len; the caller frees). -1 (nothing allocated) for a bad count,
 * an empty or oversized item, a traceparent too long, or out of memory. */
int envelope_bundle_encode(const struct envelope_item *items, size_t n,
                           char **buf, size_t *len);

/* Decodes a bundle's body into *out (the caller clears it on success and
 * on failure). -1 with a precise message in err, e.g. "item 3: field
 * \"m\" must be binary, got string" or "bundle of 300 items exceeds 256". */
int envelope_bundle_decode(const void *body, size_t len,
                           struct envelope_bundle *out, char *err,
                           size_t errlen);

/* Releases a bundle; NULL and a zeroed bundle are fine. */
void envelope_bundle_clear(struct envelope_bundle *b);

/* The envelopes one AMQP message carries: the body itself when amqp_type
 * is not ENVELOPE_BUNDLE_TYPE, else each item of the bundle. Calls fn for
 * each with its body and traceparent (a single's is `traceparent`). 0, or
 * -1 with the reason in err if the bundle cannot be decoded (fn is then
 * not called). For simple consumers (simulators, tests); the participant
 * framework and the orchestrator settle items one by one instead. */
typedef void (*envelope_each_fn)(void *arg, const void *body, size_t len,
                                 const char *traceparent);
int envelope_each(const char *amqp_type, const void *body, size_t len,
                  const char *traceparent, envelope_each_fn fn, void *arg,
                  char *err, size_t errlen);

/* 1 if s is a valid message type (1..120 bytes of [a-z0-9_.-]). */
int envelope_type_valid(const char *s);

/* A fresh unique message id: "<prefix>-<32 hex digits>", the first 12 the
 * time in ms since the epoch, the other 20 random (80 bits), like a
 * UUIDv7: ids made later sort later, so an index on them (the
 * orchestrator's inbox, its sagas by order id) grows at its right edge
 * instead of dirtying a random leaf per insert. -1 if getrandom fails or
 * the id does not fit in cap. */
int envelope_new_id(char *buf, size_t cap, const char *prefix);

#endif

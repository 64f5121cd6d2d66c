/* presence.h -- who is taking commands right now: the participants'
 * announcements and the orchestrator's view of them.
 *
 * Why. RabbitMQ cannot tell a publisher whether a message waits in a queue
 * nobody consumes. Without that, a step's timeout cannot tell "the
 * participant failed to answer" from "the participant (or the broker) was
 * away and the command is still queued", and a routine restart burns a
 * step's attempts and fails orders that would have completed. So every
 * participant daemon announces itself every PRESENCE_INTERVAL_MS while it
 * consumes, and the orchestrator counts an attempt's timeout only when a
 * participant that serves the command's routing key was there for the
 * whole attempt (statecharts/README.md, "Timeouts").
 *
 * The announcement: an envelope of type PRESENCE_TYPE (saga "-") published
 * to the fanout exchange PRESENCE_EXCHANGE, non-persistent, expiring after
 * PRESENCE_TTL_MS, with payload
 *   {name: "shipping", instance: "india", interval_ms: 1000,
 *    keys: ["shipping.india.*"], fallback: false}
 * `keys` are AMQP topic patterns over the command routing keys the
 * instance consumes (`<to>` or `<to>.<route>`, see orchestrator/svc/orch.c);
 * `fallback` marks an instance that takes only what no other instance
 * claims (shipping's default region, fed by an alternate exchange).
 *
 * The view (struct presence): instances by (name, instance), each with
 * when it was last heard and since when it has been heard without a gap
 * (a gap is more than PRESENCE_LAPSE x its interval). presence_check()
 * answers for one command:
 *   PRESENCE_UNKNOWN  no instance of `to` was ever heard (a participant
 *                     that does not announce: the timeout counts, as
 *                     before presence existed);
 *   PRESENCE_TAKEN    an instance serving the key has been there, without
 *                     a gap, since `since_ms`;
 *   PRESENCE_ABSENT   otherwise.
 * A fallback instance serves a key only when no non-fallback instance ever
 * heard has a pattern matching it. Pure data, no I/O: tested alone.
 */
#ifndef SAGA_PRESENCE_H
#define SAGA_PRESENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h"

#define PRESENCE_EXCHANGE    "saga.presence"
#define PRESENCE_TYPE        "participant.presence"
#define PRESENCE_INTERVAL_MS 1000
#define PRESENCE_TTL_MS      10000 /* an announcement older is dropped */
#define PRESENCE_LAPSE       3     /* intervals of silence that end a run */
#define PRESENCE_MAX_KEYS    16
#define PRESENCE_MAX         256 /* instances remembered */
#define PRESENCE_NAME_MAX    64

_Static_assert(PRESENCE_TTL_MS > PRESENCE_INTERVAL_MS * 2,
               "an announcement must outlive the next one");

struct presence_announce {
	char name[PRESENCE_NAME_MAX];     /* the chart's `to` */
	char instance[PRESENCE_NAME_MAX]; /* "" for the only one */
	int64_t interval_ms;
	char keys[PRESENCE_MAX_KEYS][256];
	size_t nkeys;
	bool fallback;
};

/* Builds the announcement envelope (a fresh id, ts = now_ms). 0, or -1
 * when a field does not fit. */
int presence_encode(const struct presence_announce *a, int64_t now_ms,
                    struct envelope *out);
/* Reads one back; -1 with a reason for anything malformed. */
int presence_decode(const struct envelope *e, struct presence_announce *out,
                    char *err, size_t errlen);

/* True if the AMQP topic pattern (words split by '.', '*' one word, '#'
 * zero or more) matches the routing key. */
bool presence_topic_match(const char *pattern, const char *key);

enum presence_verdict {
	PRESENCE_UNKNOWN,
	PRESENCE_TAKEN,
	PRESENCE_ABSENT,
};

struct presence;

struct presence *presence_new(void);
void presence_free(struct presence *p);
/* Records an announcement heard at now_ms. When PRESENCE_MAX instances are
 * known, the one heard longest ago is forgotten. */
void presence_note(struct presence *p, const struct presence_announce *a,
                   int64_t now_ms);
enum presence_verdict presence_check(const struct presence *p, const char *to,
                                     const char *key, int64_t since_ms,
                                     int64_t now_ms);
/* Instances live at now_ms (for /metrics and logs). */
size_t presence_live(const struct presence *p, int64_t now_ms);

#endif

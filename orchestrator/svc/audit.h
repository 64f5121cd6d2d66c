/* audit.h -- the audit trail: the stream `audit` that keeps every order.#
 * event of order_events (declared by the orchestrator, daemon.c), and a
 * reader that finds one order's events in it (sagactl audit, the
 * console's saga page).
 *
 * The stream is read over AMQP 0-9-1 with a connection of the reader's
 * own (lib/bus.h): basic.qos, a consumer from a time (x-stream-offset) or
 * from the first message retained, manual acks that are only credit.
 * Nothing is removed: any number of readers may read the same events.
 * A stream has no end marker over AMQP 0-9-1, so a read stops when it
 * has caught up: at the first message published after the read began
 * (or after the query's `until`), or when nothing has come for a short
 * idle time; or after scanning a cap of messages (said in the result),
 * or at its deadline.
 *
 * Failure contract: audit_read returns 0 (the result says how the read
 * ended, events or none) or -1 with the reason in err (the broker cannot
 * be reached, the login or the consume is refused: e.g. no queue audit,
 * or no read permission on it); the callback is never called after -1
 * is known, but events handed before a connection is lost were handed.
 */
#ifndef SAGA_AUDIT_H
#define SAGA_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "envelope.h"

struct bus_config;

#define AUDIT_QUEUE           "audit"
#define AUDIT_MAX_AGE_DEFAULT "7D"
/* Where a read from a time enters the stream, before it: events are
 * filtered by their publisher's clock, the stream is entered by the
 * broker's (another host's clock, a chunk's first message) */
#define AUDIT_START_MARGIN_MS 10000

/* Is s a stream retention RabbitMQ takes for x-max-age (a whole number
 * from 1, then one unit of Y M D h m s: "7D", "36h")? 0, or -1 with the
 * reason in err. RabbitMQ refuses anything else when the stream is
 * declared (406, or closes the connection for ""). */
int audit_max_age_check(const char *s, char *err, size_t errlen);

/* Parses an RFC 3339 time ("2026-12-05T16:13:58Z",
 * "2026-12-05 16:13:58.250+01:00"; seconds and a zone are required) into
 * ms since the epoch. 0, or -1 if s is not one. */
int audit_parse_time(const char *s, int64_t *ms);

struct audit_query {
	const char *saga; /* only this saga's (order's) events; NULL: every
	                   * event (e.g. to count them) */
	int64_t since_ms; /* events published at or after (lib/bus.h: the
	                   * publisher's x-published-ms, else their ts); 0:
	                   * every event retained (read from the first) */
	int64_t until_ms; /* stop at the first message published after;
	                   * 0: when caught up with now */
	size_t max_scan;  /* messages scanned at most; 0: 1,000,000 */
	int idle_ms;      /* caught up after this long without a message;
	                   * 0: 500 (the first message may take 2 s more) */
	int timeout_ms;   /* the whole read; 0: 30 s */
};

struct audit_event {
	int64_t offset;       /* in the stream */
	int64_t published_ms; /* the publisher's time (lib/bus.h), 0 unknown */
	const char *routing_key;
	const struct envelope *env; /* decoded: id, saga, type, ts, payload */
};

/* Gets each of the saga's events, in stream order. Return 0 to go on,
 * anything else to stop the read (not an error). */
typedef int (*audit_event_fn)(void *arg, const struct audit_event *e);

enum audit_end {
	AUDIT_CAUGHT_UP, /* a message published after the read began (or
	                  * after until), or the idle time passed */
	AUDIT_CAPPED,    /* max_scan messages scanned */
	AUDIT_TIMED_OUT, /* the deadline passed first */
	AUDIT_STOPPED,   /* the callback said stop */
};

struct audit_result {
	enum audit_end end;
	size_t scanned;      /* messages read from the stream */
	size_t matched;      /* events handed to the callback */
	size_t undecodable;  /* messages that are not envelopes (skipped) */
	int64_t last_offset; /* the last message's offset, -1 if none */
};

/* Reads `audit` on a connection of its own to conn's URL (its TLS files,
 * insecure, connect timeout; name for logs; the rest is the reader's).
 * Blocks up to q->timeout_ms (plus the connect). 0 with *res, or -1 with
 * err. */
int audit_read(const struct bus_config *conn, const struct audit_query *q,
               audit_event_fn fn, void *arg, struct audit_result *res,
               char *err, size_t errlen);

/* Why a read ended, for people ("caught up", "stopped after scanning
 * 1000000 messages (the cap)", ...) into buf. */
const char *audit_end_text(const struct audit_result *r, char *buf, size_t cap);

/* An event as JSON: {offset, at (its ts, ms), published_at, type,
 * message_id, step, payload}. NULL only when out of memory. */
json_t *audit_event_json(const struct audit_event *e);

/* An event as one line for people: "TIME TYPE MESSAGE_ID key=value..."
 * (TIME UTC to the ms; the payload's key fields: saga_status, reason,
 * customer_id, total_cents, currency, payment_method when present). */
void audit_event_line(const struct audit_event *e, char *buf, size_t cap);

#endif

/* otlp.h -- exports spans to an OpenTelemetry collector: OTLP over
 * HTTP/JSON (POST <url>, normally http://collector:4318/v1/traces), off
 * unless a daemon is given a URL (--otlp-url).
 *
 * The daemon's loop hands over finished spans with otlp_emit, which copies
 * each into a bounded queue and returns at once; a thread of the exporter
 * posts them in batches (up to OTLP_BATCH spans, or what has waited
 * OTLP_FLUSH_MS). The loop never waits for the collector: a queue that is
 * full (the collector is down or slow) drops the newest span and counts
 * it; a POST that fails (connection refused, timeout, an answer other than
 * 2xx) drops its batch and counts it, and the next batch tries again.
 * Spans are telemetry: losing some under an outage of the collector is the
 * documented price of never slowing a saga.
 *
 * Ids: a trace id is 32 lowercase hex digits, a span id 16 (lib/trace.h's
 * traceparent carries both), so a span joins the trace its message
 * carried; otlp_span_id derives a stable span id from a text (the same
 * saga and step always give the same id, with no state to keep).
 *
 * Libraries: jansson writes the JSON; libcurl posts it (http and https,
 * proxies from the environment as curl does).
 */
#ifndef SAGA_OTLP_H
#define SAGA_OTLP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OTLP_QUEUE    4096 /* spans waiting at most */
#define OTLP_BATCH    256  /* spans per POST at most */
#define OTLP_FLUSH_MS 1000
#define OTLP_ATTRS    8

enum otlp_kind { OTLP_INTERNAL = 1, OTLP_SERVER = 2, OTLP_CLIENT = 3 };

struct otlp_span {
	char trace_id[33];  /* 32 hex */
	char span_id[17];   /* 16 hex */
	char parent_id[17]; /* 16 hex, or "" for a root span */
	char name[128];
	enum otlp_kind kind;
	int64_t start_ms, end_ms; /* wall clock, ms since the epoch */
	bool error;               /* status ERROR (else UNSET) */
	struct {
		char key[32];
		char value[128];
	} attr[OTLP_ATTRS];
	size_t nattr;
};

struct otlp_stats {
	uint64_t exported; /* spans the collector accepted */
	uint64_t dropped;  /* spans lost: queue full or a failed POST */
	uint64_t posts_failed;
};

struct otlp;

/* Starts the exporter thread for url, naming the resource `service`
 * (service.name). NULL with the reason in err: a URL that is not http://
 * or https://, or no thread. */
struct otlp *otlp_start(const char *url, const char *service, char *err,
                        size_t errlen);
/* Posts what is queued (waiting up to 2 s for the collector), stops the
 * thread, frees everything. NULL is fine. */
void otlp_stop(struct otlp *o);

/* Queues a copy of s; false if it was dropped (queue full). NULL o: no
 * exporter, nothing done (false). */
bool otlp_emit(struct otlp *o, const struct otlp_span *s);
/* Adds key=value to s (cut to fit; ignored past OTLP_ATTRS). */
void otlp_attr(struct otlp_span *s, const char *key, const char *value);
/* A stable span id (16 hex) for text: FNV-1a of it, never all zero. */
void otlp_span_id(const char *text, char out[17]);

/* A snapshot of the counters (thread-safe). */
struct otlp_stats otlp_stats(struct otlp *o);

#endif

/* console_audit.c -- a saga's events from the audit stream, for its page
 * and /api/sagas/ID (console_int.h: console_saga_audit).
 *
 * The read (audit.h) runs on the HTTP thread that serves the request,
 * on a connection of its own to the operator's broker URL (--dlq-amqp):
 * the saga loop never waits for it. It takes the events published from
 * 30 s before the saga began, and for a finished saga stops at the first
 * message published a minute after it finished, so a busy stream is not
 * read to its end; a deadline and a cap bound the rest (a stream of
 * thousands of events a second may hit them: the page says so). The page says
 * when no URL is set, when the broker cannot be read, and when the read stopped
 * short.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "bus.h"
#include "console_int.h"
#include "jsonout.h"

#define AUDIT_TIMEOUT_MS 5000
#define AUDIT_CONNECT_MS 2000
#define AUDIT_SCAN_MAX   500000
#define AUDIT_AFTER_MS   60000 /* a finished saga: read a minute past */
/* order.created is published before the saga starts: by the time it
 * waited in the orders queue. A longer wait than this and the page
 * misses it (sagactl audit without --since does not); a longer margin
 * is more of a busy stream to scan on every page view. */
#define AUDIT_BEFORE_MS 30000

static int
add_event(void *arg, const struct audit_event *e)
{
	return json_array_append_new(arg, audit_event_json(e)) != 0;
}

static bool
finished(const char *status)
{
	return strcmp(status, "completed") == 0 ||
	       strcmp(status, "failed") == 0 || strcmp(status, "aborted") == 0;
}

/* {events, complete, note, error}: error set, events empty, when it
 * cannot be read. */
static json_t *
audit_doc(const char *amqp, const char *id, int64_t started_ms,
          const char *status, int64_t updated_ms)
{
	struct bus_config bc = {
	        .url = amqp,
	        .name = "console-audit",
	        .ca_file = getenv("SAGA_AMQP_CA"),
	        .cert_file = getenv("SAGA_AMQP_CERT"),
	        .key_file = getenv("SAGA_AMQP_KEY"),
	        .connect_timeout_ms = AUDIT_CONNECT_MS,
	        .rpc_timeout_ms = AUDIT_TIMEOUT_MS,
	};
	struct audit_query q = {
	        .saga = id,
	        .since_ms = started_ms - AUDIT_BEFORE_MS,
	        .until_ms = finished(status) ? updated_ms + AUDIT_AFTER_MS : 0,
	        .max_scan = AUDIT_SCAN_MAX,
	        .timeout_ms = AUDIT_TIMEOUT_MS,
	};
	struct audit_result res;
	json_t *events = json_array();
	char err[1024], note[256];

	if (amqp == NULL)
		return json_pack("{s:o,s:b,s:n,s:s}", "events", events,
		                 "complete", 0, "note", "error",
		                 "not configured: the console reads the stream "
		                 "audit with the operator's broker URL "
		                 "(--dlq-amqp, SAGA_DLQ_AMQP_URL)");
	if (audit_read(&bc, &q, add_event, events, &res, err, sizeof(err)) !=
	    0) {
		json_array_clear(events);
		return json_pack("{s:o,s:b,s:n,s:o}", "events", events,
		                 "complete", 0, "note", "error",
		                 jsonout_str(err));
	}
	return json_pack("{s:o,s:b,s:o,s:n}", "events", events, "complete",
	                 res.end == AUDIT_CAUGHT_UP, "note",
	                 jsonout_str(audit_end_text(&res, note, sizeof(note))),
	                 "error");
}

void
console_saga_audit(const char *amqp, json_t *doc)
{
	const json_t *started = json_object_get(doc, "started_at");
	const json_t *updated = json_object_get(doc, "updated_at");
	const char *status = json_string_value(json_object_get(doc, "status"));
	const char *id = json_string_value(json_object_get(doc, "id"));

	if (id == NULL || status == NULL)
		return;
	json_object_set_new(doc, "audit",
	                    audit_doc(amqp, id, json_integer_value(started),
	                              status, json_integer_value(updated)));
}

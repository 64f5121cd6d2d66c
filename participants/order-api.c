/* order-api -- the shop's front door: takes orders over HTTP, keeps them
 * in its own database with the message that announces them (a
 * transactional outbox), publishes that message when the broker takes it,
 * and answers an order's status from the order.* events.
 *
 *   order-api --amqp URL --db PATH [--listen ADDR:PORT] [--log-level L]
 *
 * (--orchestrator-db PATH is still accepted and ignored, with a warning:
 * order-api no longer reads the orchestrator's database.)
 *
 * POST /orders (application/json, at most 64 KiB):
 *   {"customer_id": "c-1",
 *    "items": [{"sku": "sku-1", "quantity": 2, "unit_price_cents": 1999}],
 *    "currency": "EUR", "payment_method": "card" | "cod",
 *    "card_token": "tok_..."            (card only, required),
 *    "ship_to": {"country": "india", ...other string fields},
 *    "category": "electronics"}         (optional, default "general")
 *   -> 202 {"order_id", "status": "accepted", "replayed": false} once the
 *      order and its order.created message are committed to --db (one
 *      transaction, synchronous=FULL): the broker is not waited for, and
 *      may be away. 400 {"error", "field"} naming the first field that is
 *      wrong; 413 over 64 KiB; 409 when an Idempotency-Key is reused with
 *      a different body; 503 when the database cannot commit.
 *   Idempotency-Key header (1..200 bytes): the same key and body give the
 *   same order id (202, "replayed": true) and publish nothing new; two
 *   concurrent POSTs with the same new key make one order.
 * GET /orders/{id} -> 200 {"order_id", "status", "last_event", "state",
 *   "created_at_ms", "updated_at_ms"[, "cancel"]}: status "accepted"
 *   until an order.* event other than order.created has come for it,
 *   then "running", and "completed", "failed" or "cancelled" after
 *   order.completed, order.failed or order.cancelled. last_event and
 *   state (the statechart step the event named) are absent before the
 *   first event; "cancel" (as GET .../cancel, without order_id) is
 *   present once a cancel was requested. 404 if neither the orders nor
 *   the events know it.
 * POST /orders/{id}/cancel (body empty or {"reason": "..."}, a string of
 *   at most 200 bytes; any other key is a 400 naming it): the customer's
 *   cancel, decided in the writer's transaction:
 *   -> 404 if order-api knows nothing of the order;
 *   -> 409 {"error": "too late", "status", "state"} at once if its last
 *      event is final (completed, failed, cancelled);
 *   -> the order's earlier cancel, whatever key this one has (one cancel
 *      per order): 202 {"order_id", "status": "cancel_requested" or
 *      "cancelled", "replayed": true}, or 409 as GET .../cancel if it was
 *      refused;
 *   -> otherwise 202 {"order_id", "status": "cancel_requested",
 *      "replayed": false} once a cancels row and its
 *      order.cancel_requested outbox row are committed (message id
 *      cancel-<order id>, routing key order.cancel_requested on
 *      order_events, correlation id the order id, mandatory; envelope
 *      saga = order id, payload {order_id, reason, actor: "customer"}).
 *      The broker may be away: the relay publishes it later.
 *   The orchestrator decides: the saga is compensated and ends in
 *   order.cancelled, or it answers order.cancel_refused (order-api did
 *   not know yet that the saga had moved on, e.g. to create_shipment).
 *   Idempotency-Key as for orders, per order: the same key and body on
 *   the same order are a replay, anything else with that key a 409.
 * GET /orders/{id}/cancel -> 404 if no cancel was requested; 202
 *   {"order_id", "status": "cancel_requested", "requested_at_ms"[,
 *   "customer_reason"]} while the orchestrator has not answered; 200
 *   {"status": "cancelled", ...} once the order is cancelled; 409
 *   {"status": "refused", "error": "too late", "reason" (the
 *   orchestrator's), "state" (where the saga was), ...} if refused.
 * GET /healthz -> {"status": "ok", "broker": "connected"|"disconnected",
 *   "outbox": N, "oldest_outbox_ms": T (0 when empty)}: 200 as long as
 *   orders can be accepted (the database commits), even with the broker
 *   away; 503 {"status": "error", ...} when the last commit failed or the
 *   database cannot be read.
 * GET /metrics -> Prometheus text: orderapi_responses_total{code},
 *   orderapi_outbox_depth, orderapi_outbox_oldest_seconds,
 *   orderapi_bus_connected.
 *
 * Country and category become routing keys (shipping.<country>.<category>),
 * so they must be 1-64 of [a-z0-9_-].
 *
 * Threads (why: the old single thread waited for each order's confirm in
 * the handler, ~520 orders/s with 16 clients and nothing with the broker
 * away):
 *   - libmicrohttpd's internal threads parse and validate each POST,
 *     queue it for the writer and suspend the connection;
 *   - the writer (participants/common/apistore.h) commits everything
 *     queued in one transaction (group commit: one fsync for the orders
 *     that arrived together), checks Idempotency-Keys and decides cancels
 *     in it, and resumes the connections with their answers;
 *   - the main thread owns the bus (rabbitmq-c is not thread-safe): the
 *     relay reads outbox rows after the last one it handed over (at most
 *     RELAY_WINDOW unconfirmed), publishes them with confirms, and has
 *     the writer delete each row when its confirm arrives. A row returned
 *     unroutable stays and is published again with backoff (1 s doubling
 *     to 60 s), logged; a nack is published again by the bus. After a
 *     crash every row left is published again with its same message id
 *     (created-<order id>, cancel-<order id>): the orchestrator drops
 *     duplicates. The writer wakes the relay with a flag it reads every
 *     RELAY_POLL_MS: bus_poll waits on the AMQP socket alone, so an
 *     eventfd could not interrupt it, and 5 ms of delay is off the
 *     answer's path.
 *   - the main thread also consumes order-api.events (bound to order_events
 *     by "order.#", with order-api.events.retry and .dlq like every
 *     participant queue): each event goes to the writer, and is acked once
 *     recorded (rejected to the retry queue if the commit failed). A
 *     message that is not an envelope of an order.* event goes to
 *     order-api.events.dlq with the reason (x-saga-error). order.created
 *     and order.cancel_requested (order-api's own) are acked and not
 *     recorded. order.cancel_refused marks the order's cancel refused
 *     (the payload's reason, the event's state) and is not the order's
 *     last event: the saga goes on as it was. order.cancelled also marks
 *     the cancel cancelled.
 * The outbox table is generic (exchange, routing key, type, body): orders
 * and cancels leave through it the same way.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "array.h"
#include "clock.h"
#include "apistore.h"
#include "hash.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "order.h"
#include "participant.h"

#define BODY_MAX         (64 * 1024)
#define API_HTTP_THREADS 2    /* libmicrohttpd's thread pool */
#define RELAY_WINDOW     1000 /* outbox rows published and not confirmed */
#define RELAY_POLL_MS    5    /* the relay looks for new rows this often */
#define RETRY_FIRST_MS   1000 /* an unroutable row: first retry after */
#define RETRY_MAX_MS     60000
#define EVENTS_QUEUE     "order-api.events"
#define DLQ_TAG          (UINT64_C(1) << 63) /* a dead-letter copy's tag */
/* order-api's own exchange (participant.h, part_own_exchange) */
#define OWN_EXCHANGE  "order-api" PART_OWN_SUFFIX
#define CANCEL_PREFIX "cancel-" /* a cancel's message id: and the order's */
/* the longest order id a cancel takes: its message id is an envelope id */
#define CANCEL_ID_MAX (ENVELOPE_ID_MAX - 1 - (sizeof(CANCEL_PREFIX) - 1))

_Static_assert(BODY_MAX < INT32_MAX, "bodies are bound as int lengths");

/* An outbox row that came back unroutable, waiting to go again. */
struct retry {
	int64_t seq;
	int64_t due_ms;
};

/* A dead-letter copy in flight; ref is acked when it is confirmed. */
struct dlq_copy {
	uint64_t tag, ref;
};

struct api {
	struct apistore *store;
	struct bus *bus;
	atomic_bool connected; /* the bus's state, for /healthz */
	atomic_bool stopping;  /* POSTs are refused: the writer is closing */
	atomic_int posting;    /* POSTs between the check and the queue */
	/* the relay (main thread only) */
	int64_t cursor; /* the last outbox seq handed to the bus */
	bool more;      /* rows after cursor may exist */
	int64_t *done;  /* confirmed seqs, for the writer to delete */
	size_t ndone, capdone;
	struct retry *retry; /* unroutable rows */
	size_t nretry, capretry;
	int64_t backoff_ms; /* the next unroutable row waits this long */
	uint64_t nacked;    /* the bus's nack count, last logged */
	struct dlq_copy *dlq;
	size_t ndlq, capdlq;
	uint64_t dlq_next;
};

/* One HTTP request's state (libmicrohttpd's con_cls). */
enum upload_state { U_READING, U_WAITING, U_ANSWERED };
struct upload {
	char *buf;
	size_t len;
	bool too_big;
	_Atomic enum upload_state state;
	struct MHD_Connection *conn;
	char *envelope; /* the order.created or order.cancel_requested body,
	                 * while the writer has it */
	char field[160], why[512]; /* a 400's field and reason */
	struct api_req req;
};

/* Grows *p (elements of size sz) to hold n + 1; -1 on out of memory. */
static int
grow(void **p, size_t *cap, size_t n, size_t sz)
{
	size_t c = *cap ? *cap * 2 : 64;
	void *q;
	if (n < *cap)
		return 0;
	q = realloc(*p, c * sz);
	if (q == NULL)
		return -1;
	*p = q;
	*cap = c;
	return 0;
}

/* ---- HTTP answers ---- */

/* Responses by status, for /metrics (any HTTP thread counts, atomically;
 * /metrics reads them on its own). */
static const unsigned counted_codes[] = {200, 202, 400, 404, 405,
                                         409, 413, 500, 503};
#define NCODES ARRAY_LEN(counted_codes)
static atomic_ullong responses[NCODES + 1]; /* the last: any other code */

static void
count_response(unsigned code)
{
	size_t i = 0;

	while (i < NCODES && counted_codes[i] != code)
		i++;
	atomic_fetch_add(&responses[i], 1);
}

static enum MHD_Result
respond(struct MHD_Connection *c, unsigned code, json_t *body)
{
	char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
	struct MHD_Response *r;
	enum MHD_Result ret;

	json_decref(body);
	if (text == NULL)
		return MHD_NO;
	r = MHD_create_response_from_buffer(strlen(text), text,
	                                    MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", "application/json");
	count_response(code);
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result
fail(struct MHD_Connection *c, unsigned code, const char *field,
     const char *msg)
{
	json_t *j = json_pack("{s:s}", "error", msg);
	if (j != NULL && field != NULL)
		json_object_set_new(j, "field", json_string(field));
	return respond(c, code, j);
}

/* ---- POST /orders ---- */

/* FNV-1a of prefix (a cancel's order id and a newline; "" for an order,
 * whose keys' hashes must not change) and then the body. The seed is not
 * FNV's offset basis (a digit short): stored keys were hashed with it. */
static void
body_hash(const char *prefix, const char *s, size_t n, char out[17])
{
	uint64_t h = hash_fnv1a_str(1469598103934665603ull, prefix);

	h = hash_fnv1a(h, s, n);
	snprintf(out, 17, "%016" PRIx64, h);
}

/* The writer is done with u's order (its thread): answer it. */
static void
on_written(struct api_req *r)
{
	struct upload *u = r->arg;
	atomic_store(&u->state, U_ANSWERED);
	MHD_resume_connection(u->conn);
}

/* The order.created envelope for u's body into u->envelope: 0, 400 (the
 * field and reason in u->field, u->why) or 500 (u->why). */
static int
build_order(struct upload *u)
{
	struct envelope e;
	size_t len = 0;
	int rc;

	envelope_init(&e);
	if (envelope_new_id(u->req.order_id, sizeof(u->req.order_id), "ord") !=
	    0) {
		snprintf(u->why, sizeof(u->why), "cannot make an order id");
		return 500;
	}
	if (order_parse(u->buf, u->len, u->req.order_id, &e.payload, u->field,
	                sizeof(u->field), u->why, sizeof(u->why)) != 0) {
		envelope_clear(&e);
		return 400;
	}
	snprintf(e.id, sizeof(e.id), "created-%s", u->req.order_id);
	snprintf(e.saga, sizeof(e.saga), "%s", u->req.order_id);
	snprintf(e.type, sizeof(e.type), "order.created");
	e.ts = clock_wall_ms();
	rc = envelope_encode(&e, &u->envelope, &len);
	envelope_clear(&e);
	if (rc != 0) {
		snprintf(u->why, sizeof(u->why), "cannot encode the order");
		return 500;
	}
	u->req.body = u->envelope;
	u->req.len = len;
	return 0;
}

/* Hands u to the writer; the connection waits, suspended, for
 * on_written. */
static enum MHD_Result
submit(struct api *a, struct MHD_Connection *c, struct upload *u)
{
	const char *tp =
	        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "traceparent");
	char prefix[ENVELOPE_ID_MAX + 1] = "";

	if (tp != NULL && strlen(tp) < sizeof(u->req.traceparent))
		snprintf(u->req.traceparent, sizeof(u->req.traceparent), "%s",
		         tp);
	if (u->req.kind == API_CANCEL)
		snprintf(prefix, sizeof(prefix), "%s\n", u->req.order_id);
	body_hash(prefix, u->buf != NULL ? u->buf : "", u->len, u->req.hash);
	u->req.done = on_written;
	u->req.arg = u;
	u->conn = c;
	atomic_store(&u->state, U_WAITING);
	MHD_suspend_connection(c);
	apistore_submit(a->store, &u->req);
	return MHD_YES;
}

static int build_cancel(struct upload *u);

/* Validates the order or cancel and submits it, or answers at once. An
 * invalid body with an Idempotency-Key still asks the writer about the
 * key: a key reused with another body is a 409 whatever that body is. */
static enum MHD_Result
post_request(struct api *a, struct MHD_Connection *c, struct upload *u)
{
	const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	                                              "Idempotency-Key");
	enum MHD_Result ret;
	int rc;

	if (u->too_big)
		return fail(c, 413, NULL, "the body is over 64 KiB");
	if (key != NULL && (strlen(key) == 0 || strlen(key) > APISTORE_KEY_MAX))
		return fail(c, 400, "Idempotency-Key", "must be 1-200 bytes");
	rc = u->req.kind == API_CANCEL ? build_cancel(u) : build_order(u);
	if (rc == 500 || (rc == 400 && key == NULL))
		return fail(c, (unsigned)rc, rc == 400 ? u->field : NULL,
		            u->why);
	atomic_fetch_add(&a->posting, 1);
	if (atomic_load(&a->stopping)) {
		ret = fail(c, 503, NULL, "shutting down; retry elsewhere");
	} else {
		snprintf(u->req.key, sizeof(u->req.key), "%s", key ? key : "");
		u->req.check_only = rc == 400;
		ret = submit(a, c, u);
	}
	atomic_fetch_sub(&a->posting, 1);
	return ret;
}

/* The writer's answer, after the connection was resumed. */
static enum MHD_Result
answer_written(struct MHD_Connection *c, struct upload *u)
{
	const struct api_req *r = &u->req;

	if (r->code == 0) /* check_only, and the key is new */
		return fail(c, 400, u->field, u->why);
	if (r->code == 409)
		return fail(c, 409, "Idempotency-Key",
		            "already used with a different body");
	if (r->code != 202)
		return fail(c, 503, NULL, "cannot store the order (database)");
	if (!r->replayed)
		log_debug("saga=%s order accepted", r->answer_id);
	return respond(c, 202,
	               json_pack("{s:s,s:s,s:b}", "order_id", r->answer_id,
	                         "status", "accepted", "replayed",
	                         r->replayed));
}

/* ---- POST /orders/{id}/cancel ---- */

/* The customer's reason from u's body (empty, or {"reason": "..."}) into
 * u->req.reason: 0, or 400 (u->field, u->why). */
static int
cancel_reason(struct upload *u)
{
	json_error_t jerr;
	const char *k;
	json_t *j, *v;
	int rc = 0;

	if (u->len == 0)
		return 0;
	j = json_loadb(u->buf, u->len, JSON_REJECT_DUPLICATES, &jerr);
	if (j == NULL || !json_is_object(j)) {
		snprintf(u->why, sizeof(u->why),
		         "the body must be a JSON "
		         "object such as {\"reason\": "
		         "\"...\"}, or empty");
		json_decref(j);
		return 400;
	}
	json_object_foreach(j, k, v)
	{
		snprintf(u->field, sizeof(u->field), "%.100s", k);
		if (strcmp(k, "reason") != 0) {
			snprintf(u->why, sizeof(u->why), "unknown field");
			rc = 400;
		} else if (!json_is_string(v) ||
		           json_string_length(v) > APISTORE_REASON_MAX) {
			snprintf(u->why, sizeof(u->why),
			         "a string of at most 200 bytes");
			rc = 400;
		} else {
			snprintf(u->req.reason, sizeof(u->req.reason), "%s",
			         json_string_value(v));
		}
		if (rc != 0)
			break;
	}
	json_decref(j);
	return rc;
}

/* The order.cancel_requested envelope for u into u->envelope: 0, 400
 * (u->field, u->why) or 500 (u->why). */
static int
build_cancel(struct upload *u)
{
	const char *id = u->req.order_id;
	struct envelope e;
	size_t len = 0;
	int rc = cancel_reason(u);

	if (rc != 0)
		return rc;
	envelope_init(&e);
	snprintf(e.id, sizeof(e.id), CANCEL_PREFIX "%s", id);
	snprintf(e.saga, sizeof(e.saga), "%s", id);
	snprintf(e.type, sizeof(e.type), "order.cancel_requested");
	e.ts = clock_wall_ms();
	rc = value_map_put_str(&e.payload, "order_id", id) != 0 ||
	     (u->req.reason[0] != '\0' &&
	      value_map_put_str(&e.payload, "reason", u->req.reason) != 0) ||
	     value_map_put_str(&e.payload, "actor", "customer") != 0 ||
	     envelope_encode(&e, &u->envelope, &len) != 0;
	envelope_clear(&e);
	if (rc != 0) {
		snprintf(u->why, sizeof(u->why), "cannot encode the cancel");
		return 500;
	}
	u->req.body = u->envelope;
	u->req.len = len;
	return 0;
}

/* An order's status from its last event ("" before the first). */
static const char *
status_of(const char *last_event)
{
	if (last_event[0] == '\0')
		return "accepted";
	if (strcmp(last_event, "order.completed") == 0)
		return "completed";
	if (strcmp(last_event, "order.failed") == 0)
		return "failed";
	if (strcmp(last_event, "order.cancelled") == 0)
		return "cancelled";
	return "running";
}

/* A stored cancel as JSON, and the HTTP code that says the same: 202
 * while it waits for the orchestrator, 200 once the order is cancelled,
 * 409 if it was refused ("too late", with the saga's state then). */
static json_t *
cancel_json(const struct api_cancel *k, unsigned *code)
{
	json_t *j;

	if (strcmp(k->status, "refused") == 0) {
		*code = 409;
		j = json_pack("{s:s,s:s,s:s,s:s}", "status", "refused", "error",
		              "too late", "reason", k->refusal, "state",
		              k->state);
	} else if (strcmp(k->status, "cancelled") == 0) {
		*code = 200;
		j = json_pack("{s:s}", "status", "cancelled");
	} else {
		*code = 202;
		j = json_pack("{s:s}", "status", "cancel_requested");
	}
	if (j != NULL && k->reason[0] != '\0')
		json_object_set_new(j, "customer_reason",
		                    json_string(k->reason));
	if (j != NULL)
		json_object_set_new(j, "requested_at_ms",
		                    json_integer((json_int_t)k->requested_at));
	return j;
}

/* The writer's answer to a cancel, after the connection was resumed. */
static enum MHD_Result
answer_cancel(struct MHD_Connection *c, struct upload *u)
{
	const struct api_req *r = &u->req;
	unsigned code = 202;
	json_t *j;

	if (r->code == 0) /* check_only, and the key is new */
		return fail(c, 400, u->field, u->why);
	if (r->code == 409)
		return fail(c, 409, "Idempotency-Key",
		            "already used with a different body");
	if (r->code != 202)
		return fail(c, 503, NULL, "cannot store the cancel (database)");
	switch (r->answer) {
	case API_CANCEL_NO_ORDER:
		return fail(c, 404, NULL, "no such order");
	case API_CANCEL_TOO_LATE:
		j = json_pack("{s:s,s:s,s:s}", "error", "too late", "status",
		              status_of(r->last_event), "state", r->state);
		code = 409;
		break;
	case API_CANCEL_EARLIER:
		j = cancel_json(&r->cancel, &code);
		if (code == 200) /* the POST's answer is still an accepted */
			code = 202;
		break;
	case API_CANCEL_NEW:
	default:
		log_info("saga=%s cancel requested", r->order_id);
		j = json_pack("{s:s}", "status", "cancel_requested");
		break;
	}
	if (j != NULL) {
		json_object_set_new(j, "order_id", json_string(r->order_id));
		json_object_set_new(j, "replayed", json_boolean(r->replayed));
	}
	return respond(c, code, j);
}

/* Collects a POST body (at most BODY_MAX; more marks it too big). */
static enum MHD_Result
take_body(struct upload *u, const char *data, size_t *data_size)
{
	if (!u->too_big && u->len + *data_size <= BODY_MAX) {
		char *n = realloc(u->buf, u->len + *data_size);
		if (n == NULL)
			return MHD_NO;
		memcpy(n + u->len, data, *data_size);
		u->buf = n;
		u->len += *data_size;
	} else {
		u->too_big = true;
	}
	*data_size = 0;
	return MHD_YES;
}

/* ---- GET /orders/{id}, /healthz ---- */

static enum MHD_Result
get_order(struct api *a, struct MHD_Connection *c, const char *id)
{
	struct api_status s;
	json_t *j;
	int rc = apistore_status(a->store, id, &s);

	if (rc < 0)
		return fail(c, 503, NULL, "cannot read the order (database)");
	if (rc == 0)
		return fail(c, 404, NULL, "no such order");
	j = json_pack("{s:s,s:s,s:I,s:I}", "order_id", id, "status",
	              status_of(s.has_event ? s.last_event : ""),
	              "created_at_ms", (json_int_t)s.created_at,
	              "updated_at_ms",
	              (json_int_t)(s.has_event ? s.event_at : s.created_at));
	if (j != NULL && s.has_event) {
		json_object_set_new(j, "last_event", json_string(s.last_event));
		json_object_set_new(j, "state", json_string(s.state));
	}
	if (j != NULL && s.has_cancel) {
		unsigned code;
		json_object_set_new(j, "cancel", cancel_json(&s.cancel, &code));
	}
	return respond(c, 200, j);
}

/* GET /orders/{id}/cancel: the cancel's state, its code as cancel_json. */
static enum MHD_Result
get_cancel(struct api *a, struct MHD_Connection *c, const char *id)
{
	struct api_status s;
	unsigned code = 200;
	json_t *j;
	int rc = apistore_status(a->store, id, &s);

	if (rc < 0)
		return fail(c, 503, NULL, "cannot read the order (database)");
	if (!s.has_cancel)
		return fail(c, 404, NULL, "no cancel was requested");
	j = cancel_json(&s.cancel, &code);
	if (j != NULL)
		json_object_set_new(j, "order_id", json_string(id));
	return respond(c, code, j);
}

static enum MHD_Result
healthz(struct api *a, struct MHD_Connection *c)
{
	int64_t n = 0, oldest = 0;
	bool db = apistore_outbox_depth(a->store, &n, &oldest) == 0 &&
	          apistore_writable(a->store);
	json_t *j = json_pack(
	        "{s:s,s:s,s:I,s:I}", "status", db ? "ok" : "error", "broker",
	        atomic_load(&a->connected) ? "connected" : "disconnected",
	        "outbox", (json_int_t)n, "oldest_outbox_ms",
	        (json_int_t)oldest);
	if (j != NULL && !db)
		json_object_set_new(j, "error",
		                    json_string("the database cannot commit: "
		                                "orders are refused"));
	return respond(c, db ? 200 : 503, j);
}

/* GET /metrics: responses by status, the outbox, the broker connection,
 * from a registry made for the request (lib/metrics is single-threaded;
 * the counts are atomics any HTTP thread updates). */
static enum MHD_Result
metrics_page(struct api *a, struct MHD_Connection *c)
{
	struct metrics *m = metrics_new("orderapi");
	struct http_response out = {0};
	struct MHD_Response *r;
	enum MHD_Result ret;
	int64_t n = 0, oldest = 0;
	char lv[METRIC_LABELS_MAX], code[16];
	int f;

	if (m == NULL)
		return MHD_NO;
	f = metrics_family(m, "responses_total", METRIC_COUNTER,
	                   "HTTP responses, by status.");
	for (size_t i = 0; i <= NCODES; i++) {
		snprintf(code, sizeof(code), "%u",
		         i < NCODES ? counted_codes[i] : 0);
		metrics_labels(lv, sizeof(lv), "code",
		               i < NCODES ? code : "other", METRIC_END);
		metrics_add(m, f, lv, (double)atomic_load(&responses[i]));
	}
	if (apistore_outbox_depth(a->store, &n, &oldest) == 0) {
		metrics_set(m,
		            metrics_family(m, "outbox_depth", METRIC_GAUGE,
		                           "Orders and cancels committed, not "
		                           "yet confirmed by the broker."),
		            NULL, (double)n);
		metrics_set(
		        m,
		        metrics_family(m, "outbox_oldest_seconds", METRIC_GAUGE,
		                       "Age of the oldest outbox row (0: "
		                       "empty)."),
		        NULL,
		        oldest > 0 ? (double)(clock_wall_ms() - oldest) / 1000.0
		                   : 0.0);
	}
	metrics_set(m,
	            metrics_family(m, "bus_connected", METRIC_GAUGE,
	                           "1 while connected to the broker."),
	            NULL, atomic_load(&a->connected) ? 1 : 0);
	metrics_render(m, &out);
	metrics_free(m);
	if (out.oom) {
		free(out.body);
		return MHD_NO;
	}
	r = MHD_create_response_from_buffer(out.len, out.body,
	                                    MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(out.body);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4");
	count_response(200);
	ret = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	return ret;
}

/* "/orders/{id}" or "/orders/{id}/cancel" (*cancel set): the id into
 * id. -1 for anything else, and for ids a cancel cannot name. */
static int
order_path(const char *url, char id[ENVELOPE_ID_MAX], bool *cancel)
{
	const char *p = url + 8, *slash;
	size_t n;

	if (strncmp(url, "/orders/", 8) != 0)
		return -1;
	slash = strchr(p, '/');
	n = slash != NULL ? (size_t)(slash - p) : strlen(p);
	*cancel = slash != NULL;
	if (n == 0 || n >= ENVELOPE_ID_MAX || (*cancel && n > CANCEL_ID_MAX))
		return -1;
	if (*cancel && strcmp(slash, "/cancel") != 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (p[i] <= ' ' || p[i] == 0x7f) /* no spaces or controls */
			return -1;
	memcpy(id, p, n);
	id[n] = '\0';
	return 0;
}

/* A POST (an order, or a cancel of order id): its body, then the
 * writer, then the answer on the connection's resumption. */
static enum MHD_Result
post(struct api *a, struct MHD_Connection *c, const char *id, const char *data,
     size_t *data_size, void **con_cls)
{
	struct upload *u = *con_cls;

	if (u == NULL) {
		u = calloc(1, sizeof(*u));
		*con_cls = u;
		if (u != NULL && id != NULL) {
			u->req.kind = API_CANCEL;
			snprintf(u->req.order_id, sizeof(u->req.order_id), "%s",
			         id);
		}
		return u != NULL ? MHD_YES : MHD_NO;
	}
	if (atomic_load(&u->state) == U_ANSWERED)
		return u->req.kind == API_CANCEL ? answer_cancel(c, u)
		                                 : answer_written(c, u);
	assert(atomic_load(&u->state) == U_READING);
	if (*data_size > 0)
		return take_body(u, data, data_size);
	return post_request(a, c, u);
}

static enum MHD_Result
handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
       const char *version, const char *data, size_t *data_size, void **con_cls)
{
	struct api *a = cls;
	char id[ENVELOPE_ID_MAX];
	bool cancel = false;
	bool order = order_path(url, id, &cancel) == 0;

	(void)version;
	if (strcmp(method, "POST") == 0 && strcmp(url, "/orders") == 0)
		return post(a, c, NULL, data, data_size, con_cls);
	if (strcmp(method, "POST") == 0 && order && cancel)
		return post(a, c, id, data, data_size, con_cls);
	if (strcmp(method, "GET") == 0 && order)
		return cancel ? get_cancel(a, c, id) : get_order(a, c, id);
	if (strcmp(method, "GET") == 0 && strcmp(url, "/healthz") == 0)
		return healthz(a, c);
	if (strcmp(method, "GET") == 0 && strcmp(url, "/metrics") == 0)
		return metrics_page(a, c);
	if (strcmp(url, "/orders") == 0 || order)
		return fail(c, 405, NULL, "method not allowed");
	return fail(c, 404, NULL, "no such resource");
}

static void
on_done(void *cls, struct MHD_Connection *c, void **con_cls,
        enum MHD_RequestTerminationCode code)
{
	struct upload *u = *con_cls;
	(void)cls;
	(void)c;
	(void)code;
	if (u != NULL) {
		/* the writer never holds a finished request: a suspended
		 * connection is not completed before it is resumed */
		assert(atomic_load(&u->state) != U_WAITING);
		free(u->buf);
		free(u->envelope);
		free(u);
		*con_cls = NULL;
	}
}

/* ---- the relay: outbox rows to the broker ---- */

static int
publish_row(void *arg, const struct api_outbox_row *r)
{
	struct api *a = arg;
	struct bus_message m = {0};

	m.exchange = r->exchange;
	m.routing_key = r->routing_key;
	m.message_id = r->message_id;
	m.correlation_id = r->correlation_id;
	m.type = r->type;
	m.traceparent = r->traceparent;
	m.timestamp_ms = r->created_at;
	m.mandatory = r->mandatory;
	m.body = r->body;
	m.len = r->len;
	assert(r->seq > 0 && ((uint64_t)r->seq & DLQ_TAG) == 0);
	if (bus_publish(a->bus, &m, (uint64_t)r->seq) != 0)
		/* refused by the bus (too large, bad fields): it would be
		 * refused forever; it stays in the outbox for an operator */
		log_error("saga=%s outbox row %" PRId64 " (%s) cannot be "
		          "published: the bus refuses it",
		          r->correlation_id, r->seq, r->message_id);
	if (r->seq > a->cursor)
		a->cursor = r->seq;
	return 0;
}

/* Publishes new outbox rows while the window has room. */
static void
relay_new(struct api *a)
{
	size_t inflight = bus_unconfirmed(a->bus);
	int room, n;

	if (apistore_outbox_grew(a->store))
		a->more = true;
	if (!a->more || !bus_connected(a->bus) || inflight >= RELAY_WINDOW)
		return;
	room = (int)(RELAY_WINDOW - inflight);
	n = apistore_outbox_scan(a->store, a->cursor, room, publish_row, a);
	if (n >= 0 && n < room)
		a->more = false;
}

/* Publishes again the unroutable rows whose backoff is over. */
static void
relay_retries(struct api *a)
{
	int64_t now = clock_mono_ms();
	size_t k = 0;

	for (size_t i = 0; i < a->nretry; i++) {
		struct retry *r = &a->retry[i];
		if (r->due_ms > now || !bus_connected(a->bus)) {
			a->retry[k++] = *r;
			continue;
		}
		if (apistore_outbox_get(a->store, r->seq, publish_row, a) < 0)
			a->retry[k++] = *r; /* try again next turn */
	}
	a->nretry = k;
}

/* An outbox row came back unroutable: keep it, publish it again later.
 * The backoff doubles with each return in a row (they all wait for the
 * same missing binding) and starts again after a row gets through. */
static void
relay_returned(struct api *a, int64_t seq)
{
	for (size_t i = 0; i < a->nretry; i++)
		assert(a->retry[i].seq != seq);
	if (grow((void **)&a->retry, &a->capretry, a->nretry,
	         sizeof(*a->retry)) != 0) {
		log_error("out of memory: outbox row %" PRId64 " waits for a "
		          "restart",
		          seq);
		return;
	}
	a->backoff_ms = a->backoff_ms == 0 ? RETRY_FIRST_MS : a->backoff_ms * 2;
	if (a->backoff_ms > RETRY_MAX_MS)
		a->backoff_ms = RETRY_MAX_MS;
	log_warnx("outbox row %" PRId64 " came back unroutable (no queue is "
	          "bound for it: is the orchestrator deployed?); kept, "
	          "published again in %" PRId64 " ms",
	          seq, a->backoff_ms);
	a->retry[a->nretry++] =
	        (struct retry){seq, clock_mono_ms() + a->backoff_ms};
}

/* ---- the events: order-api.events ---- */

/* A copy of d to order-api.events.dlq with why; d is acked when the copy
 * is confirmed (rejected to the retry queue if it cannot be sent). */
static void
dead_letter(struct api *a, const struct bus_delivery *d, const char *why)
{
	char id[ENVELOPE_ID_MAX];
	struct bus_message m = {0};
	uint64_t tag = DLQ_TAG | a->dlq_next++;

	log_warnx("saga=%s dead-lettered %s from %s to %s.dlq: %s",
	          d->correlation_id, d->message_id, d->queue, d->queue, why);
	if (d->message_id[0] != '\0')
		snprintf(id, sizeof(id), "%s", d->message_id);
	else
		envelope_new_id(id, sizeof(id), "dlq");
	m.exchange = OWN_EXCHANGE;
	m.routing_key = EVENTS_QUEUE ".dlq";
	m.message_id = id;
	m.correlation_id = d->correlation_id[0] ? d->correlation_id : NULL;
	m.type = d->type[0] ? d->type : NULL;
	m.traceparent = d->traceparent[0] ? d->traceparent : NULL;
	m.content_type = d->content_type[0] ? d->content_type : NULL;
	m.error = why;
	m.timestamp_ms = d->timestamp_ms;
	m.body = d->body;
	m.len = d->len;
	if (grow((void **)&a->dlq, &a->capdlq, a->ndlq, sizeof(*a->dlq)) != 0 ||
	    bus_publish(a->bus, &m, tag) != 0) {
		log_error("cannot dead-letter %s: sent to the retry queue", id);
		bus_reject(a->bus, d->ref, false);
		return;
	}
	a->dlq[a->ndlq++] = (struct dlq_copy){tag, d->ref};
}

/* order.cancel_refused: the orchestrator's reason into e (cut to fit). */
static void
refusal_of(const struct envelope *env, struct api_event *e)
{
	const struct value *r = value_map_get(&env->payload, "reason");

	if (strcmp(env->type, "order.cancel_refused") == 0 && r != NULL &&
	    r->type == VALUE_STR)
		snprintf(e->reason, sizeof(e->reason), "%s", r->u.s.ptr);
}

/* Checks an order.* event and fills e from it. NULL, or why it is
 * refused. */
static const char *
event_of(const struct bus_delivery *d, struct api_event *e, char *why,
         size_t cap)
{
	struct envelope env;
	char err[256];

	if (d->content_type[0] != '\0' &&
	    strcmp(d->content_type, "application/msgpack") != 0)
		return "content type is not application/msgpack";
	envelope_init(&env);
	if (envelope_decode(d->body, d->len, &env, err, sizeof(err)) != 0) {
		envelope_clear(&env);
		snprintf(why, cap, "cannot decode the event: %s", err);
		return why;
	}
	if (strncmp(env.type, "order.", 6) != 0) {
		snprintf(why, cap, "\"%s\" is not an order.* event", env.type);
		envelope_clear(&env);
		return why;
	}
	memset(e, 0, sizeof(*e));
	e->ref = d->ref;
	snprintf(e->order_id, sizeof(e->order_id), "%s", env.saga);
	snprintf(e->message_id, sizeof(e->message_id), "%s", env.id);
	snprintf(e->type, sizeof(e->type), "%s", env.type);
	snprintf(e->state, sizeof(e->state), "%s", env.step);
	refusal_of(&env, e);
	e->at_ms = env.ts > 0 ? env.ts : d->timestamp_ms;
	envelope_clear(&env);
	return NULL;
}

static void
on_delivery(void *arg, const struct bus_delivery *d)
{
	struct api *a = arg;
	struct api_event e;
	char buf[512];
	const char *why;

	if (a->store == NULL)
		return; /* stopping: requeued when the bus closes */
	why = event_of(d, &e, buf, sizeof(buf));
	if (why != NULL) {
		dead_letter(a, d, why);
		return;
	}
	if (strcmp(e.type, "order.created") == 0 ||
	    strcmp(e.type, "order.cancel_requested") == 0) {
		bus_ack(a->bus, d->ref, false); /* ours: no news */
		return;
	}
	if (apistore_event(a->store, &e) != 0) {
		log_error("out of memory: event %s goes round the retry queue",
		          e.message_id);
		bus_reject(a->bus, d->ref, false);
	}
}

/* The writer recorded events (or failed to): settle their deliveries. */
static void
settle_events(struct api *a)
{
	struct api_settled s[256];
	size_t n;

	while ((n = apistore_take_settled(a->store, s, 256)) > 0)
		for (size_t i = 0; i < n; i++) {
			if (s[i].ok)
				bus_ack(a->bus, s[i].ref, false);
			else
				bus_reject(a->bus, s[i].ref, false);
		}
}

/* A dead-letter copy is confirmed: ack the original. */
static void
dlq_confirmed(struct api *a, uint64_t tag)
{
	for (size_t i = 0; i < a->ndlq; i++)
		if (a->dlq[i].tag == tag) {
			bus_ack(a->bus, a->dlq[i].ref, false);
			a->dlq[i] = a->dlq[--a->ndlq];
			return;
		}
	assert(!"a dead-letter confirm without its copy");
}

static void
on_confirm(void *arg, uint64_t tag, enum bus_confirm c)
{
	struct api *a = arg;

	if ((tag & DLQ_TAG) != 0) {
		dlq_confirmed(a, tag);
		return;
	}
	if (c == BUS_RETURNED) {
		relay_returned(a, (int64_t)tag);
		return;
	}
	a->backoff_ms = 0;
	if (grow((void **)&a->done, &a->capdone, a->ndone, sizeof(*a->done)) !=
	    0) {
		log_error("out of memory: outbox row %" PRIu64 " is published "
		          "again after a restart",
		          tag);
		return;
	}
	a->done[a->ndone++] = (int64_t)tag;
}

/* Nacks are resent by the bus itself (with its own backoff); the relay
 * only says so, since their rows stay in the outbox meanwhile. */
static void
log_nacks(struct api *a)
{
	uint64_t n = bus_stats(a->bus)->nacked;

	if (n > a->nacked)
		log_warnx("the broker refused (nacked) %" PRIu64 " messages: a "
		          "queue full with reject-publish, or a quorum queue "
		          "without its majority; they stay in the outbox and "
		          "go again with backoff",
		          n - a->nacked);
	a->nacked = n;
}

/* One turn of the main loop: the bus, then the relay's bookkeeping. */
static void
relay_turn(struct api *a, const struct bus_handlers *h)
{
	bus_poll(a->bus, RELAY_POLL_MS, h);
	log_nacks(a);
	atomic_store(&a->connected, bus_connected(a->bus));
	if (a->ndone > 0 &&
	    apistore_confirmed(a->store, a->done, a->ndone) == 0)
		a->ndone = 0;
	settle_events(a);
	relay_retries(a);
	relay_new(a);
}

/* ---- main ---- */

static const char usage[] =
        "usage: order-api --amqp URL --db PATH [--listen ADDR:PORT] "
        "[--log-level L]\n"
        "  --listen ADDR:PORT   serve the HTTP API here (default "
        "127.0.0.1:8080)\n"
        "  --orchestrator-db PATH\n"
        "                       deprecated and ignored\n" PART_USAGE_COMMON;

/* The topology: the order.* events, for the orders' status. Like every
 * participant queue (participant.h): rejected -> retry (TTL) -> back;
 * dead letters with their reason in .dlq, copied there through
 * order-api.own (only order-api writes it; it reaches only its queues),
 * which is also the queues' dead-letter exchange. */
static const struct bus_exchange exchanges[] = {
        {"order_events", "topic", NULL, NULL},
        {OWN_EXCHANGE, "direct", NULL, NULL},
};
static const struct bus_queue queues[] = {
        {.name = EVENTS_QUEUE,
         .dlx = OWN_EXCHANGE,
         .dlrk = EVENTS_QUEUE ".retry"},
        {.name = EVENTS_QUEUE ".retry",
         .dlx = OWN_EXCHANGE,
         .dlrk = EVENTS_QUEUE,
         .ttl_ms = 1000},
        {.name = EVENTS_QUEUE ".dlq"},
        /* the orchestrator's audit stream, if it exists: after a broker
         * restart, wait until it runs, or the orders relayed meanwhile
         * reach the orchestrator but not the audit trail (bus.h) */
        {.name = "audit", .passive = true, .if_exists = true},
};
static const struct bus_binding bindings[] = {
        {"order_events", EVENTS_QUEUE, NULL, "order.#"},
        {OWN_EXCHANGE, EVENTS_QUEUE, NULL, EVENTS_QUEUE},
        {OWN_EXCHANGE, EVENTS_QUEUE ".retry", NULL, EVENTS_QUEUE ".retry"},
        {OWN_EXCHANGE, EVENTS_QUEUE ".dlq", NULL, EVENTS_QUEUE ".dlq"},
};
static const struct bus_topology topology = {
        exchanges, ARRAY_LEN(exchanges), queues, ARRAY_LEN(queues),
        bindings,  ARRAY_LEN(bindings),
};
static const char *const consumed[] = {EVENTS_QUEUE};

static int
deprecated_db(void *arg, const char *path)
{
	(void)arg;
	(void)path;
	fprintf(stderr, "order-api: --orchestrator-db is deprecated and "
	                "ignored: the status comes from the order.* events\n");
	return 0;
}

static struct bus *
open_bus(const struct part_common *com, char *err, size_t errlen)
{
	const struct bus_config bc = {
	        .url = com->amqp,
	        .name = "order-api",
	        .ca_file = getenv("SAGA_AMQP_CA"),
	        .cert_file = getenv("SAGA_AMQP_CERT"),
	        .key_file = getenv("SAGA_AMQP_KEY"),
	        .queue_type = getenv("SAGA_QUEUE_TYPE"),
	        .topology = &topology,
	        .consume = consumed,
	        .nconsume = ARRAY_LEN(consumed),
	};
	return bus_open(&bc, err, errlen);
}

static struct MHD_Daemon *
start_http(struct api *a, const struct sockaddr_in *sa)
{
	return MHD_start_daemon(
	        MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
	                MHD_USE_ERROR_LOG,
	        0, NULL, NULL, handle, a, MHD_OPTION_SOCK_ADDR,
	        (const struct sockaddr *)sa, MHD_OPTION_NOTIFY_COMPLETED,
	        on_done, NULL, MHD_OPTION_CONNECTION_TIMEOUT, 30u,
	        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)API_HTTP_THREADS,
	        MHD_OPTION_END);
}

/* Stops in the order that leaves nobody waiting: no new POSTs, the
 * writer answers what it has, then HTTP, then the last confirms. */
static void
stop_all(struct api *a, struct MHD_Daemon *d, const struct bus_handlers *h)
{
	struct timespec ts = {0, 1000000};
	MHD_socket listen_fd = MHD_quiesce_daemon(d);

	if (listen_fd != MHD_INVALID_SOCKET)
		close(listen_fd); /* ours after quiesce */
	bus_cancel(a->bus);
	atomic_store(&a->stopping, true);
	while (atomic_load(&a->posting) > 0)
		nanosleep(&ts, NULL);
	apistore_close(a->store); /* resumes every waiting connection */
	a->store = NULL;
	ts.tv_nsec = 100 * 1000000; /* let them write their answers */
	nanosleep(&ts, NULL);
	MHD_stop_daemon(d);
	bus_flush(a->bus, 5000, h); /* rows left unconfirmed go next time */
	bus_close(a->bus);
	free(a->done);
	free(a->retry);
	free(a->dlq);
}

/* The database, the bus and the HTTP server: 0, or the exit status
 * (with everything opened closed again). */
static int
api_start(struct api *a, const struct part_common *com,
          const struct sockaddr_in *sa, const char *listen,
          struct MHD_Daemon **d)
{
	char err[512];

	a->store = apistore_open(com->db, err, sizeof(err));
	if (a->store == NULL) {
		fprintf(stderr, "order-api: %s\n", err);
		return 1;
	}
	a->bus = open_bus(com, err, sizeof(err));
	if (a->bus == NULL) {
		fprintf(stderr, "order-api: %s\n", err);
		apistore_close(a->store);
		return 2;
	}
	*d = start_http(a, sa);
	if (*d == NULL) {
		fprintf(stderr, "order-api: cannot listen on %s: %s\n", listen,
		        strerror(errno));
		bus_close(a->bus);
		apistore_close(a->store);
		return 1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static volatile sig_atomic_t stop;
	static struct api a;
	static const char *listen = "127.0.0.1:8080";
	static const struct part_flag flags[] = {
	        {"listen", .str = &listen},
	        {"orchestrator-db", .set = deprecated_db},
	};
	static const struct part_cli cli = {
	        "order-api", usage, false, flags, ARRAY_LEN(flags), NULL};
	struct bus_handlers h = {on_delivery, on_confirm, &a};
	struct part_common com;
	struct sockaddr_in sa;
	struct MHD_Daemon *d;
	char err[512];
	int rc = part_parse(&cli, argc, argv, &com);

	if (rc >= 0)
		return rc;
	if (part_common_check(&com, "order-api") != 0)
		return 2;
	if (http_parse_addr(listen, &sa) != 0) {
		fprintf(stderr,
		        "order-api: --listen: \"%s\" is not IPv4ADDR:PORT\n",
		        listen);
		return 2;
	}
	log_init("order-api", (enum log_level)com.log_level);
	rc = api_start(&a, &com, &sa, listen, &d);
	if (rc != 0)
		return rc;
	part_signals(&stop);
	if (bus_connect(a.bus, err, sizeof(err)) != 0)
		log_warnx("%s; retrying", err);
	log_info("listening on %s", listen);
	while (!stop)
		relay_turn(&a, &h);
	log_info("stopping");
	stop_all(&a, d, &h);
	return 0;
}

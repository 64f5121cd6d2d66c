/* apistore.h -- order-api's database (schema/orderapi) behind one writer
 * thread: accepted orders, customers' cancels, their outbox,
 * Idempotency-Keys and each order's status from the order.* events.
 *
 * Threads. The writer thread owns the only read-write connection: it
 * takes everything queued since its last commit (POSTs, confirmed outbox
 * rows to delete, events to record) and commits it in ONE transaction,
 * one fsync (synchronous=FULL) for all of it: group commit. Then it calls
 * each POST's done callback (order-api resumes the HTTP connection) and
 * hands the events' delivery refs back to be acked. Other threads only
 * enqueue and read:
 *   - apistore_submit, apistore_confirmed, apistore_event: any thread;
 *   - apistore_status, apistore_outbox_depth: any thread (one read-only
 *     connection behind a mutex);
 *   - apistore_outbox_scan, apistore_take_settled, apistore_outbox_grew:
 *     the relay's thread only (its own read-only connection).
 * One writer also keeps SQLite's WAL-reset race away (NOTES §5).
 *
 * Failure contract: apistore_open returns NULL with the reason in err; a
 * commit that fails is rolled back whole: its POSTs are answered 503, its
 * events are settled as not recorded (the caller rejects them to their
 * retry queue), its deletions are kept for the next commit; writable then
 * reads false until a commit succeeds.
 */
#ifndef SAGA_APISTORE_H
#define SAGA_APISTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h"

#define APISTORE_KEY_MAX     200 /* Idempotency-Key, bytes */
#define APISTORE_TP_MAX      128 /* traceparent, bytes */
#define APISTORE_REASON_MAX  200 /* a customer's cancel reason, bytes */
#define APISTORE_REFUSAL_MAX 256 /* the orchestrator's, kept (cut) */

/* What a request asks the writer for. */
enum api_req_kind {
	API_ORDER,  /* a new order (POST /orders) */
	API_CANCEL, /* a customer's cancel (POST /orders/{id}/cancel) */
};

/* How the writer answered a cancel (code 202). */
enum api_cancel_answer {
	API_CANCEL_NEW,      /* stored, order.cancel_requested in the outbox */
	API_CANCEL_EARLIER,  /* the order's earlier cancel: in cancel */
	API_CANCEL_TOO_LATE, /* the order is final: last_event, state */
	API_CANCEL_NO_ORDER, /* nothing is known of the order */
};

/* A customer's cancel as stored (table cancels). */
struct api_cancel {
	char status[16]; /* requested, refused or cancelled */
	char reason[APISTORE_REASON_MAX + 1]; /* the customer's, or "" */
	char refusal[APISTORE_REFUSAL_MAX];   /* refused: the orchestrator's */
	char state[ENVELOPE_STEP_MAX];        /* refused: the saga's state */
	int64_t requested_at, updated_at;     /* ms */
};

/* One POST for the writer. The caller fills the inputs and keeps the
 * request alive until done is called (from the writer thread, after the
 * commit or its failure; the writer does not touch it afterwards).
 * Orders and cancels keep their Idempotency-Keys apart: a key names one
 * request of one kind. */
struct api_req {
	enum api_req_kind kind;
	char order_id[ENVELOPE_ID_MAX];    /* the new order's, or cancelled */
	char key[APISTORE_KEY_MAX + 1];    /* Idempotency-Key, "" for none */
	char hash[17];                     /* of the request (hex) */
	char traceparent[APISTORE_TP_MAX]; /* "" for none */
	const char *body; /* the order.created or order.cancel_requested
	                   * envelope (caller owns) */
	size_t len;
	char reason[APISTORE_REASON_MAX + 1]; /* API_CANCEL: "" for none */
	bool check_only; /* only look the key up (the body is invalid):
	                  * code 0 if it is new */
	/* set by the writer */
	int code;      /* 202 (a cancel: see answer), 409 (key used with
	                * another body), 503; 0 */
	bool replayed; /* 202 for a request seen before: answer_id is its
	                * order (a cancel: also another key's cancel) */
	char answer_id[ENVELOPE_ID_MAX];
	enum api_cancel_answer answer;      /* API_CANCEL with code 202 */
	struct api_cancel cancel;           /* API_CANCEL_EARLIER */
	char last_event[ENVELOPE_TYPE_MAX]; /* API_CANCEL_TOO_LATE */
	char state[ENVELOPE_STEP_MAX];      /* API_CANCEL_TOO_LATE */
	void (*done)(struct api_req *r);
	void *arg;            /* the caller's */
	struct api_req *next; /* the writer's queue */
};

/* One order.* event to record; ref is handed back by take_settled. */
struct api_event {
	uint64_t ref;
	char order_id[ENVELOPE_ID_MAX];
	char message_id[ENVELOPE_ID_MAX];
	char type[ENVELOPE_TYPE_MAX];
	char state[ENVELOPE_STEP_MAX];
	char reason[APISTORE_REFUSAL_MAX]; /* order.cancel_refused: why */
	int64_t at_ms;                     /* the event's own time */
};

/* An event the writer is done with: recorded (ok) or not (its commit
 * failed: send it round the retry queue). */
struct api_settled {
	uint64_t ref;
	bool ok;
};

/* An outbox row, valid during the scan callback only. */
struct api_outbox_row {
	int64_t seq;
	const char *message_id, *exchange, *routing_key, *type;
	const char *correlation_id, *traceparent; /* traceparent may be NULL */
	bool mandatory;
	const void *body;
	size_t len;
	int64_t created_at;
};

/* What GET /orders/{id} answers from. */
struct api_status {
	bool accepted;  /* this database holds the order */
	bool has_event; /* an order.* event other than order.created came */
	bool final;     /* last_event is completed, failed or cancelled */
	char last_event[ENVELOPE_TYPE_MAX];
	char state[ENVELOPE_STEP_MAX];
	int64_t created_at, event_at, updated_at; /* ms; 0 when unknown */
	bool has_cancel; /* a customer asked to cancel: cancel */
	struct api_cancel cancel;
};

struct apistore;

/* Opens (creating) and migrates the database, opens the readers and
 * starts the writer thread. NULL with the reason in err. */
struct apistore *apistore_open(const char *path, char *err, size_t errlen);
/* Stops the writer after it has committed and answered everything
 * queued, and closes. NULL is fine. */
void apistore_close(struct apistore *s);

/* Queues a POST, an order or a cancel (never blocks on I/O). A cancel
 * is answered in the writer's transaction: the order's earlier cancel if
 * it has one (one per order), NO_ORDER if neither the orders nor the
 * events know it, TOO_LATE if its last event is final, else NEW: a
 * cancels row and its order.cancel_requested outbox row (message id
 * cancel-<order id>). */
void apistore_submit(struct apistore *s, struct api_req *r);
/* Queues the deletion of outbox rows the broker confirmed. -1 on out of
 * memory (the rows stay; published again after a restart). */
int apistore_confirmed(struct apistore *s, const int64_t *seq, size_t n);
/* Queues an event. -1 on out of memory (the caller requeues it). */
int apistore_event(struct apistore *s, const struct api_event *e);

/* Relay thread: moves up to cap settled events into out; their count. */
size_t apistore_take_settled(struct apistore *s, struct api_settled *out,
                             size_t cap);
/* Relay thread: true once after a commit that added outbox rows. */
bool apistore_outbox_grew(struct apistore *s);
/* Relay thread: calls fn for up to limit rows with seq > after, in seq
 * order (fn returns 0 to go on, -1 to stop). The number of rows given,
 * or -1 on an SQLite error (logged). */
int apistore_outbox_scan(struct apistore *s, int64_t after, int limit,
                         int (*fn)(void *arg, const struct api_outbox_row *r),
                         void *arg);
/* The same for the one row seq (0 rows if it is gone). */
int apistore_outbox_get(struct apistore *s, int64_t seq,
                        int (*fn)(void *arg, const struct api_outbox_row *r),
                        void *arg);

/* Any thread: 1 known (filled), 0 unknown, -1 SQLite error (logged). */
int apistore_status(struct apistore *s, const char *order_id,
                    struct api_status *out);
/* Any thread: rows in the outbox and the oldest one's created_at (0 if
 * empty). 0 or -1 (logged). */
int apistore_outbox_depth(struct apistore *s, int64_t *n, int64_t *oldest_ms);
/* Any thread: whether the writer's last transaction committed. */
bool apistore_writable(const struct apistore *s);

/* Events are recorded in order_status, except order.cancel_refused,
 * which only marks the order's cancel refused (the saga goes on as it
 * was); order.cancelled also marks its cancel cancelled. */

/* Whether an event type ends the saga (order.completed, order.failed,
 * order.cancelled). */
bool apistore_final_event(const char *type);

#endif

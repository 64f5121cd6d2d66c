/* apistore.c -- order-api's database behind one writer thread.
 *
 * Why it is shaped so: the old order-api committed each order alone and
 * then waited for the broker inside the HTTP handler; at 16 clients it
 * took ~520 orders/s, and nothing while the broker was away. Here a POST
 * costs the HTTP thread a parse and a queue push; the writer commits
 * whatever queued up during its previous fsync in one transaction, so
 * the fsync rate, not the order rate, is what the disk sees, and the
 * broker is not on the answer's path at all (the relay publishes the
 * outbox later). The Idempotency-Key check runs inside that transaction
 * on the one writer, so two concurrent POSTs with the same new key make
 * one order: the second sees the first's row.
 *
 * The relay's deletions and the events' status rows ride the same
 * transactions, so there is one writer and one fsync stream.
 *
 * A cancel is decided in the same transaction as what it reads: one
 * cancel per order (the second finds the first's row), and too late is
 * answered from the order_status row the events wrote, so a cancel and
 * the final event it races with are ordered by the writer, not by luck.
 * What order-api cannot know yet (the saga moved on since its last
 * event) the orchestrator decides, and order.cancel_refused says so.
 */
#include "clock.h"
#include "apistore.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "log.h"

extern const struct db_migration orderapi_migrations[];
extern const size_t orderapi_migrations_count;

enum {
	S_FIND_KEY,
	S_INS_ORDER,
	S_INS_KEY,
	S_INS_OUTBOX,
	S_DEL_OUTBOX,
	S_UPSERT_STATUS,
	S_FIND_CANCEL_KEY,
	S_INS_CANCEL_KEY,
	S_FIND_CANCEL,
	S_INS_CANCEL,
	S_HAS_ORDER,
	S_FIND_STATUS,
	S_CANCEL_REFUSED,
	S_CANCEL_DONE,
	S_COUNT
};

#define CANCEL_COLUMNS                                                         \
	"SELECT status, reason, refusal, state, requested_at, updated_at "     \
	"FROM cancels WHERE order_id = ?1"

static const char *const writer_sql[S_COUNT] = {
        [S_FIND_KEY] = "SELECT order_id, body_hash FROM idempotency "
                       "WHERE key = ?1",
        [S_INS_ORDER] = "INSERT INTO orders(order_id, body, created_at) "
                        "VALUES (?1, ?2, ?3)",
        [S_INS_KEY] = "INSERT INTO idempotency(key, body_hash, order_id, "
                      "created_at) VALUES (?1, ?2, ?3, ?4)",
        [S_INS_OUTBOX] = "INSERT INTO outbox(message_id, exchange, "
                         "routing_key, type, correlation_id, traceparent, "
                         "mandatory, body, created_at) VALUES (?1, ?2, ?3, "
                         "?4, ?5, ?6, ?7, ?8, ?9)",
        [S_DEL_OUTBOX] = "DELETE FROM outbox WHERE seq = ?1",
        /* newest event wins, a final one for good; the same event
         * twice sets the same values */
        [S_UPSERT_STATUS] =
                "INSERT INTO order_status(order_id, last_event, state, "
                "message_id, final, event_at, updated_at) VALUES (?1, ?2, "
                "?3, ?4, ?5, ?6, ?7) ON CONFLICT(order_id) DO UPDATE SET "
                "last_event = excluded.last_event, state = excluded.state, "
                "message_id = excluded.message_id, final = excluded.final, "
                "event_at = excluded.event_at, updated_at = "
                "excluded.updated_at WHERE order_status.final = 0 AND "
                "(excluded.final = 1 OR excluded.event_at >= "
                "order_status.event_at)",
        [S_FIND_CANCEL_KEY] = "SELECT order_id, body_hash FROM cancel_keys "
                              "WHERE key = ?1",
        [S_INS_CANCEL_KEY] = "INSERT INTO cancel_keys(key, body_hash, "
                             "order_id, created_at) VALUES (?1, ?2, ?3, ?4)",
        [S_FIND_CANCEL] = CANCEL_COLUMNS,
        [S_INS_CANCEL] = "INSERT INTO cancels(order_id, status, reason, "
                         "actor, requested_at, updated_at) VALUES (?1, "
                         "'requested', ?2, 'customer', ?3, ?3)",
        [S_HAS_ORDER] = "SELECT 1 FROM orders WHERE order_id = ?1",
        [S_FIND_STATUS] = "SELECT last_event, state, final FROM "
                          "order_status WHERE order_id = ?1",
        /* the first answer stands: a redelivery changes nothing */
        [S_CANCEL_REFUSED] = "UPDATE cancels SET status = 'refused', "
                             "refusal = ?2, state = ?3, updated_at = ?4 "
                             "WHERE order_id = ?1 AND status = 'requested'",
        /* the order is cancelled, whatever was answered before */
        [S_CANCEL_DONE] = "UPDATE cancels SET status = 'cancelled', "
                          "updated_at = ?2 WHERE order_id = ?1 AND "
                          "status <> 'cancelled'",
};

struct apistore {
	sqlite3 *db;     /* the writer's */
	sqlite3 *relay;  /* read-only: the relay's thread */
	sqlite3 *reader; /* read-only: any thread, under reader_mu */
	sqlite3_stmt *st[S_COUNT];
	pthread_mutex_t reader_mu;
	pthread_t thread;
	atomic_bool writable;
	atomic_bool grew;
	struct db_wal wal; /* the writer's */

	pthread_mutex_t mu; /* guards what follows */
	pthread_cond_t cv;
	bool stop;
	struct api_req *head, *tail;
	int64_t *del;
	size_t ndel, capdel;
	struct api_event *ev;
	size_t nev, capev;
	struct api_settled *settled;
	size_t nset, capset;
};

/* What one writer turn took from the queues. */
struct batch {
	struct api_req *reqs;
	int64_t *del;
	size_t ndel;
	struct api_event *ev;
	size_t nev;
	bool added; /* outbox rows were inserted */
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

/* Steps a write statement to its end and resets it. 0 or -1. */
static int
run(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

bool
apistore_final_event(const char *type)
{
	return strcmp(type, "order.completed") == 0 ||
	       strcmp(type, "order.failed") == 0 ||
	       strcmp(type, "order.cancelled") == 0;
}

/* ---- the writer ---- */

/* r's outbox row: message id <prefix>-<order id> (the id every copy of
 * it has always had), type and routing key type, on order_events. */
static int
put_outbox(struct apistore *s, const struct api_req *r, const char *prefix,
           const char *type, int64_t now)
{
	sqlite3_stmt *st = s->st[S_INS_OUTBOX];
	char id[ENVELOPE_ID_MAX + 16];

	snprintf(id, sizeof(id), "%s-%s", prefix, r->order_id);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, "order_events", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, r->order_id, -1, SQLITE_STATIC);
	if (r->traceparent[0] != '\0')
		sqlite3_bind_text(st, 6, r->traceparent, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 7, 1);
	sqlite3_bind_blob(st, 8, r->body, (int)r->len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 9, now);
	return run(st);
}

/* An Idempotency-Key seen before (looked up with statement find): 1
 * (code 202 or 409, answer_id its order), 0 new, -1 error. */
static int
replay_key(struct apistore *s, int find, struct api_req *r)
{
	sqlite3_stmt *st = s->st[find];
	int rc;

	sqlite3_bind_text(st, 1, r->key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *hash = (const char *)sqlite3_column_text(st, 1);
		snprintf(r->answer_id, sizeof(r->answer_id), "%s",
		         (const char *)sqlite3_column_text(st, 0));
		r->code =
		        hash != NULL && strcmp(hash, r->hash) == 0 ? 202 : 409;
		r->replayed = r->code == 202;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Remembers r's Idempotency-Key (if any) with statement ins. */
static int
put_key(struct apistore *s, int ins, const struct api_req *r, int64_t now)
{
	sqlite3_stmt *st = s->st[ins];

	if (r->key[0] == '\0')
		return 0;
	sqlite3_bind_text(st, 1, r->key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, r->hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, r->order_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, now);
	return run(st);
}

/* One POST /orders inside the writer's transaction. 0 (r answered) or
 * -1. */
static int
write_order(struct apistore *s, struct api_req *r, int64_t now)
{
	sqlite3_stmt *st;
	int rc = 0;

	r->code = 0;
	if (r->key[0] != '\0')
		rc = replay_key(s, S_FIND_KEY, r);
	if (rc != 0 || r->check_only)
		return rc < 0 ? -1 : 0;
	st = s->st[S_INS_ORDER];
	sqlite3_bind_text(st, 1, r->order_id, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, r->body, (int)r->len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now);
	if (run(st) != 0 ||
	    put_outbox(s, r, "created", "order.created", now) != 0 ||
	    put_key(s, S_INS_KEY, r, now) != 0)
		return -1;
	r->code = 202;
	r->replayed = false;
	snprintf(r->answer_id, sizeof(r->answer_id), "%s", r->order_id);
	return 0;
}

/* A cancels row (CANCEL_COLUMNS) into c. */
static void
cancel_of(sqlite3_stmt *st, struct api_cancel *c)
{
	snprintf(c->status, sizeof(c->status), "%s",
	         (const char *)sqlite3_column_text(st, 0));
	snprintf(c->reason, sizeof(c->reason), "%s",
	         (const char *)sqlite3_column_text(st, 1));
	snprintf(c->refusal, sizeof(c->refusal), "%s",
	         (const char *)sqlite3_column_text(st, 2));
	snprintf(c->state, sizeof(c->state), "%s",
	         (const char *)sqlite3_column_text(st, 3));
	c->requested_at = sqlite3_column_int64(st, 4);
	c->updated_at = sqlite3_column_int64(st, 5);
}

/* Steps a bound one-row query: 1 (fn given the row), 0 none, -1 error;
 * resets it. */
static int
one_row(sqlite3_stmt *st, void (*fn)(sqlite3_stmt *st, void *arg), void *arg)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW && fn != NULL)
		fn(st, arg);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static void
take_cancel(sqlite3_stmt *st, void *arg)
{
	cancel_of(st, arg);
}

/* The order_status row into r (last_event, state); final in *final. */
struct final_of {
	struct api_req *r;
	bool final;
};

static void
take_status(sqlite3_stmt *st, void *arg)
{
	struct final_of *f = arg;
	snprintf(f->r->last_event, sizeof(f->r->last_event), "%s",
	         (const char *)sqlite3_column_text(st, 0));
	snprintf(f->r->state, sizeof(f->r->state), "%s",
	         (const char *)sqlite3_column_text(st, 1));
	f->final = sqlite3_column_int(st, 2) != 0;
}

/* What order-api knows of r's order into r->answer: NO_ORDER, TOO_LATE
 * (last_event and state filled) or NEW. 0 or -1. */
static int
cancel_allowed(struct apistore *s, struct api_req *r)
{
	struct final_of f = {r, false};
	int known, ev;

	sqlite3_bind_text(s->st[S_HAS_ORDER], 1, r->order_id, -1,
	                  SQLITE_STATIC);
	known = one_row(s->st[S_HAS_ORDER], NULL, NULL);
	sqlite3_bind_text(s->st[S_FIND_STATUS], 1, r->order_id, -1,
	                  SQLITE_STATIC);
	ev = known >= 0 ? one_row(s->st[S_FIND_STATUS], take_status, &f) : -1;
	if (known < 0 || ev < 0)
		return -1;
	r->answer = known == 0 && ev == 0 ? API_CANCEL_NO_ORDER
	            : f.final             ? API_CANCEL_TOO_LATE
	                                  : API_CANCEL_NEW;
	return 0;
}

/* The cancels row and its order.cancel_requested in the outbox. */
static int
put_cancel(struct apistore *s, const struct api_req *r, int64_t now)
{
	sqlite3_stmt *st = s->st[S_INS_CANCEL];

	sqlite3_bind_text(st, 1, r->order_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, r->reason, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now);
	if (run(st) != 0)
		return -1;
	return put_outbox(s, r, "cancel", "order.cancel_requested", now);
}

/* One POST /orders/{id}/cancel inside the writer's transaction. 0 (r
 * answered) or -1. */
static int
write_cancel(struct apistore *s, struct api_req *r, int64_t now)
{
	int rc = 0;

	r->code = 0;
	if (r->key[0] != '\0')
		rc = replay_key(s, S_FIND_CANCEL_KEY, r);
	if (rc < 0 || r->code == 409 || (rc == 0 && r->check_only))
		return rc < 0 ? -1 : 0;
	r->code = 202;
	snprintf(r->answer_id, sizeof(r->answer_id), "%s", r->order_id);
	sqlite3_bind_text(s->st[S_FIND_CANCEL], 1, r->order_id, -1,
	                  SQLITE_STATIC);
	rc = one_row(s->st[S_FIND_CANCEL], take_cancel, &r->cancel);
	if (rc != 0) {
		r->answer = API_CANCEL_EARLIER;
		r->replayed = true;
		return rc < 0 ? -1 : 0;
	}
	if (r->check_only) { /* a key never used, and no body to store */
		r->code = 0;
		return 0;
	}
	if (cancel_allowed(s, r) != 0)
		return -1;
	if (r->answer != API_CANCEL_NEW)
		return 0;
	if (put_cancel(s, r, now) != 0 ||
	    put_key(s, S_INS_CANCEL_KEY, r, now) != 0)
		return -1;
	return 0;
}

/* order.cancel_refused: the cancel is refused, the saga unchanged. */
static int
cancel_refused(struct apistore *s, const struct api_event *e, int64_t now)
{
	sqlite3_stmt *st = s->st[S_CANCEL_REFUSED];

	sqlite3_bind_text(st, 1, e->order_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, e->reason, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, e->state, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, now);
	return run(st);
}

static int
write_event(struct apistore *s, const struct api_event *e, int64_t now)
{
	sqlite3_stmt *st = s->st[S_UPSERT_STATUS];

	if (strcmp(e->type, "order.cancel_refused") == 0)
		return cancel_refused(s, e, now);
	if (strcmp(e->type, "order.cancelled") == 0) {
		sqlite3_bind_text(s->st[S_CANCEL_DONE], 1, e->order_id, -1,
		                  SQLITE_STATIC);
		sqlite3_bind_int64(s->st[S_CANCEL_DONE], 2, now);
		if (run(s->st[S_CANCEL_DONE]) != 0)
			return -1;
	}
	sqlite3_bind_text(st, 1, e->order_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, e->type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, e->state, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, e->message_id, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 5, apistore_final_event(e->type) ? 1 : 0);
	sqlite3_bind_int64(st, 6, e->at_ms);
	sqlite3_bind_int64(st, 7, now);
	return run(st);
}

/* The batch in one transaction. 0 committed, -1 rolled back (logged). */
static int
write_batch(struct apistore *s, struct batch *b)
{
	char err[512];
	int64_t now = clock_wall_ms();

	if (db_begin(s->db, err, sizeof(err)) != 0)
		goto fail;
	for (size_t i = 0; i < b->ndel; i++) {
		sqlite3_bind_int64(s->st[S_DEL_OUTBOX], 1, b->del[i]);
		if (run(s->st[S_DEL_OUTBOX]) != 0)
			goto fail_sql;
	}
	for (size_t i = 0; i < b->nev; i++)
		if (write_event(s, &b->ev[i], now) != 0)
			goto fail_sql;
	for (struct api_req *r = b->reqs; r != NULL; r = r->next) {
		int rc = r->kind == API_CANCEL ? write_cancel(s, r, now)
		                               : write_order(s, r, now);
		if (rc != 0)
			goto fail_sql;
		b->added |=
		        r->code == 202 && !r->replayed &&
		        (r->kind == API_ORDER || r->answer == API_CANCEL_NEW);
	}
	if (db_commit(s->db, err, sizeof(err)) != 0)
		goto fail;
	return 0;
fail_sql:
	snprintf(err, sizeof(err), "%s", sqlite3_errmsg(s->db));
fail:
	log_error("cannot commit a batch (%zu events, %zu deletions and "
	          "its orders): %s",
	          b->nev, b->ndel, err);
	db_rollback(s->db);
	return -1;
}

/* Waits for work and takes all of it. false when stopped and idle. */
static bool
take(struct apistore *s, struct batch *b)
{
	memset(b, 0, sizeof(*b));
	pthread_mutex_lock(&s->mu);
	while (!s->stop && s->head == NULL && s->ndel == 0 && s->nev == 0)
		pthread_cond_wait(&s->cv, &s->mu);
	b->reqs = s->head;
	s->head = s->tail = NULL;
	b->del = s->del;
	b->ndel = s->ndel;
	s->del = NULL;
	s->ndel = s->capdel = 0;
	b->ev = s->ev;
	b->nev = s->nev;
	s->ev = NULL;
	s->nev = s->capev = 0;
	pthread_mutex_unlock(&s->mu);
	return b->reqs != NULL || b->ndel > 0 || b->nev > 0;
}

/* After the transaction: events settled, deletions kept if it failed. */
static void
settle(struct apistore *s, struct batch *b, bool ok)
{
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < b->nev; i++) {
		if (grow((void **)&s->settled, &s->capset, s->nset,
		         sizeof(*s->settled)) != 0) {
			log_error("out of memory: event %s stays unacked",
			          b->ev[i].message_id);
			continue;
		}
		s->settled[s->nset++] = (struct api_settled){b->ev[i].ref, ok};
	}
	for (size_t i = 0; !ok && !s->stop && i < b->ndel; i++)
		if (grow((void **)&s->del, &s->capdel, s->ndel,
		         sizeof(*s->del)) == 0)
			s->del[s->ndel++] = b->del[i];
	pthread_mutex_unlock(&s->mu);
}

/* The WAL checkpoint runs after the batch's answers went out, while the
 * next batch queues up (db.h: db_wal_checkpoint). */
static void
checkpoint(struct apistore *s)
{
	char err[512];

	if (db_wal_checkpoint(s->db, &s->wal, err, sizeof(err)) != 0)
		log_warnx("%s", err);
}

static void *
writer_main(void *arg)
{
	struct apistore *s = arg;
	struct batch b;

	while (take(s, &b)) {
		bool ok = write_batch(s, &b) == 0;
		struct api_req *next;
		atomic_store(&s->writable, ok);
		if (ok && b.added)
			atomic_store(&s->grew, true);
		settle(s, &b, ok);
		for (struct api_req *r = b.reqs; r != NULL; r = next) {
			next = r->next; /* r is the caller's after done */
			if (!ok)
				r->code = 503;
			r->done(r);
		}
		free(b.del);
		free(b.ev);
		checkpoint(s);
		if (!ok) {
			/* a full or failing disk: do not spin on it */
			struct timespec ts = {0, 100 * 1000000};
			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

/* ---- queues (any thread) ---- */

void
apistore_submit(struct apistore *s, struct api_req *r)
{
	assert(r->done != NULL && (r->check_only || r->body != NULL));
	assert(!r->check_only || r->key[0] != '\0');
	r->next = NULL;
	pthread_mutex_lock(&s->mu);
	if (s->tail != NULL)
		s->tail->next = r;
	else
		s->head = r;
	s->tail = r;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

int
apistore_confirmed(struct apistore *s, const int64_t *seq, size_t n)
{
	int rc = 0;
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < n && rc == 0; i++) {
		rc = grow((void **)&s->del, &s->capdel, s->ndel,
		          sizeof(*s->del));
		if (rc == 0)
			s->del[s->ndel++] = seq[i];
	}
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int
apistore_event(struct apistore *s, const struct api_event *e)
{
	int rc;
	pthread_mutex_lock(&s->mu);
	rc = grow((void **)&s->ev, &s->capev, s->nev, sizeof(*s->ev));
	if (rc == 0) {
		s->ev[s->nev++] = *e;
		pthread_cond_signal(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

size_t
apistore_take_settled(struct apistore *s, struct api_settled *out, size_t cap)
{
	size_t n;
	pthread_mutex_lock(&s->mu);
	n = s->nset < cap ? s->nset : cap;
	if (n > 0) {
		memcpy(out, s->settled, n * sizeof(*out));
		memmove(s->settled, s->settled + n,
		        (s->nset - n) * sizeof(*out));
		s->nset -= n;
	}
	pthread_mutex_unlock(&s->mu);
	return n;
}

bool
apistore_outbox_grew(struct apistore *s)
{
	return atomic_exchange(&s->grew, false);
}

bool
apistore_writable(const struct apistore *s)
{
	return atomic_load(&s->writable);
}

/* ---- reading ---- */

static void
row_of(sqlite3_stmt *st, struct api_outbox_row *r)
{
	r->seq = sqlite3_column_int64(st, 0);
	r->message_id = (const char *)sqlite3_column_text(st, 1);
	r->exchange = (const char *)sqlite3_column_text(st, 2);
	r->routing_key = (const char *)sqlite3_column_text(st, 3);
	r->type = (const char *)sqlite3_column_text(st, 4);
	r->correlation_id = (const char *)sqlite3_column_text(st, 5);
	r->traceparent = (const char *)sqlite3_column_text(st, 6);
	r->mandatory = sqlite3_column_int(st, 7) != 0;
	r->body = sqlite3_column_blob(st, 8);
	r->len = (size_t)sqlite3_column_bytes(st, 8);
	r->created_at = sqlite3_column_int64(st, 9);
}

#define OUTBOX_COLUMNS                                                         \
	"SELECT seq, message_id, exchange, routing_key, type, "                \
	"correlation_id, traceparent, mandatory, body, created_at FROM "       \
	"outbox "

/* Steps st (bound) and hands each row to fn. Rows given, or -1. */
static int
scan_rows(sqlite3 *db, sqlite3_stmt *st,
          int (*fn)(void *arg, const struct api_outbox_row *r), void *arg)
{
	struct api_outbox_row r;
	int n = 0, rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		row_of(st, &r);
		n++;
		if (fn(arg, &r) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	if (rc != SQLITE_DONE)
		log_error("cannot read the outbox: %s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? n : -1;
}

int
apistore_outbox_scan(struct apistore *s, int64_t after, int limit,
                     int (*fn)(void *arg, const struct api_outbox_row *r),
                     void *arg)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->relay,
	                       OUTBOX_COLUMNS
	                       "WHERE seq > ?1 ORDER BY seq LIMIT ?2",
	                       -1, &st, NULL) != SQLITE_OK) {
		log_error("cannot read the outbox: %s",
		          sqlite3_errmsg(s->relay));
		return -1;
	}
	sqlite3_bind_int64(st, 1, after);
	sqlite3_bind_int(st, 2, limit);
	return scan_rows(s->relay, st, fn, arg);
}

int
apistore_outbox_get(struct apistore *s, int64_t seq,
                    int (*fn)(void *arg, const struct api_outbox_row *r),
                    void *arg)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->relay, OUTBOX_COLUMNS "WHERE seq = ?1", -1,
	                       &st, NULL) != SQLITE_OK) {
		log_error("cannot read the outbox: %s",
		          sqlite3_errmsg(s->relay));
		return -1;
	}
	sqlite3_bind_int64(st, 1, seq);
	return scan_rows(s->relay, st, fn, arg);
}

/* The status row into out; 1 found, 0 not, -1 error. reader_mu held. */
static int
status_event(struct apistore *s, const char *id, struct api_status *out)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(s->reader,
	                       "SELECT last_event, state, final, event_at, "
	                       "updated_at FROM order_status WHERE "
	                       "order_id = ?1",
	                       -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		out->has_event = true;
		snprintf(out->last_event, sizeof(out->last_event), "%s",
		         (const char *)sqlite3_column_text(st, 0));
		snprintf(out->state, sizeof(out->state), "%s",
		         (const char *)sqlite3_column_text(st, 1));
		out->final = sqlite3_column_int(st, 2) != 0;
		out->event_at = sqlite3_column_int64(st, 3);
		out->updated_at = sqlite3_column_int64(st, 4);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* The order's created_at into out; 1 found, 0 not, -1. reader_mu held. */
static int
status_order(struct apistore *s, const char *id, struct api_status *out)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(s->reader,
	                       "SELECT created_at FROM orders WHERE "
	                       "order_id = ?1",
	                       -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		out->accepted = true;
		out->created_at = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* The order's cancel into out; 1 found, 0 not, -1. reader_mu held. */
static int
status_cancel(struct apistore *s, const char *id, struct api_status *out)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(s->reader, CANCEL_COLUMNS, -1, &st, NULL) !=
	    SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		out->has_cancel = true;
		cancel_of(st, &out->cancel);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
apistore_status(struct apistore *s, const char *order_id,
                struct api_status *out)
{
	int a, b, c;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&s->reader_mu);
	/* one read transaction: both tables from the same snapshot */
	a = sqlite3_exec(s->reader, "BEGIN", NULL, NULL, NULL) == SQLITE_OK
	            ? status_order(s, order_id, out)
	            : -1;
	b = a >= 0 ? status_event(s, order_id, out) : -1;
	c = b >= 0 ? status_cancel(s, order_id, out) : -1;
	if (c < 0)
		log_error("cannot read order %s: %s", order_id,
		          sqlite3_errmsg(s->reader));
	sqlite3_exec(s->reader, "COMMIT", NULL, NULL, NULL);
	pthread_mutex_unlock(&s->reader_mu);
	return c < 0 ? -1 : a == 1 || b == 1 || c == 1;
}

int
apistore_outbox_depth(struct apistore *s, int64_t *n, int64_t *oldest_ms)
{
	sqlite3_stmt *st;
	int rc = SQLITE_ERROR;

	pthread_mutex_lock(&s->reader_mu);
	if (sqlite3_prepare_v2(s->reader,
	                       "SELECT count(*), coalesce(min(created_at), 0) "
	                       "FROM outbox",
	                       -1, &st, NULL) == SQLITE_OK) {
		rc = sqlite3_step(st);
		*n = sqlite3_column_int64(st, 0);
		*oldest_ms = sqlite3_column_int64(st, 1);
		sqlite3_finalize(st);
	}
	if (rc != SQLITE_ROW)
		log_error("cannot count the outbox: %s",
		          sqlite3_errmsg(s->reader));
	pthread_mutex_unlock(&s->reader_mu);
	return rc == SQLITE_ROW ? 0 : -1;
}

/* ---- life ---- */

static int
open_conns(struct apistore *s, const char *path, char *err, size_t errlen)
{
	if (db_open(path, DB_READWRITE, &s->db, err, errlen) != 0 ||
	    db_migrate(s->db, orderapi_migrations, orderapi_migrations_count,
	               err, errlen) != 0)
		return -1;
	for (int i = 0; i < S_COUNT; i++)
		if (db_prepare(s->db, &s->st[i], writer_sql[i], err, errlen) !=
		    0)
			return -1;
	db_wal_defer(s->db, &s->wal);
	if (db_open(path, DB_READONLY, &s->relay, err, errlen) != 0 ||
	    db_open(path, DB_READONLY, &s->reader, err, errlen) != 0)
		return -1;
	return 0;
}

static void
close_conns(struct apistore *s)
{
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(s->st[i]);
	db_close(s->reader);
	db_close(s->relay);
	db_close(s->db);
}

struct apistore *
apistore_open(const char *path, char *err, size_t errlen)
{
	struct apistore *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->reader_mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	atomic_init(&s->writable, true);
	atomic_init(&s->grew, true); /* rows left by the last run */
	if (open_conns(s, path, err, errlen) != 0)
		goto fail;
	if (pthread_create(&s->thread, NULL, writer_main, s) != 0) {
		snprintf(err, errlen, "cannot start the writer thread");
		goto fail;
	}
	return s;
fail:
	close_conns(s);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->reader_mu);
	pthread_mutex_destroy(&s->mu);
	free(s);
	return NULL;
}

void
apistore_close(struct apistore *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);
	assert(s->head == NULL && s->nev == 0);
	close_conns(s);
	free(s->del);
	free(s->ev);
	free(s->settled);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->reader_mu);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

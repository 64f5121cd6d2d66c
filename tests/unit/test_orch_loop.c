/* The orchestrator's durable loop with an in-memory transport and
 * scripted participants: no broker. Proves the loop's own logic on
 * statecharts/order.yaml: sagas end as the rules say, duplicates are
 * dropped, malformed input is dead-lettered with a reason while the rest
 * goes on, nothing is acknowledged when a commit fails (SQLITE_FULL) and
 * the batch goes through once there is room, timers drive retries, and
 * after a "crash" (everything closed without draining) the outbox is
 * published again and the inbox drops the redeliveries; a row the
 * transport can never send is dropped and the rest go on. The mailbox:
 * another thread's operator requests are applied at the loop's next turn
 * and answered after the commit, or withdrawn when the loop does not take
 * them in time. Operator requests over AMQP are taken only from the
 * operator user and answered.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "clock.h"
#include "envelope.h"
#include "log.h"
#include "loop.h"
#include "orch.h"
#include "registry.h"
#include "store.h"
#include "testorder.h"
#include "testutil.h"

#define MAXMSG 4096

struct sent {
	char exchange[64], rk[256], id[256], type[128];
	char *body;
	size_t len;
	uint64_t tag;
	bool confirmed;
	bool mandatory, bundle; /* as the row asked */
};

struct incoming {
	enum loop_source src;
	char *body;
	size_t len;
	char id[256];
	const char *content_type;
	char user_id[64], reply_to[64]; /* "" none */
};

struct mem {
	struct sent sent[MAXMSG];
	size_t nsent, nconfirmed;
	struct incoming in[MAXMSG];
	size_t nin, next_in;
	uint64_t acked[MAXMSG], rejected[MAXMSG];
	char reasons[MAXMSG][300];
	size_t nacked, nrejected;
	uint64_t next_ref;
	bool fail_publish;
	const char *refuse_type; /* rows of this type: REFUSED (too large) */
	struct durable *loop;    /* as the last poll saw it */
	bool down;               /* ready() says the broker is away */
	bool hold_confirms;      /* the broker confirms nothing yet */
	int last_timeout;        /* what the loop last asked poll to wait */
};

static int
mem_publish(void *ctx, const struct durable_msg *m, uint64_t tag)
{
	struct mem *b = ctx;
	struct sent *s;
	if (b->fail_publish || b->nsent == MAXMSG)
		return -1;
	if (b->refuse_type != NULL && strcmp(m->type, b->refuse_type) == 0) {
		durable_confirmed(b->loop, tag, DURABLE_REFUSED);
		return 0;
	}
	s = &b->sent[b->nsent++];
	memset(s, 0, sizeof(*s));
	snprintf(s->exchange, sizeof(s->exchange), "%s", m->exchange);
	snprintf(s->rk, sizeof(s->rk), "%s", m->routing_key);
	snprintf(s->id, sizeof(s->id), "%s", m->message_id);
	snprintf(s->type, sizeof(s->type), "%s", m->type);
	s->body = malloc(m->len);
	memcpy(s->body, m->body, m->len);
	s->len = m->len;
	s->tag = tag;
	s->mandatory = m->mandatory;
	s->bundle = m->bundle;
	return 0;
}

static int
mem_settle(void *ctx, uint64_t ref, enum durable_verdict v, const char *why)
{
	struct mem *b = ctx;
	if (v == DURABLE_DONE) {
		b->acked[b->nacked++] = ref;
		return 0;
	}
	snprintf(b->reasons[b->nrejected], 300, "%s", why);
	b->rejected[b->nrejected++] = ref;
	return 0;
}

static int
mem_poll(void *ctx, struct durable *l, int timeout_ms)
{
	struct mem *b = ctx;
	b->loop = l;
	b->last_timeout = timeout_ms;
	for (size_t i = 0; !b->hold_confirms && i < b->nsent; i++) {
		if (!b->sent[i].confirmed) {
			b->sent[i].confirmed = true;
			b->nconfirmed++;
			durable_confirmed(l, b->sent[i].tag, DURABLE_ACK);
		}
	}
	while (b->next_in < b->nin) {
		struct incoming *m = &b->in[b->next_in++];
		struct durable_delivery d = {
		        .ref = ++b->next_ref,
		        .source = m->src,
		        .body = m->body,
		        .len = m->len,
		        .message_id = m->id,
		        .content_type = m->content_type,
		        .user_id = m->user_id,
		        .reply_to = m->reply_to,
		};
		durable_deliver(l, &d);
	}
	return 0;
}

static int
mem_stop(void *ctx)
{
	(void)ctx;
	return 0;
}

static bool
mem_ready(void *ctx)
{
	const struct mem *b = ctx;
	return !b->down;
}

static size_t
mem_unconfirmed(void *ctx)
{
	struct mem *b = ctx;
	return b->nsent - b->nconfirmed;
}

static void
push_raw(struct mem *b, enum loop_source src, const char *id, const void *body,
         size_t len, const char *ctype)
{
	struct incoming *m = &b->in[b->nin++];
	m->src = src;
	m->body = malloc(len ? len : 1);
	memcpy(m->body, body, len);
	m->len = len;
	m->content_type = ctype;
	snprintf(m->id, sizeof(m->id), "%s", id);
	m->user_id[0] = m->reply_to[0] = '\0';
}

static void
push_env(struct mem *b, enum loop_source src, struct envelope *e)
{
	char *buf;
	size_t len;
	if (envelope_encode(e, &buf, &len) != 0)
		abort();
	push_raw(b, src, e->id, buf, len, "application/msgpack");
	free(buf);
}

static int order_seq;

/* An order.created for order `id`. */
static void
push_order(struct mem *b, const char *id, const char *method, int64_t total,
           const char *country, const char *msgid)
{
	struct envelope e;
	char evt[32];

	if (msgid == NULL)
		snprintf(evt, sizeof(evt), "evt-%d", ++order_seq);
	testorder_envelope(
	        &e, &(struct testorder){.id = id,
	                                .msgid = msgid != NULL ? msgid : evt,
	                                .customer = "c1",
	                                .method = method,
	                                .country = country,
	                                .total_cents = total});
	push_env(b, SRC_ORDERS, &e);
	envelope_clear(&e);
}

/* Scripted participants: reply to every command not yet answered.
 * `script(type, saga)` returns the reply type, or NULL for silence. */
typedef const char *(*script_fn)(const char *command, const char *saga);

static size_t answered;

static void
participants(struct mem *b, script_fn script)
{
	static int reply_seq;
	for (; answered < b->nsent; answered++) {
		struct sent *s = &b->sent[answered];
		struct envelope cmd, r;
		char err[256];
		const char *reply;
		if (strcmp(s->exchange, ORCH_EXCHANGE_COMMANDS) != 0)
			continue;
		envelope_init(&cmd);
		if (envelope_decode(s->body, s->len, &cmd, err, sizeof(err)))
			abort();
		reply = script(cmd.type, cmd.saga);
		if (reply != NULL) {
			envelope_init(&r);
			snprintf(r.id, sizeof(r.id), "reply-%d", ++reply_seq);
			snprintf(r.saga, sizeof(r.saga), "%s", cmd.saga);
			snprintf(r.type, sizeof(r.type), "%s", reply);
			snprintf(r.step, sizeof(r.step), "%s", cmd.step);
			snprintf(r.re, sizeof(r.re), "%s", cmd.id);
			r.attempt = cmd.attempt;
			r.ts = 2;
			value_set_map(&r.payload);
			if (strcmp(reply, "payment.charged") == 0)
				value_map_put_str(&r.payload, "charge_id",
				                  "ch-1");
			push_env(b, SRC_REPLIES, &r);
			envelope_clear(&r);
		}
		envelope_clear(&cmd);
	}
}

static const char *
happy(const char *command, const char *saga)
{
	if (strcmp(command, "inventory.reserve") == 0)
		return strncmp(saga, "nostock", 7) == 0 ? "inventory.rejected"
		                                        : "inventory.reserved";
	if (strcmp(command, "payment.charge") == 0) {
		if (strncmp(saga, "declined", 8) == 0)
			return "payment.declined";
		return strncmp(saga, "cod", 3) == 0
		               ? "payment.collection_registered"
		               : "payment.charged";
	}
	if (strcmp(command, "shipping.create") == 0)
		return "shipping.created";
	if (strcmp(command, "inventory.release") == 0)
		return "inventory.released";
	if (strcmp(command, "payment.refund") == 0)
		return "payment.refunded";
	return NULL;
}

struct world {
	char *dir;
	char db[512];
	struct mem *bus;
	struct store *st;
	struct registry *reg;
	struct orch *o;
	struct loop *l;
};

/* The inbox retention of the next world_open (0: forever). */
static int64_t world_retention_ms;
static size_t world_prune_per_turn;
static int64_t world_grace_ms; /* reconnect grace of the next world_open */

static int
world_open(struct world *w)
{
	char err[2048];
	struct durable_transport t = {
	        .ctx = w->bus,
	        .publish = mem_publish,
	        .settle = mem_settle,
	        .poll = mem_poll,
	        .stop_consuming = mem_stop,
	        .unconfirmed = mem_unconfirmed,
	        .ready = mem_ready,
	};
	struct durable_config lc = {.batch_max = 50,
	                            .batch_wait_ms = 0,
	                            .inbox_retention_ms = world_retention_ms,
	                            .prune_per_turn = world_prune_per_turn,
	                            .reconnect_grace_ms = world_grace_ms};
	w->st = store_open(w->db, err, sizeof(err));
	if (w->st == NULL) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	w->reg = registry_new(w->st);
	if (registry_load_dir(w->reg, "statecharts", 1, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	w->o = orch_new(w->st, w->reg, NULL);
	w->l = loop_new(w->st, w->o, &t, &lc);
	return w->l != NULL ? 0 : -1;
}

static void
world_close(struct world *w)
{
	loop_free(w->l);
	orch_free(w->o);
	registry_free(w->reg);
	store_close(w->st);
	w->l = NULL;
}

static int
world_init(struct world *w)
{
	memset(w, 0, sizeof(*w));
	answered = 0;
	w->dir = testutil_tmpdir("saga-orch");
	w->bus = calloc(1, sizeof(*w->bus));
	if (w->dir == NULL || w->bus == NULL)
		return -1;
	snprintf(w->db, sizeof(w->db), "%s/orch.db", w->dir);
	return world_open(w);
}

static void
world_free(struct world *w)
{
	world_close(w);
	for (size_t i = 0; i < w->bus->nsent; i++)
		free(w->bus->sent[i].body);
	for (size_t i = 0; i < w->bus->nin; i++)
		free(w->bus->in[i].body);
	free(w->bus);
	testutil_rmtree(w->dir);
	free(w->dir);
}

/* Runs turns until nothing moves (or n turns), answering commands. */
static void
run(struct world *w, script_fn script, int64_t now, int turns)
{
	for (int i = 0; i < turns; i++) {
		participants(w->bus, script);
		loop_turn(w->l, now);
		loop_flush(w->l, now);
	}
}

/* The test reads the database file as any reader would: through a
 * connection of its own (the store lends no handle). NULL on error. */
static sqlite3_stmt *
peek(struct world *w, const char *sql, sqlite3 **db)
{
	sqlite3_stmt *s = NULL;
	if (sqlite3_open_v2(w->db, db, SQLITE_OPEN_READONLY, NULL) !=
	            SQLITE_OK ||
	    sqlite3_prepare_v2(*db, sql, -1, &s, NULL) != SQLITE_OK) {
		sqlite3_close(*db);
		*db = NULL;
		return NULL;
	}
	return s;
}

static void
peek_done(sqlite3_stmt *s, sqlite3 *db)
{
	sqlite3_finalize(s);
	sqlite3_close(db);
}

static const char *
status_of(struct world *w, const char *id)
{
	static char out[32];
	sqlite3 *db;
	sqlite3_stmt *s = peek(w, "SELECT status FROM sagas WHERE id = ?", &db);
	out[0] = '\0';
	if (s == NULL)
		return "?";
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW)
		snprintf(out, sizeof(out), "%s",
		         (const char *)sqlite3_column_text(s, 0));
	peek_done(s, db);
	return out;
}

static int
count(struct world *w, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *s = peek(w, sql, &db);
	int n = -1;
	if (s == NULL)
		return -1;
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int(s, 0);
	peek_done(s, db);
	return n;
}

static size_t
sent_count(struct mem *b, const char *type, const char *rk_prefix)
{
	size_t n = 0;
	for (size_t i = 0; i < b->nsent; i++)
		if ((type == NULL || strcmp(b->sent[i].type, type) == 0) &&
		    (rk_prefix == NULL ||
		     strncmp(b->sent[i].rk, rk_prefix, strlen(rk_prefix)) == 0))
			n++;
	return n;
}

static void
test_paths(void)
{
	struct world w;
	CHECK(world_init(&w) == 0);
	push_order(w.bus, "card-1", "card", 1000, "india", NULL);
	push_order(w.bus, "cod-1", "cod", 1000, "france", NULL);
	push_order(w.bus, "cod-big", "cod", 900000, "france", NULL);
	push_order(w.bus, "declined-1", "card", 1000, "india", NULL);
	push_order(w.bus, "nostock-1", "card", 1000, "india", NULL);
	run(&w, happy, clock_wall_ms(), 12);
	CHECK_STR(status_of(&w, "card-1"), "completed");
	CHECK_STR(status_of(&w, "cod-1"), "completed");
	CHECK_STR(status_of(&w, "cod-big"), "failed");
	CHECK_STR(status_of(&w, "declined-1"), "failed");
	CHECK_STR(status_of(&w, "nostock-1"), "failed");
	/* routed commands */
	CHECK_EQ(sent_count(w.bus, "payment.charge", "payment.card"), 2);
	CHECK_EQ(sent_count(w.bus, "payment.charge", "payment.cod"), 1);
	CHECK_EQ(sent_count(w.bus, "shipping.create", "shipping.india.books"),
	         1);
	/* compensations: cod-big and declined release stock; nostock none */
	CHECK_EQ(sent_count(w.bus, "inventory.release", NULL), 2);
	CHECK_EQ(sent_count(w.bus, "payment.refund", NULL), 0);
	/* events */
	CHECK_EQ(sent_count(w.bus, "order.completed", "order.completed"), 2);
	CHECK_EQ(sent_count(w.bus, "order.failed", NULL), 3);
	CHECK_EQ(sent_count(w.bus, "order.shipped", NULL), 2);
	/* everything confirmed is gone from the outbox; all acked */
	loop_flush(w.l, clock_wall_ms());
	CHECK_EQ(count(&w, "SELECT count(*) FROM outbox"), 0);
	CHECK_EQ(w.bus->nrejected, 0);
	CHECK_EQ(w.bus->nacked, w.bus->nin);
	world_free(&w);
}

/* A row the transport can never send (larger than a message may be) is
 * dropped: the rows after it go out, its saga goes on. Commands are
 * published mandatory and may be bundled; events neither. */
static void
test_refused_row_dropped(void)
{
	struct world w;
	CHECK(world_init(&w) == 0);
	w.bus->refuse_type = "order.inventory_checked";
	push_order(w.bus, "huge-1", "card", 1000, "india", NULL);
	push_order(w.bus, "card-2", "card", 1000, "india", NULL);
	run(&w, happy, clock_wall_ms(), 12);
	CHECK_STR(status_of(&w, "huge-1"), "completed");
	CHECK_STR(status_of(&w, "card-2"), "completed");
	CHECK_EQ(sent_count(w.bus, "order.inventory_checked", NULL), 0);
	CHECK_EQ(sent_count(w.bus, "order.completed", NULL), 2);
	for (size_t i = 0; i < w.bus->nsent; i++) {
		const struct sent *m = &w.bus->sent[i];
		bool command = strcmp(m->exchange, "saga.commands") == 0;
		CHECK_MSG(m->mandatory == command && m->bundle == command,
		          "%s to %s: mandatory %d bundle %d", m->type,
		          m->exchange, m->mandatory, m->bundle);
	}
	loop_flush(w.l, clock_wall_ms());
	CHECK_EQ(count(&w, "SELECT count(*) FROM outbox"), 0);
	world_free(&w);
}

static void
test_duplicates_and_garbage(void)
{
	struct world w;
	static const unsigned char garbage[] = {0xc1, 0x00, 0xff};
	CHECK(world_init(&w) == 0);
	push_order(w.bus, "o-1", "card", 100, "india", "m-1");
	push_order(w.bus, "o-1", "card", 100, "india", "m-1"); /* redelivery */
	push_order(w.bus, "o-1", "card", 100, "india", "m-2"); /* same order */
	push_raw(w.bus, SRC_ORDERS, "junk", garbage, sizeof(garbage),
	         "application/msgpack");
	push_raw(w.bus, SRC_REPLIES, "junk2", "{}", 2, "application/json");
	push_order(w.bus, "o-2", "card", 100, "india", NULL);
	run(&w, happy, clock_wall_ms(), 10);
	CHECK_STR(status_of(&w, "o-1"), "completed");
	CHECK_STR(status_of(&w, "o-2"), "completed");
	CHECK_EQ(count(&w, "SELECT count(*) FROM sagas"), 2);
	CHECK_EQ(sent_count(w.bus, "inventory.reserve", NULL), 2);
	CHECK_EQ(w.bus->nrejected, 2);
	CHECK_MSG(strstr(w.bus->reasons[0], "bad envelope") != NULL, "%s",
	          w.bus->reasons[0]);
	CHECK_MSG(strstr(w.bus->reasons[1], "application/json") != NULL, "%s",
	          w.bus->reasons[1]);
	CHECK_EQ(orch_stats(w.o)->duplicates, 2);
	world_free(&w);
}

/* No participant answers. */
static const char *
nobody(const char *command, const char *saga)
{
	(void)command;
	(void)saga;
	return NULL;
}

/* A customer's order.cancel_requested comes on the orders queue, as the
 * order.created does: it reaches the engine (order.yaml has no cancel:,
 * so it is refused with order.cancel_refused), not the dead letters. */
static void
test_cancel_on_orders_queue(void)
{
	struct world w;
	struct envelope e;

	CHECK(world_init(&w) == 0);
	push_order(w.bus, "c-1", "card", 100, "india", NULL);
	run(&w, nobody, clock_wall_ms(), 2);
	envelope_init(&e);
	snprintf(e.id, sizeof(e.id), "cancel-c-1");
	snprintf(e.saga, sizeof(e.saga), "c-1");
	snprintf(e.type, sizeof(e.type), ORCH_CANCEL_TYPE);
	e.ts = 3;
	value_map_put_str(&e.payload, "order_id", "c-1");
	value_map_put_str(&e.payload, "actor", "customer");
	push_env(w.bus, SRC_ORDERS, &e);
	envelope_clear(&e);
	run(&w, nobody, clock_wall_ms(), 2);
	CHECK_EQ(w.bus->nrejected, 0);
	CHECK_EQ(sent_count(w.bus, ORCH_CANCEL_REFUSED, ORCH_CANCEL_REFUSED),
	         1);
	CHECK_EQ(count(&w, "SELECT count(*) FROM history WHERE saga_id = "
	                   "'c-1' AND kind = 'rejected' AND actor = "
	                   "'customer'"),
	         1);
	CHECK_STR(status_of(&w, "c-1"), "running");
	world_free(&w);
}

/* An operator request from broker user `user` ("" none), answered at
 * reply_to ("" none), claiming to be "mallory". */
static void
push_op(struct mem *b, const char *id, const char *saga, const char *user,
        const char *reply_to)
{
	struct envelope e;
	struct incoming *m;

	envelope_init(&e);
	snprintf(e.id, sizeof(e.id), "%s", id);
	snprintf(e.saga, sizeof(e.saga), "%s", saga);
	snprintf(e.type, sizeof(e.type), "operator.abort");
	e.ts = 3;
	value_map_put_str(&e.payload, "actor", "mallory");
	value_map_put_str(&e.payload, "reason", "test");
	push_env(b, SRC_CONTROL, &e);
	envelope_clear(&e);
	m = &b->in[b->nin - 1];
	snprintf(m->user_id, sizeof(m->user_id), "%s", user);
	snprintf(m->reply_to, sizeof(m->reply_to), "%s", reply_to);
}

/* The answer to request `re` published with routing key rk, as
 * "outcome|note|state|status|actor"; "" if there is none, "wrong
 * envelope: ..." if it is not on saga.replies about saga with exactly
 * those five fields. */
static const char *
answer_of(struct mem *b, const char *re, const char *saga, const char *rk)
{
	static char out[600];
	out[0] = '\0';
	for (size_t i = 0; i < b->nsent; i++) {
		struct envelope e;
		char err[256];
		const char *k[] = {"outcome", "note", "state", "status",
		                   "actor"};
		if (strcmp(b->sent[i].type, ORCH_ANSWER_TYPE) != 0 ||
		    strcmp(b->sent[i].rk, rk) != 0)
			continue;
		envelope_init(&e);
		if (envelope_decode(b->sent[i].body, b->sent[i].len, &e, err,
		                    sizeof(err)) != 0 ||
		    strcmp(e.re, re) != 0) {
			envelope_clear(&e);
			continue;
		}
		if (strcmp(b->sent[i].exchange, ORCH_EXCHANGE_REPLIES) != 0 ||
		    strcmp(e.saga, saga) != 0 || e.payload.u.m.len != 5) {
			snprintf(out, sizeof(out), "wrong envelope: %s %s %zu",
			         b->sent[i].exchange, e.saga,
			         e.payload.u.m.len);
			envelope_clear(&e);
			return out;
		}
		for (size_t j = 0; j < 5; j++) {
			const struct value *v = value_map_get(&e.payload, k[j]);
			size_t n = strlen(out);
			snprintf(out + n, sizeof(out) - n, "%s%s", j ? "|" : "",
			         v != NULL && v->type == VALUE_STR ? v->u.s.ptr
			                                           : "?");
		}
		envelope_clear(&e);
	}
	return out;
}

/* Operator requests: only from the operator user (the broker-validated
 * user_id), with that user as the actor whatever the payload claims, and
 * answered on saga.replies when they say where; refused ones are
 * answered (and acked) or, with nobody to tell, dead-lettered. */
static void
test_operator_requests(void)
{
	struct world w;

	CHECK(world_init(&w) == 0);
	loop_set_operator(w.l, "operator");
	push_order(w.bus, "o-1", "card", 100, "india", NULL);
	run(&w, nobody, clock_wall_ms(), 2);
	push_op(w.bus, "op-a", "o-1", "payment", "q1");
	push_op(w.bus, "op-b", "o-1", "payment", "");
	push_op(w.bus, "op-c", "o-1", "", "q1");
	run(&w, nobody, clock_wall_ms(), 2);
	CHECK_STR(answer_of(w.bus, "op-a", "o-1", "q1"),
	          "rejected|not from the operator user|||payment");
	CHECK_STR(answer_of(w.bus, "op-c", "o-1", "q1"),
	          "rejected|not from the operator user|||mallory");
	CHECK_STR(answer_of(w.bus, "op-b", "o-1", "q1"), "");
	CHECK_EQ(w.bus->nrejected, 1); /* op-b: nobody to tell */
	CHECK_STR(w.bus->reasons[0], "not from the operator user");
	CHECK_STR(status_of(&w, "o-1"), "running");

	push_op(w.bus, "op-d", "o-1", "operator", "q2");
	push_op(w.bus, "op-e", "nope-1", "operator", "q2");
	run(&w, nobody, clock_wall_ms(), 2);
	CHECK_STR(answer_of(w.bus, "op-d", "o-1", "q2"),
	          "applied|operator abort in reserve_stock (running): nothing "
	          "undone|reserve_stock|aborted|operator");
	CHECK_STR(answer_of(w.bus, "op-e", "nope-1", "q2"),
	          "rejected|unknown saga \"nope-1\"|||operator");
	CHECK_EQ(count(&w, "SELECT count(*) FROM history WHERE saga_id = "
	                   "'o-1' AND kind = 'operator' AND actor = "
	                   "'operator'"),
	         1);
	/* the same request again (a redelivery): answered, nothing done */
	push_op(w.bus, "op-d", "o-1", "operator", "q3");
	run(&w, nobody, clock_wall_ms(), 2);
	CHECK_STR(answer_of(w.bus, "op-d", "o-1", "q3"),
	          "repeated|this request was handled before: nothing done "
	          "again|||operator");
	CHECK_EQ(w.bus->nrejected, 1);
	world_free(&w);
}

/* One poll hands over more deliveries than a batch holds (as a bundle of
 * replies does): the batch grows, nothing is left unacknowledged. */
static void
test_more_than_a_batch_at_once(void)
{
	struct world w;
	char id[32];
	CHECK(world_init(&w) == 0); /* batch_max 50 */
	for (int i = 0; i < 130; i++) {
		snprintf(id, sizeof(id), "big-%d", i);
		push_order(w.bus, id, "card", 100, "india", NULL);
	}
	run(&w, happy, clock_wall_ms(), 20);
	CHECK_EQ(count(&w, "SELECT count(*) FROM sagas WHERE "
	                   "status = 'completed'"),
	         130);
	CHECK_EQ(w.bus->nacked, w.bus->next_ref);
	CHECK_EQ(w.bus->nrejected, 0);
	world_free(&w);
}

/* Message ids older than the retention leave the inbox, a few per
 * transaction; a redelivery after that still starts nothing twice. */
static void
test_inbox_pruned_after_retention(void)
{
	struct world w;
	const int64_t day = INT64_C(24) * 3600 * 1000, now = clock_wall_ms();
	int before;

	world_retention_ms = 7 * day;
	world_prune_per_turn = 5;
	CHECK(world_init(&w) == 0);
	push_order(w.bus, "old-1", "card", 100, "india", "m-old-1");
	push_order(w.bus, "old-2", "card", 100, "india", "m-old-2");
	run(&w, happy, now, 10);
	CHECK_STR(status_of(&w, "old-1"), "completed");
	before = count(&w, "SELECT count(*) FROM inbox");
	CHECK_MSG(before > 5, "inbox %d", before);
	/* 6 days later: nothing is old enough */
	run(&w, happy, now + 6 * day, 1);
	CHECK_EQ(count(&w, "SELECT count(*) FROM inbox"), before);
	/* 8 days later: 5 ids a transaction until none is left */
	loop_flush(w.l, now + 8 * day);
	CHECK_EQ(count(&w, "SELECT count(*) FROM inbox"), before - 5);
	for (int i = 0; i < 10; i++)
		loop_flush(w.l, now + 8 * day);
	CHECK_EQ(count(&w, "SELECT count(*) FROM inbox"), 0);
	CHECK_EQ(loop_stats(w.l)->inbox_pruned, before);
	/* the order redelivered now: known by its order id, dropped */
	push_order(w.bus, "old-1", "card", 100, "india", "m-old-1");
	run(&w, happy, now + 8 * day, 5);
	CHECK_EQ(count(&w, "SELECT count(*) FROM sagas"), 2);
	CHECK_EQ(sent_count(w.bus, "inventory.reserve", NULL), 2);
	world_free(&w);
	world_retention_ms = 0;
	world_prune_per_turn = 0;
}

static const char *
silent_payment(const char *command, const char *saga)
{
	if (strcmp(command, "payment.charge") == 0)
		return NULL;
	return happy(command, saga);
}

static void
test_timeouts_retry(void)
{
	struct world w;
	int64_t now = clock_wall_ms();
	CHECK(world_init(&w) == 0);
	push_order(w.bus, "slow-1", "card", 100, "india", NULL);
	run(&w, silent_payment, now, 4);
	CHECK_EQ(sent_count(w.bus, "payment.charge", NULL), 1);
	/* an hour later every timeout and backoff has fired, step by step */
	for (int i = 1; i <= 40; i++)
		run(&w, silent_payment, now + i * 60 * 1000, 2);
	CHECK_MSG(sent_count(w.bus, "payment.charge", NULL) >= 2,
	          "charge sent %zu times",
	          sent_count(w.bus, "payment.charge", NULL));
	/* attempts exhausted: the unknown payment is refunded, stock freed */
	CHECK_STR(status_of(&w, "slow-1"), "failed");
	CHECK_EQ(sent_count(w.bus, "payment.refund", NULL), 1);
	CHECK_EQ(sent_count(w.bus, "inventory.release", NULL), 1);
	CHECK_EQ(count(&w, "SELECT count(*) FROM timers"), 0);
	world_free(&w);
}

static int64_t
first_timer(struct world *w)
{
	int64_t at = -1;
	bool found;
	if (store_timer_next(w->st, &at, &found) != 0 || !found)
		return -1;
	return at;
}

/* A turn with nothing batched sleeps until something can fall due, not
 * batch_wait_ms (0 here): idle, the daemon turned 200 times a second. */
static void
test_idle_turn_sleeps_until_due(void)
{
	struct world w;
	/* an hour ahead: the loop takes the later of the real clock and the
	 * time it is given, so the real clock never moves these figures */
	int64_t now = clock_wall_ms() + 3600 * 1000, at;
	CHECK(world_init(&w) == 0);
	CHECK_EQ(loop_turn(w.l, now), 0);
	CHECK_EQ(w.bus->last_timeout, LOOP_IDLE_MS);
	/* an order: committed, its first command published, unconfirmed */
	push_order(w.bus, "idle-1", "card", 100, "india", NULL);
	CHECK_EQ(loop_turn(w.l, now), 0);
	CHECK_EQ(sent_count(w.bus, "inventory.reserve", NULL), 1);
	CHECK_EQ(loop_turn(w.l, now + 10), 0); /* its confirm arrives */
	/* the confirmed row's deletion falls due 50 ms after the commit */
	CHECK_EQ(loop_turn(w.l, now + 20), 0);
	CHECK_EQ(w.bus->last_timeout, LOOP_CONFIRMED_WAIT_MS - 20);
	/* a payment that never answers: its step timer is armed */
	run(&w, silent_payment, now + 100, 4);
	run(&w, silent_payment, now + 200, 1);
	CHECK_EQ(sent_count(w.bus, "payment.charge", NULL), 1);
	at = first_timer(&w);
	CHECK(at > now + 300);
	/* then the timer: 30 ms before it, the turn waits 30 ms */
	CHECK_EQ(loop_turn(w.l, at - 30), 0);
	CHECK_EQ(w.bus->last_timeout, 30);
	CHECK_EQ(sent_count(w.bus, "payment.charge", NULL), 1);
	/* due: no wait, and it fires (the step's next timer is later) */
	CHECK_EQ(loop_turn(w.l, at), 0);
	CHECK_EQ(w.bus->last_timeout, 0);
	loop_flush(w.l, at);
	CHECK(first_timer(&w) > at);
	world_free(&w);
}

/* While the transport cannot publish, due timers wait; once it can
 * again they wait the grace too, then fire. (A payment that never
 * answers: its attempt's timer.) */
static void
test_timers_held_while_down(void)
{
	struct world w;
	int64_t now = clock_wall_ms() + 3600 * 1000, at;

	world_grace_ms = 3000;
	CHECK(world_init(&w) == 0);
	world_grace_ms = 0;
	push_order(w.bus, "held-1", "card", 100, "india", NULL);
	run(&w, silent_payment, now, 4);
	CHECK_EQ(sent_count(w.bus, "payment.charge", NULL), 1);
	at = first_timer(&w);
	CHECK(at > now);
	w.bus->down = true;
	run(&w, silent_payment, at + 60 * 1000, 3);
	CHECK_EQ(first_timer(&w), at); /* still armed, not fired */
	CHECK_EQ(loop_turn(w.l, at + 60 * 1000), 0);
	CHECK_EQ(w.bus->last_timeout, LOOP_IDLE_MS); /* not spinning */
	w.bus->down = false;
	run(&w, silent_payment, at + 61 * 1000, 3); /* back: grace */
	CHECK_EQ(first_timer(&w), at);
	run(&w, silent_payment, at + 64 * 1000, 2); /* grace over */
	CHECK(first_timer(&w) != at);
	CHECK_MSG(count(&w, "SELECT count(*) FROM history WHERE saga_id = "
	                    "'held-1' AND kind = 'timeout'") == 1,
	          "timeouts: %lld",
	          (long long)count(&w, "SELECT count(*) FROM history WHERE "
	                               "saga_id = 'held-1' AND kind = "
	                               "'timeout'"));
	world_free(&w);
}

/* A command the broker confirms late (it was away) starts its attempt's
 * clock at the confirm: its timer moves by the delay. */
static void
test_timeout_from_confirm(void)
{
	struct world w;
	int64_t now = clock_wall_ms() + 3600 * 1000, at;

	CHECK(world_init(&w) == 0);
	w.bus->hold_confirms = true;
	push_order(w.bus, "late-1", "card", 100, "india", NULL);
	loop_turn(w.l, now);
	loop_flush(w.l, now);
	CHECK_EQ(sent_count(w.bus, "inventory.reserve", NULL), 1);
	at = first_timer(&w);
	w.bus->hold_confirms = false;
	loop_turn(w.l, now + 2500); /* confirmed now */
	loop_flush(w.l, now + 2500);
	CHECK_EQ(count(&w, "SELECT count(*) FROM outbox"), 0);
	CHECK_EQ(first_timer(&w), at + 2500);
	/* confirmed in time: the timer stays */
	w.bus->hold_confirms = true;
	run(&w, happy, now + 2600, 1);
	at = first_timer(&w);
	w.bus->hold_confirms = false;
	run(&w, silent_payment, now + 2700, 1);
	CHECK_EQ(first_timer(&w), at);
	world_free(&w);
}

static void
test_full_disk_acks_nothing(void)
{
	struct world w;
	int64_t pages;
	CHECK(world_init(&w) == 0);
	pages = count(&w, "PRAGMA page_count");
	CHECK(store_set_max_pages(w.st, pages) == 0);
	for (int i = 0; i < 30; i++) {
		char id[32];
		snprintf(id, sizeof(id), "full-%d", i);
		push_order(w.bus, id, "card", 100, "india", NULL);
	}
	run(&w, happy, clock_wall_ms(), 3);
	CHECK_EQ(w.bus->nacked, 0);
	CHECK_EQ(w.bus->nrejected, 0);
	CHECK(!loop_healthy(w.l, NULL));
	CHECK_EQ(count(&w, "SELECT count(*) FROM sagas"), 0);
	/* room again: the same batch goes through (after the backoff) */
	CHECK(store_set_max_pages(w.st, 0) == 0);
	run(&w, happy, clock_wall_ms() + 10000, 12);
	CHECK(loop_healthy(w.l, NULL));
	CHECK_EQ(count(&w, "SELECT count(*) FROM sagas WHERE status = "
	                   "'completed'"),
	         30);
	world_free(&w);
}

static void
test_crash_republishes_outbox(void)
{
	struct world w;
	size_t before;
	CHECK(world_init(&w) == 0);
	w.bus->fail_publish = true; /* commits happen, nothing goes out */
	push_order(w.bus, "crash-1", "card", 100, "india", NULL);
	loop_turn(w.l, clock_wall_ms());
	loop_flush(w.l, clock_wall_ms());
	CHECK_EQ(count(&w, "SELECT count(*) FROM outbox"), 1);
	/* "crash": drop everything without draining, start again */
	world_close(&w);
	w.bus->fail_publish = false;
	CHECK(world_open(&w) == 0);
	before = w.bus->nsent;
	loop_turn(w.l, clock_wall_ms());
	CHECK_EQ(w.bus->nsent - before, 1); /* the inventory.reserve */
	/* the order.created is redelivered after the crash: dropped */
	push_order(w.bus, "crash-1", "card", 100, "india", "evt-crash");
	run(&w, happy, clock_wall_ms(), 10);
	CHECK_STR(status_of(&w, "crash-1"), "completed");
	CHECK_EQ(count(&w, "SELECT count(*) FROM sagas"), 1);
	world_free(&w);
}

/* A thread acting as the console: two requests, then the answer. */
struct asker {
	struct loop *l;
	struct loop_op ops[2];
	size_t n;
	int timeout_ms, rc;
	char err[300];
	atomic_bool done;
};

static void *
ask(void *arg)
{
	struct asker *a = arg;
	a->rc = loop_operate(a->l, a->ops, a->n, a->timeout_ms, a->err,
	                     sizeof(a->err));
	atomic_store(&a->done, true);
	return NULL;
}

/* Turns the loop until the asker has its answer (at most 10 s, longer
 * than its wait: a count of turns would run out before a busy machine
 * even starts the asker's thread). */
static void
serve(struct world *w, struct asker *a)
{
	int64_t until = clock_mono_ms() + 10000;
	while (!atomic_load(&a->done) && clock_mono_ms() < until)
		loop_turn(w->l, clock_wall_ms());
}

static void
test_mailbox(void)
{
	struct world w;
	struct asker a = {.n = 2, .timeout_ms = 5000};
	pthread_t t;

	CHECK(world_init(&w) == 0);
	push_order(w.bus, "mb-1", "card", 100, "india", NULL);
	run(&w, nobody, clock_wall_ms(), 2);
	CHECK_STR(status_of(&w, "mb-1"), "running");
	a.l = w.l;
	a.ops[0] = (struct loop_op){.message_id = "console-1",
	                            .saga_id = "mb-1",
	                            .type = "operator.abort",
	                            .reason = "test abort",
	                            .actor = "alice"};
	a.ops[1] = (struct loop_op){.message_id = "console-2",
	                            .saga_id = "mb-1",
	                            .type = "operator.resume",
	                            .reason = "too late",
	                            .actor = "alice"};
	/* nobody turns the loop: withdrawn, nothing applied */
	a.timeout_ms = 50;
	CHECK_EQ(loop_operate(w.l, a.ops, 2, 50, a.err, sizeof(a.err)), -2);
	CHECK_EQ(count(&w, "SELECT count(*) FROM history WHERE kind = "
	                   "'operator'"),
	         0);
	a.timeout_ms = 5000;
	CHECK(pthread_create(&t, NULL, ask, &a) == 0);
	serve(&w, &a);
	pthread_join(t, NULL);
	CHECK_EQ(a.rc, 0);
	CHECK_EQ(a.ops[0].answer.outcome, ORCH_APPLIED);
	CHECK_STR(a.ops[0].answer.status, "aborted");
	CHECK_EQ(a.ops[1].answer.outcome, ORCH_REJECTED);
	CHECK_STR(status_of(&w, "mb-1"), "aborted");
	CHECK_EQ(count(&w, "SELECT count(*) FROM history WHERE kind = "
	                   "'operator' AND actor = 'alice' AND reason = "
	                   "'test abort'"),
	         1);
	/* the same request id again: answered as a repeat */
	atomic_store(&a.done, false);
	a.n = 1;
	CHECK(pthread_create(&t, NULL, ask, &a) == 0);
	serve(&w, &a);
	pthread_join(t, NULL);
	CHECK_EQ(a.rc, 0);
	CHECK_EQ(a.ops[0].answer.outcome, ORCH_REPEATED);
	world_free(&w);
}

int
main(void)
{
	log_init("test", getenv("TEST_DEBUG") ? LOG_INFO : LOG_WARN);
	RUN(test_paths);
	RUN(test_refused_row_dropped);
	RUN(test_duplicates_and_garbage);
	RUN(test_cancel_on_orders_queue);
	RUN(test_operator_requests);
	RUN(test_more_than_a_batch_at_once);
	RUN(test_inbox_pruned_after_retention);
	RUN(test_timeouts_retry);
	RUN(test_idle_turn_sleeps_until_due);
	RUN(test_timers_held_while_down);
	RUN(test_timeout_from_confirm);
	RUN(test_full_disk_acks_nothing);
	RUN(test_crash_republishes_outbox);
	RUN(test_mailbox);
	return check_summary();
}

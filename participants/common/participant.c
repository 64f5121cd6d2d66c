/* participant.c -- a participant's handler on the durable loop
 * (participant.h is its manual; lib/durable.h the loop's).
 *
 * Each command is applied in its own savepoint inside the batch's
 * transaction: dedup through part_processed (a copy seen before writes its
 * stored reply to the outbox again), a late original refused through
 * part_compensated, then the daemon's handler; its changes, the
 * processed row and the reply's outbox row are released together, or the
 * savepoint is rolled back when the handler asks for a retry or refuses.
 * The broker is part_bus.c's: this file never talks to it.
 */
#include "clock.h"
#include "participant.h"
#include "part_bus.h"
#include "part_metrics.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"
#include "http.h"
#include "log.h"

#define REPLIES_EXCHANGE "saga.replies"

_Static_assert(PART_PRUNE_EVERY_MS == DURABLE_PRUNE_EVERY_MS,
               "participant.h promises the loop's pruning interval");

/* The framework's own tables, next to the daemon's (which are versioned
 * by PRAGMA user_version through cfg->migrations). Their columns never
 * change: a new need gets a new table, or an index created IF NOT EXISTS
 * (the ones by `at` that pruning reads: a database from before them gets
 * them at its next start, once, before the daemon consumes). The outbox's
 * seq never goes back (AUTOINCREMENT): the loop publishes by seq. */

/* The handled message's sender (part_sender): the loop is one thread. */
static const char *sender = "";

const char *
part_sender(void)
{
	return sender != NULL ? sender : "";
}

static const char framework_sql[] =
        "CREATE TABLE IF NOT EXISTS part_processed ("
        "  message_id  TEXT PRIMARY KEY,"
        "  saga_id     TEXT NOT NULL,"
        "  type        TEXT NOT NULL,"
        "  reply_id    TEXT,"
        "  reply_type  TEXT,"
        "  exchange    TEXT,"
        "  routing_key TEXT,"
        "  expiration  INTEGER NOT NULL DEFAULT 0,"
        "  body        BLOB,"
        "  at          INTEGER NOT NULL"
        ") STRICT, WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS part_compensated ("
        "  saga_id TEXT NOT NULL,"
        "  command TEXT NOT NULL,"
        "  at      INTEGER NOT NULL,"
        "  PRIMARY KEY (saga_id, command)"
        ") STRICT, WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS part_outbox ("
        "  seq         INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  exchange    TEXT NOT NULL,"
        "  routing_key TEXT NOT NULL,"
        "  message_id  TEXT NOT NULL,"
        "  saga_id     TEXT NOT NULL,"
        "  type        TEXT NOT NULL,"
        "  traceparent TEXT NOT NULL,"
        "  expiration  INTEGER NOT NULL,"
        "  bundle      INTEGER NOT NULL,"
        "  body        BLOB,"
        "  at          INTEGER NOT NULL"
        ") STRICT;"
        "CREATE TABLE IF NOT EXISTS part_stream ("
        "  queue       TEXT PRIMARY KEY,"
        "  next_offset INTEGER NOT NULL,"
        "  at          INTEGER NOT NULL"
        ") STRICT, WITHOUT ROWID;"
        "CREATE INDEX IF NOT EXISTS part_processed_by_at"
        "  ON part_processed(at);"
        "CREATE INDEX IF NOT EXISTS part_compensated_by_at"
        "  ON part_compensated(at);";

/* A reply as stored in part_processed and written to the outbox. */
struct stored {
	char id[ENVELOPE_ID_MAX], type[ENVELOPE_TYPE_MAX];
	char exchange[128], rk[256];
	int64_t expiration;
	void *body;
	size_t len;
};

struct part {
	const struct part_config *cfg;
	struct part_config c; /* cfg, with its defaults filled in */
	sqlite3 *db;
	struct db_wal wal; /* checkpoints after the commit's replies are out */
	struct durable *d;
	sqlite3_stmt *find, *record, *late, *compensated, *outbox_add;
	sqlite3_stmt *outbox_scan, *outbox_delete;
	sqlite3_stmt *sp_save, *sp_release, *sp_rollback;
	sqlite3_stmt *prune_processed, *prune_compensated;
	sqlite3_stmt *stream_save;
	int64_t stream_next;    /* committed (-1: none yet) */
	int64_t stream_pending; /* written by this transaction, -1: none */
	struct part_stats stats;
	struct part_metrics *pm;
	enum part_outcome outcome; /* of the delivery being applied */
	int max_attempts;
	int64_t retention_ms; /* 0: forever */
	char err[512];        /* why the last handler call failed */
};

/* ---- helpers for handlers ---- */

const char *
part_str(const struct value *map, const char *path)
{
	const struct value *v = value_path_get(map, path);
	return v != NULL && v->type == VALUE_STR ? v->u.s.ptr : "";
}

bool
part_int(const struct value *map, const char *path, int64_t *out)
{
	const struct value *v = value_path_get(map, path);
	if (v == NULL || v->type != VALUE_INT)
		return false;
	*out = v->u.i;
	return true;
}

/* The statements handlers run, prepared once per database and kept:
 * preparing costs more than running a one-row statement. Keyed by the
 * SQL's address (handlers pass literals) and checked by its text. */
#define STMT_CACHE 64
static struct {
	sqlite3 *db;
	const char *sql;
	sqlite3_stmt *st;
} stmt_cache[STMT_CACHE];

sqlite3_stmt *
part_prepared(sqlite3 *db, const char *sql)
{
	size_t i, slot = STMT_CACHE;

	for (i = 0; i < STMT_CACHE; i++) {
		if (stmt_cache[i].st == NULL) {
			if (slot == STMT_CACHE)
				slot = i;
			continue;
		}
		if (stmt_cache[i].db == db && stmt_cache[i].sql == sql &&
		    strcmp(sqlite3_sql(stmt_cache[i].st), sql) == 0) {
			sqlite3_reset(stmt_cache[i].st);
			sqlite3_clear_bindings(stmt_cache[i].st);
			return stmt_cache[i].st;
		}
	}
	if (slot == STMT_CACHE) { /* full: the first entry makes room */
		sqlite3_finalize(stmt_cache[0].st);
		stmt_cache[0].st = NULL;
		slot = 0;
	}
	if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT,
	                       &stmt_cache[slot].st, NULL) != SQLITE_OK) {
		log_error("sql: %s: %s", sqlite3_errmsg(db), sql);
		sqlite3_finalize(stmt_cache[slot].st);
		stmt_cache[slot].st = NULL;
		return NULL;
	}
	stmt_cache[slot].db = db;
	stmt_cache[slot].sql = sql;
	return stmt_cache[slot].st;
}

void
part_prepared_release(sqlite3 *db)
{
	for (size_t i = 0; i < STMT_CACHE; i++)
		if (stmt_cache[i].st != NULL && stmt_cache[i].db == db) {
			sqlite3_finalize(stmt_cache[i].st);
			stmt_cache[i].st = NULL;
		}
}

int
part_sql(sqlite3 *db, const char *sql, const char *sig, int64_t *out, ...)
{
	sqlite3_stmt *st = part_prepared(db, sql);
	va_list ap;
	int rc, i = 1, ret = -1;

	if (st == NULL)
		return -1;
	va_start(ap, out);
	for (const char *p = sig; *p != '\0'; p++, i++) {
		if (*p == 't')
			rc = sqlite3_bind_text(st, i, va_arg(ap, const char *),
			                       -1, SQLITE_TRANSIENT);
		else
			rc = sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
		if (rc != SQLITE_OK)
			goto out;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		if (out != NULL)
			*out = sqlite3_column_int64(st, 0);
		ret = 1;
	} else if (rc == SQLITE_DONE) {
		ret = 0;
	}
out:
	va_end(ap);
	if (ret < 0)
		log_error("sql: %s: %s", sqlite3_errmsg(db), sql);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return ret;
}

int
part_main(const char *prog, const struct part_common *c,
          struct part_config *cfg)
{
	static volatile sig_atomic_t stop;
	char err[512];

	if (part_common_check(c, prog) != 0)
		return 2;
	log_init(prog, (enum log_level)c->log_level);
	part_signals(&stop);
	cfg->url = c->amqp;
	cfg->db_path = c->db;
	cfg->http = c->http;
	if (c->processed_days == 0)
		cfg->retention_ms = PART_KEEP_FOREVER;
	else if (c->processed_days > 0)
		cfg->retention_ms = c->processed_days * PART_DAY_MS;
	if (part_run(cfg, &stop, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return 1;
	}
	return 0;
}

int
part_print(const char *prog, const char *db_path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	char err[512];
	int rc, n;

	if (db_path == NULL) {
		fprintf(stderr, "%s: --db PATH is required\n", prog);
		return 2;
	}
	if (db_open(db_path, DB_READONLY, &db, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return 1;
	}
	if (db_prepare(db, &st, sql, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: %s\n", prog, err);
		db_close(db);
		return 1;
	}
	n = sqlite3_column_count(st);
	for (int i = 0; i < n; i++)
		printf(i + 1 < n ? "%-20s " : "%s\n",
		       sqlite3_column_name(st, i));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		for (int i = 0; i < n; i++) {
			const unsigned char *t = sqlite3_column_text(st, i);
			printf(i + 1 < n ? "%-20s " : "%s\n",
			       t != NULL ? (const char *)t : "");
		}
	if (rc != SQLITE_DONE)
		fprintf(stderr, "%s: %s\n", prog, sqlite3_errmsg(db));
	sqlite3_finalize(st);
	db_close(db);
	return rc == SQLITE_DONE ? 0 : 1;
}

static volatile sig_atomic_t *stop_flag;

static void
on_signal(int sig)
{
	(void)sig;
	if (stop_flag != NULL)
		*stop_flag = 1;
}

void
part_signals(volatile sig_atomic_t *stop)
{
	struct sigaction sa;

	stop_flag = stop;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (heap_keep_top() != 0)
		log_debug("malloc's trim threshold not set (not glibc's "
		          "allocator): it trims as before");
}

/* ---- the transaction ---- */

static int
sql_fail(struct part *p, const char *what)
{
	snprintf(p->err, sizeof(p->err), "%s: %s", what, sqlite3_errmsg(p->db));
	return -1;
}

/* Runs one of the prepared savepoint statements. */
static int
sp_step(struct part *p, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : sql_fail(p, sqlite3_sql(st));
}

/* A delivery's savepoint is undone: nothing it did stays. */
static int
sp_undo(struct part *p)
{
	if (sp_step(p, p->sp_rollback) != 0 || sp_step(p, p->sp_release) != 0)
		return -1;
	return 0;
}

static int
h_begin(void *ctx)
{
	struct part *p = ctx;
	return db_begin(p->db, p->err, sizeof(p->err));
}

/* The batch's outcomes count once COMMIT returns (part_metrics.h). */
static int
h_commit(void *ctx)
{
	struct part *p = ctx;
	int64_t t0 = clock_mono_us();

	if (db_commit(p->db, p->err, sizeof(p->err)) != 0)
		return -1;
	if (p->stream_pending >= 0)
		p->stream_next = p->stream_pending;
	p->stream_pending = -1;
	part_metrics_committed(p->pm, (double)(clock_mono_us() - t0) / 1e6);
	return 0;
}

static void
h_rollback(void *ctx)
{
	struct part *p = ctx;
	db_rollback(p->db);
	p->stream_pending = -1;
	part_metrics_rolled_back(p->pm);
}

static const char *
h_error(void *ctx)
{
	const struct part *p = ctx;
	return p->err;
}

/* Once the batch's replies and events are out. */
static void
h_after(void *ctx)
{
	struct part *p = ctx;
	char err[512];

	if (db_wal_checkpoint(p->db, &p->wal, err, sizeof(err)) != 0)
		log_warnx("%s", err);
}

static void
text_col(sqlite3_stmt *st, int i, char *buf, size_t cap)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	snprintf(buf, cap, "%s", t != NULL ? (const char *)t : "");
}

/* 1 found (s filled, s->body malloc'd), 0 not found, -1 error. */
static int
find_processed(struct part *p, const char *id, struct stored *s)
{
	int rc, ret = -1;

	memset(s, 0, sizeof(*s));
	if (sqlite3_bind_text(p->find, 1, id, -1, SQLITE_STATIC) != SQLITE_OK)
		return sql_fail(p, "part_processed");
	rc = sqlite3_step(p->find);
	if (rc == SQLITE_DONE) {
		ret = 0;
	} else if (rc == SQLITE_ROW) {
		const void *b = sqlite3_column_blob(p->find, 5);
		int n = sqlite3_column_bytes(p->find, 5);
		text_col(p->find, 0, s->id, sizeof(s->id));
		text_col(p->find, 1, s->type, sizeof(s->type));
		text_col(p->find, 2, s->exchange, sizeof(s->exchange));
		text_col(p->find, 3, s->rk, sizeof(s->rk));
		s->expiration = sqlite3_column_int64(p->find, 4);
		ret = 1;
		if (n > 0 && (s->body = malloc((size_t)n)) == NULL)
			ret = -1;
		else if (n > 0)
			memcpy(s->body, b, (size_t)n);
		s->len = (size_t)n;
	}
	if (ret < 0)
		sql_fail(p, "cannot read part_processed");
	sqlite3_reset(p->find);
	sqlite3_clear_bindings(p->find);
	return ret;
}

/* Binds sig's values to st from 1 on ('t' text, 'i' int64, 'b' a blob
 * as two arguments, pointer and size_t, NULL when empty), steps it once,
 * resets it. 0 on SQLITE_DONE, -1 otherwise (the reason in p->err). */
static int
run_stmt(struct part *p, sqlite3_stmt *st, const char *sig, ...)
{
	va_list ap;
	int rc = SQLITE_OK, i = 1;

	va_start(ap, sig);
	for (const char *c = sig; *c != '\0' && rc == SQLITE_OK; c++, i++) {
		if (*c == 't') {
			rc = sqlite3_bind_text(st, i, va_arg(ap, const char *),
			                       -1, SQLITE_STATIC);
		} else if (*c == 'i') {
			rc = sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
		} else {
			const void *b = va_arg(ap, const void *);
			size_t n = va_arg(ap, size_t);
			assert(n <= INT32_MAX);
			rc = n > 0 ? sqlite3_bind_blob(st, i, b, (int)n,
			                               SQLITE_STATIC)
			           : sqlite3_bind_null(st, i);
		}
	}
	va_end(ap);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		sql_fail(p, sqlite3_sql(st));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int
record_processed(struct part *p, const struct envelope *in,
                 const struct stored *s, int64_t now_ms)
{
	return run_stmt(p, p->record, "tttttttibi", in->id, in->saga, in->type,
	                s->id, s->type, s->exchange, s->rk, s->expiration,
	                s->body, s->len, now_ms);
}

/* The reply goes out after the commit: a row of part_outbox. A reply to
 * a bundled command may travel in a bundle (its sender reads them) unless
 * it has a TTL. Nothing to send (type ""): no row. */
static int
outbox_add(struct part *p, const struct durable_item *it,
           const struct stored *s, int64_t now_ms)
{
	int64_t bundle = it->bundled && s->expiration == 0;

	if (s->type[0] == '\0')
		return 0;
	return run_stmt(p, p->outbox_add, "ttttttiibi", s->exchange, s->rk,
	                s->id, it->env->saga, s->type, it->traceparent,
	                s->expiration, bundle, s->body, s->len, now_ms);
}

/* 1 if (saga, command) was compensated, 0 if not, -1 error. */
static int
was_compensated(struct part *p, const char *saga, const char *command)
{
	int rc = SQLITE_MISUSE;

	if (sqlite3_bind_text(p->late, 1, saga, -1, SQLITE_STATIC) ==
	            SQLITE_OK &&
	    sqlite3_bind_text(p->late, 2, command, -1, SQLITE_STATIC) ==
	            SQLITE_OK)
		rc = sqlite3_step(p->late);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		sql_fail(p, "cannot read part_compensated");
	sqlite3_reset(p->late);
	sqlite3_clear_bindings(p->late);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static const struct part_command *
find_command(const struct part_config *cfg, const char *type)
{
	const struct part_command *any = NULL;

	for (size_t i = 0; i < cfg->ncommands; i++) {
		if (cfg->commands[i].type == NULL)
			any = &cfg->commands[i];
		else if (strcmp(cfg->commands[i].type, type) == 0)
			return &cfg->commands[i];
	}
	return any;
}

/* Turns the handler's reply into what is stored and sent. */
static int
seal_reply(struct part *p, const struct durable_item *it, struct part_reply *r,
           struct stored *s, int64_t now_ms)
{
	const struct envelope *in = it->env;
	struct envelope e;
	char *body = NULL;
	size_t len = 0;

	memset(s, 0, sizeof(*s));
	if (r->type[0] == '\0')
		return 0;
	envelope_init(&e);
	if (r->id[0] != '\0')
		snprintf(e.id, sizeof(e.id), "%s", r->id);
	else
		envelope_new_id(e.id, sizeof(e.id), p->cfg->name);
	snprintf(e.saga, sizeof(e.saga), "%s", in->saga);
	snprintf(e.type, sizeof(e.type), "%s", r->type);
	snprintf(e.step, sizeof(e.step), "%s", in->step);
	snprintf(e.re, sizeof(e.re), "%s", in->id);
	e.attempt = in->attempt;
	e.ts = now_ms;
	value_clear(&e.payload);
	e.payload = r->payload; /* lent for the encoding */
	if (envelope_encode(&e, &body, &len) != 0) {
		value_set_map(&e.payload);
		envelope_clear(&e);
		return -1;
	}
	value_set_map(&e.payload);
	snprintf(s->id, sizeof(s->id), "%s", e.id);
	snprintf(s->type, sizeof(s->type), "%s", r->type);
	/* a routing key without an exchange: the default exchange */
	snprintf(s->exchange, sizeof(s->exchange), "%s",
	         r->exchange[0] || r->routing_key[0] ? r->exchange
	                                             : REPLIES_EXCHANGE);
	snprintf(s->rk, sizeof(s->rk), "%s",
	         r->routing_key[0] ? r->routing_key
	         : it->reply_to[0] ? it->reply_to
	                           : "orchestrator");
	s->expiration = r->expiration_ms;
	s->body = body;
	s->len = len;
	envelope_clear(&e);
	return 0;
}

/* A handler's RETRY: round the retry path, or the DLQ past the
 * attempts. */
static void
retry_or_reject(struct part *p, const struct durable_item *it, const char *why,
                enum durable_verdict *v, char *out, size_t outlen)
{
	if (it->attempt >= p->max_attempts) {
		*v = DURABLE_REJECT;
		snprintf(out, outlen, "failed %d times: %s", it->attempt, why);
		return;
	}
	*v = DURABLE_RETRY;
	log_warnx("saga=%s %s attempt %d failed, retrying: %s", it->env->saga,
	          it->env->type, it->attempt, why);
	if (out != why)
		snprintf(out, outlen, "%s", why);
}

/* The command's handler (or the refusal of a late original), its reply
 * sealed into *s. -1 on an SQLite error of the framework's. */
static int
run_command(struct part *p, const struct part_command *cmd,
            const struct durable_item *it, int64_t now_ms, struct stored *s,
            enum durable_verdict *v, char *why, size_t whylen)
{
	const struct envelope *in = it->env;
	struct part_reply r;
	char hwhy[512] = "";
	enum part_verdict pv = PART_DONE;
	int rc = cmd->refusal != NULL ? was_compensated(p, in->saga, in->type)
	                              : 0;

	if (rc < 0)
		return -1;
	memset(&r, 0, sizeof(r));
	value_set_map(&r.payload);
	if (rc == 1) {
		p->stats.refused_late++;
		p->outcome = PART_OUT_REFUSED;
		snprintf(r.type, sizeof(r.type), "%s", cmd->refusal);
		value_map_put_str(&r.payload, "reason",
		                  "already compensated: refused");
		log_warnx("saga=%s %s arrived after its compensation: "
		          "answering %s",
		          in->saga, in->type, cmd->refusal);
	} else {
		sender = it->user_id;
		pv = cmd->fn(p->cfg->arg, p->db, in, it->attempt, &r, hwhy,
		             sizeof(hwhy));
		sender = "";
	}
	if (pv == PART_RETRY) {
		retry_or_reject(p, it, hwhy[0] ? hwhy : "transient failure", v,
		                why, whylen);
	} else if (pv == PART_REFUSE) {
		*v = DURABLE_REJECT;
		snprintf(why, whylen, "%s", hwhy[0] ? hwhy : "refused");
	} else if (seal_reply(p, it, &r, s, now_ms) != 0) {
		*v = DURABLE_REJECT;
		snprintf(why, whylen, "cannot encode the reply");
	}
	value_clear(&r.payload);
	return 0;
}

/* A command done: its compensation mark, its processed row and its
 * reply's outbox row. */
static int
keep_command(struct part *p, const struct part_command *cmd,
             const struct durable_item *it, const struct stored *s,
             int64_t now_ms)
{
	const struct envelope *in = it->env;

	if (cmd->undoes != NULL && run_stmt(p, p->compensated, "tti", in->saga,
	                                    cmd->undoes, now_ms) != 0)
		return -1;
	if (record_processed(p, in, s, now_ms) != 0 ||
	    outbox_add(p, it, s, now_ms) != 0)
		return -1;
	p->stats.handled++;
	log_info("saga=%s step=%s %s -> %s", in->saga, in->step, in->type,
	         s->type[0] ? s->type : "(no reply)");
	return 0;
}

/* A copy seen before: its stored reply goes out again, nothing else. */
static int
replay(struct part *p, const struct durable_item *it, const struct stored *s,
       int64_t now_ms)
{
	p->stats.replayed++;
	p->outcome = PART_OUT_DUPLICATE;
	log_info("saga=%s %s %s seen before: reply %s sent again",
	         it->env->saga, it->env->type, it->env->id,
	         s->type[0] ? s->type : "none");
	return outbox_add(p, it, s, now_ms);
}

/* One command, in its own savepoint. On -1 the loop rolls the whole
 * transaction back, savepoint and all. */
static int
apply_one(struct part *p, const struct durable_item *it,
          struct durable_time now, enum durable_verdict *v, char *why,
          size_t whylen)
{
	const struct part_command *cmd = find_command(p->cfg, it->env->type);
	struct stored s;
	int rc;

	memset(&s, 0, sizeof(s));
	if (cmd == NULL) {
		*v = DURABLE_REJECT;
		snprintf(why, whylen, "unknown message type %s", it->env->type);
		return 0;
	}
	if (sp_step(p, p->sp_save) != 0)
		return -1;
	rc = find_processed(p, it->env->id, &s);
	if (rc == 1) {
		rc = replay(p, it, &s, now.wall_ms);
	} else if (rc == 0) {
		rc = run_command(p, cmd, it, now.wall_ms, &s, v, why, whylen);
		if (rc == 0 && *v != DURABLE_DONE) {
			rc = sp_undo(p);
			goto out;
		}
		if (rc == 0)
			rc = keep_command(p, cmd, it, &s, now.wall_ms);
	}
	if (rc == 0)
		rc = sp_step(p, p->sp_release);
out:
	free(s.body);
	return rc;
}

/* The handler's apply (durable.h): one command under its trace id, its
 * outcome and time noted for /metrics. */
static int
h_apply(void *ctx, const struct durable_item *it, struct durable_time now,
        enum durable_verdict *v, char *why, size_t whylen)
{
	struct part *p = ctx;
	int64_t t0 = clock_mono_us();
	int rc;

	log_set_trace(it->traceparent);
	p->outcome = PART_OUT_OK;
	rc = apply_one(p, it, now, v, why, whylen);
	if (*v == DURABLE_RETRY)
		p->outcome = PART_OUT_RETRIED;
	else if (*v == DURABLE_REJECT)
		p->outcome = PART_OUT_DEAD_LETTERED;
	if (rc == 0)
		part_metrics_note(p->pm, it->env->type, p->outcome,
		                  (double)(clock_mono_us() - t0) / 1e6);
	log_set_trace(NULL);
	return rc;
}

/* ---- the stream's position and the daemon's timers ---- */

static int
h_position(void *ctx, int64_t next)
{
	struct part *p = ctx;

	assert(p->cfg->stream != NULL && next >= 0);
	if (run_stmt(p, p->stream_save, "tii", p->cfg->stream, next,
	             clock_wall_ms()) != 0)
		return -1;
	p->stream_pending = next;
	return 0;
}

static int
h_timer_next(void *ctx, int64_t *at_ms, bool *found)
{
	struct part *p = ctx;
	int rc = p->cfg->timer_next(p->cfg->arg, p->db, at_ms, found);
	if (rc != 0)
		sql_fail(p, "timers");
	return rc;
}

static int
h_fire(void *ctx, struct durable_time now, size_t max)
{
	struct part *p = ctx;
	int rc = p->cfg->fire(p->cfg->arg, p->db, now.wall_ms, max);
	if (rc != 0)
		sql_fail(p, "firing timers");
	return rc;
}

/* The stored position of the stream (-1 if none). */
static int
load_stream_next(struct part *p, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int rc;

	p->stream_next = p->stream_pending = -1;
	if (p->cfg->stream == NULL)
		return 0;
	if (db_prepare(p->db, &st,
	               "SELECT next_offset FROM part_stream WHERE queue = ?1",
	               err, errlen) != 0)
		return -1;
	sqlite3_bind_text(st, 1, p->cfg->stream, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		p->stream_next = sqlite3_column_int64(st, 0);
	else if (rc != SQLITE_DONE)
		snprintf(err, errlen, "reading part_stream: %s",
		         sqlite3_errmsg(p->db));
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

int64_t
part_stream_next(const struct part *p)
{
	return p->stream_next;
}

/* ---- pruning (participant.h, "Bounded storage") ---- */

/* Deletes up to max rows of st's table older than before_ms, oldest
 * first; *n gets the count. */
static int
prune_table(struct part *p, sqlite3_stmt *st, int64_t before_ms, size_t max,
            int64_t *n)
{
	*n = 0;
	if (run_stmt(p, st, "ii", before_ms, (int64_t)max) != 0)
		return -1;
	*n = sqlite3_changes(p->db);
	return 0;
}

/* A share of the pruning: processed ids older than before_ms, then with
 * what room is left compensations PART_COMPENSATED_FACTOR times older. */
static int
h_prune(void *ctx, int64_t before_ms, size_t max, int64_t *pruned)
{
	struct part *p = ctx;
	int64_t a = 0, b = 0;
	int64_t comp = before_ms + p->retention_ms -
	               p->retention_ms * PART_COMPENSATED_FACTOR;

	*pruned = 0;
	if (prune_table(p, p->prune_processed, before_ms, max, &a) != 0)
		return -1;
	if ((size_t)a < max &&
	    prune_table(p, p->prune_compensated, comp, max - (size_t)a, &b))
		return -1;
	*pruned = a + b;
	return 0;
}

/* ---- the outbox ---- */

static const char *
col_text(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return t != NULL ? (const char *)t : "";
}

static int
h_outbox_scan(void *ctx, int64_t after_seq, size_t limit, durable_row_fn fn,
              void *arg)
{
	struct part *p = ctx;
	sqlite3_stmt *st = p->outbox_scan;
	int rc = SQLITE_MISUSE;

	if (sqlite3_bind_int64(st, 1, after_seq) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 2, (int64_t)limit) == SQLITE_OK)
		rc = sqlite3_step(st);
	while (rc == SQLITE_ROW) {
		const char *tp = col_text(st, 6);
		struct durable_msg m = {
		        .seq = sqlite3_column_int64(st, 0),
		        .exchange = col_text(st, 1),
		        .routing_key = col_text(st, 2),
		        .message_id = col_text(st, 3),
		        .correlation_id = col_text(st, 4),
		        .type = col_text(st, 5),
		        .traceparent = tp[0] ? tp : NULL,
		        .expiration_ms = sqlite3_column_int64(st, 7),
		        .bundle = sqlite3_column_int64(st, 8) != 0,
		        .body = sqlite3_column_blob(st, 9),
		        .len = (size_t)sqlite3_column_bytes(st, 9),
		        .created_ms = sqlite3_column_int64(st, 10),
		};
		if (fn(arg, &m) != 0) {
			rc = SQLITE_DONE;
			break;
		}
		rc = sqlite3_step(st);
	}
	if (rc != SQLITE_DONE)
		sql_fail(p, "cannot read part_outbox");
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int
h_outbox_delete(void *ctx, int64_t seq, int64_t confirmed_ms)
{
	struct part *p = ctx;
	(void)confirmed_ms;
	return run_stmt(p, p->outbox_delete, "i", seq);
}

/* ---- set-up ---- */

/* The retention in force (0: forever), or -1 with the reason: shorter
 * than the retry path can still hand a copy back, or out of range. */
static int
retention_of(const struct part_config *cfg, int max_attempts, int64_t *out,
             char *err, size_t errlen)
{
	int64_t r = cfg->retention_ms;
	int64_t retry = cfg->retry_ms > 0 ? cfg->retry_ms : PART_RETRY_MS;

	*out = 0;
	if (r == PART_KEEP_FOREVER)
		return 0;
	if (r == 0)
		r = PART_RETENTION_MS;
	if (r < 0 || r > PART_RETENTION_MAX_MS) {
		snprintf(err, errlen,
		         "retention %lld ms is not 1 to %lld ms (or forever)",
		         (long long)r, (long long)PART_RETENTION_MAX_MS);
		return -1;
	}
	if (r / max_attempts < retry) {
		snprintf(
		        err, errlen,
		        "retention %lld ms is shorter than the retry queue can "
		        "still redeliver a message (%d attempts x %lld ms)",
		        (long long)r, max_attempts, (long long)retry);
		return -1;
	}
	*out = r;
	return 0;
}

/* The framework's statements, prepared once. */
static int
prepare_all(struct part *p, char *err, size_t errlen)
{
	const struct {
		sqlite3_stmt **st;
		const char *sql;
	} t[] = {
	        {&p->find,
	         "SELECT reply_id, reply_type, exchange, routing_key, "
	         "expiration, body FROM part_processed "
	         "WHERE message_id = ?1"},
	        {&p->record, "INSERT INTO part_processed(message_id, saga_id, "
	                     "type, reply_id, reply_type, exchange, "
	                     "routing_key, expiration, body, at) "
	                     "VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)"},
	        {&p->late, "SELECT 1 FROM part_compensated "
	                   "WHERE saga_id = ?1 AND command = ?2"},
	        {&p->compensated, "INSERT OR IGNORE INTO part_compensated"
	                          "(saga_id, command, at) VALUES (?1, ?2, ?3)"},
	        {&p->outbox_add,
	         "INSERT INTO part_outbox(exchange, routing_key, message_id, "
	         "saga_id, type, traceparent, expiration, bundle, body, at) "
	         "VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)"},
	        {&p->outbox_scan,
	         "SELECT seq, exchange, routing_key, message_id, saga_id, "
	         "type, traceparent, expiration, bundle, body, at "
	         "FROM part_outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2"},
	        {&p->outbox_delete, "DELETE FROM part_outbox WHERE seq = ?1"},
	        {&p->prune_processed,
	         "DELETE FROM part_processed WHERE message_id IN (SELECT "
	         "message_id FROM part_processed WHERE at < ?1 ORDER BY at "
	         "LIMIT ?2)"},
	        {&p->prune_compensated,
	         "DELETE FROM part_compensated WHERE (saga_id, command) IN "
	         "(SELECT saga_id, command FROM part_compensated WHERE at < ?1 "
	         "ORDER BY at LIMIT ?2)"},
	        {&p->stream_save,
	         "INSERT INTO part_stream(queue, next_offset, at) "
	         "VALUES (?1, ?2, ?3) ON CONFLICT(queue) DO UPDATE SET "
	         "next_offset = excluded.next_offset, at = excluded.at"},
	        {&p->sp_save, "SAVEPOINT msg"},
	        {&p->sp_release, "RELEASE msg"},
	        {&p->sp_rollback, "ROLLBACK TO msg"},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (db_prepare(p->db, t[i].st, t[i].sql, err, errlen) != 0)
			return -1;
	return 0;
}

/* temp_store=MEMORY: each delivery runs under a savepoint, whose journal
 * (the old contents of the pages it changes) SQLite otherwise writes to a
 * temp file in /var/tmp once it passes 64 KiB, and from then on, for
 * every later savepoint of the transaction, two writes a page:
 * notification-svc, a batch of events a transaction, made 28 syscalls a
 * saga at 450 sagas/s, against 5 with the journal in memory. A savepoint
 * covers one delivery, so the memory is a few pages; a participant runs
 * no query that sorts or groups much. */
static int
open_db(struct part *p, char *err, size_t errlen)
{
	const struct part_config *cfg = p->cfg;

	if (db_open(cfg->db_path, DB_READWRITE, &p->db, err, errlen) != 0 ||
	    db_exec(p->db, "PRAGMA temp_store=MEMORY;", err, errlen) != 0 ||
	    db_migrate(p->db, cfg->migrations, cfg->nmigrations, err, errlen) !=
	            0 ||
	    db_exec(p->db, framework_sql, err, errlen) != 0 ||
	    prepare_all(p, err, errlen) != 0 ||
	    load_stream_next(p, err, errlen) != 0)
		return -1;
	if (cfg->on_open != NULL && cfg->on_open(cfg->arg, p->db, err, errlen))
		return -1;
	db_wal_defer(p->db, &p->wal);
	return 0;
}

void
part_close(struct part *p)
{
	if (p == NULL)
		return;
	sqlite3_stmt *all[] = {
	        p->find,          p->record,          p->late,
	        p->compensated,   p->outbox_add,      p->outbox_scan,
	        p->outbox_delete, p->sp_save,         p->sp_release,
	        p->sp_rollback,   p->prune_processed, p->prune_compensated,
	        p->stream_save,
	};
	durable_free(p->d);
	part_metrics_free(p->pm);
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		sqlite3_finalize(all[i]);
	part_prepared_release(p->db);
	db_close(p->db);
	free(p);
}

/* The loop's settings for a participant: a batch is what one window of
 * deliveries brings (group commit), no timers of its own. */
static struct durable_config
loop_config(const struct part *p)
{
	struct durable_config lc = {
	        .batch_max = p->c.prefetch,
	        .batch_wait_ms = p->c.linger_ms,
	        .linger = p->c.linger_ms > 0,
	        .inbox_retention_ms = p->retention_ms,
	        .prune_per_turn = PART_PRUNE_BATCH,
	};
	return lc;
}

struct part *
part_open(const struct part_config *cfg, const struct durable_transport *t,
          char *err, size_t errlen)
{
	struct part *p = calloc(1, sizeof(*p));
	struct durable_handler h = {
	        .begin = h_begin,
	        .commit = h_commit,
	        .rollback = h_rollback,
	        .error = h_error,
	        .apply = h_apply,
	        .prune = h_prune,
	        .outbox_scan = h_outbox_scan,
	        .outbox_delete = h_outbox_delete,
	        .after = h_after,
	};
	struct durable_config lc;

	if (p == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->c = *cfg;
	p->cfg = &p->c;
	if (p->c.prefetch == 0)
		p->c.prefetch = PART_PREFETCH;
	p->max_attempts =
	        cfg->max_attempts > 0 ? cfg->max_attempts : PART_MAX_ATTEMPTS;
	h.ctx = p;
	if (cfg->stream != NULL)
		h.position = h_position;
	if (cfg->timer_next != NULL && cfg->fire != NULL) {
		h.timer_next = h_timer_next;
		h.fire = h_fire;
	}
	lc = loop_config(p);
	p->pm = part_metrics_new();
	if (p->pm == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (retention_of(cfg, p->max_attempts, &p->retention_ms, err, errlen) !=
	            0 ||
	    open_db(p, err, errlen) != 0)
		goto fail;
	lc.inbox_retention_ms = p->retention_ms;
	p->d = durable_new(t, &h, &lc);
	if (p->d == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	return p;
fail:
	part_close(p);
	return NULL;
}

struct durable *
part_durable(struct part *p)
{
	return p->d;
}

const struct part_stats *
part_stats(struct part *p)
{
	const struct durable_stats *ds = durable_stats(p->d);

	p->stats.retried = ds->retried;
	p->stats.dead_lettered = ds->dead_lettered;
	p->stats.pruned = ds->inbox_pruned;
	return &p->stats;
}

static void
log_stopped(const struct part *p, const struct part_bus *pb)
{
	const struct durable_stats *ds = durable_stats(p->d);

	log_info("stopped: handled %llu, replayed %llu, refused late %llu, "
	         "retried %llu, dead-lettered %llu, pruned %llu, "
	         "reconnects %llu",
	         (unsigned long long)p->stats.handled,
	         (unsigned long long)p->stats.replayed,
	         (unsigned long long)p->stats.refused_late,
	         (unsigned long long)ds->retried,
	         (unsigned long long)ds->dead_lettered,
	         (unsigned long long)ds->inbox_pruned,
	         (unsigned long long)part_bus_reconnects(pb));
}

/* ---- --http: /healthz and /metrics, snapshots published from the
 * loop (lib/http.h), so no request waits for it ---- */

struct web {
	struct part *p;
	struct part_bus *pb;
	struct http *http;
	int64_t published_ms, queues_ms; /* mono */
};

/* The retry and dead-letter queues' depths: a round trip to the broker
 * each, so at most every PART_QUEUES_EVERY_MS. */
static void
read_queues(struct web *w, int64_t now)
{
	const struct part_config *cfg = w->p->cfg;
	static const char *const suffix[] = {"retry", "dlq"};
	char q[300];

	if (now - w->queues_ms < PART_QUEUES_EVERY_MS ||
	    !part_bus_connected(w->pb))
		return;
	w->queues_ms = now;
	for (size_t i = 0; i < cfg->nqueues; i++)
		for (size_t k = 0; k < 2; k++) {
			snprintf(q, sizeof(q), "%s.%s", cfg->queues[i],
			         suffix[k]);
			part_metrics_queue(w->p->pm, q,
			                   part_bus_queue_depth(w->pb, q));
		}
}

static struct part_now
read_now(struct web *w)
{
	const struct durable_stats *ds = durable_stats(w->p->d);
	struct part_now n = {.connected = part_bus_connected(w->pb),
	                     .reconnects = part_bus_reconnects(w->pb),
	                     .commit_failures = ds->commit_failures,
	                     .undecodable = ds->undecodable,
	                     .outbox_depth = -1,
	                     .disk_free = -1};
	unsigned long long left;
	int64_t depth;
	char err[256];

	if (db_space_left(w->p->db, &left, err, sizeof(err)) == 0)
		n.disk_free = (long long)left;
	if (part_sql(w->p->db, "SELECT count(*) FROM part_outbox", "",
	             &depth) == 1)
		n.outbox_depth = depth;
	return n;
}

static void
publish_pages(void *arg)
{
	struct web *w = arg;
	struct http_response r = {0};
	int64_t now = clock_mono_ms();
	const char *commit_why = NULL, *reason = NULL, *why;
	struct part_now pn;
	char buf[160];

	if (now - w->published_ms < PART_HTTP_PUBLISH_MS)
		return;
	w->published_ms = now;
	read_queues(w, now);
	pn = read_now(w);
	if (!durable_healthy(w->p->d, &reason))
		commit_why = reason != NULL ? reason : "";
	why = part_unhealthy(commit_why, &pn, buf, sizeof(buf));
	http_printf(&r, why == NULL ? "ok\n" : "unhealthy: %s\n",
	            why == NULL ? "" : why);
	if (!r.oom)
		http_publish(w->http, "/healthz", why == NULL ? 200 : 503, NULL,
		             r.body, r.len, PART_HTTP_STALE_MS);
	free(r.body);
	memset(&r, 0, sizeof(r));
	part_metrics_render(w->p->pm, &pn, &r);
	if (!r.oom)
		http_publish(w->http, "/metrics", 200,
		             "text/plain; version=0.0.4", r.body, r.len,
		             PART_HTTP_STALE_MS);
	free(r.body);
}

/* Listens on cfg->http, if given; the pages follow from the loop. */
static int
web_start(struct web *w, char *err, size_t errlen)
{
	if (w->p->cfg->http == NULL)
		return 0;
	w->http = http_listen(w->p->cfg->http, err, errlen);
	if (w->http == NULL)
		return -1;
	log_info("http listening on port %d (/healthz, /metrics)",
	         http_port(w->http));
	w->published_ms = INT64_MIN / 2;
	w->queues_ms = INT64_MIN / 2;
	publish_pages(w);
	part_bus_on_poll(w->pb, publish_pages, w);
	return 0;
}

static int64_t
resume_next(void *arg)
{
	return part_stream_next(arg);
}

int
part_run(const struct part_config *cfg, const volatile sig_atomic_t *stop,
         char *err, size_t errlen)
{
	struct part_bus *pb = NULL;
	struct part *p = NULL;
	struct durable_transport t;
	struct web w = {0};
	char cerr[512];
	int rc = -1;

	if (retention_of(cfg,
	                 cfg->max_attempts > 0 ? cfg->max_attempts
	                                       : PART_MAX_ATTEMPTS,
	                 &(int64_t){0}, err, errlen) != 0)
		return -1;
	pb = part_bus_new(cfg, &t, err, errlen);
	if (pb != NULL)
		p = part_open(cfg, &t, err, errlen);
	if (p == NULL || part_bus_open(pb, err, errlen) != 0)
		goto out;
	part_bus_attach(pb, p->d);
	part_bus_resume(pb, resume_next, p);
	w = (struct web){.p = p, .pb = pb};
	if (web_start(&w, err, errlen) != 0)
		goto out;
	if (part_bus_connect(pb, cerr, sizeof(cerr)) != 0)
		log_warnx("%s; retrying", cerr);
	else
		log_info("ready: consuming %s%s", cfg->queues[0],
		         cfg->nqueues > 1 ? " and more" : "");
	if (durable_run(p->d, stop, NULL, NULL, NULL, PART_DRAIN_MS) != 0)
		log_warnx("%zu replies unconfirmed at exit: they go out at "
		          "the next start",
		          t.unconfirmed(t.ctx));
	log_stopped(p, pb);
	rc = 0;
out:
	http_close(w.http);
	part_close(p);
	part_bus_free(pb);
	return rc;
}

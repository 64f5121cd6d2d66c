/* store.c -- the orchestrator's SQLite store (see store.h).
 *
 * Shape: one table of SQL texts indexed by an enum; each statement is
 * prepared on first use and kept for the life of the store, so the hot path
 * (inbox insert, saga get/put, history, outbox, timers: about ten statements
 * per delivery) never re-parses SQL. Every use goes through run_* helpers
 * that step, check and reset, so no statement is ever left un-reset holding
 * a read snapshot that would pin the WAL.
 */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "db.h"
#include "store_int.h"

extern const struct db_migration orchestrator_migrations[];
extern const size_t orchestrator_migrations_count;

/* store_saga_put's upsert: what every step sets, and status only when
 * it changes (ST_SAGA_PUT_KEEP_STATUS leaves it out). */
#define SAGA_PUT_UPSERT                                                        \
	"INSERT INTO sagas(id, chart, chart_version, status, state, phase, "   \
	"attempt, record, started_at, state_entered_at, updated_at, trace) "   \
	"VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) "           \
	"ON CONFLICT(id) DO UPDATE SET "
#define SAGA_PUT_STEP                                                          \
	"state = excluded.state, phase = excluded.phase, attempt = "           \
	"excluded.attempt, record = excluded.record, state_entered_at = "      \
	"excluded.state_entered_at, updated_at = excluded.updated_at"

static const char *const stmt_sql[ST__COUNT] = {
        [ST_INBOX_ADD] = "INSERT INTO inbox(message_id, received_at) "
                         "VALUES(?1, ?2) ON CONFLICT DO NOTHING",
        [ST_INBOX_PRUNE] = "DELETE FROM inbox WHERE message_id IN (SELECT "
                           "message_id FROM inbox WHERE received_at < ?1 "
                           "ORDER BY received_at LIMIT ?2)",
        [ST_CHART_PUT] = "INSERT INTO charts(version, name, file, source, "
                         "loaded_at) VALUES(?1, ?2, ?3, ?4, ?5) "
                         "ON CONFLICT DO NOTHING",
        [ST_CHART_GET] = "SELECT source, file FROM charts WHERE version = ?1",
        [ST_SAGA_GET] = "SELECT chart_version, record, trace FROM sagas "
                        "WHERE id = ?1",
        [ST_SAGA_PUT] =
                SAGA_PUT_UPSERT "status = excluded.status, " SAGA_PUT_STEP,
        /* the same without status: SQLite rewrites an index entry when a
         * column of the index is in the SET list, changed or not, and
         * sagas_by_status_start's would cost a page write a step */
        [ST_SAGA_PUT_KEEP_STATUS] = SAGA_PUT_UPSERT SAGA_PUT_STEP,
        [ST_HISTORY_ADD] = "INSERT INTO history(saga_id, at, kind, state, "
                           "status, detail, message_id, actor, reason) "
                           "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        [ST_OUTBOX_ADD] =
                "INSERT INTO outbox(saga_id, exchange, routing_key, "
                "message_id, type, traceparent, body, created_at, "
                "reply_to) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        [ST_OUTBOX_DELETE] = "DELETE FROM outbox WHERE seq = ?1 "
                             "RETURNING saga_id, exchange, created_at",
        [ST_TIMER_SHIFT] = "UPDATE timers SET fire_at = fire_at + (?3 - "
                           "armed_at), armed_at = ?3 WHERE saga_id = ?1 "
                           "AND armed_at = ?2",
        [ST_OUTBOX_SCAN] =
                "SELECT seq, saga_id, exchange, routing_key, "
                "message_id, type, traceparent, body, created_at, "
                "reply_to FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        [ST_OUTBOX_COUNT] = "SELECT count(*) FROM outbox",
        [ST_TIMER_SET] = "INSERT INTO timers(saga_id, seq, fire_at, armed_at) "
                         "VALUES(?1, ?2, ?3, ?4) ON CONFLICT(saga_id) DO "
                         "UPDATE SET seq = excluded.seq, fire_at = "
                         "excluded.fire_at, armed_at = excluded.armed_at",
        [ST_TIMER_CANCEL] = "DELETE FROM timers WHERE saga_id = ?1",
        [ST_TIMERS_DUE] = "SELECT saga_id, seq, fire_at FROM timers WHERE "
                          "fire_at <= ?1 ORDER BY fire_at LIMIT ?2",
        [ST_TIMER_NEXT] = "SELECT min(fire_at) FROM timers",
        [ST_COUNT_STATUS] = "SELECT count(*) FROM sagas WHERE status = ?1",
        /* the index sagas_by_status(status, updated_at) covers it: the
         * cost is the unfinished sagas' index entries, not the table */
        [ST_ACTIVE] = "SELECT status, count(*), min(updated_at) FROM sagas "
                      "WHERE status IN ('running', 'compensating', "
                      "'stuck') GROUP BY status",
        /* the partial index sagas_waiting: its condition repeated */
        [ST_WAITING_VERSIONS] = "SELECT DISTINCT chart_version FROM sagas "
                                "WHERE status IN ('running', "
                                "'compensating')",
        [ST_COUNT_WAITING] = "SELECT count(*) FROM sagas WHERE "
                             "chart_version = ?1 AND state = ?2 AND "
                             "state_entered_at < ?3 AND status IN "
                             "('running', 'compensating')",
        [ST_SAGA_EXISTS] = "SELECT 1 FROM sagas WHERE id = ?1",
        [ST_NODE_GET] = "SELECT value FROM node WHERE key = ?1",
        [ST_NODE_PUT] = "INSERT INTO node(key, value) VALUES(?1, ?2) "
                        "ON CONFLICT(key) DO UPDATE SET value = ?2",
};

int
store_fail(struct store *st, const char *what)
{
	snprintf(st->err, sizeof(st->err), "%s: %s", what,
	         sqlite3_errmsg(st->db));
	return -1;
}

/* The prepared statement, bindings cleared; NULL on error (in st->err). */
static sqlite3_stmt *
stmt(struct store *st, enum stmt_id id)
{
	if (st->st[id] == NULL && db_prepare(st->db, &st->st[id], stmt_sql[id],
	                                     st->err, sizeof(st->err)) != 0)
		return NULL;
	sqlite3_clear_bindings(st->st[id]);
	return st->st[id];
}

/* Steps a statement that returns no rows, then resets it. */
static int
run_done(struct store *st, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return store_fail(st, what);
	return 0;
}

int
store_bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if (v == NULL)
		return sqlite3_bind_null(s, i);
	return sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

/* Binding with SQLITE_STATIC is safe: every statement is stepped and reset
 * before the function that bound it returns. */
#define BIND_OK(expr)                                                          \
	do {                                                                   \
		if ((expr) != SQLITE_OK) {                                     \
			sqlite3_reset(s);                                      \
			return store_fail(st, "cannot bind");                  \
		}                                                              \
	} while (0)

static struct store *
store_new(const char *path, enum db_open_mode mode, char *err, size_t errlen)
{
	struct store *st = calloc(1, sizeof(*st));
	if (st == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (db_open(path, mode, &st->db, err, errlen) != 0) {
		free(st);
		return NULL;
	}
	return st;
}

struct store *
store_open(const char *path, char *err, size_t errlen)
{
	struct store *st = store_new(path, DB_READWRITE, err, errlen);
	char why[512];

	if (st == NULL)
		return NULL;
	if (db_migrate(st->db, orchestrator_migrations,
	               orchestrator_migrations_count, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "%s: %s", path, why);
		store_close(st);
		return NULL;
	}
	db_wal_defer(st->db, &st->wal);
	return st;
}

struct store *
store_open_readonly(const char *path, char *err, size_t errlen)
{
	struct store *st = store_new(path, DB_READONLY, err, errlen);
	sqlite3_stmt *s;
	int have = -1;

	if (st == NULL)
		return NULL;
	if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) ==
	    SQLITE_OK) {
		if (sqlite3_step(s) == SQLITE_ROW)
			have = sqlite3_column_int(s, 0);
		sqlite3_finalize(s);
	}
	if (have != orchestrator_migrations[orchestrator_migrations_count - 1]
	                    .version) {
		snprintf(err, errlen,
		         "%s: schema version %d, this program knows %d "
		         "(is it an orchestrator database?)",
		         path, have,
		         orchestrator_migrations[orchestrator_migrations_count -
		                                 1]
		                 .version);
		store_close(st);
		return NULL;
	}
	return st;
}

void
store_close(struct store *st)
{
	if (st == NULL)
		return;
	for (int i = 0; i < ST__COUNT; i++)
		sqlite3_finalize(st->st[i]);
	db_close(st->db);
	free(st->due_ids);
	free(st->due_seqs);
	free(st->due_ats);
	free(st);
}

const char *
store_error(const struct store *st)
{
	return st->err;
}

int
store_space_left(struct store *st, unsigned long long *bytes)
{
	return db_space_left(st->db, bytes, st->err, sizeof(st->err));
}

int
store_begin(struct store *st)
{
	return db_begin(st->db, st->err, sizeof(st->err));
}

int
store_commit(struct store *st)
{
	return db_commit(st->db, st->err, sizeof(st->err));
}

int
store_wal_checkpoint(struct store *st)
{
	return db_wal_checkpoint(st->db, &st->wal, st->err, sizeof(st->err));
}

void
store_rollback(struct store *st)
{
	db_rollback(st->db);
}

int
store_set_max_pages(struct store *st, long pages)
{
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA max_page_count=%ld",
	         pages > 0 ? pages : 1073741823L);
	return db_exec(st->db, sql, st->err, sizeof(st->err));
}

int
store_inbox_add(struct store *st, const char *message_id, int64_t now_ms,
                bool *dup)
{
	sqlite3_stmt *s = stmt(st, ST_INBOX_ADD);
	if (s == NULL)
		return -1;
	BIND_OK(store_bind_text(s, 1, message_id));
	BIND_OK(sqlite3_bind_int64(s, 2, now_ms));
	if (run_done(st, s, "cannot record message in inbox") != 0)
		return -1;
	*dup = sqlite3_changes(st->db) == 0;
	return 0;
}

int
store_inbox_prune(struct store *st, int64_t before_ms, size_t limit, int64_t *n)
{
	sqlite3_stmt *s = stmt(st, ST_INBOX_PRUNE);
	if (s == NULL)
		return -1;
	BIND_OK(sqlite3_bind_int64(s, 1, before_ms));
	BIND_OK(sqlite3_bind_int64(s, 2, (int64_t)limit));
	if (run_done(st, s, "cannot prune inbox") != 0)
		return -1;
	*n = sqlite3_changes(st->db);
	return 0;
}

int
store_chart_put(struct store *st, const struct chart *c, const char *source,
                int64_t now_ms)
{
	sqlite3_stmt *s = stmt(st, ST_CHART_PUT);
	if (s == NULL)
		return -1;
	BIND_OK(store_bind_text(s, 1, c->version));
	BIND_OK(store_bind_text(s, 2, c->name));
	BIND_OK(store_bind_text(s, 3, c->file != NULL ? c->file : ""));
	BIND_OK(store_bind_text(s, 4, source));
	BIND_OK(sqlite3_bind_int64(s, 5, now_ms));
	return run_done(st, s, "cannot record chart version");
}

const char *
store_column_text(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	return t != NULL ? (const char *)t : "";
}

static char *
column_strdup(sqlite3_stmt *s, int i)
{
	return strdup(store_column_text(s, i));
}

int
store_chart_get(struct store *st, const char *version, char **source,
                char **file, bool *found)
{
	sqlite3_stmt *s = stmt(st, ST_CHART_GET);
	int rc;

	*found = false;
	*source = *file = NULL;
	if (s == NULL)
		return -1;
	BIND_OK(store_bind_text(s, 1, version));
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*source = column_strdup(s, 0);
		*file = column_strdup(s, 1);
		*found = true;
	}
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_fail(st, "cannot read chart version");
	if (*found && (*source == NULL || *file == NULL)) {
		free(*source);
		free(*file);
		*source = *file = NULL;
		snprintf(st->err, sizeof(st->err), "out of memory");
		return -1;
	}
	return 0;
}

int
store_saga_get(struct store *st, const char *id, char version[17],
               struct value *record, char *trace, size_t tracecap, bool *found)
{
	static const struct value_limits lim = {32, 1000000, 16 << 20};
	sqlite3_stmt *s = stmt(st, ST_SAGA_GET);
	int rc, ret = 0;
	char why[256];

	*found = false;
	value_set_nil(record);
	if (s == NULL)
		return -1;
	BIND_OK(store_bind_text(s, 1, id));
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const unsigned char *v = sqlite3_column_text(s, 0);
		const void *blob = sqlite3_column_blob(s, 1);
		int n = sqlite3_column_bytes(s, 1);
		const unsigned char *t = sqlite3_column_text(s, 2);
		snprintf(version, 17, "%s", v != NULL ? (const char *)v : "");
		if (trace != NULL && tracecap > 0)
			snprintf(trace, tracecap, "%s",
			         t != NULL ? (const char *)t : "");
		if (value_unpack(blob, (size_t)n, &lim, record, why,
		                 sizeof(why)) != 0) {
			snprintf(st->err, sizeof(st->err),
			         "saga %s: stored record is corrupt: %s", id,
			         why);
			ret = -1;
		} else {
			*found = true;
		}
	} else if (rc != SQLITE_DONE) {
		ret = store_fail(st, "cannot read saga");
	}
	sqlite3_reset(s);
	return ret;
}

int
store_saga_put(struct store *st, const struct chart *c, const struct saga *sg,
               const char *trace, bool status_kept)
{
	struct value rec = VALUE_NIL_INIT;
	char *buf = NULL;
	size_t len = 0;
	sqlite3_stmt *s =
	        stmt(st, status_kept ? ST_SAGA_PUT_KEEP_STATUS : ST_SAGA_PUT);
	int ret;

	if (s == NULL)
		return -1;
	if (saga_to_value(sg, c, &rec) != 0 ||
	    value_to_msgpack(&rec, &buf, &len) != 0) {
		value_clear(&rec);
		snprintf(st->err, sizeof(st->err),
		         "saga %s: cannot encode record", sg->id);
		return -1;
	}
	value_clear(&rec);
	if (store_bind_text(s, 1, sg->id) != SQLITE_OK ||
	    store_bind_text(s, 2, c->name) != SQLITE_OK ||
	    store_bind_text(s, 3, sg->chart_version) != SQLITE_OK ||
	    store_bind_text(s, 4, saga_status_name(sg->status)) != SQLITE_OK ||
	    store_bind_text(s, 5, c->states[sg->state].name) != SQLITE_OK ||
	    store_bind_text(s, 6, saga_phase_name(sg->phase)) != SQLITE_OK ||
	    sqlite3_bind_int(s, 7, sg->attempt) != SQLITE_OK ||
	    sqlite3_bind_blob(s, 8, buf, (int)len, SQLITE_STATIC) !=
	            SQLITE_OK ||
	    sqlite3_bind_int64(s, 9, sg->started_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 10, sg->step_started_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 11, sg->updated_ms) != SQLITE_OK ||
	    store_bind_text(s, 12, trace) != SQLITE_OK) {
		sqlite3_reset(s);
		free(buf);
		return store_fail(st, "cannot bind saga");
	}
	ret = run_done(st, s, "cannot write saga");
	sqlite3_clear_bindings(s);
	free(buf);
	return ret;
}

int
store_history_add(struct store *st, const struct store_history *h)
{
	sqlite3_stmt *s = stmt(st, ST_HISTORY_ADD);
	if (s == NULL)
		return -1;
	BIND_OK(store_bind_text(s, 1, h->saga_id));
	BIND_OK(sqlite3_bind_int64(s, 2, h->at_ms));
	BIND_OK(store_bind_text(s, 3, h->kind));
	BIND_OK(store_bind_text(s, 4, h->state != NULL ? h->state : ""));
	BIND_OK(store_bind_text(s, 5, h->status != NULL ? h->status : ""));
	BIND_OK(store_bind_text(s, 6, h->detail != NULL ? h->detail : ""));
	BIND_OK(store_bind_text(s, 7, h->message_id));
	BIND_OK(store_bind_text(s, 8, h->actor));
	BIND_OK(store_bind_text(s, 9, h->reason));
	return run_done(st, s, "cannot write history");
}

int
store_outbox_add(struct store *st, struct store_outbox *m)
{
	sqlite3_stmt *s = stmt(st, ST_OUTBOX_ADD);
	if (s == NULL)
		return -1;
	BIND_OK(store_bind_text(s, 1, m->saga_id));
	BIND_OK(store_bind_text(s, 2, m->exchange));
	BIND_OK(store_bind_text(s, 3, m->routing_key));
	BIND_OK(store_bind_text(s, 4, m->message_id));
	BIND_OK(store_bind_text(s, 5, m->type));
	BIND_OK(store_bind_text(s, 6, m->traceparent));
	BIND_OK(sqlite3_bind_blob(s, 7, m->body, (int)m->body_len,
	                          SQLITE_STATIC));
	BIND_OK(sqlite3_bind_int64(s, 8, m->created_ms));
	BIND_OK(store_bind_text(s, 9, m->reply_to));
	if (run_done(st, s, "cannot write outbox") != 0)
		return -1;
	m->seq = sqlite3_last_insert_rowid(st->db);
	return 0;
}

/* The timer a late command armed starts again from its confirm. */
static int
shift_timer(struct store *st, const char *saga_id, int64_t armed_ms,
            int64_t confirmed_ms)
{
	sqlite3_stmt *s = stmt(st, ST_TIMER_SHIFT);
	if (s == NULL)
		return -1;
	BIND_OK(store_bind_text(s, 1, saga_id));
	BIND_OK(sqlite3_bind_int64(s, 2, armed_ms));
	BIND_OK(sqlite3_bind_int64(s, 3, confirmed_ms));
	return run_done(st, s, "cannot move timer");
}

int
store_outbox_delete(struct store *st, int64_t seq, int64_t confirmed_ms)
{
	sqlite3_stmt *s = stmt(st, ST_OUTBOX_DELETE);
	char saga[SAGA_ID_MAX] = "";
	int64_t created = 0;
	bool command = false;
	int rc;

	if (s == NULL)
		return -1;
	BIND_OK(sqlite3_bind_int64(s, 1, seq));
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		snprintf(saga, sizeof(saga), "%s",
		         (const char *)sqlite3_column_text(s, 0));
		command = strcmp((const char *)sqlite3_column_text(s, 1),
		                 STORE_COMMANDS_EXCHANGE) == 0;
		created = sqlite3_column_int64(s, 2);
		rc = sqlite3_step(s);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return store_fail(st, "cannot delete from outbox");
	if (command && confirmed_ms - created >= STORE_CONFIRM_LATE_MS)
		return shift_timer(st, saga, created, confirmed_ms);
	return 0;
}

int
store_outbox_scan(struct store *st, int64_t after_seq, size_t limit,
                  store_outbox_fn fn, void *arg)
{
	sqlite3_stmt *s = stmt(st, ST_OUTBOX_SCAN);
	int rc;

	if (s == NULL)
		return -1;
	BIND_OK(sqlite3_bind_int64(s, 1, after_seq));
	BIND_OK(sqlite3_bind_int64(s, 2, (sqlite3_int64)limit));
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_outbox m = {
		        .seq = sqlite3_column_int64(s, 0),
		        .saga_id = (const char *)sqlite3_column_text(s, 1),
		        .exchange = (const char *)sqlite3_column_text(s, 2),
		        .routing_key = (const char *)sqlite3_column_text(s, 3),
		        .message_id = (const char *)sqlite3_column_text(s, 4),
		        .type = (const char *)sqlite3_column_text(s, 5),
		        .traceparent = (const char *)sqlite3_column_text(s, 6),
		        .body = sqlite3_column_blob(s, 7),
		        .body_len = (size_t)sqlite3_column_bytes(s, 7),
		        .created_ms = sqlite3_column_int64(s, 8),
		        .reply_to = (const char *)sqlite3_column_text(s, 9),
		};
		if (fn(arg, &m) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return store_fail(st, "cannot read outbox");
	return 0;
}

static int
single_int64(struct store *st, sqlite3_stmt *s, int64_t *n, const char *what)
{
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*n = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (rc != SQLITE_ROW)
		return store_fail(st, what);
	return 0;
}

int
store_outbox_count(struct store *st, int64_t *n)
{
	sqlite3_stmt *s = stmt(st, ST_OUTBOX_COUNT);
	if (s == NULL)
		return -1;
	return single_int64(st, s, n, "cannot count outbox");
}

int
store_timer_set(struct store *st, const char *saga_id, int64_t seq,
                int64_t fire_at_ms, int64_t armed_ms)
{
	sqlite3_stmt *s = stmt(st, ST_TIMER_SET);
	if (s == NULL)
		return -1;
	BIND_OK(store_bind_text(s, 1, saga_id));
	BIND_OK(sqlite3_bind_int64(s, 2, seq));
	BIND_OK(sqlite3_bind_int64(s, 3, fire_at_ms));
	BIND_OK(sqlite3_bind_int64(s, 4, armed_ms));
	return run_done(st, s, "cannot set timer");
}

int
store_timer_cancel(struct store *st, const char *saga_id)
{
	sqlite3_stmt *s = stmt(st, ST_TIMER_CANCEL);
	if (s == NULL)
		return -1;
	BIND_OK(store_bind_text(s, 1, saga_id));
	return run_done(st, s, "cannot cancel timer");
}

int
store_timers_due(struct store *st, int64_t now_ms, size_t limit,
                 store_timer_fn fn, void *arg)
{
	sqlite3_stmt *s = stmt(st, ST_TIMERS_DUE);
	char(*ids)[SAGA_ID_MAX];
	int64_t *seqs, *ats;
	size_t n = 0;
	int rc = SQLITE_DONE, ret = 0;

	if (s == NULL)
		return -1;
	/* Collect first, then call: fn writes the timers table, which must
	 * not happen while this SELECT is open on it. The buffers are the
	 * store's, grown once: this runs in every transaction. */
	if (limit > st->due_cap) {
		char(*nid)[SAGA_ID_MAX] =
		        realloc(st->due_ids, limit * sizeof(*nid));
		int64_t *nseq, *nat;
		if (nid != NULL)
			st->due_ids = nid;
		nseq = realloc(st->due_seqs, limit * sizeof(*nseq));
		if (nseq != NULL)
			st->due_seqs = nseq;
		nat = realloc(st->due_ats, limit * sizeof(*nat));
		if (nat != NULL)
			st->due_ats = nat;
		if (nid == NULL || nseq == NULL || nat == NULL) {
			snprintf(st->err, sizeof(st->err), "out of memory");
			return -1;
		}
		st->due_cap = limit;
	}
	ids = st->due_ids;
	seqs = st->due_seqs;
	ats = st->due_ats;
	if (sqlite3_bind_int64(s, 1, now_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 2, (sqlite3_int64)limit) != SQLITE_OK) {
		ret = store_fail(st, "cannot bind");
		goto out;
	}
	while (n < limit && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		const unsigned char *id = sqlite3_column_text(s, 0);
		snprintf(ids[n], SAGA_ID_MAX, "%s",
		         id != NULL ? (const char *)id : "");
		seqs[n] = sqlite3_column_int64(s, 1);
		ats[n] = sqlite3_column_int64(s, 2);
		n++;
	}
	if (n < limit && rc != SQLITE_DONE) {
		ret = store_fail(st, "cannot read timers");
		goto out;
	}
	sqlite3_reset(s);
	for (size_t i = 0; i < n && ret == 0; i++)
		ret = fn(arg, ids[i], seqs[i], ats[i]);
out:
	sqlite3_reset(s);
	return ret;
}

int
store_timer_next(struct store *st, int64_t *fire_at_ms, bool *found)
{
	sqlite3_stmt *s = stmt(st, ST_TIMER_NEXT);
	int rc;

	*found = false;
	if (s == NULL)
		return -1;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
		*fire_at_ms = sqlite3_column_int64(s, 0);
		*found = true;
	}
	sqlite3_reset(s);
	if (rc != SQLITE_ROW)
		return store_fail(st, "cannot read timers");
	return 0;
}

int
store_count_status(struct store *st, const char *status, int64_t *n)
{
	sqlite3_stmt *s = stmt(st, ST_COUNT_STATUS);
	if (s == NULL)
		return -1;
	BIND_OK(store_bind_text(s, 1, status));
	return single_int64(st, s, n, "cannot count sagas");
}

int
store_active(struct store *st, struct store_active *a)
{
	sqlite3_stmt *s = stmt(st, ST_ACTIVE);
	int rc;

	memset(a, 0, sizeof(*a));
	if (s == NULL)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *status = store_column_text(s, 0);
		int64_t n = sqlite3_column_int64(s, 1);
		if (strcmp(status, "running") == 0) {
			a->running = n;
		} else if (strcmp(status, "compensating") == 0) {
			a->compensating = n;
		} else {
			a->stuck = n;
			a->stuck_since_ms = sqlite3_column_int64(s, 2);
		}
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : store_fail(st, "cannot count sagas");
}

int
store_waiting_versions(struct store *st, store_version_fn fn, void *arg)
{
	sqlite3_stmt *s = stmt(st, ST_WAITING_VERSIONS);
	int rc;

	if (s == NULL)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		if (fn(arg, store_column_text(s, 0)) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : store_fail(st, "cannot read sagas");
}

int
store_count_waiting(struct store *st, const char *version, const char *state,
                    int64_t entered_before_ms, int64_t *n)
{
	sqlite3_stmt *s = stmt(st, ST_COUNT_WAITING);

	if (s == NULL)
		return -1;
	BIND_OK(store_bind_text(s, 1, version));
	BIND_OK(store_bind_text(s, 2, state));
	BIND_OK(sqlite3_bind_int64(s, 3, entered_before_ms));
	return single_int64(st, s, n, "cannot count sagas");
}

int
store_saga_exists(struct store *st, const char *id, bool *found)
{
	sqlite3_stmt *s = stmt(st, ST_SAGA_EXISTS);
	int rc;

	*found = false;
	if (s == NULL)
		return -1;
	BIND_OK(store_bind_text(s, 1, id));
	rc = sqlite3_step(s);
	*found = rc == SQLITE_ROW;
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_fail(st, "cannot read sagas");
	return 0;
}

int
store_node_get(struct store *st, const char *key, char *buf, size_t cap,
               bool *found)
{
	sqlite3_stmt *s = stmt(st, ST_NODE_GET);
	int rc;

	*found = false;
	if (cap > 0)
		buf[0] = '\0';
	if (s == NULL)
		return -1;
	BIND_OK(store_bind_text(s, 1, key));
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		snprintf(buf, cap, "%s", store_column_text(s, 0));
		*found = true;
	}
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_fail(st, "cannot read node");
	return 0;
}

int
store_node_put(struct store *st, const char *key, const char *value)
{
	sqlite3_stmt *s = stmt(st, ST_NODE_PUT);
	if (s == NULL)
		return -1;
	BIND_OK(store_bind_text(s, 1, key));
	BIND_OK(store_bind_text(s, 2, value));
	return run_done(st, s, "cannot write node");
}

/* store_query.c -- the operator's queries (store.h, its last part): what
 * sagactl reads, and the union of several shards' databases it reads
 * from.
 *
 * Why a file of its own, shaped differently from store.c: these run once
 * per sagactl command, never on the orchestrator's hot path, so each
 * statement is prepared for the call and finalized before the function
 * returns (nothing is kept, nothing can pin a WAL snapshot). They span
 * several shards the simple way: store_open_shards attaches every further
 * database and shadows each table with a temporary view of the same name
 * (temp comes first in SQLite's name lookup) that unions them, so the
 * queries below are written once, for one database.
 */
#include "store.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "store_int.h"

#define FINAL_STATUSES "('completed', 'failed', 'aborted', 'cancelled')"

/* A fresh statement for sql; NULL on error (in st->err). */
static sqlite3_stmt *
query(struct store *st, const char *sql)
{
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
		store_fail(st, "cannot prepare query");
		sqlite3_finalize(s);
		return NULL;
	}
	return s;
}

/* Finalizes s after its last step: rc SQLITE_DONE is success. */
static int
done(struct store *st, sqlite3_stmt *s, int rc, const char *what)
{
	int ret = rc == SQLITE_DONE ? 0 : store_fail(st, what);
	sqlite3_finalize(s);
	return ret;
}

static int
exec(struct store *st, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	snprintf(st->err, sizeof(st->err), "%s",
	         msg != NULL ? msg : "database error");
	sqlite3_free(msg);
	return -1;
}

/* The schema version (user_version) of the database attached as schema;
 * -1 if it cannot be read. */
static int
schema_version(struct store *st, const char *schema)
{
	char sql[64];
	sqlite3_stmt *s;
	int v = -1;

	snprintf(sql, sizeof(sql), "PRAGMA %s.user_version", schema);
	s = query(st, sql);
	if (s == NULL)
		return -1;
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	return v;
}

/* Attaches path as s<i> and checks it has the main database's schema. */
static int
attach(struct store *st, const char *path, size_t i)
{
	char *q = sqlite3_mprintf("ATTACH %Q AS s%d", path, (int)i);
	char schema[16];
	int rc, have, want;

	if (q == NULL) {
		snprintf(st->err, sizeof(st->err), "out of memory");
		return -1;
	}
	rc = exec(st, q);
	sqlite3_free(q);
	if (rc != 0)
		return -1;
	st->nattached = i;
	snprintf(schema, sizeof(schema), "s%d", (int)i);
	want = schema_version(st, "main");
	have = schema_version(st, schema);
	if (want < 0 || have != want) {
		snprintf(st->err, sizeof(st->err),
		         "%s: schema version %d, not %d (is it an orchestrator "
		         "database?)",
		         path, have, want);
		return -1;
	}
	return 0;
}

/* The view shadowing `table` with the union of every database's. */
static int
union_view(struct store *st, const char *table)
{
	char sql[2048];
	size_t n = (size_t)snprintf(sql, sizeof(sql),
	                            "CREATE TEMP VIEW %s AS SELECT * FROM "
	                            "(SELECT * FROM main.%s",
	                            table, table);

	for (size_t i = 1; i <= st->nattached && n < sizeof(sql); i++)
		n += (size_t)snprintf(sql + n, sizeof(sql) - n,
		                      " UNION ALL SELECT * FROM s%d.%s", (int)i,
		                      table);
	/* a chart version is its content: one row each */
	if (n < sizeof(sql))
		n += (size_t)snprintf(sql + n, sizeof(sql) - n, ")%s",
		                      strcmp(table, "charts") == 0
		                              ? " GROUP BY version"
		                              : "");
	if (n >= sizeof(sql)) {
		snprintf(st->err, sizeof(st->err), "too many databases");
		return -1;
	}
	return exec(st, sql);
}

struct store *
store_open_shards(const char *const *paths, size_t n, char *err, size_t errlen)
{
	static const char *const tables[] = {"sagas", "history", "timers",
	                                     "charts"};
	struct store *st;

	if (n < 1 || n > STORE_SHARDS_MAX) {
		snprintf(err, errlen, "1 to %d databases, not %zu",
		         STORE_SHARDS_MAX, n);
		return NULL;
	}
	st = store_open_readonly(paths[0], err, errlen);
	if (st == NULL || n == 1)
		return st;
	/* the connection is read-only; query_only would also forbid the
	 * temp views */
	if (exec(st, "PRAGMA query_only = OFF") != 0)
		goto fail;
	for (size_t i = 1; i < n; i++)
		if (attach(st, paths[i], i) != 0)
			goto fail;
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		if (union_view(st, tables[t]) != 0)
			goto fail;
	if (exec(st, "PRAGMA query_only = ON") == 0)
		return st;
fail:
	snprintf(err, errlen, "%s", st->err);
	store_close(st);
	return NULL;
}

/* Whether the database attached as `schema` has saga id. */
static int
schema_has_saga(struct store *st, const char *schema, const char *id,
                bool *found)
{
	char sql[96];
	sqlite3_stmt *s;
	int rc;

	snprintf(sql, sizeof(sql), "SELECT 1 FROM %s.sagas WHERE id = ?1",
	         schema);
	s = query(st, sql);
	if (s == NULL)
		return -1;
	if (store_bind_text(s, 1, id) != SQLITE_OK) {
		sqlite3_finalize(s);
		return store_fail(st, "cannot bind");
	}
	rc = sqlite3_step(s);
	*found = rc == SQLITE_ROW;
	return done(st, s, *found ? SQLITE_DONE : rc, "cannot read sagas");
}

int
store_saga_shard(struct store *st, const char *id, char *shard, size_t cap,
                 bool *found)
{
	char sql[96];
	sqlite3_stmt *s;
	int rc;

	*found = false;
	if (cap > 0)
		shard[0] = '\0';
	for (size_t i = 0; i <= st->nattached && !*found; i++) {
		char schema[16];
		snprintf(schema, sizeof(schema), i == 0 ? "main" : "s%d",
		         (int)i);
		if (schema_has_saga(st, schema, id, found) != 0)
			return -1;
		if (!*found)
			continue;
		snprintf(sql, sizeof(sql),
		         "SELECT value FROM %s.node WHERE key = 'shard'",
		         schema);
		s = query(st, sql);
		if (s == NULL)
			return -1;
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			snprintf(shard, cap, "%s", store_column_text(s, 0));
			rc = sqlite3_step(s);
		}
		if (done(st, s, rc, "cannot read node") != 0)
			return -1;
	}
	return 0;
}

/* ---- sagas ---- */

#define SUMMARY_COLUMNS                                                        \
	"id, chart, chart_version, status, state, phase, attempt, "            \
	"started_at, state_entered_at, updated_at, "                           \
	"coalesce(substr(trace, 4, 32), '')"

static void
read_summary(sqlite3_stmt *s, struct store_saga_summary *r)
{
	snprintf(r->id, sizeof(r->id), "%s", store_column_text(s, 0));
	snprintf(r->chart, sizeof(r->chart), "%s", store_column_text(s, 1));
	snprintf(r->chart_version, sizeof(r->chart_version), "%s",
	         store_column_text(s, 2));
	snprintf(r->status, sizeof(r->status), "%s", store_column_text(s, 3));
	snprintf(r->state, sizeof(r->state), "%s", store_column_text(s, 4));
	snprintf(r->phase, sizeof(r->phase), "%s", store_column_text(s, 5));
	r->attempt = sqlite3_column_int(s, 6);
	r->started_ms = sqlite3_column_int64(s, 7);
	r->state_entered_ms = sqlite3_column_int64(s, 8);
	r->updated_ms = sqlite3_column_int64(s, 9);
	snprintf(r->trace_id, sizeof(r->trace_id), "%s",
	         store_column_text(s, 10));
}

static int
bind_filter(sqlite3_stmt *s, const struct store_saga_filter *f)
{
	int rc = store_bind_text(s, 1, f->status);
	if (rc == SQLITE_OK)
		rc = store_bind_text(s, 2, f->chart);
	if (rc == SQLITE_OK)
		rc = store_bind_text(s, 3, f->state);
	if (rc == SQLITE_OK && f->started_before_ms >= 0)
		rc = sqlite3_bind_int64(s, 4, f->started_before_ms);
	if (rc == SQLITE_OK && f->entered_before_ms >= 0)
		rc = sqlite3_bind_int64(s, 5, f->entered_before_ms);
	if (rc == SQLITE_OK)
		rc = store_bind_text(s, 6, f->id_prefix);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(s, 7, f->unfinished ? 1 : 0);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 8, f->limit);
	if (rc == SQLITE_OK && f->data_q != NULL)
		rc = sqlite3_bind_blob(s, 9, f->data_q, (int)strlen(f->data_q),
		                       SQLITE_STATIC);
	/* no key: from the newest (a bound key keeps the range sargable) */
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(
		        s, 10,
		        f->after_id != NULL ? f->after_started_ms : INT64_MAX);
	if (rc == SQLITE_OK)
		rc = store_bind_text(s, 11,
		                     f->after_id != NULL ? f->after_id : "");
	return rc;
}

/* The text of store_list_sagas' query for filter f: only the conditions
 * f sets, so that SQLite sees which columns are constrained and can pick
 * an index (a condition written "?1 IS NULL OR status = ?1" hides the
 * column from the planner: every filter would scan sagas_by_start). The
 * parameters keep their numbers whatever is left out (bind_filter). */
static void
list_sql(const struct store_saga_filter *f, bool prefix_range, char *sql,
         size_t cap)
{
	size_t n = (size_t)snprintf(sql, cap,
	                            "SELECT " SUMMARY_COLUMNS " FROM sagas "
	                            "WHERE started_at <= ?10 AND "
	                            "(started_at < ?10 OR id > ?11)");
#define ADD(cond)                                                              \
	do {                                                                   \
		if (n < cap)                                                   \
			n += (size_t)snprintf(sql + n, cap - n, " AND %s",     \
			                      cond);                           \
	} while (0)
	if (f->status != NULL)
		ADD("status = ?1");
	if (f->chart != NULL)
		ADD("chart = ?2");
	if (f->state != NULL)
		ADD("state = ?3");
	if (f->started_before_ms >= 0)
		ADD("started_at < ?4");
	if (f->entered_before_ms >= 0)
		ADD("state_entered_at < ?5 AND status NOT IN " FINAL_STATUSES);
	if (f->id_prefix != NULL && prefix_range) /* the key's range, sorted */
		ADD("id >= ?6 AND id < ?12 AND substr(id, 1, length(?6)) = ?6");
	else if (f->id_prefix != NULL) /* tested on the rows the order reads */
		ADD("substr(+id, 1, length(?6)) = ?6");
	if (f->unfinished)
		ADD("status NOT IN " FINAL_STATUSES);
	if (f->data_q != NULL)
		ADD("instr(record, ?9) > 0");
#undef ADD
	if (n < cap)
		snprintf(sql + n, cap - n,
		         " ORDER BY started_at DESC, id LIMIT ?8");
}

/* The first text after every text that starts with prefix, into buf: the
 * prefix with its last byte below 0xff incremented (and cut there); if
 * every byte is 0xff, a text above any id we store. */
static const char *
prefix_end(const char *prefix, char *buf, size_t cap)
{
	size_t n = strlen(prefix);

	if (n >= cap)
		n = cap - 1;
	memcpy(buf, prefix, n);
	while (n > 0 && (unsigned char)buf[n - 1] == 0xff)
		n--;
	if (n == 0)
		return "\xff\xff\xff\xff"; /* above any id we store */
	buf[n - 1] = (char)((unsigned char)buf[n - 1] + 1);
	buf[n] = '\0';
	return buf;
}

/* An id prefix matched by fewer sagas than this is read as a range of the
 * primary key and sorted; a commoner one is tested on the rows the list's
 * order reads (sagas_by_start), where it soon fills a page. */
#define PREFIX_RANGE_MAX 5000

/* Whether fewer than PREFIX_RANGE_MAX ids lie in [prefix, end). */
static int
prefix_is_rare(struct store *st, const char *prefix, const char *end,
               bool *rare)
{
	sqlite3_stmt *s = query(st, "SELECT count(*) FROM (SELECT 1 FROM "
	                            "sagas WHERE id >= ?1 AND id < ?2 LIMIT "
	                            "?3)");
	int rc;

	if (s == NULL)
		return -1;
	if (store_bind_text(s, 1, prefix) != SQLITE_OK ||
	    store_bind_text(s, 2, end) != SQLITE_OK ||
	    sqlite3_bind_int(s, 3, PREFIX_RANGE_MAX) != SQLITE_OK) {
		sqlite3_finalize(s);
		return store_fail(st, "cannot bind");
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*rare = sqlite3_column_int(s, 0) < PREFIX_RANGE_MAX;
		rc = sqlite3_step(s);
	}
	return done(st, s, rc, "cannot read sagas");
}

int
store_list_sagas(struct store *st, const struct store_saga_filter *f,
                 store_saga_fn fn, void *arg)
{
	char sql[1024], endbuf[SAGA_ID_MAX + 1];
	const char *end = NULL;
	bool rare = false;
	sqlite3_stmt *s;
	struct store_saga_summary r;
	int rc;

	if (f->id_prefix != NULL) {
		end = prefix_end(f->id_prefix, endbuf, sizeof(endbuf));
		if (prefix_is_rare(st, f->id_prefix, end, &rare) != 0)
			return -1;
	}
	list_sql(f, rare, sql, sizeof(sql));
	s = query(st, sql);
	if (s == NULL)
		return -1;
	rc = bind_filter(s, f);
	if (rc == SQLITE_OK && rare)
		rc = store_bind_text(s, 12, end);
	if (rc != SQLITE_OK) {
		sqlite3_finalize(s);
		return store_fail(st, "cannot bind");
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		read_summary(s, &r);
		if (fn(arg, &r) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	return done(st, s, rc, "cannot read sagas");
}

int
store_list_waiting(struct store *st, const char *version, const char *state,
                   int64_t entered_before_ms, int64_t limit, store_saga_fn fn,
                   void *arg)
{
	/* two texts, not "?1 IS NULL OR ...": the index sagas_waiting is
	 * used only when the query repeats its condition and names the
	 * columns it is keyed by */
	sqlite3_stmt *s = query(
	        st, version != NULL
	                    ? "SELECT " SUMMARY_COLUMNS " FROM sagas "
	                      "WHERE chart_version = ?1 AND state = ?2 AND "
	                      "state_entered_at < ?3 AND status IN "
	                      "('running', 'compensating') "
	                      "ORDER BY state_entered_at, id LIMIT ?4"
	                    : "SELECT " SUMMARY_COLUMNS " FROM sagas "
	                      "WHERE state_entered_at < ?3 AND status IN "
	                      "('running', 'compensating') "
	                      "ORDER BY state_entered_at, id LIMIT ?4");
	struct store_saga_summary r;
	int rc;

	if (s == NULL)
		return -1;
	rc = store_bind_text(s, 1, version);
	if (rc == SQLITE_OK)
		rc = store_bind_text(s, 2, state);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 3, entered_before_ms);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 4, limit);
	if (rc != SQLITE_OK) {
		sqlite3_finalize(s);
		return store_fail(st, "cannot bind");
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		read_summary(s, &r);
		if (fn(arg, &r) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	return done(st, s, rc, "cannot read sagas");
}

/* The one summary (or none) a query selects, bound to text (or none). */
static int
one_summary(struct store *st, const char *sql, const char *text,
            struct store_saga_summary *r, bool *found)
{
	sqlite3_stmt *s = query(st, sql);
	int rc;

	*found = false;
	if (s == NULL)
		return -1;
	if (text != NULL && store_bind_text(s, 1, text) != SQLITE_OK) {
		sqlite3_finalize(s);
		return store_fail(st, "cannot bind");
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		read_summary(s, r);
		*found = true;
		rc = SQLITE_DONE;
	}
	return done(st, s, rc, "cannot read sagas");
}

int
store_saga_find(struct store *st, const char *id, struct store_saga_summary *s,
                bool *found)
{
	return one_summary(st,
	                   "SELECT " SUMMARY_COLUMNS " FROM sagas "
	                   "WHERE id = ?1",
	                   id, s, found);
}

int
store_oldest_unfinished(struct store *st, struct store_saga_summary *s,
                        bool *found)
{
	return one_summary(st,
	                   "SELECT " SUMMARY_COLUMNS " FROM sagas "
	                   "WHERE status NOT IN " FINAL_STATUSES
	                   " ORDER BY started_at, id LIMIT 1",
	                   NULL, s, found);
}

int
store_timer_get(struct store *st, const char *saga_id, int64_t *seq,
                int64_t *fire_at_ms, bool *found)
{
	sqlite3_stmt *s =
	        query(st, "SELECT seq, fire_at FROM timers WHERE saga_id = ?1");
	int rc;

	*found = false;
	if (s == NULL)
		return -1;
	if (store_bind_text(s, 1, saga_id) != SQLITE_OK) {
		sqlite3_finalize(s);
		return store_fail(st, "cannot bind");
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*seq = sqlite3_column_int64(s, 0);
		*fire_at_ms = sqlite3_column_int64(s, 1);
		*found = true;
		rc = SQLITE_DONE;
	}
	return done(st, s, rc, "cannot read timers");
}

/* ---- history and statistics ---- */

static const char *
column_or_null(sqlite3_stmt *s, int i)
{
	return (const char *)sqlite3_column_text(s, i);
}

int
store_history_each(struct store *st, const char *saga_id, store_history_fn fn,
                   void *arg)
{
	sqlite3_stmt *s = query(st, "SELECT at, kind, state, status, detail, "
	                            "message_id, actor, reason FROM history "
	                            "WHERE saga_id = ?1 ORDER BY seq");
	int rc;

	if (s == NULL)
		return -1;
	if (store_bind_text(s, 1, saga_id) != SQLITE_OK) {
		sqlite3_finalize(s);
		return store_fail(st, "cannot bind");
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_history h = {
		        .saga_id = saga_id,
		        .at_ms = sqlite3_column_int64(s, 0),
		        .kind = store_column_text(s, 1),
		        .state = store_column_text(s, 2),
		        .status = store_column_text(s, 3),
		        .detail = store_column_text(s, 4),
		        .message_id = column_or_null(s, 5),
		        .actor = column_or_null(s, 6),
		        .reason = column_or_null(s, 7),
		};
		if (fn(arg, &h) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	return done(st, s, rc, "cannot read history");
}

int
store_count_by_state(struct store *st, store_state_count_fn fn, void *arg)
{
	sqlite3_stmt *s = query(st, "SELECT status, state, count(*) FROM "
	                            "sagas GROUP BY status, state "
	                            "ORDER BY status, state");
	int rc;

	if (s == NULL)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (fn(arg, store_column_text(s, 0), store_column_text(s, 1),
		       sqlite3_column_int64(s, 2)) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	return done(st, s, rc, "cannot count sagas");
}

/* The history rows where a saga's state or status changed are the
 * entries; an entry lasts until the next one. Only entries with status
 * running and a next entry count. FROM is the history read: all of it,
 * or the newest rows (store_recent_step_stays). */
#define STEP_STAYS_SQL(FROM)                                                   \
	"WITH h AS (SELECT saga_id, seq, at, state, status, "                  \
	" lag(state) OVER w AS pstate, lag(status) OVER w AS pstatus "         \
	" FROM " FROM " WHERE kind NOT IN ('ignored', 'rejected') "            \
	" WINDOW w AS (PARTITION BY saga_id ORDER BY seq)), "                  \
	"e AS (SELECT saga_id, at, state, status, lead(at) OVER "              \
	" (PARTITION BY saga_id ORDER BY seq) AS next_at FROM h "              \
	" WHERE pstate IS NULL OR pstate != state OR pstatus != status) "      \
	"SELECT state, next_at - at FROM e WHERE status = 'running' AND "      \
	"next_at IS NOT NULL ORDER BY state, 2"

/* The sagas that started within the newest ?1 history rows, and those
 * rows: a range of history's primary key (seq), so the cost is ?1 rows
 * however long the history is. */
#define RECENT_HISTORY                                                         \
	"(SELECT * FROM history WHERE seq > (SELECT max(seq) FROM history) - " \
	"?1 AND saga_id IN (SELECT saga_id FROM history WHERE seq > (SELECT "  \
	"max(seq) FROM history) - ?1 AND kind = 'start'))"

static int
step_stays(struct store *st, const char *sql, int64_t rows, store_stay_fn fn,
           void *arg)
{
	sqlite3_stmt *s = query(st, sql);
	int rc;

	if (s == NULL)
		return -1;
	if (rows > 0 && sqlite3_bind_int64(s, 1, rows) != SQLITE_OK) {
		sqlite3_finalize(s);
		return store_fail(st, "cannot bind");
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (fn(arg, store_column_text(s, 0),
		       sqlite3_column_int64(s, 1)) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	return done(st, s, rc, "cannot read history");
}

int
store_step_stays(struct store *st, store_stay_fn fn, void *arg)
{
	return step_stays(st, STEP_STAYS_SQL("history"), 0, fn, arg);
}

int
store_recent_step_stays(struct store *st, int64_t rows, store_stay_fn fn,
                        void *arg)
{
	return step_stays(st, STEP_STAYS_SQL(RECENT_HISTORY), rows, fn, arg);
}

/* ---- the console's queries ---- */

int
store_charts_each(struct store *st, store_chart_fn fn, void *arg)
{
	sqlite3_stmt *s = query(st, "SELECT version, name, file, loaded_at "
	                            "FROM charts ORDER BY name, loaded_at "
	                            "DESC, version");
	int rc;

	if (s == NULL)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (fn(arg, store_column_text(s, 0), store_column_text(s, 1),
		       store_column_text(s, 2),
		       sqlite3_column_int64(s, 3)) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	return done(st, s, rc, "cannot read charts");
}

int
store_count_by_version(struct store *st, store_version_count_fn fn, void *arg)
{
	sqlite3_stmt *s = query(st, "SELECT chart, chart_version, status, "
	                            "state, count(*) FROM sagas GROUP BY "
	                            "chart, chart_version, status, state "
	                            "ORDER BY 1, 2, 3, 4");
	int rc;

	if (s == NULL)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (fn(arg, store_column_text(s, 0), store_column_text(s, 1),
		       store_column_text(s, 2), store_column_text(s, 3),
		       sqlite3_column_int64(s, 4)) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	return done(st, s, rc, "cannot count sagas");
}

int
store_count_by_status(struct store *st, store_status_count_fn fn, void *arg)
{
	sqlite3_stmt *s = query(st, "SELECT status, count(*) FROM sagas "
	                            "GROUP BY status ORDER BY status");
	int rc;

	if (s == NULL)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (fn(arg, store_column_text(s, 0),
		       sqlite3_column_int64(s, 1)) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	return done(st, s, rc, "cannot count sagas");
}

int
store_count_updated_since(struct store *st, const char *status,
                          int64_t since_ms, int64_t *n)
{
	sqlite3_stmt *s = query(st, "SELECT count(*) FROM sagas WHERE "
	                            "status = ?1 AND updated_at >= ?2");
	int rc;

	*n = 0;
	if (s == NULL)
		return -1;
	if (store_bind_text(s, 1, status) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 2, since_ms) != SQLITE_OK) {
		sqlite3_finalize(s);
		return store_fail(st, "cannot bind");
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*n = sqlite3_column_int64(s, 0);
		rc = sqlite3_step(s);
	}
	return done(st, s, rc, "cannot count sagas");
}

int
store_count_updated_between(struct store *st, const char *status,
                            int64_t from_ms, int64_t to_ms, int64_t *n)
{
	sqlite3_stmt *s = query(st, "SELECT count(*) FROM sagas WHERE "
	                            "status = ?1 AND updated_at >= ?2 AND "
	                            "updated_at < ?3");
	int rc;

	*n = 0;
	if (s == NULL)
		return -1;
	if (store_bind_text(s, 1, status) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 2, from_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 3, to_ms) != SQLITE_OK) {
		sqlite3_finalize(s);
		return store_fail(st, "cannot bind");
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*n = sqlite3_column_int64(s, 0);
		rc = sqlite3_step(s);
	}
	return done(st, s, rc, "cannot count sagas");
}

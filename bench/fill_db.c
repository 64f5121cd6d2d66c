/* fill_db -- fills an orchestrator database with N finished sagas, for
 * bench/run's "cost of growth": throughput with 1,000,000 finished sagas
 * in the database against an empty one.
 *
 *   fill_db --db NEW --from OLD --count N
 *
 * NEW is an orchestrator database that exists (saga-orchestrator -n made
 * it: schema and chart versions) and that no daemon has open; OLD is the
 * database of a real run. The latest completed saga of OLD whose chart
 * version NEW knows is the template: each copy gets its own id
 * ("fill-0000001"...), its times shifted into the past, and every row a
 * real finished saga leaves: the saga, its history (start, sends,
 * replies, emits, finish) and its inbox entries, with message ids shaped
 * like the real ones (command ids carry the saga id; reply ids are a
 * participant name and 32 hex digits, the reply's time in ms and then 20
 * scrambled ones, as envelope_new_id makes them). One transaction, plain SQL,
 * the store's own schema.
 *
 * Prints the template and the row counts. Exit status 0 or 1.
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "db.h"
#include "number.h"

/* ?1 template id, ?2 count, ?3 newest time (ms): copy i finished at
 * ?3 - (?2 - i) * 10 ms. The reply ids: the reply's time, then a
 * scrambled function of (i, seq). */
#define SERIES                                                                 \
	"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "      \
	"WHERE i < ?2), t AS (SELECT started_at FROM src.sagas WHERE id = "    \
	"?1) "
#define NEWID  "printf('fill-%07d', n.i)"
#define OFFSET "(?3 - (?2 - n.i) * 10 - (SELECT started_at FROM t))"
#define MSGID                                                                  \
	"CASE h.kind WHEN 'start' THEN 'created-' || " NEWID                   \
	" WHEN 'send' THEN replace(h.message_id, ?1, " NEWID ") "              \
	"WHEN 'reply' THEN substr(h.message_id, 1, instr(h.message_id, "       \
	"'-')) || printf('%012x%08x%08x%04x', h.at + " OFFSET ", (n.i * "      \
	"2654435761 + h.seq * 40503) & 4294967295, (n.i * 40503 + h.seq * "    \
	"2246822519) & 4294967295, (n.i * 3266489917 + h.seq) & 65535) ELSE "  \
	"h.message_id END"

static const char *const fill_sql[] = {
        SERIES "INSERT INTO sagas(id, chart, chart_version, status, state, "
               "phase, attempt, record, trace, started_at, state_entered_at, "
               "updated_at) SELECT " NEWID ", s.chart, s.chart_version, "
               "s.status, s.state, s.phase, s.attempt, s.record, s.trace, "
               "s.started_at + " OFFSET ", s.state_entered_at + " OFFSET
               ", s.updated_at + " OFFSET " FROM n, src.sagas s "
               "WHERE s.id = ?1 ORDER BY n.i",
        SERIES "INSERT INTO history(saga_id, at, kind, state, status, detail, "
               "message_id, actor, reason) SELECT " NEWID ", h.at + " OFFSET
               ", h.kind, h.state, h.status, h.detail, " MSGID
               ", h.actor, h.reason FROM n, src.history h "
               "WHERE h.saga_id = ?1 ORDER BY n.i, h.seq",
        SERIES "INSERT INTO inbox(message_id, received_at) SELECT " MSGID
               ", h.at + " OFFSET " FROM n, src.history h WHERE h.saga_id = "
               "?1 AND h.kind IN ('start', 'reply') ORDER BY n.i, h.seq",
};

static int
run(sqlite3 *db, const char *sql, const char *tid, long n, int64_t newest)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "fill_db: %s\n", sqlite3_errmsg(db));
		return -1;
	}
	if (sqlite3_bind_text(st, 1, tid, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, n) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 3, newest) != SQLITE_OK) {
		fprintf(stderr, "fill_db: %s\n", sqlite3_errmsg(db));
		sqlite3_finalize(st);
		return -1;
	}
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		fprintf(stderr, "fill_db: %s\n", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int
count(sqlite3 *db, const char *table, long long *n)
{
	char sql[128];
	sqlite3_stmt *st;
	int rc;

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : -1;
}

/* --db NEW --from OLD --count N; 0, or -1 (usage said). */
static int
parse_args(int argc, char **argv, const char **path, const char **from, long *n)
{
	static const struct option opts[] = {
	        {"db", required_argument, NULL, 'd'},
	        {"from", required_argument, NULL, 'f'},
	        {"count", required_argument, NULL, 'n'},
	        {NULL, 0, NULL, 0},
	};
	long long ll = 0;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'd')
			*path = optarg;
		else if (c == 'f')
			*from = optarg;
		else if (c == 'n' &&
		         number_parse(optarg, 1, LONG_MAX, &ll) == 0)
			*n = (long)ll;
		else
			break;
	}
	if (c != -1 || optind != argc || *path == NULL || *from == NULL ||
	    *n <= 0 || strchr(*from, '\'') != NULL) {
		fprintf(stderr,
		        "usage: fill_db --db NEW --from OLD --count N\n");
		return -1;
	}
	return 0;
}

/* Attaches `from` and finds the saga every copy is made of: its newest
 * completed saga on a chart version `path` knows. 0, or -1 (said). */
static int
template_saga(sqlite3 *db, const char *path, const char *from, char *tid,
              size_t cap)
{
	char err[512], attach[1200];
	sqlite3_stmt *st = NULL;
	int rc;

	snprintf(attach, sizeof(attach),
	         "PRAGMA journal_mode=DELETE; PRAGMA synchronous=OFF; "
	         "PRAGMA cache_size=-262144; ATTACH '%s' AS src",
	         from);
	if (db_exec(db, attach, err, sizeof(err)) != 0) {
		fprintf(stderr, "fill_db: %s\n", err);
		return -1;
	}
	if (sqlite3_prepare_v2(
	            db,
	            "SELECT s.id FROM src.sagas s JOIN main.charts c "
	            "ON c.version = s.chart_version WHERE s.status = "
	            "'completed' ORDER BY s.updated_at DESC LIMIT 1",
	            -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "fill_db: %s\n", sqlite3_errmsg(db));
		return -1;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		snprintf(tid, cap, "%s", sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW) {
		fprintf(stderr,
		        "fill_db: %s has no completed saga on a chart version "
		        "%s knows\n",
		        from, path);
		return -1;
	}
	return 0;
}

/* n copies of tid in one transaction, then the database back in WAL
 * mode. 0, or -1 (said). */
static int
fill(sqlite3 *db, const char *tid, long n)
{
	char err[512];
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (db_begin(db, err, sizeof(err)) != 0) {
		fprintf(stderr, "fill_db: %s\n", err);
		return -1;
	}
	for (size_t i = 0; i < sizeof(fill_sql) / sizeof(fill_sql[0]); i++)
		if (run(db, fill_sql[i], tid, n,
		        (int64_t)ts.tv_sec * 1000 - 60000) != 0) {
			db_rollback(db);
			return -1;
		}
	if (db_commit(db, err, sizeof(err)) != 0 ||
	    db_exec(db, "DETACH src; PRAGMA journal_mode=WAL", err,
	            sizeof(err)) != 0) {
		fprintf(stderr, "fill_db: %s\n", err);
		return -1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	const char *path = NULL, *from = NULL;
	long n = 0;
	char err[512], tid[256] = "";
	sqlite3 *db = NULL;
	long long sagas = 0, hist = 0, inbox = 0;

	if (parse_args(argc, argv, &path, &from, &n) != 0)
		return 2;
	if (db_open(path, DB_READWRITE, &db, err, sizeof(err)) != 0) {
		fprintf(stderr, "fill_db: %s\n", err);
		return 1;
	}
	if (template_saga(db, path, from, tid, sizeof(tid)) != 0 ||
	    fill(db, tid, n) != 0) {
		db_close(db);
		return 1;
	}
	if (count(db, "sagas", &sagas) != 0 ||
	    count(db, "history", &hist) != 0 ||
	    count(db, "inbox", &inbox) != 0) {
		fprintf(stderr, "fill_db: %s\n", sqlite3_errmsg(db));
		db_close(db);
		return 1;
	}
	printf("filled %s from saga %s: %lld sagas, %lld history rows, %lld "
	       "inbox rows\n",
	       path, tid, sagas, hist, inbox);
	db_close(db);
	return 0;
}

/* db.c -- see db.h. Small on purpose: the policy (pragmas, migrations,
 * BEGIN IMMEDIATE) lives here once so no daemon forgets a per-connection
 * pragma. */
#include "db.h"
#include "walbuf.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sys/statvfs.h>

#define DB_BUSY_TIMEOUT_MS 5000

int
db_fail(sqlite3 *db, char *err, size_t errlen, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s: %s", what,
		         db != NULL ? sqlite3_errmsg(db) : "out of memory");
	return -1;
}

int
db_exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "%s",
			         msg != NULL ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

/* lib/walbuf holds a WAL's writes until the commit's sync, which
 * synchronous=FULL (2) or EXTRA (3) make: the invariant it needs, stated
 * where the pragma is set (walbuf.h, "Other connections"). */
static int
check_full(sqlite3 *db, const char *path, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int level = -1;

	if (sqlite3_prepare_v2(db, "PRAGMA synchronous", -1, &st, NULL) !=
	    SQLITE_OK)
		return db_fail(db, err, errlen, "cannot configure %s", path);
	if (sqlite3_step(st) == SQLITE_ROW)
		level = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (level < 2) {
		snprintf(err, errlen,
		         "cannot configure %s: synchronous is %d, not FULL",
		         path, level);
		return -1;
	}
	return 0;
}

/* The connection's settings. Turning a new database to WAL takes an
 * exclusive lock, and two processes opening the same new file at once (two
 * instances of a participant starting together) each hold a shared lock
 * while they wait for it: SQLite sees the deadlock and returns
 * SQLITE_BUSY at once, without the busy handler. The loser waits and
 * tries again (the file is in WAL mode by then, and the pragma only reads
 * it), up to the busy timeout. */
static int
configure(sqlite3 *db, const char *path, char *err, size_t errlen)
{
	static const char sql[] = "PRAGMA journal_mode=WAL; "
	                          "PRAGMA synchronous=FULL; "
	                          "PRAGMA foreign_keys=ON;";
	const struct timespec pause = {0, 10 * 1000000L};

	for (int waited = 0;; waited += 10) {
		int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			return check_full(db, path, err, errlen);
		if ((rc & 0xff) != SQLITE_BUSY || waited >= DB_BUSY_TIMEOUT_MS)
			return db_fail(db, err, errlen, "cannot configure %s",
			               path);
		nanosleep(&pause, NULL);
	}
}

int
db_open(const char *path, enum db_open_mode mode, sqlite3 **out, char *err,
        size_t errlen)
{
	sqlite3 *db = NULL;
	int flags = mode == DB_READONLY
	                    ? SQLITE_OPEN_READONLY
	                    : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	int rc;

	*out = NULL;
	if (mode == DB_READWRITE && walbuf_register() != SQLITE_OK) {
		snprintf(err, errlen, "cannot open %s: no VFS %s", path,
		         WALBUF_VFS);
		return -1;
	}
	rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX,
	                     mode == DB_READWRITE ? WALBUF_VFS : NULL);
	if (rc != SQLITE_OK) {
		db_fail(db, err, errlen, "cannot open %s", path);
		sqlite3_close(db);
		return -1;
	}
	sqlite3_extended_result_codes(db, 1);
	if (sqlite3_busy_timeout(db, DB_BUSY_TIMEOUT_MS) != SQLITE_OK)
		goto fail;
	if (mode == DB_READWRITE && configure(db, path, err, errlen) != 0)
		goto fail_msg;
	if (mode == DB_READONLY &&
	    db_exec(db,
	            "PRAGMA query_only=ON; SELECT count(*) FROM sqlite_schema;",
	            err, errlen) != 0)
		goto fail_msg;
	*out = db;
	return 0;
fail:
	db_fail(db, err, errlen, "cannot configure %s", path);
fail_msg:
	sqlite3_close(db);
	return -1;
}

void
db_close(sqlite3 *db)
{
	if (db != NULL)
		sqlite3_close(db);
}

static int
user_version(sqlite3 *db, int *v, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) !=
	    SQLITE_OK)
		return db_fail(db, err, errlen, "cannot read schema version");
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sqlite3_finalize(st);
		return db_fail(db, err, errlen, "cannot read schema version");
	}
	*v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return 0;
}

int
db_migrate(sqlite3 *db, const struct db_migration *m, size_t n, char *err,
           size_t errlen)
{
	int have = 0;
	char sql[64], why[512];

	if (user_version(db, &have, err, errlen) != 0)
		return -1;
	if (n > 0 && have > m[n - 1].version) {
		snprintf(err, errlen,
		         "database schema version %d is newer than this "
		         "program's %d",
		         have, m[n - 1].version);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (m[i].version <= have)
			continue;
		if (db_begin(db, err, errlen) != 0)
			return -1;
		/* read again under the write lock: another process (a second
		 * instance starting at the same moment) may have migrated */
		if (user_version(db, &have, err, errlen) != 0) {
			db_rollback(db);
			return -1;
		}
		if (m[i].version <= have) {
			db_rollback(db);
			continue;
		}
		snprintf(sql, sizeof(sql), "PRAGMA user_version=%d",
		         m[i].version);
		if (db_exec(db, m[i].sql, why, sizeof(why)) != 0 ||
		    db_exec(db, sql, why, sizeof(why)) != 0) {
			db_rollback(db);
			snprintf(err, errlen, "migration %03d_%s failed: %s",
			         m[i].version, m[i].name, why);
			return -1;
		}
		if (db_commit(db, err, errlen) != 0)
			return -1;
	}
	return 0;
}

int
db_prepare(sqlite3 *db, sqlite3_stmt **st, const char *sql, char *err,
           size_t errlen)
{
	if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st,
	                       NULL) != SQLITE_OK) {
		*st = NULL;
		return db_fail(db, err, errlen, "cannot prepare \"%.60s\"",
		               sql);
	}
	return 0;
}

int
db_begin(sqlite3 *db, char *err, size_t errlen)
{
	return db_exec(db, "BEGIN IMMEDIATE", err, errlen);
}

int
db_commit(sqlite3 *db, char *err, size_t errlen)
{
	if (db_exec(db, "COMMIT", err, errlen) != 0) {
		db_rollback(db);
		return -1;
	}
	return 0;
}

void
db_rollback(sqlite3 *db)
{
	if (!sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

static int
wal_count(void *arg, sqlite3 *db, const char *name, int pages)
{
	struct db_wal *w = arg;
	(void)db;
	(void)name;
	/* one call per database the commit wrote (main and attached
	 * shards): the largest WAL decides */
	if (pages > w->pages)
		w->pages = pages;
	return SQLITE_OK;
}

void
db_wal_defer(sqlite3 *db, struct db_wal *w)
{
	w->pages = 0;
	w->checkpoints = 0;
	sqlite3_wal_hook(db, wal_count, w); /* replaces the automatic one */
}

int
db_wal_checkpoint(sqlite3 *db, struct db_wal *w, char *err, size_t errlen)
{
	int rc;

	if (w->pages < DB_WAL_CHECKPOINT_PAGES)
		return 0;
	assert(sqlite3_get_autocommit(db)); /* never inside a transaction */
	w->pages = 0;
	rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE,
	                               NULL, NULL);
	if (rc != SQLITE_OK && rc != SQLITE_BUSY)
		return db_fail(db, err, errlen, "WAL checkpoint");
	w->checkpoints++;
	return 0;
}

int
db_space_left(sqlite3 *db, unsigned long long *bytes, char *err, size_t errlen)
{
	const char *path = sqlite3_db_filename(db, "main");
	char dir[4096];
	char *slash;
	struct statvfs vfs;

	if (path == NULL || path[0] == '\0') {
		snprintf(err, errlen, "an in-memory database has no disk");
		return -1;
	}
	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir)) {
		snprintf(err, errlen, "database path too long");
		return -1;
	}
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash != NULL)
		*slash = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	if (statvfs(dir, &vfs) != 0) {
		snprintf(err, errlen, "statvfs %s: %s", dir, strerror(errno));
		return -1;
	}
	*bytes = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
	return 0;
}

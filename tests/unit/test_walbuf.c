/* Unit tests of lib/walbuf through db_open, the path every daemon takes:
 * a commit's WAL frames reach the file in far fewer writes; another
 * connection sees each commit at once; a big transaction, frames
 * rewritten in place (a tiny page cache spilling) and a checkpoint leave
 * the database intact; a process killed in the middle of a transaction
 * loses only that transaction; a write refused by the file system (a
 * file size limit, like a full disk) fails the commit and leaves the
 * database as it was. */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db.h"
#include "testutil.h"
#include "walbuf.h"

static int
ok(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		printf("# %s: %s\n", sql, msg ? msg : "?");
	sqlite3_free(msg);
	return rc;
}

static bool
intact(sqlite3 *db)
{
	sqlite3_stmt *st;
	bool good = false;
	if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) !=
	    SQLITE_OK)
		return false;
	if (sqlite3_step(st) == SQLITE_ROW)
		good = strcmp((const char *)sqlite3_column_text(st, 0), "ok") ==
		       0;
	sqlite3_finalize(st);
	return good;
}

static sqlite3 *
open_rw(const char *path)
{
	char err[512];
	sqlite3 *db = NULL;
	if (db_open(path, DB_READWRITE, &db, err, sizeof(err)) != 0)
		printf("# %s\n", err);
	return db;
}

/* Each row a page of its own (a 3000-byte blob in 4 KiB pages). */
static int
insert_rows(sqlite3 *db, int from, int n)
{
	char sql[160];
	snprintf(sql, sizeof(sql),
	         "WITH RECURSIVE k(i) AS (SELECT %d UNION ALL SELECT i+1 FROM "
	         "k WHERE i < %d) INSERT INTO t SELECT i, randomblob(3000) "
	         "FROM k",
	         from, from + n - 1);
	return ok(db, sql);
}

static void
test_fewer_writes_and_visible(void)
{
	char *dir = testutil_tmpdir("saga-walbuf");
	char path[512];
	sqlite3 *db, *reader = NULL;
	struct walbuf_stats a, b;

	snprintf(path, sizeof(path), "%s/w.db", dir);
	CHECK((db = open_rw(path)) != NULL);
	CHECK_EQ(ok(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)"), 0);
	/* another connection, the default VFS, as sagactl reads */
	CHECK_EQ(sqlite3_open_v2(path, &reader, SQLITE_OPEN_READONLY, NULL),
	         SQLITE_OK);
	for (int i = 0; i < 20; i++) {
		walbuf_stats(&a);
		CHECK_EQ(ok(db, "BEGIN IMMEDIATE"), 0);
		CHECK_EQ(insert_rows(db, 1 + 10 * i, 10), 0);
		CHECK_EQ(ok(db, "COMMIT"), 0);
		walbuf_stats(&b);
		/* 10+ pages, two writes each, asked; one or two made */
		CHECK(b.writes_asked - a.writes_asked >= 20);
		CHECK_MSG(
		        b.writes_made - a.writes_made <= 2,
		        "commit %d: %llu writes made for %llu asked", i,
		        (unsigned long long)(b.writes_made - a.writes_made),
		        (unsigned long long)(b.writes_asked - a.writes_asked));
		CHECK_EQ((int)testutil_db_int(reader, "SELECT count(*) FROM t"),
		         10 * (i + 1));
	}
	printf("# %llu writes asked, %llu made\n",
	       (unsigned long long)b.writes_asked,
	       (unsigned long long)b.writes_made);
	sqlite3_close(reader);
	db_close(db);
	testutil_rmtree(dir);
	free(dir);
}

/* A transaction of 6 MiB (runs of WALBUF_MAX_BYTES written out as they
 * fill), then the same rows rewritten through a page cache of 4 pages:
 * SQLite spills and rewrites frames of the open transaction in place. */
static void
test_big_and_rewritten(void)
{
	char *dir = testutil_tmpdir("saga-walbuf");
	char path[512];
	sqlite3 *db;

	snprintf(path, sizeof(path), "%s/w.db", dir);
	CHECK((db = open_rw(path)) != NULL);
	CHECK_EQ(ok(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)"), 0);
	CHECK_EQ(ok(db, "BEGIN IMMEDIATE"), 0);
	CHECK_EQ(insert_rows(db, 1, 1500), 0);
	CHECK_EQ(ok(db, "COMMIT"), 0);
	CHECK_EQ(ok(db, "PRAGMA cache_size=4"), 0);
	CHECK_EQ(ok(db, "BEGIN IMMEDIATE"), 0);
	for (int round = 0; round < 3; round++)
		CHECK_EQ(ok(db, "UPDATE t SET b = zeroblob(2000 + id % 900) "
		                "WHERE id % 7 = 0"),
		         0);
	CHECK_EQ(ok(db, "COMMIT"), 0);
	db_close(db);

	CHECK((db = open_rw(path)) != NULL);
	CHECK_EQ((int)testutil_db_int(db, "SELECT count(*) FROM t"), 1500);
	CHECK_EQ((int)testutil_db_int(
	                 db, "SELECT count(*) FROM t WHERE id % 7 = 0 AND "
	                     "length(b) = 2000 + id % 900"),
	         1500 / 7);
	CHECK_EQ(ok(db, "PRAGMA wal_checkpoint(TRUNCATE)"), 0);
	CHECK_EQ((int)testutil_db_int(db, "SELECT count(*) FROM t"), 1500);
	CHECK(intact(db));
	db_close(db);
	testutil_rmtree(dir);
	free(dir);
}

/* A child commits 5 transactions, starts a sixth whose frames fill the
 * buffer, and is killed before its COMMIT: the 5 are there, the sixth is
 * not, the file is intact. */
static void
test_killed_mid_transaction(void)
{
	char *dir = testutil_tmpdir("saga-walbuf");
	char path[512];
	sqlite3 *db;
	pid_t pid;
	int status = 0;

	snprintf(path, sizeof(path), "%s/w.db", dir);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		sqlite3 *c = open_rw(path);
		if (c == NULL ||
		    ok(c, "CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)") !=
		            0)
			_exit(3);
		for (int i = 0; i < 5; i++)
			if (insert_rows(c, 1 + 10 * i, 10) != 0)
				_exit(4);
		if (ok(c, "BEGIN IMMEDIATE") != 0 ||
		    insert_rows(c, 51, 100) != 0)
			_exit(5);
		raise(SIGKILL);
		_exit(6);
	}
	CHECK(pid > 0);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	CHECK((db = open_rw(path)) != NULL);
	CHECK_EQ((int)testutil_db_int(db, "SELECT count(*) FROM t"), 50);
	CHECK(intact(db));
	CHECK_EQ(insert_rows(db, 51, 10), 0);
	CHECK_EQ((int)testutil_db_int(db, "SELECT count(*) FROM t"), 60);
	db_close(db);
	testutil_rmtree(dir);
	free(dir);
}

/* The file system refuses the run when it goes out (RLIMIT_FSIZE, as a
 * full disk would): COMMIT fails with the error, nothing of the
 * transaction is there, and with room again the next commit works. */
static void
test_refused_write_fails_commit(void)
{
	char *dir = testutil_tmpdir("saga-walbuf");
	char path[512];
	sqlite3 *db;
	struct rlimit was, small;
	int rc;

	snprintf(path, sizeof(path), "%s/w.db", dir);
	CHECK((db = open_rw(path)) != NULL);
	CHECK_EQ(ok(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)"), 0);
	CHECK_EQ(insert_rows(db, 1, 10), 0);
	CHECK_EQ(getrlimit(RLIMIT_FSIZE, &was), 0);
	signal(SIGXFSZ, SIG_IGN);
	small = was;
	small.rlim_cur = 256 * 1024; /* the WAL is about 60 KiB now */
	CHECK_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
	CHECK_EQ(ok(db, "BEGIN IMMEDIATE"), 0);
	rc = insert_rows(db, 11, 100); /* 400 KiB of frames */
	if (rc == SQLITE_OK)
		rc = ok(db, "COMMIT");
	CHECK_MSG(rc != SQLITE_OK, "a commit past the file size limit worked");
	CHECK_EQ(setrlimit(RLIMIT_FSIZE, &was), 0);
	if (!sqlite3_get_autocommit(db))
		ok(db, "ROLLBACK");
	CHECK_EQ((int)testutil_db_int(db, "SELECT count(*) FROM t"), 10);
	CHECK_EQ(insert_rows(db, 11, 100), 0);
	CHECK_EQ((int)testutil_db_int(db, "SELECT count(*) FROM t"), 110);
	CHECK(intact(db));
	db_close(db);
	CHECK((db = open_rw(path)) != NULL);
	CHECK_EQ((int)testutil_db_int(db, "SELECT count(*) FROM t"), 110);
	CHECK(intact(db));
	db_close(db);
	testutil_rmtree(dir);
	free(dir);
}

int
main(void)
{
	RUN(test_fewer_writes_and_visible);
	RUN(test_big_and_rewritten);
	RUN(test_killed_mid_transaction);
	RUN(test_refused_write_fails_commit);
	return check_summary();
}

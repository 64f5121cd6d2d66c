/* Unit tests of lib/db: pragmas, migrations (applied once, in order,
 * rolled back whole on error, newer database refused), read-only opens,
 * SQLITE_FULL surfacing as an error that leaves the data intact, and
 * processes opening one new file at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db.h"
#include "testutil.h"

static const struct db_migration good[] = {
        {1, "init", "CREATE TABLE t(a INTEGER);"},
        {2, "more",
         "ALTER TABLE t ADD COLUMN b TEXT; INSERT INTO t VALUES(1,'x');"},
};

static void
test_migrate_and_pragmas(void)
{
	char *dir = testutil_tmpdir("saga-db");
	char path[512], err[512];
	sqlite3 *db;

	CHECK(dir != NULL);
	snprintf(path, sizeof(path), "%s/a.db", dir);
	CHECK_MSG(db_open(path, DB_READWRITE, &db, err, sizeof(err)) == 0, "%s",
	          err);
	CHECK_EQ((int)testutil_db_int(db, "PRAGMA synchronous"), 2); /* FULL */
	CHECK_MSG(db_migrate(db, good, 2, err, sizeof(err)) == 0, "%s", err);
	CHECK_EQ((int)testutil_db_int(db, "PRAGMA user_version"), 2);
	CHECK_EQ((int)testutil_db_int(db, "SELECT count(*) FROM t"), 1);
	/* applying again changes nothing */
	CHECK_MSG(db_migrate(db, good, 2, err, sizeof(err)) == 0, "%s", err);
	CHECK_EQ((int)testutil_db_int(db, "SELECT count(*) FROM t"), 1);
	/* a binary that knows only migration 1 refuses the newer file */
	CHECK(db_migrate(db, good, 1, err, sizeof(err)) == -1);
	CHECK_MSG(strstr(err, "newer than this program's 1") != NULL, "%s",
	          err);
	db_close(db);

	/* read-only: reads work, writes fail */
	CHECK_MSG(db_open(path, DB_READONLY, &db, err, sizeof(err)) == 0, "%s",
	          err);
	CHECK_EQ((int)testutil_db_int(db, "SELECT count(*) FROM t"), 1);
	CHECK(db_exec(db, "INSERT INTO t VALUES(2,'y')", err, sizeof(err)) ==
	      -1);
	db_close(db);
	snprintf(path, sizeof(path), "%s/missing.db", dir);
	CHECK(db_open(path, DB_READONLY, &db, err, sizeof(err)) == -1);
	CHECK_MSG(strstr(err, "cannot open") != NULL, "%s", err);
	testutil_rmtree(dir);
	free(dir);
}

static void
test_failed_migration_rolls_back(void)
{
	static const struct db_migration bad[] = {
	        {1, "init", "CREATE TABLE t(a INTEGER);"},
	        {2, "broken",
	         "CREATE TABLE u(a); INSERT INTO nowhere VALUES(1);"},
	};
	char err[512];
	sqlite3 *db;

	CHECK(db_open(":memory:", DB_READWRITE, &db, err, sizeof(err)) == 0);
	CHECK(db_migrate(db, bad, 2, err, sizeof(err)) == -1);
	CHECK_MSG(
	        strstr(err,
	               "migration 002_broken failed: no such table: nowhere") !=
	                NULL,
	        "%s", err);
	CHECK_EQ((int)testutil_db_int(db, "PRAGMA user_version"), 1);
	CHECK_EQ((int)testutil_db_int(
	                 db,
	                 "SELECT count(*) FROM sqlite_schema WHERE name='u'"),
	         0);
	db_close(db);
}

static void
test_full_disk_keeps_data(void)
{
	char *dir = testutil_tmpdir("saga-db");
	char path[512], err[512];
	sqlite3 *db;
	int rc = 0;

	CHECK(dir != NULL);
	snprintf(path, sizeof(path), "%s/full.db", dir);
	CHECK(db_open(path, DB_READWRITE, &db, err, sizeof(err)) == 0);
	CHECK(db_exec(db, "CREATE TABLE t(x BLOB); INSERT INTO t VALUES(1);",
	              err, sizeof(err)) == 0);
	CHECK(db_exec(db, "PRAGMA max_page_count=8", err, sizeof(err)) == 0);
	CHECK(db_begin(db, err, sizeof(err)) == 0);
	for (int i = 0; i < 100 && rc == 0; i++)
		rc = db_exec(db, "INSERT INTO t VALUES(randomblob(4000))", err,
		             sizeof(err));
	CHECK_MSG(rc == -1 && strstr(err, "full") != NULL, "%s", err);
	db_rollback(db);
	CHECK_EQ((int)testutil_db_int(db, "SELECT count(*) FROM t"), 1);
	db_close(db);
	testutil_rmtree(dir);
	free(dir);
}

/* Several processes open the same new file at the same moment (two
 * instances of a participant starting together): every one of them gets
 * a working database in WAL mode with the migrations applied once. Turning
 * a new file to WAL is where SQLite returned "database is locked" at once
 * to the loser of a lock deadlock (busy handler skipped), 1 start in 10 in
 * pairs, before db_open retried it. */
static void
test_many_open_a_new_file_at_once(void)
{
	enum { ROUNDS = 100, PROCS = 4 };
	char *dir = testutil_tmpdir("saga-db-race");
	char path[512];
	int failed = 0;

	CHECK(dir != NULL);
	for (int r = 0; r < ROUNDS; r++) {
		pid_t pid[PROCS];
		snprintf(path, sizeof(path), "%s/r%d.db", dir, r);
		for (int i = 0; i < PROCS; i++) {
			pid[i] = fork();
			if (pid[i] == 0) {
				char err[512];
				sqlite3 *db;
				int rc = db_open(path, DB_READWRITE, &db, err,
				                 sizeof(err)) == 0 &&
				                         db_migrate(
				                                 db, good, 2,
				                                 err,
				                                 sizeof(err)) ==
				                                 0
				                 ? 0
				                 : 1;
				if (rc != 0)
					fprintf(stderr, "  round %d: %s\n", r,
					        err);
				_exit(rc);
			}
		}
		for (int i = 0; i < PROCS; i++) {
			int st = 0;
			if (pid[i] < 0 || waitpid(pid[i], &st, 0) != pid[i] ||
			    !WIFEXITED(st) || WEXITSTATUS(st) != 0)
				failed++;
		}
	}
	CHECK_EQ(failed, 0);
	{ /* the last file: WAL, migrated once */
		sqlite3 *db;
		char err[512];
		CHECK(db_open(path, DB_READONLY, &db, err, sizeof(err)) == 0);
		CHECK_EQ((int)testutil_db_int(db, "SELECT count(*) FROM t"), 1);
		CHECK_EQ((int)testutil_db_int(
		                 db, "SELECT journal_mode = 'wal' FROM "
		                     "pragma_journal_mode"),
		         1);
		db_close(db);
	}
	testutil_rmtree(dir);
	free(dir);
}

/* db_space_left reads the file system of the database's directory (the
 * orchestrator's /healthz says "disk full" from it), and refuses a
 * database that has no file. */
static void
test_space_left(void)
{
	char *dir = testutil_tmpdir("saga-db");
	char path[512], err[512];
	unsigned long long left = 0, want;
	struct statvfs vfs;
	sqlite3 *db;

	CHECK(dir != NULL);
	snprintf(path, sizeof(path), "%s/a.db", dir);
	CHECK_MSG(db_open(path, DB_READWRITE, &db, err, sizeof(err)) == 0, "%s",
	          err);
	CHECK_MSG(db_space_left(db, &left, err, sizeof(err)) == 0, "%s", err);
	CHECK(statvfs(dir, &vfs) == 0);
	want = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
	/* other processes write too: the same file system, give or take */
	CHECK_MSG(left + (64ull << 20) > want && want + (64ull << 20) > left,
	          "db_space_left %llu, statvfs %llu", left, want);
	db_close(db);
	CHECK(db_open(":memory:", DB_READWRITE, &db, err, sizeof(err)) == 0);
	CHECK(db_space_left(db, &left, err, sizeof(err)) == -1);
	CHECK_MSG(strstr(err, "in-memory") != NULL, "%s", err);
	db_close(db);
	testutil_rmtree(dir);
	free(dir);
}

/* db_wal_defer: no commit checkpoints by itself (the WAL only grows);
 * db_wal_checkpoint copies it once past DB_WAL_CHECKPOINT_PAGES, so the
 * next commit starts the WAL again, and nothing is lost on the way. */
static void
test_wal_checkpoint_deferred(void)
{
	char *dir = testutil_tmpdir("saga-db");
	char path[512], err[512];
	struct db_wal w;
	sqlite3 *db;

	CHECK(dir != NULL);
	snprintf(path, sizeof(path), "%s/a.db", dir);
	CHECK_MSG(db_open(path, DB_READWRITE, &db, err, sizeof(err)) == 0, "%s",
	          err);
	CHECK(db_exec(db, "CREATE TABLE t(a BLOB)", err, sizeof(err)) == 0);
	db_wal_defer(db, &w);
	/* about 1,200 pages in one commit, then a small one: SQLite's own
	 * checkpoint would have run at the first COMMIT and the second would
	 * start the WAL again */
	CHECK(db_exec(db,
	              "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
	              "FROM n WHERE i < 1200) INSERT INTO t SELECT "
	              "zeroblob(4000) FROM n",
	              err, sizeof(err)) == 0);
	CHECK_MSG(w.pages >= DB_WAL_CHECKPOINT_PAGES, "WAL %d pages", w.pages);
	CHECK(db_exec(db, "INSERT INTO t VALUES (x'01')", err, sizeof(err)) ==
	      0);
	CHECK_MSG(w.pages > 1200, "WAL %d pages: checkpointed in a COMMIT",
	          w.pages);
	CHECK_EQ((int)w.checkpoints, 0);
	/* due: one checkpoint, then the WAL starts again */
	CHECK_MSG(db_wal_checkpoint(db, &w, err, sizeof(err)) == 0, "%s", err);
	CHECK_EQ((int)w.checkpoints, 1);
	CHECK(db_exec(db, "INSERT INTO t VALUES (x'02')", err, sizeof(err)) ==
	      0);
	CHECK_MSG(w.pages < 10, "WAL %d pages after a checkpoint", w.pages);
	/* not due: nothing runs */
	CHECK(db_wal_checkpoint(db, &w, err, sizeof(err)) == 0);
	CHECK_EQ((int)w.checkpoints, 1);
	db_close(db);
	CHECK(db_open(path, DB_READONLY, &db, err, sizeof(err)) == 0);
	CHECK_EQ((int)testutil_db_int(db, "SELECT count(*) FROM t"), 1202);
	db_close(db);
	testutil_rmtree(dir);
	free(dir);
}

int
main(void)
{
	RUN(test_migrate_and_pragmas);
	RUN(test_failed_migration_rolls_back);
	RUN(test_full_disk_keeps_data);
	RUN(test_many_open_a_new_file_at_once);
	RUN(test_space_left);
	RUN(test_wal_checkpoint_deferred);
	return check_summary();
}

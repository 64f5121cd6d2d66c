/* db.h -- SQLite helpers shared by the orchestrator, sagactl and the
 * participants: open with our pragmas, apply numbered migrations, and
 * run statements with every result checked.
 *
 * Durability (NOTES-dependencies §5): every read-write open sets
 * journal_mode=WAL and synchronous=FULL (a commit is on disk when COMMIT
 * returns), busy_timeout and foreign_keys, which are per connection. A
 * read-only open (sagactl, order-api's status lookups) uses
 * SQLITE_OPEN_READONLY with a busy timeout, so it never writes the file and
 * never races the one writer (the WAL-reset bug of 3.40).
 *
 * A read-write open goes through lib/walbuf's VFS, which sends a commit's
 * WAL frames to the file in one write instead of two a page; it needs
 * synchronous=FULL, and db_open fails if the connection does not have it.
 *
 * Failure contract: every function returns 0 on success and -1 on failure
 * with a message in err ("cannot open x.db: unable to open database file");
 * on failure nothing is left half-done (a migration that fails is rolled
 * back whole; db_open closes what it opened).
 */
#ifndef SAGA_DB_H
#define SAGA_DB_H

#include <stddef.h>

#include <sqlite3.h>

/* One numbered schema step (schema/<set>/NNN_name.sql, embedded at build
 * time by cmake/embed_migrations.cmake). Versions are 1, 2, 3... */
struct db_migration {
	int version;
	const char *name;
	const char *sql;
};

enum db_open_mode {
	DB_READWRITE, /* create if missing; WAL; synchronous=FULL */
	DB_READONLY,  /* must exist */
};

int db_open(const char *path, enum db_open_mode mode, sqlite3 **out, char *err,
            size_t errlen);
/* Finalizes nothing: the caller finalizes its statements first. NULL ok. */
void db_close(sqlite3 *db);

/* Applies the migrations above PRAGMA user_version, each in its own
 * BEGIN IMMEDIATE transaction, and sets user_version. Refuses a database
 * whose version is newer than the last migration (a newer binary wrote
 * it). */
int db_migrate(sqlite3 *db, const struct db_migration *m, size_t n, char *err,
               size_t errlen);

/* Runs SQL that returns no rows (several statements allowed). */
int db_exec(sqlite3 *db, const char *sql, char *err, size_t errlen);

/* Prepares a long-lived statement (SQLITE_PREPARE_PERSISTENT). */
int db_prepare(sqlite3 *db, sqlite3_stmt **st, const char *sql, char *err,
               size_t errlen);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK. db_rollback is safe to call when no
 * transaction is open (SQLite may already have rolled back after FULL,
 * IOERR or NOMEM: NOTES §5), and reports nothing in that case. */
int db_begin(sqlite3 *db, char *err, size_t errlen);
int db_commit(sqlite3 *db, char *err, size_t errlen);
void db_rollback(sqlite3 *db);

/* The WAL checkpoint, out of the commit's way. SQLite's automatic
 * checkpoint runs inside the COMMIT that takes the WAL past 1000 pages:
 * it copies the pages into the database file and fsyncs it before COMMIT
 * returns, so whatever waited for that commit (a batch's replies, an
 * order's answer) waits for the checkpoint too. db_wal_defer replaces it
 * (sqlite3_wal_hook) by a count of the WAL's pages after each commit;
 * db_wal_checkpoint, called when the commit's effects are out, runs a
 * PASSIVE checkpoint once the count reaches DB_WAL_CHECKPOINT_PAGES. It
 * must run on the writer's connection and thread: a checkpoint on a
 * second connection while this one writes is what the WAL-reset bug of
 * 3.40 needs (NOTES §5). A reader that holds an old snapshot only makes
 * it copy less; the next one copies the rest. */
#define DB_WAL_CHECKPOINT_PAGES 1000

struct db_wal {
	int pages; /* frames in the largest WAL, as its last commit left it */
	unsigned long long checkpoints;
};

void db_wal_defer(sqlite3 *db, struct db_wal *w);
/* 0 when nothing was due or the checkpoint ran (on every attached
 * database; one that met a reader, BUSY, copied what it could); -1 (err)
 * when it failed. The count restarts from what the next commit reports. */
int db_wal_checkpoint(sqlite3 *db, struct db_wal *w, char *err, size_t errlen);

/* The bytes an unprivileged writer may still use on the file system that
 * holds db's main file (statvfs f_bavail * f_frsize). SQLite reports a
 * full disk only when a commit needs a page the WAL does not have yet,
 * which may be hundreds of transactions after the disk filled up; this
 * says it at once. -1 (err) for an in-memory database or a failing
 * statvfs. */
int db_space_left(sqlite3 *db, unsigned long long *bytes, char *err,
                  size_t errlen);

/* Copies sqlite3_errmsg with a prefix into err; returns -1 for chaining:
 * `return db_fail(db, err, errlen, "cannot insert saga %s", id);` */
int db_fail(sqlite3 *db, char *err, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

#endif

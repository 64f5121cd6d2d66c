/* store_int.h -- private to the store module (store.c, the orchestrator's
 * statements; store_query.c, the operator's queries). Nothing outside the
 * module includes it: the rest of the code asks the store (store.h).
 */
#ifndef SAGA_STORE_INT_H
#define SAGA_STORE_INT_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "db.h"
#include "engine.h"

/* The orchestrator's statements, prepared once each (store.c stmt_sql). */
enum stmt_id {
	ST_INBOX_ADD,
	ST_INBOX_PRUNE,
	ST_CHART_PUT,
	ST_CHART_GET,
	ST_SAGA_GET,
	ST_SAGA_PUT,
	ST_SAGA_PUT_KEEP_STATUS,
	ST_HISTORY_ADD,
	ST_OUTBOX_ADD,
	ST_OUTBOX_DELETE,
	ST_TIMER_SHIFT,
	ST_OUTBOX_SCAN,
	ST_OUTBOX_COUNT,
	ST_TIMER_SET,
	ST_TIMER_CANCEL,
	ST_TIMERS_DUE,
	ST_TIMER_NEXT,
	ST_COUNT_STATUS,
	ST_ACTIVE,
	ST_WAITING_VERSIONS,
	ST_COUNT_WAITING,
	ST_SAGA_EXISTS,
	ST_NODE_GET,
	ST_NODE_PUT,
	ST__COUNT
};

struct store {
	sqlite3 *db;
	sqlite3_stmt *st[ST__COUNT];
	char err[512];
	/* store_timers_due's rows, kept between calls (grown to `limit`) */
	char (*due_ids)[SAGA_ID_MAX];
	int64_t *due_seqs, *due_ats;
	size_t due_cap;
	/* databases attached by store_open_shards (s1..sN), 0 otherwise */
	size_t nattached;
	struct db_wal wal; /* the writer's: checkpoints after its commits */
};

/* Sets st->err to "what: <SQLite's message>"; returns -1. */
int store_fail(struct store *st, const char *what);

/* Binds text, or NULL when v is NULL (SQLITE_STATIC: the caller steps and
 * resets the statement before v goes away). An SQLite result code. */
int store_bind_text(sqlite3_stmt *s, int i, const char *v);

/* A text column, "" for NULL. Valid until the next step or reset. */
const char *store_column_text(sqlite3_stmt *s, int i);

#endif

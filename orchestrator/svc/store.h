/* store.h -- the orchestrator's SQLite store: sagas, history, inbox,
 * outbox, timers, chart versions and the node's identity
 * (schema/orchestrator/NNN_*.sql).
 *
 * The store is the only code that knows the schema: everyone else asks it
 * by operation, and no one gets the raw database handle.
 *
 * One writer: saga-orchestrator opens the store read-write and is the only
 * process that writes it; sagactl opens it read-only (store_open_readonly,
 * or store_open_shards for several shards' databases at once), which
 * allows only the reading functions.
 *
 * The orchestrator's statements (store.c) are prepared once
 * (SQLITE_PREPARE_PERSISTENT), reset after every use (an un-reset SELECT
 * pins a WAL snapshot: NOTES §5) and have their results checked. The
 * operator's queries (store_query.c, at the end of this file) run once per
 * sagactl command: each is prepared for the call and finalized before the
 * function returns. Writing functions are meant to run between
 * store_begin and store_commit; the durable loop puts a whole batch of
 * deliveries in one transaction.
 *
 * Failure contract: functions return 0 on success, -1 on failure with the
 * reason in store_error(st). After a failure inside a transaction the caller
 * calls store_rollback() and acknowledges nothing: SQLite may already have
 * rolled back the whole transaction (SQLITE_FULL, IOERR, NOMEM).
 */
#ifndef SAGA_STORE_H
#define SAGA_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chart.h"
#include "engine.h"
#include "value.h"

struct store;

/* Opens (creating if needed) and migrates the database. NULL on error with
 * the reason in err. */
struct store *store_open(const char *path, char *err, size_t errlen);
/* Opens an existing database read-only (no migration; refuses a schema it
 * does not know). */
struct store *store_open_readonly(const char *path, char *err, size_t errlen);
/* Finalizes every statement and closes. NULL is fine. */
void store_close(struct store *st);
const char *store_error(const struct store *st);

/* Bytes left on the database's file system (db_space_left); -1 with the
 * reason in store_error. */
int store_space_left(struct store *st, unsigned long long *bytes);

int store_begin(struct store *st);
int store_commit(struct store *st);
void store_rollback(struct store *st);
/* The WAL checkpoint, outside any transaction, once the commit's effects
 * are out (db.h's db_wal_checkpoint; store_open defers SQLite's own). */
int store_wal_checkpoint(struct store *st);

/* Forces SQLITE_FULL once the file reaches `pages` pages (0: no limit).
 * For tests and the fault suite (NOTES §5). */
int store_set_max_pages(struct store *st, long pages);

/* ---- inbox ---- */
/* Records a processed message id. *dup is true (and nothing is written)
 * when the id was already there. */
int store_inbox_add(struct store *st, const char *message_id, int64_t now_ms,
                    bool *dup);
/* Deletes up to `limit` inbox entries received before `before_ms`, oldest
 * first (an index range scan: cheap however large the inbox is); *n gets
 * the count. */
int store_inbox_prune(struct store *st, int64_t before_ms, size_t limit,
                      int64_t *n);

/* ---- charts ---- */
/* Records a chart version with its source text (no-op if known). */
int store_chart_put(struct store *st, const struct chart *c, const char *source,
                    int64_t now_ms);
/* The source and file of a recorded version; *found false if unknown.
 * *source and *file are malloc'd; the caller frees them. */
int store_chart_get(struct store *st, const char *version, char **source,
                    char **file, bool *found);

/* ---- sagas ---- */
/* Loads a saga record: *found false if there is none. On success *version
 * is the chart version it runs on, *record the stored record (a value map,
 * see saga_from_value; the caller clears it) and trace (if not NULL) the
 * traceparent the saga started with ("" if none). */
int store_saga_get(struct store *st, const char *id, char version[17],
                   struct value *record, char *trace, size_t tracecap,
                   bool *found);
/* Inserts or updates the saga (its record and the filter columns); trace
 * (or NULL) is the traceparent every message of the saga descends from.
 * status_kept: the stored saga has s's status already, so an update
 * leaves the status column alone (and with it the indexes on it, which
 * SQLite would otherwise rewrite, changed or not); a new saga gets its
 * status either way. */
int store_saga_put(struct store *st, const struct chart *c,
                   const struct saga *s, const char *trace, bool status_kept);

/* Whether saga id exists (*found). */
int store_saga_exists(struct store *st, const char *id, bool *found);

/* ---- history ---- */
struct store_history {
	const char *saga_id;
	int64_t at_ms;
	const char *kind;   /* start|reply|timeout|operator|send|emit|finish|
	                     * ignored|rejected */
	const char *state;  /* state after */
	const char *status; /* status after */
	const char *detail;
	const char *message_id; /* or NULL */
	const char *actor;      /* or NULL */
	const char *reason;     /* or NULL */
};
int store_history_add(struct store *st, const struct store_history *h);

/* ---- outbox ---- */
struct store_outbox {
	int64_t seq; /* assigned by store_outbox_add */
	const char *saga_id;
	const char *exchange;
	const char *routing_key;
	const char *reply_to; /* commands: our reply queue's key, or NULL */
	const char *message_id;
	const char *type;
	const char *traceparent; /* or NULL */
	const void *body;
	size_t body_len;
	int64_t created_ms;
};
/* Adds a message; sets m->seq. */
int store_outbox_add(struct store *st, struct store_outbox *m);
/* Deletes a confirmed message (no-op if already gone). A command
 * confirmed STORE_CONFIRM_LATE_MS or more after it was stored (the broker
 * was away) moves the timer it armed, if that timer is still armed, by the
 * delay: an attempt's timeout runs from the broker's confirm. */
#define STORE_COMMANDS_EXCHANGE "saga.commands"
#define STORE_CONFIRM_LATE_MS   1000
int store_outbox_delete(struct store *st, int64_t seq, int64_t confirmed_ms);
/* Calls fn for each message with seq > after_seq, oldest first, at most
 * `limit`; fn returning non-zero stops the scan (not an error). The
 * pointers in *m are valid only during the call. */
typedef int (*store_outbox_fn)(void *arg, const struct store_outbox *m);
int store_outbox_scan(struct store *st, int64_t after_seq, size_t limit,
                      store_outbox_fn fn, void *arg);
int store_outbox_count(struct store *st, int64_t *n);

/* ---- timers ---- */
/* Arms the saga's one timer (replacing any); armed_ms is when (the
 * step's time, the same as its outbox rows' created_ms). */
int store_timer_set(struct store *st, const char *saga_id, int64_t seq,
                    int64_t fire_at_ms, int64_t armed_ms);
int store_timer_cancel(struct store *st, const char *saga_id);
/* Calls fn for up to `limit` timers due at now_ms, earliest first. */
typedef int (*store_timer_fn)(void *arg, const char *saga_id, int64_t seq,
                              int64_t fire_at_ms);
int store_timers_due(struct store *st, int64_t now_ms, size_t limit,
                     store_timer_fn fn, void *arg);
/* The earliest pending timer, *found false if none. */
int store_timer_next(struct store *st, int64_t *fire_at_ms, bool *found);

/* ---- counts, for metrics ---- */
/* Number of sagas with this status name. */
int store_count_status(struct store *st, const char *status, int64_t *n);
/* The sagas not finished, now: running, compensating, stuck, and when
 * the oldest stuck one last changed (it became stuck then; 0: none). */
struct store_active {
	int64_t running, compensating, stuck;
	int64_t stuck_since_ms;
};
int store_active(struct store *st, struct store_active *a);

/* ---- sagas waiting long (statecharts/README.md 5.7: stuck_after) ----
 * "Waiting" sagas are those running or compensating: not finished, not
 * yet stuck. Read by the index sagas_waiting, which holds only them: the
 * cost is the work in flight, never the finished sagas. */
typedef int (*store_version_fn)(void *arg, const char *version);
/* Calls fn with each chart version some waiting saga runs on (fn
 * returning non-zero stops the scan, not an error). */
int store_waiting_versions(struct store *st, store_version_fn fn, void *arg);
/* *n: the waiting sagas of chart version `version` that entered `state`
 * before entered_before_ms. */
int store_count_waiting(struct store *st, const char *version,
                        const char *state, int64_t entered_before_ms,
                        int64_t *n);

/* ---- node: whom the database belongs to (shard.h) ---- */
/* The value of a node key ("shard", "joined_at", "ring_changed_at") into
 * buf (cut to cap); *found false and buf "" if the key is not set. */
int store_node_get(struct store *st, const char *key, char *buf, size_t cap,
                   bool *found);
/* Sets a node key, replacing its value. */
int store_node_put(struct store *st, const char *key, const char *value);

/* ---- the operator's queries (sagactl; store_query.c) ----
 * Read-only. Each callback gets pointers valid only during the call; a
 * callback returning non-zero stops the scan, which is not an error (the
 * function returns 0: the caller keeps its own reason in arg). */

/* Opens n (1..STORE_SHARDS_MAX) orchestrators' databases read-only as one:
 * the first as store_open_readonly does, each further one attached. The
 * operator's queries then see the union of their sagas, history, timers
 * and charts (each chart version once: a version is its content); the
 * orchestrator's statements see the union too. Every database must have
 * the schema version this program knows. NULL on error with the reason in
 * err. */
#define STORE_SHARDS_MAX 10 /* SQLite attaches at most 10 databases */
struct store *store_open_shards(const char *const *paths, size_t n, char *err,
                                size_t errlen);

/* Which of the open databases holds saga id: its node key "shard" into
 * shard ("none" when unsharded, else the shard's index; "" if the key is
 * unset). *found false if no database has the saga. */
int store_saga_shard(struct store *st, const char *id, char *shard, size_t cap,
                     bool *found);

/* A saga's row without its record (see store_saga_get for that). Text
 * longer than a field is cut. */
struct store_saga_summary {
	char id[SAGA_ID_MAX];
	char chart[CHART_NAME_MAX];
	char chart_version[17];
	char status[24]; /* running|compensating|completed|failed|stuck|... */
	char state[CHART_NAME_MAX];
	char phase[24];
	int attempt;
	int64_t started_ms, state_entered_ms, updated_ms;
	char trace_id[33]; /* of the traceparent it started with; "" none */
};

/* Which sagas store_list_sagas selects: every condition given must hold.
 * "Unfinished" is any status but completed, failed, aborted and
 * cancelled. */
struct store_saga_filter {
	const char *status, *chart, *state; /* equal to; NULL: any */
	const char *id_prefix;              /* id starts with; NULL: any */
	int64_t started_before_ms;          /* started before; -1: any */
	int64_t entered_before_ms;          /* unfinished and in its state since
	                                     * before; -1: any */
	bool unfinished;                    /* only unfinished sagas */
	int64_t limit;                      /* at most; -1: no limit */
	/* Text the saga's stored record contains (its msgpack bytes: order
	 * data such as a customer id or sku, saved reply fields, and the
	 * record's own keys); NULL: any. Not indexed: sagas are read newest
	 * first until `limit` match, so a rare text reads the whole table. */
	const char *data_q;
	/* Keyset paging: only sagas after (started, id) in the list's order,
	 * i.e. the last row of the previous page; after_id NULL: from the
	 * newest. A page costs the rows it reads (index sagas_by_start), not
	 * the rows before it. */
	int64_t after_started_ms;
	const char *after_id;
};

typedef int (*store_saga_fn)(void *arg, const struct store_saga_summary *s);
/* Calls fn for each saga f selects, newest first (by start, then id).
 * A zeroed filter with the times and limit -1 selects every saga. */
int store_list_sagas(struct store *st, const struct store_saga_filter *f,
                     store_saga_fn fn, void *arg);
/* Calls fn for each waiting saga (see store_waiting_versions) that
 * entered its state before entered_before_ms, the longest there first, at
 * most limit: of chart version `version` in `state`, or (both NULL) of
 * every version and state. */
int store_list_waiting(struct store *st, const char *version, const char *state,
                       int64_t entered_before_ms, int64_t limit,
                       store_saga_fn fn, void *arg);

/* Saga id's summary into *s; *found false if there is none. */
int store_saga_find(struct store *st, const char *id,
                    struct store_saga_summary *s, bool *found);
/* The unfinished saga that started first (ties: the smallest id) into *s;
 * *found false if every saga is finished. */
int store_oldest_unfinished(struct store *st, struct store_saga_summary *s,
                            bool *found);

/* The saga's pending timer; *found false if it has none. */
int store_timer_get(struct store *st, const char *saga_id, int64_t *seq,
                    int64_t *fire_at_ms, bool *found);

typedef int (*store_history_fn)(void *arg, const struct store_history *h);
/* Calls fn for each history entry of saga_id, oldest first (message_id,
 * actor and reason NULL when absent). */
int store_history_each(struct store *st, const char *saga_id,
                       store_history_fn fn, void *arg);

typedef int (*store_state_count_fn)(void *arg, const char *status,
                                    const char *state, int64_t n);
/* Calls fn with the number of sagas in each (status, state) that has
 * any, ordered by status, then state. */
int store_count_by_state(struct store *st, store_state_count_fn fn, void *arg);

typedef int (*store_stay_fn)(void *arg, const char *state, int64_t ms);
/* Step times: calls fn with every finished stay of a saga in a state while
 * running, ordered by state, then length. A stay starts at the history
 * entry where the saga's state or status changed and lasts until the next
 * such entry (ignored and rejected events are not entries); a saga still
 * in a state has no finished stay there, and time spent compensating is
 * not counted. */
int store_step_stays(struct store *st, store_stay_fn fn, void *arg);
/* The same for the sagas that started within the newest `rows` history
 * entries, over those entries only (rows > 0): what the latency is now,
 * at a cost bounded by rows whatever the history's length. */
int store_recent_step_stays(struct store *st, int64_t rows, store_stay_fn fn,
                            void *arg);

/* ---- the console's queries (console.h; store_query.c) ---- */

typedef int (*store_chart_fn)(void *arg, const char *version, const char *name,
                              const char *file, int64_t loaded_ms);
/* Calls fn for each recorded chart version, by name, then newest first. */
int store_charts_each(struct store *st, store_chart_fn fn, void *arg);

typedef int (*store_version_count_fn)(void *arg, const char *chart,
                                      const char *version, const char *status,
                                      const char *state, int64_t n);
/* Calls fn with the number of sagas in each (chart, version, status,
 * state) that has any, in that order. One pass over the table. */
int store_count_by_version(struct store *st, store_version_count_fn fn,
                           void *arg);

typedef int (*store_status_count_fn)(void *arg, const char *status, int64_t n);
/* Calls fn with the number of sagas of each status that has any, by
 * status. Reads only the index sagas_by_status (about 0.1 s a million
 * sagas, where counting by state too reads the table: 1.5 s). */
int store_count_by_status(struct store *st, store_status_count_fn fn,
                          void *arg);

/* The number of sagas with `status` last updated at or after since_ms
 * (index sagas_by_status: a range scan). */
int store_count_updated_since(struct store *st, const char *status,
                              int64_t since_ms, int64_t *n);
/* The same, updated in [from_ms, to_ms). */
int store_count_updated_between(struct store *st, const char *status,
                                int64_t from_ms, int64_t to_ms, int64_t *n);

#endif

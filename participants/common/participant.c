/* participant.c -- the participant loop (participant.h is its manual). */
#include "clock.h"
#include "participant.h"
#include "presence.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "items.h"
#include "log.h"

#define REPLIES_EXCHANGE "saga.replies"

/* A daemon's topology at most (part_config): work queues (each with its
 * .retry and .dlq), exchanges besides the framework's own two
 * (saga.replies, saga.presence) and other queues. */
#define MAX_QUEUES       8
#define MAX_EXCHANGES    14
#define MAX_EXTRA_QUEUES 16
_Static_assert(MAX_QUEUES <= BUS_MAX_CONSUME, "the bus consumes them all");

/* The framework's own tables, next to the daemon's (which are versioned
 * by PRAGMA user_version through cfg->migrations). Their columns never
 * change: a new need gets a new table, or an index created IF NOT EXISTS
 * (the ones by `at` that pruning reads: a database from before them gets
 * them at its next start, once, before the daemon consumes). */
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
        "CREATE INDEX IF NOT EXISTS part_processed_by_at"
        "  ON part_processed(at);"
        "CREATE INDEX IF NOT EXISTS part_compensated_by_at"
        "  ON part_compensated(at);";

/* A delivery as the framework settles it: a plain delivery (group -1),
 * or an item of a bundle (envelope.h), whose delivery is acked once every
 * item is settled (group: its slot in part.items). */
struct ticket {
	uint64_t ref;
	int group;
};

/* A publish whose confirm settles a ticket (a bundle of replies: one tag,
 * several entries). */
struct pending {
	uint64_t tag;
	struct ticket t;
};

struct stored {
	char id[ENVELOPE_ID_MAX], type[ENVELOPE_TYPE_MAX];
	char exchange[128], rk[256];
	int64_t expiration;
	void *body;
	size_t len;
};

/* A reply (or a bare ack) that waits for the batch's commit. */
struct deferred {
	struct ticket t;
	bool sent;
	char saga[ENVELOPE_ID_MAX], traceparent[ENVELOPE_TP_MAX];
	struct stored s; /* owns s.body */
};

struct part {
	const struct part_config *cfg;
	sqlite3 *db;
	struct bus *bus;
	sqlite3_stmt *find, *record, *late, *compensated;
	sqlite3_stmt *sp_save, *sp_release, *sp_rollback;
	sqlite3_stmt *prune_processed, *prune_compensated;
	struct pending *pend;
	size_t npend, cappend;
	uint64_t next_tag;
	struct part_stats stats;
	int max_attempts;
	/* the batch: one transaction over the deliveries of one poll, each
	 * in its own savepoint; what they send waits for the commit */
	bool in_tx;
	struct deferred *def;
	size_t ndef, capdef;
	struct items items; /* bundles with items open */
	/* pruning: retention_ms 0 keeps everything; last_prune_ms is when
	 * pruning last found nothing more (or the start); `pruning` counts
	 * the rows the open transaction deleted */
	int64_t retention_ms, last_prune_ms;
	uint64_t pruning;
	struct presence_announce presence; /* name "" when not announcing */
	int64_t announced_ms;
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
}

/* ---- settling: plain deliveries and bundles' items ---- */

/* The delivery (or item) is done with: acked (a bundle once all its
 * items are). */
static void
settle(struct part *p, struct ticket t)
{
	uint64_t ref = t.ref;

	if (t.group < 0 ||
	    items_settle(&p->items, (size_t)t.group, false, &ref) == ITEMS_ACK)
		bus_ack(p->bus, ref, false);
}

/* The delivery goes round its retry queue (a bundle as a whole, once). */
static void
settle_reject(struct part *p, struct ticket t)
{
	uint64_t ref = t.ref;

	if (t.group < 0 || items_settle(&p->items, (size_t)t.group, true,
	                                &ref) == ITEMS_REJECT)
		bus_reject(p->bus, ref, false);
}

/* ---- acking after the confirm ---- */

static int
pend_add(struct part *p, uint64_t tag, struct ticket t)
{
	if (p->npend == p->cappend) {
		size_t cap = p->cappend ? p->cappend * 2 : 64;
		struct pending *n = realloc(p->pend, cap * sizeof(*n));
		if (n == NULL)
			return -1;
		p->pend = n;
		p->cappend = cap;
	}
	p->pend[p->npend].tag = tag;
	p->pend[p->npend].t = t;
	p->npend++;
	return 0;
}

static void
on_confirm(void *arg, uint64_t tag, enum bus_confirm c)
{
	struct part *p = arg;
	bool warned = false;

	for (size_t i = 0; i < p->npend;) {
		if (p->pend[i].tag != tag) {
			i++;
			continue;
		}
		if (c == BUS_RETURNED && !warned) {
			log_warnx("a reply was unroutable (no queue bound): "
			          "dropped; the orchestrator will time out "
			          "and retry");
			warned = true;
		}
		struct ticket t = p->pend[i].t;
		p->pend[i] = p->pend[--p->npend];
		settle(p, t);
	}
}

/* Publishes m and acks the delivery `ref` once the broker confirms it. If
 * the publish is refused (invalid), the delivery is acked anyway: it can
 * never be published, and retrying would not change that. */
static void
publish_then_ack(struct part *p, const struct bus_message *m, struct ticket t)
{
	uint64_t tag = ++p->next_tag;

	if (pend_add(p, tag, t) != 0) {
		log_error("out of memory: leaving a delivery unacked");
		return;
	}
	if (bus_publish(p->bus, m, tag) != 0) {
		log_error("cannot publish %s (%s): invalid message", m->type,
		          m->message_id);
		p->npend--;
		settle(p, t);
	}
}

/* A copy of the delivery (an item of a bundle: alone, as a v1 message) to
 * Q.<suffix>, then the ack: to Q.dlq with the reason, or to Q.retry with
 * the attempts made (an item cannot be rejected alone). */
static void
copy_to(struct part *p, const struct bus_delivery *d, struct ticket t,
        const char *suffix, const char *why, int64_t attempts)
{
	char rk[256], id[ENVELOPE_ID_MAX];
	struct bus_message m = {0};

	snprintf(rk, sizeof(rk), "%s.%s", d->queue, suffix);
	if (d->message_id[0] != '\0')
		snprintf(id, sizeof(id), "%s", d->message_id);
	else
		envelope_new_id(id, sizeof(id), "dlq");
	m.exchange = "";
	m.routing_key = rk;
	m.message_id = id;
	m.correlation_id = d->correlation_id[0] ? d->correlation_id : NULL;
	m.type = d->type[0] ? d->type : NULL;
	m.reply_to = d->reply_to[0] ? d->reply_to : NULL; /* for a replay */
	m.traceparent = d->traceparent[0] ? d->traceparent : NULL;
	m.content_type = d->content_type[0] ? d->content_type : NULL;
	m.error = why;
	m.attempts = attempts;
	m.timestamp_ms = d->timestamp_ms;
	m.body = d->body;
	m.len = d->len;
	publish_then_ack(p, &m, t);
}

static void
dead_letter(struct part *p, const struct bus_delivery *d, struct ticket t,
            const char *why)
{
	p->stats.dead_lettered++;
	log_warnx("saga=%s dead-lettered %s from %s to %s.dlq: %s",
	          d->correlation_id, d->message_id, d->queue, d->queue, why);
	copy_to(p, d, t, "dlq", why, 0);
}

/* ---- the stored reply ---- */

static void
publish_stored(struct part *p, const struct deferred *f)
{
	struct bus_message m = {0};

	if (f->s.type[0] == '\0') { /* nothing to send */
		settle(p, f->t);
		return;
	}
	m.exchange = f->s.exchange;
	m.routing_key = f->s.rk;
	m.message_id = f->s.id;
	m.correlation_id = f->saga;
	m.type = f->s.type;
	m.traceparent = f->traceparent[0] ? f->traceparent : NULL;
	m.timestamp_ms = clock_wall_ms();
	m.expiration_ms = f->s.expiration;
	m.body = f->s.body;
	m.len = f->s.len;
	publish_then_ack(p, &m, f->t);
}

/* A reply can travel in a bundle when its command came in one (so its
 * orchestrator reads bundles) and it is a plain reply (no TTL). */
static bool
bundlable(const struct deferred *f)
{
	return f->t.group >= 0 && !f->sent && f->s.type[0] != '\0' &&
	       f->s.expiration == 0;
}

/* Sends def[i] and the later replies bound for the same place in one
 * bundle; 0 if it did, -1 if there was nothing to bundle (or it could not
 * be encoded): the caller sends def[i] alone. */
static int
publish_bundle(struct part *p, size_t i)
{
	struct envelope_item items[ENVELOPE_BUNDLE_MAX];
	size_t idx[ENVELOPE_BUNDLE_MAX], n = 0;
	const struct deferred *f = &p->def[i];
	struct bus_message m = {0};
	char id[ENVELOPE_ID_MAX], *body = NULL;
	size_t len = 0;
	uint64_t tag;

	for (size_t j = i; j < p->ndef && n < ENVELOPE_BUNDLE_MAX; j++) {
		const struct deferred *g = &p->def[j];
		if (!bundlable(g) || strcmp(g->s.exchange, f->s.exchange) ||
		    strcmp(g->s.rk, f->s.rk))
			continue;
		items[n] = (struct envelope_item){g->s.body, g->s.len,
		                                  g->traceparent};
		idx[n++] = j;
	}
	if (n < 2 || envelope_new_id(id, sizeof(id), p->cfg->name) != 0 ||
	    envelope_bundle_encode(items, n, &body, &len) != 0)
		return -1;
	tag = ++p->next_tag;
	for (size_t k = 0; k < n; k++)
		if (pend_add(p, tag, p->def[idx[k]].t) != 0) {
			p->npend -= k;
			free(body);
			return -1;
		}
	m.exchange = f->s.exchange;
	m.routing_key = f->s.rk;
	m.message_id = id;
	m.type = ENVELOPE_BUNDLE_TYPE;
	m.body = body;
	m.len = len;
	if (bus_publish(p->bus, &m, tag) != 0) {
		p->npend -= n;
		free(body);
		return -1;
	}
	free(body);
	for (size_t k = 0; k < n; k++)
		p->def[idx[k]].sent = true;
	return 0;
}

/* Queues what a delivery sends for after the commit; takes s->body. */
static void
defer(struct part *p, const struct bus_delivery *d, struct ticket t,
      struct stored *s, const char *saga)
{
	struct deferred *f;

	if (p->ndef == p->capdef) {
		size_t cap = p->capdef ? p->capdef * 2 : 64;
		struct deferred *n = realloc(p->def, cap * sizeof(*n));
		if (n == NULL) {
			log_error("out of memory: leaving a delivery unacked");
			return;
		}
		p->def = n;
		p->capdef = cap;
	}
	f = &p->def[p->ndef++];
	f->t = t;
	f->sent = false;
	snprintf(f->saga, sizeof(f->saga), "%s", saga);
	snprintf(f->traceparent, sizeof(f->traceparent), "%s", d->traceparent);
	f->s = *s;
	s->body = NULL;
}

/* Runs one of the prepared savepoint statements. */
static int
sp_step(struct part *p, sqlite3_stmt *st, char *err, size_t errlen)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		snprintf(err, errlen, "%s: %s", sqlite3_sql(st),
		         sqlite3_errmsg(p->db));
		return -1;
	}
	return 0;
}

/* One savepoint per delivery inside the batch's transaction. */
static int
sp_begin(struct part *p, char *err, size_t errlen)
{
	if (!p->in_tx) {
		if (db_begin(p->db, err, errlen) != 0)
			return -1;
		p->in_tx = true;
	}
	return sp_step(p, p->sp_save, err, errlen);
}

static void
sp_undo(struct part *p)
{
	char err[256];
	if (p->in_tx && (sp_step(p, p->sp_rollback, err, sizeof(err)) != 0 ||
	                 sp_step(p, p->sp_release, err, sizeof(err)) != 0))
		log_error("%s", err);
}

static int
sp_keep(struct part *p, char *err, size_t errlen)
{
	return sp_step(p, p->sp_release, err, errlen);
}

/* Commits the batch, then sends its replies (each command acked when its
 * reply is confirmed). If the commit fails nothing of it happened: every
 * delivery goes round the retry queue. */
static void
batch_end(struct part *p)
{
	char err[512];
	bool ok;

	if (!p->in_tx)
		return;
	ok = db_commit(p->db, err, sizeof(err)) == 0;
	p->in_tx = false;
	if (ok)
		p->stats.pruned += p->pruning;
	p->pruning = 0;
	if (!ok) {
		db_rollback(p->db);
		log_error("commit of %zu messages failed, retrying them: %s",
		          p->ndef, err);
	}
	for (size_t i = 0; i < p->ndef; i++) {
		if (!ok)
			settle_reject(p, p->def[i].t);
		else if (!p->def[i].sent &&
		         (!bundlable(&p->def[i]) || publish_bundle(p, i) != 0))
			publish_stored(p, &p->def[i]);
	}
	for (size_t i = 0; i < p->ndef; i++)
		free(p->def[i].s.body);
	p->ndef = 0;
}

/* ---- pruning (participant.h, "Bounded storage") ---- */

/* Deletes up to PART_PRUNE_BATCH rows of st's table older than
 * before_ms, oldest first; *n gets the count. -1 on an SQLite error
 * (logged). */
static int
prune_table(struct part *p, sqlite3_stmt *st, int64_t before_ms, int64_t *n)
{
	int rc = SQLITE_MISUSE;

	if (sqlite3_bind_int64(st, 1, before_ms) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 2, PART_PRUNE_BATCH) == SQLITE_OK)
		rc = sqlite3_step(st);
	*n = rc == SQLITE_DONE ? sqlite3_changes(p->db) : 0;
	if (rc != SQLITE_DONE)
		log_error("cannot prune: %s: %s", sqlite3_errmsg(p->db),
		          sqlite3_sql(st));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* One share of the pruning, in the batch's transaction (begun here when
 * idle, committed by batch_end) and its own savepoint: a failure is
 * logged, undone alone and tried again after PART_PRUNE_EVERY_MS. While
 * a share finds a full batch, the next turn takes another. */
static void
prune_step(struct part *p)
{
	int64_t now = clock_wall_ms(), a = 0, b = 0;
	char err[512];

	if (p->retention_ms <= 0 ||
	    now - p->last_prune_ms < PART_PRUNE_EVERY_MS)
		return;
	if (sp_begin(p, err, sizeof(err)) != 0) {
		log_error("cannot prune: %s", err);
		p->last_prune_ms = now;
		return;
	}
	if (prune_table(p, p->prune_processed, now - p->retention_ms, &a) ||
	    (a < PART_PRUNE_BATCH &&
	     prune_table(p, p->prune_compensated,
	                 now - p->retention_ms * PART_COMPENSATED_FACTOR,
	                 &b))) {
		sp_undo(p);
		p->last_prune_ms = now;
		return;
	}
	if (sp_keep(p, err, sizeof(err)) != 0) {
		log_error("cannot prune: %s", err);
		sp_undo(p);
		p->last_prune_ms = now;
		return;
	}
	p->pruning += (uint64_t)(a + b);
	if (a < PART_PRUNE_BATCH && b < PART_PRUNE_BATCH)
		p->last_prune_ms = now;
}

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
	sqlite3_reset(p->find);
	if (sqlite3_bind_text(p->find, 1, id, -1, SQLITE_STATIC) != SQLITE_OK)
		return -1;
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
		if (n > 0) {
			s->body = malloc((size_t)n);
			if (s->body == NULL)
				ret = -1;
			else
				memcpy(s->body, b, (size_t)n);
			s->len = (size_t)n;
		}
	}
	if (ret < 0)
		log_error("cannot read part_processed: %s",
		          sqlite3_errmsg(p->db));
	sqlite3_reset(p->find);
	sqlite3_clear_bindings(p->find);
	return ret;
}

static int
record_processed(struct part *p, const struct envelope *in,
                 const struct stored *s)
{
	sqlite3_stmt *st = p->record;
	int rc;

	sqlite3_reset(st);
	if (sqlite3_bind_text(st, 1, in->id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 2, in->saga, -1, SQLITE_STATIC) !=
	            SQLITE_OK ||
	    sqlite3_bind_text(st, 3, in->type, -1, SQLITE_STATIC) !=
	            SQLITE_OK ||
	    sqlite3_bind_text(st, 4, s->id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 5, s->type, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 6, s->exchange, -1, SQLITE_STATIC) !=
	            SQLITE_OK ||
	    sqlite3_bind_text(st, 7, s->rk, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 8, s->expiration) != SQLITE_OK ||
	    (s->len > 0 ? sqlite3_bind_blob(st, 9, s->body, (int)s->len,
	                                    SQLITE_STATIC)
	                : sqlite3_bind_null(st, 9)) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 10, clock_wall_ms()) != SQLITE_OK)
		goto fail;
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		goto fail;
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return 0;
fail:
	log_error("cannot record %s: %s", in->id, sqlite3_errmsg(p->db));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return -1;
}

/* 1 if (saga, command) was compensated, 0 if not, -1 error. */
static int
was_compensated(struct part *p, const char *saga, const char *command)
{
	int rc;

	sqlite3_reset(p->late);
	if (sqlite3_bind_text(p->late, 1, saga, -1, SQLITE_STATIC) !=
	            SQLITE_OK ||
	    sqlite3_bind_text(p->late, 2, command, -1, SQLITE_STATIC) !=
	            SQLITE_OK)
		return -1;
	rc = sqlite3_step(p->late);
	sqlite3_reset(p->late);
	sqlite3_clear_bindings(p->late);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static int
mark_compensated(struct part *p, const char *saga, const char *command)
{
	int rc;

	sqlite3_reset(p->compensated);
	if (sqlite3_bind_text(p->compensated, 1, saga, -1, SQLITE_STATIC) !=
	            SQLITE_OK ||
	    sqlite3_bind_text(p->compensated, 2, command, -1, SQLITE_STATIC) !=
	            SQLITE_OK ||
	    sqlite3_bind_int64(p->compensated, 3, clock_wall_ms()) != SQLITE_OK)
		return -1;
	rc = sqlite3_step(p->compensated);
	sqlite3_reset(p->compensated);
	sqlite3_clear_bindings(p->compensated);
	return rc == SQLITE_DONE ? 0 : -1;
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
seal_reply(struct part *p, const struct bus_delivery *d,
           const struct envelope *in, struct part_reply *r, struct stored *s)
{
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
	e.ts = clock_wall_ms();
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
	         : d->reply_to[0]  ? d->reply_to
	                           : "orchestrator");
	s->expiration = r->expiration_ms;
	s->body = body;
	s->len = len;
	envelope_clear(&e);
	return 0;
}

/* Rolls back and sends the delivery round the retry queue, or to the DLQ
 * past its attempts. */
static void
retry_later(struct part *p, const struct bus_delivery *d, struct ticket t,
            int attempt, const char *why)
{
	sp_undo(p);
	if (attempt >= p->max_attempts) {
		char reason[512];
		snprintf(reason, sizeof(reason), "failed %d times: %s", attempt,
		         why);
		dead_letter(p, d, t, reason);
		return;
	}
	p->stats.retried++;
	log_warnx("saga=%s %s attempt %d failed, retrying: %s",
	          d->correlation_id, d->type, attempt, why);
	if (t.group < 0)
		bus_reject(p->bus, d->ref, false); /* Q -> Q.retry -> Q */
	else /* an item alone, its attempts in a header */
		copy_to(p, d, t, "retry", NULL, attempt);
}

/* One command: d is the delivery, or (t.group >= 0) one item of a bundle
 * with the bundle's properties but its own body and traceparent. */
static void
handle(struct part *p, const struct bus_delivery *dv, struct ticket t,
       int attempt)
{
	struct bus_delivery item;
	const struct bus_delivery *d = dv;
	struct envelope in;
	struct part_reply r;
	struct stored s;
	const struct part_command *cmd;
	char err[512], why[512] = "";
	int rc;
	enum part_verdict v;

	envelope_init(&in);
	memset(&r, 0, sizeof(r));
	value_set_map(&r.payload);
	memset(&s, 0, sizeof(s));
	if (envelope_decode(d->body, d->len, &in, err, sizeof(err)) != 0) {
		char reason[600];
		snprintf(reason, sizeof(reason), "cannot decode: %s", err);
		dead_letter(p, d, t, reason);
		goto out;
	}
	if (t.group >= 0) { /* an item's own properties, for its copies */
		item = *dv;
		item.message_id = in.id;
		item.correlation_id = in.saga;
		item.type = in.type;
		item.timestamp_ms = in.ts;
		d = &item;
	}
	cmd = find_command(p->cfg, in.type);
	if (cmd == NULL) {
		char reason[300];
		snprintf(reason, sizeof(reason), "unknown message type %s",
		         in.type);
		dead_letter(p, d, t, reason);
		goto out;
	}
	if (sp_begin(p, err, sizeof(err)) != 0) {
		retry_later(p, d, t, attempt, err);
		goto out;
	}
	rc = find_processed(p, in.id, &s);
	if (rc < 0) {
		retry_later(p, d, t, attempt, "cannot read the inbox");
		goto out;
	}
	if (rc == 1) {
		sp_undo(p);
		p->stats.replayed++;
		log_info("saga=%s %s %s seen before: reply %s sent again",
		         in.saga, in.type, in.id, s.type[0] ? s.type : "none");
		defer(p, d, t, &s, in.saga);
		goto out;
	}
	rc = cmd->refusal != NULL ? was_compensated(p, in.saga, in.type) : 0;
	if (rc < 0) {
		retry_later(p, d, t, attempt, "cannot read part_compensated");
		goto out;
	}
	if (rc == 1) {
		p->stats.refused_late++;
		snprintf(r.type, sizeof(r.type), "%s", cmd->refusal);
		value_map_put_str(&r.payload, "reason",
		                  "already compensated: refused");
		log_warnx("saga=%s %s arrived after its compensation: "
		          "answering %s",
		          in.saga, in.type, cmd->refusal);
		v = PART_DONE;
	} else {
		v = cmd->fn(p->cfg->arg, p->db, &in, attempt, &r, why,
		            sizeof(why));
	}
	if (v == PART_RETRY) {
		retry_later(p, d, t, attempt,
		            why[0] ? why : "transient failure");
		goto out;
	}
	if (v == PART_REFUSE) {
		sp_undo(p);
		dead_letter(p, d, t, why[0] ? why : "refused");
		goto out;
	}
	if (seal_reply(p, d, &in, &r, &s) != 0) {
		sp_undo(p);
		dead_letter(p, d, t, "cannot encode the reply");
		goto out;
	}
	if ((cmd->undoes != NULL &&
	     mark_compensated(p, in.saga, cmd->undoes) != 0) ||
	    record_processed(p, &in, &s) != 0 ||
	    sp_keep(p, err, sizeof(err)) != 0) {
		retry_later(p, d, t, attempt,
		            err[0] ? err : "cannot record the message");
		goto out;
	}
	p->stats.handled++;
	log_info("saga=%s step=%s %s -> %s", in.saga, in.step, in.type,
	         s.type[0] ? s.type : "(no reply)");
	defer(p, d, t, &s, in.saga);
out:
	free(s.body);
	value_clear(&r.payload);
	envelope_clear(&in);
}

/* A bundle: each item handled as if it came alone; the delivery is acked
 * when every item is settled. A bundle that cannot be decoded goes to
 * Q.dlq whole. */
static void
on_bundle(struct part *p, const struct bus_delivery *d)
{
	struct envelope_bundle b;
	char err[512];
	int g;

	if (envelope_bundle_decode(d->body, d->len, &b, err, sizeof(err)) !=
	    0) {
		char reason[600];
		snprintf(reason, sizeof(reason), "cannot decode the bundle: %s",
		         err);
		dead_letter(p, d, (struct ticket){d->ref, -1}, reason);
		return;
	}
	g = (int)items_open(&p->items, d->ref, b.n);
	if (g < 0) {
		log_error("out of memory: leaving a bundle unacked");
	} else {
		for (size_t i = 0; i < b.n; i++) {
			struct bus_delivery item = *d;
			item.body = b.items[i].body;
			item.len = b.items[i].len;
			item.traceparent = b.items[i].traceparent;
			item.message_id = "";
			item.correlation_id = "";
			item.type = "";
			item.attempts = 0;
			handle(p, &item, (struct ticket){d->ref, g},
			       (int)d->rejected_count + 1);
		}
	}
	envelope_bundle_clear(&b);
}

static void
on_delivery(void *arg, const struct bus_delivery *d)
{
	struct part *p = arg;
	struct ticket t = {d->ref, -1};

	if (d->content_type[0] != '\0' &&
	    strcmp(d->content_type, "application/msgpack") != 0) {
		char reason[300];
		snprintf(reason, sizeof(reason),
		         "content type \"%.100s\" is not application/msgpack",
		         d->content_type);
		dead_letter(p, d, t, reason);
		return;
	}
	if (strcmp(d->type, ENVELOPE_BUNDLE_TYPE) == 0) {
		on_bundle(p, d);
		return;
	}
	handle(p, d, t, (int)(d->attempts + d->rejected_count) + 1);
}

/* ---- set-up ---- */

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
	        {&p->prune_processed,
	         "DELETE FROM part_processed WHERE message_id IN (SELECT "
	         "message_id FROM part_processed WHERE at < ?1 ORDER BY at "
	         "LIMIT ?2)"},
	        {&p->prune_compensated,
	         "DELETE FROM part_compensated WHERE (saga_id, command) IN "
	         "(SELECT saga_id, command FROM part_compensated WHERE at < ?1 "
	         "ORDER BY at LIMIT ?2)"},
	        {&p->sp_save, "SAVEPOINT msg"},
	        {&p->sp_release, "RELEASE msg"},
	        {&p->sp_rollback, "ROLLBACK TO msg"},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (db_prepare(p->db, t[i].st, t[i].sql, err, errlen) != 0)
			return -1;
	return 0;
}

static int
open_db(struct part *p, char *err, size_t errlen)
{
	const struct part_config *cfg = p->cfg;

	if (db_open(cfg->db_path, DB_READWRITE, &p->db, err, errlen) != 0 ||
	    db_migrate(p->db, cfg->migrations, cfg->nmigrations, err, errlen) !=
	            0 ||
	    db_exec(p->db, framework_sql, err, errlen) != 0 ||
	    prepare_all(p, err, errlen) != 0)
		return -1;
	if (cfg->on_open != NULL && cfg->on_open(cfg->arg, p->db, err, errlen))
		return -1;
	return 0;
}

/* The topology: the daemon's plus, for each work queue Q, Q.retry and
 * Q.dlq, and saga.replies. */
static int
open_bus(struct part *p, char *err, size_t errlen)
{
	const struct part_config *cfg = p->cfg;
	char names[MAX_QUEUES][3][256];
	struct bus_exchange ex[2 + MAX_EXCHANGES];
	struct bus_queue qs[MAX_QUEUES * 3 + MAX_EXTRA_QUEUES];
	size_t nex = 0, nq = 0;
	struct bus_topology topo;
	struct bus_config bc = {0};

	if (cfg->nqueues > MAX_QUEUES || cfg->nexchanges > MAX_EXCHANGES ||
	    cfg->nextra_queues > MAX_EXTRA_QUEUES) {
		snprintf(err, errlen, "topology too large");
		return -1;
	}
	ex[nex++] =
	        (struct bus_exchange){REPLIES_EXCHANGE, "direct", NULL, NULL};
	if (cfg->participant != NULL)
		ex[nex++] = (struct bus_exchange){PRESENCE_EXCHANGE, "fanout",
		                                  NULL, NULL};
	for (size_t i = 0; i < cfg->nexchanges; i++)
		ex[nex++] = cfg->exchanges[i];
	for (size_t i = 0; i < cfg->nqueues; i++) {
		snprintf(names[i][0], 256, "%s", cfg->queues[i]);
		snprintf(names[i][1], 256, "%s.retry", cfg->queues[i]);
		snprintf(names[i][2], 256, "%s.dlq", cfg->queues[i]);
		qs[nq++] = (struct bus_queue){
		        .name = names[i][0], .dlx = "", .dlrk = names[i][1]};
		qs[nq++] = (struct bus_queue){
		        .name = names[i][1],
		        .dlx = "",
		        .dlrk = names[i][0],
		        .ttl_ms = cfg->retry_ms > 0 ? cfg->retry_ms
		                                    : PART_RETRY_MS};
		qs[nq++] = (struct bus_queue){.name = names[i][2]};
	}
	for (size_t i = 0; i < cfg->nextra_queues; i++)
		qs[nq++] = cfg->extra_queues[i];
	topo = (struct bus_topology){ex, nex,           qs,
	                             nq, cfg->bindings, cfg->nbindings};
	bc.url = cfg->url;
	bc.name = cfg->name;
	bc.ca_file = getenv("SAGA_AMQP_CA");
	bc.cert_file = getenv("SAGA_AMQP_CERT");
	bc.key_file = getenv("SAGA_AMQP_KEY");
	bc.prefetch = cfg->prefetch ? cfg->prefetch : 50;
	bc.queue_type = getenv("SAGA_QUEUE_TYPE");
	bc.topology = &topo; /* copied by bus_open */
	bc.consume = cfg->queues;
	bc.nconsume = cfg->nqueues;
	p->bus = bus_open(&bc, err, errlen);
	return p->bus != NULL ? 0 : -1;
}

/* Is q one of the daemon's work queues? */
static bool
work_queue(const struct part_config *cfg, const char *q)
{
	for (size_t i = 0; q != NULL && i < cfg->nqueues; i++)
		if (strcmp(cfg->queues[i], q) == 0)
			return true;
	return false;
}

static void
add_key(struct presence_announce *a, const char *key)
{
	if (a->nkeys < PRESENCE_MAX_KEYS)
		snprintf(a->keys[a->nkeys++], sizeof(a->keys[0]), "%s", key);
	else
		log_warnx("more than %d bindings: presence lists the first",
		          PRESENCE_MAX_KEYS);
}

/* What this instance announces: the keys that reach its work queues. */
static void
presence_init(struct part *p)
{
	const struct part_config *cfg = p->cfg;
	struct presence_announce *a = &p->presence;

	memset(a, 0, sizeof(*a));
	if (cfg->participant == NULL)
		return;
	snprintf(a->name, sizeof(a->name), "%s", cfg->participant);
	snprintf(a->instance, sizeof(a->instance), "%s/%ld",
	         cfg->instance != NULL ? cfg->instance : "", (long)getpid());
	a->interval_ms = PRESENCE_INTERVAL_MS;
	for (size_t i = 0; i < cfg->nbindings; i++) {
		const struct bus_binding *b = &cfg->bindings[i];
		if (!work_queue(cfg, b->queue))
			continue;
		if (b->key != NULL && b->key[0] != '\0')
			add_key(a, b->key);
		else
			a->fallback = true;
	}
	for (size_t i = 0; a->fallback && i < cfg->nbindings; i++) {
		const struct bus_binding *b = &cfg->bindings[i];
		if (b->dest_exchange != NULL && b->key != NULL &&
		    strcmp(b->exchange, "saga.commands") == 0)
			add_key(a, b->key);
	}
}

/* Every PRESENCE_INTERVAL_MS while connected: "I take these commands".
 * Not persistent, expiring: an old one means nothing. Its confirm (tag 0)
 * matches no delivery. */
static void
announce(struct part *p)
{
	struct envelope e;
	struct bus_message m = {0};
	char *body = NULL;
	size_t len = 0;
	int64_t now = clock_wall_ms();

	if (p->presence.name[0] == '\0' || !bus_connected(p->bus) ||
	    now - p->announced_ms < PRESENCE_INTERVAL_MS)
		return;
	p->announced_ms = now;
	if (presence_encode(&p->presence, now, &e) != 0 ||
	    envelope_encode(&e, &body, &len) != 0) {
		envelope_clear(&e);
		log_error("cannot encode the presence announcement");
		return;
	}
	m.exchange = PRESENCE_EXCHANGE;
	m.routing_key = "";
	m.message_id = e.id;
	m.type = PRESENCE_TYPE;
	m.timestamp_ms = now;
	m.transient = true;
	m.expiration_ms = PRESENCE_TTL_MS;
	m.body = body;
	m.len = len;
	if (bus_publish(p->bus, &m, 0) != 0)
		log_warnx("cannot announce presence");
	free(body);
	envelope_clear(&e);
}

static void
part_free(struct part *p)
{
	sqlite3_finalize(p->find);
	sqlite3_finalize(p->record);
	sqlite3_finalize(p->late);
	sqlite3_finalize(p->compensated);
	sqlite3_finalize(p->sp_save);
	sqlite3_finalize(p->sp_release);
	sqlite3_finalize(p->sp_rollback);
	sqlite3_finalize(p->prune_processed);
	sqlite3_finalize(p->prune_compensated);
	part_prepared_release(p->db);
	db_close(p->db);
	bus_close(p->bus);
	free(p->pend);
	free(p->def);
	items_free(&p->items);
}

int
part_run(const struct part_config *cfg, const volatile sig_atomic_t *stop,
         char *err, size_t errlen)
{
	struct part p;
	struct part_config c = *cfg;
	struct bus_handlers h = {on_delivery, on_confirm, &p};
	char cerr[512];
	const struct bus_stats *bs;

	/* A delivery is acked when its reply is confirmed, so the window
	 * must cover the broker's confirm latency (it grows with load) times
	 * the rate: 50 caps a participant at 50 per confirm round trip. */
	if (c.prefetch == 0)
		c.prefetch = PART_PREFETCH;
	memset(&p, 0, sizeof(p));
	p.cfg = &c;
	p.max_attempts =
	        cfg->max_attempts > 0 ? cfg->max_attempts : PART_MAX_ATTEMPTS;
	if (retention_of(cfg, p.max_attempts, &p.retention_ms, err, errlen))
		return -1;
	p.last_prune_ms = clock_wall_ms();
	if (open_db(&p, err, errlen) != 0 || open_bus(&p, err, errlen) != 0) {
		part_free(&p);
		return -1;
	}
	if (bus_connect(p.bus, cerr, sizeof(cerr)) != 0)
		log_warnx("%s; retrying", cerr);
	else
		log_info("ready: consuming %s%s", cfg->queues[0],
		         cfg->nqueues > 1 ? " and more" : "");
	presence_init(&p);
	while (!*stop) {
		bus_poll(p.bus, 200, &h);
		prune_step(&p);
		batch_end(&p);
		announce(&p);
	}
	log_info("stopping: draining");
	bus_cancel(p.bus);
	for (int i = 0; i < 50; i++) { /* up to 10 s */
		bus_poll(p.bus, 200, &h);
		batch_end(&p);
		if (bus_unconfirmed(p.bus) == 0)
			break;
	}
	if (bus_unconfirmed(p.bus) > 0)
		log_warnx("%zu replies unconfirmed at exit: their commands "
		          "stay unacked and come back",
		          bus_unconfirmed(p.bus));
	bs = bus_stats(p.bus);
	log_info("stopped: handled %llu, replayed %llu, refused late %llu, "
	         "retried %llu, dead-lettered %llu, pruned %llu, "
	         "reconnects %llu",
	         (unsigned long long)p.stats.handled,
	         (unsigned long long)p.stats.replayed,
	         (unsigned long long)p.stats.refused_late,
	         (unsigned long long)p.stats.retried,
	         (unsigned long long)p.stats.dead_lettered,
	         (unsigned long long)p.stats.pruned,
	         (unsigned long long)bs->reconnects);
	part_free(&p);
	return 0;
}

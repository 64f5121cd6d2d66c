/* shard.c -- see shard.h. */
#include "shard.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
shard_parse(const char *spec, struct shard *sh, char *err, size_t errlen)
{
	char *end;
	long i, n;

	memset(sh, 0, sizeof(*sh));
	if (spec == NULL) {
		snprintf(sh->orders_q, sizeof(sh->orders_q),
		         "orchestrator.orders");
		snprintf(sh->replies_q, sizeof(sh->replies_q),
		         "orchestrator.replies");
		snprintf(sh->control_q, sizeof(sh->control_q),
		         "orchestrator.control");
		snprintf(sh->reply_key, sizeof(sh->reply_key), "orchestrator");
		return 0;
	}
	errno = 0;
	if (!isdigit((unsigned char)spec[0]))
		goto bad;
	i = strtol(spec, &end, 10);
	if (errno != 0 || end == spec || *end != '/')
		goto bad;
	spec = end + 1;
	if (!isdigit((unsigned char)spec[0]))
		goto bad;
	n = strtol(spec, &end, 10);
	if (errno != 0 || end == spec || *end != '\0')
		goto bad;
	if (n < 1 || n > SHARD_MAX || i < 1 || i > n) {
		snprintf(err, errlen,
		         "--shard I/N wants 1 <= I <= N <= %d, not %ld/%ld",
		         SHARD_MAX, i, n);
		return -1;
	}
	sh->index = (int)i;
	sh->count = (int)n;
	snprintf(sh->reply_key, sizeof(sh->reply_key), "orchestrator-%d",
	         sh->index);
	snprintf(sh->orders_q, sizeof(sh->orders_q), "%s.orders",
	         sh->reply_key);
	snprintf(sh->replies_q, sizeof(sh->replies_q), "%s.replies",
	         sh->reply_key);
	snprintf(sh->control_q, sizeof(sh->control_q), "%s.control",
	         sh->reply_key);
	return 0;
bad:
	snprintf(err, errlen, "--shard wants I/N (e.g. 1/2)");
	return -1;
}

/* ---- the node table ---- */

static int
get(sqlite3 *db, const char *key, char *buf, size_t cap, bool *found)
{
	sqlite3_stmt *s;
	int rc;

	*found = false;
	buf[0] = '\0';
	if (sqlite3_prepare_v2(db, "SELECT value FROM node WHERE key = ?1", -1,
	                       &s, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC) != SQLITE_OK) {
		sqlite3_finalize(s);
		return -1;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const unsigned char *v = sqlite3_column_text(s, 0);
		snprintf(buf, cap, "%s", v != NULL ? (const char *)v : "");
		*found = true;
	}
	sqlite3_finalize(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

static int
put(sqlite3 *db, const char *key, const char *value)
{
	sqlite3_stmt *s;
	int rc;

	if (sqlite3_prepare_v2(db,
	                       "INSERT INTO node(key, value) VALUES (?1, ?2) "
	                       "ON CONFLICT(key) DO UPDATE SET value = ?2",
	                       -1, &s, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC) != SQLITE_OK) {
		sqlite3_finalize(s);
		return -1;
	}
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int
get_ms(sqlite3 *db, const char *key, int64_t *ms)
{
	char buf[32];
	bool found;
	if (get(db, key, buf, sizeof(buf), &found) != 0)
		return -1;
	*ms = found ? strtoll(buf, NULL, 10) : 0;
	return 0;
}

static int
put_ms(sqlite3 *db, const char *key, int64_t ms)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%" PRId64, ms);
	return put(db, key, buf);
}

int
shard_claim(sqlite3 *db, const struct shard *sh, struct shard_times *t,
            char *err, size_t errlen)
{
	char want[16], have[16];
	bool found;

	memset(t, 0, sizeof(*t));
	if (sh->index == 0)
		snprintf(want, sizeof(want), "none");
	else
		snprintf(want, sizeof(want), "%d", sh->index);
	if (get(db, "shard", have, sizeof(have), &found) != 0)
		goto dberr;
	if (found && strcmp(have, want) != 0) {
		if (strcmp(have, "none") == 0)
			snprintf(err, errlen,
			         "this database belongs to an unsharded "
			         "orchestrator, not to shard %s: give each "
			         "shard "
			         "its own database",
			         want);
		else if (sh->index == 0)
			snprintf(err, errlen,
			         "this database belongs to shard %s: run it "
			         "with "
			         "--shard %s/N",
			         have, have);
		else
			snprintf(err, errlen,
			         "this database belongs to shard %s, not to "
			         "shard %s: give each shard its own database",
			         have, want);
		return -1;
	}
	if (!found && put(db, "shard", want) != 0)
		goto dberr;
	if (sh->index == 0)
		return 0;
	if (get_ms(db, "joined_at", &t->joined_ms) != 0 ||
	    get_ms(db, "ring_changed_at", &t->ring_changed_ms) != 0)
		goto dberr;
	return 0;
dberr:
	snprintf(err, errlen, "database: %s", sqlite3_errmsg(db));
	return -1;
}

int
shard_note_joined(sqlite3 *db, struct shard_times *t, int64_t at_ms)
{
	if (t->joined_ms != 0)
		return 0;
	if (put_ms(db, "joined_at", at_ms) != 0)
		return -1;
	t->joined_ms = at_ms;
	return 0;
}

int
shard_note_ring_change(sqlite3 *db, struct shard_times *t, int64_t at_ms)
{
	if (at_ms <= t->ring_changed_ms)
		return 0;
	t->ring_changed_ms = at_ms;
	return put_ms(db, "ring_changed_at", at_ms);
}

int
shard_saga_known(sqlite3 *db, const char *id, bool *known)
{
	sqlite3_stmt *s;
	int rc;

	*known = false;
	if (sqlite3_prepare_v2(db, "SELECT 1 FROM sagas WHERE id = ?1", -1, &s,
	                       NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC) != SQLITE_OK) {
		sqlite3_finalize(s);
		return -1;
	}
	rc = sqlite3_step(s);
	*known = rc == SQLITE_ROW;
	sqlite3_finalize(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

const char *
shard_refuse(const struct shard *sh, const struct shard_times *t,
             int64_t published_ms, bool republished, bool known)
{
	int64_t changed = t->ring_changed_ms > t->joined_ms ? t->ring_changed_ms
	                                                    : t->joined_ms;
	/* no timestamp (a publisher that does not set one): nothing to tell
	 * by, so accepted; our bus stamps every message */
	if (sh->index == 0 || known || published_ms <= 0)
		return NULL;
	/* In whole seconds (an AMQP timestamp without the bus's
	 * x-published-ms), published_ms is the second's start and the
	 * second may end after the join: it counts as before. */
	if (published_ms < t->joined_ms)
		return "published before this shard joined the hash ring: "
		       "another shard may own it (find its owner with sagactl "
		       "--shards; replay it if none has it)";
	/* a resend within the margin after the join or a ring change */
	if (republished && changed > 0 &&
	    published_ms < changed + SHARD_RESEND_MARGIN_MS)
		return "a resend published before the hash ring changed: "
		       "another shard may own it (find its owner with sagactl "
		       "--shards; replay it if none has it)";
	return NULL;
}

int
shard_control_queue(sqlite3 *db, const char *schema, char *buf, size_t cap)
{
	char *sql = sqlite3_mprintf("SELECT value FROM \"%w\".node WHERE key = "
	                            "'shard'",
	                            schema);
	sqlite3_stmt *s;
	int rc;

	snprintf(buf, cap, "orchestrator.control");
	if (sql == NULL)
		return -1;
	/* a database from before shards has no node table: unsharded */
	rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
	sqlite3_free(sql);
	if (rc != SQLITE_OK)
		return 0;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const char *v = (const char *)sqlite3_column_text(s, 0);
		if (v != NULL && strcmp(v, "none") != 0)
			snprintf(buf, cap, "orchestrator-%s.control", v);
	}
	sqlite3_finalize(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

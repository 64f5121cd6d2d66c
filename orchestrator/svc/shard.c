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

/* ---- the identity and the times, in the store's node table ---- */

static int
get_ms(struct store *st, const char *key, int64_t *ms)
{
	char buf[32];
	bool found;
	if (store_node_get(st, key, buf, sizeof(buf), &found) != 0)
		return -1;
	*ms = found ? strtoll(buf, NULL, 10) : 0;
	return 0;
}

static int
put_ms(struct store *st, const char *key, int64_t ms)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%" PRId64, ms);
	return store_node_put(st, key, buf);
}

int
shard_claim(struct store *st, const struct shard *sh, struct shard_times *t,
            char *err, size_t errlen)
{
	char want[16], have[16];
	bool found;

	memset(t, 0, sizeof(*t));
	if (sh->index == 0)
		snprintf(want, sizeof(want), "none");
	else
		snprintf(want, sizeof(want), "%d", sh->index);
	if (store_node_get(st, "shard", have, sizeof(have), &found) != 0)
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
	if (!found && store_node_put(st, "shard", want) != 0)
		goto dberr;
	if (sh->index == 0)
		return 0;
	if (get_ms(st, "joined_at", &t->joined_ms) != 0 ||
	    get_ms(st, "ring_changed_at", &t->ring_changed_ms) != 0)
		goto dberr;
	return 0;
dberr:
	snprintf(err, errlen, "database: %s", store_error(st));
	return -1;
}

int
shard_note_joined(struct store *st, struct shard_times *t, int64_t at_ms)
{
	if (t->joined_ms != 0)
		return 0;
	if (put_ms(st, "joined_at", at_ms) != 0)
		return -1;
	t->joined_ms = at_ms;
	return 0;
}

int
shard_note_ring_change(struct store *st, struct shard_times *t, int64_t at_ms)
{
	if (at_ms <= t->ring_changed_ms)
		return 0;
	t->ring_changed_ms = at_ms;
	return put_ms(st, "ring_changed_at", at_ms);
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

void
shard_control_queue(const char *identity, char *buf, size_t cap)
{
	if (identity[0] == '\0' || strcmp(identity, "none") == 0)
		snprintf(buf, cap, "orchestrator.control");
	else
		snprintf(buf, cap, "orchestrator-%s.control", identity);
}

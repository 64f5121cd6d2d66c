/* test_part_loop -- a participant on the durable loop (participant.h,
 * lib/durable.h) with an in-memory transport and a scripted handler: no
 * broker. The same seam test_orch_loop gives the orchestrator. Proves:
 * a redelivered command changes nothing and gets its stored reply again;
 * a commit that fails (SQLITE_FULL) keeps the batch and acks nothing, and
 * the batch goes through once there is room; a NACKed reply is published
 * again; the replies to a bundle's commands leave as one bundle; a drain
 * publishes what was committed; a poison message is dead-lettered with its
 * reason while the rest of its batch goes on; a transient failure goes
 * round the retry path until its attempts are spent; a command that
 * rewrites many pages keeps its savepoint's journal in memory (no temp
 * file).
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "bundler.h"
#include "clock.h"
#include "durable.h"
#include "envelope.h"
#include "log.h"
#include "participant.h"
#include "testutil.h"

#define MAXMSG 256

struct sent {
	char rk[128], id[128], type[64];
	char *body;
	size_t len;
	uint64_t tag;
	bool answered;
};

struct incoming {
	char *body;
	size_t len;
	char id[128];
	const char *ctype;
	int attempt;
	bool bundled;
	int64_t offset; /* in a stream, -1 if none */
};

struct settled {
	uint64_t ref;
	enum durable_verdict v;
	char why[300];
};

struct mem {
	struct sent sent[MAXMSG];
	size_t nsent, nanswered;
	struct incoming in[MAXMSG];
	size_t nin, next_in;
	struct settled st[MAXMSG];
	size_t nst;
	uint64_t next_ref;
	int nack_next;      /* NACK this many publishes first */
	bool fail_publish;  /* the broker is away: publish refuses */
	bool stopped;       /* stop_consuming was called */
	int64_t floor;      /* unsettled_floor's answer */
	struct bundler *bl; /* replies marked `bundle` leave together */
	struct durable *d;
};

static const char *db_file;         /* the world's database, and its size */
static long long size_at_send = -1; /* when the first reply went out */

/* ---- the in-memory transport ---- */

static int
mem_send(void *ctx, const struct bus_message *m, uint64_t tag)
{
	struct mem *b = ctx;
	struct sent *s;

	if (b->fail_publish || b->nsent == MAXMSG)
		return -1;
	if (size_at_send < 0 && db_file != NULL) {
		struct stat sb;
		size_at_send =
		        stat(db_file, &sb) == 0 ? (long long)sb.st_size : -1;
	}
	s = &b->sent[b->nsent++];
	memset(s, 0, sizeof(*s));
	snprintf(s->rk, sizeof(s->rk), "%s", m->routing_key);
	snprintf(s->id, sizeof(s->id), "%s", m->message_id);
	snprintf(s->type, sizeof(s->type), "%s", m->type ? m->type : "");
	s->body = malloc(m->len);
	memcpy(s->body, m->body, m->len);
	s->len = m->len;
	s->tag = tag;
	return 0;
}

static int
mem_publish(void *ctx, const struct durable_msg *m, uint64_t tag)
{
	struct mem *b = ctx;
	struct bus_message bm = {.exchange = m->exchange,
	                         .routing_key = m->routing_key,
	                         .message_id = m->message_id,
	                         .correlation_id = m->correlation_id,
	                         .type = m->type,
	                         .body = m->body,
	                         .len = m->len};
	if (m->bundle && bundler_hold(b->bl, &bm, tag, mem_send, b) == 0)
		return 0;
	return mem_send(b, &bm, tag);
}

static void
mem_flush(void *ctx)
{
	struct mem *b = ctx;
	bundler_flush(b->bl, mem_send, b);
}

static int
mem_settle(void *ctx, uint64_t ref, enum durable_verdict v, const char *why)
{
	struct mem *b = ctx;
	struct settled *s = &b->st[b->nst++];
	s->ref = ref;
	s->v = v;
	snprintf(s->why, sizeof(s->why), "%s", why);
	return 0;
}

static void
row_acked(void *arg, uint64_t tag)
{
	struct mem *b = arg;
	durable_confirmed(b->d, tag, DURABLE_ACK);
}

/* The broker's answers for everything sent, then the deliveries. */
static int
mem_poll(void *ctx, struct durable *d, int timeout_ms)
{
	struct mem *b = ctx;

	(void)timeout_ms;
	b->d = d;
	for (size_t i = 0; i < b->nsent; i++) {
		struct sent *s = &b->sent[i];
		if (s->answered)
			continue;
		s->answered = true;
		b->nanswered++;
		if (b->nack_next > 0) {
			b->nack_next--;
			durable_confirmed(d, s->tag, DURABLE_NACK);
		} else if (bundler_confirmed(b->bl, s->tag, row_acked, b) ==
		           0) {
			durable_confirmed(d, s->tag, DURABLE_ACK);
		}
	}
	while (!b->stopped && b->next_in < b->nin) {
		struct incoming *m = &b->in[b->next_in++];
		struct durable_delivery dv = {.ref = ++b->next_ref,
		                              .body = m->body,
		                              .len = m->len,
		                              .message_id = m->id,
		                              .content_type = m->ctype,
		                              .reply_to = "orchestrator",
		                              .attempt = m->attempt,
		                              .bundled = m->bundled,
		                              .offset = m->offset};
		durable_deliver(d, &dv);
	}
	return 0;
}

static int
mem_stop(void *ctx)
{
	struct mem *b = ctx;
	b->stopped = true;
	return 0;
}

static int64_t
mem_floor(void *ctx)
{
	const struct mem *b = ctx;
	return b->floor;
}

static size_t
mem_unconfirmed(void *ctx)
{
	struct mem *b = ctx;
	return b->nsent - b->nanswered + bundler_rows_extra(b->bl);
}

/* ---- the scripted participant ---- */

static int calls;           /* handler runs */
static sqlite3 *db;         /* the participant's database, from on_open */
static int temp_files = -1; /* SQLite temp files open after "rewrite" */

/* SQLite's temporary files open in this process: it names them etilqs_*
 * and unlinks them at once, so they show only in /proc/self/fd. */
static int
count_temp_files(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		char link[300], target[512];
		ssize_t k;
		snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
		k = readlink(link, target, sizeof(target) - 1);
		if (k > 0) {
			target[k] = '\0';
			n += strstr(target, "etilqs_") != NULL;
		}
	}
	closedir(d);
	return n;
}

/* "fill": 100 rows of 2 KB (about 50 pages); "rewrite": every one of them
 * changed, under the delivery's savepoint, whose journal then holds the
 * pages' old contents: over SQLite's 64 KiB, enough to spill to a file
 * unless temp_store is MEMORY. */
static int
script_pages(sqlite3 *h, const char *script)
{
	if (strcmp(script, "heavy") == 0) /* about 1,200 pages */
		return db_exec(h,
		               "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
		               "SELECT i + 1 FROM n WHERE i < 1200) "
		               "INSERT INTO moves(saga) "
		               "SELECT printf('%4000d', i) FROM n",
		               NULL, 0);
	if (strcmp(script, "fill") == 0)
		return db_exec(h,
		               "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
		               "SELECT i + 1 FROM n WHERE i < 100) "
		               "INSERT INTO moves(saga) "
		               "SELECT printf('%2000d', i) FROM n",
		               NULL, 0);
	if (db_exec(h, "UPDATE moves SET saga = saga || 'y'", NULL, 0) != 0)
		return -1;
	temp_files = count_temp_files();
	return 0;
}

static int
on_open(void *arg, sqlite3 *h, char *err, size_t errlen)
{
	(void)arg;
	db = h;
	return db_exec(h, "CREATE TABLE IF NOT EXISTS moves(saga TEXT)", err,
	               errlen);
}

/* test.reserve: records a move and answers test.reserved, unless the
 * payload's `script` says "transient", "refuse" or "big" (a reply of 4 KB,
 * nothing of its own written: only the framework writes). */
static enum part_verdict
reserve(void *arg, sqlite3 *h, const struct envelope *in, int attempt,
        struct part_reply *out, char *why, size_t whylen)
{
	const char *script = part_str(&in->payload, "script");

	(void)arg;
	(void)attempt;
	calls++;
	if (strcmp(script, "transient") == 0) {
		snprintf(why, whylen, "gateway unavailable");
		return PART_RETRY;
	}
	if (strcmp(script, "refuse") == 0) {
		snprintf(why, whylen, "no such sku");
		return PART_REFUSE;
	}
	snprintf(out->type, sizeof(out->type), "test.reserved");
	if (strcmp(script, "fill") == 0 || strcmp(script, "rewrite") == 0 ||
	    strcmp(script, "heavy") == 0)
		return script_pages(h, script) == 0 ? PART_DONE : PART_RETRY;
	if (strcmp(script, "big") == 0) {
		char pad[4096];
		memset(pad, 'x', sizeof(pad) - 1);
		pad[sizeof(pad) - 1] = '\0';
		value_map_put_str(&out->payload, "pad", pad);
		return PART_DONE;
	}
	if (part_sql(h, "INSERT INTO moves(saga) VALUES (?1)", "t", NULL,
	             in->saga) < 0)
		return PART_RETRY;
	return PART_DONE;
}

static const struct part_command commands[] = {
        {.type = "test.reserve", .fn = reserve},
};

struct world {
	char *dir;
	char path[512];
	struct mem *bus;
	struct part *p;
	struct durable *d;
};

static int linger_ms; /* the next world's part_config.linger_ms */

/* stream: the participant also reads the stream test.stream */
static int
world_open(struct world *w, bool stream)
{
	char err[512];
	static const char *const queues[] = {"test.commands"};
	struct part_config cfg = {.name = "test",
	                          .commands = commands,
	                          .ncommands = 1,
	                          .queues = queues,
	                          .nqueues = 1,
	                          .on_open = on_open,
	                          .stream = stream ? "test.stream" : NULL,
	                          .stream_home = queues[0],
	                          .linger_ms = linger_ms};
	struct durable_transport t = {.publish = mem_publish,
	                              .settle = mem_settle,
	                              .poll = mem_poll,
	                              .stop_consuming = mem_stop,
	                              .unconfirmed = mem_unconfirmed,
	                              .flush = mem_flush,
	                              .unsettled_floor =
	                                      stream ? mem_floor : NULL};

	memset(w, 0, sizeof(*w));
	calls = 0;
	w->dir = testutil_tmpdir("saga-part");
	w->bus = calloc(1, sizeof(*w->bus));
	if (w->dir == NULL || w->bus == NULL)
		return -1;
	w->bus->bl = bundler_new(ENVELOPE_BUNDLE_MAX);
	snprintf(w->path, sizeof(w->path), "%s/part.db", w->dir);
	cfg.db_path = w->path;
	t.ctx = w->bus;
	w->p = part_open(&cfg, &t, err, sizeof(err));
	if (w->p == NULL) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	w->d = part_durable(w->p);
	w->bus->d = w->d;
	w->bus->floor = INT64_MAX;
	return 0;
}

static int
world_init(struct world *w)
{
	return world_open(w, false);
}

static void
world_free(struct world *w)
{
	part_close(w->p);
	for (size_t i = 0; i < w->bus->nsent; i++)
		free(w->bus->sent[i].body);
	for (size_t i = 0; i < w->bus->nin; i++)
		free(w->bus->in[i].body);
	bundler_free(w->bus->bl);
	free(w->bus);
	testutil_rmtree(w->dir);
	free(w->dir);
}

/* A command test.reserve with message id `id` for saga `saga`. */
static struct incoming *
push_cmd(struct mem *b, const char *id, const char *saga, const char *script)
{
	struct envelope e;
	struct incoming *m = &b->in[b->nin++];

	envelope_init(&e);
	snprintf(e.id, sizeof(e.id), "%s", id);
	snprintf(e.saga, sizeof(e.saga), "%s", saga);
	snprintf(e.type, sizeof(e.type), "test.reserve");
	e.ts = 1;
	value_map_put_str(&e.payload, "script", script ? script : "");
	if (envelope_encode(&e, &m->body, &m->len) != 0)
		abort();
	envelope_clear(&e);
	snprintf(m->id, sizeof(m->id), "%s", id);
	m->ctype = "application/msgpack";
	m->attempt = 1;
	m->offset = -1;
	return m;
}

static void
push_raw(struct mem *b, const char *id, const char *body, const char *ctype)
{
	struct incoming *m = &b->in[b->nin++];
	m->len = strlen(body);
	m->body = malloc(m->len + 1);
	memcpy(m->body, body, m->len + 1);
	snprintf(m->id, sizeof(m->id), "%s", id);
	m->ctype = ctype;
	m->attempt = 1;
	m->offset = -1;
}

/* Turns at `at` ms after now (both clocks): commit, settle, publish, and
 * the broker's answers. */
static void
turns(struct world *w, int64_t at, int n)
{
	struct durable_time t = durable_now();
	t.wall_ms += at;
	t.mono_ms += at;
	for (int i = 0; i < n; i++) {
		durable_turn(w->d, t);
		durable_flush(w->d, t);
	}
}

static int64_t
count(const char *sql)
{
	return testutil_db_int(db, sql);
}

static size_t
sent_count(const struct mem *b, const char *type)
{
	size_t n = 0;
	for (size_t i = 0; i < b->nsent; i++)
		if (strcmp(b->sent[i].type, type) == 0)
			n++;
	return n;
}

static size_t
settled_count(const struct mem *b, enum durable_verdict v)
{
	size_t n = 0;
	for (size_t i = 0; i < b->nst; i++)
		if (b->st[i].v == v)
			n++;
	return n;
}

/* The settlement of delivery ref (NULL if none). */
static const struct settled *
settled_of(const struct mem *b, uint64_t ref)
{
	for (size_t i = 0; i < b->nst; i++)
		if (b->st[i].ref == ref)
			return &b->st[i];
	return NULL;
}

/* ---- the tests ---- */

static void
test_redelivery_resends_stored_reply(void)
{
	struct world w;
	struct envelope r;
	char err[256];

	CHECK(world_init(&w) == 0);
	push_cmd(w.bus, "cmd-1", "s1", NULL);
	turns(&w, 0, 2);
	CHECK_EQ(calls, 1);
	CHECK_EQ(sent_count(w.bus, "test.reserved"), 1);
	CHECK_EQ(settled_count(w.bus, DURABLE_DONE), 1);
	/* the broker hands it over again (a crash before our ack) */
	push_cmd(w.bus, "cmd-1", "s1", NULL);
	turns(&w, 0, 2);
	CHECK_EQ(calls, 1); /* the handler did not run again */
	CHECK_EQ(count("SELECT count(*) FROM moves"), 1);
	CHECK_EQ(sent_count(w.bus, "test.reserved"), 2);
	CHECK_STR(w.bus->sent[1].id, w.bus->sent[0].id); /* the same reply */
	CHECK_EQ(w.bus->sent[1].len, w.bus->sent[0].len);
	CHECK(memcmp(w.bus->sent[1].body, w.bus->sent[0].body,
	             w.bus->sent[0].len) == 0);
	envelope_init(&r);
	CHECK(envelope_decode(w.bus->sent[1].body, w.bus->sent[1].len, &r, err,
	                      sizeof(err)) == 0);
	CHECK_STR(r.re, "cmd-1");
	envelope_clear(&r);
	CHECK_EQ(settled_count(w.bus, DURABLE_DONE), 2);
	CHECK_EQ(part_stats(w.p)->replayed, 1);
	CHECK_EQ(count("SELECT count(*) FROM part_outbox"), 0); /* confirmed */
	world_free(&w);
}

static void
test_commit_failure_keeps_batch(void)
{
	struct world w;
	char sql[128];

	CHECK(world_init(&w) == 0);
	snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld",
	         (long long)count("PRAGMA page_count"));
	CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
	for (int i = 0; i < 30; i++) {
		char id[32];
		snprintf(id, sizeof(id), "full-%d", i);
		push_cmd(w.bus, id, id, "big");
	}
	turns(&w, 0, 3);
	CHECK_EQ(w.bus->nst, 0); /* nothing acked, nothing rejected */
	CHECK_EQ(w.bus->nsent, 0);
	CHECK(!durable_healthy(w.d, NULL));
	CHECK_EQ(count("SELECT count(*) FROM part_processed"), 0);
	/* room again: the same batch goes through after the backoff */
	CHECK(sqlite3_exec(db, "PRAGMA max_page_count = 1073741823", NULL, NULL,
	                   NULL) == SQLITE_OK);
	turns(&w, 10000, 3);
	CHECK(durable_healthy(w.d, NULL));
	CHECK_EQ(settled_count(w.bus, DURABLE_DONE), 30);
	CHECK_EQ(sent_count(w.bus, "test.reserved"), 30);
	CHECK_EQ(count("SELECT count(*) FROM part_processed"), 30);
	world_free(&w);
}

static void
test_nack_republishes(void)
{
	struct world w;

	CHECK(world_init(&w) == 0);
	w.bus->nack_next = 1;
	push_cmd(w.bus, "cmd-n", "sn", NULL);
	turns(&w, 0, 4);
	CHECK_EQ(sent_count(w.bus, "test.reserved"), 2);
	CHECK_STR(w.bus->sent[1].id, w.bus->sent[0].id);
	CHECK_EQ(durable_stats(w.d)->nacked, 1);
	CHECK_EQ(count("SELECT count(*) FROM part_outbox"), 0);
	CHECK_EQ(settled_count(w.bus, DURABLE_DONE), 1);
	world_free(&w);
}

static void
test_bundle_in_bundle_out(void)
{
	struct world w;
	struct envelope_bundle b;
	char err[256];
	size_t nb = 0;

	CHECK(world_init(&w) == 0);
	for (int i = 0; i < 3; i++) {
		char id[32];
		snprintf(id, sizeof(id), "item-%d", i);
		push_cmd(w.bus, id, id, NULL)->bundled = true;
	}
	push_cmd(w.bus, "alone", "alone", NULL); /* came alone: goes alone */
	turns(&w, 0, 3);
	CHECK_EQ(settled_count(w.bus, DURABLE_DONE), 4);
	CHECK_EQ(sent_count(w.bus, "test.reserved"), 1);
	CHECK_EQ(sent_count(w.bus, ENVELOPE_BUNDLE_TYPE), 1);
	for (size_t i = 0; i < w.bus->nsent; i++) {
		if (strcmp(w.bus->sent[i].type, ENVELOPE_BUNDLE_TYPE) != 0)
			continue;
		CHECK(envelope_bundle_decode(w.bus->sent[i].body,
		                             w.bus->sent[i].len, &b, err,
		                             sizeof(err)) == 0);
		nb = b.n;
		envelope_bundle_clear(&b);
	}
	CHECK_EQ(nb, 3);
	/* the bundle's confirm deleted each of its rows */
	CHECK_EQ(count("SELECT count(*) FROM part_outbox"), 0);
	world_free(&w);
}

static void
test_drain_publishes_committed(void)
{
	struct world w;
	volatile sig_atomic_t stop = 1;

	CHECK(world_init(&w) == 0);
	w.bus->fail_publish = true; /* committed, not sent */
	push_cmd(w.bus, "cmd-d1", "d1", NULL);
	turns(&w, 0, 2);
	CHECK_EQ(settled_count(w.bus, DURABLE_DONE), 1);
	CHECK_EQ(w.bus->nsent, 0);
	CHECK_EQ(count("SELECT count(*) FROM part_outbox"), 1);
	w.bus->fail_publish = false;
	CHECK_EQ(durable_run(w.d, &stop, NULL, NULL, NULL, 2000), 0);
	CHECK(w.bus->stopped);
	CHECK_EQ(sent_count(w.bus, "test.reserved"), 1);
	CHECK_EQ(count("SELECT count(*) FROM part_outbox"), 0);
	world_free(&w);
}

static void
test_poison_dead_lettered(void)
{
	struct world w;
	struct incoming *last;

	CHECK(world_init(&w) == 0);
	push_raw(w.bus, "junk", "not msgpack at all", NULL);  /* 1 */
	push_raw(w.bus, "json", "{}", "application/json");    /* 2 */
	push_cmd(w.bus, "cmd-r", "sr", "refuse");             /* 3 */
	push_cmd(w.bus, "cmd-ok", "sok", NULL);               /* 4 */
	push_cmd(w.bus, "cmd-t", "st", "transient");          /* 5 */
	last = push_cmd(w.bus, "cmd-t5", "st5", "transient"); /* 6 */
	last->attempt = PART_MAX_ATTEMPTS;
	{
		struct envelope e;
		struct incoming *m = &w.bus->in[w.bus->nin++];
		envelope_init(&e);
		snprintf(e.id, sizeof(e.id), "cmd-x");
		snprintf(e.saga, sizeof(e.saga), "sx");
		snprintf(e.type, sizeof(e.type), "test.explode");
		CHECK(envelope_encode(&e, &m->body, &m->len) == 0); /* 7 */
		envelope_clear(&e);
		snprintf(m->id, sizeof(m->id), "cmd-x");
		m->attempt = 1;
	}
	turns(&w, 0, 2);
	CHECK_EQ(w.bus->nst, 7);
	CHECK(strstr(settled_of(w.bus, 1)->why, "cannot decode") != NULL);
	CHECK(strstr(settled_of(w.bus, 2)->why, "not application/msgpack"));
	CHECK_STR(settled_of(w.bus, 3)->why, "no such sku");
	CHECK_EQ(settled_of(w.bus, 4)->v, DURABLE_DONE);
	CHECK_EQ(settled_of(w.bus, 5)->v, DURABLE_RETRY);
	CHECK_STR(settled_of(w.bus, 5)->why, "gateway unavailable");
	CHECK_EQ(settled_of(w.bus, 6)->v, DURABLE_REJECT);
	CHECK_STR(settled_of(w.bus, 6)->why,
	          "failed 5 times: gateway unavailable");
	CHECK_EQ(settled_of(w.bus, 7)->v, DURABLE_REJECT);
	CHECK_STR(settled_of(w.bus, 7)->why,
	          "unknown message type test.explode");
	for (uint64_t r = 1; r <= 3; r++)
		CHECK_EQ(settled_of(w.bus, r)->v, DURABLE_REJECT);
	/* dead letters and retries are settled before the acks */
	CHECK_EQ(w.bus->st[w.bus->nst - 1].ref, 4);
	/* only the good one left a trace */
	CHECK_EQ(count("SELECT count(*) FROM part_processed"), 1);
	CHECK_EQ(count("SELECT count(*) FROM moves"), 1);
	CHECK_EQ(sent_count(w.bus, "test.reserved"), 1);
	CHECK_EQ(durable_stats(w.d)->dead_lettered, 5);
	CHECK_EQ(part_stats(w.p)->retried, 1);
	world_free(&w);
}

/* A stream's position is stored with each batch: past every delivery
 * done, never past one that is not (a retry or a dead letter whose copy
 * is not yet confirmed, by this batch or, through the transport's floor,
 * an earlier one); a batch without stream deliveries leaves it. */
static void
test_stream_position(void)
{
	struct world w;
	const char *pos = "SELECT next_offset FROM part_stream WHERE queue = "
	                  "'test.stream'";

	CHECK(world_open(&w, true) == 0);
	CHECK_EQ(part_stream_next(w.p), -1);
	push_cmd(w.bus, "s-10", "a", NULL)->offset = 10;
	push_cmd(w.bus, "s-11", "b", NULL)->offset = 11;
	turns(&w, 0, 1);
	CHECK_EQ(count(pos), 12);
	CHECK_EQ(part_stream_next(w.p), 12);
	push_cmd(w.bus, "s-12", "c", "transient")->offset = 12;
	push_cmd(w.bus, "s-13", "d", NULL)->offset = 13;
	turns(&w, 0, 1);
	CHECK_EQ(count(pos), 12); /* 12 is to be retried: read it again */
	w.bus->floor = 12;        /* its copy is not confirmed yet */
	push_cmd(w.bus, "s-14", "e", NULL)->offset = 14;
	turns(&w, 0, 1);
	CHECK_EQ(count(pos), 12);
	w.bus->floor = INT64_MAX; /* now it is */
	push_cmd(w.bus, "s-15", "f", NULL)->offset = 15;
	push_raw(w.bus, "junk", "not msgpack", NULL);
	w.bus->in[w.bus->nin - 1].offset = 16;
	turns(&w, 0, 1);
	CHECK_EQ(count(pos), 16); /* the junk's dead letter is not sent yet */
	push_cmd(w.bus, "q-1", "g", NULL); /* from a queue: no position */
	turns(&w, 0, 1);
	CHECK_EQ(count(pos), 16);
	CHECK_EQ(part_stream_next(w.p), 16);
	CHECK_EQ(count("SELECT count(*) FROM moves"), 6);
	world_free(&w);
}

/* linger_ms: a partial batch whose input is drained waits for more
 * (one commit for deliveries that came 40 ms apart), and is committed
 * once its oldest has waited linger_ms. */
static void
test_linger(void)
{
	struct world w;
	struct durable_time t0 = durable_now(), t;

	linger_ms = 100;
	CHECK(world_open(&w, false) == 0);
	linger_ms = 0;
	push_cmd(w.bus, "l-1", "a", NULL);
	durable_turn(w.d, t0);
	CHECK_EQ(count("SELECT count(*) FROM moves"), 0); /* drained: waits */
	push_cmd(w.bus, "l-2", "b", NULL);
	t = t0;
	t.mono_ms += 40;
	t.wall_ms += 40;
	durable_turn(w.d, t);
	CHECK_EQ(count("SELECT count(*) FROM moves"), 0);
	t.mono_ms += 70; /* the first has waited 110 ms */
	t.wall_ms += 70;
	durable_turn(w.d, t);
	CHECK_EQ(count("SELECT count(*) FROM moves"), 2);
	CHECK_EQ(durable_stats(w.d)->batches, 1);
	world_free(&w);
}

/* Each delivery runs under a savepoint, whose journal holds the old
 * contents of the pages it changes. SQLite writes that journal to a temp
 * file once it passes 64 KiB: a file created, written and deleted inside
 * the transaction (notification-svc made 28 syscalls a saga, most of them
 * for those files). The participant keeps it in memory. */
static void
test_savepoint_journal_in_memory(void)
{
	struct world w;

	CHECK(world_init(&w) == 0);
	push_cmd(w.bus, "cmd-1", "s1", "fill");
	turns(&w, 0, 2);
	CHECK_EQ(count("SELECT count(*) FROM moves"), 100);
	push_cmd(w.bus, "cmd-2", "s2", "rewrite");
	turns(&w, 0, 2);
	CHECK_EQ(settled_count(w.bus, DURABLE_DONE), 2);
	CHECK_EQ(count("SELECT count(*) FROM moves WHERE saga LIKE '%y'"), 100);
	CHECK_EQ(temp_files, 0);
	CHECK_EQ(count("PRAGMA temp_store"), 2);
	world_free(&w);
}

/* The WAL checkpoint runs after the batch's replies are out, not inside
 * its COMMIT: when the reply to a command that wrote 1,200 pages was
 * sent, the database file had not grown yet (its pages were still in the
 * WAL); after the turn, they were copied. */
static void
test_checkpoint_after_replies(void)
{
	struct world w;
	struct stat sb;

	CHECK(world_init(&w) == 0);
	db_file = w.path;
	size_at_send = -1;
	push_cmd(w.bus, "cmd-1", "s1", "heavy");
	turns(&w, 0, 2);
	CHECK_EQ(sent_count(w.bus, "test.reserved"), 1);
	CHECK_EQ(count("SELECT count(*) FROM moves"), 1200);
	CHECK(stat(w.path, &sb) == 0);
	CHECK_MSG(size_at_send >= 0 && size_at_send < 1000 * 4096,
	          "database file %lld bytes when the reply went out",
	          size_at_send);
	CHECK_MSG(sb.st_size >= 1200 * 4096,
	          "database file %lld bytes after the turn",
	          (long long)sb.st_size);
	db_file = NULL;
	world_free(&w);
}

int
main(void)
{
	log_init("test", getenv("TEST_DEBUG") ? LOG_INFO : LOG_ERROR);
	RUN(test_redelivery_resends_stored_reply);
	RUN(test_commit_failure_keeps_batch);
	RUN(test_nack_republishes);
	RUN(test_bundle_in_bundle_out);
	RUN(test_drain_publishes_committed);
	RUN(test_poison_dead_lettered);
	RUN(test_stream_position);
	RUN(test_linger);
	RUN(test_savepoint_journal_in_memory);
	RUN(test_checkpoint_after_replies);
	return check_summary();
}

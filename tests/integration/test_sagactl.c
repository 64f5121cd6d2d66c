/* sagactl against a real saga-orchestrator and a private broker, with
 * scripted fake participants in this test (statecharts/order.yaml with
 * short timeouts): a saga whose refund is never answered ends stuck,
 * `sagactl list --status stuck` finds it, `sagactl resume` (the refund now
 * answered) ends it failed (compensated) and `sagactl show` has the
 * operator's entry with who and why; list filters, --json, stats, show
 * --dot with the saga's path, bulk actions with --dry-run, and usage
 * errors (exit 2). */
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "bus.h"
#include "envelope.h"
#include "log.h"
#include "testorder.h"
#include "testutil.h"

static const char *srcdir, *bindir;
static char *dir, *url;
static char db[512], charts[512], orch_log[512], http_addr[64];
static int orch_port;
static int orch_pid = -1;

struct world {
	struct bus *bus;
	bool refund_ok; /* false: payment.refund is never answered */
};
static struct world W;

static void
reply(const struct bus_delivery *d, const struct envelope *c, const char *type)
{
	struct envelope r;
	char *body;
	size_t len;
	struct bus_message m = {0};
	envelope_init(&r);
	envelope_new_id(r.id, sizeof(r.id), "rep");
	snprintf(r.saga, sizeof(r.saga), "%s", c->saga);
	snprintf(r.type, sizeof(r.type), "%s", type);
	snprintf(r.step, sizeof(r.step), "%s", c->step);
	snprintf(r.re, sizeof(r.re), "%s", c->id);
	r.attempt = c->attempt;
	r.ts = 1;
	if (strcmp(type, "payment.charged") == 0)
		value_map_put_str(&r.payload, "charge_id", "ch-1");
	if (envelope_encode(&r, &body, &len) == 0) {
		m.exchange = "saga.replies";
		m.routing_key = d->reply_to[0] ? d->reply_to : "orchestrator";
		m.message_id = r.id;
		m.correlation_id = r.saga;
		m.type = r.type;
		m.body = body;
		m.len = len;
		bus_publish(W.bus, &m, 0);
		free(body);
	}
	envelope_clear(&r);
}

/* ok-*: every step succeeds. stk-*: shipping fails, so the payment is
 * refunded -- and the refund is answered only once refund_ok is set. */
static void
on_one(void *arg, const void *body, size_t len, const char *tp)
{
	const struct bus_delivery *d = *(const struct bus_delivery **)arg;
	struct envelope e;
	char err[256];
	const char *t, *r = NULL;
	(void)tp;
	envelope_init(&e);
	if (envelope_decode(body, len, &e, err, sizeof(err)) != 0)
		return;
	t = e.type;
	if (strcmp(t, "inventory.reserve") == 0)
		r = "inventory.reserved";
	else if (strcmp(t, "payment.charge") == 0)
		r = "payment.charged";
	else if (strcmp(t, "shipping.create") == 0)
		r = strncmp(e.saga, "stk-", 4) == 0 ? "shipping.failed"
		                                    : "shipping.created";
	else if (strcmp(t, "inventory.release") == 0)
		r = "inventory.released";
	else if (strcmp(t, "payment.refund") == 0)
		r = W.refund_ok ? "payment.refunded" : NULL;
	else if (strcmp(t, "shipping.cancel") == 0)
		r = "shipping.cancelled";
	if (r != NULL)
		reply(d, &e, r);
	envelope_clear(&e);
}

/* A command may come in a bundle (lib/envelope.h). */
static void
on_msg(void *arg, const struct bus_delivery *d)
{
	char err[256];
	(void)arg;
	if (envelope_each(d->type, d->body, d->len, d->traceparent, on_one, &d,
	                  err, sizeof(err)) != 0)
		fprintf(stderr, "fake participants: %s\n", err);
	bus_ack(W.bus, d->ref, false);
}

static int
world_open(void)
{
	static const struct bus_exchange ex[] = {
	        {"saga.commands", "topic", NULL, NULL},
	        {"saga.replies", "direct", NULL, NULL},
	};
	static const struct bus_queue q[] = {{.name = "fake.commands"}};
	static const struct bus_binding bd[] = {
	        {"saga.commands", "fake.commands", NULL, "#"},
	};
	static const struct bus_topology t = {ex, 2, q, 1, bd, 1};
	static const char *consume[] = {"fake.commands"};
	struct bus_config cfg = {.url = url,
	                         .name = "fake",
	                         .prefetch = 100,
	                         .topology = &t,
	                         .consume = consume,
	                         .nconsume = 1};
	char err[512];

	W.bus = bus_open(&cfg, err, sizeof(err));
	if (W.bus == NULL || bus_connect(W.bus, err, sizeof(err)) != 0) {
		fprintf(stderr, "fake participants: %s\n", err);
		return -1;
	}
	return 0;
}

static void
pump(int ms)
{
	struct bus_handlers h = {on_msg, NULL, NULL};
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		bus_poll(W.bus, 20, &h);
		clock_gettime(CLOCK_MONOTONIC, &t1);
	} while ((t1.tv_sec - t0.tv_sec) * 1000 +
	                 (t1.tv_nsec - t0.tv_nsec) / 1000000 <
	         ms);
}

static int
wait_ready(void)
{
	char err[256];
	for (int i = 0; i < 300; i++) {
		uint32_t msgs = 0, cons = 0;
		if (!bus_connected(W.bus))
			bus_connect(W.bus, err, sizeof(err));
		if (bus_queue_info(W.bus, "orchestrator.orders", &msgs,
		                   &cons) == 0 &&
		    cons > 0)
			return 0;
		pump(100);
	}
	return -1;
}

static void
post_order(const char *id)
{
	struct envelope e;

	testorder_envelope(&e, &(struct testorder){.id = id});
	testorder_publish(W.bus, &e, NULL);
	envelope_clear(&e);
}

static int
db_count(const char *sql)
{
	return testutil_db_count(db, sql);
}

/* Pumps the fake participants until sql counts `want` (at most ~secs). */
static int
wait_count(const char *sql, int want, int secs)
{
	for (int t = 0; t < secs * 10; t++) {
		if (db_count(sql) == want)
			return 0;
		pump(100);
	}
	return db_count(sql);
}

/* Runs sagactl with --db and --amqp and the given arguments; its stdout
 * (and stderr, unless json) in *out. Exit status. */
/* The last output of ctl or ctl_json (freed on the next call and at exit,
 * so a failed CHECK leaks nothing). */
static char *out;

static int
ctl(const char *args)
{
	free(out);
	out = NULL;
	return testutil_sh(&out, "'%s/sagactl' --db '%s' --amqp '%s' %s 2>&1",
	                   bindir, db, url, args);
}

/* Pipes sagactl's stdout through a python3 JSON check printing `expr`. */
static int
ctl_json(const char *args, const char *expr)
{
	free(out);
	out = NULL;
	return testutil_sh(
	        &out,
	        "'%s/sagactl' --db '%s' %s | python3 -c 'import "
	        "json,sys; d=json.load(sys.stdin); print(repr((%s)))'",
	        bindir, db, args, expr);
}

static void
test_usage_errors(void)
{
	static const char *const bad[] = {
	        "list --older-than 5x",
	        "list --stuck-for 10",
	        "list --older-than -5s",
	        "list --limit 0",
	        "list --limit ten",
	        "list --status nope",
	        "list extra",
	        "list --bogus",
	        "show",
	        "show a b",
	        "show x --dot --json",
	        "stats extra",
	        "stats --status running",
	        "resume",
	        "resume x",
	        "resume x --reason ''",
	        "abort --all --reason r",
	        "abort --all --reason r --limit 5",
	        "abort x --all --status stuck --reason r",
	        "abort x --status stuck --reason r",
	        "list --dry-run",
	        "retry --all --status stuck --older-than 1 --reason r",
	        "show x --all",
	        "frobnicate",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = ctl(bad[i]);
		CHECK_MSG(rc == 2, "sagactl %s: exit %d: %s", bad[i], rc, out);
		CHECK_MSG(strstr(out, "usage") != NULL ||
		                  strstr(out, "sagactl:") != NULL,
		          "sagactl %s: %s", bad[i], out);
	}
	{
		CHECK_EQ(ctl("list --older-than 5x"), 2);
		CHECK_MSG(strstr(out, "--older-than 5x: not a duration") !=
		                  NULL,
		          "%s", out);
		CHECK_EQ(ctl("abort --all --reason r"), 2);
		CHECK_MSG(strstr(out, "give a filter") != NULL, "%s", out);
	}
	static const char *const helps[] = {"list",    "show",
	                                    "stats",   "retry",
	                                    "resume",  "mark-compensated",
	                                    "simulate"};
	for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
		char args[64];
		snprintf(args, sizeof(args), "%s --help", helps[i]);
		CHECK_MSG(ctl(args) == 0 && strncmp(out, "usage:", 6) == 0,
		          "%s: %s", args, out);
	}
}

/* The orchestrator's answers: a rejection exits 1 with the reason and
 * changes nothing; a bulk action answers per saga; the TLS flags. */
static void
test_answers(void)
{
	const char *ops = "SELECT count(*) FROM history WHERE kind = "
	                  "'operator'";
	int before = db_count(ops);

	/* abort of a finished saga: rejected, with the engine's reason */
	CHECK_EQ(ctl("abort ok-1 --reason 'too late'"), 1);
	CHECK_MSG(strstr(out, "abort ok-1: rejected: ") != NULL &&
	                  strstr(out, "applied") == NULL,
	          "%s", out);
	fprintf(stderr, "     $ sagactl abort ok-1\n%s\n", out);
	CHECK_EQ(db_count("SELECT count(*) FROM sagas WHERE id = 'ok-1' AND "
	                  "status = 'completed'"),
	         1);
	/* a bulk action over finished and unknown sagas (no --db: the ids
	 * as given go to orchestrator.control) */
	free(out);
	out = NULL;
	CHECK_EQ(testutil_sh(&out,
	                     "'%s/sagactl' --amqp '%s' abort stk-1 --reason "
	                     "again 2>&1",
	                     bindir, url),
	         1);
	CHECK_MSG(strstr(out, "abort stk-1: rejected: "), "%s", out);
	free(out);
	out = NULL;
	CHECK_EQ(testutil_sh(&out,
	                     "'%s/sagactl' --amqp '%s' abort nope-9 --reason "
	                     "x 2>&1",
	                     bindir, url),
	         1);
	CHECK_MSG(strstr(out, "abort nope-9: rejected: unknown saga"), "%s",
	          out);
	CHECK_EQ(db_count(ops), before);

	/* TLS: the flags are taken, and a CA file that cannot be read is
	 * named with its flag */
	CHECK_EQ(ctl("--amqp-ca /nonexistent/ca.pem abort ok-1 --reason x"), 1);
	CHECK_MSG(strstr(out, "cannot read the CA file /nonexistent/ca.pem "
	                      "(--amqp-ca or SAGA_AMQP_CA)"),
	          "%s", out);
	free(out);
	out = NULL;
	CHECK_EQ(testutil_sh(&out,
	                     "SAGA_AMQP_CA=/nonexistent/ca.pem '%s/sagactl' "
	                     "--amqp '%s' dlq show inventory.commands.dlq 2>&1",
	                     bindir, url),
	         1);
	CHECK_MSG(strstr(out, "cannot read the CA file /nonexistent/ca.pem"),
	          "%s", out);
	free(out);
	out = NULL;
	CHECK_EQ(testutil_sh(&out,
	                     "'%s/sagactl' --amqp amqps://guest:guest@"
	                     "127.0.0.1:1/ abort ok-1 --reason x 2>&1",
	                     bindir),
	         1);
	CHECK_MSG(strstr(out, "needs a CA file") && strstr(out, "--amqp-ca"),
	          "%s", out);
}

/* sagactl list (its filters) and stats, with 2 completed sagas and 2
 * stuck ones (stk-*) */
static void
check_listing_and_stats(void)
{
	/* list filters */
	CHECK_EQ(ctl("list --status stuck"), 0);
	CHECK_MSG(strstr(out, "stk-1") && strstr(out, "stk-2") &&
	                  !strstr(out, "ok-1") && strstr(out, "payment"),
	          "%s", out);
	fprintf(stderr, "     $ sagactl list --status stuck\n%s\n", out);
	CHECK_EQ(ctl_json("list --json --prefix ok-",
	                  "sorted(x[\"id\"] for x in d)"),
	         0);
	CHECK_STR(out, "['ok-1', 'ok-2']");
	CHECK_EQ(ctl_json("--json list --chart order --state completed",
	                  "len(d), d[0][\"status\"]"),
	         0);
	CHECK_STR(out, "(2, 'completed')");
	CHECK_EQ(ctl_json("list --json --stuck-for 200ms",
	                  "sorted(x[\"id\"] for x in d)"),
	         0);
	CHECK_STR(out, "['stk-1', 'stk-2']");
	CHECK_EQ(ctl_json("list --json --stuck-for 1h", "len(d)"), 0);
	CHECK_STR(out, "0");
	CHECK_EQ(ctl_json("list --json --older-than 1d", "len(d)"), 0);
	CHECK_STR(out, "0");
	CHECK_EQ(ctl_json("list --json --older-than 100ms", "len(d)"), 0);
	CHECK_STR(out, "4");
	CHECK_EQ(ctl_json("list --json --limit 3", "len(d)"), 0);
	CHECK_STR(out, "3");
	CHECK_EQ(ctl_json("list --json --chart nope", "len(d)"), 0);
	CHECK_STR(out, "0");

	/* stats */
	CHECK_EQ(ctl("stats"), 0);
	CHECK_MSG(strstr(out, "stuck") && strstr(out, "completed") &&
	                  strstr(out, "oldest unfinished: stk-") &&
	                  strstr(out, "reserve_stock") &&
	                  strstr(out, "create_shipment") && strstr(out, "P99"),
	          "%s", out);
	fprintf(stderr, "     $ sagactl stats\n%s\n", out);
	CHECK_EQ(ctl_json("stats --json",
	                  "d[\"oldest_unfinished\"][\"status\"], "
	                  "sorted(x[\"state\"] for x in d[\"step_times\"]), "
	                  "sum(x[\"sagas\"] for x in d[\"by_status_state\"])"),
	         0);
	CHECK_MSG(strcmp(out, "('stuck', ['create_shipment', 'payment', "
	                      "'reserve_stock'], 4)") == 0,
	          "%s", out);
}

/* sagactl show stk-1 once it failed after its resume: the history with
 * the operator, its trace id, its JSON and its path on the chart (dot) */
static void
check_show_stk1(void)
{
	CHECK_EQ(ctl("show stk-1"), 0);
	/* the actor is the broker user (the validated user_id), not a
	 * local name */
	CHECK_MSG(strstr(out, "status    failed") && strstr(out, "operator") &&
	                  strstr(out, " by guest") &&
	                  strstr(out, ": refund done by hand") &&
	                  strstr(out, "payment.refunded") &&
	                  strstr(out, "inventory.release") &&
	                  strstr(out, "data      {") &&
	                  strstr(out, "\"payment_method\"") &&
	                  strstr(out, "timer     none"),
	          "%s", out);
	fprintf(stderr, "     $ sagactl show stk-1\n%s\n", out);
	{ /* its trace id: the one it started with (every log line about a
	   * message in hand ends with it: test_log, test_e2e) */
		const char *t = strstr(out, "\ntrace     ");
		char *want = NULL;
		CHECK_MSG(t != NULL, "no trace line: %s", out);
		CHECK(testutil_sh(&want,
		                  "sqlite3 '%s' \"SELECT substr(trace, 4, 32) "
		                  "FROM sagas WHERE id = 'stk-1'\"",
		                  db) == 0);
		CHECK_MSG(t != NULL && want != NULL && strlen(want) == 32 &&
		                  strncmp(t + 11, want, 32) == 0,
		          "trace %s, stored %s", t ? t + 11 : "?",
		          want ? want : "?");
		free(want);
	}
	CHECK_EQ(ctl_json("show stk-1 --json",
	                  "d[\"status\"], [h[\"reason\"] for h in "
	                  "d[\"history\"] if h[\"kind\"] == \"operator\"], "
	                  "\"order_id\" in d[\"data\"]"),
	         0);
	CHECK_STR(out, "('failed', ['refund done by hand'], True)");

	/* its path on the chart */
	CHECK_EQ(ctl("show stk-1 --dot"), 0);
	CHECK_MSG(strstr(out, "digraph \"order\"") &&
	                  strstr(out, "\"reserve_stock\" -> \"cod_limit\" "
	                              "[label=\"inventory.reserved\", "
	                              "color=blue") &&
	                  strstr(out, "\"cod_limit\" -> \"payment\" "
	                              "[label=\"default\", color=blue") &&
	                  strstr(out, "\"create_shipment\" -> \"failed\" "
	                              "[label=\"shipping.failed\", "
	                              "style=dashed, color=red, "
	                              "fontcolor=red, color=blue") &&
	                  strstr(out, "\"payment.undo\" [label=") &&
	                  /* not taken: the success path's end */
	                  strstr(out, "\"create_shipment\" -> \"completed\" "
	                              "[label=\"shipping.created\"];"),
	          "%s", out);
	{
		const char *u = strstr(out, "\"payment.undo\" [label=");
		const char *eol = u != NULL ? strchr(u, '\n') : NULL;
		CHECK(u != NULL && eol != NULL &&
		      strstr(u, "penwidth=3") != NULL &&
		      strstr(u, "penwidth=3") < eol);
	}
	CHECK_EQ(ctl("show ok-1 --dot"), 0);
	CHECK_MSG(strstr(out, "\"create_shipment\" -> \"completed\" "
	                      "[label=\"shipping.created\", color=blue"),
	          "%s", out);
}

static void
test_stuck_resume_and_listing(void)
{
	const char *stuck_sql =
	        "SELECT count(*) FROM sagas WHERE status = 'stuck'";
	const char *done_sql =
	        "SELECT count(*) FROM sagas WHERE status = 'completed'";

	post_order("ok-1");
	post_order("ok-2");
	post_order("stk-1");
	post_order("stk-2");
	CHECK_EQ(wait_count(done_sql, 2, 20), 0);
	CHECK_EQ(wait_count(stuck_sql, 2, 30), 0);
	pump(300); /* so --stuck-for 200ms holds */

	check_listing_and_stats();

	/* bulk --dry-run changes nothing */
	CHECK_EQ(ctl("abort --all --prefix stk- --reason 'test' "
	             "--dry-run"),
	         0);
	CHECK_MSG(strstr(out, "stk-1") && strstr(out, "stk-2") &&
	                  !strstr(out, "ok-") &&
	                  strstr(out, "would abort 2 sagas; nothing sent"),
	          "%s", out);
	fprintf(stderr,
	        "     $ sagactl abort --all --prefix stk- --dry-run\n%s\n",
	        out);
	/* finished sagas are never selected: nothing matches */
	CHECK_EQ(ctl("abort --all --status completed --reason t "
	             "--dry-run"),
	         1);
	CHECK_MSG(strstr(out, "no unfinished saga matches"), "%s", out);
	pump(500);
	CHECK_EQ(db_count(stuck_sql), 2);
	{ /* /metrics says so now (the gauge the SagaStuck alert reads) */
		static const char *const want[] = {
		        "saga_sagas{status=\"stuck\"} 2\n", NULL};
		int st = 0;
		char *m = testutil_http_until(orch_port, "/metrics", want, 5000,
		                              &st);
		CHECK_MSG(m != NULL && strstr(m, want[0]) != NULL, "%s",
		          m ? m : "no /metrics");
		CHECK_MSG(m != NULL &&
		                  strstr(m, "saga_stuck_oldest_seconds 0\n") ==
		                          NULL,
		          "the oldest stuck saga has waited no time: %s", m);
		free(m);
	}
	CHECK_EQ(db_count("SELECT count(*) FROM history WHERE kind = "
	                  "'operator'"),
	         0);

	/* failures: unknown saga, no broker */
	CHECK_EQ(ctl("resume nope-1 --reason x"), 1);
	CHECK_MSG(strstr(out, "no saga nope-1"), "%s", out);
	CHECK_EQ(ctl("show nope-1"), 1);
	free(out);
	out = NULL;
	CHECK_EQ(testutil_sh(
	                 &out,
	                 "'%s/sagactl' --amqp amqp://guest:guest@127.0.0.1:1/ "
	                 "resume stk-1 --reason x 2>&1",
	                 bindir),
	         1);

	/* resume one stuck saga, its refund now answered */
	W.refund_ok = true;
	CHECK_EQ(ctl("resume stk-1 --reason 'refund done by hand'"), 0);
	CHECK_MSG(strstr(out, "resume stk-1: applied (payment, compensating)"),
	          "%s", out);
	CHECK_EQ(wait_count("SELECT count(*) FROM sagas WHERE id = 'stk-1' "
	                    "AND status = 'failed' AND state = 'failed'",
	                    1, 20),
	         0);
	check_show_stk1();

	/* bulk resume of the rest */
	CHECK_EQ(ctl("resume --all --status stuck --reason 'bulk refund'"), 0);
	CHECK_MSG(
	        strstr(out, "resume stk-2: applied (payment, compensating)") &&
	                strstr(out, "resume: 1 saga: 1 applied, 0 repeated, "
	                            "0 rejected, 0 ignored, 0 without an "
	                            "answer"),
	        "%s", out);
	CHECK_EQ(wait_count("SELECT count(*) FROM sagas WHERE status = "
	                    "'failed'",
	                    2, 20),
	         0);
	CHECK_EQ(db_count("SELECT count(*) FROM history WHERE kind = "
	                  "'operator' AND reason = 'bulk refund' AND saga_id "
	                  "= 'stk-2'"),
	         1);
	CHECK_EQ(ctl("list --status stuck"), 0);
	CHECK_MSG(!strstr(out, "stk-"), "%s", out);
	CHECK_EQ(ctl("stats"), 0);
	CHECK_MSG(strstr(out, "oldest unfinished: none"), "%s", out);
	test_answers();
}

/* sagactl over amqps: --amqp-ca is used for a real TLS handshake (the
 * broker answers about the queue), a CA that signed nothing is refused
 * before anything is asked. */
static void
test_tls(void)
{
	char *plain = testbroker_start_args("sagactl-tls", "--tls");
	char *urls = NULL, *amqps, ca[512], other[512];
	const char *base = getenv("SAGA_BROKER_BASE")
	                           ? getenv("SAGA_BROKER_BASE")
	                           : "/tmp/saga-brokers";
	int rc;

	CHECK(plain != NULL);
	CHECK(testutil_sh(&urls, "'%s/scripts/broker' url sagactl-tls-%ld",
	                  srcdir, (long)getpid()) == 0);
	amqps = urls != NULL ? strstr(urls, "amqps://") : NULL;
	CHECK(amqps != NULL);
	*strchr(amqps, '\n') = '\0';
	snprintf(ca, sizeof(ca), "%s/sagactl-tls-%ld/tls/ca.pem", base,
	         (long)getpid());
	snprintf(other, sizeof(other), "%s/sagactl-tls-%ld/tls/other-ca.pem",
	         base, (long)getpid());
	free(out);
	out = NULL;
	rc = testutil_sh(&out,
	                 "'%s/sagactl' --amqp '%s' --amqp-ca '%s' dlq show "
	                 "nothing.dlq 2>&1",
	                 bindir, amqps, ca);
	CHECK_MSG(rc == 1 && strstr(out, "no queue nothing.dlq") != NULL,
	          "rc %d: %s", rc, out);
	free(out);
	out = NULL;
	rc = testutil_sh(&out,
	                 "'%s/sagactl' --amqp '%s' --amqp-ca '%s' dlq show "
	                 "nothing.dlq 2>&1",
	                 bindir, amqps, other);
	CHECK_MSG(rc == 1 && strstr(out, "no queue") == NULL, "rc %d: %s", rc,
	          out);
	fprintf(stderr, "     wrong CA: %s\n", out);
	testbroker_ctl("sagactl-tls", "stop");
	free(urls);
	free(plain);
}

int
main(void)
{
	char *chart_out = NULL;

	log_init("test_sagactl", LOG_WARN);
	srcdir = getenv("SAGA_SOURCE_DIR");
	bindir = getenv("SAGA_BIN_DIR");
	if (srcdir == NULL || bindir == NULL) {
		fprintf(stderr, "SAGA_SOURCE_DIR and SAGA_BIN_DIR must be set "
		                "(ctest sets them)\n");
		return 1;
	}
	atexit(testutil_kill_all);
	dir = testutil_tmpdir("sagactl");
	if (dir == NULL)
		return 1;
	snprintf(db, sizeof(db), "%s/orch.db", dir);
	snprintf(charts, sizeof(charts), "%s/charts", dir);
	snprintf(orch_log, sizeof(orch_log), "%s/orch.log", dir);
	/* order.yaml with short timeouts and few undo attempts: a stuck saga
	 * in about a second */
	if (testutil_sh(
	            &chart_out,
	            "mkdir -p '%s' && sed -e 's/timeout: 5s/timeout: "
	            "300ms/' -e 's/backoff: 500ms/backoff: 50ms/g' -e "
	            "'s/cap: 5s/cap: 200ms/g' -e '/^  retry: {attempts: 3/a\\' "
	            "-e '  compensate_retry: {attempts: 3, backoff: 50ms, "
	            "cap: 200ms}' '%s/statecharts/order.yaml' "
	            "> '%s/order.yaml'",
	            charts, srcdir, charts) != 0) {
		fprintf(stderr, "cannot write the test chart\n");
		return 1;
	}
	free(chart_out);
	RUN(test_usage_errors);
	orch_port = testutil_free_port();
	snprintf(http_addr, sizeof(http_addr), "127.0.0.1:%d", orch_port);
	url = testbroker_start("sagactl");
	if (url == NULL || world_open() != 0) {
		fprintf(stderr, "no broker\n");
		return 1;
	}
	{
		const char *const a[] = {"saga-orchestrator",
		                         "--amqp",
		                         url,
		                         "--db",
		                         db,
		                         "--statecharts",
		                         charts,
		                         "--batch-wait",
		                         "2",
		                         "--log-level",
		                         "warn",
		                         "--http",
		                         http_addr,
		                         NULL};
		orch_pid = testutil_spawn(a, orch_log);
	}
	if (orch_pid < 0 || wait_ready() != 0) {
		fprintf(stderr, "the orchestrator did not start (%s)\n",
		        orch_log);
		return 1;
	}
	RUN(test_stuck_resume_and_listing);
	RUN(test_tls);
	if (testutil_stop(orch_pid, SIGTERM) != 0)
		fprintf(stderr, "orchestrator did not exit cleanly: see %s\n",
		        orch_log);
	bus_close(W.bus);
	free(out);
	testbroker_ctl("sagactl", "stop");
	free(url);
	if (check_failed == 0)
		testutil_rmtree(dir);
	free(dir);
	return check_summary();
}

/* sagactl -- the operator's CLI for sagas and statecharts.
 *
 *   sagactl [--db PATH] [--amqp URL] [--json] COMMAND [ARGS]
 *
 * Reading commands open the orchestrator's database read-only (it never
 * writes the file, so it cannot race the orchestrator). Operator actions
 * are sent to the orchestrator as messages on its control queue, so every
 * change goes through the engine and is recorded in the saga's history
 * with who and why.
 *
 * Exit status: 0 success, 1 the command failed (an invalid chart, an
 * unknown saga, no broker, nothing matched where something must), 2 usage
 * error.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "clock.h"
#include "bus.h"
#include "chart_load.h"
#include "chart_tools.h"
#include "envelope.h"
#include "log.h"
#include "dlq.h"
#include "shard.h"
#include "store.h"

#define MAX_DBS 10 /* SQLite attaches at most 10 databases */

struct opts {
	const char *db, *amqp, *reason;
	/* every shard's database (--db given again, or --shards FILE); db is
	 * the first */
	const char *dbs[MAX_DBS];
	size_t ndb;
	bool too_many_dbs;
	const char *script, *order, *latency; /* simulate */
	/* list and --all filters, as given */
	const char *status, *chart, *state, *older, *stuck, *prefix, *limit;
	int json, help, all, yes, dry_run, dot;
};

/* The parsed filters of list and of the bulk actions. */
struct filter {
	const char *status, *chart, *state, *prefix;
	int64_t older_ms, stuck_ms; /* -1: not given */
	long long limit;            /* -1: none */
	bool unfinished;            /* bulk actions: skip final sagas */
};

static void
usage(FILE *f)
{
	fprintf(f,
	        "usage: sagactl [--db PATH] [--amqp URL] [--json] COMMAND ...\n"
	        "\n"
	        "  statechart validate FILE...   check statecharts; errors as "
	        "file:line:col: message\n"
	        "  statechart dot FILE           the chart as Graphviz dot\n"
	        "  statechart diff A B           what changed between two "
	        "charts\n"
	        "  statechart plan FILE          every failure point: path, "
	        "compensations, final\n"
	        "  simulate FILE [--script S] [--order O] [--latency D]\n"
	        "                                run the engine on a virtual "
	        "clock\n"
	        "  list [FILTERS]                sagas, newest first\n"
	        "  show ID [--dot]               one saga and its history (or "
	        "its path)\n"
	        "  stats                         counts, oldest unfinished, "
	        "step times\n"
	        "  retry|resume|abort|compensate|skip ID --reason TEXT\n"
	        "  retry|resume|abort|compensate|skip --all FILTERS --reason "
	        "TEXT [--dry-run]\n"
	        "  mark-compensated ID STEP --reason TEXT\n"
	        "                                operator actions, applied by "
	        "the orchestrator\n"
	        "  dlq list|show|replay|purge ...  dead-letter queues "
	        "(sagactl dlq --help)\n"
	        "\n"
	        "  FILTERS: --status S --chart NAME --state NAME --older-than "
	        "D\n"
	        "           --stuck-for D --prefix ID_PREFIX --limit N\n"
	        "           (sagactl list --help)\n"
	        "  --db PATH    the orchestrator's database (env SAGA_DB); "
	        "again for\n"
	        "               each shard's: list, show, stats and the "
	        "actions then\n"
	        "               span them all, each action going to the "
	        "saga's owner\n"
	        "  --shards F   the shards' databases, one path a line "
	        "(# comments)\n"
	        "  --amqp URL   the broker, for operator actions (env "
	        "SAGA_AMQP_URL)\n"
	        "  --json       machine-readable output (list, show, stats)\n"
	        "\n"
	        "  COMMAND --help shows a command's usage.\n"
	        "Exit status: 0 ok, 1 failure (unknown saga, no broker, "
	        "nothing\n"
	        "matched), 2 usage.\n");
}

static const char usage_list[] =
        "usage: sagactl [--db PATH] list [--json] [FILTERS]\n"
        "\n"
        "Lists sagas, newest first (at most 1000 unless --limit says).\n"
        "Filters, all of which must hold:\n"
        "  --status S        running|compensating|completed|failed|stuck|"
        "aborted\n"
        "  --chart NAME      the saga's chart (`saga:` name)\n"
        "  --state NAME      its current state (during compensation: the "
        "step\n"
        "                    being undone)\n"
        "  --older-than D    started more than D ago\n"
        "  --stuck-for D     in its current state for more than D and not\n"
        "                    finished (running, compensating or stuck)\n"
        "  --prefix P        its id starts with P\n"
        "  --limit N         at most N sagas\n"
        "Durations D: a whole number and a unit: 250ms, 10s, 5m, 2h, 1d.\n"
        "--json: an array of {id, chart, chart_version, status, state, "
        "phase,\n"
        "attempt, started_at, state_entered_at, updated_at} (times in ms "
        "since\n"
        "the epoch). Exit status: 0 (also when nothing matches), 1 the\n"
        "database cannot be read, 2 usage.\n";

static const char usage_show[] =
        "usage: sagactl [--db PATH] show ID [--json | --dot]\n"
        "\n"
        "One saga: chart and version, status, state, times, and its "
        "history\n"
        "(every event in, command and event out; operator actions with who\n"
        "and why).\n"
        "  --json   the same as one object with a \"history\" array\n"
        "  --dot    the chart version the saga runs on as Graphviz dot, its\n"
        "           path drawn thick and blue: states visited, edges taken\n"
        "           (choices passed through included), compensations sent\n"
        "           e.g. sagactl show ord-1 --dot | dot -Tsvg > ord-1.svg\n"
        "Exit status: 0 ok, 1 no such saga (or its chart does not load), 2\n"
        "usage.\n";

static const char usage_stats[] =
        "usage: sagactl [--db PATH] stats [--json]\n"
        "\n"
        "  - sagas by status and state;\n"
        "  - the oldest unfinished saga (running, compensating or stuck): "
        "id,\n"
        "    status, state, age since it started;\n"
        "  - step times per state: p50 and p99 (nearest rank) of the time a\n"
        "    saga spent in a state while running, from entering it (when "
        "its\n"
        "    command is sent) to the history event that moved it on (the\n"
        "    reply that left it, a timeout that failed it, an operator\n"
        "    action). Retries and backoff are included; a saga still in a\n"
        "    state is not counted, nor is time spent compensating.\n"
        "Exit status: 0 ok, 1 the database cannot be read, 2 usage.\n";

static const char usage_action[] =
        "usage: sagactl [--amqp URL] [--db PATH] ACTION ID --reason TEXT\n"
        "       sagactl [--amqp URL] --db PATH ACTION --all FILTERS "
        "--reason TEXT\n"
        "               [--dry-run] [--yes]\n"
        "ACTION: retry | resume | abort | compensate | skip\n"
        "\n"
        "Sends a request per saga to the orchestrator's control queue; the\n"
        "orchestrator applies it through the engine (or rejects it, e.g.\n"
        "resume of a saga that is not stuck) and records it in the saga's\n"
        "history with your user name and the reason: see `sagactl show "
        "ID`.\n"
        "  retry       resend the current command with a fresh retry budget\n"
        "  resume      a stuck saga: resend the undo it waits on\n"
        "  abort       stop the saga where it is, nothing undone\n"
        "  compensate  fail a running saga now: undo what was done\n"
        "  skip        take the current step as succeeded (its first "
        "success\n"
        "              reply), or the undo being waited on as done;\n"
        "              in a parallel state with several branches in "
        "flight,\n"
        "              `skip ID STEP` names the branch's step\n"
        "With --db, a single ID must exist (else exit 1).\n"
        "--all acts on every unfinished saga the filters select (see "
        "`sagactl\n"
        "list --help`); at least one filter is required unless --yes.\n"
        "--dry-run lists the sagas that would be acted on and sends "
        "nothing.\n"
        "Exit status: 0 sent (or listed), 1 unknown saga, nothing matched, "
        "no\n"
        "broker or no orchestrator, 2 usage.\n";

static const char usage_mark[] =
        "usage: sagactl [--amqp URL] [--db PATH] mark-compensated ID STEP "
        "--reason TEXT\n"
        "\n"
        "Tells the orchestrator that STEP's compensation was done by hand\n"
        "(a compensating or stuck saga then goes on with the next undo).\n"
        "Exit status: 0 sent, 1 unknown saga or no broker, 2 usage.\n";

/* ---- pure statechart tools (chart_tools.h): no broker, no database ---- */

static const char usage_dot[] =
        "usage: sagactl statechart dot FILE\n"
        "\n"
        "Writes the chart as a Graphviz digraph on stdout, e.g.\n"
        "  sagactl statechart dot statecharts/order.yaml | dot -Tsvg "
        ">order.svg\n"
        "Steps are boxes, choices diamonds, waits dashed ellipses, finals\n"
        "double circles (red when a failure ends there). Dashed red edges "
        "are\n"
        "{fail: X} replies, failing branches and exhausted attempts; dotted\n"
        "self-loops are retry replies; yellow notes are compensations.\n"
        "Exit status: 0 ok, 1 the chart is invalid, 2 usage.\n";

static const char usage_diff[] =
        "usage: sagactl statechart diff A B\n"
        "\n"
        "Lists what changed from chart A to chart B: both versions, states\n"
        "added (+) and removed (-), and per state each changed key (~):\n"
        "command, route, pass, on targets, save, emit, timeout, retry,\n"
        "exhausted target, compensate, branches and guards, default, wait,\n"
        "max_visits and too_many. Then what a reload means for running\n"
        "sagas: they finish on A's version (every version's source is\n"
        "kept); new ones start on B; the states of A that B lacks.\n"
        "Exit status (as diff(1)): 0 same version, 1 different, 2 usage or\n"
        "a chart that does not load.\n";

static const char usage_plan[] =
        "usage: sagactl statechart plan FILE\n"
        "\n"
        "Walks the chart from its initial state through every branch and\n"
        "lists the success paths, then every failure point (a failure "
        "reply,\n"
        "a step's attempts exhausted, a failing choice branch) with the "
        "path\n"
        "to it, the compensations that would run in order, and the final\n"
        "state. Exit status: 0 ok, 1 the chart is invalid, 2 usage.\n";

static const char usage_simulate[] =
        "usage: sagactl simulate FILE [--script S] [--order O] [--latency "
        "D]\n"
        "\n"
        "Runs the real engine on a virtual clock starting at 0 and prints\n"
        "the timeline: time, event, state, and actions (commands sent,\n"
        "events emitted, timers).\n"
        "\n"
        "  --script S   comma-separated KEY=OUTCOME, used in order per key:\n"
        "               KEY is a step (its command) or STEP.undo (its\n"
        "               compensation); OUTCOME is ok, fail, timeout, away\n"
        "               (an outage: the timeout fires while nobody takes\n"
        "               the command, so it does not count), or a reply\n"
        "               type in full or by its last part, optionally\n"
        "               followed by xN. For an undo, fail means every "
        "attempt\n"
        "               times out. A command not scripted gets ok. E.g.\n"
        "               'reserve_stock=ok, payment=declined'\n"
        "               'create_shipment=timeout x3, payment.undo=fail'\n"
        "               'reserve_stock=away x20'  (down for 100s)\n"
        "  --order O    the order as YAML/JSON flow text ('{...}') or a "
        "file;\n"
        "               its top-level keys replace those of the default "
        "order\n"
        "               (every declared field with a plausible value)\n"
        "  --latency D  time from a command to its reply (default 100ms)\n"
        "\n"
        "Exit status: 0 the saga reached a final status, 1 it did not\n"
        "(stuck) or the chart is invalid, 2 usage or a bad script/order.\n";

/* Usage error for a tool: its usage on stderr, exit status 2. */
static int
tool_usage(const char *text)
{
	fputs(text, stderr);
	return 2;
}

/* dot and plan: one chart in, text on stdout. */
static int
statechart_one(int argc, char **argv, const char *usage,
               int (*fn)(FILE *out, const struct chart *c))
{
	struct chart *c;
	int rc;

	if (argc != 1)
		return tool_usage(usage);
	c = chart_tools_load(argv[0], stderr);
	if (c == NULL)
		return 1;
	rc = fn(stdout, c);
	chart_free(c);
	if (rc != 0 || fflush(stdout) != 0) {
		fprintf(stderr, "sagactl: write error or out of memory\n");
		return 1;
	}
	return 0;
}

static int
statechart_diff(int argc, char **argv)
{
	struct chart *a, *b = NULL;
	int rc = 2;

	if (argc != 2)
		return tool_usage(usage_diff);
	a = chart_tools_load(argv[0], stderr);
	if (a != NULL)
		b = chart_tools_load(argv[1], stderr);
	if (a != NULL && b != NULL) {
		rc = chart_diff(stdout, a, b);
		if (rc < 0 || fflush(stdout) != 0) {
			fprintf(stderr, "sagactl: write error\n");
			rc = 2;
		}
	}
	chart_free(a);
	chart_free(b);
	return rc;
}

/* Reads a whole (small) file; NULL with errno set on failure. */
static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	size_t n;

	if (f == NULL)
		return NULL;
	buf = malloc(1024 * 1024 + 1);
	if (buf == NULL) {
		fclose(f);
		return NULL;
	}
	n = fread(buf, 1, 1024 * 1024, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* The --order option over the chart's default order: its top-level keys
 * replace the default's. 0, or 2 (usage) with a message. */
static int
sim_order(const struct chart *c, const char *arg, struct value *order)
{
	struct value given = VALUE_NIL_INIT;
	const char *p = arg;
	char err[512], *text = NULL;
	size_t i;

	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	if (*p != '{') {
		text = slurp(arg);
		if (text == NULL) {
			fprintf(stderr, "sagactl: --order %s: %s\n", arg,
			        strerror(errno));
			return 2;
		}
	}
	if (chart_sim_parse_order(text != NULL ? text : arg, &given, err,
	                          sizeof(err)) != 0) {
		fprintf(stderr, "sagactl: --order: %s\n", err);
		free(text);
		return 2;
	}
	free(text);
	if (chart_sim_default_order(c, order) != 0) {
		value_clear(&given);
		fprintf(stderr, "sagactl: out of memory\n");
		return 1;
	}
	for (i = 0; i < given.u.m.len; i++)
		if (value_map_put(order, given.u.m.items[i].key,
		                  &given.u.m.items[i].val) != 0) {
			value_clear(&given);
			fprintf(stderr, "sagactl: out of memory\n");
			return 1;
		}
	value_clear(&given);
	return 0;
}

static int
simulate(const struct opts *o, int argc, char **argv)
{
	struct chart_sim_options so = {.script = o->script, .latency_ms = 100};
	struct value order = VALUE_NIL_INIT;
	struct chart *c;
	char err[512];
	int rc;

	if (argc != 1)
		return tool_usage(usage_simulate);
	if (o->latency != NULL &&
	    chart_parse_duration(o->latency, &so.latency_ms) != 0) {
		fprintf(stderr,
		        "sagactl: --latency %s: not a duration (250ms, 2s)\n",
		        o->latency);
		return 2;
	}
	c = chart_tools_load(argv[0], stderr);
	if (c == NULL)
		return 1;
	if (o->order != NULL) {
		rc = sim_order(c, o->order, &order);
		if (rc != 0) {
			chart_free(c);
			return rc;
		}
		so.order = &order;
	}
	rc = chart_simulate(stdout, c, &so, NULL, err, sizeof(err));
	fflush(stdout);
	if (rc < 0)
		fprintf(stderr, "sagactl: %s\n", err);
	value_clear(&order);
	chart_free(c);
	return rc == -2 ? 2 : rc < 0 ? 1 : rc;
}

static int
validate(int argc, char **argv)
{
	int bad = 0;
	if (argc < 1) {
		fprintf(stderr, "sagactl: statechart validate needs FILE...\n");
		return 2;
	}
	for (int i = 0; i < argc; i++) {
		struct chart_errors errs;
		struct chart *c;
		chart_errors_init(&errs);
		c = chart_load_file(argv[i], &errs);
		if (c != NULL) {
			printf("%s: ok (saga %s, version %s, %zu states)\n",
			       argv[i], c->name, c->version, c->nstates);
			chart_free(c);
		} else {
			for (size_t k = 0; k < errs.count; k++)
				fprintf(stderr, "%s\n", errs.items[k].text);
			if (errs.dropped > 0)
				fprintf(stderr, "%s: %zu more errors\n",
				        argv[i], errs.dropped);
			bad = 1;
		}
		chart_errors_clear(&errs);
	}
	return bad;
}

/* ---- the database: list, show, stats ---- */

static const char *col(sqlite3_stmt *s, int i);

/* Runs one SQL text, reporting an error. 0 or -1. */
static int
exec_sql(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	fprintf(stderr, "sagactl: %s\n", msg != NULL ? msg : "database error");
	sqlite3_free(msg);
	return -1;
}

/* The shards' tables as one: each further database is attached as sN,
 * and temp views named like the tables (temp comes first in SQLite's
 * name lookup) union them, so every query below spans all shards. */
static int
attach_shards(struct store *st, const struct opts *o)
{
	static const char *const tables[] = {"sagas", "history", "timers",
	                                     "charts"};
	sqlite3 *db = store_db(st);
	char sql[8192];

	/* the connection is read-only; query_only would also forbid the
	 * temp views */
	if (exec_sql(db, "PRAGMA query_only = OFF") != 0)
		return -1;
	for (size_t i = 1; i < o->ndb; i++) {
		char *q =
		        sqlite3_mprintf("ATTACH %Q AS s%d", o->dbs[i], (int)i);
		sqlite3_stmt *s;
		int v = -1, want = -2;
		int rc = q != NULL ? exec_sql(db, q) : -1;
		sqlite3_free(q);
		if (rc != 0)
			return -1;
		snprintf(sql, sizeof(sql),
		         "SELECT (SELECT user_version FROM "
		         "pragma_user_version), "
		         "(SELECT user_version FROM s%d.pragma_user_version)",
		         (int)i);
		if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
			if (sqlite3_step(s) == SQLITE_ROW) {
				want = sqlite3_column_int(s, 0);
				v = sqlite3_column_int(s, 1);
			}
			sqlite3_finalize(s);
		}
		if (v != want) {
			fprintf(stderr,
			        "sagactl: %s: schema version %d, not %d (is it "
			        "an orchestrator database?)\n",
			        o->dbs[i], v, want);
			return -1;
		}
	}
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
		size_t n = (size_t)snprintf(
		        sql, sizeof(sql),
		        "CREATE TEMP VIEW %s AS SELECT * FROM (SELECT * FROM "
		        "main.%s",
		        tables[t], tables[t]);
		for (size_t i = 1; i < o->ndb && n < sizeof(sql); i++)
			n += (size_t)snprintf(sql + n, sizeof(sql) - n,
			                      " UNION ALL SELECT * FROM s%d.%s",
			                      (int)i, tables[t]);
		/* a chart version is its content: one row each */
		if (n < sizeof(sql))
			snprintf(sql + n, sizeof(sql) - n, ")%s",
			         strcmp(tables[t], "charts") == 0
			                 ? " GROUP BY version"
			                 : "");
		if (exec_sql(db, sql) != 0)
			return -1;
	}
	return exec_sql(db, "PRAGMA query_only = ON");
}

static struct store *
open_db(const struct opts *o)
{
	char err[512];
	struct store *st;
	if (o->too_many_dbs) {
		fprintf(stderr, "sagactl: at most %d databases\n", MAX_DBS);
		return NULL;
	}
	if (o->db == NULL) {
		fprintf(stderr, "sagactl: --db PATH is required (or SAGA_DB, "
		                "or --shards FILE)\n");
		return NULL;
	}
	st = store_open_readonly(o->db, err, sizeof(err));
	if (st == NULL) {
		fprintf(stderr, "sagactl: %s\n", err);
		return NULL;
	}
	if (o->ndb > 1 && attach_shards(st, o) != 0) {
		store_close(st);
		return NULL;
	}
	return st;
}

/* The control queue of the orchestrator (shard) that owns saga id: into
 * q. 1 found, 0 no such saga, -1 error. */
static int
owner_queue(struct store *st, const struct opts *o, const char *id, char *q,
            size_t cap)
{
	sqlite3 *db = store_db(st);
	for (size_t i = 0; i < (o->ndb > 0 ? o->ndb : 1); i++) {
		char schema[16], sql[80], shard[16];
		sqlite3_stmt *s;
		int rc;
		snprintf(schema, sizeof(schema), i == 0 ? "main" : "s%d",
		         (int)i);
		snprintf(sql, sizeof(sql),
		         "SELECT 1 FROM %s.sagas WHERE id = ?1", schema);
		if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
			return -1;
		sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
		rc = sqlite3_step(s);
		sqlite3_finalize(s);
		if (rc == SQLITE_DONE)
			continue;
		if (rc != SQLITE_ROW)
			return -1;
		snprintf(sql, sizeof(sql),
		         "SELECT value FROM %s.node WHERE key = 'shard'",
		         schema);
		if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
			return -1;
		rc = sqlite3_step(s);
		snprintf(shard, sizeof(shard), "%s",
		         rc == SQLITE_ROW ? col(s, 0) : "");
		sqlite3_finalize(s);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			return -1;
		shard_control_queue(shard, q, cap);
		return 1;
	}
	return 0;
}

/* A JSON string: quotes, backslashes and control characters escaped. */
static void
json_str(const char *s)
{
	putchar('"');
	for (; s != NULL && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c == '\n')
			fputs("\\n", stdout);
		else if (c == '\t')
			fputs("\\t", stdout);
		else if (c < 0x20 || c == 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

/* ,"key":"value" (or without the comma when first). */
static void
json_kv(const char *key, const char *val, bool first)
{
	printf("%s\"%s\":", first ? "" : ",", key);
	json_str(val);
}

/* ms since the epoch as "2026-11-24 19:12:03.123" (UTC), in buf. */
static const char *
fmt_ms(long long ms, char *buf, size_t cap)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	size_t n;
	gmtime_r(&t, &tm);
	n = strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(buf + n, cap - n, ".%03lld", ms % 1000);
	return buf;
}

/* A value as JSON on stdout (bin as a string of its bytes' length). */
static void
json_value(const struct value *v)
{
	switch (v->type) {
	case VALUE_NIL:
		fputs("null", stdout);
		break;
	case VALUE_BOOL:
		fputs(v->u.b ? "true" : "false", stdout);
		break;
	case VALUE_INT:
		printf("%lld", (long long)v->u.i);
		break;
	case VALUE_FLOAT:
		printf("%.17g", v->u.f);
		break;
	case VALUE_STR:
		json_str(v->u.s.ptr);
		break;
	case VALUE_BIN:
		printf("\"(%zu bytes)\"", v->u.s.len);
		break;
	case VALUE_ARRAY:
		putchar('[');
		for (size_t i = 0; i < v->u.a.len; i++) {
			if (i > 0)
				putchar(',');
			json_value(&v->u.a.items[i]);
		}
		putchar(']');
		break;
	case VALUE_MAP:
		putchar('{');
		for (size_t i = 0; i < v->u.m.len; i++) {
			if (i > 0)
				putchar(',');
			json_str(v->u.m.items[i].key);
			putchar(':');
			json_value(&v->u.m.items[i].val);
		}
		putchar('}');
		break;
	}
}

/* The chart a saga runs on, from the database; NULL with a message. */
static struct chart *
saga_chart(sqlite3 *db, const char *id)
{
	struct chart_errors errs;
	struct chart *c = NULL;
	sqlite3_stmt *s;

	chart_errors_init(&errs);
	if (sqlite3_prepare_v2(db,
	                       "SELECT c.file, c.source FROM sagas s JOIN "
	                       "charts c ON c.version = s.chart_version WHERE "
	                       "s.id = ?1",
	                       -1, &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "sagactl: %s\n", sqlite3_errmsg(db));
		return NULL;
	}
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW)
		c = chart_load_buffer(col(s, 0), col(s, 1), strlen(col(s, 1)),
		                      &errs);
	if (c == NULL)
		fprintf(stderr, "sagactl: saga %s: cannot load its chart\n",
		        id);
	sqlite3_finalize(s);
	chart_errors_clear(&errs);
	return c;
}

/* The branches of a saga in a parallel state (the record's "branches"):
 * a JSON member, or one text line per branch. */
static void
show_branches(sqlite3 *db, const char *id, const struct value *rec, bool json)
{
	const struct value *a = value_map_get(rec, "branches");
	struct chart *c;
	size_t k;

	if (a == NULL || a->type != VALUE_ARRAY)
		return;
	c = saga_chart(db, id);
	if (c == NULL)
		return;
	fputs(json ? ",\"branches\":[" : "", stdout);
	for (k = 0; k < a->u.a.len; k++) {
		const struct value *b = &a->u.a.items[k];
		const struct value *st = value_map_get(b, "state");
		const struct value *ph = value_map_get(b, "phase");
		const struct value *at = value_map_get(b, "attempt");
		bool ok = st != NULL && st->type == VALUE_INT && st->u.i >= 0 &&
		          (uint64_t)st->u.i < c->nstates && ph != NULL &&
		          ph->type == VALUE_STR && at != NULL &&
		          at->type == VALUE_INT;
		const char *name = ok ? c->states[st->u.i].name : "?";
		const char *phase = ok ? ph->u.s.ptr : "?";
		bool joined = strcmp(phase, "none") == 0;

		if (json) {
			printf("%s{\"branch\":%zu", k ? "," : "", k + 1);
			json_kv("state", joined ? "join" : name, false);
			json_kv("phase", phase, false);
			printf(",\"attempt\":%lld}",
			       ok ? (long long)at->u.i : 0LL);
		} else if (joined) {
			printf("branch %zu  joined\n", k + 1);
		} else {
			printf("branch %zu  %s (%s, attempt %lld)\n", k + 1,
			       name, phase, ok ? (long long)at->u.i : 0LL);
		}
	}
	fputs(json ? "]" : "", stdout);
	chart_free(c);
}

/* The saga's order data (from its stored record) and its pending timer,
 * for show: JSON members (",\"data\":...") or two text lines. */
static void
show_data_timer(sqlite3 *db, const char *id, bool json)
{
	sqlite3_stmt *s;
	struct value rec;
	char err[256], t[40];

	value_set_nil(&rec);
	if (sqlite3_prepare_v2(db, "SELECT record FROM sagas WHERE id = ?1", -1,
	                       &s, NULL) == SQLITE_OK) {
		sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_ROW &&
		    value_unpack(sqlite3_column_blob(s, 0),
		                 (size_t)sqlite3_column_bytes(s, 0),
		                 &value_default_limits, &rec, err,
		                 sizeof(err)) == 0 &&
		    value_map_get(&rec, "data") != NULL) {
			fputs(json ? ",\"data\":" : "data      ", stdout);
			json_value(value_map_get(&rec, "data"));
			if (!json)
				putchar('\n');
			show_branches(db, id, &rec, json);
		}
		sqlite3_finalize(s);
	}
	value_clear(&rec);
	if (sqlite3_prepare_v2(db,
	                       "SELECT seq, fire_at FROM timers "
	                       "WHERE saga_id = ?1",
	                       -1, &s, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW) {
		long long at = (long long)sqlite3_column_int64(s, 1);
		if (json)
			printf(",\"timer\":{\"seq\":%lld,\"fire_at\":%lld}",
			       (long long)sqlite3_column_int64(s, 0), at);
		else
			printf("timer     fires %s UTC (in %lld ms)\n",
			       fmt_ms(at, t, sizeof(t)),
			       at - (long long)clock_wall_ms());
	} else if (!json) {
		printf("timer     none\n");
	}
	sqlite3_finalize(s);
}

/* A duration for people: 250ms, 12.3s, 5m12s, 2h05m, 3d04h. */
static const char *
fmt_dur(long long ms, char *buf, size_t cap)
{
	if (ms < 0)
		ms = 0;
	if (ms < 1000)
		snprintf(buf, cap, "%lldms", ms);
	else if (ms < 60000)
		snprintf(buf, cap, "%lld.%llds", ms / 1000, ms % 1000 / 100);
	else if (ms < 3600000)
		snprintf(buf, cap, "%lldm%02llds", ms / 60000,
		         ms % 60000 / 1000);
	else if (ms < 86400000)
		snprintf(buf, cap, "%lldh%02lldm", ms / 3600000,
		         ms % 3600000 / 60000);
	else
		snprintf(buf, cap, "%lldd%02lldh", ms / 86400000,
		         ms % 86400000 / 3600000);
	return buf;
}

static const char *
col(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	return t != NULL ? (const char *)t : "";
}

/* "250ms", "10s", "5m", "2h", "1d" -> ms. 0, or -1 if s is not one (a
 * whole number, then exactly one unit; at most 10 years). */
static int
parse_duration(const char *s, int64_t *ms)
{
	static const struct {
		const char *unit;
		int64_t ms;
	} units[] = {{"ms", 1},
	             {"s", 1000},
	             {"m", 60000},
	             {"h", 3600000LL},
	             {"d", 86400000LL}};
	int64_t n = 0;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		n = n * 10 + (*p - '0');
		if (n > 3650LL * 86400000LL)
			return -1;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(p, units[i].unit) == 0) {
			if (n > 3650LL * 86400000LL / units[i].ms)
				return -1;
			*ms = n * units[i].ms;
			return 0;
		}
	}
	return -1;
}

static bool
known_status(const char *s)
{
	static const char *const st[] = {
	        "running", "compensating", "completed", "failed",
	        "stuck",   "aborted",      "cancelled"};
	for (size_t i = 0; i < sizeof(st) / sizeof(st[0]); i++)
		if (strcmp(s, st[i]) == 0)
			return true;
	return false;
}

/* The filter options into *f. 0, or 2 (usage) with a message. */
static int
parse_filter(const struct opts *o, struct filter *f)
{
	memset(f, 0, sizeof(*f));
	f->status = o->status;
	f->chart = o->chart;
	f->state = o->state;
	f->prefix = o->prefix;
	f->older_ms = f->stuck_ms = -1;
	f->limit = -1;
	if (o->status != NULL && !known_status(o->status)) {
		fprintf(stderr,
		        "sagactl: --status %s: not a status (running, "
		        "compensating, completed, failed, stuck, aborted)\n",
		        o->status);
		return 2;
	}
	if (o->older != NULL && parse_duration(o->older, &f->older_ms) != 0) {
		fprintf(stderr,
		        "sagactl: --older-than %s: not a duration (250ms, 10s, "
		        "5m, 2h, 1d)\n",
		        o->older);
		return 2;
	}
	if (o->stuck != NULL && parse_duration(o->stuck, &f->stuck_ms) != 0) {
		fprintf(stderr,
		        "sagactl: --stuck-for %s: not a duration (250ms, 10s, "
		        "5m, 2h, 1d)\n",
		        o->stuck);
		return 2;
	}
	if (o->limit != NULL) {
		char *end;
		errno = 0;
		f->limit = strtoll(o->limit, &end, 10);
		if (errno != 0 || end == o->limit || *end != '\0' ||
		    f->limit < 1 || o->limit[0] == '+') {
			fprintf(stderr,
			        "sagactl: --limit %s: not a positive whole "
			        "number\n",
			        o->limit);
			return 2;
		}
	}
	if (o->prefix != NULL && o->prefix[0] == '\0') {
		fprintf(stderr, "sagactl: --prefix: empty\n");
		return 2;
	}
	return 0;
}

static bool
filter_selects(const struct filter *f)
{
	return f->status != NULL || f->chart != NULL || f->state != NULL ||
	       f->prefix != NULL || f->older_ms >= 0 || f->stuck_ms >= 0;
}

#define FINAL_STATUSES "('completed', 'failed', 'aborted')"

/* The sagas the filter selects, newest first: columns id, chart, status,
 * state, attempt, started_at, state_entered_at, updated_at, chart_version,
 * phase. NULL with a message on failure. */
static sqlite3_stmt *
select_sagas(struct store *st, const struct filter *f)
{
	sqlite3_stmt *s;
	int64_t now = clock_wall_ms();

	if (sqlite3_prepare_v2(
	            store_db(st),
	            "SELECT id, chart, status, state, attempt, started_at, "
	            "state_entered_at, updated_at, chart_version, phase "
	            "FROM sagas WHERE (?1 IS NULL OR status = ?1) "
	            "AND (?2 IS NULL OR chart = ?2) "
	            "AND (?3 IS NULL OR state = ?3) "
	            "AND (?4 IS NULL OR started_at < ?4) "
	            "AND (?5 IS NULL OR (state_entered_at < ?5 AND status NOT "
	            "IN " FINAL_STATUSES ")) "
	            "AND (?6 IS NULL OR substr(id, 1, length(?6)) = ?6) "
	            "AND (?7 = 0 OR status NOT IN " FINAL_STATUSES ") "
	            "ORDER BY started_at DESC, id LIMIT ?8",
	            -1, &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "sagactl: %s\n", sqlite3_errmsg(store_db(st)));
		return NULL;
	}
	if (f->status != NULL)
		sqlite3_bind_text(s, 1, f->status, -1, SQLITE_STATIC);
	if (f->chart != NULL)
		sqlite3_bind_text(s, 2, f->chart, -1, SQLITE_STATIC);
	if (f->state != NULL)
		sqlite3_bind_text(s, 3, f->state, -1, SQLITE_STATIC);
	if (f->older_ms >= 0)
		sqlite3_bind_int64(s, 4, now - f->older_ms);
	if (f->stuck_ms >= 0)
		sqlite3_bind_int64(s, 5, now - f->stuck_ms);
	if (f->prefix != NULL)
		sqlite3_bind_text(s, 6, f->prefix, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 7, f->unfinished ? 1 : 0);
	sqlite3_bind_int64(s, 8, f->limit);
	return s;
}

static void
print_saga_row(sqlite3_stmt *s, const struct opts *o, int n, int64_t now)
{
	if (o->json) {
		printf("%s{", n ? "," : "");
		json_kv("id", col(s, 0), true);
		json_kv("chart", col(s, 1), false);
		json_kv("chart_version", col(s, 8), false);
		json_kv("status", col(s, 2), false);
		json_kv("state", col(s, 3), false);
		json_kv("phase", col(s, 9), false);
		printf(",\"attempt\":%d,\"started_at\":%lld,"
		       "\"state_entered_at\":%lld,\"updated_at\":%lld}",
		       sqlite3_column_int(s, 4),
		       (long long)sqlite3_column_int64(s, 5),
		       (long long)sqlite3_column_int64(s, 6),
		       (long long)sqlite3_column_int64(s, 7));
	} else {
		char b1[32];
		printf("%-24s %-8s %-13s %-16s %7d  %s\n", col(s, 0), col(s, 1),
		       col(s, 2), col(s, 3), sqlite3_column_int(s, 4),
		       fmt_dur(now - sqlite3_column_int64(s, 6), b1,
		               sizeof(b1)));
	}
}

static int
list(const struct opts *o)
{
	struct filter f;
	struct store *st;
	sqlite3_stmt *s;
	int64_t now = clock_wall_ms();
	int n = 0, rc;

	rc = parse_filter(o, &f);
	if (rc != 0)
		return rc;
	if (f.limit < 0)
		f.limit = 1000;
	st = open_db(o);
	if (st == NULL)
		return 1;
	s = select_sagas(st, &f);
	if (s == NULL) {
		store_close(st);
		return 1;
	}
	if (o->json)
		printf("[");
	else
		printf("%-24s %-8s %-13s %-16s %7s  %s\n", "ID", "CHART",
		       "STATUS", "STATE", "ATTEMPT", "IN STATE");
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		print_saga_row(s, o, n++, now);
	if (o->json)
		printf("]\n");
	if (rc != SQLITE_DONE)
		fprintf(stderr, "sagactl: %s\n", sqlite3_errmsg(store_db(st)));
	sqlite3_finalize(s);
	store_close(st);
	return rc == SQLITE_DONE ? 0 : 1;
}

/* Step times: one sample per (state, ms). */
struct sample {
	char state[CHART_NAME_MAX];
	long long ms;
};

/* Nearest-rank percentile of sorted v[0..n). */
static long long
percentile(const struct sample *v, size_t n, int p)
{
	size_t rank = (size_t)(((long long)p * (long long)n + 99) / 100);
	if (rank < 1)
		rank = 1;
	return v[rank - 1].ms;
}

/* Time in each state while running: the history rows where a saga's
 * state or status changed are the entries; an entry lasts until the next
 * one. Only entries with status running and a next entry count. */
static const char stats_steps_sql[] =
        "WITH h AS (SELECT saga_id, seq, at, state, status, "
        " lag(state) OVER w AS pstate, lag(status) OVER w AS pstatus "
        " FROM history WHERE kind NOT IN ('ignored', 'rejected') "
        " WINDOW w AS (PARTITION BY saga_id ORDER BY seq)), "
        "e AS (SELECT saga_id, at, state, status, lead(at) OVER "
        " (PARTITION BY saga_id ORDER BY seq) AS next_at FROM h "
        " WHERE pstate IS NULL OR pstate != state OR pstatus != status) "
        "SELECT state, next_at - at FROM e WHERE status = 'running' AND "
        "next_at IS NOT NULL ORDER BY state, 2";

static int
stats(const struct opts *o)
{
	struct store *st = open_db(o);
	sqlite3_stmt *s;
	struct sample *v = NULL;
	size_t n = 0, cap = 0, i, j;
	int64_t now = clock_wall_ms();
	int rows = 0, rc = 1;
	char b1[32], b2[32];

	if (st == NULL)
		return 1;
	/* by status and state */
	if (sqlite3_prepare_v2(
	            store_db(st),
	            "SELECT status, state, count(*) FROM sagas GROUP "
	            "BY status, state ORDER BY status, state",
	            -1, &s, NULL) != SQLITE_OK)
		goto db_error;
	if (o->json)
		printf("{\"by_status_state\":[");
	else
		printf("%-13s %-16s %s\n", "STATUS", "STATE", "SAGAS");
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (o->json) {
			printf("%s{", rows ? "," : "");
			json_kv("status", col(s, 0), true);
			json_kv("state", col(s, 1), false);
			printf(",\"sagas\":%d}", sqlite3_column_int(s, 2));
		} else {
			printf("%-13s %-16s %d\n", col(s, 0), col(s, 1),
			       sqlite3_column_int(s, 2));
		}
		rows++;
	}
	sqlite3_finalize(s);

	/* the oldest unfinished saga */
	if (sqlite3_prepare_v2(store_db(st),
	                       "SELECT id, status, state, started_at FROM "
	                       "sagas WHERE status NOT IN " FINAL_STATUSES
	                       " ORDER BY started_at, id LIMIT 1",
	                       -1, &s, NULL) != SQLITE_OK)
		goto db_error;
	if (sqlite3_step(s) == SQLITE_ROW) {
		long long age = now - sqlite3_column_int64(s, 3);
		if (o->json) {
			printf("],\"oldest_unfinished\":{");
			json_kv("id", col(s, 0), true);
			json_kv("status", col(s, 1), false);
			json_kv("state", col(s, 2), false);
			printf(",\"started_at\":%lld,\"age_ms\":%lld}",
			       (long long)sqlite3_column_int64(s, 3), age);
		} else {
			printf("\noldest unfinished: %s (%s in %s), started %s "
			       "ago\n",
			       col(s, 0), col(s, 1), col(s, 2),
			       fmt_dur(age, b1, sizeof(b1)));
		}
	} else if (o->json) {
		printf("],\"oldest_unfinished\":null");
	} else {
		printf("\noldest unfinished: none\n");
	}
	sqlite3_finalize(s);

	/* step times */
	if (sqlite3_prepare_v2(store_db(st), stats_steps_sql, -1, &s, NULL) !=
	    SQLITE_OK)
		goto db_error;
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 256;
			struct sample *nv = realloc(v, nc * sizeof(*v));
			if (nv == NULL) {
				sqlite3_finalize(s);
				fprintf(stderr, "sagactl: out of memory\n");
				goto out;
			}
			v = nv;
			cap = nc;
		}
		snprintf(v[n].state, sizeof(v[n].state), "%s", col(s, 0));
		v[n].ms = sqlite3_column_int64(s, 1);
		n++;
	}
	sqlite3_finalize(s);
	if (o->json)
		printf(",\"step_times\":[");
	else
		printf("\nstep times (in a state while running, entry to the "
		       "event that left it)\n%-16s %7s %9s %9s\n",
		       "STATE", "COUNT", "P50", "P99");
	for (i = 0; i < n; i = j) {
		for (j = i; j < n && strcmp(v[j].state, v[i].state) == 0; j++)
			;
		if (o->json) {
			printf("%s{", i ? "," : "");
			json_kv("state", v[i].state, true);
			printf(",\"count\":%zu,\"p50_ms\":%lld,\"p99_ms\":%"
			       "lld}",
			       j - i, percentile(v + i, j - i, 50),
			       percentile(v + i, j - i, 99));
		} else {
			printf("%-16s %7zu %9s %9s\n", v[i].state, j - i,
			       fmt_dur(percentile(v + i, j - i, 50), b1,
			               sizeof(b1)),
			       fmt_dur(percentile(v + i, j - i, 99), b2,
			               sizeof(b2)));
		}
	}
	if (o->json)
		printf("]}\n");
	rc = 0;
	goto out;
db_error:
	fprintf(stderr, "sagactl: %s\n", sqlite3_errmsg(store_db(st)));
out:
	free(v);
	store_close(st);
	return rc;
}

/* ---- show ID --dot: the saga's path on its chart ---- */

/* Marks a path from a to b: the direct edge, else through choice states
 * (which the history never shows: they chain within one step). */
static bool
mark_path(const struct chart *c, int a, int b, bool *states, bool *edges,
          int depth)
{
	const struct chart_state *s = &c->states[a];
	int succ[64];
	size_t n = 0, i;

	switch (s->type) {
	case STATE_STEP:
		for (i = 0; i < s->nreplies && n < 62; i++)
			if (s->replies[i].kind != REPLY_RETRY)
				succ[n++] = s->replies[i].target;
		succ[n++] = s->exhausted_target;
		break;
	case STATE_CHOICE:
		for (i = 0; i < s->nbranches && n < 63; i++)
			succ[n++] = s->branches[i].target;
		succ[n++] = s->default_target;
		break;
	case STATE_WAIT:
		succ[n++] = s->next;
		break;
	case STATE_FINAL:
		break;
	case STATE_PARALLEL:
		for (i = 0; i < s->nfork && n < 63; i++)
			succ[n++] = s->fork[i];
		succ[n++] = s->next;
		break;
	}
	for (i = 0; i < n; i++) {
		if (succ[i] == b) {
			edges[(size_t)a * c->nstates + (size_t)b] = true;
			return true;
		}
	}
	if (depth >= 8)
		return false;
	for (i = 0; i < n; i++) {
		int x = succ[i];
		if (x >= 0 && c->states[x].type == STATE_CHOICE &&
		    mark_path(c, x, b, states, edges, depth + 1)) {
			states[x] = true;
			edges[(size_t)a * c->nstates + (size_t)x] = true;
			return true;
		}
	}
	return false;
}

static int
show_dot(struct store *st, const char *id)
{
	struct chart_errors errs;
	struct chart *c = NULL;
	struct chart_dot_marks m;
	sqlite3_stmt *s;
	bool *states = NULL, *edges = NULL, *undone = NULL;
	int rc = 1, prev = -1;

	chart_errors_init(&errs);
	if (sqlite3_prepare_v2(store_db(st),
	                       "SELECT c.file, c.source FROM sagas s JOIN "
	                       "charts c ON c.version = s.chart_version WHERE "
	                       "s.id = ?1",
	                       -1, &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "sagactl: %s\n", sqlite3_errmsg(store_db(st)));
		goto out;
	}
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW) {
		const char *src = col(s, 1);
		c = chart_load_buffer(col(s, 0), src, strlen(src), &errs);
		if (c == NULL)
			for (size_t k = 0; k < errs.count; k++)
				fprintf(stderr, "%s\n", errs.items[k].text);
	} else {
		fprintf(stderr,
		        "sagactl: saga %s: its chart version is not in "
		        "the database\n",
		        id);
	}
	sqlite3_finalize(s);
	if (c == NULL)
		goto out;
	states = calloc(c->nstates, sizeof(bool));
	undone = calloc(c->nstates, sizeof(bool));
	edges = calloc(c->nstates * c->nstates, sizeof(bool));
	if (states == NULL || undone == NULL || edges == NULL) {
		fprintf(stderr, "sagactl: out of memory\n");
		goto out;
	}
	if (sqlite3_prepare_v2(store_db(st),
	                       "SELECT kind, state, status FROM history WHERE "
	                       "saga_id = ?1 AND kind NOT IN ('ignored', "
	                       "'rejected') ORDER BY seq",
	                       -1, &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "sagactl: %s\n", sqlite3_errmsg(store_db(st)));
		goto out;
	}
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	while (sqlite3_step(s) == SQLITE_ROW) {
		const char *kind = col(s, 0), *status = col(s, 2);
		int idx = chart_state_index(c, col(s, 1));
		bool fwd = strcmp(status, "running") == 0 ||
		           (idx >= 0 && c->states[idx].type == STATE_FINAL);
		if (idx < 0)
			continue;
		if (fwd) {
			/* moving forward, or arriving at a final */
			states[idx] = true;
			if (prev >= 0 && prev != idx)
				mark_path(c, prev, idx, states, edges, 0);
			prev = idx;
		} else if (strcmp(kind, "send") == 0 &&
		           (strcmp(status, "compensating") == 0 ||
		            strcmp(status, "stuck") == 0)) {
			undone[idx] = true; /* its undo command went out */
		}
	}
	sqlite3_finalize(s);
	m.states = states;
	m.edges = edges;
	m.undone = undone;
	if (chart_dot_marked(stdout, c, &m) != 0 || fflush(stdout) != 0)
		fprintf(stderr, "sagactl: write error\n");
	else
		rc = 0;
out:
	free(states);
	free(edges);
	free(undone);
	chart_free(c);
	chart_errors_clear(&errs);
	return rc;
}

static int
show(const struct opts *o, const char *id)
{
	struct store *st = open_db(o);
	sqlite3_stmt *s;
	int found = 0;
	if (st == NULL)
		return 1;
	if (sqlite3_prepare_v2(store_db(st),
	                       "SELECT chart, chart_version, status, state, "
	                       "phase, attempt, started_at, updated_at, "
	                       "state_entered_at FROM sagas WHERE id = ?1",
	                       -1, &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "sagactl: %s\n", sqlite3_errmsg(store_db(st)));
		store_close(st);
		return 1;
	}
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW) {
		char t1[40], t2[40], t3[40];
		found = 1;
		if (o->dot) {
			/* the chart and history are read below */
		} else if (o->json) {
			printf("{");
			json_kv("id", id, true);
			json_kv("chart", col(s, 0), false);
			json_kv("chart_version", col(s, 1), false);
			json_kv("status", col(s, 2), false);
			json_kv("state", col(s, 3), false);
			json_kv("phase", col(s, 4), false);
			printf(",\"attempt\":%d,\"started_at\":%lld,"
			       "\"state_entered_at\":%lld,\"updated_at\":%lld",
			       sqlite3_column_int(s, 5),
			       (long long)sqlite3_column_int64(s, 6),
			       (long long)sqlite3_column_int64(s, 8),
			       (long long)sqlite3_column_int64(s, 7));
			show_data_timer(store_db(st), id, true);
			printf(",\"history\":[");
		} else {
			printf("saga      %s\nchart     %s (version %s)\n"
			       "status    %s\nstate     %s (%s, attempt %d), "
			       "for %s\nstarted   %s UTC\n"
			       "updated   %s UTC\n",
			       id, col(s, 0), col(s, 1), col(s, 2), col(s, 3),
			       col(s, 4), sqlite3_column_int(s, 5),
			       fmt_dur(clock_wall_ms() -
			                       sqlite3_column_int64(s, 8),
			               t3, sizeof(t3)),
			       fmt_ms(sqlite3_column_int64(s, 6), t1,
			              sizeof(t1)),
			       fmt_ms(sqlite3_column_int64(s, 7), t2,
			              sizeof(t2)));
			show_data_timer(store_db(st), id, false);
			printf("\nhistory\n");
		}
	}
	sqlite3_finalize(s);
	if (!found) {
		fprintf(stderr, "sagactl: no saga %s\n", id);
		store_close(st);
		return 1;
	}
	if (o->dot) {
		int rc = show_dot(st, id);
		store_close(st);
		return rc;
	}
	if (sqlite3_prepare_v2(store_db(st),
	                       "SELECT at, kind, state, status, detail, "
	                       "coalesce(actor, ''), coalesce(reason, '') FROM "
	                       "history WHERE saga_id = ?1 ORDER BY seq",
	                       -1, &s, NULL) == SQLITE_OK) {
		char t[40];
		int n = 0;
		sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
		while (sqlite3_step(s) == SQLITE_ROW) {
			if (o->json) {
				printf("%s{\"at\":%lld", n ? "," : "",
				       (long long)sqlite3_column_int64(s, 0));
				json_kv("kind", col(s, 1), false);
				json_kv("state", col(s, 2), false);
				json_kv("status", col(s, 3), false);
				json_kv("detail", col(s, 4), false);
				if (col(s, 5)[0])
					json_kv("actor", col(s, 5), false);
				if (col(s, 6)[0])
					json_kv("reason", col(s, 6), false);
				printf("}");
			} else {
				printf("  %s  %-8s %-16s %-12s %s%s%s%s%s\n",
				       fmt_ms(sqlite3_column_int64(s, 0), t,
				              sizeof(t)) +
				               11,
				       col(s, 1), col(s, 2), col(s, 3),
				       col(s, 4), col(s, 5)[0] ? " by " : "",
				       col(s, 5), col(s, 6)[0] ? ": " : "",
				       col(s, 6));
			}
			n++;
		}
		sqlite3_finalize(s);
	}
	if (o->json)
		printf("]}\n");
	store_close(st);
	return 0;
}

/* ---- operator actions ---- */

/* The request type of an action: "operator.mark_compensated". */
static void
action_type(const char *action, char *type, size_t cap)
{
	snprintf(type, cap, "operator.%s", action);
	for (char *p = type; *p; p++)
		if (*p == '-')
			*p = '_';
}

/* Publishes one request (not yet confirmed). 0, or -1. */
static int
publish_request(struct bus *b, const struct opts *o, const char *action,
                const char *id, const char *queue, const char *step)
{
	struct envelope e;
	struct bus_message m = {0};
	struct passwd *pw = getpwuid(getuid());
	char *body = NULL;
	size_t len;
	int rc = -1;

	envelope_init(&e);
	envelope_new_id(e.id, sizeof(e.id), "op");
	snprintf(e.saga, sizeof(e.saga), "%s", id);
	action_type(action, e.type, sizeof(e.type));
	value_map_put_str(&e.payload, "actor",
	                  pw != NULL ? pw->pw_name : "unknown");
	value_map_put_str(&e.payload, "reason", o->reason);
	if (step != NULL)
		value_map_put_str(&e.payload, "step", step);
	if (envelope_encode(&e, &body, &len) == 0) {
		m.exchange = "";
		m.routing_key = queue;
		m.message_id = e.id;
		m.correlation_id = e.saga;
		m.type = e.type;
		m.mandatory = true;
		m.body = body;
		m.len = len;
		rc = bus_publish(b, &m, 1) == 0 ? 0 : -1;
	}
	free(body);
	envelope_clear(&e);
	return rc;
}

/* Sends one request per id and waits for the broker's confirms. */
static int
send_requests(const struct opts *o, const char *action, const char *const *ids,
              const char *const *queues, size_t n, const char *step)
{
	struct bus_config cfg = {.url = o->amqp, .name = "sagactl"};
	char err[512];
	struct bus *b;
	int rc = 1;
	size_t i;

	b = bus_open(&cfg, err, sizeof(err));
	if (b == NULL || bus_connect(b, err, sizeof(err)) != 0) {
		fprintf(stderr, "sagactl: %s\n", err);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (publish_request(b, o, action, ids[i], queues[i], step) !=
		    0) {
			fprintf(stderr, "sagactl: %s %s: cannot send\n", action,
			        ids[i]);
			goto out;
		}
		/* keep the unconfirmed window small */
		if ((i + 1) % 200 == 0 && bus_flush(b, 10000, NULL) != 0)
			break;
	}
	if (i < n || bus_flush(b, 10000, NULL) != 0) {
		fprintf(stderr, "sagactl: the broker did not confirm the "
		                "request\n");
		goto out;
	}
	if (bus_stats(b)->returned > 0) {
		fprintf(stderr, "sagactl: no orchestrator control queue: is "
		                "the orchestrator running?\n");
		goto out;
	}
	for (i = 0; i < n; i++)
		printf("%s %s: sent (see `sagactl show %s`)\n", action, ids[i],
		       ids[i]);
	rc = 0;
out:
	bus_close(b);
	return rc;
}

static int
action_preconditions(const struct opts *o, const char *action)
{
	if (o->reason == NULL || o->reason[0] == '\0') {
		fprintf(stderr,
		        "sagactl: %s needs --reason TEXT (it goes in "
		        "the saga's history)\n",
		        action);
		return 2;
	}
	if (o->amqp == NULL && !o->dry_run) {
		fprintf(stderr,
		        "sagactl: --amqp URL is required for %s (or "
		        "SAGA_AMQP_URL)\n",
		        action);
		return 2;
	}
	return 0;
}

/* One saga by id; with --db it must exist. */
static int
operator_action(const struct opts *o, const char *action, const char *id,
                const char *step)
{
	const char *ids[1] = {id};
	char queue[80] = "orchestrator.control";
	const char *queues[1] = {queue};
	int rc = action_preconditions(o, action);

	if (rc != 0)
		return rc;
	if (o->db != NULL) { /* it must exist; it goes to its owner */
		struct store *st = open_db(o);
		if (st == NULL)
			return 1;
		rc = owner_queue(st, o, id, queue, sizeof(queue));
		if (rc < 0)
			fprintf(stderr, "sagactl: %s\n",
			        sqlite3_errmsg(store_db(st)));
		store_close(st);
		if (rc == 0)
			fprintf(stderr, "sagactl: no saga %s\n", id);
		if (rc != 1)
			return 1;
	}
	return send_requests(o, action, ids, queues, 1, step);
}

/* --all: every unfinished saga the filters select. */
static int
bulk_action(const struct opts *o, const char *action)
{
	struct filter f;
	struct store *st;
	sqlite3_stmt *s;
	char **ids = NULL, **queues = NULL;
	size_t n = 0, cap = 0, i;
	int64_t now = clock_wall_ms();
	int rc;

	rc = parse_filter(o, &f);
	if (rc != 0)
		return rc;
	if (!filter_selects(&f) && !o->yes) {
		fprintf(stderr,
		        "sagactl: %s --all with no filter acts on every "
		        "unfinished saga: give a filter (--status, --chart, "
		        "--state, --older-than, --stuck-for, --prefix) or "
		        "--yes\n",
		        action);
		return 2;
	}
	rc = action_preconditions(o, action);
	if (rc != 0)
		return rc;
	f.unfinished = true;
	st = open_db(o);
	if (st == NULL)
		return 1;
	s = select_sagas(st, &f);
	if (s == NULL) {
		store_close(st);
		return 1;
	}
	if (o->dry_run)
		printf("%-24s %-8s %-13s %-16s %7s  %s\n", "ID", "CHART",
		       "STATUS", "STATE", "ATTEMPT", "IN STATE");
	rc = 0;
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (o->dry_run) {
			print_saga_row(s, o, (int)n, now);
			n++;
			continue;
		}
		char queue[80];
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			char **nv = realloc(ids, nc * sizeof(*ids));
			char **nq = nv != NULL
			                    ? realloc(queues, nc * sizeof(*nq))
			                    : NULL;
			if (nv != NULL)
				ids = nv;
			if (nq == NULL) {
				rc = 1;
				break;
			}
			queues = nq;
			cap = nc;
		}
		if (owner_queue(st, o, col(s, 0), queue, sizeof(queue)) != 1) {
			fprintf(stderr, "sagactl: %s: %s\n", col(s, 0),
			        sqlite3_errmsg(store_db(st)));
			rc = 1;
			break;
		}
		ids[n] = strdup(col(s, 0));
		queues[n] = strdup(queue);
		if (ids[n] == NULL || queues[n] == NULL) {
			free(ids[n]);
			free(queues[n]);
			rc = 1;
			break;
		}
		n++;
	}
	sqlite3_finalize(s);
	store_close(st);
	if (rc != 0) {
		fprintf(stderr, "sagactl: out of memory\n");
	} else if (n == 0) {
		fprintf(stderr,
		        "sagactl: %s --all: no unfinished saga "
		        "matches\n",
		        action);
		rc = 1;
	} else if (o->dry_run) {
		printf("dry run: would %s %zu saga%s; nothing sent\n", action,
		       n, n == 1 ? "" : "s");
	} else {
		rc = send_requests(o, action, (const char *const *)ids,
		                   (const char *const *)queues, n, NULL);
		if (rc == 0)
			printf("%s: %zu request%s sent\n", action, n,
			       n == 1 ? "" : "s");
	}
	for (i = 0; i < n && ids != NULL; i++) {
		free(ids[i]);
		free(queues[i]);
	}
	free(ids);
	free(queues);
	return rc;
}

/* ---- command line ---- */

enum {
	OPT_CHART = 256,
	OPT_STATE,
	OPT_OLDER,
	OPT_STUCK,
	OPT_PREFIX,
	OPT_LIMIT,
	OPT_ALL,
	OPT_YES,
	OPT_DRY_RUN,
	OPT_DOT,
	OPT_SHARDS,
};

static const struct option lopts[] = {
        {"db", required_argument, NULL, 'd'},
        {"amqp", required_argument, NULL, 'a'},
        {"json", no_argument, NULL, 'j'},
        {"reason", required_argument, NULL, 'r'},
        {"status", required_argument, NULL, 's'},
        {"script", required_argument, NULL, 'S'},
        {"order", required_argument, NULL, 'o'},
        {"latency", required_argument, NULL, 'L'},
        {"chart", required_argument, NULL, OPT_CHART},
        {"state", required_argument, NULL, OPT_STATE},
        {"older-than", required_argument, NULL, OPT_OLDER},
        {"stuck-for", required_argument, NULL, OPT_STUCK},
        {"prefix", required_argument, NULL, OPT_PREFIX},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"all", no_argument, NULL, OPT_ALL},
        {"yes", no_argument, NULL, OPT_YES},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"dot", no_argument, NULL, OPT_DOT},
        {"shards", required_argument, NULL, OPT_SHARDS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
};

/* --shards FILE: a database path a line; blank lines and # comments
 * skipped. The paths live until exit. */
static int
read_shards(struct opts *o, const char *path)
{
	static char lines[MAX_DBS][4096];
	static size_t used;
	char buf[4096];
	FILE *f = fopen(path, "r");
	int lineno = 0;

	if (f == NULL) {
		fprintf(stderr, "sagactl: --shards %s: %s\n", path,
		        strerror(errno));
		return -1;
	}
	while (fgets(buf, sizeof(buf), f) != NULL) {
		char *p = buf, *end;
		lineno++;
		while (*p == ' ' || *p == '\t')
			p++;
		end = p + strcspn(p, "#\r\n");
		while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		*end = '\0';
		if (*p == '\0')
			continue;
		if (o->ndb == MAX_DBS || used == MAX_DBS) {
			fprintf(stderr,
			        "sagactl: %s:%d: at most %d databases\n", path,
			        lineno, MAX_DBS);
			fclose(f);
			return -1;
		}
		snprintf(lines[used], sizeof(lines[used]), "%s", p);
		o->dbs[o->ndb++] = lines[used++];
	}
	fclose(f);
	if (o->ndb == 0) {
		fprintf(stderr, "sagactl: --shards %s: no database in it\n",
		        path);
		return -1;
	}
	o->db = o->dbs[0];
	return 0;
}

/* One parsed option into *o; -1 for an unknown one. */
static int
take_opt(struct opts *o, int c)
{
	switch (c) {
	case 'd':
		if (o->ndb == MAX_DBS)
			o->too_many_dbs = true;
		else
			o->dbs[o->ndb++] = optarg;
		o->db = o->dbs[0];
		break;
	case OPT_SHARDS:
		if (read_shards(o, optarg) != 0)
			return -1;
		break;
	case 'a':
		o->amqp = optarg;
		break;
	case 'j':
		o->json = 1;
		break;
	case 'r':
		o->reason = optarg;
		break;
	case 's':
		o->status = optarg;
		break;
	case 'S':
		o->script = optarg;
		break;
	case 'o':
		o->order = optarg;
		break;
	case 'L':
		o->latency = optarg;
		break;
	case OPT_CHART:
		o->chart = optarg;
		break;
	case OPT_STATE:
		o->state = optarg;
		break;
	case OPT_OLDER:
		o->older = optarg;
		break;
	case OPT_STUCK:
		o->stuck = optarg;
		break;
	case OPT_PREFIX:
		o->prefix = optarg;
		break;
	case OPT_LIMIT:
		o->limit = optarg;
		break;
	case OPT_ALL:
		o->all = 1;
		break;
	case OPT_YES:
		o->yes = 1;
		break;
	case OPT_DRY_RUN:
		o->dry_run = 1;
		break;
	case OPT_DOT:
		o->dot = 1;
		break;
	case 'h':
		o->help = 1;
		break;
	default:
		return -1;
	}
	return 0;
}

static bool
is_action(const char *cmd)
{
	return strcmp(cmd, "retry") == 0 || strcmp(cmd, "resume") == 0 ||
	       strcmp(cmd, "abort") == 0 || strcmp(cmd, "compensate") == 0 ||
	       strcmp(cmd, "skip") == 0;
}

/* A usage error for a command: the message, its usage, exit status 2. */
static int
cmd_usage(const char *text, const char *msg)
{
	if (msg != NULL)
		fprintf(stderr, "sagactl: %s\n", msg);
	fputs(text, stderr);
	return 2;
}

static int
run_command(struct opts *o, const char *cmd, int argc, char **argv)
{
	bool filters = o->status != NULL || o->chart != NULL ||
	               o->state != NULL || o->older != NULL ||
	               o->stuck != NULL || o->prefix != NULL ||
	               o->limit != NULL;
	bool is_list = strcmp(cmd, "list") == 0;
	bool act = is_action(cmd);

	if (filters && !is_list && !(act && o->all))
		return cmd_usage(act ? usage_action : usage_list,
		                 "filters belong to list and to the --all form "
		                 "of an action");
	if ((o->all || o->dry_run || o->yes) && !act)
		return cmd_usage(usage_action,
		                 "--all, --dry-run and --yes belong to retry, "
		                 "resume, abort, compensate and skip");
	if ((o->dry_run || o->yes) && !o->all)
		return cmd_usage(usage_action,
		                 "--dry-run and --yes go with --all");
	if (o->dot && strcmp(cmd, "show") != 0)
		return cmd_usage(usage_show, "--dot belongs to show");
	if (is_list) {
		if (o->help) {
			fputs(usage_list, stdout);
			return 0;
		}
		if (argc != 0)
			return cmd_usage(usage_list, "list takes no arguments");
		return list(o);
	}
	if (strcmp(cmd, "stats") == 0) {
		if (o->help) {
			fputs(usage_stats, stdout);
			return 0;
		}
		if (argc != 0)
			return cmd_usage(usage_stats,
			                 "stats takes no arguments");
		return stats(o);
	}
	if (strcmp(cmd, "show") == 0) {
		if (o->help) {
			fputs(usage_show, stdout);
			return 0;
		}
		if (argc != 1)
			return cmd_usage(usage_show, "show needs one saga ID");
		if (o->dot && o->json)
			return cmd_usage(usage_show,
			                 "--dot and --json exclude each other");
		return show(o, argv[0]);
	}
	if (act) {
		if (o->help) {
			fputs(usage_action, stdout);
			return 0;
		}
		if (o->json)
			return cmd_usage(usage_action,
			                 "--json belongs to list, show and "
			                 "stats");
		if (o->all) {
			if (argc != 0)
				return cmd_usage(usage_action,
				                 "--all takes no saga ID");
			return bulk_action(o, cmd);
		}
		if (argc == 2 && strcmp(cmd, "skip") == 0)
			return operator_action(o, cmd, argv[0], argv[1]);
		if (argc != 1)
			return cmd_usage(usage_action,
			                 "an action needs one saga ID (or "
			                 "--all)");
		return operator_action(o, cmd, argv[0], NULL);
	}
	if (strcmp(cmd, "mark-compensated") == 0) {
		if (o->help) {
			fputs(usage_mark, stdout);
			return 0;
		}
		if (argc != 2 || o->json)
			return cmd_usage(usage_mark, NULL);
		return operator_action(o, cmd, argv[0], argv[1]);
	}
	if (o->help) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "sagactl: unknown command: %s\n", cmd);
	usage(stderr);
	return 2;
}

int
main(int argc, char **argv)
{
	struct opts o = {.amqp = getenv("SAGA_AMQP_URL")};
	const char *cmd;
	int c;

	log_init("sagactl", LOG_WARN);
	opterr = 1;
	while ((c = getopt_long(argc, argv, "+h", lopts, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			return 0;
		}
		if (take_opt(&o, c) != 0) {
			usage(stderr);
			return 2;
		}
	}
	/* options may also follow the command */
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind++];
	if (strcmp(cmd, "dlq") == 0) /* its own arguments: dlq.h */
		return dlq_main(o.amqp, o.json != 0, argc - optind,
		                argv + optind);
	{
		int sub = optind;
		/* 0, not 1: glibc then resets fully and permutes, so options
		 * may also follow the arguments ("simulate FILE --script S") */
		optind = 0;
		while ((c = getopt_long(argc - sub + 1, argv + sub - 1, "h",
		                        lopts, NULL)) != -1) {
			if (take_opt(&o, c) != 0) {
				fprintf(stderr,
				        "sagactl: see `sagactl %s "
				        "--help`\n",
				        cmd);
				return 2;
			}
		}
		argv += sub - 1;
		argc -= sub - 1;
	}
	argc -= optind;
	argv += optind;
	if (o.ndb == 0 && getenv("SAGA_DB") != NULL) {
		o.dbs[o.ndb++] = getenv("SAGA_DB");
		o.db = o.dbs[0];
	}
	if ((o.script != NULL || o.order != NULL || o.latency != NULL) &&
	    strcmp(cmd, "simulate") != 0) {
		fprintf(stderr, "sagactl: --script, --order and --latency "
		                "belong to simulate\n");
		return 2;
	}
	if (strcmp(cmd, "statechart") == 0) {
		const char *sub = argc >= 1 ? argv[0] : "";
		const char *help = strcmp(sub, "dot") == 0    ? usage_dot
		                   : strcmp(sub, "diff") == 0 ? usage_diff
		                   : strcmp(sub, "plan") == 0 ? usage_plan
		                                              : NULL;
		if (o.help) {
			if (help != NULL)
				fputs(help, stdout);
			else
				printf("usage: sagactl statechart "
				       "validate|dot|diff|plan ...\n");
			return 0;
		}
		if (strcmp(sub, "validate") == 0)
			return validate(argc - 1, argv + 1);
		if (strcmp(sub, "dot") == 0)
			return statechart_one(argc - 1, argv + 1, usage_dot,
			                      chart_dot);
		if (strcmp(sub, "diff") == 0)
			return statechart_diff(argc - 1, argv + 1);
		if (strcmp(sub, "plan") == 0)
			return statechart_one(argc - 1, argv + 1, usage_plan,
			                      chart_plan);
		fprintf(stderr, "sagactl: statechart validate|dot|diff|plan "
		                "FILE...\n");
		return 2;
	}
	if (strcmp(cmd, "simulate") == 0) {
		if (o.help) {
			fputs(usage_simulate, stdout);
			return 0;
		}
		return simulate(&o, argc, argv);
	}
	return run_command(&o, cmd, argc, argv);
}

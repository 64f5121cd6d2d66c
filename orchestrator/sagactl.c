/* sagactl -- the operator's CLI for sagas and statecharts.
 *
 *   sagactl [--db PATH] [--amqp URL] [--json] COMMAND [ARGS]
 *
 * Reading commands open the orchestrator's database read-only (it never
 * writes the file, so it cannot race the orchestrator). Operator actions
 * are requests to the orchestrator (exchange saga.control, routing key
 * its control queue) carrying the AMQP user_id of the URL's user, which
 * RabbitMQ validates: every change goes through the engine and is
 * recorded in the saga's history with who (that user) and why. sagactl
 * waits for each request's answer (lib/request.h) and prints it.
 *
 * Exit status: 0 success, 1 the command failed (an invalid chart, an
 * unknown saga, no broker, nothing matched where something must, an
 * action rejected, ignored or not answered), 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "array.h"
#include "audit.h"
#include "clock.h"
#include "bus.h"
#include "chart_load.h"
#include "chart_tools.h"
#include "envelope.h"
#include "log.h"
#include "number.h"
#include "dlq.h"
#include "request.h"
#include "jsonout.h"
#include "stockctl.h"
#include "shard.h"
#include "store.h"

#define MAX_DBS STORE_SHARDS_MAX

struct opts {
	const char *db, *amqp, *reason;
	const char *ca, *cert, *key; /* --amqp-ca/cert/key, or NULL: env */
	/* every shard's database (--db given again, or --shards FILE); db is
	 * the first */
	const char *dbs[MAX_DBS];
	size_t ndb;
	bool too_many_dbs;
	const char *script, *order, *latency; /* simulate */
	/* list and --all filters, as given */
	const char *status, *chart, *state, *older, *stuck, *prefix, *limit;
	const char *since; /* audit */
	int json, help, all, yes, dry_run, dot;
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
	        "  dlq list|show|replay|discard|purge ...  dead-letter queues "
	        "(sagactl dlq --help)\n"
	        "  audit ID [--since T]          an order's events from the "
	        "stream audit\n"
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

static const char usage_audit[] =
        "usage: sagactl [--amqp URL] audit ID [--since T] [--json]\n"
        "\n"
        "The order's events (every order.* event of order_events) from the\n"
        "stream audit, oldest first, one a line: time (UTC), type, message "
        "id\n"
        "and the payload's key fields. Nothing is removed from the "
        "stream.\n"
        "  --since T   events published at or after T: an RFC 3339 time\n"
        "              (2026-12-05T16:00:00Z) or a time ago: 10m, 2h, 3d;\n"
        "              default: every event retained (read from the "
        "first)\n"
        "  --json      {order_id, events: [{offset, at, published_at, "
        "type,\n"
        "              message_id, step, payload}], scanned, complete, "
        "note}\n"
        "The read ends when it has caught up (a message published after "
        "it\n"
        "began, or none for half a second), or after scanning 1,000,000\n"
        "messages, which it says. The URL's user needs read on audit (the\n"
        "operator user has it). --amqp-ca/--amqp-cert/--amqp-key as for "
        "the\n"
        "other commands.\n"
        "Exit status: 0 events found, 1 none (or no broker), 2 usage.\n";

static const char usage_action[] =
        "usage: sagactl [--amqp URL] [--db PATH] ACTION ID --reason TEXT\n"
        "       sagactl [--amqp URL] --db PATH ACTION --all FILTERS "
        "--reason TEXT\n"
        "               [--dry-run] [--yes]\n"
        "ACTION: retry | resume | abort | compensate | skip\n"
        "\n"
        "Sends a request per saga to its orchestrator (exchange "
        "saga.control) and\n"
        "waits for the answers. The orchestrator applies each through the\n"
        "engine, or rejects it (e.g. resume of a saga that is not stuck, "
        "or a\n"
        "request not from its operator user), and records it in the "
        "saga's\n"
        "history with the broker user of --amqp (validated by RabbitMQ) "
        "and\n"
        "the reason: see `sagactl show ID`. One line per saga:\n"
        "  resume ord-1: applied (payment, running)   the state and status "
        "after\n"
        "  abort ord-2: rejected: <the reason>\n"
        "  retry ord-3: ignored: <why nothing was done>\n"
        "  skip ord-4: repeated: ...   handled before (a redelivery): "
        "counts as\n"
        "                              done, see `sagactl show ID`\n"
        "  abort ord-5: no answer: ...   e.g. none within the timeout (10 "
        "s, plus\n"
        "                5 ms a saga): the request stays queued and is "
        "carried\n"
        "                out once the orchestrator takes it\n"
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
        "list --help`); at least one filter is required unless --yes. It "
        "prints\n"
        "a line per saga, then a summary: \"resume: 3 sagas: 2 applied, 0 "
        "repeated,\n"
        "1 rejected, 0 ignored, 0 without an answer\".\n"
        "--dry-run lists the sagas that would be acted on and sends "
        "nothing.\n"
        "Exit status: 0 every request applied (or repeated), 1 any "
        "rejected,\n"
        "ignored or unanswered (or unknown saga, nothing matched, no "
        "broker),\n"
        "2 usage.\n";

static const char usage_mark[] =
        "usage: sagactl [--amqp URL] [--db PATH] mark-compensated ID STEP "
        "--reason TEXT\n"
        "\n"
        "Tells the orchestrator that STEP's compensation was done by hand\n"
        "(a compensating or stuck saga then goes on with the next undo),\n"
        "and waits for the answer as the other actions do (sagactl resume "
        "--help).\n"
        "Exit status: 0 applied, 1 rejected, ignored, not answered, "
        "unknown\n"
        "saga or no broker, 2 usage.\n";

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
	/* more than one: the shards' databases, read as one */
	st = store_open_shards(o->dbs, o->ndb, err, sizeof(err));
	if (st == NULL)
		fprintf(stderr, "sagactl: %s\n", err);
	return st;
}

/* A failed read: the store's reason on stderr; exit status 1. */
static int
db_error(struct store *st)
{
	fprintf(stderr, "sagactl: %s\n", store_error(st));
	return 1;
}

static int
out_of_memory(void)
{
	fprintf(stderr, "sagactl: out of memory\n");
	return 1;
}

/* Writes a JSON document (taken; NULL if it failed to build) on stdout.
 * 0, or 1 with a message. */
static int
print_json(json_t *j)
{
	if (jsonout_print(stdout, j) == 0)
		return 0;
	fprintf(stderr, "sagactl: write error or out of memory\n");
	return 1;
}

/* The control queue of the orchestrator (shard) that owns saga id: into
 * q. 1 found, 0 no such saga, -1 error (store_error). */
static int
owner_queue(struct store *st, const char *id, char *q, size_t cap)
{
	char shard[16];
	bool found;

	if (store_saga_shard(st, id, shard, sizeof(shard), &found) != 0)
		return -1;
	if (!found)
		return 0;
	shard_control_queue(shard, q, cap);
	return 1;
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

/* The filter options into *f (times from now). 0, or 2 (usage) with a
 * message. */
static int
parse_filter(const struct opts *o, struct store_saga_filter *f)
{
	static const char durations[] = "not a duration (250ms, 10s, 5m, "
	                                "2h, 1d)";
	int64_t now = clock_wall_ms(), ms;

	memset(f, 0, sizeof(*f));
	f->status = o->status;
	f->chart = o->chart;
	f->state = o->state;
	f->id_prefix = o->prefix;
	f->started_before_ms = f->entered_before_ms = -1;
	f->limit = -1;
	if (o->status != NULL && !known_status(o->status)) {
		fprintf(stderr,
		        "sagactl: --status %s: not a status (running, "
		        "compensating, completed, failed, stuck, aborted)\n",
		        o->status);
		return 2;
	}
	if (o->older != NULL) {
		if (parse_duration(o->older, &ms) != 0) {
			fprintf(stderr, "sagactl: --older-than %s: %s\n",
			        o->older, durations);
			return 2;
		}
		f->started_before_ms = now - ms;
	}
	if (o->stuck != NULL) {
		if (parse_duration(o->stuck, &ms) != 0) {
			fprintf(stderr, "sagactl: --stuck-for %s: %s\n",
			        o->stuck, durations);
			return 2;
		}
		f->entered_before_ms = now - ms;
	}
	if (o->limit != NULL) {
		long long n;
		if (number_parse(o->limit, 1, LLONG_MAX, &n) != 0) {
			fprintf(stderr,
			        "sagactl: --limit %s: not a positive whole "
			        "number\n",
			        o->limit);
			return 2;
		}
		f->limit = n;
	}
	if (o->prefix != NULL && o->prefix[0] == '\0') {
		fprintf(stderr, "sagactl: --prefix: empty\n");
		return 2;
	}
	return 0;
}

static bool
filter_selects(const struct store_saga_filter *f)
{
	return f->status != NULL || f->chart != NULL || f->state != NULL ||
	       f->id_prefix != NULL || f->started_before_ms >= 0 ||
	       f->entered_before_ms >= 0;
}

static void
print_saga_header(void)
{
	printf("%-24s %-8s %-13s %-16s %7s  %s\n", "ID", "CHART", "STATUS",
	       "STATE", "ATTEMPT", "IN STATE");
}

static void
print_saga_row(const struct store_saga_summary *s, int64_t now)
{
	char b1[32];
	printf("%-24s %-8s %-13s %-16s %7d  %s\n", s->id, s->chart, s->status,
	       s->state, s->attempt,
	       fmt_dur(now - s->state_entered_ms, b1, sizeof(b1)));
}

/* Rows collected as JSON: the array, and whether one failed to build. */
struct json_rows {
	json_t *a; /* NULL: text output */
	bool failed;
};

/* Appends j (taken, NULL when it failed to build); non-zero stops a
 * scan. */
static int
json_rows_add(struct json_rows *r, json_t *j)
{
	if (json_array_append_new(r->a, j) == 0)
		return 0;
	r->failed = true;
	return 1;
}

struct listing {
	struct json_rows rows;
	int64_t now;
	bool header; /* text: the header is out (once the query runs) */
};

static int
list_row(void *arg, const struct store_saga_summary *s)
{
	struct listing *l = arg;
	if (l->rows.a != NULL)
		return json_rows_add(&l->rows, jsonout_saga_summary(s));
	if (!l->header)
		print_saga_header();
	l->header = true;
	print_saga_row(s, l->now);
	return 0;
}

static int
list(const struct opts *o)
{
	struct store_saga_filter f;
	struct listing l = {.now = clock_wall_ms()};
	struct store *st;
	int rc;

	rc = parse_filter(o, &f);
	if (rc != 0)
		return rc;
	if (f.limit < 0)
		f.limit = 1000;
	st = open_db(o);
	if (st == NULL)
		return 1;
	if (o->json)
		l.rows.a = json_array();
	if (o->json && l.rows.a == NULL)
		rc = out_of_memory();
	else if (store_list_sagas(st, &f, list_row, &l) != 0)
		rc = db_error(st);
	else if (l.rows.failed)
		rc = out_of_memory();
	else if (!o->json && !l.header)
		print_saga_header(); /* nothing matched */
	if (o->json && rc == 0)
		rc = print_json(l.rows.a);
	else if (o->json)
		json_decref(l.rows.a);
	store_close(st);
	return rc;
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

/* The stays store_step_stays reports, ordered by state, then length. */
struct samples {
	struct sample *v;
	size_t n, cap;
	bool failed; /* out of memory */
};

static int
stay_row(void *arg, const char *state, int64_t ms)
{
	struct samples *sm = arg;
	if (sm->n == sm->cap) {
		size_t nc = sm->cap ? sm->cap * 2 : 256;
		struct sample *nv = realloc(sm->v, nc * sizeof(*nv));
		if (nv == NULL) {
			sm->failed = true;
			return 1;
		}
		sm->v = nv;
		sm->cap = nc;
	}
	snprintf(sm->v[sm->n].state, sizeof(sm->v[sm->n].state), "%s", state);
	sm->v[sm->n].ms = ms;
	sm->n++;
	return 0;
}

static int
count_row(void *arg, const char *status, const char *state, int64_t n)
{
	struct json_rows *r = arg;
	if (r->a != NULL)
		return json_rows_add(r, json_pack("{s:o,s:o,s:I}", "status",
		                                  jsonout_str(status), "state",
		                                  jsonout_str(state), "sagas",
		                                  (json_int_t)n));
	printf("%-13s %-16s %lld\n", status, state, (long long)n);
	return 0;
}

/* The oldest unfinished saga: as JSON (null if none), or a text line
 * (then NULL). */
static json_t *
oldest_unfinished(const struct store_saga_summary *s, bool found, bool json)
{
	long long age;

	if (!found) {
		if (!json)
			printf("\noldest unfinished: none\n");
		return json ? json_null() : NULL;
	}
	age = (long long)(clock_wall_ms() - s->started_ms);
	if (!json) {
		char b1[32];
		printf("\noldest unfinished: %s (%s in %s), started %s ago\n",
		       s->id, s->status, s->state,
		       fmt_dur(age, b1, sizeof(b1)));
		return NULL;
	}
	return json_pack("{s:o,s:o,s:o,s:I,s:I}", "id", jsonout_str(s->id),
	                 "status", jsonout_str(s->status), "state",
	                 jsonout_str(s->state), "started_at",
	                 (json_int_t)s->started_ms, "age_ms", (json_int_t)age);
}

/* p50 and p99 of each state's stays: into rows (JSON) or as text. */
static void
step_times(const struct samples *sm, struct json_rows *rows)
{
	const struct sample *v = sm->v;
	char b1[32], b2[32];
	size_t i, j;

	if (rows->a == NULL)
		printf("\nstep times (in a state while running, entry to the "
		       "event that left it)\n%-16s %7s %9s %9s\n",
		       "STATE", "COUNT", "P50", "P99");
	for (i = 0; i < sm->n; i = j) {
		for (j = i; j < sm->n && strcmp(v[j].state, v[i].state) == 0;
		     j++)
			;
		if (rows->a != NULL)
			json_rows_add(
			        rows,
			        json_pack("{s:o,s:I,s:I,s:I}", "state",
			                  jsonout_str(v[i].state), "count",
			                  (json_int_t)(j - i), "p50_ms",
			                  (json_int_t)percentile(v + i, j - i,
			                                         50),
			                  "p99_ms",
			                  (json_int_t)percentile(v + i, j - i,
			                                         99)));
		else
			printf("%-16s %7zu %9s %9s\n", v[i].state, j - i,
			       fmt_dur(percentile(v + i, j - i, 50), b1,
			               sizeof(b1)),
			       fmt_dur(percentile(v + i, j - i, 99), b2,
			               sizeof(b2)));
	}
}

/* stats --json: the document from its parts (taken). */
static json_t *
stats_json(json_t *counts, json_t *oldest, json_t *times)
{
	return json_pack("{s:o,s:o,s:o}", "by_status_state", counts,
	                 "oldest_unfinished", oldest, "step_times", times);
}

static int
stats(const struct opts *o)
{
	struct store *st = open_db(o);
	struct json_rows counts = {NULL, false}, times = {NULL, false};
	struct samples sm = {NULL, 0, 0, false};
	struct store_saga_summary old;
	json_t *oldest;
	bool found;
	int rc = 1;

	if (st == NULL)
		return 1;
	if (o->json) {
		counts.a = json_array();
		times.a = json_array();
	} else {
		printf("%-13s %-16s %s\n", "STATUS", "STATE", "SAGAS");
	}
	if (store_count_by_state(st, count_row, &counts) != 0 ||
	    store_oldest_unfinished(st, &old, &found) != 0) {
		rc = db_error(st);
		goto out;
	}
	oldest = oldest_unfinished(&old, found, o->json != 0);
	if (store_step_stays(st, stay_row, &sm) != 0) {
		json_decref(oldest);
		rc = db_error(st);
		goto out;
	}
	step_times(&sm, &times);
	if (!o->json) {
		rc = sm.failed ? out_of_memory() : 0;
		goto out;
	}
	if (sm.failed || counts.failed || times.failed) {
		json_decref(oldest);
		rc = out_of_memory();
		goto out;
	}
	rc = print_json(stats_json(counts.a, oldest, times.a));
	counts.a = times.a = NULL; /* taken */
out:
	json_decref(counts.a);
	json_decref(times.a);
	free(sm.v);
	store_close(st);
	return rc;
}

/* ---- show ID --dot: the saga's path on its chart ---- */

/* The chart version saga s runs on, from the database; NULL with a
 * message (with the loader's errors when `errors`). */
static struct chart *
saga_chart(struct store *st, const struct store_saga_summary *s, bool errors)
{
	struct chart_errors errs;
	struct chart *c;
	char *source, *file;
	bool found;

	if (store_chart_get(st, s->chart_version, &source, &file, &found) !=
	    0) {
		db_error(st);
		return NULL;
	}
	if (!found) {
		fprintf(stderr,
		        "sagactl: saga %s: its chart version is not in the "
		        "database\n",
		        s->id);
		return NULL;
	}
	chart_errors_init(&errs);
	c = chart_load_buffer(file, source, strlen(source), &errs);
	if (c == NULL && errors)
		for (size_t k = 0; k < errs.count; k++)
			fprintf(stderr, "%s\n", errs.items[k].text);
	else if (c == NULL)
		fprintf(stderr, "sagactl: saga %s: cannot load its chart\n",
		        s->id);
	chart_errors_clear(&errs);
	free(source);
	free(file);
	return c;
}

/* One branch of a parallel state, as show tells it. */
struct branch_view {
	const char *state, *phase;
	long long attempt;
	bool joined;
};

static void
branch_view(const struct chart *c, const struct value *b, struct branch_view *v)
{
	const struct value *st = value_map_get(b, "state");
	const struct value *ph = value_map_get(b, "phase");
	const struct value *at = value_map_get(b, "attempt");
	bool ok = st != NULL && st->type == VALUE_INT && st->u.i >= 0 &&
	          (uint64_t)st->u.i < c->nstates && ph != NULL &&
	          ph->type == VALUE_STR && at != NULL && at->type == VALUE_INT;

	v->state = ok ? c->states[st->u.i].name : "?";
	v->phase = ok ? ph->u.s.ptr : "?";
	v->attempt = ok ? (long long)at->u.i : 0LL;
	v->joined = strcmp(v->phase, "none") == 0;
}

/* The branches of a saga in a parallel state (the record's "branches"):
 * set as doc's "branches" (JSON; doc NULL: text lines). -1 if the JSON
 * failed to build. */
static int
show_branches(struct store *st, const struct store_saga_summary *s,
              const struct value *rec, json_t *doc)
{
	const struct value *a = value_map_get(rec, "branches");
	json_t *arr = NULL;
	struct chart *c;
	int rc = 0;

	if (a == NULL || a->type != VALUE_ARRAY)
		return 0;
	c = saga_chart(st, s, false);
	if (c == NULL)
		return 0;
	if (doc != NULL) {
		arr = json_array();
		if (json_object_set_new(doc, "branches", arr) != 0)
			rc = -1; /* arr is released */
	}
	for (size_t k = 0; k < a->u.a.len && rc == 0; k++) {
		struct branch_view v;
		branch_view(c, &a->u.a.items[k], &v);
		if (doc != NULL)
			rc = json_array_append_new(
			        arr,
			        json_pack("{s:I,s:o,s:o,s:I}", "branch",
			                  (json_int_t)(k + 1), "state",
			                  jsonout_str(v.joined ? "join"
			                                       : v.state),
			                  "phase", jsonout_str(v.phase),
			                  "attempt", (json_int_t)v.attempt));
		else if (v.joined)
			printf("branch %zu  joined\n", k + 1);
		else
			printf("branch %zu  %s (%s, attempt %lld)\n", k + 1,
			       v.state, v.phase, v.attempt);
	}
	chart_free(c);
	return rc;
}

/* The saga's order data (from its stored record) and its branches: doc's
 * "data" and "branches" (doc NULL: text lines). Nothing when the record
 * has no data; a record that cannot be read is said on stderr and
 * skipped. -1 if the JSON failed to build. */
static int
show_data(struct store *st, const struct store_saga_summary *s, json_t *doc)
{
	struct value rec = VALUE_NIL_INIT;
	const struct value *data;
	char version[17];
	bool found;
	int rc = 0;

	if (store_saga_get(st, s->id, version, &rec, NULL, 0, &found) != 0)
		fprintf(stderr, "sagactl: %s\n", store_error(st));
	data = found ? value_map_get(&rec, "data") : NULL;
	if (data != NULL && doc != NULL) {
		if (json_object_set_new(doc, "data", jsonout_value(data)) != 0)
			rc = -1;
	} else if (data != NULL) {
		json_t *j = jsonout_value(data);
		char *text = j != NULL ? jsonout_text(j) : NULL;
		json_decref(j);
		if (text == NULL)
			rc = -1;
		else
			printf("data      %s\n", text);
		free(text);
	}
	if (data != NULL && rc == 0)
		rc = show_branches(st, s, &rec, doc);
	value_clear(&rec);
	return rc;
}

/* The saga's pending timer: doc's "timer" (doc NULL: a text line). 0,
 * -1 on a database error, -2 if the JSON failed to build. */
static int
show_timer(struct store *st, const char *id, json_t *doc)
{
	int64_t seq, at;
	bool found;

	if (store_timer_get(st, id, &seq, &at, &found) != 0)
		return -1;
	if (doc != NULL && !found)
		return 0;
	if (doc != NULL)
		return json_object_set_new(doc, "timer",
		                           json_pack("{s:I,s:I}", "seq",
		                                     (json_int_t)seq, "fire_at",
		                                     (json_int_t)at)) != 0
		               ? -2
		               : 0;
	if (found) {
		char t[40];
		printf("timer     fires %s UTC (in %lld ms)\n",
		       fmt_ms(at, t, sizeof(t)),
		       (long long)(at - clock_wall_ms()));
	} else {
		printf("timer     none\n");
	}
	return 0;
}

static int
history_json(void *arg, const struct store_history *h)
{
	json_t *e = json_pack(
	        "{s:I,s:o,s:o,s:o,s:o}", "at", (json_int_t)h->at_ms, "kind",
	        jsonout_str(h->kind), "state", jsonout_str(h->state), "status",
	        jsonout_str(h->status), "detail", jsonout_str(h->detail));
	if (e != NULL && h->actor != NULL && h->actor[0] != '\0' &&
	    json_object_set_new(e, "actor", jsonout_str(h->actor)) != 0) {
		json_decref(e);
		e = NULL;
	}
	if (e != NULL && h->reason != NULL && h->reason[0] != '\0' &&
	    json_object_set_new(e, "reason", jsonout_str(h->reason)) != 0) {
		json_decref(e);
		e = NULL;
	}
	return json_rows_add(arg, e);
}

static int
history_line(void *arg, const struct store_history *h)
{
	const char *actor = h->actor != NULL ? h->actor : "";
	const char *reason = h->reason != NULL ? h->reason : "";
	char t[40];

	(void)arg;
	printf("  %s  %-8s %-16s %-12s %s%s%s%s%s\n",
	       fmt_ms(h->at_ms, t, sizeof(t)) + 11, h->kind, h->state,
	       h->status, h->detail, actor[0] ? " by " : "", actor,
	       reason[0] ? ": " : "", reason);
	return 0;
}

static int
show_json(struct store *st, const struct store_saga_summary *s)
{
	json_t *doc = jsonout_saga_summary(s);
	struct json_rows hist = {json_array(), false};
	int rc;

	if (doc == NULL || hist.a == NULL || show_data(st, s, doc) != 0) {
		json_decref(doc);
		json_decref(hist.a);
		return out_of_memory();
	}
	rc = show_timer(st, s->id, doc);
	if (rc == 0 && store_history_each(st, s->id, history_json, &hist) != 0)
		rc = -1;
	if (rc == 0 && hist.failed)
		rc = -2;
	if (rc != 0) {
		json_decref(hist.a);
		json_decref(doc);
		return rc == -1 ? db_error(st) : out_of_memory();
	}
	if ((s->trace_id[0] != '\0' &&
	     json_object_set_new(doc, "trace_id", json_string(s->trace_id)) !=
	             0) ||
	    json_object_set_new(doc, "history", hist.a) != 0) {
		json_decref(doc);
		return out_of_memory();
	}
	return print_json(doc);
}

static int
show_text(struct store *st, const struct store_saga_summary *s)
{
	char t1[40], t2[40], t3[40];

	printf("saga      %s\nchart     %s (version %s)\n"
	       "status    %s\nstate     %s (%s, attempt %d), for %s\n"
	       "started   %s UTC\nupdated   %s UTC\n",
	       s->id, s->chart, s->chart_version, s->status, s->state, s->phase,
	       s->attempt,
	       fmt_dur(clock_wall_ms() - s->state_entered_ms, t3, sizeof(t3)),
	       fmt_ms(s->started_ms, t1, sizeof(t1)),
	       fmt_ms(s->updated_ms, t2, sizeof(t2)));
	if (s->trace_id[0] != '\0') /* grep trace_id=... in every log */
		printf("trace     %s\n", s->trace_id);
	if (show_data(st, s, NULL) != 0)
		return out_of_memory();
	if (show_timer(st, s->id, NULL) != 0)
		return db_error(st);
	printf("\nhistory\n");
	if (store_history_each(st, s->id, history_line, NULL) != 0)
		return db_error(st);
	return 0;
}

static int
dot_step(void *arg, const struct store_history *h)
{
	chart_walk_entry(arg, h->kind, h->state, h->status);
	return 0;
}

static int
show_dot(struct store *st, const struct store_saga_summary *s)
{
	struct chart *c = saga_chart(st, s, true);
	struct chart_walk w;
	struct chart_dot_marks m;
	int rc = 1;

	if (c == NULL)
		return 1;
	if (chart_walk_init(&w, c) != 0) {
		out_of_memory();
		goto out;
	}
	if (store_history_each(st, s->id, dot_step, &w) != 0) {
		db_error(st);
		goto out;
	}
	m.states = w.states;
	m.edges = w.edges;
	m.undone = w.undone;
	if (chart_dot_marked(stdout, c, &m) != 0 || fflush(stdout) != 0)
		fprintf(stderr, "sagactl: write error\n");
	else
		rc = 0;
out:
	chart_walk_release(&w);
	chart_free(c);
	return rc;
}

static int
show(const struct opts *o, const char *id)
{
	struct store *st = open_db(o);
	struct store_saga_summary s;
	bool found;
	int rc;

	if (st == NULL)
		return 1;
	if (store_saga_find(st, id, &s, &found) != 0) {
		rc = db_error(st);
	} else if (!found) {
		fprintf(stderr, "sagactl: no saga %s\n", id);
		rc = 1;
	} else if (o->dot) {
		rc = show_dot(st, &s);
	} else if (o->json) {
		rc = show_json(st, &s);
	} else {
		rc = show_text(st, &s);
	}
	store_close(st);
	return rc;
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

/* The connection every AMQP command uses: the URL and the TLS files
 * (flags, else the daemons' environment variables). */
static struct bus_config
bus_conf(const struct opts *o)
{
	return (struct bus_config){
	        .url = o->amqp,
	        .name = "sagactl",
	        .ca_file = o->ca != NULL ? o->ca : getenv("SAGA_AMQP_CA"),
	        .cert_file =
	                o->cert != NULL ? o->cert : getenv("SAGA_AMQP_CERT"),
	        .key_file = o->key != NULL ? o->key : getenv("SAGA_AMQP_KEY"),
	};
}

/* Sends one request (not yet answered) to the saga's orchestrator
 * through saga.control. 0, or -1 with the reason in err. */
static int
send_request(struct request_session *rs, const struct opts *o,
             const char *action, const char *id, const char *queue,
             const char *step, char *err, size_t errlen)
{
	struct request r = {.exchange = "saga.control",
	                    .routing_key = queue,
	                    .server = "saga-orchestrator"};
	struct envelope e;
	long rc = -1;

	envelope_init(&e);
	if (envelope_new_id(e.id, sizeof(e.id), "op") != 0) {
		snprintf(err, errlen, "no randomness for a request id");
		return -1;
	}
	snprintf(e.saga, sizeof(e.saga), "%s", id);
	action_type(action, e.type, sizeof(e.type));
	if (value_map_put_str(&e.payload, "reason", o->reason) != 0 ||
	    (step != NULL && value_map_put_str(&e.payload, "step", step) != 0))
		snprintf(err, errlen, "out of memory");
	else
		rc = request_send(rs, &r, &e, err, errlen);
	envelope_clear(&e);
	return rc < 0 ? -1 : 0;
}

/* What became of a bulk action's requests. */
struct tally {
	const char *action;
	const char *const *ids;
	size_t applied, repeated, rejected, ignored, unanswered;
};

static const char *
answer_str(const struct envelope *a, const char *key)
{
	const struct value *v = value_map_get(&a->payload, key);
	return v != NULL && v->type == VALUE_STR ? v->u.s.ptr : "";
}

/* Prints one saga's result: "resume ord-1: applied (payment, running)"
 * or "abort ord-2: rejected: <why>". */
static void
print_result(void *arg, size_t i, struct envelope *a, const char *err)
{
	struct tally *t = arg;
	const char *outcome, *note;

	if (a == NULL || strcmp(a->type, "operator.answer") != 0) {
		printf("%s %s: no answer: %s\n", t->action, t->ids[i],
		       a == NULL ? err : "an answer of an unknown type");
		t->unanswered++;
		return;
	}
	outcome = answer_str(a, "outcome");
	note = answer_str(a, "note");
	if (strcmp(outcome, "applied") == 0) {
		t->applied++;
		printf("%s %s: applied (%s, %s)\n", t->action, t->ids[i],
		       answer_str(a, "state"), answer_str(a, "status"));
		return;
	}
	if (strcmp(outcome, "repeated") == 0)
		t->repeated++;
	else if (strcmp(outcome, "ignored") == 0)
		t->ignored++;
	else
		t->rejected++;
	printf("%s %s: %s%s%s\n", t->action, t->ids[i],
	       outcome[0] ? outcome : "rejected", note[0] ? ": " : "", note);
}

/* Sends one request per id and waits for the orchestrator's answers
 * (lib/request.h), a line each (and a summary for a bulk action): 0 if
 * every one was applied (or repeated: handled before), else 1. */
static int
send_requests(const struct opts *o, const char *action, const char *const *ids,
              const char *const *queues, size_t n, const char *step, bool bulk)
{
	struct bus_config cfg = bus_conf(o);
	struct tally t = {.action = action, .ids = ids};
	char err[512];
	struct request_session *rs = request_open(&cfg, err, sizeof(err));

	if (rs == NULL) {
		fprintf(stderr, "sagactl: %s\n", err);
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		if (send_request(rs, o, action, ids[i], queues[i], step, err,
		                 sizeof(err)) != 0) {
			fprintf(stderr, "sagactl: %s %s: cannot send: %s\n",
			        action, ids[i], err);
			request_close(rs);
			return 1;
		}
	}
	/* the orchestrator answers a batch at a time: more time for more */
	request_wait(rs,
	             REQUEST_TIMEOUT_MS + (int)(n < 100000 ? n : 100000) * 5,
	             print_result, &t);
	request_close(rs);
	if (bulk)
		printf("%s: %zu saga%s: %zu applied, %zu repeated, %zu "
		       "rejected, %zu ignored, %zu without an answer\n",
		       action, n, n == 1 ? "" : "s", t.applied, t.repeated,
		       t.rejected, t.ignored, t.unanswered);
	return t.applied + t.repeated == n ? 0 : 1;
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
		rc = owner_queue(st, id, queue, sizeof(queue));
		if (rc < 0)
			db_error(st);
		store_close(st);
		if (rc == 0)
			fprintf(stderr, "sagactl: no saga %s\n", id);
		if (rc != 1)
			return 1;
	}
	return send_requests(o, action, ids, queues, 1, step, false);
}

/* The sagas a bulk action selects: their ids (dry run: printed). */
struct targets {
	char **ids, **queues;
	size_t n, cap;
	bool dry_run, failed; /* failed: out of memory */
	int64_t now;
};

static int
target_row(void *arg, const struct store_saga_summary *s)
{
	struct targets *t = arg;

	if (t->dry_run) {
		if (t->n == 0)
			print_saga_header();
		print_saga_row(s, t->now);
		t->n++;
		return 0;
	}
	if (t->n == t->cap) {
		size_t nc = t->cap ? t->cap * 2 : 64;
		char **nv = realloc(t->ids, nc * sizeof(*nv));
		if (nv == NULL) {
			t->failed = true;
			return 1;
		}
		t->ids = nv;
		t->cap = nc;
	}
	t->ids[t->n] = strdup(s->id);
	if (t->ids[t->n] == NULL) {
		t->failed = true;
		return 1;
	}
	t->n++;
	return 0;
}

/* Each target's owner's control queue into t->queues. 0, or 1 with a
 * message. */
static int
target_queues(struct store *st, struct targets *t)
{
	t->queues = calloc(t->n, sizeof(*t->queues));
	if (t->queues == NULL)
		return out_of_memory();
	for (size_t i = 0; i < t->n; i++) {
		char queue[80];
		int rc = owner_queue(st, t->ids[i], queue, sizeof(queue));
		if (rc != 1) {
			fprintf(stderr, "sagactl: %s: %s\n", t->ids[i],
			        rc < 0 ? store_error(st) : "no such saga");
			return 1;
		}
		t->queues[i] = strdup(queue);
		if (t->queues[i] == NULL)
			return out_of_memory();
	}
	return 0;
}

/* The targets of a bulk action into *t (dry run: printed). 0, or 1 with
 * a message. */
static int
find_targets(const struct opts *o, struct store_saga_filter *f,
             struct targets *t)
{
	struct store *st = open_db(o);
	int rc = 0;

	if (st == NULL)
		return 1;
	t->dry_run = o->dry_run != 0;
	t->now = clock_wall_ms();
	f->unfinished = true;
	if (store_list_sagas(st, f, target_row, t) != 0)
		rc = db_error(st);
	else if (t->failed)
		rc = out_of_memory();
	else if (t->dry_run && t->n == 0)
		print_saga_header(); /* nothing matched */
	else if (!t->dry_run && t->n > 0)
		rc = target_queues(st, t);
	store_close(st);
	return rc;
}

/* --all: every unfinished saga the filters select. */
static int
bulk_action(const struct opts *o, const char *action)
{
	struct store_saga_filter f;
	struct targets t = {0};
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
	rc = find_targets(o, &f, &t);
	if (rc != 0) {
		/* said */
	} else if (t.n == 0) {
		fprintf(stderr,
		        "sagactl: %s --all: no unfinished saga matches\n",
		        action);
		rc = 1;
	} else if (o->dry_run) {
		printf("dry run: would %s %zu saga%s; nothing sent\n", action,
		       t.n, t.n == 1 ? "" : "s");
	} else {
		rc = send_requests(o, action, (const char *const *)t.ids,
		                   (const char *const *)t.queues, t.n, NULL,
		                   true);
	}
	for (size_t i = 0; i < t.n && t.ids != NULL; i++) {
		free(t.ids[i]);
		if (t.queues != NULL)
			free(t.queues[i]);
	}
	free(t.ids);
	free(t.queues);
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
	OPT_CA,
	OPT_CERT,
	OPT_KEY,
	OPT_SINCE,
};

static const struct option lopts[] = {
        {"db", required_argument, NULL, 'd'},
        {"amqp", required_argument, NULL, 'a'},
        {"amqp-ca", required_argument, NULL, OPT_CA},
        {"amqp-cert", required_argument, NULL, OPT_CERT},
        {"amqp-key", required_argument, NULL, OPT_KEY},
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
        {"since", required_argument, NULL, OPT_SINCE},
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

/* The options that only set a field of struct opts: a string (optarg)
 * or a switch (1). The comparisons in sizeof check each field's type at
 * compile time (distinct pointer types are an error with -Werror). */
#define OPT_STRING(c, field)                                                   \
	{                                                                      \
		c,                                                             \
		        offsetof(struct opts, field) +                         \
		                0 * sizeof(&((struct opts *)NULL)->field ==    \
		                           (const char **)NULL),               \
		        false                                                  \
	}
#define OPT_SWITCH(c, field)                                                   \
	{                                                                      \
		c,                                                             \
		        offsetof(struct opts, field) +                         \
		                0 * sizeof(&((struct opts *)NULL)->field ==    \
		                           (int *)NULL),                       \
		        true                                                   \
	}
static const struct opt_field {
	int c;
	size_t off;
	bool is_switch;
} opt_fields[] = {
        OPT_STRING('a', amqp),        OPT_STRING(OPT_CA, ca),
        OPT_STRING(OPT_CERT, cert),   OPT_STRING(OPT_KEY, key),
        OPT_STRING('r', reason),      OPT_STRING('s', status),
        OPT_STRING('S', script),      OPT_STRING('o', order),
        OPT_STRING('L', latency),     OPT_STRING(OPT_CHART, chart),
        OPT_STRING(OPT_STATE, state), OPT_STRING(OPT_OLDER, older),
        OPT_STRING(OPT_STUCK, stuck), OPT_STRING(OPT_PREFIX, prefix),
        OPT_STRING(OPT_LIMIT, limit), OPT_STRING(OPT_SINCE, since),
        OPT_SWITCH('j', json),        OPT_SWITCH(OPT_ALL, all),
        OPT_SWITCH(OPT_YES, yes),     OPT_SWITCH(OPT_DRY_RUN, dry_run),
        OPT_SWITCH(OPT_DOT, dot),     OPT_SWITCH('h', help),
};
#undef OPT_STRING
#undef OPT_SWITCH

/* One parsed option into *o; -1 for an unknown one. */
static int
take_opt(struct opts *o, int c)
{
	for (size_t i = 0; i < ARRAY_LEN(opt_fields); i++) {
		const struct opt_field *f = &opt_fields[i];
		if (f->c != c)
			continue;
		if (f->is_switch)
			*(int *)((char *)o + f->off) = 1;
		else
			*(const char **)((char *)o + f->off) = optarg;
		return 0;
	}
	switch (c) {
	case 'd':
		if (o->ndb == MAX_DBS)
			o->too_many_dbs = true;
		else
			o->dbs[o->ndb++] = optarg;
		o->db = o->dbs[0];
		return 0;
	case OPT_SHARDS:
		return read_shards(o, optarg) != 0 ? -1 : 0;
	default:
		return -1;
	}
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

/* ---- audit ---- */

struct audit_out {
	bool json;
	json_t *events;
};

static int
audit_event(void *arg, const struct audit_event *e)
{
	struct audit_out *out = arg;
	char line[1024];

	if (out->json)
		return json_array_append_new(out->events,
		                             audit_event_json(e)) != 0;
	audit_event_line(e, line, sizeof(line));
	printf("%s\n", line);
	return 0;
}

/* --since: a time ago (parse_duration) or an RFC 3339 time. */
static int
audit_since(const char *s, int64_t *ms)
{
	int64_t ago;

	*ms = 0;
	if (s == NULL)
		return 0;
	if (parse_duration(s, &ago) == 0) {
		*ms = clock_wall_ms() - ago;
		return 0;
	}
	return audit_parse_time(s, ms);
}

/* sagactl audit ID [--since T]. */
static int
audit(const struct opts *o, const char *id)
{
	struct bus_config bc = bus_conf(o);
	struct audit_query q = {.saga = id};
	struct audit_out out = {.json = o->json != 0};
	struct audit_result res;
	char err[1024], note[256];

	if (audit_since(o->since, &q.since_ms) != 0)
		return cmd_usage(usage_audit,
		                 "--since wants an RFC 3339 time "
		                 "(2026-12-05T16:00:00Z) or a time ago (10m, "
		                 "2h, 3d)");
	if (o->amqp == NULL) {
		fprintf(stderr, "sagactl: audit needs --amqp URL (or "
		                "SAGA_AMQP_URL)\n");
		return 1;
	}
	out.events = json_array();
	if (out.events == NULL)
		return out_of_memory();
	if (audit_read(&bc, &q, audit_event, &out, &res, err, sizeof(err)) !=
	    0) {
		fprintf(stderr, "sagactl: %s\n", err);
		json_decref(out.events);
		return 1;
	}
	audit_end_text(&res, note, sizeof(note));
	if (out.json &&
	    print_json(json_pack("{s:o,s:o,s:I,s:b,s:o}", "order_id",
	                         jsonout_str(id), "events", out.events,
	                         "scanned", (json_int_t)res.scanned, "complete",
	                         res.end == AUDIT_CAUGHT_UP, "note",
	                         jsonout_str(note))) != 0)
		return 1;
	if (!out.json)
		json_decref(out.events);
	if (res.end != AUDIT_CAUGHT_UP)
		fprintf(stderr, "sagactl: audit: %s\n", note);
	if (res.matched == 0) {
		fprintf(stderr,
		        "sagactl: no events of order %s in %s%s%s (%s)\n", id,
		        AUDIT_QUEUE, o->since != NULL ? " since " : "",
		        o->since != NULL ? o->since : "", note);
		return 1;
	}
	return 0;
}

/* The saga commands (run_command): their usage, how many arguments they
 * take, and what runs them. */
static int run_audit(struct opts *o, const char *cmd, int argc, char **argv);
static int run_list(struct opts *o, const char *cmd, int argc, char **argv);
static int run_stats(struct opts *o, const char *cmd, int argc, char **argv);
static int run_show(struct opts *o, const char *cmd, int argc, char **argv);
static int run_action(struct opts *o, const char *cmd, int argc, char **argv);
static int run_mark(struct opts *o, const char *cmd, int argc, char **argv);

static const struct command {
	const char *name;
	const char *usage;
	int args;             /* the arguments it takes; -1: its run checks */
	const char *args_why; /* said when there are not `args` of them */
	int (*run)(struct opts *o, const char *cmd, int argc, char **argv);
} commands[] = {
        {"audit", usage_audit, 1, "audit needs one order ID", run_audit},
        {"list", usage_list, 0, "list takes no arguments", run_list},
        {"stats", usage_stats, 0, "stats takes no arguments", run_stats},
        {"show", usage_show, 1, "show needs one saga ID", run_show},
        {"retry", usage_action, -1, NULL, run_action},
        {"resume", usage_action, -1, NULL, run_action},
        {"abort", usage_action, -1, NULL, run_action},
        {"compensate", usage_action, -1, NULL, run_action},
        {"skip", usage_action, -1, NULL, run_action},
        {"mark-compensated", usage_mark, 2, NULL, run_mark},
};

static int
run_audit(struct opts *o, const char *cmd, int argc, char **argv)
{
	(void)cmd, (void)argc;
	return audit(o, argv[0]);
}

static int
run_list(struct opts *o, const char *cmd, int argc, char **argv)
{
	(void)cmd, (void)argc, (void)argv;
	return list(o);
}

static int
run_stats(struct opts *o, const char *cmd, int argc, char **argv)
{
	(void)cmd, (void)argc, (void)argv;
	return stats(o);
}

static int
run_show(struct opts *o, const char *cmd, int argc, char **argv)
{
	(void)cmd, (void)argc;
	if (o->dot && o->json)
		return cmd_usage(usage_show,
		                 "--dot and --json exclude each other");
	return show(o, argv[0]);
}

/* retry, resume, abort, compensate, skip: one saga, or --all of those
 * the filters select; skip may name the state to go to. */
static int
run_action(struct opts *o, const char *cmd, int argc, char **argv)
{
	if (o->json)
		return cmd_usage(usage_action,
		                 "--json belongs to list, show and stats");
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
		                 "an action needs one saga ID (or --all)");
	return operator_action(o, cmd, argv[0], NULL);
}

static int
run_mark(struct opts *o, const char *cmd, int argc, char **argv)
{
	(void)argc;
	if (o->json)
		return cmd_usage(usage_mark, NULL);
	return operator_action(o, cmd, argv[0], argv[1]);
}

/* A flag given to a command it does not belong to: the usage error's
 * status, or 0. */
static int
misplaced_flags(const struct opts *o, const char *cmd, bool act)
{
	bool filters = o->status != NULL || o->chart != NULL ||
	               o->state != NULL || o->older != NULL ||
	               o->stuck != NULL || o->prefix != NULL ||
	               o->limit != NULL;

	if (filters && strcmp(cmd, "list") != 0 && !(act && o->all))
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
	if (o->since != NULL && strcmp(cmd, "audit") != 0)
		return cmd_usage(usage_audit, "--since belongs to audit");
	return 0;
}

static int
run_command(struct opts *o, const char *cmd, int argc, char **argv)
{
	const struct command *c = NULL;
	int rc;

	for (size_t i = 0; i < ARRAY_LEN(commands) && c == NULL; i++)
		if (strcmp(cmd, commands[i].name) == 0)
			c = &commands[i];
	rc = misplaced_flags(o, cmd, c != NULL && c->run == run_action);
	if (rc != 0)
		return rc;
	if (c == NULL) {
		if (o->help) {
			usage(stdout);
			return 0;
		}
		fprintf(stderr, "sagactl: unknown command: %s\n", cmd);
		usage(stderr);
		return 2;
	}
	if (o->help) {
		fputs(c->usage, stdout);
		return 0;
	}
	if (c->args >= 0 && argc != c->args)
		return cmd_usage(c->usage, c->args_why);
	return c->run(o, cmd, argc, argv);
}

/* sagactl statechart validate|dot|diff|plan ... (argv[0] the verb). */
static int
statechart_command(struct opts *o, int argc, char **argv)
{
	const char *sub = argc >= 1 ? argv[0] : "";
	const char *help = strcmp(sub, "dot") == 0    ? usage_dot
	                   : strcmp(sub, "diff") == 0 ? usage_diff
	                   : strcmp(sub, "plan") == 0 ? usage_plan
	                                              : NULL;
	if (o->help) {
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
		return statechart_one(argc - 1, argv + 1, usage_dot, chart_dot);
	if (strcmp(sub, "diff") == 0)
		return statechart_diff(argc - 1, argv + 1);
	if (strcmp(sub, "plan") == 0)
		return statechart_one(argc - 1, argv + 1, usage_plan,
		                      chart_plan);
	fprintf(stderr, "sagactl: statechart validate|dot|diff|plan "
	                "FILE...\n");
	return 2;
}

/* The options after the command (main has read those before it, and
 * optind is the command's argument): taken into o, and *argc / *argv
 * left with the command's arguments. 0, or -1 after a message. */
static int
options_after(struct opts *o, const char *cmd, int *argc, char ***argv)
{
	int sub = optind, c;

	/* 0, not 1: glibc then resets fully and permutes, so options may
	 * also follow the arguments ("simulate FILE --script S") */
	optind = 0;
	while ((c = getopt_long(*argc - sub + 1, *argv + sub - 1, "h", lopts,
	                        NULL)) != -1) {
		if (take_opt(o, c) != 0) {
			fprintf(stderr, "sagactl: see `sagactl %s --help`\n",
			        cmd);
			return -1;
		}
	}
	*argv += sub - 1 + optind;
	*argc -= sub - 1 + optind;
	return 0;
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
	if (strcmp(cmd, "dlq") == 0) { /* its own arguments: dlq.h */
		struct bus_config bc = bus_conf(&o);
		return dlq_main(&bc, o.json != 0, argc - optind, argv + optind);
	}
	if (strcmp(cmd, "stock") == 0) { /* its own arguments: stockctl.h */
		struct bus_config bc = bus_conf(&o);
		return stockctl_main(&bc, o.json != 0, argc - optind + 1,
		                     argv + optind - 1);
	}
	if (options_after(&o, cmd, &argc, &argv) != 0)
		return 2;
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
	if (strcmp(cmd, "statechart") == 0)
		return statechart_command(&o, argc, argv);
	if (strcmp(cmd, "simulate") == 0) {
		if (o.help) {
			fputs(usage_simulate, stdout);
			return 0;
		}
		return simulate(&o, argc, argv);
	}
	return run_command(&o, cmd, argc, argv);
}

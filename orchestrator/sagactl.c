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
 * unknown saga, no broker), 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "bus.h"
#include "chart_load.h"
#include "chart_tools.h"
#include "envelope.h"
#include "log.h"
#include "dlq.h"
#include "store.h"

struct opts {
	const char *db, *amqp, *reason, *status;
	const char *script, *order, *latency; /* simulate */
	int json, help;
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
	        "  list [--status S]             sagas, newest first\n"
	        "  show ID                       one saga and its history\n"
	        "  stats                         counts by status and state\n"
	        "  retry|resume|abort|compensate|skip ID --reason TEXT\n"
	        "  mark-compensated ID STEP --reason TEXT\n"
	        "                                operator actions, applied by "
	        "the orchestrator\n"
	        "  dlq list|show|replay|purge ...  dead-letter queues "
	        "(sagactl dlq --help)\n"
	        "\n"
	        "  --db PATH    the orchestrator's database (env SAGA_DB)\n"
	        "  --amqp URL   the broker, for operator actions (env "
	        "SAGA_AMQP_URL)\n"
	        "  --json       machine-readable output\n"
	        "\n"
	        "  COMMAND --help shows a command's usage.\n");
}

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
        "exhausted target, compensate, branches and guards, default, wait.\n"
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
        "               compensation); OUTCOME is ok, fail, timeout, or a\n"
        "               reply type in full or by its last part, optionally\n"
        "               followed by xN. For an undo, fail means every "
        "attempt\n"
        "               times out. A command not scripted gets ok. E.g.\n"
        "               'reserve_stock=ok, payment=declined'\n"
        "               'create_shipment=timeout x3, payment.undo=fail'\n"
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

static int
statechart_dot(int argc, char **argv)
{
	struct chart *c;
	int rc;

	if (argc != 1)
		return tool_usage(usage_dot);
	c = chart_tools_load(argv[0], stderr);
	if (c == NULL)
		return 1;
	rc = chart_dot(stdout, c);
	chart_free(c);
	if (rc != 0 || fflush(stdout) != 0) {
		fprintf(stderr, "sagactl: write error\n");
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

static int
statechart_plan(int argc, char **argv)
{
	struct chart *c;
	int rc;

	if (argc != 1)
		return tool_usage(usage_plan);
	c = chart_tools_load(argv[0], stderr);
	if (c == NULL)
		return 1;
	rc = chart_plan(stdout, c);
	chart_free(c);
	if (rc != 0 || fflush(stdout) != 0) {
		fprintf(stderr, "sagactl: write error or out of memory\n");
		return 1;
	}
	return 0;
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

static struct store *
open_db(const struct opts *o)
{
	char err[512];
	struct store *st;
	if (o->db == NULL) {
		fprintf(stderr,
		        "sagactl: --db PATH is required (or SAGA_DB)\n");
		return NULL;
	}
	st = store_open_readonly(o->db, err, sizeof(err));
	if (st == NULL)
		fprintf(stderr, "sagactl: %s\n", err);
	return st;
}

static void
json_str(const char *s)
{
	putchar('"');
	for (; s != NULL && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
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

static const char *
col(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	return t != NULL ? (const char *)t : "";
}

static int
list(const struct opts *o)
{
	struct store *st = open_db(o);
	sqlite3_stmt *s;
	int n = 0, rc;
	if (st == NULL)
		return 1;
	if (sqlite3_prepare_v2(
	            store_db(st),
	            "SELECT id, chart, status, state, attempt, "
	            "updated_at FROM sagas WHERE ?1 IS NULL OR "
	            "status = ?1 ORDER BY started_at DESC LIMIT 1000",
	            -1, &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "sagactl: %s\n", sqlite3_errmsg(store_db(st)));
		store_close(st);
		return 1;
	}
	if (o->status != NULL)
		sqlite3_bind_text(s, 1, o->status, -1, SQLITE_STATIC);
	if (o->json)
		printf("[");
	else
		printf("%-24s %-8s %-13s %-16s %s\n", "ID", "CHART", "STATUS",
		       "STATE", "ATTEMPT");
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (o->json) {
			printf("%s{\"id\":", n ? "," : "");
			json_str(col(s, 0));
			printf(",\"chart\":");
			json_str(col(s, 1));
			printf(",\"status\":");
			json_str(col(s, 2));
			printf(",\"state\":");
			json_str(col(s, 3));
			printf(",\"attempt\":%d,\"updated_at\":%lld}",
			       sqlite3_column_int(s, 4),
			       (long long)sqlite3_column_int64(s, 5));
		} else {
			printf("%-24s %-8s %-13s %-16s %d\n", col(s, 0),
			       col(s, 1), col(s, 2), col(s, 3),
			       sqlite3_column_int(s, 4));
		}
		n++;
	}
	if (o->json)
		printf("]\n");
	sqlite3_finalize(s);
	store_close(st);
	return rc == SQLITE_DONE ? 0 : 1;
}

static int
stats(const struct opts *o)
{
	struct store *st = open_db(o);
	sqlite3_stmt *s;
	if (st == NULL)
		return 1;
	if (sqlite3_prepare_v2(
	            store_db(st),
	            "SELECT status, state, count(*) FROM sagas GROUP "
	            "BY status, state ORDER BY status, state",
	            -1, &s, NULL) != SQLITE_OK) {
		store_close(st);
		return 1;
	}
	printf("%-13s %-16s %s\n", "STATUS", "STATE", "SAGAS");
	while (sqlite3_step(s) == SQLITE_ROW)
		printf("%-13s %-16s %d\n", col(s, 0), col(s, 1),
		       sqlite3_column_int(s, 2));
	sqlite3_finalize(s);
	store_close(st);
	return 0;
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
	                       "phase, attempt, started_at, updated_at FROM "
	                       "sagas WHERE id = ?1",
	                       -1, &s, NULL) != SQLITE_OK) {
		store_close(st);
		return 1;
	}
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW) {
		found = 1;
		char t1[40], t2[40];
		printf("saga      %s\nchart     %s (version %s)\nstatus    %s\n"
		       "state     %s (%s, attempt %d)\nstarted   %s UTC\n"
		       "updated   %s UTC\n\nhistory\n",
		       id, col(s, 0), col(s, 1), col(s, 2), col(s, 3),
		       col(s, 4), sqlite3_column_int(s, 5),
		       fmt_ms(sqlite3_column_int64(s, 6), t1, sizeof(t1)),
		       fmt_ms(sqlite3_column_int64(s, 7), t2, sizeof(t2)));
	}
	sqlite3_finalize(s);
	if (!found) {
		fprintf(stderr, "sagactl: no saga %s\n", id);
		store_close(st);
		return 1;
	}
	if (sqlite3_prepare_v2(store_db(st),
	                       "SELECT at, kind, state, status, detail, "
	                       "coalesce(actor, ''), coalesce(reason, '') FROM "
	                       "history WHERE saga_id = ?1 ORDER BY seq",
	                       -1, &s, NULL) == SQLITE_OK) {
		sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
		char t[40];
		while (sqlite3_step(s) == SQLITE_ROW)
			printf("  %s  %-8s %-16s %-12s %s%s%s%s%s\n",
			       fmt_ms(sqlite3_column_int64(s, 0), t,
			              sizeof(t)) +
			               11,
			       col(s, 1), col(s, 2), col(s, 3), col(s, 4),
			       col(s, 5)[0] ? " by " : "", col(s, 5),
			       col(s, 6)[0] ? ": " : "", col(s, 6));
		sqlite3_finalize(s);
	}
	store_close(st);
	return 0;
}

/* Sends one operator request and waits for the broker's confirm. */
static int
operator_action(const struct opts *o, const char *action, const char *id,
                const char *step)
{
	struct bus_config cfg = {.url = o->amqp, .name = "sagactl"};
	struct envelope e;
	struct bus_message m = {0};
	struct passwd *pw = getpwuid(getuid());
	char err[512], type[64], *body = NULL;
	size_t len;
	struct bus *b;
	int rc = 1;

	if (o->amqp == NULL) {
		fprintf(stderr,
		        "sagactl: --amqp URL is required for %s (or "
		        "SAGA_AMQP_URL)\n",
		        action);
		return 2;
	}
	if (o->reason == NULL) {
		fprintf(stderr,
		        "sagactl: %s needs --reason TEXT (it goes in "
		        "the saga's history)\n",
		        action);
		return 2;
	}
	envelope_init(&e);
	snprintf(type, sizeof(type), "operator.%s", action);
	for (char *p = type; *p; p++)
		if (*p == '-')
			*p = '_';
	envelope_new_id(e.id, sizeof(e.id), "op");
	snprintf(e.saga, sizeof(e.saga), "%s", id);
	snprintf(e.type, sizeof(e.type), "%s", type);
	value_map_put_str(&e.payload, "actor",
	                  pw != NULL ? pw->pw_name : "unknown");
	value_map_put_str(&e.payload, "reason", o->reason);
	if (step != NULL)
		value_map_put_str(&e.payload, "step", step);
	b = bus_open(&cfg, err, sizeof(err));
	if (b == NULL || bus_connect(b, err, sizeof(err)) != 0) {
		fprintf(stderr, "sagactl: %s\n", err);
		goto out;
	}
	if (envelope_encode(&e, &body, &len) != 0)
		goto out;
	m.exchange = "";
	m.routing_key = "orchestrator.control";
	m.message_id = e.id;
	m.correlation_id = e.saga;
	m.type = e.type;
	m.mandatory = true;
	m.body = body;
	m.len = len;
	if (bus_publish(b, &m, 1) != 0 || bus_flush(b, 10000, NULL) != 0) {
		fprintf(stderr, "sagactl: the broker did not confirm the "
		                "request\n");
		goto out;
	}
	if (bus_stats(b)->returned > 0) {
		fprintf(stderr, "sagactl: no orchestrator control queue: is "
		                "the orchestrator running?\n");
		goto out;
	}
	printf("%s %s: sent (see `sagactl show %s`)\n", action, id, id);
	rc = 0;
out:
	free(body);
	envelope_clear(&e);
	bus_close(b);
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct option lopts[] = {
	        {"db", required_argument, NULL, 'd'},
	        {"amqp", required_argument, NULL, 'a'},
	        {"json", no_argument, NULL, 'j'},
	        {"reason", required_argument, NULL, 'r'},
	        {"status", required_argument, NULL, 's'},
	        {"script", required_argument, NULL, 'S'},
	        {"order", required_argument, NULL, 'o'},
	        {"latency", required_argument, NULL, 'L'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	struct opts o = {.db = getenv("SAGA_DB"),
	                 .amqp = getenv("SAGA_AMQP_URL")};
	const char *cmd;
	int c;

	log_init("sagactl", LOG_WARN);
	while ((c = getopt_long(argc, argv, "+h", lopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			o.db = optarg;
			break;
		case 'a':
			o.amqp = optarg;
			break;
		case 'j':
			o.json = 1;
			break;
		case 'r':
			o.reason = optarg;
			break;
		case 's':
			o.status = optarg;
			break;
		case 'S':
			o.script = optarg;
			break;
		case 'o':
			o.order = optarg;
			break;
		case 'L':
			o.latency = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
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
			switch (c) {
			case 'd':
				o.db = optarg;
				break;
			case 'a':
				o.amqp = optarg;
				break;
			case 'j':
				o.json = 1;
				break;
			case 'r':
				o.reason = optarg;
				break;
			case 's':
				o.status = optarg;
				break;
			case 'S':
				o.script = optarg;
				break;
			case 'o':
				o.order = optarg;
				break;
			case 'L':
				o.latency = optarg;
				break;
			case 'h':
				o.help = 1;
				break;
			default:
				usage(stderr);
				return 2;
			}
		}
		argv += sub - 1;
		argc -= sub - 1;
	}
	argc -= optind;
	argv += optind;
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
			return statechart_dot(argc - 1, argv + 1);
		if (strcmp(sub, "diff") == 0)
			return statechart_diff(argc - 1, argv + 1);
		if (strcmp(sub, "plan") == 0)
			return statechart_plan(argc - 1, argv + 1);
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
	if (o.help) {
		usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "list") == 0 && argc == 0)
		return list(&o);
	if (strcmp(cmd, "stats") == 0 && argc == 0)
		return stats(&o);
	if (strcmp(cmd, "show") == 0 && argc == 1)
		return show(&o, argv[0]);
	if ((strcmp(cmd, "retry") == 0 || strcmp(cmd, "resume") == 0 ||
	     strcmp(cmd, "abort") == 0 || strcmp(cmd, "compensate") == 0 ||
	     strcmp(cmd, "skip") == 0) &&
	    argc == 1)
		return operator_action(&o, cmd, argv[0], NULL);
	if (strcmp(cmd, "mark-compensated") == 0 && argc == 2)
		return operator_action(&o, cmd, argv[0], argv[1]);
	fprintf(stderr, "sagactl: unknown command or wrong arguments: %s\n",
	        cmd);
	usage(stderr);
	return 2;
}

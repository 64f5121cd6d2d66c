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
#include "envelope.h"
#include "log.h"
#include "store.h"

struct opts {
	const char *db, *amqp, *reason, *status;
	int json;
};

static void
usage(FILE *f)
{
	fprintf(f,
	        "usage: sagactl [--db PATH] [--amqp URL] [--json] COMMAND ...\n"
	        "\n"
	        "  statechart validate FILE...   check statecharts; errors as "
	        "file:line:col: message\n"
	        "  list [--status S]             sagas, newest first\n"
	        "  show ID                       one saga and its history\n"
	        "  stats                         counts by status and state\n"
	        "  retry|resume|abort|compensate|skip ID --reason TEXT\n"
	        "  mark-compensated ID STEP --reason TEXT\n"
	        "                                operator actions, applied by "
	        "the orchestrator\n"
	        "\n"
	        "  --db PATH    the orchestrator's database (env SAGA_DB)\n"
	        "  --amqp URL   the broker, for operator actions (env "
	        "SAGA_AMQP_URL)\n"
	        "  --json       machine-readable output\n");
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
	{
		int sub = optind;
		optind = 1;
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
			case 'h':
				usage(stdout);
				return 0;
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
	if (strcmp(cmd, "statechart") == 0) {
		if (argc >= 1 && strcmp(argv[0], "validate") == 0)
			return validate(argc - 1, argv + 1);
		fprintf(stderr, "sagactl: statechart validate FILE...\n");
		return 2;
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

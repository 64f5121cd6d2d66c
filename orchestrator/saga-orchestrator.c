/* saga-orchestrator -- drives every order's saga through its statechart.
 *
 * main() reads top to bottom (OpenBSD ntpd): flags and environment, log to
 * stderr, load the statecharts, open the database; with -n check all that
 * and exit; then connect to the broker, serve /healthz and /metrics, and
 * run the durable loop, which only dispatches. Signal handlers only set
 * flags: SIGTERM/SIGINT drain and exit, SIGHUP reloads the statecharts
 * (an invalid folder is reported and the old charts stay in use).
 *
 * Exit status: 0 after a clean drain, 1 on a start-up error or a failed
 * drain, 2 on a usage error.
 */
#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "audit.h"
#include "console.h"
#include "daemon.h"
#include "envelope.h"
#include "heap.h"
#include "log.h"
#include "number.h"

#define PROG "saga-orchestrator"

static volatile sig_atomic_t stop_flag, reload_flag;

static void
on_signal(int sig)
{
	if (sig == SIGHUP)
		reload_flag = 1;
	else
		stop_flag = 1;
}

static const char usage[] =
        "usage: saga-orchestrator [-n] [--amqp URL] --db PATH "
        "[--statecharts DIR]\n"
        "                         [--http ADDR:PORT] [--log-level LEVEL] "
        "[--batch N]\n"
        "                         [--batch-wait MS] [--prefetch N] "
        "[--reply-key KEY]\n"
        "                         [--bundle N] [--inbox-days N] "
        "[--max-order-kib N]\n"
        "                         [--shard I/N [--drain]] "
        "[--queue-type T]\n"
        "                         [--otlp-url URL] [--mgmt-url URL] "
        "[--console-users FILE]\n"
        "                         [--console-trust-header NAME] "
        "[--operator-user NAME]\n"
        "                         [--dlq-amqp URL] [--audit-max-age AGE]\n"
        "       saga-orchestrator --hash-password NAME  < password\n"
        "  --amqp URL         broker URL(s), comma-separated (env "
        "SAGA_AMQP_URL)\n"
        "  --db PATH          the orchestrator's SQLite database (env "
        "SAGA_DB)\n"
        "  --statecharts DIR  folder of *.yaml charts (env "
        "SAGA_STATECHARTS, default statecharts)\n"
        "  --http ADDR:PORT   serve /healthz and /metrics (port 0: any "
        "free port)\n"
        "  --log-level L      debug, info, warn or error (default info)\n"
        "  --batch N          deliveries per transaction (default 100)\n"
        "  --batch-wait MS    how long a partial batch waits (default 5)\n"
        "  --prefetch N       unacknowledged deliveries per queue (default "
        "200)\n"
        "  --bundle N         commands for one queue carried in one "
        "message at most\n"
        "                     (env SAGA_BUNDLE, default 64; 1: one "
        "message per command)\n"
        "  --inbox-days N     keep processed message ids N days for dedup "
        "(default 7;\n"
        "                     0: forever)\n"
        "  --max-order-kib N  an order (a message on the orders queue) "
        "larger than N KiB\n"
        "                     goes to the DLQ with its reason: its events, "
        "which carry\n"
        "                     the whole order, must fit in a message "
        "(default 1024, at most\n"
        "                     16384, the bus's limit)\n"
        "  --reply-key KEY    routing key of this orchestrator's reply "
        "queue (default orchestrator)\n"
        "  --shard I/N        run shard I of N: orders hashed by id over "
        "the shards,\n"
        "                     each with its own database and queues "
        "(deploy/README.md)\n"
        "  --drain            (with --shard) leave the hash ring, finish "
        "every saga\n"
        "                     this shard owns, then exit 0\n"
        "  --queue-type T     classic or quorum: the type of every queue "
        "it declares\n"
        "                     (env SAGA_QUEUE_TYPE, default classic)\n";

/* The rest of the usage: one string would pass the 4095 characters C
 * promises a literal. */
static const char usage_services[] =
        "  --otlp-url URL     export spans (OTLP/HTTP JSON, e.g. "
        "http://collector:4318/v1/traces;\n"
        "                     env SAGA_OTLP_URL; default: none): one per "
        "saga, one per step\n"
        "  --mgmt-url URL     the broker's management API for the "
        "console's /dlq pages\n"
        "                     (env SAGA_MGMT_URL; http://USER:PASS@HOST:"
        "PORT/ of a user with the\n"
        "                     management or monitoring tag who may read the "
        "*.dlq queues;\n"
        "                     default: the AMQP URL's host, port 15672, "
        "the AMQP user)\n"
        "  --dlq-amqp URL     the operator's broker URL the console "
        "replays or discards\n"
        "                     a dead-letter group with, and reads a "
        "saga's events from\n"
        "                     the stream audit with (env "
        "SAGA_DLQ_AMQP_URL); unset: the\n"
        "                     console shows the sagactl command "
        "instead, and no events\n"
        "  --audit-max-age AGE  how long the stream audit keeps events "
        "when the orchestrator\n"
        "                     creates it (env SAGA_AUDIT_MAX_AGE, default "
        "7D): a number and one\n"
        "                     unit of Y M D h m s. An existing stream keeps "
        "its own (logged);\n"
        "                     a policy's max-age overrides both "
        "(deploy/README.md)\n"
        "  --console-users FILE  who may log in to the console to act: "
        "lines NAME:HASH\n"
        "                     (crypt(3) $y$ or $6$; env "
        "SAGA_CONSOLE_USERS; docs/console.md)\n"
        "  --console-trust-header NAME  the user a reverse proxy "
        "authenticated, e.g.\n"
        "                     X-Forwarded-User (env "
        "SAGA_CONSOLE_TRUST_HEADER): the proxy must\n"
        "                     set it and strip it from clients\n"
        "  --hash-password NAME  print a --console-users line for NAME, "
        "the password read\n"
        "                     from stdin (yescrypt)\n"
        "  --operator-user NAME  the broker user operator requests must "
        "come from\n"
        "                     (their AMQP user_id, validated by RabbitMQ; "
        "env\n"
        "                     SAGA_OPERATOR_USER); others are answered "
        "\"rejected\".\n"
        "                     Unset: any user who may write to saga.control\n"
        "  -n                 check the configuration and exit\n";

static void
print_usage(FILE *f)
{
	fputs(usage, f);
	fputs(usage_services, f);
}

/* The flags that take a number: where it goes and its bounds. */
static const struct count_flag {
	int opt;
	const char *flag, *unit;
	int min, max;
	size_t off; /* in struct orch_daemon_config */
} count_flags[] = {
        {'b', "--batch", "a number", 1, 10000,
         offsetof(struct orch_daemon_config, batch)},
        {'w', "--batch-wait", "milliseconds", 0, 10000,
         offsetof(struct orch_daemon_config, batch_wait_ms)},
        {'p', "--prefetch", "a number", 1, 65535,
         offsetof(struct orch_daemon_config, prefetch)},
        {'I', "--inbox-days", "a number of days", 0, 36500,
         offsetof(struct orch_daemon_config, inbox_days)},
        {'K', "--max-order-kib", "a number of KiB", 1, ORCH_MAX_ORDER_KIB_MAX,
         offsetof(struct orch_daemon_config, max_order_kib)},
};

static const struct option options[] = {
        {"amqp", required_argument, NULL, 'a'},
        {"db", required_argument, NULL, 'd'},
        {"statecharts", required_argument, NULL, 's'},
        {"http", required_argument, NULL, 'H'},
        {"log-level", required_argument, NULL, 'l'},
        {"batch", required_argument, NULL, 'b'},
        {"batch-wait", required_argument, NULL, 'w'},
        {"prefetch", required_argument, NULL, 'p'},
        {"reply-key", required_argument, NULL, 'r'},
        {"bundle", required_argument, NULL, 'B'},
        {"inbox-days", required_argument, NULL, 'I'},
        {"max-order-kib", required_argument, NULL, 'K'},
        {"shard", required_argument, NULL, 'S'},
        {"drain", no_argument, NULL, 'D'},
        {"queue-type", required_argument, NULL, 'q'},
        {"otlp-url", required_argument, NULL, 'O'},
        {"mgmt-url", required_argument, NULL, 'M'},
        {"dlq-amqp", required_argument, NULL, 'Q'},
        {"console-users", required_argument, NULL, 'U'},
        {"console-trust-header", required_argument, NULL, 'T'},
        {"hash-password", required_argument, NULL, 'P'},
        {"operator-user", required_argument, NULL, 'W'},
        {"audit-max-age", required_argument, NULL, 'A'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
};

/* What the command line has not given comes from the environment. */
struct flags {
	struct orch_daemon_config cfg;
	enum log_level level;
	int check_only;
	const char *bundle;    /* --bundle or SAGA_BUNDLE */
	const char *hash_user; /* --hash-password NAME */
};

/* The flags that take a string: where it goes in struct flags. The
 * comparison in sizeof checks at compile time that the field is a
 * const char * (distinct pointer types are an error with -Werror). */
#define STRING_FLAG(opt, field)                                                \
	{                                                                      \
		opt, offsetof(struct flags, field) +                           \
		             0 * sizeof(&((struct flags *)NULL)->field ==      \
		                        (const char **)NULL)                   \
	}
static const struct string_flag {
	int opt;
	size_t off;
} string_flags[] = {
        STRING_FLAG('a', cfg.amqp),
        STRING_FLAG('d', cfg.db),
        STRING_FLAG('s', cfg.statecharts),
        STRING_FLAG('H', cfg.http),
        STRING_FLAG('r', cfg.reply_key),
        STRING_FLAG('B', bundle),
        STRING_FLAG('S', cfg.shard),
        STRING_FLAG('q', cfg.queue_type),
        STRING_FLAG('O', cfg.otlp_url),
        STRING_FLAG('M', cfg.mgmt_url),
        STRING_FLAG('Q', cfg.dlq_amqp),
        STRING_FLAG('U', cfg.console_users),
        STRING_FLAG('T', cfg.console_trust_header),
        STRING_FLAG('P', hash_user),
        STRING_FLAG('W', cfg.operator_user),
        STRING_FLAG('A', cfg.audit_max_age),
};
#undef STRING_FLAG

static void
flags_init(struct flags *f)
{
	*f = (struct flags){
	        .cfg =
	                {
	                        .amqp = getenv("SAGA_AMQP_URL"),
	                        .db = getenv("SAGA_DB"),
	                        .statecharts = getenv("SAGA_STATECHARTS"),
	                        .batch = 100,
	                        .batch_wait_ms = 5,
	                        .prefetch = 200,
	                        .bundle = 64,
	                        .inbox_days = 7,
	                        .max_order_kib = ORCH_MAX_ORDER_KIB_DEFAULT,
	                        .reply_key = "orchestrator",
	                        .queue_type = getenv("SAGA_QUEUE_TYPE"),
	                        .otlp_url = getenv("SAGA_OTLP_URL"),
	                        .mgmt_url = getenv("SAGA_MGMT_URL"),
	                        .dlq_amqp = getenv("SAGA_DLQ_AMQP_URL"),
	                        .console_users = getenv("SAGA_CONSOLE_USERS"),
	                        .console_trust_header =
	                                getenv("SAGA_CONSOLE_TRUST_HEADER"),
	                        .operator_user = getenv("SAGA_OPERATOR_USER"),
	                        .audit_max_age = getenv("SAGA_AUDIT_MAX_AGE"),
	                },
	        .level = LOG_INFO,
	        .bundle = getenv("SAGA_BUNDLE"),
	};
}

/* A decimal integer in [min, max] into *out. 0, or -1 if s is not one. */
static int
count_parse(const char *s, int min, int max, int *out)
{
	long long v;

	if (number_parse(s, min, max, &v) != 0)
		return -1;
	*out = (int)v;
	return 0;
}

/* A flag with a number (count_flags). 1 if opt is one (0 when it is
 * good, else 2 after a message), 0 if not. */
static int
count_flag(struct flags *f, int opt, const char *arg, int *rc)
{
	for (size_t i = 0; i < ARRAY_LEN(count_flags); i++) {
		const struct count_flag *c = &count_flags[i];
		if (c->opt != opt)
			continue;
		*rc = 0;
		if (count_parse(arg, c->min, c->max,
		                (int *)((char *)&f->cfg + c->off))) {
			fprintf(stderr,
			        PROG ": %s wants %s from %d to %d, not "
			             "\"%s\"\n",
			        c->flag, c->unit, c->min, c->max, arg);
			*rc = 2;
		}
		return 1;
	}
	return 0;
}

/* One flag of getopt_long's. -1 to go on, else the exit status. */
static int
one_flag(struct flags *f, int opt, const char *arg)
{
	int rc;

	if (count_flag(f, opt, arg, &rc))
		return rc != 0 ? rc : -1;
	for (size_t i = 0; i < ARRAY_LEN(string_flags); i++) {
		if (string_flags[i].opt == opt) {
			*(const char **)((char *)f + string_flags[i].off) = arg;
			return -1;
		}
	}
	switch (opt) {
	case 'l':
		if (log_level_parse(arg, &f->level) != 0) {
			fprintf(stderr,
			        PROG ": unknown log level \"%s\" (debug, info, "
			             "warn, error)\n",
			        arg);
			return 2;
		}
		break;
	case 'D':
		f->cfg.drain = true;
		break;
	case 'n':
		f->check_only = 1;
		break;
	case 'h':
		print_usage(stdout);
		return 0;
	default:
		print_usage(stderr);
		return 2;
	}
	return -1;
}

static int
refuse(const char *why)
{
	fprintf(stderr, PROG ": %s\n", why);
	return 2;
}

/* What no single flag can say. -1 if all is well, else 2 (a message on
 * stderr). */
static int
check_flags(struct flags *f)
{
	struct orch_daemon_config *cfg = &f->cfg;
	const char *qt = cfg->queue_type;
	char err[256];

	if (f->bundle != NULL &&
	    count_parse(f->bundle, 1, ENVELOPE_BUNDLE_MAX, &cfg->bundle)) {
		fprintf(stderr,
		        PROG
		        ": --bundle (or SAGA_BUNDLE) wants a number from 1 "
		        "to %d, not \"%s\"\n",
		        ENVELOPE_BUNDLE_MAX, f->bundle);
		return 2;
	}
	if (cfg->shard != NULL && strcmp(cfg->reply_key, "orchestrator") != 0)
		return refuse("--reply-key and --shard do not mix: a shard's "
		              "reply key is orchestrator-I");
	if (cfg->drain && cfg->shard == NULL)
		return refuse("--drain needs --shard I/N");
	if (qt != NULL && qt[0] != '\0' && strcmp(qt, "classic") != 0 &&
	    strcmp(qt, "quorum") != 0) {
		fprintf(stderr,
		        PROG ": queue type \"%s\": use classic or quorum\n",
		        qt);
		return 2;
	}
	if (cfg->audit_max_age == NULL)
		cfg->audit_max_age = AUDIT_MAX_AGE_DEFAULT;
	if (audit_max_age_check(cfg->audit_max_age, err, sizeof(err)) != 0) {
		fprintf(stderr,
		        PROG ": --audit-max-age (or SAGA_AUDIT_MAX_AGE): %s\n",
		        err);
		return 2;
	}
	if (cfg->statecharts == NULL)
		cfg->statecharts = "statecharts";
	if (cfg->db == NULL)
		return refuse("--db PATH is required (or SAGA_DB)");
	if (cfg->amqp == NULL && !f->check_only)
		return refuse("--amqp URL is required (or SAGA_AMQP_URL)");
	return -1;
}

/* --hash-password NAME: the users-file line for NAME and the password on
 * stdin's first line. The exit status. */
static int
hash_password(const char *name)
{
	char pw[1024], line[1024], err[256];
	size_t n;

	if (fgets(pw, sizeof(pw), stdin) == NULL) {
		fprintf(stderr, PROG ": no password on stdin\n");
		return 1;
	}
	n = strcspn(pw, "\r\n");
	pw[n] = '\0';
	if (console_hash_line(name, pw, line, sizeof(line), err, sizeof(err)) !=
	    0) {
		explicit_bzero(pw, sizeof(pw));
		fprintf(stderr, PROG ": %s\n", err);
		return 1;
	}
	explicit_bzero(pw, sizeof(pw));
	printf("%s\n", line);
	return 0;
}

/* The command line into *f. -1 to go on, else the exit status. */
static int
parse_flags(int argc, char **argv, struct flags *f)
{
	flags_init(f);
	for (;;) {
		int opt = getopt_long(argc, argv, "nh", options, NULL);
		int rc;
		if (opt == -1)
			break;
		rc = one_flag(f, opt, optarg);
		if (rc >= 0)
			return rc;
	}
	if (optind != argc) {
		fprintf(stderr, PROG ": unexpected argument \"%s\"\n",
		        argv[optind]);
		print_usage(stderr);
		return 2;
	}
	if (f->hash_user != NULL)
		return hash_password(f->hash_user);
	return check_flags(f);
}

int
main(int argc, char **argv)
{
	struct flags f;
	int rc = parse_flags(argc, argv, &f);

	if (rc >= 0)
		return rc;
	log_init(PROG, f.level);
	if (heap_keep_top() != 0)
		log_debug("malloc's trim threshold not set (not glibc's "
		          "allocator): it trims as before");
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGHUP, on_signal);
	return orch_daemon_run(&f.cfg, f.check_only, &stop_flag, &reload_flag);
}

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
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "envelope.h"
#include "log.h"
#include "loop.h"
#include "orch.h"
#include "registry.h"
#include "store.h"

static volatile sig_atomic_t stop_flag, reload_flag;

static void
on_signal(int sig)
{
	if (sig == SIGHUP)
		reload_flag = 1;
	else
		stop_flag = 1;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: saga-orchestrator [-n] [--amqp URL] --db PATH "
	           "[--statecharts DIR]\n"
	           "                         [--http ADDR:PORT] [--log-level "
	           "LEVEL] [--batch N]\n"
	           "                         [--batch-wait MS] [--prefetch N] "
	           "[--reply-key KEY]\n"
	           "                         [--bundle N] [--inbox-days N] "
	           "[--shard I/N [--drain]] [--queue-type T]\n"
	           "  --amqp URL         broker URL(s), comma-separated "
	           "(env SAGA_AMQP_URL)\n"
	           "  --db PATH          the orchestrator's SQLite database "
	           "(env SAGA_DB)\n"
	           "  --statecharts DIR  folder of *.yaml charts (env "
	           "SAGA_STATECHARTS, default statecharts)\n"
	           "  --http ADDR:PORT   serve /healthz and /metrics (port 0: "
	           "any free port)\n"
	           "  --log-level L      debug, info, warn or error (default "
	           "info)\n"
	           "  --batch N          deliveries per transaction (default "
	           "100)\n"
	           "  --batch-wait MS    how long a partial batch waits "
	           "(default 5)\n"
	           "  --prefetch N       unacknowledged deliveries per queue "
	           "(default 200)\n"
	           "  --bundle N         commands for one queue carried in one "
	           "message at most\n"
	           "                     (env SAGA_BUNDLE, default 64; 1: "
	           "one message per command)\n"
	           "  --inbox-days N     keep processed message ids N days for "
	           "dedup (default 7;\n"
	           "                     0: forever)\n"
	           "  --reply-key KEY    routing key of this orchestrator's "
	           "reply queue (default orchestrator)\n"
	           "  --shard I/N        run shard I of N: orders hashed by id "
	           "over the shards,\n"
	           "                     each with its own database and "
	           "queues (deploy/README.md)\n"
	           "  --drain            (with --shard) leave the hash ring, "
	           "finish every saga\n"
	           "                     this shard owns, then exit 0\n"
	           "  --queue-type T     classic or quorum: the type of every "
	           "queue it declares\n"
	           "                     (env SAGA_QUEUE_TYPE, default "
	           "classic)\n"
	           "  -n                 check the configuration and exit\n");
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
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
	        {"shard", required_argument, NULL, 'S'},
	        {"drain", no_argument, NULL, 'D'},
	        {"queue-type", required_argument, NULL, 'q'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	struct orch_daemon_config cfg = {
	        .amqp = getenv("SAGA_AMQP_URL"),
	        .db = getenv("SAGA_DB"),
	        .statecharts = getenv("SAGA_STATECHARTS"),
	        .batch = 100,
	        .batch_wait_ms = 5,
	        .prefetch = 200,
	        .bundle = 64,
	        .inbox_days = 7,
	        .reply_key = "orchestrator",
	        .queue_type = getenv("SAGA_QUEUE_TYPE"),
	};
	enum log_level level = LOG_INFO;
	int check_only = 0, c, rc;
	const char *bundle = getenv("SAGA_BUNDLE");

	while ((c = getopt_long(argc, argv, "nh", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			cfg.amqp = optarg;
			break;
		case 'd':
			cfg.db = optarg;
			break;
		case 's':
			cfg.statecharts = optarg;
			break;
		case 'H':
			cfg.http = optarg;
			break;
		case 'l':
			if (log_level_parse(optarg, &level) != 0) {
				fprintf(stderr,
				        "saga-orchestrator: unknown log level "
				        "\"%s\" (debug, info, warn, error)\n",
				        optarg);
				return 2;
			}
			break;
		case 'b':
			if (daemon_parse_count(optarg, 1, 10000, &cfg.batch)) {
				fprintf(stderr,
				        "saga-orchestrator: --batch wants a "
				        "number from 1 to 10000, not \"%s\"\n",
				        optarg);
				return 2;
			}
			break;
		case 'w':
			if (daemon_parse_count(optarg, 0, 10000,
			                       &cfg.batch_wait_ms)) {
				fprintf(stderr,
				        "saga-orchestrator: --batch-wait wants "
				        "milliseconds from 0 to 10000, not "
				        "\"%s\"\n",
				        optarg);
				return 2;
			}
			break;
		case 'p':
			if (daemon_parse_count(optarg, 1, 65535,
			                       &cfg.prefetch)) {
				fprintf(stderr,
				        "saga-orchestrator: --prefetch wants a "
				        "number from 1 to 65535, not \"%s\"\n",
				        optarg);
				return 2;
			}
			break;
		case 'r':
			cfg.reply_key = optarg;
			break;
		case 'B':
			bundle = optarg;
			break;
		case 'I':
			if (daemon_parse_count(optarg, 0, 36500,
			                       &cfg.inbox_days)) {
				fprintf(stderr,
				        "saga-orchestrator: --inbox-days wants "
				        "a "
				        "number of days from 0 to 36500, not "
				        "\"%s\"\n",
				        optarg);
				return 2;
			}
			break;
		case 'S':
			cfg.shard = optarg;
			break;
		case 'D':
			cfg.drain = true;
			break;
		case 'q':
			cfg.queue_type = optarg;
			break;
		case 'n':
			check_only = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr,
		        "saga-orchestrator: unexpected argument \"%s\"\n",
		        argv[optind]);
		usage(stderr);
		return 2;
	}
	if (bundle != NULL &&
	    daemon_parse_count(bundle, 1, ENVELOPE_BUNDLE_MAX, &cfg.bundle)) {
		fprintf(stderr,
		        "saga-orchestrator: --bundle (or SAGA_BUNDLE) wants a "
		        "number from 1 to %d, not \"%s\"\n",
		        ENVELOPE_BUNDLE_MAX, bundle);
		return 2;
	}
	if (cfg.shard != NULL && strcmp(cfg.reply_key, "orchestrator") != 0) {
		fprintf(stderr, "saga-orchestrator: --reply-key and --shard "
		                "do not mix: a shard's reply key is "
		                "orchestrator-I\n");
		return 2;
	}
	if (cfg.drain && cfg.shard == NULL) {
		fprintf(stderr, "saga-orchestrator: --drain needs --shard "
		                "I/N\n");
		return 2;
	}
	if (cfg.queue_type != NULL && cfg.queue_type[0] != '\0' &&
	    strcmp(cfg.queue_type, "classic") != 0 &&
	    strcmp(cfg.queue_type, "quorum") != 0) {
		fprintf(stderr,
		        "saga-orchestrator: queue type \"%s\": use classic or "
		        "quorum\n",
		        cfg.queue_type);
		return 2;
	}
	if (cfg.statecharts == NULL)
		cfg.statecharts = "statecharts";
	if (cfg.db == NULL) {
		fprintf(stderr, "saga-orchestrator: --db PATH is required "
		                "(or SAGA_DB)\n");
		return 2;
	}
	if (cfg.amqp == NULL && !check_only) {
		fprintf(stderr, "saga-orchestrator: --amqp URL is required "
		                "(or SAGA_AMQP_URL)\n");
		return 2;
	}
	log_init("saga-orchestrator", level);

	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGHUP, on_signal);

	rc = orch_daemon_run(&cfg, check_only, &stop_flag, &reload_flag);
	return rc;
}

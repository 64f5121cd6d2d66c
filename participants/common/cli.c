/* cli.c -- a participant's command line (participant.h, "the command
 * line"): the flags every daemon takes and the getopt_long loop around a
 * daemon's own, so that a daemon's main is its usage text, a table of
 * its flags, and what it runs. */
#include "participant.h"

#include <assert.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "log.h"
#include "number.h"

/* getopt_long's values: the common flags, then a daemon's flag i is
 * OPT_OWN + i. */
enum {
	OPT_AMQP = 0x101,
	OPT_DB,
	OPT_HTTP,
	OPT_LOG_LEVEL,
	OPT_DAYS,
	OPT_OWN = 0x200,
};

static const struct option common_opts[] = {
        {"amqp", required_argument, NULL, OPT_AMQP},
        {"db", required_argument, NULL, OPT_DB},
        {"http", required_argument, NULL, OPT_HTTP},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"help", no_argument, NULL, 'h'},
};
static const struct option days_opt = {"processed-days", required_argument,
                                       NULL, OPT_DAYS};

/* --processed-days N: a whole number of days, 0 to 36500. */
static int
parse_days(struct part_common *c, const char *prog, const char *arg)
{
	long long v;

	if (number_parse(arg, 0, PART_RETENTION_MAX_MS / PART_DAY_MS, &v) !=
	    0) {
		fprintf(stderr,
		        "%s: --processed-days: \"%s\" is not a number of days "
		        "from 0 (forever) to %lld\n",
		        prog, arg,
		        (long long)(PART_RETENTION_MAX_MS / PART_DAY_MS));
		return -1;
	}
	c->processed_days = (int)v;
	return 0;
}

/* One of the common flags. 0, or -1 after a message on stderr. */
static int
common_flag(struct part_common *c, const char *prog, int opt, const char *arg)
{
	enum log_level l;

	switch (opt) {
	case OPT_AMQP:
		c->amqp = arg;
		return 0;
	case OPT_DB:
		c->db = arg;
		return 0;
	case OPT_HTTP:
		c->http = arg[0] != '\0' ? arg : NULL;
		return 0;
	case OPT_LOG_LEVEL:
		if (log_level_parse(arg, &l) != 0) {
			fprintf(stderr,
			        "%s: --log-level: \"%s\" is not one of debug, "
			        "info, warn, error\n",
			        prog, arg);
			return -1;
		}
		c->log_level = (int)l;
		return 0;
	default: /* OPT_DAYS */
		return parse_days(c, prog, arg);
	}
}

/* --name WORD: the index of arg in f->words into *f->choice. 0, or -1
 * after naming the words on stderr. */
static int
word_flag(const char *prog, const struct part_flag *f, const char *arg)
{
	size_t n = 0;

	for (; f->words[n] != NULL; n++) {
		if (strcmp(arg, f->words[n]) == 0) {
			*f->choice = (int)n;
			return 0;
		}
	}
	fprintf(stderr, "%s: --%s: \"%s\" is not ", prog, f->name, arg);
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, "%s%s",
		        i == 0      ? ""
		        : i + 1 < n ? ", "
		                    : " or ",
		        f->words[i]);
	fputc('\n', stderr);
	return -1;
}

/* A daemon's own flag i. 0, or -1 after a message on stderr. */
static int
own_flag(const struct part_cli *cli, size_t i, const char *arg)
{
	const struct part_flag *f = &cli->flags[i];

	assert((f->on != NULL) + (f->str != NULL) + (f->words != NULL) +
	               (f->set != NULL) ==
	       1);
	assert((f->words != NULL) == (f->choice != NULL));
	if (f->on != NULL)
		*f->on = true;
	else if (f->str != NULL)
		*f->str = arg;
	else if (f->words != NULL)
		return word_flag(cli->prog, f, arg);
	else
		return f->set(cli->arg, arg);
	return 0;
}

/* getopt_long's table: the common flags, the daemon's, the end. */
static void
build_options(const struct part_cli *cli, struct option *o)
{
	size_t n = 0;

	for (size_t i = 0; i < ARRAY_LEN(common_opts); i++)
		o[n++] = common_opts[i];
	if (cli->retention)
		o[n++] = days_opt;
	for (size_t i = 0; i < cli->nflags; i++)
		o[n++] = (struct option){cli->flags[i].name,
		                         cli->flags[i].on != NULL
		                                 ? no_argument
		                                 : required_argument,
		                         NULL, OPT_OWN + (int)i};
	o[n] = (struct option){NULL, 0, NULL, 0};
}

int
part_parse(const struct part_cli *cli, int argc, char **argv,
           struct part_common *c)
{
	struct option opts[ARRAY_LEN(common_opts) + 1 + PART_MAX_FLAGS + 1];
	int opt;

	const char *http = getenv("SAGA_HTTP");

	*c = (struct part_common){.amqp = getenv("SAGA_AMQP_URL"),
	                          .http = http != NULL && http[0] ? http : NULL,
	                          .log_level = LOG_INFO,
	                          .processed_days = -1};
	if (cli->nflags > PART_MAX_FLAGS) {
		fprintf(stderr, "%s: more than %d flags\n", cli->prog,
		        PART_MAX_FLAGS);
		return 2;
	}
	build_options(cli, opts);
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		int bad;
		if (opt == 'h' || opt == '?') {
			fputs(cli->usage, opt == 'h' ? stdout : stderr);
			return opt == 'h' ? 0 : 2;
		}
		bad = opt >= OPT_OWN
		              ? own_flag(cli, (size_t)(opt - OPT_OWN), optarg)
		              : common_flag(c, cli->prog, opt, optarg);
		if (bad)
			return 2;
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument \"%s\"\n", cli->prog,
		        argv[optind]);
		return 2;
	}
	return -1;
}

int
part_common_check(const struct part_common *c, const char *prog)
{
	if (c->amqp == NULL || c->amqp[0] == '\0') {
		fprintf(stderr,
		        "%s: no broker: give --amqp URL or set SAGA_AMQP_URL\n",
		        prog);
		return -1;
	}
	if (c->db == NULL || c->db[0] == '\0') {
		fprintf(stderr, "%s: --db PATH is required\n", prog);
		return -1;
	}
	return 0;
}

/* shipping-svc -- creates and cancels shipments, one instance per region.
 *
 *   shipping-svc --amqp URL --db PATH [--instance NAME] [--bind PATTERN]...
 *                [--no-ship COUNTRY]... [--log-level L]
 *              [--processed-days N]
 *
 * Routing: shipping commands reach the topic exchange `shipping` (bound to
 * saga.commands by "shipping.#") with the key
 * "shipping.<country>.<category>". An instance started with
 * `--bind 'india.*'` consumes queue shipping.<instance>, bound by
 * "shipping.india.*"; an instance with no --bind is the default one: it
 * consumes shipping.default, fed by `shipping`'s alternate exchange
 * (shipping.unrouted, fanout), so a command no region claims is never
 * dropped. A cancel carries the same key as its create, so it reaches the
 * instance that created the shipment.
 *
 *   shipping.create {items, ship_to: {country}, category}
 *     -> shipping.created {tracking_number}
 *      | shipping.failed {reason}  (a country in --no-ship, or none given)
 *   shipping.cancel -> shipping.cancelled
 * A saga gets one shipment: a repeated create answers the same tracking
 * number.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "participant.h"

extern const struct db_migration shipping_migrations[];
extern const size_t shipping_migrations_count;

#define MAX_BINDS 16

struct ship {
	const char *instance;
	const char *no_ship[MAX_BINDS];
	int nno_ship;
};

static int
tracking_of(sqlite3 *db, const char *saga, char *buf, size_t cap)
{
	sqlite3_stmt *st = part_prepared(db, "SELECT tracking FROM shipments "
	                                     "WHERE saga_id = ?1 AND status = "
	                                     "'created'");
	int rc;

	buf[0] = '\0';
	if (st == NULL ||
	    sqlite3_bind_text(st, 1, saga, -1, SQLITE_STATIC) != SQLITE_OK)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		snprintf(buf, cap, "%s",
		         (const char *)sqlite3_column_text(st, 0));
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static enum part_verdict
create(void *arg, sqlite3 *db, const struct envelope *in, int attempt,
       struct part_reply *out, char *why, size_t whylen)
{
	const struct ship *s = arg;
	const char *country = part_str(&in->payload, "ship_to.country");
	const char *category = part_str(&in->payload, "category");
	char tracking[256];
	int rc;

	(void)attempt;
	rc = tracking_of(db, in->saga, tracking, sizeof(tracking));
	if (rc < 0)
		goto dberr;
	if (rc == 1)
		goto created;
	if (country[0] == '\0') {
		snprintf(out->type, sizeof(out->type), "shipping.failed");
		value_map_put_str(&out->payload, "reason", "no country");
		return PART_DONE;
	}
	for (int i = 0; i < s->nno_ship; i++)
		if (strcmp(country, s->no_ship[i]) == 0) {
			snprintf(out->type, sizeof(out->type),
			         "shipping.failed");
			value_map_put_str(&out->payload, "reason",
			                  "we do not ship to this country");
			return PART_DONE;
		}
	snprintf(tracking, sizeof(tracking), "TRK-%s", in->saga);
	if (part_sql(db,
	             "INSERT INTO shipments(saga_id, tracking, country, "
	             "category, instance, status, at) "
	             "VALUES (?1, ?2, ?3, ?4, ?5, 'created', ?6)",
	             "ttttti", NULL, in->saga, tracking, country, category,
	             s->instance, clock_wall_ms()) < 0)
		goto dberr;
created:
	snprintf(out->type, sizeof(out->type), "shipping.created");
	value_map_put_str(&out->payload, "tracking_number", tracking);
	value_map_put_str(&out->payload, "shipped_by", s->instance);
	return PART_DONE;
dberr:
	snprintf(why, whylen, "database: %s", sqlite3_errmsg(db));
	return PART_RETRY;
}

static enum part_verdict
cancel(void *arg, sqlite3 *db, const struct envelope *in, int attempt,
       struct part_reply *out, char *why, size_t whylen)
{
	(void)arg;
	(void)attempt;
	if (part_sql(db,
	             "UPDATE shipments SET status = 'cancelled' "
	             "WHERE saga_id = ?1",
	             "t", NULL, in->saga) < 0) {
		snprintf(why, whylen, "database: %s", sqlite3_errmsg(db));
		return PART_RETRY;
	}
	snprintf(out->type, sizeof(out->type), "shipping.cancelled");
	return PART_DONE;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	        PART_COMMON_OPTIONS,
	        PART_RETENTION_OPTION,
	        {"instance", required_argument, NULL, 'i'},
	        {"bind", required_argument, NULL, 'b'},
	        {"no-ship", required_argument, NULL, 'n'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	static const struct part_command cmds[] = {
	        {"shipping.create", create, NULL, "shipping.failed"},
	        {"shipping.cancel", cancel, "shipping.create", NULL},
	};
	static const struct bus_exchange ex[] = {
	        {"saga.commands", "topic", NULL, NULL},
	        {"shipping", "topic", "shipping.unrouted", NULL},
	        {"shipping.unrouted", "fanout", NULL, NULL},
	};
	static struct ship s = {.instance = "default"};
	static char keys[MAX_BINDS][300], queue[200];
	struct bus_binding bd[MAX_BINDS + 2];
	const char *binds[MAX_BINDS], *queues[1];
	int nbinds = 0, c, r;
	size_t nbd = 0;
	struct part_common com;
	struct part_config cfg = {0};

	part_common_init(&com);
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		r = part_common_flag(&com, "shipping-svc", c, optarg);
		if (r < 0)
			return 2;
		if (r > 0)
			continue;
		switch (c) {
		case 'i':
			s.instance = optarg;
			break;
		case 'b':
			if (nbinds == MAX_BINDS || optarg[0] == '\0' ||
			    strlen(optarg) > 250) {
				fprintf(stderr,
				        "shipping-svc: --bind: at most %d "
				        "patterns like 'india.*'\n",
				        MAX_BINDS);
				return 2;
			}
			binds[nbinds++] = optarg;
			break;
		case 'n':
			if (s.nno_ship == MAX_BINDS) {
				fprintf(stderr,
				        "shipping-svc: too many --no-ship\n");
				return 2;
			}
			s.no_ship[s.nno_ship++] = optarg;
			break;
		default:
			fprintf(stderr,
			        "usage: shipping-svc --amqp URL --db PATH "
			        "[--instance NAME] [--bind PATTERN]... "
			        "[--no-ship COUNTRY]... [--log-level L]\n"
			        "                    [--processed-days N]\n");
			return c == 'h' ? 0 : 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "shipping-svc: unexpected argument \"%s\"\n",
		        argv[optind]);
		return 2;
	}
	if (part_common_check(&com, "shipping-svc") != 0)
		return 2;
	if (strspn(s.instance, "abcdefghijklmnopqrstuvwxyz0123456789-_") !=
	            strlen(s.instance) ||
	    s.instance[0] == '\0' || strlen(s.instance) > 100) {
		fprintf(stderr,
		        "shipping-svc: --instance: use 1-100 of [a-z0-9_-]\n");
		return 2;
	}
	if (nbinds > 0 && strcmp(s.instance, "default") == 0) {
		fprintf(stderr, "shipping-svc: a regional instance (--bind) "
		                "needs its own --instance NAME\n");
		return 2;
	}
	bd[nbd++] = (struct bus_binding){"saga.commands", NULL, "shipping",
	                                 "shipping.#"};
	if (nbinds == 0) {
		snprintf(queue, sizeof(queue), "shipping.default");
		bd[nbd++] = (struct bus_binding){"shipping.unrouted", queue,
		                                 NULL, ""};
	} else {
		snprintf(queue, sizeof(queue), "shipping.%s", s.instance);
		for (int i = 0; i < nbinds; i++) {
			snprintf(keys[i], sizeof(keys[i]), "shipping.%s",
			         binds[i]);
			bd[nbd++] = (struct bus_binding){"shipping", queue,
			                                 NULL, keys[i]};
		}
	}
	queues[0] = queue;
	cfg.name = "shipping";
	cfg.participant = "shipping";
	cfg.instance = s.instance;
	cfg.migrations = shipping_migrations;
	cfg.nmigrations = shipping_migrations_count;
	cfg.commands = cmds;
	cfg.ncommands = 2;
	cfg.queues = queues;
	cfg.nqueues = 1;
	cfg.exchanges = ex;
	cfg.nexchanges = 3;
	cfg.bindings = bd;
	cfg.nbindings = nbd;
	cfg.arg = &s;
	return part_main("shipping-svc", &com, &cfg);
}

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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
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
	const char *binds[MAX_BINDS]; /* --bind: the region's patterns */
	int nbinds;
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

/* ---- the daemon ---- */

static const char usage[] =
        "usage: shipping-svc --amqp URL --db PATH [--instance NAME] "
        "[--bind PATTERN]...\n"
        "                    [--no-ship COUNTRY]... [--log-level L] "
        "[--processed-days N]\n"
        "  --instance NAME      this instance's name, 1-100 of [a-z0-9_-] "
        "(default\n"
        "                       \"default\"); a regional one consumes "
        "shipping.NAME\n"
        "  --bind PATTERN       take the commands whose key is "
        "shipping.PATTERN\n"
        "                       (e.g. 'india.*'; repeatable; none: the "
        "default instance,\n"
        "                       which takes what no region claims)\n"
        "  --no-ship COUNTRY    answer shipping.failed for this country "
        "(repeatable)\n" PART_USAGE_COMMON PART_USAGE_RETENTION;

static const struct part_command commands[] = {
        {"shipping.create", create, NULL, "shipping.failed"},
        {"shipping.cancel", cancel, "shipping.create", NULL},
};

/* The topology: saga.commands -> shipping (topic, by
 * "shipping.<country>.<category>") -> the regional queues bound by --bind;
 * what no region takes goes to the alternate exchange shipping.unrouted,
 * which feeds the default instance's queue. */
static const struct bus_exchange exchanges[] = {
        {"saga.commands", "topic", NULL, NULL},
        {"shipping", "topic", "shipping.unrouted", NULL},
        {"shipping.unrouted", "fanout", NULL, NULL},
};

/* This instance's queue and bindings; the strings live in *t. */
struct ship_topology {
	char queue[200], keys[MAX_BINDS][300];
	const char *queues[1];
	struct bus_binding bd[MAX_BINDS + 1];
	size_t nbd;
};

static void
ship_topology(const struct ship *s, struct ship_topology *t)
{
	t->nbd = 0;
	t->bd[t->nbd++] = (struct bus_binding){"saga.commands", NULL,
	                                       "shipping", "shipping.#"};
	if (s->nbinds == 0) {
		snprintf(t->queue, sizeof(t->queue), "shipping.default");
		t->bd[t->nbd++] = (struct bus_binding){"shipping.unrouted",
		                                       t->queue, NULL, ""};
	} else {
		snprintf(t->queue, sizeof(t->queue), "shipping.%s",
		         s->instance);
	}
	for (int i = 0; i < s->nbinds; i++) {
		snprintf(t->keys[i], sizeof(t->keys[i]), "shipping.%s",
		         s->binds[i]);
		t->bd[t->nbd++] = (struct bus_binding){"shipping", t->queue,
		                                       NULL, t->keys[i]};
	}
	t->queues[0] = t->queue;
}

static int
add_bind(void *arg, const char *pattern)
{
	struct ship *s = arg;

	if (s->nbinds == MAX_BINDS || pattern[0] == '\0' ||
	    strlen(pattern) > 250) {
		fprintf(stderr,
		        "shipping-svc: --bind: at most %d patterns like "
		        "'india.*'\n",
		        MAX_BINDS);
		return -1;
	}
	s->binds[s->nbinds++] = pattern;
	return 0;
}

static int
add_no_ship(void *arg, const char *country)
{
	struct ship *s = arg;

	if (s->nno_ship == MAX_BINDS) {
		fprintf(stderr, "shipping-svc: too many --no-ship\n");
		return -1;
	}
	s->no_ship[s->nno_ship++] = country;
	return 0;
}

/* What the flags alone cannot say. 0, or -1 after a message. */
static int
check_instance(const struct ship *s)
{
	size_t n = strlen(s->instance);

	if (strspn(s->instance, "abcdefghijklmnopqrstuvwxyz0123456789-_") !=
	            n ||
	    n == 0 || n > 100) {
		fprintf(stderr,
		        "shipping-svc: --instance: use 1-100 of [a-z0-9_-]\n");
		return -1;
	}
	if (s->nbinds > 0 && strcmp(s->instance, "default") == 0) {
		fprintf(stderr, "shipping-svc: a regional instance (--bind) "
		                "needs its own --instance NAME\n");
		return -1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static struct ship s = {.instance = "default"};
	static struct ship_topology t;
	static const struct part_flag flags[] = {
	        {"instance", .str = &s.instance},
	        {"bind", .set = add_bind},
	        {"no-ship", .set = add_no_ship},
	};
	static const struct part_cli cli = {
	        "shipping-svc", usage, true, flags, ARRAY_LEN(flags), &s};
	struct part_config cfg = {
	        .name = "shipping",
	        .participant = "shipping",
	        .migrations = shipping_migrations,
	        .nmigrations = shipping_migrations_count,
	        .commands = commands,
	        .ncommands = ARRAY_LEN(commands),
	        .queues = t.queues,
	        .nqueues = ARRAY_LEN(t.queues),
	        .exchanges = exchanges,
	        .nexchanges = ARRAY_LEN(exchanges),
	        .bindings = t.bd,
	        .arg = &s,
	};
	struct part_common com;
	int rc = part_parse(&cli, argc, argv, &com);

	if (rc >= 0)
		return rc;
	if (part_common_check(&com, "shipping-svc") != 0 ||
	    check_instance(&s) != 0)
		return 2;
	ship_topology(&s, &t);
	cfg.instance = s.instance;
	cfg.nbindings = t.nbd;
	return part_main("shipping-svc", &com, &cfg);
}

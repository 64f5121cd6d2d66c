/* inventory-svc -- stock per sku; reserves every line of an order or none.
 *
 *   inventory-svc --amqp URL --db PATH [--seed FILE] [--log-level L]
 *                 [--processed-days N]
 *   inventory-svc --db PATH --print-stock
 *
 * Commands (queue inventory.commands, bound to saga.commands "inventory"
 * and "inventory.#"):
 *   inventory.reserve {items: [{sku, quantity}]}
 *       -> inventory.reserved, or inventory.rejected {reason, short: [sku]}
 *   inventory.release -> inventory.released (gives the saga's reservation
 *       back; for a saga that reserved nothing it records the release and
 *       answers released, and a reserve arriving later is rejected)
 * A saga reserves once: a second reserve (a retry after a timeout) answers
 * reserved again without taking more.
 * Stock as an operation (`sagactl stock set|add`, routing key
 * inventory.stock, answered to the request's reply_to):
 *   inventory.stock_set {sku, quantity, reason, actor}: on hand := quantity
 *     (the actor recorded is the broker-validated sender, part_sender();
 *     the payload's `actor` only when the message carried no user_id)
 *   inventory.stock_add {sku, delta, reason, actor}: on hand += delta
 *       -> inventory.stock_changed {sku, before, on_hand, held}, or
 *          inventory.stock_refused {reason} (bad request, or on hand would
 *          go below 0); each change is a movement with actor and reason.
 *
 * --seed FILE: lines "SKU QUANTITY" ('#' comments); a sku already in the
 * database keeps its stock (seeding twice, or restarting, adds nothing and
 * never overwrites: change a running stock with `sagactl stock`).
 * --print-stock: "sku on_hand held" per line, then exits (no broker).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "clock.h"
#include "log.h"
#include "participant.h"

extern const struct db_migration inventory_migrations[];
extern const size_t inventory_migrations_count;

#define MAX_LINES 200

struct inv {
	const char *seed;
};

static int
seed_file(sqlite3 *db, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[512];
	int n = 0, added = 0;

	if (f == NULL) {
		snprintf(err, errlen, "--seed %s: %s", path, strerror(errno));
		return -1;
	}
	if (db_begin(db, err, errlen) != 0) {
		fclose(f);
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char sku[201], extra[2];
		long long q;
		int k, rc;
		n++;
		line[strcspn(line, "#\r\n")] = '\0';
		k = sscanf(line, "%200s %lld %1s", sku, &q, extra);
		if (k <= 0)
			continue;
		if (k != 2 || q < 0) {
			snprintf(err, errlen,
			         "%s:%d: expected \"SKU QUANTITY\" with a "
			         "quantity >= 0",
			         path, n);
			goto fail;
		}
		rc = part_sql(db,
		              "INSERT OR IGNORE INTO stock(sku, on_hand) "
		              "VALUES (?1, ?2)",
		              "ti", NULL, sku, (int64_t)q);
		if (rc < 0 || sqlite3_changes(db) > 1)
			goto dbfail;
		if (sqlite3_changes(db) == 1) {
			added++;
			if (part_sql(db,
			             "INSERT INTO movements(sku, delta, kind, "
			             "at) VALUES (?1, ?2, 'seed', ?3)",
			             "tii", NULL, sku, (int64_t)q,
			             clock_wall_ms()) < 0)
				goto dbfail;
		}
	}
	if (ferror(f)) {
		snprintf(err, errlen, "--seed %s: read error", path);
		goto fail;
	}
	fclose(f);
	if (db_commit(db, err, errlen) != 0)
		return -1;
	log_info("seeded %d new skus from %s", added, path);
	return 0;
dbfail:
	db_fail(db, err, errlen, "%s:%d", path, n);
fail:
	fclose(f);
	db_rollback(db);
	return -1;
}

static int
on_open(void *arg, sqlite3 *db, char *err, size_t errlen)
{
	struct inv *v = arg;
	return v->seed != NULL ? seed_file(db, v->seed, err, errlen) : 0;
}

struct line {
	const char *sku;
	int64_t qty;
};

/* Checks and aggregates the items (one entry per sku). NULL on success,
 * else what is wrong. */
static const char *
read_items(const struct value *payload, struct line *l, size_t *n)
{
	const struct value *items = value_map_get(payload, "items");

	*n = 0;
	if (items == NULL || items->type != VALUE_ARRAY || items->u.a.len == 0)
		return "items must be a non-empty list";
	if (items->u.a.len > MAX_LINES)
		return "too many items";
	for (size_t i = 0; i < items->u.a.len; i++) {
		const struct value *it = &items->u.a.items[i];
		const char *sku = part_str(it, "sku");
		int64_t q;
		size_t j;
		if (sku[0] == '\0')
			return "an item has no sku";
		if (!part_int(it, "quantity", &q) || q <= 0 || q > 1000000)
			return "an item's quantity is not a positive integer";
		for (j = 0; j < *n && strcmp(l[j].sku, sku) != 0; j++)
			;
		if (j == *n)
			l[(*n)++] = (struct line){sku, 0};
		l[j].qty += q;
	}
	return NULL;
}

/* The skus of l[0..n) with too few on hand, as an array in *shorts
 * (empty if none). 0, -1 (the database's error), -2 out of memory;
 * *shorts is to be cleared by the caller only on 0. */
static int
find_shorts(sqlite3 *db, const struct line *l, size_t n, struct value *shorts)
{
	int64_t have;
	int rc;

	value_set_array(shorts);
	for (size_t i = 0; i < n; i++) {
		rc = part_sql(db, "SELECT on_hand FROM stock WHERE sku = ?1",
		              "t", &have, l[i].sku);
		if (rc < 0) {
			value_clear(shorts);
			return -1;
		}
		if (rc == 0 || have < l[i].qty) {
			struct value sku;
			if (value_set_str(&sku, l[i].sku) != 0 ||
			    value_array_push(shorts, &sku) != 0) {
				value_clear(shorts);
				return -2;
			}
		}
	}
	return 0;
}

/* Takes l[0..n) from stock for the saga: the stock, the reservation and
 * the movement of each line. 0, or -1 (the database's error). */
static int
take_stock(sqlite3 *db, const char *saga, const struct line *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (part_sql(db,
		             "UPDATE stock SET on_hand = on_hand - ?2 "
		             "WHERE sku = ?1",
		             "ti", NULL, l[i].sku, l[i].qty) < 0 ||
		    part_sql(db,
		             "INSERT INTO reservations(saga_id, sku, quantity, "
		             "at) VALUES (?1, ?2, ?3, ?4)",
		             "ttii", NULL, saga, l[i].sku, l[i].qty,
		             clock_wall_ms()) < 0 ||
		    part_sql(db,
		             "INSERT INTO movements(saga_id, sku, delta, kind, "
		             "at) VALUES (?1, ?2, ?3, 'reserve', ?4)",
		             "ttii", NULL, saga, l[i].sku, -l[i].qty,
		             clock_wall_ms()) < 0)
			return -1;
	}
	return 0;
}

static enum part_verdict
reserve(void *arg, sqlite3 *db, const struct envelope *in, int attempt,
        struct part_reply *out, char *why, size_t whylen)
{
	struct line l[MAX_LINES];
	struct value shorts;
	size_t n;
	const char *bad;
	int rc;

	(void)arg;
	(void)attempt;
	rc = part_sql(db, "SELECT 1 FROM reservations WHERE saga_id = ?1", "t",
	              NULL, in->saga);
	if (rc < 0)
		goto dberr;
	if (rc == 1) { /* reserved by an earlier attempt */
		snprintf(out->type, sizeof(out->type), "inventory.reserved");
		return PART_DONE;
	}
	bad = read_items(&in->payload, l, &n);
	if (bad != NULL) {
		snprintf(out->type, sizeof(out->type), "inventory.rejected");
		value_map_put_str(&out->payload, "reason", bad);
		return PART_DONE;
	}
	rc = find_shorts(db, l, n, &shorts);
	if (rc == -2) {
		snprintf(why, whylen, "out of memory");
		return PART_RETRY;
	}
	if (rc < 0)
		goto dberr;
	if (shorts.u.a.len > 0) {
		snprintf(out->type, sizeof(out->type), "inventory.rejected");
		if (value_map_put_str(&out->payload, "reason",
		                      "out of stock") != 0 ||
		    value_map_put(&out->payload, "short", &shorts) != 0) {
			value_clear(&shorts);
			snprintf(why, whylen, "out of memory");
			return PART_RETRY;
		}
		return PART_DONE;
	}
	value_clear(&shorts);
	if (take_stock(db, in->saga, l, n) != 0)
		goto dberr;
	snprintf(out->type, sizeof(out->type), "inventory.reserved");
	return PART_DONE;
dberr:
	snprintf(why, whylen, "database: %s", sqlite3_errmsg(db));
	return PART_RETRY;
}

static enum part_verdict
release(void *arg, sqlite3 *db, const struct envelope *in, int attempt,
        struct part_reply *out, char *why, size_t whylen)
{
	int64_t back = 0;

	(void)arg;
	(void)attempt;
	if (part_sql(db,
	             "INSERT INTO movements(saga_id, sku, delta, kind, at) "
	             "SELECT saga_id, sku, quantity, 'release', ?2 "
	             "FROM reservations WHERE saga_id = ?1",
	             "ti", NULL, in->saga, clock_wall_ms()) < 0 ||
	    part_sql(db,
	             "UPDATE stock SET on_hand = on_hand + (SELECT quantity "
	             "FROM reservations r WHERE r.saga_id = ?1 AND r.sku = "
	             "stock.sku) WHERE sku IN (SELECT sku FROM reservations "
	             "WHERE saga_id = ?1)",
	             "t", NULL, in->saga) < 0)
		goto dberr;
	back = sqlite3_changes(db);
	if (part_sql(db, "DELETE FROM reservations WHERE saga_id = ?1", "t",
	             NULL, in->saga) < 0)
		goto dberr;
	snprintf(out->type, sizeof(out->type), "inventory.released");
	value_map_put_int(&out->payload, "skus_released", back);
	return PART_DONE;
dberr:
	snprintf(why, whylen, "database: %s", sqlite3_errmsg(db));
	return PART_RETRY;
}

/* ---- stock as an operation: inventory.stock_set, inventory.stock_add ---- */

#define STOCK_MAX 1000000000LL

/* What an admin request carries. NULL if it is well formed, else why
 * not. `field` is "quantity" (set) or "delta" (add). */
static const char *
read_admin(const struct value *p, const char *field, const char **sku,
           int64_t *n, const char **reason, const char **actor)
{
	*sku = part_str(p, "sku");
	*reason = part_str(p, "reason");
	/* who: the broker-validated sender (sagactl sets user_id), else the
	 * payload's claim */
	*actor =
	        part_sender()[0] != '\0' ? part_sender() : part_str(p, "actor");
	if ((*sku)[0] == '\0' || strlen(*sku) > 200)
		return "sku must be 1 to 200 characters";
	if (!part_int(p, field, n) || *n < -STOCK_MAX || *n > STOCK_MAX)
		return strcmp(field, "delta") == 0
		               ? "delta must be an integer"
		               : "quantity must be an integer";
	if ((*reason)[0] == '\0')
		return "reason is required (it goes in the movements)";
	return NULL;
}

static enum part_verdict
refuse_admin(struct part_reply *out, const char *why)
{
	snprintf(out->type, sizeof(out->type), "inventory.stock_refused");
	value_map_put_str(&out->payload, "reason", why);
	return PART_DONE;
}

/* Moves sku's on_hand by delta (creating the sku), records the movement
 * and answers inventory.stock_changed; inventory.stock_refused when the
 * stock would go below zero. */
static enum part_verdict
stock_move(sqlite3 *db, const char *kind, const char *sku, int64_t delta,
           const char *reason, const char *actor, struct part_reply *out,
           char *why, size_t whylen)
{
	int64_t before = 0, held = 0;
	char r[300];

	if (part_sql(db, "SELECT on_hand FROM stock WHERE sku = ?1", "t",
	             &before, sku) < 0 ||
	    part_sql(db,
	             "SELECT coalesce(sum(quantity), 0) FROM reservations "
	             "WHERE sku = ?1",
	             "t", &held, sku) < 0)
		goto dberr;
	if (before + delta < 0 || before + delta > STOCK_MAX) {
		snprintf(r, sizeof(r),
		         "%s has %lld on hand: cannot take %lld (on hand "
		         "never goes below 0)",
		         sku, (long long)before, (long long)-delta);
		return refuse_admin(out, r);
	}
	if (part_sql(db,
	             "INSERT INTO stock(sku, on_hand) VALUES (?1, ?2) ON "
	             "CONFLICT(sku) DO UPDATE SET on_hand = excluded.on_hand",
	             "ti", NULL, sku, before + delta) < 0 ||
	    part_sql(db,
	             "INSERT INTO movements(sku, delta, kind, at, actor, "
	             "reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	             "tititt", NULL, sku, delta, kind, clock_wall_ms(), actor,
	             reason) < 0)
		goto dberr;
	snprintf(out->type, sizeof(out->type), "inventory.stock_changed");
	value_map_put_str(&out->payload, "sku", sku);
	value_map_put_int(&out->payload, "before", before);
	value_map_put_int(&out->payload, "on_hand", before + delta);
	value_map_put_int(&out->payload, "held", held);
	log_info("stock sku=%s %s %lld -> %lld actor=%s reason=\"%s\"", sku,
	         kind, (long long)before, (long long)(before + delta), actor,
	         reason);
	return PART_DONE;
dberr:
	snprintf(why, whylen, "database: %s", sqlite3_errmsg(db));
	return PART_RETRY;
}

/* inventory.stock_set {sku, quantity, reason, actor}: on hand becomes
 * quantity (what reservations hold is not part of it). */
static enum part_verdict
stock_set(void *arg, sqlite3 *db, const struct envelope *in, int attempt,
          struct part_reply *out, char *why, size_t whylen)
{
	const char *sku, *reason, *actor, *bad;
	int64_t q, before = 0;

	(void)arg;
	(void)attempt;
	bad = read_admin(&in->payload, "quantity", &sku, &q, &reason, &actor);
	if (bad == NULL && q < 0)
		bad = "quantity must be 0 or more";
	if (bad != NULL)
		return refuse_admin(out, bad);
	if (part_sql(db, "SELECT on_hand FROM stock WHERE sku = ?1", "t",
	             &before, sku) < 0) {
		snprintf(why, whylen, "database: %s", sqlite3_errmsg(db));
		return PART_RETRY;
	}
	return stock_move(db, "set", sku, q - before, reason, actor, out, why,
	                  whylen);
}

/* inventory.stock_add {sku, delta, reason, actor}: a restock (delta > 0)
 * or an adjustment (breakage, a recount: delta < 0). */
static enum part_verdict
stock_add(void *arg, sqlite3 *db, const struct envelope *in, int attempt,
          struct part_reply *out, char *why, size_t whylen)
{
	const char *sku, *reason, *actor, *bad;
	int64_t d;

	(void)arg;
	(void)attempt;
	bad = read_admin(&in->payload, "delta", &sku, &d, &reason, &actor);
	if (bad == NULL && d == 0)
		bad = "delta must not be 0";
	if (bad != NULL)
		return refuse_admin(out, bad);
	return stock_move(db, "add", sku, d, reason, actor, out, why, whylen);
}

/* ---- the daemon ---- */

static const char usage[] =
        "usage: inventory-svc --amqp URL --db PATH [--seed FILE] "
        "[--log-level L]\n"
        "                     [--processed-days N]\n"
        "       inventory-svc --db PATH --print-stock\n"
        "  --seed FILE          lines \"SKU QUANTITY\" ('#' comments); a "
        "sku already in\n"
        "                       the database keeps its stock (change it "
        "with\n"
        "                       `sagactl stock set|add`)\n"
        "  --print-stock        print sku, on_hand and held, then exit "
        "(no broker)\n" PART_USAGE_COMMON PART_USAGE_RETENTION;

static const struct part_command commands[] = {
        {"inventory.reserve", reserve, NULL, "inventory.rejected"},
        {"inventory.release", release, "inventory.reserve", NULL},
        {"inventory.stock_set", stock_set, NULL, NULL},
        {"inventory.stock_add", stock_add, NULL, NULL},
};

/* The topology: one work queue, fed by saga.commands. */
static const char *const queues[] = {"inventory.commands"};
static const struct bus_exchange exchanges[] = {
        {"saga.commands", "topic", NULL, NULL},
        /* operators' requests (sagactl stock): only the operator user
         * may write to it, and it reaches only this binding */
        {"saga.admin", "direct", NULL, NULL},
};
static const struct bus_binding bindings[] = {
        {"saga.commands", "inventory.commands", NULL, "inventory"},
        {"saga.commands", "inventory.commands", NULL, "inventory.#"},
        {"saga.admin", "inventory.commands", NULL, "inventory.stock"},
};

int
main(int argc, char **argv)
{
	static struct inv inv;
	static bool print;
	static const struct part_flag flags[] = {
	        {"seed", .str = &inv.seed},
	        {"print-stock", .on = &print},
	};
	static const struct part_cli cli = {
	        "inventory-svc", usage, true, flags, ARRAY_LEN(flags), NULL};
	struct part_config cfg = {
	        .name = "inventory",
	        .participant = "inventory",
	        .migrations = inventory_migrations,
	        .nmigrations = inventory_migrations_count,
	        .commands = commands,
	        .ncommands = ARRAY_LEN(commands),
	        .queues = queues,
	        .nqueues = ARRAY_LEN(queues),
	        .exchanges = exchanges,
	        .nexchanges = ARRAY_LEN(exchanges),
	        .bindings = bindings,
	        .nbindings = ARRAY_LEN(bindings),
	        .arg = &inv,
	        .on_open = on_open,
	};
	struct part_common com;
	int rc = part_parse(&cli, argc, argv, &com);

	if (rc >= 0)
		return rc;
	if (print)
		return part_print("inventory-svc", com.db,
		                  "SELECT s.sku, s.on_hand, coalesce((SELECT "
		                  "sum(quantity) FROM reservations r WHERE "
		                  "r.sku = s.sku), 0) AS held FROM stock s "
		                  "ORDER BY s.sku");
	return part_main("inventory-svc", &com, &cfg);
}

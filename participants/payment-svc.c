/* payment-svc -- card charges, refunds and cash-on-delivery collections,
 * with a ledger, behind a simulated gateway.
 *
 *   payment-svc --amqp URL --db PATH [--config FILE] [--log-level L]
 *               [--processed-days N]
 *   payment-svc --db PATH --print-ledger
 *
 * Routing: payment commands reach the direct exchange `payment` (bound to
 * saga.commands by "payment.*"), keyed by payment type: "payment.card" ->
 * queue payment.card, "payment.cod" -> queue payment.cod. This daemon
 * consumes both; a deployment may run one instance per type.
 *
 *   payment.charge {total_cents, currency, payment_method, card_token}
 *     card -> payment.charged {charge_id} | payment.declined {reason}
 *     cod  -> payment.collection_registered {charge_id} (due on delivery)
 *   payment.refund (the compensation)
 *     card -> payment.refunded {amount_cents}  (the whole charge, once)
 *     cod  -> payment.collection_cancelled
 *
 * One payment per saga: a second charge (a retry) answers what the first
 * did; a refund never exceeds the charge (the ledger's unique indexes make
 * a second refund impossible).
 *
 * The gateway's rules (--config FILE, "key = value" lines, '#' comments):
 *   decline_token = tok_decline     a card token that is declined (repeat
 *                                   the key for several)
 *   card_limit_cents = 200000       card charges above are declined
 *   transient_failure_percent = 10  this share of gateway calls fails
 *                                   transiently (decided per message and
 *                                   attempt, on the first 3 attempts at
 *                                   most); the retry queue absorbs it.
 *                                   100: every call fails (a gateway
 *                                   that is down)
 *   slow_percent = 3, slow_ms = 1500
 *                                   this share of gateway calls takes
 *                                   slow_ms (the daemon waits: a slow
 *                                   gateway), so the orchestrator's
 *                                   timeouts and retries fire while the
 *                                   late replies still come
 *   decline_then_accept_token = tok_flaky, decline_times = 2
 *                                   a card that is declined decline_times
 *                                   (0-100, default 1) for each saga, then
 *                                   accepted: a customer who fixes the
 *                                   card, for charts that retry a declined
 *                                   card (statecharts/examples/
 *                                   dunning.yaml). Each charge command
 *                                   (message id) counts once; the count is
 *                                   kept per saga in the database
 *                                   (flaky_declines), so a restart goes on
 *                                   counting
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "array.h"
#include "clock.h"
#include "hash.h"
#include "log.h"
#include "number.h"
#include "participant.h"

extern const struct db_migration payment_migrations[];
extern const size_t payment_migrations_count;

#define MAX_TOKENS 16

struct gateway {
	char decline[MAX_TOKENS][128];
	int ndecline;
	int64_t card_limit; /* 0: none */
	int transient_pct;
	int slow_pct, slow_ms;
	char flaky[128]; /* decline_then_accept_token; "" if none */
	int flaky_times; /* decline_times */
};

static char *
trim(char *s)
{
	char *e;
	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	return s;
}

/* One `key = value` of the config file into g; -1 for an unknown key or
 * a value out of its range. */
static int
apply_setting(struct gateway *g, const char *key, const char *val)
{
	long long x;

	if (strcmp(key, "decline_token") == 0 && *val != '\0' &&
	    g->ndecline < MAX_TOKENS && strlen(val) < 128)
		snprintf(g->decline[g->ndecline++], 128, "%s", val);
	else if (strcmp(key, "card_limit_cents") == 0 &&
	         number_parse(val, 0, INT64_MAX, &x) == 0)
		g->card_limit = x;
	else if (strcmp(key, "transient_failure_percent") == 0 &&
	         number_parse(val, 0, 100, &x) == 0)
		g->transient_pct = (int)x;
	else if (strcmp(key, "slow_percent") == 0 &&
	         number_parse(val, 0, 100, &x) == 0)
		g->slow_pct = (int)x;
	else if (strcmp(key, "slow_ms") == 0 &&
	         number_parse(val, 0, 60000, &x) == 0)
		g->slow_ms = (int)x;
	else if (strcmp(key, "decline_then_accept_token") == 0 &&
	         *val != '\0' && strlen(val) < sizeof(g->flaky))
		snprintf(g->flaky, sizeof(g->flaky), "%s", val);
	else if (strcmp(key, "decline_times") == 0 &&
	         number_parse(val, 0, 100, &x) == 0)
		g->flaky_times = (int)x;
	else
		return -1;
	return 0;
}

static int
load_config(struct gateway *g, const char *path)
{
	FILE *f = fopen(path, "r");
	char line[512];
	int n = 0;

	if (f == NULL) {
		fprintf(stderr, "payment-svc: --config %s: %s\n", path,
		        strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char *eq, *key, *val;
		n++;
		line[strcspn(line, "#\r\n")] = '\0';
		key = trim(line);
		if (*key == '\0')
			continue;
		eq = strchr(key, '=');
		if (eq == NULL)
			goto bad;
		*eq = '\0';
		key = trim(key);
		val = trim(eq + 1);
		if (apply_setting(g, key, val) != 0) {
			fclose(f);
			fprintf(stderr,
			        "payment-svc: %s:%d: bad setting \"%s\" (keys: "
			        "decline_token, card_limit_cents, "
			        "transient_failure_percent 0-100, slow_percent "
			        "0-100, slow_ms 0-60000, "
			        "decline_then_accept_token, decline_times "
			        "0-100)\n",
			        path, n, key);
			return -1;
		}
	}
	fclose(f);
	return 0;
bad:
	fclose(f);
	fprintf(stderr, "payment-svc: %s:%d: expected key = value\n", path, n);
	return -1;
}

/* The simulated gateway's transient failures: a stable hash of the
 * message id and the attempt, so a test run is reproducible. */
static int
gateway_roll(const char *id, int attempt, uint32_t salt)
{
	uint64_t h = hash_fnv1a_str(HASH_FNV_INIT ^ salt, id);

	h = hash_fnv1a(h, &attempt, sizeof(attempt));
	h ^= h >> 29;
	return (int)(h % 100);
}

/* A partial failure rate spares the 4th attempt and later, so the retry
 * queue always absorbs it (5 attempts by default): at 10% a message
 * failing 5 times in a row stranded about one charge in 100,000 in its
 * dead-letter queue, and the e2e runs (1,000 orders, empty DLQs expected)
 * failed now and then. */
static bool
gateway_flaky(const struct gateway *g, const char *id, int attempt)
{
	if (g->transient_pct >= 100)
		return true;
	return attempt <= 3 && gateway_roll(id, attempt, 0) < g->transient_pct;
}

/* A slow gateway call: the whole daemon waits, as a blocking client
 * library would make it. */
static void
gateway_wait(const struct gateway *g, const char *id, int attempt)
{
	if (g->slow_ms > 0 && gateway_roll(id, attempt, 0x5a5a) < g->slow_pct) {
		struct timespec ts = {g->slow_ms / 1000,
		                      (long)(g->slow_ms % 1000) * 1000000};
		log_info("gateway slow for %s: %d ms", id, g->slow_ms);
		nanosleep(&ts, NULL);
	}
}

/* The decline_then_accept_token card: 1 when this charge is declined
 * (the saga's count goes up), 0 when it goes through, -1 on a database
 * error. Called once per charge command: the framework answers a
 * repeated message id from its store. */
static int
flaky_decline(const struct gateway *g, sqlite3 *db, const char *saga,
              const char *token)
{
	int64_t n = 0;
	int rc;

	if (g->flaky[0] == '\0' || strcmp(token, g->flaky) != 0)
		return 0;
	rc = part_sql(db,
	              "SELECT declined FROM flaky_declines WHERE saga_id = ?1",
	              "t", &n, saga);
	if (rc < 0)
		return -1;
	if (n >= g->flaky_times)
		return 0;
	if (part_sql(db,
	             "INSERT INTO flaky_declines(saga_id, declined) "
	             "VALUES (?1, 1) ON CONFLICT(saga_id) DO UPDATE SET "
	             "declined = declined + 1",
	             "t", NULL, saga) < 0)
		return -1;
	log_info("saga=%s card %s declined (%lld of %d)", saga, token,
	         (long long)n + 1, g->flaky_times);
	return 1;
}

static void
reply(struct part_reply *out, const char *type, const char *reason)
{
	snprintf(out->type, sizeof(out->type), "%s", type);
	if (reason != NULL)
		value_map_put_str(&out->payload, "reason", reason);
}

/* Answers a repeated charge the way the first one was answered. */
static enum part_verdict
replay_charge(sqlite3 *db, const char *saga, struct part_reply *out, char *why,
              size_t whylen)
{
	sqlite3_stmt *st = part_prepared(db, "SELECT status, charge_id FROM "
	                                     "payments WHERE saga_id = ?1");
	int rc;

	if (st == NULL ||
	    sqlite3_bind_text(st, 1, saga, -1, SQLITE_STATIC) != SQLITE_OK)
		goto dberr;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *status = (const char *)sqlite3_column_text(st, 0);
		const char *cid = (const char *)sqlite3_column_text(st, 1);
		if (strcmp(status, "charged") == 0)
			reply(out, "payment.charged", NULL);
		else if (strcmp(status, "collection_due") == 0)
			reply(out, "payment.collection_registered", NULL);
		else
			reply(out, "payment.declined", "already refunded");
		value_map_put_str(&out->payload, "charge_id", cid);
	}
	sqlite3_reset(st);
	if (rc == SQLITE_ROW || rc == SQLITE_DONE)
		return rc == SQLITE_ROW ? PART_DONE : PART_RETRY;
dberr:
	snprintf(why, whylen, "database: %s", sqlite3_errmsg(db));
	return PART_RETRY;
}

/* A card charge's checks at the gateway: the outage it may be having
 * (PART_RETRY), a declined token, a token declined until fixed, the
 * card limit (a reply in out, PART_DONE). -1: none of these, go on;
 * -2: a database error. */
static int
card_checks(const struct gateway *g, sqlite3 *db, const struct envelope *in,
            int attempt, int64_t amount, struct part_reply *out, char *why,
            size_t whylen)
{
	const char *token = part_str(&in->payload, "card_token");
	int rc;

	gateway_wait(g, in->id, attempt);
	if (gateway_flaky(g, in->id, attempt)) {
		snprintf(why, whylen, "gateway unavailable");
		return PART_RETRY;
	}
	for (int i = 0; i < g->ndecline; i++) {
		if (strcmp(token, g->decline[i]) == 0) {
			reply(out, "payment.declined", "card declined");
			return PART_DONE;
		}
	}
	rc = flaky_decline(g, db, in->saga, token);
	if (rc < 0)
		return -2;
	if (rc == 1) {
		reply(out, "payment.declined", "card declined (until fixed)");
		return PART_DONE;
	}
	if (g->card_limit > 0 && amount > g->card_limit) {
		reply(out, "payment.declined", "over the card limit");
		return PART_DONE;
	}
	return -1;
}

/* The payment row and its ledger entry: a card charged, or a cash on
 * delivery collection due. 0, or -1 (the database's error). */
static int
record_charge(sqlite3 *db, const char *saga, const char *method, int64_t amount,
              const char *currency, const char *charge_id)
{
	bool card = strcmp(method, "card") == 0;

	if (part_sql(db,
	             "INSERT INTO payments(saga_id, method, amount_cents, "
	             "currency, charge_id, status, at) "
	             "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	             "ttittti", NULL, saga, method, amount, currency, charge_id,
	             card ? "charged" : "collection_due", clock_wall_ms()) < 0)
		return -1;
	if (part_sql(db,
	             "INSERT INTO ledger(saga_id, kind, amount_cents, "
	             "currency, charge_id, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	             "ttitti", NULL, saga, card ? "charge" : "collection",
	             amount, currency, charge_id, clock_wall_ms()) < 0)
		return -1;
	return 0;
}

static enum part_verdict
charge(void *arg, sqlite3 *db, const struct envelope *in, int attempt,
       struct part_reply *out, char *why, size_t whylen)
{
	const struct gateway *g = arg;
	const struct value *p = &in->payload;
	const char *method = part_str(p, "payment_method");
	const char *currency = part_str(p, "currency");
	char charge_id[256];
	int64_t amount;
	int rc;
	bool card;

	rc = part_sql(db, "SELECT 1 FROM payments WHERE saga_id = ?1", "t",
	              NULL, in->saga);
	if (rc < 0)
		goto dberr;
	if (rc == 1)
		return replay_charge(db, in->saga, out, why, whylen);
	if (!part_int(p, "total_cents", &amount) || amount < 0) {
		reply(out, "payment.declined", "total_cents is not an amount");
		return PART_DONE;
	}
	if (strcmp(method, "card") != 0 && strcmp(method, "cod") != 0) {
		reply(out, "payment.declined", "unknown payment method");
		return PART_DONE;
	}
	card = strcmp(method, "card") == 0;
	if (currency[0] == '\0')
		currency = "EUR";
	rc = card ? card_checks(g, db, in, attempt, amount, out, why, whylen)
	          : -1;
	if (rc == -2)
		goto dberr;
	if (rc >= 0)
		return (enum part_verdict)rc;
	snprintf(charge_id, sizeof(charge_id), "%s_%s", card ? "ch" : "cod",
	         in->saga);
	if (record_charge(db, in->saga, method, amount, currency, charge_id) !=
	    0)
		goto dberr;
	reply(out, card ? "payment.charged" : "payment.collection_registered",
	      NULL);
	value_map_put_str(&out->payload, "charge_id", charge_id);
	return PART_DONE;
dberr:
	snprintf(why, whylen, "database: %s", sqlite3_errmsg(db));
	return PART_RETRY;
}

/* The saga's payment: its status and method ("" if none) and amount.
 * 0, or -1 (the database's error). */
static int
read_payment(sqlite3 *db, const char *saga, char status[32], char method[8],
             int64_t *amount)
{
	sqlite3_stmt *st = part_prepared(db, "SELECT status, method, "
	                                     "amount_cents FROM payments "
	                                     "WHERE saga_id = ?1");
	int rc;

	if (st == NULL ||
	    sqlite3_bind_text(st, 1, saga, -1, SQLITE_STATIC) != SQLITE_OK) {
		if (st != NULL)
			sqlite3_reset(st);
		return -1;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		snprintf(status, 32, "%s",
		         (const char *)sqlite3_column_text(st, 0));
		snprintf(method, 8, "%s",
		         (const char *)sqlite3_column_text(st, 1));
		*amount = sqlite3_column_int64(st, 2);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* Gives a payment back: a charge is refunded, a collection cancelled,
 * each with its ledger entry; any other status is left alone (given back
 * already). 0, or -1 (the database's error). */
static int
reverse_payment(sqlite3 *db, const char *saga, const char *status)
{
	static const struct {
		const char *from, *kind, *to;
	} ways[] = {
	        {"charged", "refund", "refunded"},
	        {"collection_due", "collection_cancel", "collection_cancelled"},
	};

	for (size_t i = 0; i < ARRAY_LEN(ways); i++) {
		if (strcmp(status, ways[i].from) != 0)
			continue;
		if (part_sql(db,
		             "INSERT INTO ledger(saga_id, kind, amount_cents, "
		             "currency, charge_id, at) SELECT saga_id, ?3, "
		             "amount_cents, currency, charge_id, ?2 "
		             "FROM payments WHERE saga_id = ?1",
		             "tit", NULL, saga, clock_wall_ms(),
		             ways[i].kind) < 0 ||
		    part_sql(db,
		             "UPDATE payments SET status = ?2 WHERE saga_id = "
		             "?1",
		             "tt", NULL, saga, ways[i].to) < 0)
			return -1;
		return 0;
	}
	return 0;
}

static enum part_verdict
refund(void *arg, sqlite3 *db, const struct envelope *in, int attempt,
       struct part_reply *out, char *why, size_t whylen)
{
	char status[32] = "", method[8] = "";
	int64_t amount = 0;

	(void)arg;
	(void)attempt;
	if (read_payment(db, in->saga, status, method, &amount) != 0)
		goto dberr;
	if (method[0] == '\0') { /* never charged: nothing to give back */
		bool cod = strcmp(part_str(&in->payload, "payment_method"),
		                  "cod") == 0;
		reply(out,
		      cod ? "payment.collection_cancelled" : "payment.refunded",
		      "nothing was charged");
		value_map_put_int(&out->payload, "amount_cents", 0);
		return PART_DONE;
	}
	if (reverse_payment(db, in->saga, status) != 0)
		goto dberr;
	if (strcmp(method, "cod") == 0) {
		reply(out, "payment.collection_cancelled", NULL);
	} else {
		reply(out, "payment.refunded", NULL);
		value_map_put_int(&out->payload, "amount_cents", amount);
	}
	return PART_DONE;
dberr:
	snprintf(why, whylen, "database: %s", sqlite3_errmsg(db));
	return PART_RETRY;
}

/* ---- the daemon ---- */

static const char usage[] =
        "usage: payment-svc --amqp URL --db PATH [--config FILE] "
        "[--log-level L]\n"
        "                   [--processed-days N]\n"
        "       payment-svc --db PATH --print-ledger\n"
        "  --config FILE        the gateway's rules, \"key = value\" lines "
        "(declined\n"
        "                       tokens, a limit, transient failures, slow "
        "calls)\n"
        "  --print-ledger       print the ledger by kind, then exit (no "
        "broker)\n" PART_USAGE_COMMON PART_USAGE_RETENTION;

static const struct part_command commands[] = {
        {"payment.charge", charge, NULL, "payment.declined"},
        {"payment.refund", refund, "payment.charge", NULL},
};

/* The topology: saga.commands -> payment (direct, by payment type) -> one
 * work queue per type. */
static const char *const queues[] = {"payment.card", "payment.cod"};
static const struct bus_exchange exchanges[] = {
        {"saga.commands", "topic", NULL, NULL},
        {"payment", "direct", NULL, NULL},
};
static const struct bus_binding bindings[] = {
        {"saga.commands", NULL, "payment", "payment.*"},
        {"payment", "payment.card", NULL, "payment.card"},
        {"payment", "payment.cod", NULL, "payment.cod"},
};

static int
set_config(void *arg, const char *path)
{
	return load_config(arg, path) != 0 ? -1 : 0;
}

int
main(int argc, char **argv)
{
	static struct gateway g = {.flaky_times = 1};
	static bool print;
	static const struct part_flag flags[] = {
	        {"config", .set = set_config},
	        {"print-ledger", .on = &print},
	};
	static const struct part_cli cli = {
	        "payment-svc", usage, true, flags, ARRAY_LEN(flags), &g};
	struct part_config cfg = {
	        .name = "payment",
	        .participant = "payment",
	        .migrations = payment_migrations,
	        .nmigrations = payment_migrations_count,
	        .commands = commands,
	        .ncommands = ARRAY_LEN(commands),
	        .queues = queues,
	        .nqueues = ARRAY_LEN(queues),
	        .exchanges = exchanges,
	        .nexchanges = ARRAY_LEN(exchanges),
	        .bindings = bindings,
	        .nbindings = ARRAY_LEN(bindings),
	        .arg = &g,
	};
	struct part_common com;
	int rc = part_parse(&cli, argc, argv, &com);

	if (rc >= 0)
		return rc;
	if (print)
		return part_print("payment-svc", com.db,
		                  "SELECT kind, count(*) AS count, "
		                  "sum(amount_cents) AS cents FROM ledger "
		                  "GROUP BY kind ORDER BY kind");
	return part_main("payment-svc", &com, &cfg);
}

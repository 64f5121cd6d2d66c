/* e2e.c -- the end-to-end harness (e2e.h): every daemon on a private broker:
 * 1,000 orders through the HTTP API end exactly as the rules say, and the books
 * balance.
 *
 * Daemons: saga-orchestrator, inventory-svc, payment-svc (10% transient
 * gateway failures), three shipping-svc instances (india.*; france.* and
 * germany.*; the default one that refuses atlantis), notification-svc and
 * order-api. The order mix (by i % 10) covers cash on delivery under and
 * over the limit, a declined card, a stock-out, an unshippable country, a
 * card over its limit, and good orders to each shipping region.
 *
 * Checks: each order's final status; stock conserved (seeded = on hand +
 * held, and held = the lines of completed orders); the ledger balances
 * (charges - refunds = totals of completed card orders); one notification
 * per event plus one confirmation per completed order; every event in the
 * audit stream; shipments made by the right regional instance; every
 * dead-letter queue empty; the retry path used. Then the same with every
 * daemon SIGKILLed once along the way and restarted.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "clock.h"
#include "bus.h"
#include "db.h"
#include "envelope.h"
#include "e2e.h"
#include "testutil.h"

#define N      2000
#define NSKU   20
#define WINDOW 150
#define STOCK  10000

struct order {
	char id[64];
	int kind; /* i % 10 */
	bool card, completes;
	const char *country;
	int sku; /* -1: sku-rare */
	int qty;
	long long price;
};

static struct order orders[N];
static char *dir, *url;
static int api_port;
static int pids[16], npids;
static int n_orders = N;
static const struct e2e_opts *opt;
static char broker[64];
static int orch_port;
static long long nkilled, nrestarts, nretried_posts, nresumed;

static bool
enabled(int i)
{
	return (i != D_INV2 || opt->second_inventory) &&
	       (i != D_ORCH2 || opt->shards == 2);
}

static char *
path(const char *name)
{
	static char buf[8][600];
	static int k;
	k = (k + 1) % 8;
	/* the orchestrator's database may live on its own file system */
	snprintf(buf[k], sizeof(buf[k]), "%s/%s",
	         strncmp(name, "orch", 4) == 0 && opt != NULL &&
	                         opt->orch_dir != NULL
	                 ? opt->orch_dir
	                 : dir,
	         name);
	return buf[k];
}

/* The mix: what each order is, and how it must end. */
static void
plan(int i, struct order *o)
{
	static const char *ok_country[] = {"india", "france", "germany",
	                                   "brazil"};
	o->kind = i % 10;
	o->sku = i % NSKU;
	o->qty = 1 + i % 3;
	o->price = 1000 + (i % 7) * 250; /* small: under every limit */
	o->card = true;
	o->completes = true;
	o->country = ok_country[(i / 10) % 4];
	switch (o->kind) {
	case 0: /* cash on delivery, small */
		o->card = false;
		break;
	case 1: /* cash on delivery over 500.00: refused by the chart */
		o->card = false;
		o->qty = 1;
		o->price = 60000;
		o->completes = false;
		break;
	case 2: /* declined card */
	case 5: /* card over the gateway's limit */
		o->completes = false;
		if (o->kind == 5) {
			o->qty = 1;
			o->price = 250000;
		}
		break;
	case 3: /* stock-out */
		o->sku = -1;
		o->completes = false;
		break;
	case 4: /* nobody ships there: compensates the charge */
		o->country = "atlantis";
		o->completes = false;
		break;
	case 6:
		o->country = "india";
		break;
	case 9:
		o->card = false;
		o->country = "india";
		break;
	default:
		break;
	}
}

static void
order_json(int i, const struct order *o, char *buf, size_t cap)
{
	char sku[32];
	if (o->sku < 0)
		snprintf(sku, sizeof(sku), "sku-rare");
	else
		snprintf(sku, sizeof(sku), "sku-%d", o->sku);
	snprintf(buf, cap,
	         "{\"customer_id\":\"cust-%d\",\"items\":[{\"sku\":\"%s\","
	         "\"quantity\":%d,\"unit_price_cents\":%lld}],"
	         "\"currency\":\"EUR\",\"payment_method\":\"%s\"%s,"
	         "\"ship_to\":{\"country\":\"%s\",\"city\":\"C%d\"},"
	         "\"category\":\"%s\"}",
	         i % 97, sku, o->qty, o->price, o->card ? "card" : "cod",
	         !o->card       ? ""
	         : o->kind == 2 ? ",\"card_token\":\"tok_decline\""
	                        : ",\"card_token\":\"tok_visa\"",
	         o->country, i, i % 2 ? "electronics" : "books");
}

static void
write_file(const char *name, const char *text)
{
	FILE *f = fopen(path(name), "w");
	if (f != NULL) {
		fputs(text, f);
		fclose(f);
	}
}

/* The daemons: a log name and a command line, where {url}, {dir} and
 * {listen} are filled in; split on spaces. */
static const char *const daemon_specs[][2] = {
        {"orch", "saga-orchestrator --amqp {url} --db {orchdir}/orch.db "
                 "--statecharts {charts} --log-level warn --http "
                 "127.0.0.1:{orchport} {shard1}"},
        {"inv", "inventory-svc --amqp {url} --db {dir}/inv.db --seed "
                "{dir}/seed.txt --log-level warn"},
        {"pay", "payment-svc --amqp {url} --db {dir}/pay.db --config "
                "{dir}/pay.conf"},
        {"ship-default", "shipping-svc --amqp {url} --db "
                         "{dir}/ship-default.db --no-ship atlantis "
                         "--log-level warn"},
        {"ship-india", "shipping-svc --amqp {url} --db {dir}/ship-india.db "
                       "--instance india --bind india.* --log-level warn"},
        {"ship-eu", "shipping-svc --amqp {url} --db {dir}/ship-eu.db "
                    "--instance eu --bind france.* --bind germany.* "
                    "--log-level warn"},
        {"notif", "notification-svc --amqp {url} --db {dir}/notif.db "
                  "--confirm-delay 500 --log-level warn"},
        {"api", "order-api --amqp {url} --db {dir}/api.db --listen {listen} "
                "--log-level warn"},
        {"inv2", "inventory-svc --amqp {url} --db {dir}/inv.db "
                 "--log-level warn"},
        {"orch2", "saga-orchestrator --amqp {url} --db {orchdir}/orch2.db "
                  "--statecharts {charts} --log-level warn --shard 2/2"},
};

/* Starts daemon i (again); its pid in pids[i]. */
static int
spawn_daemon(int i)
{
	char line[1024], listen[64], log[64], *argv[32], *save = NULL, *t;
	char port[16];
	const char *spec = daemon_specs[i][1];
	size_t o = 0;
	int n = 0;

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", api_port);
	snprintf(port, sizeof(port), "%d", orch_port);
	const char *const subst[][2] = {
	        {"{shard1}", opt->shards == 2 ? "--shard 1/2" : ""},
	        {"{url}", url},
	        {"{dir}", dir},
	        {"{listen}", listen},
	        {"{orchdir}", opt->orch_dir != NULL ? opt->orch_dir : dir},
	        {"{charts}", opt->charts != NULL ? opt->charts : "statecharts"},
	        {"{orchport}", port},
	};
	while (*spec != '\0' && o + 1 < sizeof(line)) {
		size_t k, ns = sizeof(subst) / sizeof(subst[0]);
		for (k = 0; k < ns; k++)
			if (strncmp(spec, subst[k][0], strlen(subst[k][0])) ==
			    0)
				break;
		if (k < ns) {
			o += (size_t)snprintf(line + o, sizeof(line) - o, "%s",
			                      subst[k][1]);
			spec += strlen(subst[k][0]);
		} else {
			line[o++] = *spec++;
		}
	}
	line[o < sizeof(line) ? o : sizeof(line) - 1] = '\0';
	for (t = strtok_r(line, " ", &save); t != NULL && n < 31;
	     t = strtok_r(NULL, " ", &save))
		argv[n++] = t;
	argv[n] = NULL;
	snprintf(log, sizeof(log), "%s.log", daemon_specs[i][0]);
	pids[i] = testutil_spawn((const char *const *)argv, path(log));
	return pids[i] > 0 ? 0 : -1;
}

static int
start_all(void)
{
	int ok = 0;
	FILE *f = fopen(path("seed.txt"), "w");

	if (f == NULL)
		return -1;
	for (int s = 0; s < NSKU; s++)
		fprintf(f, "sku-%d %d\n", s, STOCK);
	fprintf(f, "sku-rare 0\n");
	fclose(f);
	write_file("pay.conf", opt->slow_payments
	                               ? "decline_token = tok_decline\n"
	                                 "card_limit_cents = 200000\n"
	                                 "transient_failure_percent = 10\n"
	                                 "slow_percent = 1\n"
	                                 "slow_ms = 4500\n"
	                               : "decline_token = tok_decline\n"
	                                 "card_limit_cents = 200000\n"
	                                 "transient_failure_percent = 10\n");
	npids = D_ORCH2 + 1;
	for (int i = 0; i < npids; i++)
		if (enabled(i))
			ok |= spawn_daemon(i);
	return ok ? -1 : 0;
}

/* Every work queue has its consumer and the API answers. */
static int
wait_ready(struct bus *b)
{
	static const struct bus_handlers none = {NULL, NULL, NULL};
	const char *qs[] = {opt->shards == 2 ? "orchestrator-1.orders"
	                                     : "orchestrator.orders",
	                    opt->shards == 2 ? "orchestrator-1.replies"
	                                     : "orchestrator.replies",
	                    opt->shards == 2 ? "orchestrator-2.orders"
	                                     : "orchestrator.orders",
	                    opt->shards == 2 ? "orchestrator-2.replies"
	                                     : "orchestrator.replies",
	                    "inventory.commands",
	                    "payment.card",
	                    "payment.cod",
	                    "shipping.default",
	                    "shipping.india",
	                    "shipping.eu",
	                    "notification.events",
	                    "notification.confirm",
	                    "order-api.events"};
	for (int t = 0; t < 300; t++) {
		size_t ready = 0;
		int st = 0;
		char *r;
		for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
			uint32_t m, c;
			if (bus_queue_info(b, qs[i], &m, &c) == 0 && c > 0)
				ready++;
		}
		r = testutil_http(api_port, "GET", "/healthz", NULL, NULL, &st);
		free(r);
		/* orders are posted at once, also in the second the last
		 * shard joined the ring: the bus's x-published-ms tells
		 * them from older ones (shard.h) */
		if (ready == sizeof(qs) / sizeof(qs[0]) && st == 200)
			return 0;
		/* a queue not declared yet closes the channel (404): the
		 * bus reconnects from its poll */
		bus_poll(b, 200, &none);
	}
	return -1;
}

static long long
q1(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	long long v = -1;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* The orchestrator's database; with shards the first one, with the
 * second attached and temp views (found before main's tables) making
 * their sagas and history one. */
static int
orch_open(sqlite3 **db)
{
	char err[256], *q;
	int rc;
	if (db_open(path("orch.db"), DB_READONLY, db, err, sizeof(err)) != 0)
		return -1;
	if (opt->shards != 2)
		return 0;
	q = sqlite3_mprintf(
	        "PRAGMA query_only = OFF; ATTACH %Q AS s2; "
	        "CREATE TEMP VIEW sagas AS SELECT * FROM main.sagas UNION ALL "
	        "SELECT * FROM s2.sagas; "
	        "CREATE TEMP VIEW history AS SELECT * FROM main.history UNION "
	        "ALL SELECT * FROM s2.history; PRAGMA query_only = ON",
	        path("orch2.db"));
	rc = q != NULL ? sqlite3_exec(*db, q, NULL, NULL, NULL) : SQLITE_NOMEM;
	sqlite3_free(q);
	if (rc != SQLITE_OK) {
		db_close(*db);
		return -1;
	}
	return 0;
}

static long long
count_in(const char *db_name, const char *sql)
{
	sqlite3 *db;
	char err[256];
	long long v;
	if (strcmp(db_name, "orch.db") == 0
	            ? orch_open(&db) != 0
	            : db_open(path(db_name), DB_READONLY, &db, err,
	                      sizeof(err)) != 0)
		return -1;
	v = q1(db, sql);
	db_close(db);
	return v;
}

/* One file only (not the shards' union). */
static long long
count_in_file(const char *db_name, const char *sql)
{
	sqlite3 *db;
	char err[256];
	long long v;
	if (db_open(path(db_name), DB_READONLY, &db, err, sizeof(err)) != 0)
		return -1;
	v = q1(db, sql);
	db_close(db);
	return v;
}

static long long
stuck(void)
{
	return count_in("orch.db",
	                "SELECT count(*) FROM sagas WHERE status = 'stuck'");
}

static long long
finished(void)
{
	return count_in("orch.db", "SELECT count(*) FROM sagas WHERE status "
	                           "IN ('completed', 'failed')");
}

static const char *
status_of(sqlite3 *db, const char *id, char *buf, size_t cap)
{
	sqlite3_stmt *st;
	buf[0] = '\0';
	if (sqlite3_prepare_v2(db, "SELECT status FROM sagas WHERE id = ?1", -1,
	                       &st, NULL) != SQLITE_OK)
		return buf;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		snprintf(buf, cap, "%s",
		         (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return buf;
}

/* Disk full: fills the orchestrator's file system while orders keep
 * coming. SQLite goes on writing into the WAL's existing pages and fails
 * a commit only once one needs new space (hundreds of orders later, or
 * never, in the fresh-clone CI of 2026-12-05), so /healthz also reads the
 * space left (db_space_left) and says "disk full" within 250 ms: disk_watch,
 * called between orders and while the test waits for its window, frees
 * the space once /healthz says the disk is full (and fails the test if it
 * never does within DISK_FULL_ORDERS orders and 30 s after the last). */
#define DISK_FULL_ORDERS 100
static bool disk_filled;
static int disk_full_orders;

static void
disk_fill(void)
{
	testutil_sh(NULL, "dd if=/dev/zero of='%s/filler' bs=64k 2>/dev/null",
	            opt->orch_dir);
	disk_filled = true;
	disk_full_orders = 0;
}

static void
disk_free(void)
{
	testutil_sh(NULL, "rm -f '%s/filler'", opt->orch_dir);
	disk_filled = false;
	fprintf(stderr, "  disk space back\n");
}

/* One look at /healthz while the disk is full; last: the orders are all
 * posted, wait up to 30 s for it. */
static void
disk_watch(bool last)
{
	char *out = NULL;
	int st = 0;
	bool unhealthy = false;

	if (!disk_filled)
		return;
	for (int t = 0; t < (last ? 300 : 1) && !unhealthy; t++) {
		free(out);
		out = testutil_http(orch_port, "GET", "/healthz", NULL, NULL,
		                    &st);
		unhealthy = st == 503 && out != NULL && strstr(out, "full");
		if (!unhealthy && last)
			usleep(100000);
	}
	if (unhealthy) {
		fprintf(stderr, "  disk full: healthz says %s",
		        out ? out : "?\n");
		free(out);
		sleep(2);
		disk_free();
		return;
	}
	if (last || disk_full_orders > DISK_FULL_ORDERS) {
		disk_free();
		CHECK_MSG(0, "healthz did not report the full disk: %d %s", st,
		          out ? out : "");
	}
	free(out);
}

/* Outages under way: what comes back, and when (E2E_BROKER_AWAY with
 * which = -1, E2E_DOWN with the daemon). */
static struct {
	int which;
	time_t back_at;
} away[8];
static int naway;

static void
go_away(const struct e2e_fault *f, int i)
{
	CHECK(naway < 8);
	if (naway >= 8)
		return;
	if (f->what == E2E_BROKER_AWAY) {
		fprintf(stderr, "  broker stopped for %d s at order %d\n",
		        f->seconds, i);
		CHECK(testutil_sh(
		              NULL,
		              "'%s/scripts/broker' stop '%s-%ld' --keep >&2",
		              getenv("SAGA_SOURCE_DIR"), broker,
		              (long)getpid()) == 0);
		away[naway].which = -1;
		nrestarts++;
	} else {
		int rc = testutil_stop(pids[f->which], SIGTERM);
		fprintf(stderr, "  %s stopped for %d s at order %d (rc %d)\n",
		        daemon_specs[f->which][0], f->seconds, i, rc);
		CHECK_MSG(rc == 0, "%s did not stop cleanly",
		          daemon_specs[f->which][0]);
		away[naway].which = f->which;
	}
	away[naway++].back_at = time(NULL) + f->seconds;
}

/* Brings back what is due (all of it with `all`). */
static void
come_back(bool all)
{
	for (int k = 0; k < naway;) {
		if (!all && time(NULL) < away[k].back_at) {
			k++;
			continue;
		}
		if (all && time(NULL) < away[k].back_at)
			sleep((unsigned)(away[k].back_at - time(NULL)));
		if (away[k].which < 0) {
			CHECK(testbroker_ctl(broker, "start") == 0);
			fprintf(stderr, "  broker back\n");
		} else {
			CHECK(spawn_daemon(away[k].which) == 0);
			fprintf(stderr, "  %s back\n",
			        daemon_specs[away[k].which][0]);
		}
		away[k] = away[--naway];
	}
}

static void
inject(const struct e2e_fault *f, int i)
{
	int rc;

	switch (f->what) {
	case E2E_KILL:
		rc = testutil_stop(pids[f->which], SIGKILL);
		fprintf(stderr, "  SIGKILL %s at order %d (%s)\n",
		        daemon_specs[f->which][0], i,
		        rc == 128 + SIGKILL ? "killed" : "was not running");
		CHECK(rc == 128 + SIGKILL);
		nkilled++;
		usleep(500000);
		CHECK(spawn_daemon(f->which) == 0);
		break;
	case E2E_BROKER_RESTART:
		fprintf(stderr, "  broker restart at order %d\n", i);
		CHECK(testbroker_ctl(broker, "restart") == 0);
		nrestarts++;
		break;
	case E2E_CLOSE_CONNECTIONS:
		fprintf(stderr, "  close_all_connections at order %d\n", i);
		CHECK(testutil_sh(NULL,
		                  "'%s/scripts/broker' ctl %s-%ld "
		                  "close_all_connections fault >/dev/null 2>&1",
		                  getenv("SAGA_SOURCE_DIR"), broker,
		                  (long)getpid()) == 0);
		break;
	case E2E_DISK_FULL:
		fprintf(stderr, "  disk full at order %d\n", i);
		disk_fill();
		break;
	case E2E_BROKER_AWAY:
	case E2E_DOWN:
		go_away(f, i);
		break;
	case E2E_NODE_STOP:
	case E2E_NODE_START:
		fprintf(stderr, "  %s cluster node %d at order %d\n",
		        f->what == E2E_NODE_STOP ? "stop" : "start", f->node,
		        i);
		CHECK(testutil_sh(
		              NULL, "'%s/scripts/broker' %s %s-%ld-%d %s >&2",
		              getenv("SAGA_SOURCE_DIR"),
		              f->what == E2E_NODE_STOP ? "stop" : "start",
		              broker, (long)getpid(), f->node,
		              f->what == E2E_NODE_STOP ? "--keep" : "") == 0);
		nrestarts += f->what == E2E_NODE_START;
		break;
	}
}

static void
post_all(void)
{
	char body[1024];
	int posted = 0;

	int64_t t0 = clock_wall_ms();

	for (int i = 0; i < n_orders; i++) {
		int st = 0;
		char *r = NULL, *p, key[64];
		plan(i, &orders[i]);
		order_json(i, &orders[i], body, sizeof(body));
		/* a shop's pace: at most WINDOW orders in flight, so steps
		 * do not time out behind a backlog of our own making; or a
		 * steady rate, whatever happens behind the front door */
		for (int t = 0;
		     opt->rate == 0 && t < 600 && posted - finished() > WINDOW;
		     t++) {
			disk_watch(false);
			usleep(100000);
		}
		for (int64_t due = t0 + (int64_t)i * 1000 /
		                                (opt->rate ? opt->rate : 1);
		     opt->rate > 0 && clock_wall_ms() < due;)
			usleep((useconds_t)(due - clock_wall_ms()) * 1000);
		come_back(false);
		for (size_t k = 0; k < opt->nfaults; k++)
			if (opt->faults[k].at == i)
				inject(&opt->faults[k], i);
		/* a client retries with its Idempotency-Key until accepted
		 * (order-api takes orders with the broker away, so only a
		 * failing database answers 503) */
		snprintf(key, sizeof(key), "Idempotency-Key: k-%d\r\n", i);
		for (int t = 0; t < 60; t++) {
			free(r);
			r = testutil_http(api_port, "POST", "/orders", key,
			                  body, &st);
			if (st == 202)
				break;
			nretried_posts++;
			if (opt->no_refused)
				break;
			sleep(1);
		}
		CHECK_MSG(st == 202, "order %d: HTTP %d %s", i, st, r ? r : "");
		p = r != NULL ? strstr(r, "\"order_id\":\"") : NULL;
		if (p != NULL)
			sscanf(p + 12, "%63[^\"]", orders[i].id);
		free(r);
		posted++;
		disk_full_orders++;
		disk_watch(false);
	}
	come_back(true);
	disk_watch(true);
}

static void
check_outcomes(long long *completed_card_cents, long long held[NSKU + 1])
{
	sqlite3 *db;
	char st[32];
	int wrong = 0;

	CHECK(orch_open(&db) == 0);
	for (int i = 0; i < n_orders; i++) {
		const struct order *o = &orders[i];
		const char *want = o->completes ? "completed" : "failed";
		status_of(db, o->id, st, sizeof(st));
		if (!opt->strict) {
			/* under faults a step may run out of attempts: any
			 * final state will do, and the books follow it */
			if (strcmp(st, "completed") != 0 &&
			    strcmp(st, "failed") != 0 && wrong++ < 10)
				CHECK_MSG(0, "order %d (%s): %s, not final", i,
				          o->id, st);
			orders[i].completes = strcmp(st, "completed") == 0;
			if (!orders[i].completes)
				continue;
			held[o->sku] += o->qty;
			if (o->card)
				*completed_card_cents += o->qty * o->price;
			continue;
		}
		if (strcmp(st, want) != 0 && wrong++ < 10)
			CHECK_MSG(0, "order %d (%s, kind %d): %s, want %s", i,
			          o->id, o->kind, st, want);
		if (o->completes) {
			held[o->sku] += o->qty;
			if (o->card)
				*completed_card_cents += o->qty * o->price;
		}
	}
	CHECK_MSG(wrong == 0, "%d orders ended wrong", wrong);
	db_close(db);
}

/* order-api's GET /orders/{id} ends as the orchestrator's saga did: it
 * learns it from the order.* events (a few ms after the saga's commit,
 * hence the wait). */
static void
check_api_statuses(void)
{
	int wrong = 0;

	for (int i = 0; i < n_orders; i++) {
		const char *want = orders[i].completes
		                           ? "\"status\":\"completed\""
		                           : "\"status\":\"failed\"";
		char url_path[128], *r = NULL;
		int st = 0;
		snprintf(url_path, sizeof(url_path), "/orders/%s",
		         orders[i].id);
		for (int t = 0; t < 100; t++) {
			free(r);
			r = testutil_http(api_port, "GET", url_path, NULL, NULL,
			                  &st);
			if (st == 200 && r != NULL && strstr(r, want) != NULL)
				break;
			usleep(100000);
		}
		if ((st != 200 || r == NULL || strstr(r, want) == NULL) &&
		    wrong++ < 10)
			CHECK_MSG(0, "GET %s: %d %s, want %s", url_path, st,
			          r ? r : "", want);
		free(r);
	}
}

static void
check_stock(const long long held[NSKU + 1])
{
	sqlite3 *db;
	char err[256], sql[256];

	CHECK(db_open(path("inv.db"), DB_READONLY, &db, err, sizeof(err)) == 0);
	for (int s = 0; s < NSKU; s++) {
		long long on_hand, h;
		snprintf(sql, sizeof(sql),
		         "SELECT on_hand FROM stock WHERE sku = 'sku-%d'", s);
		on_hand = q1(db, sql);
		snprintf(sql, sizeof(sql),
		         "SELECT coalesce(sum(quantity), 0) FROM reservations "
		         "WHERE sku = 'sku-%d'",
		         s);
		h = q1(db, sql);
		CHECK_MSG(on_hand + h == STOCK,
		          "sku-%d: on hand %lld + held %lld != seeded %d", s,
		          on_hand, h, STOCK);
		CHECK_MSG(h == held[s], "sku-%d: held %lld, completed %lld", s,
		          h, held[s]);
	}
	CHECK(q1(db, "SELECT on_hand FROM stock WHERE sku = 'sku-rare'") == 0);
	CHECK(q1(db, "SELECT count(*) FROM stock WHERE on_hand < 0") == 0);
	db_close(db);
}

static void
check_ledger(long long completed_card_cents)
{
	sqlite3 *db;
	char err[256];
	long long charged, refunded;

	CHECK(db_open(path("pay.db"), DB_READONLY, &db, err, sizeof(err)) == 0);
	charged = q1(db, "SELECT coalesce(sum(amount_cents), 0) FROM ledger "
	                 "WHERE kind = 'charge'");
	refunded = q1(db, "SELECT coalesce(sum(amount_cents), 0) FROM ledger "
	                  "WHERE kind = 'refund'");
	CHECK_MSG(charged - refunded == completed_card_cents,
	          "charges %lld - refunds %lld != completed card orders %lld",
	          charged, refunded, completed_card_cents);
	CHECK(q1(db, "SELECT count(*) FROM (SELECT saga_id FROM ledger "
	             "GROUP BY saga_id, kind HAVING count(*) > 1)") == 0);
	/* atlantis card orders were charged, then refunded in full */
	if (opt->strict && !opt->more_refunds)
		CHECK(q1(db, "SELECT count(*) FROM ledger WHERE kind = "
		             "'refund'") == n_orders / 10);
	if (opt->strict && opt->more_refunds)
		CHECK(q1(db, "SELECT count(*) FROM ledger WHERE kind = "
		             "'refund'") >= n_orders / 10);
	db_close(db);
}

/* Messages in a queue, reconnecting the test's own connection if the
 * broker was restarted under it; -1 if it cannot tell. */
static long
queue_depth(struct bus *b, const char *q)
{
	static const struct bus_handlers none = {NULL, NULL, NULL};
	uint32_t m = 0, c = 0;

	for (int t = 0; t < 100; t++) {
		if (bus_queue_info(b, q, &m, &c) == 0)
			return (long)m;
		bus_poll(b, 100, &none);
	}
	return -1;
}

static int
count_event(void *arg, const struct audit_event *e)
{
	(void)arg;
	(void)e;
	return 0;
}

/* Messages in the stream audit, read from its first (audit.h): a
 * stream's message_count in a passive declare lags behind (RabbitMQ 3.10
 * counts at its own pace). -1 if it cannot be read to the end. */
static long
audit_count(void)
{
	struct bus_config c = {.url = url, .name = "e2e-audit"};
	struct audit_query q = {.saga = NULL};
	struct audit_result res;
	char err[512];

	if (audit_read(&c, &q, count_event, NULL, &res, err, sizeof(err)) !=
	    0) {
		fprintf(stderr, "e2e: %s\n", err);
		return -1;
	}
	return res.end == AUDIT_CAUGHT_UP ? (long)res.scanned : -1;
}

static void
check_notifications(long long ncompleted)
{
	long long emits, notes, confirms = 0;
	long audit;

	emits = count_in("orch.db",
	                 "SELECT count(*) FROM history WHERE kind = 'emit'");
	/* no saga waits for notification-svc: it reads the audit stream in
	 * batches and may still be reading the last events when the last
	 * confirmation (due 500 ms after its order.completed) is written.
	 * Under ASan it may still be catching up after 30 s: wait while it
	 * makes progress, and give up after 15 s without any (or 10 min) */
	long long seen = -1;
	for (int t = 0, idle = 0; t < 3000 && idle < 75; t++) {
		confirms = count_in("notif.db",
		                    "SELECT count(*) FROM notifications WHERE "
		                    "kind = 'order.confirmation'");
		notes = count_in("notif.db",
		                 "SELECT count(*) FROM notifications WHERE "
		                 "kind != 'order.confirmation'");
		if (confirms >= ncompleted && notes >= emits + n_orders)
			break;
		idle = confirms + notes > seen ? 0 : idle + 1;
		seen = confirms + notes > seen ? confirms + notes : seen;
		usleep(200000);
		if (t == 150)
			fprintf(stderr,
			        "e2e: notifications still arriving "
			        "after 30 s (%lld + %lld)\n",
			        notes, confirms);
	}
	CHECK_MSG(confirms == ncompleted, "%lld confirmations for %lld",
	          confirms, ncompleted);
	CHECK_MSG(notes == emits + n_orders,
	          "%lld notifications for %lld events + %d orders", notes,
	          emits, n_orders);
	CHECK(count_in("notif.db",
	               "SELECT count(*) FROM (SELECT 1 FROM notifications "
	               "GROUP BY saga_id, kind HAVING count(*) > 1)") == 0);
	audit = audit_count();
	/* after a crash an event may be published twice (its confirm was
	 * lost): the audit stream keeps both, the notifications dedup */
	CHECK_MSG(opt->nfaults > 0 ? (long long)audit >= emits + n_orders
	                           : (long long)audit == emits + n_orders,
	          "audit has %ld, want %lld", audit, emits + n_orders);
}

static void
check_regions(void)
{
	long long india = 0, eu = 0, other = 0;
	for (int i = 0; i < n_orders; i++) {
		if (!orders[i].completes)
			continue;
		if (strcmp(orders[i].country, "india") == 0)
			india++;
		else if (strcmp(orders[i].country, "brazil") == 0)
			other++;
		else
			eu++;
	}
	CHECK(count_in("ship-india.db", "SELECT count(*) FROM shipments "
	                                "WHERE country = 'india'") == india);
	CHECK(count_in("ship-india.db", "SELECT count(*) FROM shipments") ==
	      india);
	CHECK(count_in("ship-eu.db", "SELECT count(*) FROM shipments") == eu);
	CHECK(count_in("ship-default.db", "SELECT count(*) FROM shipments "
	                                  "WHERE country = 'brazil'") == other);
	CHECK(count_in("ship-default.db", "SELECT count(*) FROM shipments") ==
	      other);
}

/* ---- bad input: every kind of malformed message to every queue ---- */

static const struct {
	const char *queue, *dlq;
	bool catch_all; /* an event consumer: any type is handled */
	bool replies;   /* the orchestrator's replies: unknown saga ids */
} bad_queues[] = {
        {"orchestrator.orders", "orchestrator.dlq", false, false},
        {"orchestrator.replies", "orchestrator.dlq", false, true},
        {"orchestrator.control", "orchestrator.dlq", false, false},
        {"inventory.commands", "inventory.commands.dlq", false, false},
        {"payment.card", "payment.card.dlq", false, false},
        {"payment.cod", "payment.cod.dlq", false, false},
        {"shipping.default", "shipping.default.dlq", false, false},
        {"shipping.india", "shipping.india.dlq", false, false},
        {"shipping.eu", "shipping.eu.dlq", false, false},
        {"notification.events", "notification.events.dlq", true, false},
        {"notification.confirm", "notification.confirm.dlq", true, false},
        {"order-api.events", "order-api.events.dlq", false, false},
};
#define NBADQ (sizeof(bad_queues) / sizeof(bad_queues[0]))
static long bad_expected[NBADQ];

/* A valid envelope of `type` for saga `saga`, encoded (caller frees). */
static char *
valid_body(const char *id, const char *saga, const char *type, size_t *len)
{
	struct envelope e;
	char *body = NULL;
	envelope_init(&e);
	snprintf(e.id, sizeof(e.id), "%s", id);
	snprintf(e.saga, sizeof(e.saga), "%s", saga);
	snprintf(e.type, sizeof(e.type), "%s", type);
	e.ts = 1;
	if (envelope_encode(&e, &body, len) != 0)
		body = NULL;
	envelope_clear(&e);
	return body;
}

/* An envelope whose attempt is a string. */
static char *
wrong_types_body(const char *id, size_t *len)
{
	struct value m, p;
	char *buf = NULL;
	value_set_map(&m);
	value_set_map(&p);
	value_map_put_int(&m, "v", 1);
	value_map_put_str(&m, "id", id);
	value_map_put_str(&m, "saga", "bad-saga");
	value_map_put_str(&m, "type", "inventory.reserve");
	value_map_put_str(&m, "step", "");
	value_map_put_str(&m, "attempt", "first");
	value_map_put_int(&m, "ts", 1);
	value_map_put(&m, "payload", &p);
	if (value_to_msgpack(&m, &buf, len) != 0)
		buf = NULL;
	value_clear(&m);
	return buf;
}

static void
send_bad(struct bus *b, const char *queue, const char *id, const void *body,
         size_t len, const char *content_type, size_t *sent)
{
	struct bus_message m = {.exchange = "",
	                        .routing_key = queue,
	                        .message_id = id,
	                        .type = "bad",
	                        .content_type = content_type,
	                        .body = body,
	                        .len = len};
	CHECK(body != NULL && bus_publish(b, &m, 0) == 0);
	(*sent)++;
}

static void
send_bad_input(struct bus *b)
{
	static const struct bus_handlers none = {NULL, NULL, NULL};
	static const unsigned char garbage[] = {0xde, 0xad, 0xbe, 0xef};
	static const unsigned char huge[] = {0xdf, 0xff, 0xff, 0xff, 0xff};

	for (size_t q = 0; q < NBADQ; q++) {
		const char *name = bad_queues[q].queue;
		char id[128];
		size_t n = 0, len = 0;
		char *body;
		long *want = &bad_expected[0];

		for (size_t k = 0; k < NBADQ; k++)
			if (strcmp(bad_queues[k].dlq, bad_queues[q].dlq) == 0) {
				want = &bad_expected[k];
				break;
			}
		snprintf(id, sizeof(id), "bad-garbage-%s", name);
		send_bad(b, name, id, garbage, sizeof(garbage), NULL, &n);
		snprintf(id, sizeof(id), "bad-huge-%s", name);
		send_bad(b, name, id, huge, sizeof(huge), NULL, &n);
		snprintf(id, sizeof(id), "bad-ctype-%s", name);
		body = valid_body(id, "bad-saga", "inventory.reserve", &len);
		send_bad(b, name, id, body, len, "text/plain", &n);
		snprintf(id, sizeof(id), "bad-truncated-%s", name);
		send_bad(b, name, id, body, len > 20 ? 20 : len, NULL, &n);
		free(body);
		snprintf(id, sizeof(id), "bad-types-%s", name);
		body = wrong_types_body(id, &len);
		send_bad(b, name, id, body, len, NULL, &n);
		free(body);
		if (!bad_queues[q].catch_all) {
			snprintf(id, sizeof(id), "bad-type-%s", name);
			body = valid_body(id, "bad-saga", "no.such_command",
			                  &len);
			send_bad(b, name, id, body, len, NULL, &n);
			free(body);
		}
		if (bad_queues[q].replies) {
			snprintf(id, sizeof(id), "bad-saga-%s", name);
			body = valid_body(id, "no-such-saga",
			                  "inventory.reserved", &len);
			send_bad(b, name, id, body, len, NULL, &n);
			free(body);
		}
		*want += (long)n;
	}
	CHECK(bus_flush(b, 10000, &none) == 0);
}

struct bad_seen {
	long n, without_reason;
};

static int
take_bad(void *arg, const struct bus_delivery *d)
{
	struct bad_seen *s = arg;
	s->n++;
	if (d->error[0] == '\0')
		s->without_reason++;
	if (s->n <= 2)
		fprintf(stderr, "    %s: %s\n", d->message_id, d->error);
	return 1;
}

/* Each DLQ holds exactly the bad messages sent to its queues, each with
 * its reason. */
static void
check_bad_input(struct bus *b)
{
	for (size_t q = 0; q < NBADQ; q++) {
		struct bad_seen s = {0, 0};
		bool got = true;
		if (bad_expected[q] == 0)
			continue;
		fprintf(stderr, "  %s:\n", bad_queues[q].dlq);
		for (int t = 0; t < 200 && s.n < bad_expected[q]; t++) {
			if (bus_get(b, bad_queues[q].dlq, take_bad, &s, &got) !=
			            0 ||
			    !got)
				usleep(50000);
		}
		CHECK_MSG(s.n == bad_expected[q] && s.without_reason == 0,
		          "%s: %ld dead letters (%ld without a reason), want "
		          "%ld",
		          bad_queues[q].dlq, s.n, s.without_reason,
		          bad_expected[q]);
	}
}

static void
check_queues_empty(struct bus *b)
{
	static const char *dlqs[] = {
	        "orchestrator.dlq",         "inventory.commands.dlq",
	        "payment.card.dlq",         "payment.cod.dlq",
	        "shipping.default.dlq",     "shipping.india.dlq",
	        "shipping.eu.dlq",          "notification.events.dlq",
	        "notification.confirm.dlq", "order-api.events.dlq"};
	for (size_t i = 0; i < sizeof(dlqs) / sizeof(dlqs[0]); i++) {
		long m = queue_depth(b, dlqs[i]);
		CHECK_MSG(m == 0, "%s has %ld messages (-1: cannot tell)",
		          dlqs[i], m);
	}
}

/* Two shards: every saga on exactly one, each with a fair part, and
 * sagactl sees them all through a shards file. */
static void
check_shards(void)
{
	long long s1, s2;
	char *out = NULL, shards[700];
	int rc;

	s1 = count_in_file("orch.db", "SELECT count(*) FROM sagas");
	s2 = count_in_file("orch2.db", "SELECT count(*) FROM sagas");
	CHECK_MSG(s1 + s2 == n_orders, "shards hold %lld + %lld sagas, not %d",
	          s1, s2, n_orders);
	CHECK_MSG(count_in("orch.db",
	                   "SELECT count(*) FROM (SELECT id FROM "
	                   "sagas GROUP BY id HAVING count(*) > 1)") == 0,
	          "a saga runs on both shards");
	CHECK_MSG(s1 > n_orders * 35 / 100 && s2 > n_orders * 35 / 100,
	          "unfair shards: %lld and %lld sagas", s1, s2);
	fprintf(stderr, "  shards: %lld and %lld sagas (%.1f%% / %.1f%%)\n", s1,
	        s2, 100.0 * (double)s1 / n_orders,
	        100.0 * (double)s2 / n_orders);
	snprintf(shards, sizeof(shards), "%s/shards.txt", dir);
	{
		FILE *f = fopen(shards, "w");
		CHECK(f != NULL);
		if (f == NULL)
			return;
		fprintf(f, "# the shards of this test\n%s\n%s\n",
		        path("orch.db"), path("orch2.db"));
		fclose(f);
	}
	rc = testutil_sh(&out,
	                 "'%s/sagactl' --shards '%s' list --limit 100000 "
	                 "| tail -n +2 | wc -l",
	                 getenv("SAGA_BIN_DIR"), shards);
	CHECK_MSG(rc == 0 && out != NULL && atoll(out) == n_orders,
	          "sagactl --shards lists %s sagas, not %d", out ? out : "?",
	          n_orders);
	free(out);
	/* order-api answers for the sagas of both shards */
	for (int i = 0; i < 20; i++) {
		char url_path[128], *r;
		int st = 0;
		snprintf(url_path, sizeof(url_path), "/orders/%s",
		         orders[i].id);
		r = testutil_http(api_port, "GET", url_path, NULL, NULL, &st);
		CHECK_MSG(st == 200 && r != NULL &&
		                  (strstr(r, "\"completed\"") ||
		                   strstr(r, "\"failed\"")),
		          "GET %s: %d %s", url_path, st, r ? r : "");
		free(r);
	}
	/* show finds a saga of the second shard */
	rc = testutil_sh(&out, "'%s/sagactl' --shards '%s' show '%s' | head -3",
	                 getenv("SAGA_BIN_DIR"), shards, orders[0].id);
	CHECK_MSG(rc == 0 && out != NULL && strstr(out, orders[0].id) != NULL,
	          "sagactl --shards show %s: %s", orders[0].id,
	          out ? out : "?");
	free(out);
}

/* A counter from the orchestrator's /metrics (-1 if absent). */
static long long
metric(const char *name)
{
	int st = 0;
	char *m = testutil_http(orch_port, "GET", "/metrics", NULL, NULL, &st);
	char *p = m;
	long long v = -1;
	size_t n = strlen(name);
	while (p != NULL && (p = strstr(p, name)) != NULL) {
		if ((p == m || p[-1] == '\n') && p[n] == ' ') {
			v = atoll(p + n + 1);
			break;
		}
		p += n;
	}
	free(m);
	return v;
}

void
e2e_run(const struct e2e_opts *o)
{
	static const struct bus_config bc = {.name = "test-e2e"};
	struct bus_config cfg = bc;
	struct bus *b;
	char err[256], *log;
	long long card_cents = 0, held[NSKU + 1] = {0}, ncompleted = 0;
	int pids_ok;

	opt = o;
	n_orders = o->n;
	nkilled = nrestarts = nretried_posts = nresumed = 0;
	naway = 0;
	memset(orders, 0, sizeof(orders));

	dir = testutil_tmpdir("e2e");
	snprintf(broker, sizeof(broker), "%s", o->name);
	if (o->cluster_nodes > 0) {
		if (testutil_sh(&url,
		                "'%s/scripts/broker' cluster %d start %s-%ld "
		                "--owner %ld",
		                getenv("SAGA_SOURCE_DIR"), o->cluster_nodes,
		                broker, (long)getpid(), (long)getpid()) != 0) {
			free(url);
			url = NULL;
		}
	} else {
		url = testbroker_start(broker);
	}
	if (o->quorum)
		setenv("SAGA_QUEUE_TYPE", "quorum", 1);
	CHECK(dir != NULL && url != NULL);
	if (dir == NULL || url == NULL)
		return;
	api_port = testutil_free_port();
	orch_port = testutil_free_port();
	cfg.url = url;
	b = bus_open(&cfg, err, sizeof(err));
	CHECK(b != NULL);
	CHECK_MSG(bus_connect(b, err, sizeof(err)) == 0, "%s", err);
	pids_ok = start_all();
	CHECK(pids_ok == 0);
	CHECK_MSG(wait_ready(b) == 0, "the daemons did not come up: see %s",
	          dir);
	if (o->bad_input) {
		memset(bad_expected, 0, sizeof(bad_expected));
		send_bad_input(b);
	}
	post_all();
	for (int t = 0; t < 3000 && finished() + stuck() < n_orders; t++)
		usleep(100000);
	if (!o->strict && stuck() > 0) {
		/* a compensation ran out of attempts while the broker was
		 * away: what an operator does about it */
		long long n = stuck();
		CHECK(testutil_sh(NULL,
		                  "'%s/sagactl' --db '%s' %s%s --amqp '%s' "
		                  "resume --all --status stuck --reason 'fault "
		                  "test' >&2",
		                  getenv("SAGA_BIN_DIR"), path("orch.db"),
		                  o->shards == 2 ? "--db " : "",
		                  o->shards == 2 ? path("orch2.db") : "",
		                  url) == 0);
		nresumed += n;
		for (int t = 0; t < 600 && finished() < n_orders; t++)
			usleep(100000);
	}
	/* the test's own connection may have lost a restarted broker */
	for (int t = 0; t < 100 && !bus_connected(b); t++)
		bus_poll(b, 100, &(struct bus_handlers){NULL, NULL, NULL});
	CHECK_MSG(finished() == n_orders, "%lld of %d sagas finished",
	          finished(), n_orders);
	if (o->no_refused)
		CHECK_MSG(nretried_posts == 0, "%lld POSTs refused",
		          nretried_posts);
	check_outcomes(&card_cents, held);
	check_api_statuses();
	for (int i = 0; i < n_orders; i++)
		ncompleted += orders[i].completes;
	check_stock(held);
	check_ledger(card_cents);
	check_notifications(ncompleted);
	check_regions();
	if (o->bad_input)
		check_bad_input(b); /* takes them: then all must be empty */
	check_queues_empty(b);
	if (o->shards == 2)
		check_shards();
	/* the gateway's transient failures went round the retry queue */
	log = testutil_slurp(path("pay.log"), NULL);
	CHECK_MSG(log != NULL && strstr(log, "retrying: gateway unavailable"),
	          "no transient failure was retried");
	free(log);
	fprintf(stderr,
	        "  %s: %d orders, %lld kills, %lld broker restarts, %lld "
	        "POSTs retried, %lld duplicates dropped by the orchestrator, "
	        "%lld stuck sagas resumed by the operator; the orchestrator "
	        "sent %lld commands and events in %lld AMQP messages and took "
	        "%lld bundles of replies\n",
	        o->name, n_orders, nkilled, nrestarts, nretried_posts,
	        metric("saga_duplicates_dropped_total"), nresumed,
	        metric("saga_messages_published_total"),
	        metric("saga_amqp_published_total"),
	        metric("saga_reply_bundles_total"));
	/* SIGTERM drains and stops every daemon cleanly */
	for (int i = 0; i < npids; i++)
		if (enabled(i))
			CHECK_MSG(testutil_stop(pids[i], SIGTERM) == 0,
			          "daemon %d did not stop cleanly", i);
	bus_close(b);
	if (o->cluster_nodes > 0)
		testutil_sh(NULL,
		            "'%s/scripts/broker' cluster %d stop %s-%ld >&2",
		            getenv("SAGA_SOURCE_DIR"), o->cluster_nodes, broker,
		            (long)getpid());
	else
		testbroker_ctl(broker, "stop");
	if (o->quorum)
		unsetenv("SAGA_QUEUE_TYPE");
	if (check_current_failed == 0)
		testutil_rmtree(dir);
	else
		fprintf(stderr, "logs and databases kept in %s\n", dir);
	free(dir);
	free(url);
}

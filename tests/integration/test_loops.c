/* Loops against the real daemons: saga-orchestrator, inventory-svc,
 * payment-svc and shipping-svc on the shared private broker
 * (SAGA_TEST_AMQP_URL), with statecharts/examples/dunning.yaml (its wait
 * cut to 200 ms) in the orchestrator's statecharts folder. payment-svc's
 * gateway declines the card tok_flaky twice per saga, then accepts it
 * (decline_then_accept_token). The saga is declined on payment's first
 * two visits and charged on the third: it completes, each visit sent its
 * own command (<saga>:payment:1, :payment@2:1, :payment@3:1), and the
 * ledger holds exactly one charge and no refund. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "bus.h"
#include "envelope.h"
#include "testorder.h"
#include "testutil.h"

static char *dir;

static const char *
path(const char *name)
{
	static char bufs[16][600];
	static int next;
	char *b = bufs[next++ % 16];

	snprintf(b, sizeof(bufs[0]), "%s/%s", dir, name);
	return b;
}

/* The first column of the first row of `sql` on database `db` (the
 * saga id bound as ?1), or -1. */
static int
db_int(const char *db, const char *sql, const char *saga)
{
	sqlite3 *h;
	sqlite3_stmt *s;
	int n = -1;

	if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		sqlite3_close(h);
		return -1;
	}
	sqlite3_busy_timeout(h, 5000);
	if (sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK) {
		sqlite3_bind_text(s, 1, saga, -1, SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_ROW)
			n = sqlite3_column_int(s, 0);
		sqlite3_finalize(s);
	}
	sqlite3_close(h);
	return n;
}

/* The charts folder (order.yaml and a quick dunning.yaml), the seed and
 * the gateway's config. */
static int
write_files(const char *src)
{
	return testutil_sh(NULL,
	                   "mkdir -p '%s' && cp '%s/statecharts/order.yaml' "
	                   "'%s/' && sed 's/duration: 1h/duration: 200ms/' "
	                   "'%s/statecharts/examples/dunning.yaml' > "
	                   "'%s/dunning.yaml' && grep -q 'duration: 200ms' "
	                   "'%s/dunning.yaml' && echo 'sku-1 10' > '%s' && "
	                   "printf 'decline_then_accept_token = tok_flaky\\n"
	                   "decline_times = 2\\n' > '%s'",
	                   path("charts"), src, path("charts"), src,
	                   path("charts"), path("charts"), path("seed.txt"),
	                   path("pay.conf"));
}

static int
spawn(const char *log, const char *const *argv)
{
	return testutil_spawn(argv, path(log));
}

/* Publishes order.created for saga `id` on the dunning chart. */
static int
post_order(const char *url, const char *id)
{
	static const struct bus_exchange ex[] = {
	        {"order_events", "topic", NULL, NULL}};
	static const struct bus_topology t = {ex, 1, NULL, 0, NULL, 0};
	/* tag 1: bus_flush waits for its confirm */
	static const struct testorder_route route = {"order_events",
	                                             "order.created", 0, 1};
	struct bus_config cfg = {
	        .url = url, .name = "test-loops", .topology = &t};
	struct envelope e;
	char err[512];
	struct bus *b = bus_open(&cfg, err, sizeof(err));
	int rc = -1;

	if (b == NULL || bus_connect(b, err, sizeof(err)) != 0) {
		fprintf(stderr, "bus: %s\n", err);
		bus_close(b);
		return -1;
	}
	testorder_envelope(&e, &(struct testorder){.id = id,
	                                           .chart = "dunning",
	                                           .card_token = "tok_flaky"});
	if (testorder_publish(b, &e, &route) == 0 &&
	    bus_flush(b, 5000, NULL) == 0)
		rc = 0;
	envelope_clear(&e);
	bus_close(b);
	return rc;
}

/* Waits up to secs for the saga to finish; its status, or "". */
static const char *
wait_final(const char *id, int secs)
{
	static const char *const st[] = {"completed", "failed", "stuck",
	                                 "aborted"};
	struct timespec ts = {0, 100 * 1000000};

	for (int i = 0; i < secs * 10; i++) {
		for (size_t k = 0; k < 4; k++) {
			char sql[128];
			snprintf(sql, sizeof(sql),
			         "SELECT count(*) FROM sagas WHERE id = ?1 AND "
			         "status = '%s'",
			         st[k]);
			if (db_int(path("orch.db"), sql, id) == 1)
				return st[k];
		}
		nanosleep(&ts, NULL);
	}
	return "";
}

static void
test_declined_twice_then_charged(void)
{
	const char *url = testutil_amqp_url();
	const char *src = getenv("SAGA_SOURCE_DIR");
	char id[64], *u;
	int orch, inv, pay, ship;

	if (url == NULL || src == NULL) {
		SKIP("SAGA_TEST_AMQP_URL or SAGA_SOURCE_DIR not set");
		return;
	}
	dir = testutil_tmpdir("loops");
	CHECK(dir != NULL);
	CHECK_EQ(write_files(src), 0);
	u = strdup(url);
	{
		const char *const o[] = {"saga-orchestrator",
		                         "--amqp",
		                         u,
		                         "--db",
		                         path("orch.db"),
		                         "--statecharts",
		                         path("charts"),
		                         "--log-level",
		                         "warn",
		                         NULL};
		const char *const i[] = {"inventory-svc",
		                         "--amqp",
		                         u,
		                         "--db",
		                         path("inv.db"),
		                         "--seed",
		                         path("seed.txt"),
		                         "--log-level",
		                         "warn",
		                         NULL};
		const char *const p[] = {"payment-svc",
		                         "--amqp",
		                         u,
		                         "--db",
		                         path("pay.db"),
		                         "--config",
		                         path("pay.conf"),
		                         NULL};
		const char *const s[] = {
		        "shipping-svc",  "--amqp",      u,      "--db",
		        path("ship.db"), "--log-level", "warn", NULL};
		orch = spawn("orch.log", o);
		inv = spawn("inv.log", i);
		pay = spawn("pay.log", p);
		ship = spawn("ship.log", s);
	}
	CHECK(orch > 0 && inv > 0 && pay > 0 && ship > 0);
	sleep(2); /* queues declared, consumers up */
	snprintf(id, sizeof(id), "loop-%d", (int)getpid());
	CHECK_EQ(post_order(u, id), 0);
	CHECK_STR(wait_final(id, 60), "completed");
	/* three visits of payment, each its own command */
	CHECK_EQ(db_int(path("orch.db"),
	                "SELECT count(DISTINCT message_id) FROM history "
	                "WHERE saga_id = ?1 AND kind = 'send' AND state = "
	                "'payment'",
	                id),
	         3);
	CHECK_EQ(db_int(path("orch.db"),
	                "SELECT count(*) FROM history WHERE saga_id = ?1 AND "
	                "kind = 'send' AND message_id = ?1 || ':payment@3:1'",
	                id),
	         1);
	/* declined twice, charged once, nothing refunded */
	CHECK_EQ(db_int(path("pay.db"),
	                "SELECT declined FROM flaky_declines WHERE saga_id = "
	                "?1",
	                id),
	         2);
	CHECK_EQ(db_int(path("pay.db"),
	                "SELECT count(*) FROM ledger WHERE saga_id = ?1 AND "
	                "kind = 'charge'",
	                id),
	         1);
	CHECK_EQ(db_int(path("pay.db"),
	                "SELECT count(*) FROM ledger WHERE saga_id = ?1 AND "
	                "kind <> 'charge'",
	                id),
	         0);
	CHECK_EQ(testutil_stop(orch, SIGTERM), 0);
	CHECK_EQ(testutil_stop(inv, SIGTERM), 0);
	CHECK_EQ(testutil_stop(pay, SIGTERM), 0);
	CHECK_EQ(testutil_stop(ship, SIGTERM), 0);
	if (check_current_failed)
		testutil_sh(NULL, "tail -n 20 '%s'/*.log >&2", dir);
	else
		testutil_rmtree(dir);
	free(u);
	free(dir);
}

int
main(void)
{
	RUN(test_declined_twice_then_charged);
	testutil_kill_all();
	return check_summary();
}

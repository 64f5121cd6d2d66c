/* test_parallel -- statecharts/examples/parallel.yaml end to end: every
 * daemon on a private broker (tests/e2e.h) with the example chart as the
 * `order` chart, so stock and payment go at once. Every order must end as
 * the rules say: good orders complete (both branches joined); a declined
 * card, a card over its limit, a stock-out or cash on delivery over the
 * limit fail, and whatever the other branch did is undone: stock is
 * conserved (held = the lines of completed orders, so every reservation
 * of a failed order was released) and the ledger balances (charges -
 * refunds = completed card orders, so a charge made before the stock ran
 * out was refunded). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "e2e.h"
#include "testutil.h"

/* A statecharts dir whose `order` chart is the parallel example. */
static int
charts_dir(char *dir, size_t cap)
{
	const char *src = getenv("SAGA_SOURCE_DIR");
	char in[1024], out[1100], line[512];
	FILE *f, *g;

	snprintf(dir, cap, "/tmp/saga-parallel-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(in, sizeof(in), "%s/statecharts/examples/parallel.yaml",
	         src != NULL ? src : ".");
	snprintf(out, sizeof(out), "%s/order.yaml", dir);
	f = fopen(in, "r");
	g = fopen(out, "w");
	if (f == NULL || g == NULL) {
		if (f != NULL)
			fclose(f);
		if (g != NULL)
			fclose(g);
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL)
		fputs(strncmp(line, "saga: ", 6) == 0 ? "saga: order\n" : line,
		      g);
	fclose(f);
	return fclose(g) == 0 ? 0 : -1;
}

/* A count from the orchestrator's database. */
static long long
count(const char *db, const char *sql)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	long long n = -1;

	if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(h);
	return n;
}

static void
test_parallel_orders(void)
{
	char dir[64], odir[64], file[160];
	struct e2e_opts o = {.name = "e2e-par",
	                     .n = 300,
	                     .strict = true,
	                     .more_refunds = true};

	CHECK(charts_dir(dir, sizeof(dir)) == 0);
	snprintf(odir, sizeof(odir), "/tmp/saga-parallel-db-XXXXXX");
	CHECK(mkdtemp(odir) != NULL);
	o.charts = dir;
	o.orch_dir = odir;
	e2e_run(&o);
	snprintf(file, sizeof(file), "%s/orch.db", odir);
	/* the fork: both commands in one step, for every order */
	CHECK_EQ(count(file, "SELECT count(DISTINCT a.saga_id) FROM history a "
	                     "JOIN history b ON a.saga_id = b.saga_id AND "
	                     "a.seq + 1 = b.seq WHERE a.kind = 'send' AND "
	                     "a.state = 'reserve_stock' AND b.kind = 'send' "
	                     "AND b.state = 'payment'"),
	         count(file, "SELECT count(*) FROM sagas WHERE chart = "
	                     "'order' AND EXISTS (SELECT 1 FROM history h "
	                     "WHERE h.saga_id = sagas.id AND h.state = "
	                     "'payment')"));
	/* a branch failed and the other's reservation was undone */
	CHECK(count(file, "SELECT count(DISTINCT saga_id) FROM history WHERE "
	                  "kind = 'send' AND detail = 'inventory.release' AND "
	                  "status = 'compensating'") > 0);
	CHECK(count(file, "SELECT count(*) FROM sagas WHERE status = "
	                  "'completed'") > 0);
	snprintf(file, sizeof(file), "%s/order.yaml", dir);
	unlink(file);
	rmdir(dir);
	for (size_t i = 0; i < 4; i++) {
		static const char *const left[] = {"orch.db", "orch.db-wal",
		                                   "orch.db-shm", "orch.log"};
		snprintf(file, sizeof(file), "%s/%s", odir, left[i]);
		unlink(file);
	}
	rmdir(odir);
}

int
main(void)
{
	RUN(test_parallel_orders);
	return check_summary();
}

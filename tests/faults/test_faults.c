/* test_faults -- bad input to every queue (each malformed message in a
 * dead-letter queue with its reason while good traffic goes on); and the
 * whole system under a steady stream of orders while
 * things go wrong (issue 11): the orchestrator SIGKILLed twice, inventory
 * and payment SIGKILLed, two inventory instances competing on one
 * database, the broker's connections closed and the broker restarted, a
 * slow payment gateway (timeouts and retries fire while late replies still
 * come), and the orchestrator's disk filled for a while. Then every
 * invariant of tests/e2e.h must hold, and the run prints what it survived.
 *
 * The chart is order.yaml with 4 s step timeouts, so that the slow gateway
 * (4.5 s) makes the orchestrator retry. A compensation that keeps failing
 * while the broker is away leaves its saga stuck, by design: the test then
 * does what an operator would (sagactl resume --all --status stuck) and
 * says how many it resumed. The disk is a small tmpfs mounted
 * for the test (root only; without it that fault is skipped, said so).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "e2e.h"
#include "testutil.h"

static void
test_faults_under_load(void)
{
	static struct e2e_fault f[] = {
	        {40, E2E_KILL, D_ORCH, 0, 0},
	        {80, E2E_KILL, D_INV, 0, 0},
	        {120, E2E_CLOSE_CONNECTIONS, 0, 0, 0},
	        {170, E2E_BROKER_RESTART, 0, 0, 0},
	        {230, E2E_DISK_FULL, 0, 0, 0},
	        {270, E2E_KILL, D_PAY, 0, 0},
	        {310, E2E_KILL, D_ORCH, 0, 0},
	        {350, E2E_KILL, D_INV2, 0, 0},
	};
	struct e2e_opts o = {.name = "faults",
	                     .n = 400,
	                     .strict = false,
	                     .faults = f,
	                     .nfaults = sizeof(f) / sizeof(f[0]),
	                     .second_inventory = true,
	                     .slow_payments = true};
	char *dir = testutil_tmpdir("faults-charts"), charts[600], disk[600];
	bool mounted = false;

	CHECK(dir != NULL);
	snprintf(charts, sizeof(charts), "%s/charts", dir);
	snprintf(disk, sizeof(disk), "%s/disk", dir);
	CHECK(testutil_sh(NULL,
	                  "mkdir -p '%s' '%s' && sed 's/timeout: 5s/timeout: "
	                  "4s/' statecharts/order.yaml > '%s/order.yaml'",
	                  charts, disk, charts) == 0);
	o.charts = charts;
	if (mount("tmpfs", disk, "tmpfs", 0, "size=48m") == 0) {
		mounted = true;
		o.orch_dir = disk;
	} else {
		/* no CAP_SYS_ADMIN: everything but the full disk */
		fprintf(stderr, "  (cannot mount a small file system here: the "
		                "disk-full fault is skipped)\n");
		o.nfaults = 4;
		f[4] = f[7]; /* drop E2E_DISK_FULL, keep the rest */
		o.nfaults = sizeof(f) / sizeof(f[0]) - 1;
	}
	e2e_run(&o);
	if (mounted)
		umount2(disk, MNT_DETACH);
	testutil_rmtree(dir);
	free(dir);
}

/* Every kind of malformed message to every work queue, then 200 orders:
 * each bad one lands in its dead-letter queue with its reason, the good
 * traffic ends exactly as the rules say. */
static void
test_bad_input_everywhere(void)
{
	static const struct e2e_opts o = {.name = "badinput",
	                                  .n = 200,
	                                  .strict = true,
	                                  .bad_input = true};
	e2e_run(&o);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	atexit(testutil_kill_all);
	RUN(test_bad_input_everywhere);
	testutil_kill_all();
	RUN(test_faults_under_load);
	testutil_kill_all();
	return check_summary();
}

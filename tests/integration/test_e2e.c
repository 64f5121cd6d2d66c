/* test_e2e -- every daemon on a private broker (tests/e2e.h): 1,000
 * orders end exactly as the rules say with the books balanced; then 600
 * with every daemon but order-api SIGKILLed once along the way. */
#include <signal.h>
#include <stdlib.h>

#include "e2e.h"
#include "testutil.h"

static void
test_thousand_orders(void)
{
	static const struct e2e_opts o = {
	        .name = "e2e", .n = 1000, .strict = true};
	e2e_run(&o);
}

/* Every daemon but order-api is SIGKILLed once while orders flow, and
 * started again: every order still ends as the rules say, exactly once,
 * with the books balanced. */
static void
test_kill_every_daemon(void)
{
	static const struct e2e_fault k[] = {
	        {60, E2E_KILL, D_ORCH, 0, 0},
	        {120, E2E_KILL, D_INV, 0, 0},
	        {180, E2E_KILL, D_PAY, 0, 0},
	        {240, E2E_KILL, D_SHIP_INDIA, 0, 0},
	        {300, E2E_KILL, D_SHIP_DEFAULT, 0, 0},
	        {360, E2E_KILL, D_NOTIF, 0, 0},
	        {420, E2E_KILL, D_ORCH, 0, 0},
	        {480, E2E_KILL, D_SHIP_EU, 0, 0},
	};
	static const struct e2e_opts o = {.name = "e2e-kill",
	                                  .n = 600,
	                                  .strict = true,
	                                  .faults = k,
	                                  .nfaults = sizeof(k) / sizeof(k[0])};
	e2e_run(&o);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	atexit(testutil_kill_all);
	RUN(test_thousand_orders);
	testutil_kill_all();
	RUN(test_kill_every_daemon);
	testutil_kill_all();
	return check_summary();
}

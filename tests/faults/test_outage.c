/* test_outage -- ride through outages (issue 20): 2,000 orders posted over
 * HTTP at a steady 15 a second while
 *   1. the broker is stopped for 25 s and started again (order-api keeps
 *      accepting: its outbox holds the orders; the orchestrator holds its
 *      step timers while it cannot publish), then
 *   2. each participant in turn is stopped for 30 s, longer than its
 *      step's timeout x attempts (inventory 16.5 s, payment 23.5 s in
 *      order.yaml): inventory, payment, then every shipping region and
 *      notification-svc together.
 * Strict: every order ends exactly as its scenario says (none fails
 * because of an outage), not one POST is refused, and every invariant of
 * tests/e2e.h holds (stock, ledger, one notification per event, regions,
 * empty dead-letter queues). */
#include "e2e.h"
#include "testutil.h"

static void
test_outages(void)
{
	static const struct e2e_fault f[] = {
	        {60, E2E_BROKER_AWAY, 0, 0, 25},
	        {500, E2E_DOWN, D_INV, 0, 30},
	        {1000, E2E_DOWN, D_PAY, 0, 30},
	        {1500, E2E_DOWN, D_SHIP_DEFAULT, 0, 30},
	        {1500, E2E_DOWN, D_SHIP_INDIA, 0, 30},
	        {1500, E2E_DOWN, D_SHIP_EU, 0, 30},
	        {1500, E2E_DOWN, D_NOTIF, 0, 30},
	};
	struct e2e_opts o = {.name = "outage",
	                     .n = 2000,
	                     .strict = true,
	                     .faults = f,
	                     .nfaults = sizeof(f) / sizeof(f[0]),
	                     .rate = 15,
	                     .no_refused = true};
	e2e_run(&o);
}

int
main(void)
{
	RUN(test_outages);
	return check_summary();
}

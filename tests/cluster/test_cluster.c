/* test_cluster -- scale-out (issue 12): a 3-node RabbitMQ cluster
 * (scripts/broker cluster 3), every queue a quorum queue, two orchestrator
 * shards behind the consistent-hash exchange, and 2,000 orders through
 * order-api while the cluster node every daemon connects to first is
 * stopped and, later, started again (it rejoins; the daemons fail over to
 * the other nodes in their URL lists and back). Inventory runs as two
 * competing instances, unchanged. Then every invariant of
 * tests/e2e.h holds, each shard owns a fair part of the sagas, no saga is
 * on both, and sagactl --shards lists them all.
 *
 * Adding and draining shards (no order lost or started twice) is tested
 * in tests/integration/test_orchestrator.c, on one broker.
 *
 * Label cluster: scripts/test runs it in the plain build (three broker
 * nodes and nine daemons are too slow under the sanitizers).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e.h"
#include "testutil.h"

static void
test_two_shards_on_a_cluster_losing_a_node(void)
{
	static const struct e2e_fault f[] = {
	        {600, E2E_NODE_STOP, 0, 1, 0},
	        {1300, E2E_NODE_START, 0, 1, 0},
	};
	static const struct e2e_opts o = {.name = "cluster",
	                                  .n = 2000,
	                                  .strict = true,
	                                  .faults = f,
	                                  .nfaults = 2,
	                                  .cluster_nodes = 3,
	                                  .quorum = true,
	                                  .shards = 2,
	                                  .second_inventory = true};
	e2e_run(&o);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	atexit(testutil_kill_all);
	RUN(test_two_shards_on_a_cluster_losing_a_node);
	testutil_kill_all();
	return check_summary();
}

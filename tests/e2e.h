/* e2e.h -- the end-to-end harness: every daemon on a private broker
 * (saga-orchestrator, inventory-svc, payment-svc, three shipping-svc
 * regions, notification-svc, order-api), a mix of orders posted through
 * the HTTP API at a shop's pace, faults injected along the way, and then
 * the invariants:
 *   - every order reached a final state (strict: exactly the one the
 *     rules give it);
 *   - stock conserved: seeded = on hand + held, held = lines of completed
 *     orders;
 *   - the ledger balances: charges - refunds = completed card orders, and
 *     never two charges or refunds for one saga;
 *   - one notification per event, one confirmation per completed order;
 *     every event in the audit stream;
 *   - shipments by the right regional instance;
 *   - every dead-letter queue empty; the retry path used;
 *   - every daemon stops cleanly on SIGTERM;
 *   - with shards: each saga on exactly one shard, each shard with a
 *     fair part, and sagactl sees them all through --shards.
 * Used by tests/integration/test_e2e.c and tests/faults/test_faults.c.
 */
#ifndef SAGA_E2E_H
#define SAGA_E2E_H

#include <stdbool.h>
#include <stddef.h>

enum e2e_daemon {
	D_ORCH,
	D_INV,
	D_PAY,
	D_SHIP_DEFAULT,
	D_SHIP_INDIA,
	D_SHIP_EU,
	D_NOTIF,
	D_API,
	D_INV2,  /* a second inventory-svc on the same database */
	D_ORCH2, /* the second orchestrator shard (shards = 2) */
};

enum e2e_fault_kind {
	E2E_KILL,              /* SIGKILL a daemon, start it again */
	E2E_BROKER_RESTART,    /* stop and start the broker */
	E2E_CLOSE_CONNECTIONS, /* rabbitmqctl close_all_connections */
	E2E_DISK_FULL,         /* fill the orchestrator's file system a while */
	E2E_NODE_STOP,         /* stop cluster node `node` (data kept) */
	E2E_NODE_START,        /* start it again: it rejoins the cluster */
	E2E_BROKER_AWAY,       /* stop the broker (data kept) for `seconds`
	                        * while orders go on being posted */
	E2E_DOWN,              /* SIGTERM a daemon, start it `seconds` later,
	                        * orders going on meanwhile */
};

struct e2e_fault {
	int at; /* when order number `at` is about to be posted */
	enum e2e_fault_kind what;
	enum e2e_daemon which; /* E2E_KILL */
	int node;              /* E2E_NODE_STOP/START: 1..cluster_nodes */
	int seconds;           /* E2E_BROKER_AWAY, E2E_DOWN */
};

struct e2e_opts {
	const char *name; /* the private broker's name */
	int n;            /* orders, at most 2000 */
	bool strict;      /* each order must end as the rules say */
	const struct e2e_fault *faults;
	size_t nfaults;
	bool second_inventory; /* run D_INV2 as well */
	bool slow_payments;    /* 1% of card charges take 4.5 s */
	bool bad_input; /* before the orders, every kind of malformed message
	                 * to every work queue: each must land in its
	                 * dead-letter queue with a reason, and nothing else */
	const char *charts;   /* statecharts dir (default statecharts) */
	const char *orch_dir; /* the orchestrator's database dir (a small
	                       * file system for E2E_DISK_FULL) */
	int cluster_nodes;    /* 0: one broker; else a cluster of this many */
	bool quorum;          /* every queue a quorum queue */
	int rate;             /* 0: post at a shop's pace (at most a window
	                       * of orders unfinished); else this many orders
	                       * a second, steadily, whatever happens */
	bool no_refused;      /* every POST must be accepted at its first
	                       * try (no retry with the Idempotency-Key) */
	int shards;           /* 0: one orchestrator; 2: two shards, and
	                       * each must own a fair part of the sagas */
	bool more_refunds;    /* the chart may charge a card before the
	                       * order fails for another reason (a parallel
	                       * state): refunds are at least the atlantis
	                       * card orders, not exactly them */
};

/* Runs one scenario; failures are CHECKs of the calling test. */
void e2e_run(const struct e2e_opts *o);

#endif

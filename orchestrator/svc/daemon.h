/* daemon.h -- saga-orchestrator's wiring: configuration in, the store,
 * the chart registry, the processor, the durable loop, the bus transport,
 * /healthz and /metrics; main() only parses flags and calls
 * orch_daemon_run().
 */
#ifndef SAGA_DAEMON_H
#define SAGA_DAEMON_H

#include <signal.h>
#include <stdbool.h>

struct orch_daemon_config {
	const char *amqp;        /* broker URL(s) */
	const char *db;          /* SQLite path */
	const char *statecharts; /* folder of *.yaml */
	const char *http;        /* ADDR:PORT or NULL */
	const char *reply_key;   /* our reply queue's routing key (unsharded) */
	const char *shard;       /* "I/N" (shard.h), or NULL: unsharded */
	bool drain;              /* leave the hash ring, finish, exit */
	const char *queue_type;  /* classic or quorum (bus.h) */
	int batch, batch_wait_ms, prefetch;
	int bundle;     /* commands per message at most (bundler.h); 1: never */
	int inbox_days; /* keep processed message ids this long; 0: forever */
	/* a message on the orders queue larger than this many KiB goes to
	 * the DLQ: each of its events carries the whole order, so one near
	 * the bus's limit could never be published; ORCH_MAX_ORDER_KIB_DEFAULT
	 */
	int max_order_kib;
	const char *otlp_url; /* export spans there (lib/otlp.h), or NULL */
	/* the audit stream's retention (x-max-age, audit.h) when the
	 * orchestrator creates it; NULL: AUDIT_MAX_AGE_DEFAULT */
	const char *audit_max_age;
	const char *dlq_amqp; /* the operator's broker URL the console
	                       * replays or discards dead letters with, or
	                       * NULL: it cannot (console.h) */
	const char *mgmt_url; /* the broker's management API for the
	                       * console's /dlq pages, or NULL: derived from
	                       * amqp (lib/mgmt.h) */
	/* the console's logins (console.h): a users file, a trusted
	 * header; NULL: none (actions refused) */
	const char *console_users, *console_trust_header;
	/* the broker user operator requests must come from (loop.h,
	 * loop_set_operator); NULL or "": any user who can write to the
	 * control exchange */
	const char *operator_user;
};

/* --max-order-kib: the default leaves an event 15 MiB for what it adds to
 * the order; the most is the bus's limit for any message (lib/bus.h). */
#define ORCH_MAX_ORDER_KIB_DEFAULT 1024
#define ORCH_MAX_ORDER_KIB_MAX     (16 * 1024)

/* Loads charts, opens the database (and claims it for the shard); with
 * check_only stops there (0 if all is well). Otherwise connects and runs
 * until *stop, reloading the charts when *reload is set. With drain (a
 * shard only): announces the ring change to every shard, unbinds its
 * orders queue from the hash ring, finishes every order already queued
 * and every saga it owns (stuck ones wait for the operator), deletes its
 * queues and exits 0. Returns the process exit status. */
int orch_daemon_run(const struct orch_daemon_config *cfg, int check_only,
                    volatile sig_atomic_t *stop, volatile sig_atomic_t *reload);

#endif

/* daemon.h -- saga-orchestrator's wiring: configuration in, the store,
 * the chart registry, the processor, the durable loop, the bus transport,
 * /healthz and /metrics; main() only parses flags and calls
 * orch_daemon_run().
 */
#ifndef SAGA_DAEMON_H
#define SAGA_DAEMON_H

#include <signal.h>

struct orch_daemon_config {
	const char *amqp;        /* broker URL(s) */
	const char *db;          /* SQLite path */
	const char *statecharts; /* folder of *.yaml */
	const char *http;        /* ADDR:PORT or NULL */
	const char *reply_key;   /* our reply queue's routing key */
	int batch, batch_wait_ms, prefetch;
};

/* Parses a decimal integer in [min, max] into *out. 0, or -1 if s is not
 * one. */
int daemon_parse_count(const char *s, int min, int max, int *out);

/* Loads charts, opens the database; with check_only stops there (0 if
 * all is well). Otherwise connects and runs until *stop, reloading the
 * charts when *reload is set. Returns the process exit status. */
int orch_daemon_run(const struct orch_daemon_config *cfg, int check_only,
                    volatile sig_atomic_t *stop, volatile sig_atomic_t *reload);

#endif

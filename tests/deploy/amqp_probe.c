/* amqp_probe -- one basic.get as a given user, for tests/deploy: proves
 * what a service's RabbitMQ permissions let it read.
 *
 *   amqp_probe URL QUEUE
 *
 * Exit 0: the get was allowed (the queue was empty or a message was seen
 * and requeued); 3: the broker refused it (e.g. 403 ACCESS_REFUSED, the
 * reason on stderr); 4: no connection (login refused, broker down).
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "log.h"

static int
keep(void *arg, const struct bus_delivery *d)
{
	(void)arg;
	(void)d;
	return 0; /* requeue: a probe changes nothing */
}

int
main(int argc, char **argv)
{
	char err[512];
	struct bus_config cfg = {.name = "amqp_probe",
	                         .connect_timeout_ms = 3000,
	                         .rpc_timeout_ms = 5000};
	struct bus *b;
	bool got = false;
	int rc;

	if (argc != 3) {
		fprintf(stderr, "usage: amqp_probe URL QUEUE\n");
		return 2;
	}
	log_init("amqp_probe", LOG_WARN); /* the refusal is a warning */
	cfg.url = argv[1];
	b = bus_open(&cfg, err, sizeof(err));
	if (b == NULL) {
		fprintf(stderr, "amqp_probe: %s\n", err);
		return 2;
	}
	if (bus_connect(b, err, sizeof(err)) != 0) {
		fprintf(stderr, "amqp_probe: %s\n", err);
		bus_close(b);
		return 4;
	}
	rc = bus_get(b, argv[2], keep, NULL, &got);
	if (rc != 0)
		fprintf(stderr, "amqp_probe: basic.get %s refused\n", argv[2]);
	else
		printf("basic.get %s allowed (%s)\n", argv[2],
		       got ? "a message, requeued" : "empty");
	bus_close(b);
	return rc == 0 ? 0 : 3;
}

/* bus_bench -- messages per second through lib/bus on a private broker:
 * persistent publish with confirms pipelined (many in flight, confirms in
 * batches), consume-and-ack, and beside them the naive loop that publishes
 * one message and waits for its confirm before the next.
 *
 *   url=$(scripts/broker start bench) && build/bin/bus_bench "$url" [N]
 *
 * Prints one table; figures vary ±15% run to run on a shared machine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus.h"
#include "log.h"

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct ctr {
	size_t acked, delivered;
	struct bus *bus;
};

static void
on_confirm(void *arg, uint64_t tag, enum bus_confirm c)
{
	struct ctr *k = arg;
	(void)tag;
	(void)c;
	k->acked++;
}

static void
on_delivery(void *arg, const struct bus_delivery *d)
{
	struct ctr *k = arg;
	k->delivered++;
	/* ack every 50th with multiple, as a batching consumer would */
	if (k->delivered % 50 == 0)
		bus_ack(k->bus, d->ref, true);
}

static struct bus *
open_bus(const char *url, const char *consume)
{
	static const struct bus_queue q[] = {{.name = "bench.bus"}};
	static const struct bus_topology t = {NULL, 0, q, 1, NULL, 0};
	const char *c[1] = {consume};
	struct bus_config cfg = {.url = url,
	                         .name = "bench",
	                         .prefetch = 500,
	                         .topology = &t,
	                         .consume = consume ? c : NULL,
	                         .nconsume = consume ? 1 : 0};
	char err[512];
	struct bus *b = bus_open(&cfg, err, sizeof(err));
	if (b == NULL || bus_connect(b, err, sizeof(err)) != 0) {
		fprintf(stderr, "bus_bench: %s\n", err);
		exit(1);
	}
	return b;
}

static double
publish_run(const char *url, size_t n, size_t window)
{
	struct ctr k = {0};
	struct bus_handlers h = {NULL, on_confirm, &k};
	struct bus *b = open_bus(url, NULL);
	char body[200];
	double t0;
	size_t sent = 0;

	memset(body, 'x', sizeof(body));
	t0 = now_s();
	while (k.acked < n) {
		while (sent < n && bus_unconfirmed(b) < window) {
			char id[32];
			struct bus_message m = {.exchange = "",
			                        .routing_key = "bench.bus",
			                        .message_id = id,
			                        .body = body,
			                        .len = sizeof(body)};
			snprintf(id, sizeof(id), "b-%zu", sent);
			bus_publish(b, &m, sent++);
		}
		bus_poll(b, 1, &h);
	}
	t0 = now_s() - t0;
	bus_close(b);
	return (double)n / t0;
}

static double
consume_run(const char *url, size_t n)
{
	struct ctr k = {0};
	struct bus_handlers h = {on_delivery, NULL, &k};
	struct bus *b = open_bus(url, "bench.bus");
	double t0 = now_s();
	k.bus = b;
	while (k.delivered < n)
		bus_poll(b, 10, &h);
	t0 = now_s() - t0;
	bus_close(b);
	return (double)n / t0;
}

int
main(int argc, char **argv)
{
	size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 50000;
	double pipelined, naive, consume;

	if (argc < 2) {
		fprintf(stderr, "usage: bus_bench AMQP_URL [N]\n");
		return 2;
	}
	log_init("bus_bench", LOG_WARN);
	pipelined = publish_run(argv[1], n, 1000);
	consume = consume_run(argv[1], n);
	naive = publish_run(argv[1], n / 20, 1);
	consume_run(argv[1], n / 20);
	printf("%-44s %12s\n", "persistent, durable queue, 200-byte body",
	       "msg/s");
	printf("%-44s %12.0f\n", "publish + confirms, 1000 in flight",
	       pipelined);
	printf("%-44s %12.0f\n", "publish, wait for each confirm (naive)",
	       naive);
	printf("%-44s %12.0f\n", "consume + ack (multiple every 50)", consume);
	return 0;
}

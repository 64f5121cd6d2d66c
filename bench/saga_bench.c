/* saga_bench -- end-to-end saga throughput and latency: publishes
 * order.created events (card orders that complete) and times each one
 * until its order.completed arrives on order_events.
 *
 *   saga_bench --amqp URL --count N [--rate R | --window W] [--label L]
 *              [--prefix P] [--purge QUEUE]... [--publish-only | --wait-only]
 *
 * --rate R: open loop, order i is sent at t0 + i/R whatever the replies do
 * (latency at a fixed offered load, counted from that scheduled time, so
 * a late send is not hidden); otherwise closed loop with at most W
 * orders in flight (default 400), for the maximum throughput.
 * Needs the orchestrator and the participants running (bench/run starts
 * them). Prints one human line and one "RESULT" line for scripts:
 *   RESULT label offered_per_s completed_per_s p50_ms p99_ms max_ms failed
 *
 * Saga ids are "<prefix><index>" (default prefix: unique per run).
 * --purge QUEUE empties a queue first (with --count 0: and nothing else;
 * bench/run: the work queues a measurement left work in). Not a stream
 * such as audit: RabbitMQ refuses queue.purge on a stream by closing the
 * connection.
 * --publish-only: publishes the N orders (window W, paced by confirms),
 * waits for the broker's confirms and exits without waiting for sagas
 * (in-flight sagas for the growth measurements); --wait-only: publishes
 * nothing and waits for the completion of "<prefix>0".."<prefix>N-1"
 * (already published), printing the seconds it took:
 *   WAITED label seconds completed
 * --dump FILE: also writes each saga's line "SENT LATENCY_MS" (the
 * scheduled send time, seconds on the monotonic clock; -1000 if it never
 * completed), in send order: what a p99 is made of, over time (bench/README,
 * "Where the tail comes from").
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "envelope.h"
#include "log.h"

struct run {
	struct bus *bus;
	long n, done, failed, published;
	double *sent, *lat;
	char prefix[32];
	uint64_t last_ref;
	long unacked, confirmed;
};

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
on_event(void *arg, const struct bus_delivery *d)
{
	struct run *r = arg;
	size_t pl = strlen(r->prefix);

	/* the saga id is the correlation id: "<prefix><index>" */
	if (strncmp(d->correlation_id, r->prefix, pl) == 0) {
		long i = strtol(d->correlation_id + pl, NULL, 10);
		if (i >= 0 && i < r->n && r->lat[i] < 0) {
			r->lat[i] = now_s() - r->sent[i];
			r->done++;
			if (strcmp(d->type, "order.failed") == 0)
				r->failed++;
		}
	}
	r->last_ref = d->ref;
	if (++r->unacked >= 100) {
		bus_ack(r->bus, d->ref, true);
		r->unacked = 0;
	}
}

static void
on_confirm(void *arg, uint64_t tag, enum bus_confirm c)
{
	struct run *r = arg;
	(void)tag;
	(void)c;
	r->confirmed++;
}

/* Order i out; its latency counts from `at` (the open loop's schedule,
 * so a late send is not hidden) or, when at < 0, from now. */
static int
publish(struct run *r, long i, double at)
{
	struct envelope e;
	struct value items, it, ship;
	char id[64], *body = NULL;
	size_t len;
	int rc = -1;

	envelope_init(&e);
	snprintf(id, sizeof(id), "%s%ld", r->prefix, i);
	snprintf(e.id, sizeof(e.id), "created-%s", id);
	snprintf(e.saga, sizeof(e.saga), "%s", id);
	snprintf(e.type, sizeof(e.type), "order.created");
	e.ts = (int64_t)time(NULL) * 1000;
	value_set_array(&items);
	value_set_map(&it);
	value_map_put_str(&it, "sku", i % 2 ? "sku-1" : "sku-2");
	value_map_put_int(&it, "quantity", 1);
	value_map_put_int(&it, "unit_price_cents", 1999);
	value_array_push(&items, &it);
	value_set_map(&ship);
	value_map_put_str(&ship, "country", i % 3 ? "india" : "france");
	value_map_put_str(&ship, "city", "Pune");
	if (value_map_put_str(&e.payload, "order_id", id) ||
	    value_map_put_str(&e.payload, "customer_id", "bench") ||
	    value_map_put(&e.payload, "items", &items) ||
	    value_map_put_int(&e.payload, "total_cents", 1999) ||
	    value_map_put_str(&e.payload, "currency", "EUR") ||
	    value_map_put_str(&e.payload, "payment_method", "card") ||
	    value_map_put_str(&e.payload, "card_token", "tok_visa") ||
	    value_map_put(&e.payload, "ship_to", &ship) ||
	    value_map_put_str(&e.payload, "category", "books"))
		goto out;
	if (envelope_encode(&e, &body, &len) != 0)
		goto out;
	{
		struct bus_message m = {.exchange = "order_events",
		                        .routing_key = "order.created",
		                        .message_id = e.id,
		                        .correlation_id = id,
		                        .type = "order.created",
		                        .body = body,
		                        .len = len};
		r->sent[i] = at >= 0 ? at : now_s();
		rc = bus_publish(r->bus, &m, (uint64_t)i);
	}
	r->published++;
out:
	free(body);
	envelope_clear(&e);
	return rc;
}

static void
run_free(struct run *r)
{
	bus_close(r->bus);
	free(r->sent);
	free(r->lat);
}

/* --publish-only: every order out and confirmed, nothing waited for. */
static int
publish_all(struct run *r, long window, const char *label)
{
	struct bus_handlers h = {NULL, on_confirm, r};
	double t0 = now_s();
	long next = 0;

	while (r->confirmed < r->n && now_s() < t0 + 600) {
		while (next < r->n && next - r->confirmed < window)
			publish(r, next++, -1);
		bus_poll(r->bus, 5, &h);
	}
	printf("PUBLISHED %s %ld %.2f\n", label, r->confirmed, now_s() - t0);
	run_free(r);
	return r->confirmed == r->n ? 0 : 1;
}

/* --wait-only: until every saga of the prefix has finished. */
static int
wait_all(struct run *r, const char *label)
{
	struct bus_handlers h = {on_event, NULL, r};
	double t0 = now_s();

	for (long i = 0; i < r->n; i++)
		r->sent[i] = t0;
	while (r->done < r->n && now_s() < t0 + 1800)
		bus_poll(r->bus, 50, &h);
	if (r->unacked > 0)
		bus_ack(r->bus, r->last_ref, true);
	bus_flush(r->bus, 2000, &h);
	printf("WAITED %s %.2f %ld\n", label, now_s() - t0, r->done);
	run_free(r);
	return r->done == r->n ? 0 : 1;
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* What the command line asks for. */
struct args {
	const char *url, *label, *prefix, *dump, *purge[16];
	size_t npurge;
	bool publish_only, wait_only;
	double rate;
	long n, window;
};

static const char usage[] =
        "usage: saga_bench --amqp URL --count N [--rate R | --window W] "
        "[--label L] [--prefix P] [--purge Q]... [--publish-only | "
        "--wait-only] [--dump FILE]\n";

/* 0, or 2 (the exit status) after saying what is wrong. */
static int
parse_args(int argc, char **argv, struct args *a)
{
	static const struct option opts[] = {
	        {"amqp", required_argument, NULL, 'a'},
	        {"count", required_argument, NULL, 'n'},
	        {"rate", required_argument, NULL, 'r'},
	        {"window", required_argument, NULL, 'w'},
	        {"label", required_argument, NULL, 'l'},
	        {"prefix", required_argument, NULL, 'P'},
	        {"purge", required_argument, NULL, 'u'},
	        {"publish-only", no_argument, NULL, 'o'},
	        {"wait-only", no_argument, NULL, 'W'},
	        {"dump", required_argument, NULL, 'd'},
	        {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			a->url = optarg;
			break;
		case 'n':
			a->n = atol(optarg);
			break;
		case 'r':
			a->rate = atof(optarg);
			break;
		case 'w':
			a->window = atol(optarg);
			break;
		case 'l':
			a->label = optarg;
			break;
		case 'P':
			a->prefix = optarg;
			break;
		case 'u':
			if (a->npurge < sizeof(a->purge) / sizeof(a->purge[0]))
				a->purge[a->npurge++] = optarg;
			break;
		case 'o':
			a->publish_only = true;
			break;
		case 'W':
			a->wait_only = true;
			break;
		case 'd':
			a->dump = optarg;
			break;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	if (a->url == NULL || a->n < 0 || (a->n == 0 && a->npurge == 0) ||
	    a->window <= 0 || a->rate < 0) {
		fprintf(stderr,
		        "saga_bench: need --amqp URL and --count N > 0\n");
		return 2;
	}
	return 0;
}

/* Connected, the queues purged, every latency unset; 1 on failure. */
static int
run_start(struct run *r, const struct args *a)
{
	static const struct bus_exchange ex[] = {
	        {"order_events", "topic", NULL, NULL}};
	static const struct bus_queue q[] = {{.name = "bench.done"}};
	static const struct bus_binding bd[] = {
	        {"order_events", "bench.done", NULL, "order.completed"},
	        {"order_events", "bench.done", NULL, "order.failed"},
	};
	static const struct bus_topology topo = {ex, 1, q, 1, bd, 2};
	static const char *consume[] = {"bench.done"};
	struct bus_config cfg = {.url = a->url,
	                         .name = "saga-bench",
	                         .prefetch = 1000,
	                         .topology = &topo,
	                         .consume = consume,
	                         .nconsume = 1};
	char err[512] = "out of memory";
	uint32_t purged;

	r->n = a->n;
	r->sent = calloc((size_t)r->n + 1, sizeof(double));
	r->lat = malloc(((size_t)r->n + 1) * sizeof(double));
	if (r->sent != NULL && r->lat != NULL)
		r->bus = bus_open(&cfg, err, sizeof(err));
	if (r->bus == NULL || bus_connect(r->bus, err, sizeof(err)) != 0) {
		fprintf(stderr, "saga_bench: %s\n", err);
		run_free(r);
		return 1;
	}
	for (long i = 0; i < r->n; i++)
		r->lat[i] = -1;
	if (a->prefix != NULL)
		snprintf(r->prefix, sizeof(r->prefix), "%s", a->prefix);
	else
		snprintf(r->prefix, sizeof(r->prefix), "b%lx-%d-",
		         (long)time(NULL), (int)getpid());
	if (!a->wait_only)
		bus_queue_purge(r->bus, "bench.done", &purged);
	for (size_t i = 0; i < a->npurge; i++)
		if (bus_queue_purge(r->bus, a->purge[i], &purged) != 0)
			fprintf(stderr, "saga_bench: cannot purge %s\n",
			        a->purge[i]);
	return 0;
}

/* How long to poll: until the open loop's next order is due. */
static int
poll_wait(const struct run *r, double rate, double t0, long next)
{
	double due;

	if (rate <= 0 || next >= r->n)
		return 5;
	due = t0 + (double)next / rate - now_s();
	return due <= 0 ? 0 : due < 0.005 ? (int)ceil(due * 1000) : 5;
}

/* The measured run, open or closed loop; its length in seconds. */
static double
timed_run(struct run *r, double rate, long window)
{
	struct bus_handlers h = {on_event, on_confirm, r};
	double t0 = now_s(), t_end;
	double deadline = t0 + 120 + (rate > 0 ? (double)r->n / rate : 0);
	long next = 0;

	while (r->done < r->n && now_s() < deadline) {
		if (rate > 0) {
			double now = now_s();
			while (next < r->n && t0 + (double)next / rate <= now) {
				publish(r, next, t0 + (double)next / rate);
				next++;
			}
		} else {
			while (next < r->n && next - r->done < window)
				publish(r, next++, -1);
		}
		bus_poll(r->bus, poll_wait(r, rate, t0, next), &h);
	}
	t_end = now_s();
	if (r->unacked > 0)
		bus_ack(r->bus, r->last_ref, true);
	bus_flush(r->bus, 2000, &h);
	return t_end - t0;
}

/* --dump: every saga's send time and latency, before report sorts them. */
static int
dump(const struct run *r, const char *path)
{
	FILE *f = fopen(path, "w");

	if (f != NULL) {
		for (long i = 0; i < r->n; i++)
			fprintf(f, "%.4f %.2f\n", r->sent[i],
			        r->lat[i] * 1000.0);
		if (fclose(f) == 0)
			return 0;
	}
	fprintf(stderr, "saga_bench: cannot write %s: %s\n", path,
	        strerror(errno));
	return -1;
}

/* The human line and the RESULT line (the latencies sorted in place). */
static void
report(struct run *r, const char *label, double rate, double elapsed)
{
	long k = 0;

	for (long i = 0; i < r->n; i++)
		if (r->lat[i] >= 0)
			r->lat[k++] = r->lat[i] * 1000.0;
	qsort(r->lat, (size_t)k, sizeof(double), cmp);
	double p50 = k ? r->lat[(size_t)(0.50 * (double)(k - 1))] : NAN;
	double p99 = k ? r->lat[(size_t)(0.99 * (double)(k - 1))] : NAN;
	double mx = k ? r->lat[k - 1] : NAN;
	double thr = (double)r->done / elapsed;
	printf("%s: %ld/%ld sagas in %.2f s = %.0f/s; latency p50 %.1f "
	       "ms, p99 %.1f ms, max %.1f ms; %ld failed\n",
	       label, r->done, r->n, elapsed, thr, p50, p99, mx, r->failed);
	printf("RESULT %s %.0f %.1f %.1f %.1f %.1f %ld\n", label, rate, thr,
	       p50, p99, mx, r->failed + (r->n - r->done));
}

int
main(int argc, char **argv)
{
	struct args a = {
	        .url = getenv("SAGA_AMQP_URL"), .label = "run", .window = 400};
	struct run r = {0};
	int rc = parse_args(argc, argv, &a);

	if (rc != 0)
		return rc;
	log_init("saga_bench", LOG_WARN);
	if (run_start(&r, &a) != 0)
		return 1;
	if (r.n == 0) { /* --count 0: only the purges */
		run_free(&r);
		return 0;
	}
	if (a.publish_only)
		return publish_all(&r, a.window, a.label);
	if (a.wait_only)
		return wait_all(&r, a.label);
	double elapsed = timed_run(&r, a.rate, a.window);
	rc = a.dump != NULL && dump(&r, a.dump) != 0 ? 1 : 0;
	report(&r, a.label, a.rate, elapsed);
	if (r.done != r.n)
		rc = 1;
	run_free(&r);
	return rc;
}

/* demo-orders -- publishes a mix of orders as order.created events and
 * prints how each one ended, from the domain events on order_events.
 *
 *   demo-orders --amqp URL [--count N] [--timeout SECONDS]
 *
 * The mix: card orders, cash on delivery under and over the 500.00 limit,
 * a declined card (token tok_decline), a sku out of stock (sku-rare),
 * and a country nobody ships to
 * (atlantis). Exit status 0 when every order reached a final event.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "array.h"
#include "bus.h"
#include "envelope.h"
#include "log.h"
#include "number.h"

#define MAXN 1000

struct order {
	char id[32];
	const char *scenario;
	char outcome[32];
	char events[256];
};

struct demo {
	struct bus *bus;
	struct order o[MAXN];
	size_t n, done;
};

static void
on_event(void *arg, const struct bus_delivery *d)
{
	struct demo *m = arg;
	struct envelope e;
	char err[256];
	envelope_init(&e);
	if (envelope_decode(d->body, d->len, &e, err, sizeof(err)) == 0) {
		for (size_t i = 0; i < m->n; i++) {
			struct order *o = &m->o[i];
			size_t l;
			if (strcmp(o->id, e.saga) != 0)
				continue;
			l = strlen(o->events);
			snprintf(o->events + l, sizeof(o->events) - l, "%s%s",
			         l ? " " : "", e.type + 6);
			if ((strcmp(e.type, "order.completed") == 0 ||
			     strcmp(e.type, "order.failed") == 0) &&
			    o->outcome[0] == '\0') {
				snprintf(o->outcome, sizeof(o->outcome), "%s",
				         e.type + 6);
				m->done++;
			}
		}
	}
	envelope_clear(&e);
	bus_ack(m->bus, d->ref, false);
}

/* The mix, one order after another: card orders (the first three cost
 * more each time round), then cash on delivery under and over the limit,
 * a declined card, a sku out of stock, a country nobody ships to, and a
 * card order to Japan. */
static const struct scenario {
	const char *name, *method;
	int64_t cents;
	bool per_order; /* cents grow by 100 with the order's number */
	const char *token, *sku, *country;
} mix[] = {
        {"card", "card", 2500, true, "tok_ok", "sku-book", "india"},
        {"card", "card", 2500, true, "tok_ok", "sku-book", "india"},
        {"card", "card", 2500, true, "tok_ok", "sku-book", "india"},
        {"cash on delivery", "cod", 4200, false, "", "sku-book", "france"},
        {"cod over the limit", "cod", 90000, false, "", "sku-book", "france"},
        {"card declined", "card", 3100, false, "tok_decline", "sku-book",
         "india"},
        {"out of stock", "card", 1200, false, "tok_ok", "sku-rare", "india"},
        {"unserved country", "card", 1800, false, "tok_ok", "sku-book",
         "atlantis"},
        {"card", "card", 990, false, "tok_ok", "sku-pen", "japan"},
};

/* The order.created of order o (number i) in e; 0, or -1 out of memory. */
static int
order_envelope(struct envelope *e, const struct order *o,
               const struct scenario *sc, long i)
{
	struct value items = VALUE_NIL_INIT, item = VALUE_NIL_INIT,
	             ship = VALUE_NIL_INIT;
	int64_t cents = sc->cents + (sc->per_order ? 100 * i : 0);
	int rc = 0;

	snprintf(e->id, sizeof(e->id), "created-%s", o->id);
	snprintf(e->saga, sizeof(e->saga), "%s", o->id);
	snprintf(e->type, sizeof(e->type), "order.created");
	e->ts = (int64_t)time(NULL) * 1000;
	rc |= value_map_put_str(&e->payload, "order_id", o->id);
	rc |= value_map_put_str(&e->payload, "customer_id", "cust-7");
	rc |= value_map_put_int(&e->payload, "total_cents", cents);
	rc |= value_map_put_str(&e->payload, "currency", "EUR");
	rc |= value_map_put_str(&e->payload, "payment_method", sc->method);
	rc |= value_map_put_str(&e->payload, "card_token", sc->token);
	rc |= value_map_put_str(&e->payload, "category", "books");
	value_set_map(&item);
	rc |= value_map_put_str(&item, "sku", sc->sku);
	rc |= value_map_put_int(&item, "quantity", 1);
	rc |= value_map_put_int(&item, "unit_price_cents", cents);
	value_set_array(&items);
	rc |= value_array_push(&items, &item);
	rc |= value_map_put(&e->payload, "items", &items);
	value_set_map(&ship);
	rc |= value_map_put_str(&ship, "country", sc->country);
	rc |= value_map_put(&e->payload, "ship_to", &ship);
	value_clear(&item);
	value_clear(&items);
	value_clear(&ship);
	return rc != 0 ? -1 : 0;
}

/* Publishes order number i of the mix. 0, or -1 after a message. */
static int
post(struct demo *m, struct order *o, long i)
{
	const struct scenario *sc = &mix[(size_t)i % ARRAY_LEN(mix)];
	struct envelope e;
	char *body = NULL;
	size_t len = 0;
	int rc = -1;

	o->scenario = sc->name;
	envelope_init(&e);
	if (order_envelope(&e, o, sc, i) == 0 &&
	    envelope_encode(&e, &body, &len) == 0) {
		struct bus_message msg = {.exchange = "order_events",
		                          .routing_key = "order.created",
		                          .message_id = e.id,
		                          .correlation_id = e.saga,
		                          .type = e.type,
		                          .body = body,
		                          .len = len};
		rc = bus_publish(m->bus, &msg, 0);
		if (rc != 0)
			fprintf(stderr, "demo-orders: cannot publish %s\n",
			        o->id);
	} else {
		fprintf(stderr, "demo-orders: out of memory\n");
	}
	free(body);
	envelope_clear(&e);
	return rc;
}

/* A number flag in [1, max] into *out; 0, or 2 after a message. */
static int
number_flag(const char *flag, const char *arg, long max, long *out)
{
	long long v;

	if (number_parse(arg, 1, max, &v) != 0) {
		fprintf(stderr,
		        "demo-orders: %s wants a number from 1 to %ld, "
		        "not \"%s\"\n",
		        flag, max, arg);
		return 2;
	}
	*out = (long)v;
	return 0;
}

/* The flags; 0 to go on, else the exit status. */
static int
parse_flags(int argc, char **argv, const char **url, long *count, long *timeout)
{
	static const struct option opts[] = {
	        {"amqp", required_argument, NULL, 'a'},
	        {"count", required_argument, NULL, 'n'},
	        {"timeout", required_argument, NULL, 't'},
	        {NULL, 0, NULL, 0},
	};
	int c, rc = 0;

	while (rc == 0 && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			*url = optarg;
			break;
		case 'n':
			rc = number_flag("--count", optarg, MAXN, count);
			break;
		case 't':
			rc = number_flag("--timeout", optarg, 86400, timeout);
			break;
		default:
			rc = 2;
		}
	}
	if (rc == 0 && optind != argc) {
		fprintf(stderr, "demo-orders: unexpected argument \"%s\"\n",
		        argv[optind]);
		rc = 2;
	}
	if (rc != 0)
		fprintf(stderr, "usage: demo-orders --amqp URL [--count N] "
		                "[--timeout S]\n");
	return rc;
}

/* Each order's outcome and events, then the totals. */
static void
report(const struct demo *m)
{
	int completed = 0;

	printf("%-16s %-20s %-10s %s\n", "ORDER", "SCENARIO", "OUTCOME",
	       "EVENTS");
	for (size_t i = 0; i < m->n; i++) {
		printf("%-16s %-20s %-10s %s\n", m->o[i].id, m->o[i].scenario,
		       m->o[i].outcome[0] ? m->o[i].outcome : "(pending)",
		       m->o[i].events);
		completed += strcmp(m->o[i].outcome, "completed") == 0;
	}
	printf("\n%zu orders: %d completed, %zu failed, %zu without an "
	       "outcome\n",
	       m->n, completed, m->done - (size_t)completed, m->n - m->done);
}

int
main(int argc, char **argv)
{
	static const struct bus_exchange ex[] = {
	        {"order_events", "topic", NULL, NULL}};
	static const struct bus_queue q[] = {{.name = "demo.events"}};
	static const struct bus_binding bd[] = {
	        {"order_events", "demo.events", NULL, "order.*"}};
	static const struct bus_topology t = {ex, 1, q, 1, bd, 1};
	static const char *consume[] = {"demo.events"};
	static struct demo m;
	struct bus_config cfg = {.url = getenv("SAGA_AMQP_URL"),
	                         .name = "demo-orders",
	                         .topology = &t,
	                         .consume = consume,
	                         .nconsume = 1};
	struct bus_handlers h = {on_event, NULL, &m};
	long count = 9, timeout = 60;
	char err[512], tag[16];
	time_t start;
	int rc = parse_flags(argc, argv, &cfg.url, &count, &timeout);

	if (rc != 0)
		return rc;
	log_init("demo-orders", LOG_WARN);
	m.bus = bus_open(&cfg, err, sizeof(err));
	if (m.bus == NULL || bus_connect(m.bus, err, sizeof(err)) != 0) {
		fprintf(stderr, "demo-orders: %s\n", err);
		bus_close(m.bus);
		return 1;
	}
	snprintf(tag, sizeof(tag), "%04lx", (long)(time(NULL) & 0xffff));
	for (long i = 0; i < count; i++) {
		struct order *o = &m.o[m.n++];
		snprintf(o->id, sizeof(o->id), "ord-%s-%03ld", tag, i);
		if (post(&m, o, i) != 0)
			m.n--; /* never sent: no outcome to wait for */
	}
	bus_flush(m.bus, 10000, &h);
	start = time(NULL);
	while (m.done < m.n && time(NULL) - start < timeout)
		bus_poll(m.bus, 200, &h);
	report(&m);
	bus_close(m.bus);
	return m.done == m.n && m.n == (size_t)count ? 0 : 1;
}

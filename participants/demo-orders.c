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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus.h"
#include "envelope.h"
#include "log.h"

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

static void
post(struct demo *m, struct order *o, const char *method, int64_t cents,
     const char *token, const char *sku, const char *country)
{
	struct envelope e;
	struct value items, item, ship;
	char *body;
	size_t len;

	envelope_init(&e);
	snprintf(e.id, sizeof(e.id), "created-%s", o->id);
	snprintf(e.saga, sizeof(e.saga), "%s", o->id);
	snprintf(e.type, sizeof(e.type), "order.created");
	e.ts = (int64_t)time(NULL) * 1000;
	value_map_put_str(&e.payload, "order_id", o->id);
	value_map_put_str(&e.payload, "customer_id", "cust-7");
	value_map_put_int(&e.payload, "total_cents", cents);
	value_map_put_str(&e.payload, "currency", "EUR");
	value_map_put_str(&e.payload, "payment_method", method);
	value_map_put_str(&e.payload, "card_token", token);
	value_map_put_str(&e.payload, "category", "books");
	value_set_map(&item);
	value_map_put_str(&item, "sku", sku);
	value_map_put_int(&item, "quantity", 1);
	value_map_put_int(&item, "unit_price_cents", cents);
	value_set_array(&items);
	value_array_push(&items, &item);
	value_map_put(&e.payload, "items", &items);
	value_set_map(&ship);
	value_map_put_str(&ship, "country", country);
	value_map_put(&e.payload, "ship_to", &ship);
	if (envelope_encode(&e, &body, &len) == 0) {
		struct bus_message msg = {.exchange = "order_events",
		                          .routing_key = "order.created",
		                          .message_id = e.id,
		                          .correlation_id = e.saga,
		                          .type = e.type,
		                          .body = body,
		                          .len = len};
		bus_publish(m->bus, &msg, 0);
		free(body);
	}
	envelope_clear(&e);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"amqp", required_argument, NULL, 'a'},
	        {"count", required_argument, NULL, 'n'},
	        {"timeout", required_argument, NULL, 't'},
	        {NULL, 0, NULL, 0},
	};
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
	int c, completed = 0;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			cfg.url = optarg;
			break;
		case 'n':
			count = atol(optarg);
			break;
		case 't':
			timeout = atol(optarg);
			break;
		default:
			fprintf(stderr,
			        "usage: demo-orders --amqp URL [--count "
			        "N] [--timeout S]\n");
			return 2;
		}
	}
	if (count < 1 || count > MAXN) {
		fprintf(stderr, "demo-orders: --count must be 1..%d\n", MAXN);
		return 2;
	}
	log_init("demo-orders", LOG_WARN);
	m.bus = bus_open(&cfg, err, sizeof(err));
	if (m.bus == NULL || bus_connect(m.bus, err, sizeof(err)) != 0) {
		fprintf(stderr, "demo-orders: %s\n", err);
		return 1;
	}
	snprintf(tag, sizeof(tag), "%04lx", (long)(time(NULL) & 0xffff));
	for (long i = 0; i < count; i++) {
		struct order *o = &m.o[m.n++];
		snprintf(o->id, sizeof(o->id), "ord-%s-%03ld", tag, i);
		switch (i % 9) {
		case 0:
		case 1:
		case 2:
			o->scenario = "card";
			post(&m, o, "card", 2500 + 100 * i, "tok_ok",
			     "sku-book", "india");
			break;
		case 3:
			o->scenario = "cash on delivery";
			post(&m, o, "cod", 4200, "", "sku-book", "france");
			break;
		case 4:
			o->scenario = "cod over the limit";
			post(&m, o, "cod", 90000, "", "sku-book", "france");
			break;
		case 5:
			o->scenario = "card declined";
			post(&m, o, "card", 3100, "tok_decline", "sku-book",
			     "india");
			break;
		case 6:
			o->scenario = "out of stock";
			post(&m, o, "card", 1200, "tok_ok", "sku-rare",
			     "india");
			break;
		case 7:
			o->scenario = "unserved country";
			post(&m, o, "card", 1800, "tok_ok", "sku-book",
			     "atlantis");
			break;
		default:
			o->scenario = "card";
			post(&m, o, "card", 990, "tok_ok", "sku-pen", "japan");
			break;
		}
	}
	bus_flush(m.bus, 10000, &h);
	start = time(NULL);
	while (m.done < m.n && time(NULL) - start < timeout)
		bus_poll(m.bus, 200, &h);
	printf("%-16s %-20s %-10s %s\n", "ORDER", "SCENARIO", "OUTCOME",
	       "EVENTS");
	for (size_t i = 0; i < m.n; i++) {
		printf("%-16s %-20s %-10s %s\n", m.o[i].id, m.o[i].scenario,
		       m.o[i].outcome[0] ? m.o[i].outcome : "(pending)",
		       m.o[i].events);
		completed += strcmp(m.o[i].outcome, "completed") == 0;
	}
	printf("\n%zu orders: %d completed, %zu failed, %zu without an "
	       "outcome\n",
	       m.n, completed, m.done - (size_t)completed, m.n - m.done);
	bus_close(m.bus);
	return m.done == m.n ? 0 : 1;
}

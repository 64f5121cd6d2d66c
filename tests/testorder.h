/* testorder.h -- the order.created event the tests send: a card order
 * of one item, as order-api would publish it, with the fields the
 * statecharts read. A test sets what it varies and leaves the rest.
 *
 *   struct envelope e;
 *   testorder_envelope(&e, &(struct testorder){.id = "ord-1"});
 *   testorder_publish(bus, &e, NULL);     (order_events, order.created)
 *   envelope_clear(&e);
 */
#ifndef SAGA_TESTORDER_H
#define SAGA_TESTORDER_H

#include <stdint.h>

#include "bus.h"
#include "envelope.h"

struct testorder {
	const char *id;         /* the order's and the saga's id (required) */
	const char *msgid;      /* the envelope's id; NULL: "created-<id>" */
	const char *customer;   /* NULL: "c-1" */
	const char *method;     /* payment_method; NULL: "card" */
	const char *card_token; /* NULL: "tok_ok" (the fake payment's yes) */
	const char *sku;        /* the one item, quantity 1; NULL: "sku-1" */
	const char *country;    /* ship_to.country; NULL: "india" */
	const char *chart;      /* the statechart to run; NULL: the default */
	int64_t total_cents;    /* 0: 1999 */
	int64_t ts;             /* the envelope's time (ms); 0: 1 */
};

/* Initialises e and fills it; the caller envelope_clear()s it. */
void testorder_envelope(struct envelope *e, const struct testorder *o);

/* Where testorder_publish sends, and how; NULL: order_events,
 * routing key "order.created", the AMQP timestamp now, tag 0. */
struct testorder_route {
	const char *exchange, *routing_key;
	int64_t timestamp_ms;
	uint64_t tag;
};

/* Encodes e and publishes it (persistent, correlation id the saga);
 * 0, or -1 when it cannot be encoded or published. */
int testorder_publish(struct bus *b, const struct envelope *e,
                      const struct testorder_route *r);

#endif

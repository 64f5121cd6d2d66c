/* testorder.c -- the tests' order.created (testorder.h). */
#include "testorder.h"

#include <stdio.h>
#include <stdlib.h>

#define OR(v, dflt) ((v) != NULL ? (v) : (dflt))

void
testorder_envelope(struct envelope *e, const struct testorder *o)
{
	struct value items, item, ship;

	envelope_init(e);
	if (o->msgid != NULL)
		snprintf(e->id, sizeof(e->id), "%s", o->msgid);
	else
		snprintf(e->id, sizeof(e->id), "created-%s", o->id);
	snprintf(e->saga, sizeof(e->saga), "%s", o->id);
	snprintf(e->type, sizeof(e->type), "order.created");
	e->ts = o->ts != 0 ? o->ts : 1;
	if (o->chart != NULL)
		value_map_put_str(&e->payload, "chart", o->chart);
	value_map_put_str(&e->payload, "order_id", o->id);
	value_map_put_str(&e->payload, "customer_id", OR(o->customer, "c-1"));
	value_map_put_int(&e->payload, "total_cents",
	                  o->total_cents != 0 ? o->total_cents : 1999);
	value_map_put_str(&e->payload, "currency", "EUR");
	value_map_put_str(&e->payload, "payment_method", OR(o->method, "card"));
	value_map_put_str(&e->payload, "card_token",
	                  OR(o->card_token, "tok_ok"));
	value_map_put_str(&e->payload, "category", "books");
	value_set_map(&item);
	value_map_put_str(&item, "sku", OR(o->sku, "sku-1"));
	value_map_put_int(&item, "quantity", 1);
	value_set_array(&items);
	value_array_push(&items, &item);
	value_map_put(&e->payload, "items", &items);
	value_set_map(&ship);
	value_map_put_str(&ship, "country", OR(o->country, "india"));
	value_map_put(&e->payload, "ship_to", &ship);
}

int
testorder_publish(struct bus *b, const struct envelope *e,
                  const struct testorder_route *r)
{
	static const struct testorder_route dflt = {"order_events",
	                                            "order.created", 0, 0};
	struct bus_message m = {0};
	char *body = NULL;
	size_t len;
	int rc;

	if (r == NULL)
		r = &dflt;
	if (envelope_encode(e, &body, &len) != 0)
		return -1;
	m.exchange = r->exchange;
	m.routing_key = r->routing_key;
	m.message_id = e->id;
	m.correlation_id = e->saga;
	m.type = e->type;
	m.timestamp_ms = r->timestamp_ms;
	m.body = body;
	m.len = len;
	rc = bus_publish(b, &m, r->tag) == 0 ? 0 : -1;
	free(body);
	return rc;
}

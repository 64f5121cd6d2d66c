/* An order as order-api takes it (participants/common/order.h): a good
 * order becomes the order.created payload with its total; each rule
 * broken names the field at fault and the reason, and leaves the payload
 * NIL. fuzz_order holds the parser to "never a crash"; this holds it to
 * its answers. */
#include <stdio.h>
#include <string.h>

#include "order.h"
#include "testutil.h"

#define ITEM "{\"sku\":\"sku-1\",\"quantity\":2,\"unit_price_cents\":1999}"

/* A card order with `extra` spliced in after the customer (each test's
 * own fields, later ones winning is not JSON: duplicates are refused, so
 * the base leaves out what a test sets). */
static void
order_json(char *buf, size_t cap, const char *items, const char *pay,
           const char *ship, const char *extra)
{
	snprintf(buf, cap,
	         "{\"customer_id\":\"c-1\",\"currency\":\"EUR\",%s"
	         "\"items\":%s,%s,\"ship_to\":%s}",
	         extra, items, pay, ship);
}

static const char card[] =
        "\"payment_method\":\"card\",\"card_token\":\"tok_1\"";
static const char india[] = "{\"country\":\"india\",\"city\":\"Pune\"}";

static void
test_good_order(void)
{
	char buf[1024], field[128], why[256];
	struct value p = VALUE_NIL_INIT;
	const struct value *v;

	order_json(buf, sizeof(buf), "[" ITEM "," ITEM "]", card, india,
	           "\"category\":\"books\",");
	CHECK_MSG(order_parse(buf, strlen(buf), "ord-1", &p, field,
	                      sizeof(field), why, sizeof(why)) == 0,
	          "%s: %s", field, why);
	CHECK(p.type == VALUE_MAP);
	v = value_map_get(&p, "total_cents");
	CHECK(v != NULL && v->type == VALUE_INT && v->u.i == 2 * 2 * 1999);
	v = value_map_get(&p, "items");
	CHECK(v != NULL && v->type == VALUE_ARRAY && v->u.a.len == 2);
	v = value_map_get(&p, "ship_to");
	CHECK(v != NULL && v->type == VALUE_MAP && v->u.m.len == 2);
	CHECK_STR(value_map_get(&p, "order_id")->u.s.ptr, "ord-1");
	CHECK_STR(value_map_get(&p, "card_token")->u.s.ptr, "tok_1");
	CHECK_STR(value_map_get(&p, "category")->u.s.ptr, "books");
	value_clear(&p);

	/* cash on delivery: no token kept; category defaults */
	order_json(buf, sizeof(buf), "[" ITEM "]", "\"payment_method\":\"cod\"",
	           india, "");
	CHECK(order_parse(buf, strlen(buf), "ord-2", &p, field, sizeof(field),
	                  why, sizeof(why)) == 0);
	CHECK(value_map_get(&p, "card_token") == NULL);
	CHECK_STR(value_map_get(&p, "category")->u.s.ptr, "general");
	value_clear(&p);
}

/* body must be refused with field `f` and a reason starting `w`. */
static void
refused(const char *body, const char *f, const char *w)
{
	char field[128], why[256];
	struct value p = VALUE_NIL_INIT;
	int rc = order_parse(body, strlen(body), "ord-x", &p, field,
	                     sizeof(field), why, sizeof(why));

	CHECK_MSG(rc == -1, "accepted: %s", body);
	if (rc != -1) {
		value_clear(&p);
		return;
	}
	CHECK_MSG(strcmp(field, f) == 0, "field \"%s\", want \"%s\" (%s)",
	          field, f, body);
	CHECK_MSG(strncmp(why, w, strlen(w)) == 0, "why \"%s\", want \"%s\"",
	          why, w);
	CHECK(p.type == VALUE_NIL);
}

static void
test_each_rule(void)
{
	char b[1024];
	const char *one = "[" ITEM "]";

	refused("[1]", "", "the body must be a JSON object");
	refused("{\"a\":1,\"a\":2}", "", "invalid JSON");
	snprintf(b, sizeof(b), "{\"items\":%s,%s,\"ship_to\":%s}", one, card,
	         india);
	refused(b, "customer_id", "required: a string of 1-200 bytes");
	order_json(b, sizeof(b), one, "\"payment_method\":\"cash\"", india, "");
	refused(b, "payment_method", "required: \"card\" or \"cod\"");
	order_json(b, sizeof(b), one, "\"payment_method\":\"card\"", india, "");
	refused(b, "card_token", "required for card payments");
	order_json(b, sizeof(b), one, card, "\"india\"", "");
	refused(b, "ship_to", "required: an object with a country");
	order_json(b, sizeof(b), one, card, "{\"country\":\"In dia\"}", "");
	refused(b, "ship_to.country", "required: 1-64 of [a-z0-9_-]");
	order_json(b, sizeof(b), one, card,
	           "{\"country\":\"india\",\"city\":\"\"}", "");
	refused(b, "ship_to.city", "must be a string of 1-500 bytes");
	order_json(b, sizeof(b), one, card, india, "\"category\":\"Books\",");
	refused(b, "category", "1-64 of [a-z0-9_-]");
	order_json(b, sizeof(b), "[]", card, india, "");
	refused(b, "items", "required: a list of 1-100 items");
	order_json(b, sizeof(b), "[" ITEM ",3]", card, india, "");
	refused(b, "items[1]", "must be an object");
	order_json(b, sizeof(b), "[{\"quantity\":1,\"unit_price_cents\":1}]",
	           card, india, "");
	refused(b, "items[0].sku", "required: a string of 1-200 bytes");
	order_json(b, sizeof(b),
	           "[{\"sku\":\"s\",\"quantity\":0,\"unit_price_cents\":1}]",
	           card, india, "");
	refused(b, "items[0].quantity", "required: an integer 1-10000");
	order_json(b, sizeof(b),
	           "[{\"sku\":\"s\",\"quantity\":1,\"unit_price_cents\":-1}]",
	           card, india, "");
	refused(b, "items[0].unit_price_cents",
	        "required: an integer 0-100000000");
	snprintf(b, sizeof(b),
	         "{\"customer_id\":\"c-1\",\"currency\":\"EURO\",\"items\":%s,"
	         "%s,\"ship_to\":%s}",
	         one, card, india);
	refused(b, "currency", "required: a 3-letter code such as EUR");
}

int
main(void)
{
	RUN(test_good_order);
	RUN(test_each_rule);
	return check_summary();
}

/* order.c -- see order.h. */
#include "order.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define MAX_ITEMS 100

static bool
key_safe(const char *s)
{
	size_t n = strlen(s);
	return n >= 1 && n <= 64 &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

static bool
text_ok(const json_t *j, size_t max)
{
	return json_is_string(j) && json_string_length(j) >= 1 &&
	       json_string_length(j) <= max &&
	       strlen(json_string_value(j)) == json_string_length(j);
}

/* Builds the order's payload; on a bad field returns -1 with the field
 * name and the reason. */
static int
build_order(json_t *o, const char *order_id, struct value *p, char *field,
            size_t fcap, const char **why)
{
	const json_t *items = json_object_get(o, "items");
	json_t *ship = json_object_get(o, "ship_to");
	const json_t *pm = json_object_get(o, "payment_method");
	const json_t *cat = json_object_get(o, "category");
	const char *method;
	struct value arr, shipv;
	int64_t total = 0;
	size_t i;
	const char *k;
	json_t *v;

#define BAD(f, w)                                                              \
	do {                                                                   \
		snprintf(field, fcap, "%s", f);                                \
		*why = w;                                                      \
		return -1;                                                     \
	} while (0)
	if (!json_is_object(o))
		BAD("", "the body must be a JSON object");
	if (!text_ok(json_object_get(o, "customer_id"), 200))
		BAD("customer_id", "required: a string of 1-200 bytes");
	if (!text_ok(json_object_get(o, "currency"), 3) ||
	    json_string_length(json_object_get(o, "currency")) != 3)
		BAD("currency", "required: a 3-letter code such as EUR");
	if (!json_is_string(pm) ||
	    (strcmp(json_string_value(pm), "card") != 0 &&
	     strcmp(json_string_value(pm), "cod") != 0))
		BAD("payment_method", "required: \"card\" or \"cod\"");
	method = json_string_value(pm);
	if (strcmp(method, "card") == 0 &&
	    !text_ok(json_object_get(o, "card_token"), 200))
		BAD("card_token", "required for card payments");
	if (!json_is_object(ship))
		BAD("ship_to", "required: an object with a country");
	if (!json_is_string(json_object_get(ship, "country")) ||
	    !key_safe(json_string_value(json_object_get(ship, "country"))))
		BAD("ship_to.country", "required: 1-64 of [a-z0-9_-]");
	if (cat != NULL &&
	    (!json_is_string(cat) || !key_safe(json_string_value(cat))))
		BAD("category", "1-64 of [a-z0-9_-]");
	if (!json_is_array(items) || json_array_size(items) == 0 ||
	    json_array_size(items) > MAX_ITEMS)
		BAD("items", "required: a list of 1-100 items");
	json_object_foreach(ship, k, v)
	{
		if (!text_ok(v, 500)) {
			snprintf(field, fcap, "ship_to.%.100s", k);
			*why = "must be a string of 1-500 bytes";
			return -1;
		}
	}
	value_set_array(&arr);
	for (i = 0; i < json_array_size(items); i++) {
		const json_t *it = json_array_get(items, i);
		const json_t *sku = json_object_get(it, "sku");
		const json_t *q = json_object_get(it, "quantity");
		const json_t *pr = json_object_get(it, "unit_price_cents");
		struct value item;
		const char *f = NULL, *w = NULL;
		if (!json_is_object(it))
			f = "", w = "must be an object";
		else if (!text_ok(sku, 200))
			f = ".sku", w = "required: a string of 1-200 bytes";
		else if (!json_is_integer(q) || json_integer_value(q) < 1 ||
		         json_integer_value(q) > 10000)
			f = ".quantity", w = "required: an integer 1-10000";
		else if (!json_is_integer(pr) || json_integer_value(pr) < 0 ||
		         json_integer_value(pr) > 100000000)
			f = ".unit_price_cents",
			w = "required: an integer 0-100000000";
		if (f != NULL) {
			value_clear(&arr);
			snprintf(field, fcap, "items[%zu]%s", i, f);
			*why = w;
			return -1;
		}
		total += json_integer_value(q) * json_integer_value(pr);
		value_set_map(&item);
		if (value_map_put_str(&item, "sku", json_string_value(sku)) ||
		    value_map_put_int(&item, "quantity",
		                      json_integer_value(q)) ||
		    value_map_put_int(&item, "unit_price_cents",
		                      json_integer_value(pr)) ||
		    value_array_push(&arr, &item)) {
			value_clear(&item);
			value_clear(&arr);
			BAD("", "out of memory");
		}
	}
	value_set_map(&shipv);
	json_object_foreach(ship, k, v)
	{
		value_map_put_str(&shipv, k, json_string_value(v));
	}
	value_set_map(p);
	if (value_map_put_str(p, "order_id", order_id) ||
	    value_map_put_str(
	            p, "customer_id",
	            json_string_value(json_object_get(o, "customer_id"))) ||
	    value_map_put(p, "items", &arr) ||
	    value_map_put_int(p, "total_cents", total) ||
	    value_map_put_str(
	            p, "currency",
	            json_string_value(json_object_get(o, "currency"))) ||
	    value_map_put_str(p, "payment_method", method) ||
	    (strcmp(method, "card") == 0 &&
	     value_map_put_str(
	             p, "card_token",
	             json_string_value(json_object_get(o, "card_token")))) ||
	    value_map_put(p, "ship_to", &shipv) ||
	    value_map_put_str(p, "category",
	                      cat != NULL ? json_string_value(cat)
	                                  : "general")) {
		value_clear(p);
		BAD("", "out of memory");
	}
#undef BAD
	return 0;
}

int
order_parse(const char *buf, size_t len, const char *order_id,
            struct value *out, char *field, size_t fcap, char *why,
            size_t whylen)
{
	json_error_t jerr;
	const char *w = NULL;
	json_t *j;
	int rc;

	value_set_nil(out);
	j = json_loadb(buf != NULL ? buf : "", len, JSON_REJECT_DUPLICATES,
	               &jerr);
	if (j == NULL) {
		snprintf(field, fcap, "%s", "");
		snprintf(why, whylen, "invalid JSON at line %d column %d: %s",
		         jerr.line, jerr.column, jerr.text);
		return -1;
	}
	rc = build_order(j, order_id, out, field, fcap, &w);
	json_decref(j);
	if (rc != 0) {
		value_clear(out);
		snprintf(why, whylen, "%s", w != NULL ? w : "invalid");
	}
	return rc;
}

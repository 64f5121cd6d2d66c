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

/* The field at fault and why; -1. */
static int
bad(char *field, size_t fcap, const char **why, const char *f, const char *w)
{
	snprintf(field, fcap, "%s", f);
	*why = w;
	return -1;
}

/* The order's own fields, before its items. */
static int
check_order(const json_t *o, char *field, size_t fcap, const char **why)
{
	const json_t *pm = json_object_get(o, "payment_method");
	const json_t *cat = json_object_get(o, "category");
	json_t *ship = json_object_get(o, "ship_to");
	const json_t *items = json_object_get(o, "items");
	const char *k;
	json_t *v;

	if (!text_ok(json_object_get(o, "customer_id"), 200))
		return bad(field, fcap, why, "customer_id",
		           "required: a string of 1-200 bytes");
	if (!text_ok(json_object_get(o, "currency"), 3) ||
	    json_string_length(json_object_get(o, "currency")) != 3)
		return bad(field, fcap, why, "currency",
		           "required: a 3-letter code such as EUR");
	if (!json_is_string(pm) ||
	    (strcmp(json_string_value(pm), "card") != 0 &&
	     strcmp(json_string_value(pm), "cod") != 0))
		return bad(field, fcap, why, "payment_method",
		           "required: \"card\" or \"cod\"");
	if (strcmp(json_string_value(pm), "card") == 0 &&
	    !text_ok(json_object_get(o, "card_token"), 200))
		return bad(field, fcap, why, "card_token",
		           "required for card payments");
	if (!json_is_object(ship))
		return bad(field, fcap, why, "ship_to",
		           "required: an object with a country");
	if (!json_is_string(json_object_get(ship, "country")) ||
	    !key_safe(json_string_value(json_object_get(ship, "country"))))
		return bad(field, fcap, why, "ship_to.country",
		           "required: 1-64 of [a-z0-9_-]");
	if (cat != NULL &&
	    (!json_is_string(cat) || !key_safe(json_string_value(cat))))
		return bad(field, fcap, why, "category", "1-64 of [a-z0-9_-]");
	if (!json_is_array(items) || json_array_size(items) == 0 ||
	    json_array_size(items) > MAX_ITEMS)
		return bad(field, fcap, why, "items",
		           "required: a list of 1-100 items");
	json_object_foreach(ship, k, v)
	{
		if (!text_ok(v, 500)) {
			snprintf(field, fcap, "ship_to.%.100s", k);
			*why = "must be a string of 1-500 bytes";
			return -1;
		}
	}
	return 0;
}

/* What is wrong with item i ("" if nothing): the field's suffix in *f. */
static const char *
item_fault(const json_t *it, const char **f)
{
	const json_t *q = json_object_get(it, "quantity");
	const json_t *pr = json_object_get(it, "unit_price_cents");

	*f = "";
	if (!json_is_object(it))
		return "must be an object";
	*f = ".sku";
	if (!text_ok(json_object_get(it, "sku"), 200))
		return "required: a string of 1-200 bytes";
	*f = ".quantity";
	if (!json_is_integer(q) || json_integer_value(q) < 1 ||
	    json_integer_value(q) > 10000)
		return "required: an integer 1-10000";
	*f = ".unit_price_cents";
	if (!json_is_integer(pr) || json_integer_value(pr) < 0 ||
	    json_integer_value(pr) > 100000000)
		return "required: an integer 0-100000000";
	return "";
}

/* The items, checked, as a value array (arr set even on failure, to be
 * cleared), and their total. */
static int
build_items(const json_t *items, struct value *arr, int64_t *total, char *field,
            size_t fcap, const char **why)
{
	value_set_array(arr);
	*total = 0;
	for (size_t i = 0; i < json_array_size(items); i++) {
		const json_t *it = json_array_get(items, i);
		const char *f, *w = item_fault(it, &f);
		int64_t q, pr;
		struct value item;
		if (*w != '\0') {
			snprintf(field, fcap, "items[%zu]%s", i, f);
			*why = w;
			return -1;
		}
		q = json_integer_value(json_object_get(it, "quantity"));
		pr = json_integer_value(
		        json_object_get(it, "unit_price_cents"));
		*total += q * pr;
		value_set_map(&item);
		if (value_map_put_str(
		            &item, "sku",
		            json_string_value(json_object_get(it, "sku"))) ||
		    value_map_put_int(&item, "quantity", q) ||
		    value_map_put_int(&item, "unit_price_cents", pr) ||
		    value_array_push(arr, &item)) {
			value_clear(&item);
			return bad(field, fcap, why, "", "out of memory");
		}
	}
	return 0;
}

/* ship_to, checked already, as a value map (set even on failure). */
static int
build_ship(json_t *ship, struct value *out, char *field, size_t fcap,
           const char **why)
{
	const char *k;
	json_t *v;

	value_set_map(out);
	json_object_foreach(ship, k, v)
	{
		if (value_map_put_str(out, k, json_string_value(v)) != 0)
			return bad(field, fcap, why, "", "out of memory");
	}
	return 0;
}

/* Builds the order's payload; on a bad field returns -1 with the field
 * name and the reason. */
static int
build_order(json_t *o, const char *order_id, struct value *p, char *field,
            size_t fcap, const char **why)
{
	const json_t *cat = json_object_get(o, "category");
	const char *method;
	struct value arr = VALUE_NIL_INIT, shipv = VALUE_NIL_INIT;
	int64_t total = 0;

	if (!json_is_object(o))
		return bad(field, fcap, why, "",
		           "the body must be a JSON object");
	if (check_order(o, field, fcap, why) != 0)
		return -1;
	method = json_string_value(json_object_get(o, "payment_method"));
	if (build_items(json_object_get(o, "items"), &arr, &total, field, fcap,
	                why) != 0 ||
	    build_ship(json_object_get(o, "ship_to"), &shipv, field, fcap,
	               why) != 0) {
		value_clear(&arr);
		value_clear(&shipv);
		return -1;
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
		return bad(field, fcap, why, "", "out of memory");
	}
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

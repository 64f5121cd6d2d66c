/* order.h -- an order as posted to order-api: JSON in, the order.created
 * payload out, with every rule a shop needs checked.
 *
 *   {"customer_id": "c-1",
 *    "items": [{"sku": "sku-1", "quantity": 2, "unit_price_cents": 1999}],
 *    "currency": "EUR", "payment_method": "card" | "cod",
 *    "card_token": "tok_..."            (card only, required),
 *    "ship_to": {"country": "india", ...other string fields},
 *    "category": "electronics"}         (optional, default "general")
 *
 * Country and category become routing keys (shipping.<country>.<category>),
 * so they must be 1-64 of [a-z0-9_-]. 1-100 items, quantity 1-10000, unit
 * price 0-100000000 cents; total_cents is computed here. Duplicate JSON
 * keys are refused.
 *
 * Input from the network: any bytes give 0 or -1, never a crash (a
 * libFuzzer target, tests/fuzz/fuzz_order.c, holds it to that).
 */
#ifndef SAGA_ORDER_H
#define SAGA_ORDER_H

#include <stddef.h>

#include "value.h"

/* Parses buf[0..len) (not NUL-terminated; NULL with len 0 is fine) into
 * *out (a fresh map: order_id, customer_id, items, total_cents, currency,
 * payment_method, card_token for cards, ship_to, category). -1 with the
 * field at fault ("items[1].quantity", "" for the body as a whole) and
 * the reason; *out is then NIL. */
int order_parse(const char *buf, size_t len, const char *order_id,
                struct value *out, char *field, size_t fcap, char *why,
                size_t whylen);

#endif

/* fuzz_order -- libFuzzer target: any bytes as a POST /orders body through
 * order_parse give an order or a rejection naming a field, never a crash
 * or a leak; an accepted order always has a positive item count and a
 * non-negative total. */
#include <stdint.h>
#include <stdlib.h>

#include "order.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct value order;
	char field[160], why[256];

	if (order_parse((const char *)data, size, "ord-fuzz", &order, field,
	                sizeof(field), why, sizeof(why)) == 0) {
		const struct value *total =
		        value_map_get(&order, "total_cents");
		const struct value *items = value_map_get(&order, "items");
		if (total == NULL || total->type != VALUE_INT ||
		    total->u.i < 0 || items == NULL ||
		    items->type != VALUE_ARRAY || items->u.a.len == 0)
			abort();
		value_clear(&order);
	}
	return 0;
}

/* stockctl.h -- `sagactl stock`: change a running inventory's stock.
 *
 *   sagactl [--amqp URL] [--json] stock set SKU QUANTITY --reason TEXT
 *   sagactl [--amqp URL] [--json] stock add SKU DELTA --reason TEXT
 *
 * set: the sku's stock on hand becomes QUANTITY (what reservations hold
 * is not part of it); add: a restock (DELTA > 0) or an adjustment
 * (breakage, a recount: DELTA < 0). The request goes to inventory-svc
 * (exchange saga.admin, routing key inventory.stock: the deployment lets
 * only the operator user write there) as inventory.stock_set or
 * inventory.stock_add, and sagactl waits for the answer (lib/request.h):
 *
 *   sku-1: on hand 50 -> 80 (held by orders in flight: 2)
 *
 * Each change is a movement in inventory-svc's database with the actor
 * (the local user name) and the reason. A sku that does not exist yet is
 * created. On hand never goes below 0: such an `add` is refused.
 *
 * Exit status: 0 applied, 1 refused (the reason is printed) or no answer
 * (the broker or inventory-svc cannot be reached), 2 usage.
 */
#ifndef SAGA_STOCKCTL_H
#define SAGA_STOCKCTL_H

#include <stdbool.h>

#include "bus.h"

/* bc: the connection (url, TLS files); argv[0] is "set" or "add". */
int stockctl_main(const struct bus_config *bc, bool json, int argc,
                  char **argv);

#endif

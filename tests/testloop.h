/* testloop.h -- a durable loop's handler that stores nothing, for unit
 * tests of what sits around the loop (test_busloop, test_part_bus).
 *
 * testloop_handler fills every member a loop needs with a no-op: the
 * transaction begins and commits, nothing fails (error ""), every
 * delivery is DONE, the outbox is empty and deleting from it works. A
 * test then replaces the members it is about (apply, outbox_scan,
 * position, ...).
 */
#ifndef SAGA_TESTLOOP_H
#define SAGA_TESTLOOP_H

#include "durable.h"

void testloop_handler(struct durable_handler *h);

#endif

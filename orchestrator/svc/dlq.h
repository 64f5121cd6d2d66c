/* dlq.h -- `sagactl dlq`: the operator's view of the dead-letter queues.
 *
 *   sagactl [--amqp URL] [--json] dlq list [QUEUE...]
 *   sagactl [--amqp URL] [--json] dlq show QUEUE [--limit N]
 *   sagactl [--amqp URL] dlq replay QUEUE [--limit N] [--to QUEUE]
 *   sagactl [--amqp URL] dlq purge QUEUE --yes
 *
 * list: messages waiting in each dead-letter queue (by default every DLQ
 * the product declares; regional shipping instances' queues are named on
 * the command line, e.g. shipping.india.dlq).
 * show: the first N messages (default 20) with their id, saga, type, the
 * reason (x-saga-error, or the broker's x-death reason and queue) and the
 * body's size; the messages stay where they are (they are consumed without
 * an ack and given back in order when the connection closes).
 * replay: sends up to N messages (default all) back to the queue they
 * failed in — `Q` for `Q.dlq`, or the x-death queue for messages the broker
 * dead-lettered — each removed from the DLQ only after the broker confirms
 * the copy; they arrive as fresh deliveries (a new count of attempts) and
 * the consumer's dedup by message id makes a replay of something that did
 * succeed harmless.
 * purge: deletes every message (asks for --yes).
 *
 * Exit status: 0 done, 1 the broker refused or a queue does not exist,
 * 2 usage.
 */
#ifndef SAGA_DLQ_H
#define SAGA_DLQ_H

#include <stdbool.h>

#include "bus.h"

/* bc: the connection (url, TLS files). */
int dlq_main(const struct bus_config *bc, bool json, int argc, char **argv);

#endif

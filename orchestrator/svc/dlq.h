/* dlq.h -- `sagactl dlq`: the operator's view of the dead-letter queues.
 *
 *   sagactl [--amqp URL] [--json] dlq list [--mgmt-url URL] [QUEUE...]
 *   sagactl [--amqp URL] [--json] dlq show QUEUE [--limit N | --by-reason]
 *   sagactl [--amqp URL] dlq replay QUEUE [--limit N] [--to QUEUE]
 *   sagactl [--amqp URL] dlq replay QUEUE --group KEY --expect N [--to Q]
 *   sagactl [--amqp URL] dlq discard QUEUE --group KEY --expect N
 *   sagactl [--amqp URL] dlq purge QUEUE --yes
 *
 * list: every queue named *.dlq the broker has (regional shipping
 * instances' shipping.india.dlq included), found through the management
 * API (lib/mgmt.h) at --mgmt-url or SAGA_MGMT_URL, by default the AMQP
 * URL's host on port 15672 with its credentials; each with its depth now
 * (AMQP) and its consumers. With QUEUEs: only those.
 * show: the first N messages (default 20) with their id, saga, type, the
 * reason (x-saga-error, or the broker's x-death reason and queue) and the
 * body's size; --by-reason: the whole queue grouped by reason
 * (dlq_group.h), each group with its KEY, count, example and sagas. The
 * messages stay where they are (consumed without an ack and given back in
 * order when the connection closes).
 * replay: sends up to N messages (default all) back to the queue they
 * failed in — `Q` for `Q.dlq`, or the x-death queue for messages the broker
 * dead-lettered — each removed from the DLQ only after the broker confirms
 * the copy; they arrive as fresh deliveries (a new count of attempts) and
 * the consumer's dedup by message id makes a replay of something that did
 * succeed harmless. With --group: only that group's messages, and only if
 * it holds exactly N (--expect); the others stay, in order.
 * discard: drops a group's messages, on the same condition.
 * purge: deletes every message (asks for --yes).
 *
 * TLS: SAGA_AMQP_CA, SAGA_AMQP_CERT, SAGA_AMQP_KEY for the group actions.
 *
 * Exit status: 0 done, 1 the broker refused, a queue does not exist, the
 * management API cannot be asked, or a group's count changed; 2 usage.
 */
#ifndef SAGA_DLQ_H
#define SAGA_DLQ_H

#include <stdbool.h>

#include "bus.h"

/* bc: the connection (url, TLS files). */
int dlq_main(const struct bus_config *bc, bool json, int argc, char **argv);

#endif

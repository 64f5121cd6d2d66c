/* request.h -- one request over AMQP and its answer: what a command-line
 * client (sagactl) needs to act on a running daemon and hear how it went.
 *
 * request_call opens its own connection, declares a queue of its own
 * (exclusive to the connection, deleted with it: bus.h) bound to
 * saga.replies (declared by the daemons, never by a client) under its
 * own name, publishes the request with that name
 * as reply_to (mandatory, persistent, confirmed), and waits for the
 * envelope whose `re` is the request's id. Participants answer a command
 * on saga.replies with the command's reply_to as the routing key (the
 * participant framework's default), so any daemon's command can be asked
 * this way.
 *
 * The request's id makes it idempotent on the daemon's side (a daemon
 * that saw the id answers the stored answer again).
 *
 * Failure contract: 0 with the answer; -1 with the reason in err and
 * *answer cleared: the broker cannot be reached, nobody consumes the
 * routing key ("nobody takes inventory.stock: is inventory-svc
 * running?"), the broker did not confirm, or no answer within the
 * timeout (the request stays queued: the daemon carries it out when it
 * takes it).
 */
#ifndef SAGA_REQUEST_H
#define SAGA_REQUEST_H

#include <stddef.h>

#include "bus.h"
#include "envelope.h"

#define REQUEST_TIMEOUT_MS 10000
#define REQUEST_EXCHANGE   "saga.replies" /* where answers come */

struct request {
	const char *exchange;    /* where the request goes */
	const char *routing_key; /* its routing key */
	const char *server;      /* who should take it, for the error
	                          * ("inventory-svc") */
	int timeout_ms;          /* 0: REQUEST_TIMEOUT_MS */
};

/* bc: the connection (url, TLS files, name); its topology and consumers
 * are request_call's. req: id, saga, type and payload set by the caller
 * (ts is set here). */
int request_call(const struct bus_config *bc, const struct request *r,
                 const struct envelope *req, struct envelope *answer, char *err,
                 size_t errlen);

#endif

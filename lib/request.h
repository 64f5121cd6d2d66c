/* request.h -- requests over AMQP and their answers: what a command-line
 * client (sagactl) needs to act on a running daemon and hear how it went.
 *
 * A session opens its own connection, declares a queue of its own
 * (exclusive to the connection, deleted with it: bus.h) bound to
 * saga.replies (declared by the daemons, never by a client) under its
 * own name, and publishes each request with that name as reply_to
 * (mandatory, persistent, confirmed). Any number of requests may be in
 * flight; request_wait collects the envelopes whose `re` is a request's
 * id. Participants answer a command on saga.replies with the command's
 * reply_to as the routing key (the participant framework's default), and
 * the orchestrator answers operator requests the same way, so any
 * daemon's command can be asked this way.
 *
 * Every request carries the AMQP user_id of the connection's user (the
 * user of the first URL in bc->url): RabbitMQ refuses a publish whose
 * user_id is not the connection's own, so the daemon knows who asks
 * (the orchestrator checks it against its operator user).
 *
 * The request's id makes it idempotent on the daemon's side (a daemon
 * that saw the id answers again, or says it was handled before).
 *
 * Failure contract: a request has one result: answered (the envelope),
 * or an error: nobody consumes the routing key ("nobody takes
 * inventory.stock: is inventory-svc running?"), the broker did not
 * confirm it, or no answer within the timeout (the request stays
 * queued: the daemon carries it out when it takes it).
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
	int timeout_ms;          /* request_call only; 0: REQUEST_TIMEOUT_MS */
};

/* One request and its answer on a connection of its own. bc: the
 * connection (url, TLS files, name); its topology and consumers are
 * request_call's. req: id, saga, type and payload set by the caller (ts
 * is set here). 0 with *answer (the caller clears it); -1 with the reason
 * in err and *answer cleared. */
int request_call(const struct bus_config *bc, const struct request *r,
                 const struct envelope *req, struct envelope *answer, char *err,
                 size_t errlen);

/* ---- sessions: many requests in flight ---- */

struct request_session;

/* Connects (once: an error is final) and declares the answers queue.
 * NULL with the reason in err. */
struct request_session *request_open(const struct bus_config *bc, char *err,
                                     size_t errlen);

/* Publishes one request (req as for request_call; its id must be unique
 * in the session). Returns its index in the session (0, 1, ...), or -1
 * with the reason in err (invalid, out of memory): nothing was sent. */
long request_send(struct request_session *s, const struct request *r,
                  const struct envelope *req, char *err, size_t errlen);

/* A request's result: its answer or, when NULL, err says why there is
 * none. The answer is the session's (cleared by request_close); to keep
 * it, copy the struct and envelope_init(answer). */
typedef void (*request_result_fn)(void *arg, size_t index,
                                  struct envelope *answer, const char *err);

/* Waits until every request sent has its answer (or was returned as
 * unroutable), or timeout_ms (0: REQUEST_TIMEOUT_MS) pass, then calls fn
 * for each request in the order sent. Returns how many were answered.
 * Call once, after the last request_send. */
size_t request_wait(struct request_session *s, int timeout_ms,
                    request_result_fn fn, void *arg);

/* Closes the connection and frees everything. NULL is fine. */
void request_close(struct request_session *s);

#endif

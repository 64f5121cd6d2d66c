/* mgmt.h -- a small client of RabbitMQ's management HTTP API (the
 * rabbitmq_management plugin, port 15672 by default), for what AMQP
 * cannot tell: which queues a vhost has. Used by `sagactl dlq` and the
 * console's dead-letter pages to discover the dead-letter queues instead
 * of naming them (a regional shipping instance adds shipping.india.dlq
 * without telling anyone), and by the console to peek at their messages.
 *
 * The URL is http[s]://USER:PASS@HOST:PORT/ (a path prefix, e.g. behind a
 * proxy, is kept). The user needs the `management` tag (or `monitoring`,
 * which includes it) and read permission on the queues it peeks at.
 * mgmt_default_url derives one from an AMQP URL: the same host and
 * credentials, port 15672.
 *
 * Every call is one blocking HTTP request with libcurl (timeout
 * MGMT_TIMEOUT_MS) and may run on any thread (each makes its own curl
 * handle). Credentials never appear in an error message.
 *
 * Failure contract: -1 or NULL with the reason in err: cannot reach the
 * API, 401 (the user or its tags), 404 (no such vhost or queue), another
 * HTTP status, or an answer that is not the JSON expected.
 */
#ifndef SAGA_MGMT_H
#define SAGA_MGMT_H

#include <stddef.h>

#include <jansson.h>

#define MGMT_TIMEOUT_MS 5000
#define MGMT_PORT       15672

/* One queue as the API lists it. messages and consumers are the broker's
 * statistics, refreshed every 5 s (collect_statistics_interval): -1 when
 * the broker has not computed them yet (a queue just declared). */
struct mgmt_queue {
	char name[256];
	long messages, consumers;
};

/* The management URL for an AMQP URL (the first of a comma-separated
 * list): http://USER:PASS@HOST:15672/ with the AMQP URL's credentials.
 * 0, or -1 with the reason in err (a bad AMQP URL). */
int mgmt_default_url(const char *amqp_url, char *out, size_t cap, char *err,
                     size_t errlen);

/* "scheme://host:port/" of url, without credentials, for messages. */
void mgmt_redact(const char *url, char *buf, size_t cap);

/* Every queue of vhost ("/" when NULL), sorted by name, into *out
 * (malloc'd, caller frees) and *n. */
int mgmt_queues(const char *url, const char *vhost, struct mgmt_queue **out,
                size_t *n, char *err, size_t errlen);

/* Peeks at up to count messages from the head of queue: the API's
 * get-messages with ackmode ack_requeue_true, which takes them with
 * basic.get and gives them back. Side effects: each comes back with the
 * redelivered flag set (and, on a quorum queue, its delivery count one
 * higher); a classic queue keeps their order. Returns the API's array
 * (each element with properties{message_id, correlation_id, type,
 * timestamp, headers}, payload_bytes, redelivered); the caller
 * json_decrefs it. */
json_t *mgmt_peek(const char *url, const char *vhost, const char *queue,
                  long count, char *err, size_t errlen);

#endif

/* bus.h -- the AMQP bus: one connection to RabbitMQ (rabbitmq-c 0.11)
 * that declares a topology, publishes with publisher confirms, consumes
 * with manual acks, and survives the broker going away.
 *
 * Single-threaded and poll-driven: the owner calls bus_poll() in its loop
 * (at least every heartbeat interval); everything the broker sends —
 * deliveries, confirms, returns, blocked/unblocked, closes — is handled
 * inside it and handed to the caller through callbacks. rabbitmq-c 0.11
 * has no background thread, no confirm helper and no recovery
 * (NOTES-dependencies §1); this module supplies them:
 *
 * - Confirms: every publish is kept (a copy) until the broker acks it;
 *   acks and nacks with `multiple` and out of order are matched to the
 *   caller's 64-bit tags; a nacked message is published again; a message
 *   returned as unroutable (mandatory) is reported RETURNED when its ack
 *   comes, never ACK.
 * - Recovery: on a socket error, heartbeat timeout, connection.close or
 *   channel.close (e.g. 404 on publish, 320 forced close) the connection
 *   is dropped and rebuilt with exponential backoff and jitter, across the
 *   listed URLs in turn: login, confirm_select, the topology, qos, the
 *   consumers; then every unconfirmed message is published again. So
 *   nothing is lost and duplicates are possible: consumers dedup by
 *   message id.
 * - Deliveries carry a reference that names the connection they came on;
 *   acking a reference from before a reconnect does nothing (the broker
 *   has already requeued it; sending it would close the channel: 406).
 * - While the broker blocks the connection (memory or disk alarm),
 *   publishes are queued, not written, and reading goes on.
 *
 * Ownership: the bus copies what it keeps (messages, topology, URLs);
 * pointers handed to callbacks are valid only during the callback.
 *
 * Failure contract: functions returning int give 0 or -1; -1 from
 * bus_publish means the message was refused (too large, bad fields) and
 * is not kept; connection trouble is never an error to the caller, only a
 * state (bus_connected) and log lines — the bus keeps trying.
 */
#ifndef SAGA_BUS_H
#define SAGA_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- topology ---- */

struct bus_exchange {
	const char *name;
	const char *type;      /* direct, topic, fanout, x-consistent-hash */
	const char *alternate; /* alternate-exchange, or NULL */
	const char *hash_property; /* x-consistent-hash: hash this property
	                            * (message_id, correlation_id, timestamp)
	                            * instead of the routing key; or NULL */
};

struct bus_queue {
	const char *name;
	const char *dlx;        /* x-dead-letter-exchange ("" is the default
	                         * exchange), or NULL for none */
	const char *dlrk;       /* x-dead-letter-routing-key, or NULL */
	int64_t ttl_ms;         /* x-message-ttl, 0 for none */
	int64_t max_length;     /* x-max-length, 0 for none */
	const char *overflow;   /* x-overflow, or NULL */
	bool quorum;            /* x-queue-type=quorum */
	bool classic;           /* stays classic whatever queue_type says */
	int64_t delivery_limit; /* x-delivery-limit (quorum), 0 for none */
	/* A client's own queue (lib/request.h: where its answers come):
	 * exclusive to this connection, deleted when it closes, not durable,
	 * always classic. Declared again on a reconnect (empty: what came
	 * while the connection was down is lost). */
	bool exclusive;
	/* A RabbitMQ stream (x-queue-type=stream): an append-only log that
	 * consumers read from an offset without removing anything; never
	 * quorum, no dead-letter exchange, no TTL. Its retention: max_age
	 * (x-max-age, e.g. "7D", "12h"; NULL for none) and max_bytes
	 * (x-max-length-bytes, 0 for none). A policy (max-age,
	 * max-length-bytes) takes precedence over both in RabbitMQ 3.10+:
	 * that is how an operator changes an existing stream's retention. */
	bool stream;
	const char *max_age;
	int64_t max_bytes;
	/* Another daemon's queue this one only reads (e.g. the audit
	 * stream): declared passively, so it must exist (404 NOT_FOUND
	 * otherwise: the bus retries) and its arguments are the owner's. */
	bool passive;
	/* With passive: the queue need not exist (404 "no queue": nothing
	 * here waits for it), but one that exists must be running. One
	 * whose home node is "down or inaccessible" (a stream not started
	 * yet after a broker restart) is an error, and the bus retries. A
	 * publisher to order_events declares the audit stream so: until
	 * the stream runs, what it publishes is routed to the other queues
	 * and confirmed, but never reaches the stream. */
	bool if_exists;
	/* An existing queue's arguments win: declared with the arguments
	 * above, and when RabbitMQ refuses them as inequivalent (406) for
	 * any argument but x-queue-type, the queue is kept as it is (its
	 * retention, set when it was made or by an earlier flag) and the
	 * difference logged, the channel reopened. A queue of another type
	 * (a classic queue where a stream is declared) is a connection
	 * error naming the queue and what to do. RabbitMQ says which
	 * argument differs only in the close's text, which is parsed. */
	bool keep_existing;
};

/* queue binds queue to exchange; dest_exchange (instead of queue) binds
 * exchange to exchange. */
struct bus_binding {
	const char *exchange;
	const char *queue;
	const char *dest_exchange;
	const char *key;
};

struct bus_topology {
	const struct bus_exchange *exchanges;
	size_t nexchanges;
	const struct bus_queue *queues;
	size_t nqueues;
	const struct bus_binding *bindings;
	size_t nbindings;
};

/* Where a consumer of a stream starts (the x-stream-offset argument). */
enum bus_from {
	BUS_FROM_DEFAULT, /* no argument: a stream starts at "next" */
	BUS_FROM_FIRST,   /* the oldest message retained */
	BUS_FROM_NEXT,    /* only what is appended from now on */
	BUS_FROM_OFFSET,  /* at offset `value` (what a reader committed + 1) */
	BUS_FROM_TIME,    /* at the first chunk stored at or after `value`
	                   * ms since the epoch (RabbitMQ has seconds) */
};
struct bus_start {
	enum bus_from from;
	int64_t value;
};

/* ---- configuration ---- */

struct bus_config {
	const char *url;        /* amqp[s]://user:pass@host:port/vhost,
	                         * several comma-separated: tried in turn */
	const char *name;       /* for logs, e.g. "saga-orchestrator" */
	const char *ca_file;    /* amqps: the CA to verify the broker */
	const char *cert_file;  /* amqps: optional client certificate */
	const char *key_file;   /* amqps: its key */
	bool insecure;          /* amqps: do not verify (tests only) */
	int heartbeat_s;        /* 0: default 10 */
	int connect_timeout_ms; /* 0: default 5000 */
	int rpc_timeout_ms;     /* 0: default 15000 */
	uint16_t prefetch;      /* per consumer; 0: default 200 */
	size_t max_body;        /* deliveries larger are rejected; 0: 16 MiB */
	/* The queue type of the whole topology: NULL or "classic" (each
	 * queue as declared), or "quorum": every queue not marked classic is
	 * a quorum queue (replicated over the cluster's nodes), and those
	 * with a dead-letter exchange get x-delivery-limit = delivery_limit
	 * (0: default 20), so a message that keeps failing its consumer
	 * (a crash, a lost connection) is dead-lettered instead of being
	 * redelivered forever. Daemons take it from SAGA_QUEUE_TYPE. */
	const char *queue_type;
	int64_t delivery_limit;
	const struct bus_topology *topology; /* declared on every connect */
	const char *const *consume;          /* queues to consume */
	size_t nconsume;                     /* at most BUS_MAX_CONSUME */
	/* Called before each queue is consumed, on every (re)connect: where
	 * to start reading it, if it is a stream (out starts as
	 * BUS_FROM_DEFAULT). A reader that stores its offset returns the one
	 * after its last committed delivery, so a reconnect resumes where
	 * its work was committed, not where the broker last delivered. NULL:
	 * the default for every queue. */
	void (*start)(void *arg, const char *queue, struct bus_start *out);
	void *start_arg;
	/* A short-lived reader (one per console page view): its connect is
	 * logged at debug level, not info. Failures are logged as ever. */
	bool quiet;
};

/* The most queues one bus consumes. */
#define BUS_MAX_CONSUME 16

/* ---- messages ---- */

struct bus_message {
	const char *exchange; /* "" for the default exchange */
	const char *routing_key;
	const char *message_id; /* required */
	const char *correlation_id;
	const char *type;
	const char *reply_to;
	const char *traceparent;  /* header */
	const char *error;        /* header x-saga-error, or NULL */
	const char *content_type; /* NULL: application/msgpack */
	int64_t timestamp_ms;     /* 0: now (when first published) */
	/* The AMQP user_id property: who sends it. RabbitMQ refuses the
	 * publish (channel closed, 406 PRECONDITION_FAILED) unless it is the
	 * connection's user, so a consumer can trust it. NULL: none. */
	const char *user_id;
	bool mandatory;        /* report RETURNED if unroutable */
	bool transient;        /* delivery_mode 1 (default: persistent) */
	int64_t expiration_ms; /* per-message TTL, 0 for none */
	int64_t attempts;      /* header x-saga-attempts when > 0: failed
	                        * deliveries before this copy (a consumer
	                        * that retries one item of a bundle) */
	const void *body;
	size_t len;
};

/* A delivery's ref carries its connection's generation in bits 48..63,
 * and the bus never gives a connection this one: refs with these bits
 * are free for a caller's own handles (the orchestrator's bundle items),
 * never mistaken for a delivery's, however often the bus reconnects. */
#define BUS_REF_FOREIGN (UINT64_C(0x7fff) << 48)

/* The header carrying a message's publish time in milliseconds. */
#define BUS_HEADER_PUBLISHED_MS "x-published-ms"

struct bus_delivery {
	uint64_t ref; /* for bus_ack / bus_reject */
	const char *queue;
	const char *exchange;
	const char *routing_key;
	const char *message_id; /* "" when absent, likewise below */
	const char *correlation_id;
	const char *type;
	const char *reply_to;
	const char *content_type;
	const char *traceparent;
	const char *error; /* x-saga-error header */
	/* The user_id property: the publisher's broker user, validated by
	 * RabbitMQ ("" if it did not say; it cannot claim another) */
	const char *user_id;
	/* When it was first published (a resend keeps it), ms since the
	 * epoch; 0 if the publisher did not say. AMQP timestamps have whole
	 * seconds, so the bus also sends the header x-published-ms: with it
	 * (agreeing with the timestamp's second) this is to the ms; without
	 * it, the second's start. */
	int64_t timestamp_ms;
	bool redelivered;
	long rejected_count;     /* x-death count for this queue, reasons
	                          * rejected and delivery_limit */
	long attempts;           /* header x-saga-attempts (0 if absent or
	                          * out of range): add rejected_count */
	bool republished;        /* the publisher sent it again after losing the
	                          * connection or a nack (header x-republished):
	                          * an earlier copy may have been routed */
	const char *death_queue; /* x-first-death-queue: where it was first
	                          * dead-lettered from ("" if never) */
	const char *death_reason; /* x-first-death-reason */
	int64_t stream_offset;    /* from a stream: the message's offset
	                           * (header x-stream-offset); -1 otherwise */
	const void *body;
	size_t len;
};

enum bus_confirm {
	BUS_ACK,      /* the broker has the message */
	BUS_RETURNED, /* unroutable: no queue was bound to take it */
};

struct bus_handlers {
	void (*on_delivery)(void *arg, const struct bus_delivery *d);
	void (*on_confirm)(void *arg, uint64_t tag, enum bus_confirm c);
	void *arg;
};

struct bus_stats {
	uint64_t published, confirmed, returned, nacked, republished;
	uint64_t delivered, reconnects, oversize;
	/* reads that waited and found nothing: a quiet bus_poll(b, T) costs
	 * one or two, whatever T (it sleeps; it does not spin) */
	uint64_t idle_reads;
	/* when this connection's topology was declared (every binding in
	 * place), before it started consuming: ms since the epoch, 0 before
	 * the first connection */
	int64_t declared_ms;
};

struct bus;

/* Validates the configuration (URLs, TLS files) and makes a bus; it
 * connects on the first bus_poll (or bus_connect). NULL with the reason in
 * err for a bad configuration. */
struct bus *bus_open(const struct bus_config *cfg, char *err, size_t errlen);

/* Tries to connect now (once). 0 when connected; -1 with the reason in
 * err (the bus still retries from bus_poll). */
int bus_connect(struct bus *b, char *err, size_t errlen);

/* Queues a message for publishing (written at once when connected and
 * not blocked) and keeps a copy until the broker confirms it; `tag` comes
 * back through on_confirm. -1 (nothing kept) if the message is invalid. */
int bus_publish(struct bus *b, const struct bus_message *m, uint64_t tag);

/* Whether bus_publish can ever take m: its message id, exchange and
 * routing key set, its body within the bus's max_body, its names within
 * AMQP's 255 bytes. A message that fails it fails every time; a publish
 * of one that passes fails only for want of memory. */
bool bus_message_fits(const struct bus *b, const struct bus_message *m);
/* The largest body the bus publishes or takes (bus_config.max_body). */
size_t bus_max_body(const struct bus *b);

/* The longest wait between two connection attempts (the backoff doubles
 * from 100 ms up to this, with +-25% jitter). It bounds how long after a
 * broker's return every daemon is back: a connect to a broker that is
 * down costs one refused TCP handshake, so 2 s is cheap (it was 10 s,
 * which alone made sagas wait up to 10 s after a broker restart). */
#define BUS_RECONNECT_MAX_MS 2000

/* Waits up to timeout_ms for traffic and handles it (and reconnects when
 * needed), calling the handlers. Returns the number of deliveries and
 * confirms handed over. Never fails: connection trouble is retried. */
int bus_poll(struct bus *b, int timeout_ms, const struct bus_handlers *h);

/* Settles a delivery. multiple: also every earlier unsettled delivery of
 * the same connection. A ref from before a reconnect is ignored (0).
 * The ack is noted and sent before the bus next reads (bus_poll,
 * bus_flush, bus_cancel, bus_close), coalesced with its neighbours into
 * one `ack multiple` when every earlier delivery is settled. */
int bus_ack(struct bus *b, uint64_t ref, bool multiple);
/* requeue false: dead-lettered (or dropped if the queue has no DLX). */
int bus_reject(struct bus *b, uint64_t ref, bool requeue);

/* Polls until every published message is confirmed or timeout_ms pass.
 * 0 when nothing is left unconfirmed, -1 on timeout. */
int bus_flush(struct bus *b, int timeout_ms, const struct bus_handlers *h);

/* Stops consuming (cancels the consumers; in-flight deliveries still
 * arrive and can be acked). */
int bus_cancel(struct bus *b);

/* Messages kept until confirmed (queued or in flight). */
size_t bus_unconfirmed(const struct bus *b);
bool bus_connected(const struct bus *b);
bool bus_blocked(const struct bus *b);
const struct bus_stats *bus_stats(const struct bus *b);

/* Passive declare: messages ready and consumers of a queue. -1 if the
 * queue does not exist or the bus is not connected. */
int bus_queue_info(struct bus *b, const char *queue, uint32_t *messages,
                   uint32_t *consumers);
/* Removes a queue's binding now, and from the topology declared on
 * every reconnect. 0, or -1 when not connected or refused. */
int bus_unbind(struct bus *b, const char *exchange, const char *queue,
               const char *key);
/* Deletes a queue (only if it is empty when if_empty). */
int bus_queue_delete(struct bus *b, const char *queue, bool if_empty);
/* Deletes every message of a queue; *n gets how many. */
int bus_queue_purge(struct bus *b, const char *queue, uint32_t *n);

/* basic.get one message from a queue (not consumed by this bus): calls
 * fn with it and acks it if fn returns 1, requeues it if 0. *got false if
 * the queue was empty. */
int bus_get(struct bus *b, const char *queue,
            int (*fn)(void *arg, const struct bus_delivery *d), void *arg,
            bool *got);

/* Closes the connection and frees everything; unconfirmed messages are
 * dropped (call bus_flush first). NULL is fine. */
void bus_close(struct bus *b);

/* ---- URLs ---- */

struct bus_url {
	bool tls;
	char user[128], password[128], host[256], vhost[128];
	int port;
};

/* Parses one amqp:// or amqps:// URL with rabbitmq-c's amqp_parse_url
 * (user/password default guest, port 5672 or 5671, vhost "" or missing ->
 * "/", %-escapes decoded: ASCII ones only, %00 to %7f). A host is
 * required; query parameters are not supported. -1 with the reason in err
 * ("bad AMQP URL: ..." naming the part that is wrong). */
int bus_url_parse(const char *url, struct bus_url *out, char *err,
                  size_t errlen);
/* The URL without its password, for logs: amqp://user:***@host:port/vh */
void bus_url_redact(const char *url, char *buf, size_t cap);

#endif

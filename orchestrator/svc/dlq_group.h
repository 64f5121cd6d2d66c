/* dlq_group.h -- dead letters grouped by reason, and the operator's
 * actions on one group: what `sagactl dlq` and the console's /dlq pages
 * share.
 *
 * Dead-letter queues are the queues whose name ends in ".dlq" (every
 * participant's Q.dlq, orchestrator.dlq, and whatever a new instance
 * declares, e.g. shipping.india.dlq): dlq_discover asks the broker's
 * management API (lib/mgmt.h) for them, so no list is kept here.
 *
 * Grouping. A message's reason is its x-saga-error header (the copy a
 * participant or the orchestrator made says why), or else the broker's
 * x-first-death reason and queue ("rejected by the broker in Q"). The
 * group is the reason normalised so that what differs from one message to
 * the next does not split it: every word that holds a digit (ids, counts,
 * amounts, timestamps: "ord-7f3a", "12.50", "2026-12-05") becomes "#", and
 * runs of blanks become one. "unknown sku SKU-17 in order ord-4" and
 * "unknown sku SKU-9 in order ord-81" are one group, "unknown sku #
 * in order #": one fix serves it. (A word without a digit, e.g. a hex id
 * "deadbeef", stays: such groups split; said here as the known limit.)
 * A group's key is the first 12 hex digits of the FNV-1a hash of that
 * text (stable across runs and hosts: a key printed by `dlq show
 * --by-reason` works in `dlq replay --group` later).
 *
 * Actions (dlq_group_act) work over AMQP, the one way to take some
 * messages of a queue and leave the rest: every message of the queue is
 * consumed without an ack; if the group does not hold exactly `expect`
 * of them, nothing is done (the operator decided on a count that is no
 * longer true); else each message of the group is replayed (a copy
 * published to the queue it failed in, and acked once the broker has
 * confirmed the copy) or discarded (acked), and the connection closes,
 * which gives every other message back to the queue in its order (a
 * classic queue keeps the order of what is returned).
 */
#ifndef SAGA_DLQ_GROUP_H
#define SAGA_DLQ_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct bus_delivery;

#define DLQ_KEY_LEN 12 /* hex digits of a group's key */
#define DLQ_ACT_MAX                                                            \
	65535             /* the most messages a queue may hold for an         \
	                   * action (AMQP prefetch is 16 bits: every           \
	                   * message is held unacked at once) */
#define DLQ_PEEK_MAX 1000 /* the most messages the console looks at */

/* One dead letter as the operator sees it. */
struct dlq_msg {
	char id[256], saga[256], type[128];
	char reason[512]; /* as the message says it */
	char from[256];   /* the queue it failed in, "" if it does not say */
	char key[DLQ_KEY_LEN + 1];
	long attempts;        /* failed deliveries before it came here */
	int64_t published_ms; /* its first publish, 0 if unknown */
	size_t bytes;
};

/* reason normalised (see above) into out, at most cap bytes. */
void dlq_normalise(const char *reason, char *out, size_t cap);

/* Fill m from an AMQP delivery, or from one element of the management
 * API's get-messages answer; both set the key. Never fail (what is
 * missing is left empty). */
void dlq_msg_from_delivery(struct dlq_msg *m, const struct bus_delivery *d);
void dlq_msg_from_mgmt(struct dlq_msg *m, const json_t *msg);

/* The groups of m[0..n): an array, largest first (ties: the first seen
 * first), of {"key", "reason" (normalised), "example" (the first
 * message's reason), "count", "from" (the queues they failed in),
 * "types", "sagas" (distinct correlation ids, in queue order, at most
 * DLQ_SAGAS_MAX, "sagas_more" counts the rest)}. NULL: out of memory. */
#define DLQ_SAGAS_MAX 100
json_t *dlq_groups_json(const struct dlq_msg *m, size_t n);

/* The messages m[0..n) as an array of {"message_id", "saga", "type",
 * "reason", "key", "from", "attempts", "published_ms", "age_ms",
 * "bytes"} (age from now_ms; -1 when the time is unknown). NULL: out of
 * memory. */
json_t *dlq_msgs_json(const struct dlq_msg *m, size_t n, int64_t now_ms);

/* The dead-letter queues of vhost through the management API at
 * mgmt_url: {"queues": [{"queue", "messages", "consumers"}]} sorted by
 * name (messages and consumers are the broker's statistics, up to 5 s
 * old; -1 before it has any). NULL with the reason in err. */
json_t *dlq_discover(const char *mgmt_url, const char *vhost, char *err,
                     size_t errlen);

/* The first `max` messages of queue through the management API (a peek:
 * mgmt_peek's side effects) into *out (malloc'd, caller frees) and *n.
 * 0, or -1 with the reason in err. */
int dlq_peek(const char *mgmt_url, const char *vhost, const char *queue,
             long max, struct dlq_msg **out, size_t *n, char *err,
             size_t errlen);

/* Where a replayed message goes: `to` if given, else the queue it failed
 * in (m->from), else the dead-letter queue's name without ".dlq". false
 * when none of these says. */
bool dlq_origin(const struct dlq_msg *m, const char *dlq, const char *to,
                char *buf, size_t cap);

/* ---- over AMQP ---- */

enum dlq_action { DLQ_SHOW, DLQ_REPLAY, DLQ_DISCARD };

struct dlq_act {
	const char *amqp; /* the operator's broker URL */
	const char *ca_file, *cert_file, *key_file; /* amqps, or NULL */
	const char *queue;                          /* the dead-letter queue */
	/* DLQ_SHOW: read every message (nothing changes; key, expect
	 * unused). DLQ_REPLAY, DLQ_DISCARD: the group `key`, only if it
	 * holds `expect` messages. */
	enum dlq_action action;
	const char *key;
	long expect;
	const char *to; /* replay: the target queue instead of the origin */
};

struct dlq_act_result {
	struct dlq_msg *msgs; /* every message seen, in queue order (malloc'd:
	                       * dlq_act_result_clear frees) */
	size_t n;
	long group;   /* how many were in the group */
	long done;    /* replayed (confirmed) or discarded */
	bool refused; /* the group did not hold `expect`: nothing done */
};

/* Runs a on the broker. 0 when done (or for DLQ_SHOW, read); 1 when
 * refused because the group's count changed (err says from what to
 * what; nothing was changed); -1 with the reason in err (no broker, no
 * queue, more than DLQ_ACT_MAX messages, messages taken by another
 * consumer, a replay the broker returned as unroutable: what was not
 * confirmed stays in the queue). r is filled in every case. */
int dlq_group_act(const struct dlq_act *a, struct dlq_act_result *r, char *err,
                  size_t errlen);

/* The copy a replay publishes of dead letter m to the queue `target`
 * (dlq_origin): m's id, saga and type, and from the delivery it came in
 * (d) its reply_to, traceparent, content type and body (borrowed: bm
 * points into d). Stamped now, because an operator's replay is a new
 * publish (a shard refuses an order published before it joined the
 * ring), and mandatory: an unroutable copy comes back and the original
 * stays in the dead-letter queue. */
struct bus_message;
void dlq_replay_message(struct bus_message *bm, const struct dlq_msg *m,
                        const char *target, const struct bus_delivery *d);
void dlq_act_result_clear(struct dlq_act_result *r);

#endif

/* dlq.c -- `sagactl dlq` (dlq.h is its manual). */
#include "clock.h"
#include "dlq.h"

#include <errno.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus.h"
#include "envelope.h"
#include "jsonout.h"

#define SHOW_MAX 1000

static const char *const known[] = {
        "orchestrator.dlq",         "inventory.commands.dlq",
        "payment.card.dlq",         "payment.cod.dlq",
        "shipping.default.dlq",     "notification.events.dlq",
        "notification.confirm.dlq",
};

struct seen {
	char id[256], saga[256], type[128], reason[512], from[256];
	size_t len;
};

struct dlq {
	struct bus *bus;
	const char *queue, *to;
	long want;
	struct seen *seen;
	long nseen, published, confirmed;
	int failed;
};

/* The connection's TLS files (dlq_main's bus_config). */
static const struct bus_config *tls;

static struct bus *
connect_to(const char *amqp, const char *queue, uint16_t prefetch)
{
	const char *consume[1] = {queue};
	struct bus_config c = {.url = amqp,
	                       .name = "sagactl",
	                       .ca_file = tls != NULL ? tls->ca_file : NULL,
	                       .cert_file = tls != NULL ? tls->cert_file : NULL,
	                       .key_file = tls != NULL ? tls->key_file : NULL,
	                       .prefetch = prefetch,
	                       .consume = queue != NULL ? consume : NULL,
	                       .nconsume = queue != NULL ? 1 : 0};
	char err[512];
	struct bus *b = bus_open(&c, err, sizeof(err));

	if (b == NULL || bus_connect(b, err, sizeof(err)) != 0) {
		fprintf(stderr, "sagactl: %s\n", err);
		bus_close(b);
		return NULL;
	}
	return b;
}

/* Messages waiting in a queue; -1 (with a message) if it does not exist. */
static long
depth(struct bus *b, const char *queue)
{
	uint32_t m = 0, c = 0;
	const struct bus_handlers none = {NULL, NULL, NULL};

	if (bus_queue_info(b, queue, &m, &c) != 0) {
		/* a passive declare of a missing queue closes the channel:
		 * let the bus reconnect before the next question */
		for (int i = 0; i < 50 && !bus_connected(b); i++)
			bus_poll(b, 100, &none);
		if (!bus_connected(b))
			bus_poll(b, 500, &none);
		return -1;
	}
	return (long)m;
}

/* Messages waiting in one queue, on a connection of its own; -1 (said on
 * stderr) if there is no broker or no such queue. */
static long
queue_depth(const char *amqp, const char *queue)
{
	struct bus *probe = connect_to(amqp, NULL, 0);
	long m;

	if (probe == NULL)
		return -1;
	m = depth(probe, queue);
	bus_close(probe);
	if (m < 0)
		fprintf(stderr, "sagactl: no queue %s\n", queue);
	return m;
}

/* One queue's line of dlq list --json: its depth, or that it is missing. */
static json_t *
depth_json(const char *queue, long m)
{
	if (m < 0)
		return json_pack("{s:o,s:b}", "queue", jsonout_str(queue),
		                 "exists", 0);
	return json_pack("{s:o,s:I}", "queue", jsonout_str(queue), "messages",
	                 (json_int_t)m);
}

static int
cmd_list(const char *amqp, bool json, int argc, char **argv)
{
	const char *const *qs = argc > 0 ? (const char *const *)argv : known;
	size_t n = argc > 0 ? (size_t)argc : sizeof(known) / sizeof(known[0]);
	struct bus *b = connect_to(amqp, NULL, 0);
	json_t *arr = NULL;
	int rc = 0;

	if (b == NULL)
		return 1;
	if (json)
		arr = json_array();
	else
		printf("%-32s %10s\n", "QUEUE", "MESSAGES");
	for (size_t i = 0; i < n; i++) {
		long m = depth(b, qs[i]);
		if (m < 0 && argc > 0)
			rc = 1;
		if (json) {
			/* out of memory: arr NULL, said below */
			if (json_array_append_new(arr, depth_json(qs[i], m)) !=
			    0) {
				json_decref(arr);
				arr = NULL;
			}
		} else if (m < 0) {
			printf("%-32s %10s\n", qs[i], "(none)");
		} else {
			printf("%-32s %10ld\n", qs[i], m);
		}
	}
	bus_close(b);
	if (json && jsonout_print(stdout, arr) != 0) {
		fprintf(stderr, "sagactl: write error or out of memory\n");
		return 1;
	}
	return rc;
}

/* Where a dead letter came from: the broker's x-first-death-queue, or
 * the "from QUEUE: reason" of a copy made with its reason (the
 * orchestrator's and the participants'). false if neither says. */
static bool
source_queue(const struct bus_delivery *d, char *buf, size_t cap)
{
	const char *end;
	buf[0] = '\0';
	if (d->death_queue[0] != '\0') {
		snprintf(buf, cap, "%s", d->death_queue);
		return true;
	}
	if (strncmp(d->error, "from ", 5) != 0 ||
	    (end = strstr(d->error + 5, ": ")) == NULL || end == d->error + 5)
		return false;
	snprintf(buf, cap, "%.*s", (int)(end - d->error - 5), d->error + 5);
	return true;
}

static void
copy_seen(struct seen *s, const struct bus_delivery *d)
{
	snprintf(s->id, sizeof(s->id), "%s", d->message_id);
	snprintf(s->saga, sizeof(s->saga), "%s", d->correlation_id);
	snprintf(s->type, sizeof(s->type), "%s", d->type);
	if (d->error[0] != '\0')
		snprintf(s->reason, sizeof(s->reason), "%s", d->error);
	else if (d->death_reason[0] != '\0')
		snprintf(s->reason, sizeof(s->reason), "%s by the broker",
		         d->death_reason);
	else
		snprintf(s->reason, sizeof(s->reason), "(no reason given)");
	source_queue(d, s->from, sizeof(s->from));
	s->len = d->len;
}

static void
on_show(void *arg, const struct bus_delivery *d)
{
	struct dlq *q = arg;
	if (q->nseen < q->want)
		copy_seen(&q->seen[q->nseen++], d);
	/* no ack: everything goes back, in order, when we disconnect */
}

/* dlq show --json: the messages seen, as an array on stdout. 0, or 1
 * with a message. */
static int
print_seen_json(const struct dlq *q)
{
	json_t *arr = json_array();

	for (long i = 0; arr != NULL && i < q->nseen; i++) {
		const struct seen *s = &q->seen[i];
		if (json_array_append_new(
		            arr, json_pack("{s:o,s:o,s:o,s:o,s:o,s:I}",
		                           "message_id", jsonout_str(s->id),
		                           "saga", jsonout_str(s->saga), "type",
		                           jsonout_str(s->type), "reason",
		                           jsonout_str(s->reason), "from",
		                           jsonout_str(s->from), "bytes",
		                           (json_int_t)s->len)) != 0) {
			json_decref(arr);
			arr = NULL;
		}
	}
	if (jsonout_print(stdout, arr) != 0) {
		fprintf(stderr, "sagactl: write error or out of memory\n");
		return 1;
	}
	return 0;
}

static int
cmd_show(const char *amqp, bool json, const char *queue, long limit)
{
	struct dlq q = {.queue = queue};
	struct bus_handlers h = {on_show, NULL, &q};
	long m = queue_depth(amqp, queue);
	int64_t deadline;
	int rc = 0;

	if (m < 0)
		return 1;
	q.want = m < limit ? m : limit;
	q.seen = calloc((size_t)q.want + 1, sizeof(*q.seen));
	if (q.seen == NULL)
		return 1;
	if (q.want > 0) {
		q.bus = connect_to(amqp, queue, (uint16_t)q.want);
		if (q.bus == NULL) {
			free(q.seen);
			return 1;
		}
		deadline = clock_mono_ms() + 10000;
		while (q.nseen < q.want && clock_mono_ms() < deadline)
			bus_poll(q.bus, 100, &h);
		bus_close(q.bus);
	}
	if (json) {
		rc = print_seen_json(&q);
	} else {
		printf("%s: %ld messages%s\n", queue, m,
		       m > q.nseen ? " (first shown)" : "");
		for (long i = 0; i < q.nseen; i++) {
			const struct seen *s = &q.seen[i];
			printf("\n  message %s\n  saga    %s\n  type    %s\n"
			       "  reason  %s\n",
			       s->id[0] ? s->id : "-",
			       s->saga[0] ? s->saga : "-",
			       s->type[0] ? s->type : "-", s->reason);
			if (s->from[0] != '\0')
				printf("  from    %s\n", s->from);
			printf("  bytes   %zu\n", s->len);
		}
	}
	free(q.seen);
	return rc;
}

static void
on_replay(void *arg, const struct bus_delivery *d)
{
	struct dlq *q = arg;
	char target[256];
	struct bus_message m = {0};
	size_t n = strlen(q->queue);

	if (q->published >= q->want)
		return; /* beyond --limit: given back at disconnect */
	if (q->to != NULL)
		snprintf(target, sizeof(target), "%s", q->to);
	else if (source_queue(d, target, sizeof(target)))
		;
	else if (n > 4 && strcmp(q->queue + n - 4, ".dlq") == 0)
		snprintf(target, sizeof(target), "%.*s", (int)(n - 4),
		         q->queue);
	else {
		fprintf(stderr,
		        "sagactl: %s: cannot tell where message %s came from; "
		        "give --to QUEUE\n",
		        q->queue, d->message_id);
		q->failed = 1;
		return;
	}
	m.exchange = "";
	m.routing_key = target;
	m.message_id = d->message_id[0] ? d->message_id : "replayed";
	m.correlation_id = d->correlation_id[0] ? d->correlation_id : NULL;
	m.type = d->type[0] ? d->type : NULL;
	m.reply_to = d->reply_to[0] ? d->reply_to : NULL;
	m.traceparent = d->traceparent[0] ? d->traceparent : NULL;
	m.content_type = d->content_type[0] ? d->content_type : NULL;
	/* stamped anew: an operator's replay is a new publish (a shard
	 * would refuse an order published before it joined the ring) */
	m.timestamp_ms = clock_wall_ms();
	m.mandatory = true;
	m.body = d->body;
	m.len = d->len;
	if (bus_publish(q->bus, &m, d->ref) != 0) {
		q->failed = 1;
		return;
	}
	q->published++;
	printf("replaying %s (saga %s, %s) to %s\n", m.message_id,
	       d->correlation_id, d->type, target);
}

static void
on_replayed(void *arg, uint64_t tag, enum bus_confirm c)
{
	struct dlq *q = arg;
	if (c == BUS_RETURNED) {
		fprintf(stderr,
		        "sagactl: a replayed message was unroutable (does "
		        "its queue exist?): it stays in %s\n",
		        q->queue);
		q->failed = 1;
		bus_reject(q->bus, tag, true);
		q->confirmed++;
		return;
	}
	bus_ack(q->bus, tag, false); /* the copy is safe: drop the original */
	q->confirmed++;
}

static int
cmd_replay(const char *amqp, const char *queue, long limit, const char *to)
{
	struct dlq q = {.queue = queue, .to = to};
	struct bus_handlers h = {on_replay, on_replayed, &q};
	long m = queue_depth(amqp, queue);
	int64_t deadline;

	if (m < 0)
		return 1;
	q.want = m < limit ? m : limit;
	if (q.want == 0) {
		printf("%s is empty: nothing to replay\n", queue);
		return 0;
	}
	q.bus = connect_to(amqp, queue,
	                   (uint16_t)(q.want < 500 ? q.want : 500));
	if (q.bus == NULL)
		return 1;
	deadline = clock_mono_ms() + 30000;
	while (q.confirmed < q.want && !q.failed && clock_mono_ms() < deadline)
		bus_poll(q.bus, 100, &h);
	bus_flush(q.bus, 5000, &h);
	bus_close(q.bus);
	printf("replayed %ld of %ld messages from %s\n",
	       q.confirmed - (q.failed ? 1 : 0), q.want, queue);
	return q.failed || q.confirmed < q.want ? 1 : 0;
}

static int
cmd_purge(const char *amqp, const char *queue)
{
	struct bus *b = connect_to(amqp, NULL, 0);
	uint32_t n = 0;
	int rc;

	if (b == NULL)
		return 1;
	rc = bus_queue_purge(b, queue, &n);
	bus_close(b);
	if (rc != 0) {
		fprintf(stderr, "sagactl: cannot purge %s (does it exist?)\n",
		        queue);
		return 1;
	}
	printf("purged %u messages from %s\n", n, queue);
	return 0;
}

static void
dlq_usage(FILE *f)
{
	fprintf(f,
	        "usage: sagactl [--amqp URL] [--json] dlq list [QUEUE...]\n"
	        "       sagactl [--amqp URL] [--json] dlq show QUEUE [--limit "
	        "N]\n"
	        "       sagactl [--amqp URL] dlq replay QUEUE [--limit N] "
	        "[--to "
	        "QUEUE]\n"
	        "       sagactl [--amqp URL] dlq purge QUEUE --yes\n");
}

static int
parse_limit(const char *s, long *out)
{
	char *end;
	errno = 0;
	*out = strtol(s, &end, 10);
	return errno == 0 && end != s && *end == '\0' && *out > 0 &&
	                       *out <= 1000000
	               ? 0
	               : -1;
}

int
dlq_main(const struct bus_config *bc, bool json, int argc, char **argv)
{
	const char *amqp = bc->url;
	const char *verb, *queue = NULL, *to = NULL;
	long limit = -1;
	bool yes = false;

	if (argc < 1 || strcmp(argv[0], "--help") == 0) {
		dlq_usage(argc < 1 ? stderr : stdout);
		return argc < 1 ? 2 : 0;
	}
	verb = argv[0];
	tls = bc;
	if (amqp == NULL || amqp[0] == '\0') {
		fprintf(stderr, "sagactl: dlq needs the broker: --amqp URL or "
		                "SAGA_AMQP_URL\n");
		return 2;
	}
	if (strcmp(verb, "list") == 0)
		return cmd_list(amqp, json, argc - 1, argv + 1);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) {
			if (parse_limit(argv[++i], &limit) != 0) {
				fprintf(stderr,
				        "sagactl: --limit: \"%s\" is not a "
				        "number from 1 to 1000000\n",
				        argv[i]);
				return 2;
			}
		} else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc) {
			to = argv[++i];
		} else if (strcmp(argv[i], "--yes") == 0) {
			yes = true;
		} else if (argv[i][0] != '-' && queue == NULL) {
			queue = argv[i];
		} else {
			fprintf(stderr, "sagactl: dlq %s: unexpected \"%s\"\n",
			        verb, argv[i]);
			dlq_usage(stderr);
			return 2;
		}
	}
	if (queue == NULL) {
		fprintf(stderr, "sagactl: dlq %s needs a QUEUE\n", verb);
		dlq_usage(stderr);
		return 2;
	}
	if (strcmp(verb, "show") == 0)
		return cmd_show(
		        amqp, json, queue,
		        limit > 0 ? (limit < SHOW_MAX ? limit : SHOW_MAX) : 20);
	if (strcmp(verb, "replay") == 0)
		return cmd_replay(amqp, queue, limit > 0 ? limit : 1000000, to);
	if (strcmp(verb, "purge") == 0) {
		if (!yes) {
			fprintf(stderr, "sagactl: dlq purge deletes every "
			                "message: add --yes\n");
			return 2;
		}
		return cmd_purge(amqp, queue);
	}
	fprintf(stderr, "sagactl: unknown dlq command \"%s\"\n", verb);
	dlq_usage(stderr);
	return 2;
}

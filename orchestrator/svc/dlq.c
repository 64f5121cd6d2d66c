/* dlq.c -- `sagactl dlq` (dlq.h is its manual). */
#include "clock.h"
#include "dlq.h"

#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus.h"
#include "dlq_group.h"
#include "envelope.h"
#include "jsonout.h"
#include "mgmt.h"
#include "number.h"

#define SHOW_MAX 1000

struct dlq {
	struct bus *bus;
	const char *queue, *to;
	long want;
	struct dlq_msg *seen; /* show: what was read */
	long nseen, published, confirmed;
	int failed;
};

/* The connection's TLS files (dlq_main's bus_config: sagactl's flags,
 * else the environment the daemons read). */
static const struct bus_config *tls;

static void
tls_of(struct dlq_act *a)
{
	a->ca_file = tls != NULL ? tls->ca_file : NULL;
	a->cert_file = tls != NULL ? tls->cert_file : NULL;
	a->key_file = tls != NULL ? tls->key_file : NULL;
}

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

/* Where the management API is: --mgmt-url, SAGA_MGMT_URL, or the AMQP
 * URL's host on port 15672 with its credentials; and the vhost (the AMQP
 * URL's). 0, or -1 (said). */
static int
mgmt_of(const char *amqp, const char *given, char *url, size_t cap, char *vhost,
        size_t vcap)
{
	char err[512], first[1024];
	const char *comma = strchr(amqp, ',');
	struct bus_url u;

	snprintf(first, sizeof(first), "%.*s",
	         (int)(comma != NULL ? (size_t)(comma - amqp) : strlen(amqp)),
	         amqp);
	if (bus_url_parse(first, &u, err, sizeof(err)) != 0) {
		fprintf(stderr, "sagactl: %s\n", err);
		return -1;
	}
	snprintf(vhost, vcap, "%s", u.vhost);
	if (given == NULL || given[0] == '\0')
		given = getenv("SAGA_MGMT_URL");
	if (given != NULL && given[0] != '\0') {
		snprintf(url, cap, "%s", given);
		return 0;
	}
	if (mgmt_default_url(first, url, cap, err, sizeof(err)) != 0) {
		fprintf(stderr, "sagactl: %s\n", err);
		return -1;
	}
	return 0;
}

/* One queue's line of dlq list: its depth now (AMQP) and its consumers
 * (the management API's statistics). */
static json_t *
list_row(struct bus *b, const char *queue, json_int_t consumers)
{
	long m = depth(b, queue);

	if (m < 0)
		return json_pack("{s:o,s:b}", "queue", jsonout_str(queue),
		                 "exists", 0);
	return json_pack("{s:o,s:I,s:I}", "queue", jsonout_str(queue),
	                 "messages", (json_int_t)m, "consumers", consumers);
}

static void
print_row(const json_t *row)
{
	const char *q = json_string_value(json_object_get(row, "queue"));
	const json_t *m = json_object_get(row, "messages");
	json_int_t c = json_integer_value(json_object_get(row, "consumers"));

	if (m == NULL)
		printf("%-40s %10s\n", q, "(none)");
	else if (c >= 0)
		printf("%-40s %10" JSON_INTEGER_FORMAT " %9" JSON_INTEGER_FORMAT
		       "\n",
		       q, json_integer_value(m), c);
	else
		printf("%-40s %10" JSON_INTEGER_FORMAT " %9s\n", q,
		       json_integer_value(m), "?");
}

/* The queues to list: those named, or every DLQ the broker has. */
static json_t *
list_names(const char *amqp, const char *mgmt, int argc, char **argv)
{
	char url[1024], vhost[256], err[1024];
	json_t *d, *arr;

	if (argc > 0) {
		arr = json_array();
		for (int i = 0; arr != NULL && i < argc; i++)
			if (json_array_append_new(
			            arr, json_pack("{s:s,s:I}", "queue",
			                           argv[i], "consumers",
			                           (json_int_t)-1)) != 0) {
				json_decref(arr);
				arr = NULL;
			}
		return arr;
	}
	if (mgmt_of(amqp, mgmt, url, sizeof(url), vhost, sizeof(vhost)) != 0)
		return NULL;
	d = dlq_discover(url, vhost, err, sizeof(err));
	if (d == NULL) {
		fprintf(stderr,
		        "sagactl: %s\n(dlq list asks the broker's management "
		        "API which dead-letter queues exist: give --mgmt-url "
		        "URL or SAGA_MGMT_URL)\n",
		        err);
		return NULL;
	}
	arr = json_incref(json_object_get(d, "queues"));
	json_decref(d);
	return arr;
}

static int
cmd_list(const char *amqp, const char *mgmt, bool json, int argc, char **argv)
{
	json_t *names = list_names(amqp, mgmt, argc, argv), *q, *out;
	struct bus *b;
	size_t i;
	int rc = 0;

	if (names == NULL)
		return 1;
	b = connect_to(amqp, NULL, 0);
	out = json_array();
	if (b == NULL || out == NULL) {
		json_decref(names);
		json_decref(out);
		bus_close(b);
		return 1;
	}
	if (!json)
		printf("%-40s %10s %9s\n", "QUEUE", "MESSAGES", "CONSUMERS");
	json_array_foreach(names, i, q)
	{
		json_t *row = list_row(
		        b, json_string_value(json_object_get(q, "queue")),
		        json_integer_value(json_object_get(q, "consumers")));
		if (row == NULL || json_object_get(row, "messages") == NULL)
			rc = 1; /* named and missing, or gone meanwhile */
		if (!json && row != NULL)
			print_row(row);
		if (json_array_append_new(out, row) != 0) {
			json_decref(out);
			out = NULL;
			break;
		}
	}
	bus_close(b);
	json_decref(names);
	if (json && jsonout_print(stdout, out) != 0) {
		fprintf(stderr, "sagactl: write error or out of memory\n");
		return 1;
	}
	if (!json)
		json_decref(out);
	return rc;
}

/* dlq show QUEUE --by-reason: every message read (none taken), grouped. */
static int
cmd_groups(const char *amqp, bool json, const char *queue)
{
	struct dlq_act a = {.amqp = amqp, .queue = queue, .action = DLQ_SHOW};
	struct dlq_act_result r;
	char err[1024];
	json_t *g, *e, *s;
	size_t i, j;

	tls_of(&a);
	if (dlq_group_act(&a, &r, err, sizeof(err)) != 0) {
		fprintf(stderr, "sagactl: %s\n", err);
		dlq_act_result_clear(&r);
		return 1;
	}
	g = dlq_groups_json(r.msgs, r.n);
	if (json) {
		dlq_act_result_clear(&r);
		if (jsonout_print(stdout, g) != 0) {
			fprintf(stderr, "sagactl: out of memory\n");
			return 1;
		}
		return 0;
	}
	printf("%s: %zu messages in %zu groups\n", queue, r.n,
	       json_array_size(g));
	json_array_foreach(g, i, e)
	{
		printf("\n  group   %s  (%" JSON_INTEGER_FORMAT " messages)\n"
		       "  reason  %s\n  example %s\n  sagas  ",
		       json_string_value(json_object_get(e, "key")),
		       json_integer_value(json_object_get(e, "count")),
		       json_string_value(json_object_get(e, "reason")),
		       json_string_value(json_object_get(e, "example")));
		json_array_foreach(json_object_get(e, "sagas"), j, s)
		        printf(" %s", json_string_value(s));
		if (json_integer_value(json_object_get(e, "sagas_more")) > 0)
			printf(" (and %" JSON_INTEGER_FORMAT " more)",
			       json_integer_value(
			               json_object_get(e, "sagas_more")));
		printf("\n");
	}
	json_decref(g);
	dlq_act_result_clear(&r);
	return 0;
}

/* dlq replay|discard QUEUE --group KEY --expect N. */
static int
cmd_group_act(const char *amqp, const char *queue, enum dlq_action what,
              const char *key, long expect, const char *to)
{
	struct dlq_act a = {.amqp = amqp,
	                    .queue = queue,
	                    .action = what,
	                    .key = key,
	                    .expect = expect,
	                    .to = to};
	struct dlq_act_result r;
	char err[1024];
	int rc;

	tls_of(&a);
	rc = dlq_group_act(&a, &r, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "sagactl: %s\n", err);
	if (rc != 1)
		printf("%s %ld of %ld messages of group %s from %s (%zu "
		       "stay there)\n",
		       what == DLQ_REPLAY ? "replayed" : "discarded", r.done,
		       r.group, key, queue, r.n - (size_t)r.done);
	dlq_act_result_clear(&r);
	return rc != 0 ? 1 : 0;
}
static void
on_show(void *arg, const struct bus_delivery *d)
{
	struct dlq *q = arg;
	if (q->nseen < q->want)
		dlq_msg_from_delivery(&q->seen[q->nseen++], d);
	/* no ack: everything goes back, in order, when we disconnect */
}

/* dlq show --json: the messages seen, as an array on stdout. 0, or 1
 * with a message. */
static int
print_seen_json(const struct dlq *q)
{
	json_t *arr = json_array();

	for (long i = 0; arr != NULL && i < q->nseen; i++) {
		const struct dlq_msg *s = &q->seen[i];
		if (json_array_append_new(
		            arr, json_pack("{s:o,s:o,s:o,s:o,s:o,s:I}",
		                           "message_id", jsonout_str(s->id),
		                           "saga", jsonout_str(s->saga), "type",
		                           jsonout_str(s->type), "reason",
		                           jsonout_str(s->reason), "from",
		                           jsonout_str(s->from), "bytes",
		                           (json_int_t)s->bytes)) != 0) {
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
			const struct dlq_msg *s = &q.seen[i];
			printf("\n  message %s\n  saga    %s\n  type    %s\n"
			       "  reason  %s\n",
			       s->id[0] ? s->id : "-",
			       s->saga[0] ? s->saga : "-",
			       s->type[0] ? s->type : "-", s->reason);
			if (s->from[0] != '\0')
				printf("  from    %s\n", s->from);
			printf("  bytes   %zu\n", s->bytes);
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
	struct bus_message m;
	struct dlq_msg dm;

	if (q->published >= q->want)
		return; /* beyond --limit: given back at disconnect */
	dlq_msg_from_delivery(&dm, d);
	if (!dlq_origin(&dm, q->queue, q->to, target, sizeof(target))) {
		fprintf(stderr,
		        "sagactl: %s: cannot tell where message %s came from; "
		        "give --to QUEUE\n",
		        q->queue, d->message_id);
		q->failed = 1;
		return;
	}
	dlq_replay_message(&m, &dm, target, d);
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
	        "usage: sagactl [--amqp URL] [--json] dlq list [--mgmt-url "
	        "URL] "
	        "[QUEUE...]\n"
	        "       sagactl [--amqp URL] [--json] dlq show QUEUE [--limit "
	        "N | --by-reason]\n"
	        "       sagactl [--amqp URL] dlq replay QUEUE [--limit N] "
	        "[--to "
	        "QUEUE]\n"
	        "       sagactl [--amqp URL] dlq replay QUEUE --group KEY "
	        "--expect N [--to QUEUE]\n"
	        "       sagactl [--amqp URL] dlq discard QUEUE --group KEY "
	        "--expect N\n"
	        "       sagactl [--amqp URL] dlq purge QUEUE --yes\n"
	        "list: every queue named *.dlq, found through the broker's "
	        "management API:\n"
	        "  --mgmt-url URL (or SAGA_MGMT_URL), "
	        "http://USER:PASS@HOST:PORT/; default: the\n"
	        "  AMQP URL's host on port 15672 with the AMQP URL's user and "
	        "password\n"
	        "show --by-reason: groups by reason, ids and numbers taken "
	        "out, each with its KEY\n"
	        "replay|discard --group KEY --expect N: only that group's "
	        "messages, and only\n"
	        "  if it still holds N (else exit 1, nothing changed); the "
	        "rest stay, in order\n");
}

static int
parse_limit(const char *s, long *out)
{
	long long v;
	if (number_parse(s, 1, 1000000, &v) != 0)
		return -1;
	*out = (long)v;
	return 0;
}

struct dlq_args {
	const char *queue, *to, *group, *mgmt;
	long limit, expect;
	bool yes, by_reason;
};

/* One option of a dlq verb at argv[*i]; 0, or 2 (said). */
static int
dlq_opt(struct dlq_args *a, const char *verb, int argc, char **argv, int *i)
{
	const char *o = argv[*i];
	bool more = *i + 1 < argc;

	if ((strcmp(o, "--limit") == 0 || strcmp(o, "--expect") == 0) && more) {
		long *v = strcmp(o, "--limit") == 0 ? &a->limit : &a->expect;
		if (parse_limit(argv[++*i], v) != 0) {
			fprintf(stderr,
			        "sagactl: %s: \"%s\" is not a number from 1 "
			        "to 1000000\n",
			        o, argv[*i]);
			return 2;
		}
	} else if (strcmp(o, "--to") == 0 && more) {
		a->to = argv[++*i];
	} else if (strcmp(o, "--group") == 0 && more) {
		a->group = argv[++*i];
	} else if (strcmp(o, "--mgmt-url") == 0 && more) {
		a->mgmt = argv[++*i];
	} else if (strcmp(o, "--yes") == 0) {
		a->yes = true;
	} else if (strcmp(o, "--by-reason") == 0) {
		a->by_reason = true;
	} else if (o[0] != '-' && a->queue == NULL) {
		a->queue = o;
	} else {
		fprintf(stderr, "sagactl: dlq %s: unexpected \"%s\"\n", verb,
		        o);
		dlq_usage(stderr);
		return 2;
	}
	return 0;
}

/* dlq list [--mgmt-url URL] [QUEUE...] */
static int
dlq_list_main(const char *amqp, bool json, int argc, char **argv)
{
	const char *mgmt = NULL;
	char **names = calloc((size_t)argc + 1, sizeof(*names));
	int n = 0, rc;

	if (names == NULL)
		return 1;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--mgmt-url") == 0 && i + 1 < argc)
			mgmt = argv[++i];
		else
			names[n++] = argv[i];
	}
	rc = cmd_list(amqp, mgmt, json, n, names);
	free(names);
	return rc;
}

/* The verbs that take a QUEUE, once their options are read. */
static int
dlq_verb(const char *amqp, bool json, const char *verb,
         const struct dlq_args *a)
{
	bool grouped = strcmp(verb, "discard") == 0 || a->group != NULL;

	if (grouped && (a->group == NULL || a->expect < 0)) {
		fprintf(stderr,
		        "sagactl: dlq %s of a group needs --group KEY "
		        "and --expect N (the count `dlq show --by-reason` "
		        "gave)\n",
		        verb);
		return 2;
	}
	if (strcmp(verb, "show") == 0 && a->by_reason)
		return cmd_groups(amqp, json, a->queue);
	if (strcmp(verb, "show") == 0)
		return cmd_show(amqp, json, a->queue,
		                a->limit > 0 ? (a->limit < SHOW_MAX ? a->limit
		                                                    : SHOW_MAX)
		                             : 20);
	if (strcmp(verb, "replay") == 0 && grouped)
		return cmd_group_act(amqp, a->queue, DLQ_REPLAY, a->group,
		                     a->expect, a->to);
	if (strcmp(verb, "discard") == 0)
		return cmd_group_act(amqp, a->queue, DLQ_DISCARD, a->group,
		                     a->expect, NULL);
	if (strcmp(verb, "replay") == 0)
		return cmd_replay(amqp, a->queue,
		                  a->limit > 0 ? a->limit : 1000000, a->to);
	if (strcmp(verb, "purge") == 0) {
		if (!a->yes) {
			fprintf(stderr, "sagactl: dlq purge deletes every "
			                "message: add --yes\n");
			return 2;
		}
		return cmd_purge(amqp, a->queue);
	}
	fprintf(stderr, "sagactl: unknown dlq command \"%s\"\n", verb);
	dlq_usage(stderr);
	return 2;
}

int
dlq_main(const struct bus_config *bc, bool json, int argc, char **argv)
{
	struct dlq_args a = {.limit = -1, .expect = -1};
	const char *verb;
	const char *amqp = bc->url;

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
		return dlq_list_main(amqp, json, argc - 1, argv + 1);
	for (int i = 1; i < argc; i++)
		if (dlq_opt(&a, verb, argc, argv, &i) != 0)
			return 2;
	if (a.queue == NULL) {
		fprintf(stderr, "sagactl: dlq %s needs a QUEUE\n", verb);
		dlq_usage(stderr);
		return 2;
	}
	return dlq_verb(amqp, json, verb, &a);
}

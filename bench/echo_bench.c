/* echo_bench -- the broker ceiling for order.yaml: the same messages as a
 * real run (the same exchanges, routing keys, queues, sizes, persistence,
 * publisher confirms and consumer prefetch) pushed through stateless echo
 * processes, with no database, no engine and no state.
 *
 *   echo_bench capture --amqp URL --out PROFILE [--idle-ms MS]
 *   echo_bench orchestrator|participant --amqp URL --profile PROFILE
 *              --queues Q1[,Q2...] [--prefetch N]
 *
 * capture: with the broker's firehose on (`rabbitmqctl trace_on`), reads
 * every publish (amq.rabbitmq.trace, "publish.#") while a few sagas run
 * through the real daemons, then writes PROFILE: one line per message a
 * saga causes, with what triggers it:
 *
 *   role trigger exchange routing_key type size persistent expiration
 *        reply_to traceparent mandatory count
 *
 * role is "orchestrator" (commands and domain events, triggered by the
 * order.created or the reply that came before them) or "participant"
 * (replies, triggered by the command of the same participant; anything
 * else a participant sends, e.g. the notification's delayed confirmation,
 * is triggered by the domain event before it). A message seen with
 * several routing keys (shipping.india.books, shipping.france.books) has
 * one line each with how often it was seen; the echo picks among them by
 * a hash of the saga id, in the same proportions. Empty strings are "-".
 *
 * orchestrator / participant: consume the given queues (declared by the
 * real daemons, which have run before on the same broker: nothing is
 * declared here) and for each delivery publish what PROFILE says its role
 * sends for that message type: a body of the recorded size, persistent,
 * with a publisher confirm, the saga id as correlation id, the reply_to
 * and traceparent header when the real message has them, mandatory for
 * commands. Deliveries are acked with `multiple` once per poll, after the
 * messages they caused are handed to the broker (the real daemons ack
 * after their commit). saga_bench then drives it exactly as it drives the
 * real daemons, so both figures are measured the same way.
 *
 * Bundles (lib/envelope.h): capture records each item of a bundle as the
 * message it carries, and the echoes bundle as the daemons do (SAGA_BUNDLE,
 * default 64): the orchestrator echo gathers the commands of one poll per
 * routing key, a participant echo the replies to bundled commands; items
 * are real envelopes padded to the recorded size, so the next echo reads
 * the saga and the type from them.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include "bus.h"
#include "clock.h"
#include "envelope.h"
#include "hash.h"
#include "log.h"

#define MAX_RULES  64
#define MAX_QUEUES 8
#define MAX_BODY   (256 * 1024)
#define STR        128

struct rule {
	char role[16], trigger[STR], exchange[STR], rk[STR], type[STR];
	char reply_to[STR];
	size_t size;
	int persistent, traceparent, mandatory;
	long expiration, count;
	double size_sum; /* capture: for the mean */
};

struct profile {
	struct rule r[MAX_RULES];
	size_t n;
};

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static const char *
dash(const char *s)
{
	return s[0] != '\0' ? s : "-";
}

static void
undash(char *s)
{
	if (strcmp(s, "-") == 0)
		s[0] = '\0';
}

/* ---- capture ---- */

struct seen {
	char saga[STR], exchange[STR], rk[STR], type[STR], reply_to[STR];
	size_t size;
	int persistent, traceparent;
	long expiration;
	size_t seq; /* arrival order (profile_of) */
};

static void
bytes_to(char *dst, size_t cap, amqp_bytes_t b)
{
	size_t n = b.len < cap - 1 ? b.len : cap - 1;
	if (n > 0)
		memcpy(dst, b.bytes, n);
	dst[n] = '\0';
}

static const amqp_field_value_t *
field(const amqp_table_t *t, const char *key)
{
	size_t kl = strlen(key);
	for (int i = 0; i < t->num_entries; i++)
		if (t->entries[i].key.len == kl &&
		    memcmp(t->entries[i].key.bytes, key, kl) == 0)
			return &t->entries[i].value;
	return NULL;
}

static void
field_str(const amqp_table_t *t, const char *key, char *dst, size_t cap)
{
	const amqp_field_value_t *v = field(t, key);
	dst[0] = '\0';
	if (v != NULL && (v->kind == AMQP_FIELD_KIND_UTF8 ||
	                  v->kind == AMQP_FIELD_KIND_BYTES))
		bytes_to(dst, cap, v->value.bytes);
}

static long
field_long(const amqp_table_t *t, const char *key)
{
	const amqp_field_value_t *v = field(t, key);
	if (v == NULL)
		return 0;
	switch (v->kind) {
	case AMQP_FIELD_KIND_I8:
		return v->value.i8;
	case AMQP_FIELD_KIND_U8:
		return v->value.u8;
	case AMQP_FIELD_KIND_I16:
		return v->value.i16;
	case AMQP_FIELD_KIND_U16:
		return v->value.u16;
	case AMQP_FIELD_KIND_I32:
		return v->value.i32;
	case AMQP_FIELD_KIND_I64:
		return (long)v->value.i64;
	default:
		return 0;
	}
}

/* One traced publish into *s; -1 if it is not one of ours. A bundle's
 * correlation id and type are empty: its items carry theirs (add_trace). */
static int
parse_trace(const amqp_envelope_t *env, struct seen *s)
{
	const amqp_basic_properties_t *p = &env->message.properties;
	const amqp_field_value_t *rks, *props, *hdr;
	char exp[32];

	memset(s, 0, sizeof(*s));
	if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
		return -1;
	field_str(&p->headers, "exchange_name", s->exchange,
	          sizeof(s->exchange));
	rks = field(&p->headers, "routing_keys");
	if (rks != NULL && rks->kind == AMQP_FIELD_KIND_ARRAY &&
	    rks->value.array.num_entries > 0 &&
	    (rks->value.array.entries[0].kind == AMQP_FIELD_KIND_UTF8 ||
	     rks->value.array.entries[0].kind == AMQP_FIELD_KIND_BYTES))
		bytes_to(s->rk, sizeof(s->rk),
		         rks->value.array.entries[0].value.bytes);
	props = field(&p->headers, "properties");
	if (props == NULL || props->kind != AMQP_FIELD_KIND_TABLE)
		return -1;
	field_str(&props->value.table, "type", s->type, sizeof(s->type));
	field_str(&props->value.table, "correlation_id", s->saga,
	          sizeof(s->saga));
	field_str(&props->value.table, "reply_to", s->reply_to,
	          sizeof(s->reply_to));
	field_str(&props->value.table, "expiration", exp, sizeof(exp));
	s->expiration = strtol(exp, NULL, 10);
	s->persistent = field_long(&props->value.table, "delivery_mode") == 2;
	hdr = field(&props->value.table, "headers");
	s->traceparent = hdr != NULL && hdr->kind == AMQP_FIELD_KIND_TABLE &&
	                 field(&hdr->value.table, "traceparent") != NULL;
	s->size = env->message.body.len;
	if (strcmp(s->type, ENVELOPE_BUNDLE_TYPE) == 0)
		return s->rk[0] != '\0' ? 0 : -1;
	if (s->saga[0] == '\0' || s->type[0] == '\0' || s->rk[0] == '\0')
		return -1;
	return 0;
}

/* Appends what one traced publish carried to m[]: itself, or each item of
 * a bundle as if it had travelled alone (the profile is of messages; the
 * echo bundles them again as the daemons do). 1 when it recorded
 * something, 0 when the publish is not a saga's, -1 out of memory. */
static int
add_trace(const amqp_envelope_t *env, struct seen **m, size_t *n, size_t *cap)
{
	struct seen s;
	struct envelope_bundle b;
	char err[256];
	size_t k = 1;

	if (parse_trace(env, &s) != 0)
		return 0; /* not a saga's (a presence announcement) */
	memset(&b, 0, sizeof(b));
	if (strcmp(s.type, ENVELOPE_BUNDLE_TYPE) == 0) {
		if (envelope_bundle_decode(env->message.body.bytes,
		                           env->message.body.len, &b, err,
		                           sizeof(err)) != 0)
			return 0;
		k = b.n;
	}
	if (*n + k > *cap) {
		size_t nc = *cap ? *cap * 2 : 1024;
		struct seen *nm;
		while (nc < *n + k)
			nc *= 2;
		nm = realloc(*m, nc * sizeof(*nm));
		if (nm == NULL) {
			envelope_bundle_clear(&b);
			return -1;
		}
		*m = nm;
		*cap = nc;
	}
	if (b.n == 0) {
		(*m)[(*n)++] = s;
		return 1;
	}
	for (size_t i = 0; i < b.n; i++) {
		struct envelope e;
		if (envelope_decode(b.items[i].body, b.items[i].len, &e, err,
		                    sizeof(err)) != 0)
			continue;
		s.size = b.items[i].len;
		snprintf(s.saga, sizeof(s.saga), "%s", e.saga);
		snprintf(s.type, sizeof(s.type), "%s", e.type);
		s.traceparent = b.items[i].traceparent[0] != '\0';
		(*m)[(*n)++] = s;
		envelope_clear(&e);
	}
	envelope_bundle_clear(&b);
	return 1;
}

static void
add_rule(struct profile *pr, const char *role, const char *trigger,
         const struct seen *s)
{
	struct rule *r = NULL;

	for (size_t i = 0; i < pr->n && r == NULL; i++)
		if (strcmp(pr->r[i].role, role) == 0 &&
		    strcmp(pr->r[i].trigger, trigger) == 0 &&
		    strcmp(pr->r[i].type, s->type) == 0 &&
		    strcmp(pr->r[i].exchange, s->exchange) == 0 &&
		    strcmp(pr->r[i].rk, s->rk) == 0)
			r = &pr->r[i];
	if (r == NULL) {
		if (pr->n == MAX_RULES)
			return;
		r = &pr->r[pr->n++];
		memset(r, 0, sizeof(*r));
		snprintf(r->role, sizeof(r->role), "%s", role);
		snprintf(r->trigger, sizeof(r->trigger), "%s", trigger);
		snprintf(r->exchange, sizeof(r->exchange), "%s", s->exchange);
		snprintf(r->rk, sizeof(r->rk), "%s", s->rk);
		snprintf(r->type, sizeof(r->type), "%s", s->type);
		snprintf(r->reply_to, sizeof(r->reply_to), "%s", s->reply_to);
		r->persistent = s->persistent;
		r->traceparent = s->traceparent;
		r->expiration = s->expiration;
		r->mandatory = strcmp(s->exchange, "saga.commands") == 0;
	}
	r->count++;
	r->size_sum += (double)s->size;
}

static int
prefix_eq(const char *a, const char *b)
{
	size_t n = strcspn(a, ".");
	return n == strcspn(b, ".") && strncmp(a, b, n) == 0;
}

/* Which role sent each message of one saga, and after what. */
static void
infer(struct profile *pr, const struct seen *m, size_t n)
{
	char orch_trigger[STR] = "", last_event[STR] = "";

	for (size_t i = 0; i < n; i++) {
		const struct seen *s = &m[i];
		bool event = strcmp(s->exchange, "order_events") == 0;
		if (event && strcmp(s->type, "order.created") == 0) {
			snprintf(orch_trigger, sizeof(orch_trigger), "%s",
			         s->type);
			continue; /* saga_bench's own */
		}
		if (strcmp(s->exchange, "saga.replies") == 0) {
			const char *cmd = NULL;
			for (size_t j = i; j-- > 0 && cmd == NULL;)
				if (strcmp(m[j].exchange, "saga.commands") ==
				            0 &&
				    prefix_eq(m[j].type, s->type))
					cmd = m[j].type;
			if (cmd != NULL)
				add_rule(pr, "participant", cmd, s);
			snprintf(orch_trigger, sizeof(orch_trigger), "%s",
			         s->type);
		} else if (strcmp(s->exchange, "saga.commands") == 0 || event) {
			if (orch_trigger[0] != '\0')
				add_rule(pr, "orchestrator", orch_trigger, s);
			if (event)
				snprintf(last_event, sizeof(last_event), "%s",
				         s->type);
		} else if (last_event[0] != '\0') {
			add_rule(pr, "participant", last_event, s);
		}
	}
}

/* The firehose, consumed: a private queue bound to amq.rabbitmq.trace by
 * publish.#. 0, or -1 (said on stderr; nothing left open). */
static int
firehose_open(const char *url, amqp_connection_state_t *out,
              amqp_bytes_t *qname)
{
	struct bus_url u;
	char err[256];
	amqp_connection_state_t c = amqp_new_connection();
	amqp_socket_t *sock = amqp_tcp_socket_new(c);
	amqp_queue_declare_ok_t *q;
	const char *fail = "cannot connect to the broker";

	if (bus_url_parse(url, &u, err, sizeof(err)) != 0 || sock == NULL ||
	    amqp_socket_open(sock, u.host, u.port) != AMQP_STATUS_OK ||
	    amqp_login(c, u.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, u.user,
	               u.password)
	                    .reply_type != AMQP_RESPONSE_NORMAL ||
	    amqp_channel_open(c, 1) == NULL)
		goto fail;
	fail = "cannot declare a queue";
	q = amqp_queue_declare(c, 1, amqp_empty_bytes, 0, 0, 1, 1,
	                       amqp_empty_table);
	if (q == NULL)
		goto fail;
	*qname = amqp_bytes_malloc_dup(q->queue);
	amqp_queue_bind(c, 1, *qname, amqp_cstring_bytes("amq.rabbitmq.trace"),
	                amqp_cstring_bytes("publish.#"), amqp_empty_table);
	amqp_basic_consume(c, 1, *qname, amqp_empty_bytes, 0, 1, 1,
	                   amqp_empty_table);
	if (amqp_get_rpc_reply(c).reply_type == AMQP_RESPONSE_NORMAL) {
		*out = c;
		return 0;
	}
	amqp_bytes_free(*qname);
	fail = "cannot consume the firehose";
fail:
	fprintf(stderr, "echo_bench: %s\n", fail);
	amqp_destroy_connection(c);
	return -1;
}

/* Reads the firehose into m[] until no saga's publish came for idle_ms
 * after the first (the participants' presence announcements go on all
 * the time and do not count), the connection goes, memory runs out, or
 * a signal stops the program. */
static void
firehose_read(amqp_connection_state_t c, int idle_ms, struct seen **m,
              size_t *n, size_t *cap)
{
	bool got = false;
	int64_t last = 0;

	while (!stop) {
		int64_t left =
		        got ? idle_ms - (clock_mono_ms() - last) : idle_ms;
		struct timeval tv = {left / 1000, (left % 1000) * 1000};
		amqp_envelope_t env;
		amqp_rpc_reply_t r;
		int rc;

		if (left <= 0)
			return; /* idle: done */
		amqp_maybe_release_buffers(c);
		r = amqp_consume_message(c, &env, &tv, 0);
		if (r.reply_type != AMQP_RESPONSE_NORMAL) {
			if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
			    r.library_error == AMQP_STATUS_TIMEOUT)
				continue; /* nothing yet, or idle (above) */
			return;           /* gone */
		}
		rc = add_trace(&env, m, n, cap);
		amqp_destroy_envelope(&env);
		if (rc < 0)
			return;
		if (rc > 0) {
			got = true;
			last = clock_mono_ms();
		}
	}
}

/* qsort: by saga, then in the order they arrived. */
static int
by_saga(const void *a, const void *b)
{
	const struct seen *x = a, *y = b;
	int c = strcmp(x->saga, y->saga);

	if (c != 0)
		return c;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

/* The rules m[] shows, each saga's messages read in arrival order. */
static void
profile_of(struct seen *m, size_t n, struct profile *pr)
{
	for (size_t i = 0; i < n; i++)
		m[i].seq = i;
	if (n > 1)
		qsort(m, n, sizeof(*m), by_saga);
	for (size_t i = 0, j; i < n; i = j) {
		for (j = i; j < n && strcmp(m[j].saga, m[i].saga) == 0; j++)
			;
		infer(pr, &m[i], j - i);
	}
}

static int
write_profile(const char *out, const struct profile *pr)
{
	FILE *f = fopen(out, "w");

	if (f == NULL) {
		perror(out);
		return -1;
	}
	fprintf(f, "# role trigger exchange routing_key type size persistent "
	           "expiration reply_to traceparent mandatory count\n");
	for (size_t i = 0; i < pr->n; i++) {
		const struct rule *r = &pr->r[i];
		fprintf(f, "%s %s %s %s %s %.0f %d %ld %s %d %d %ld\n", r->role,
		        r->trigger, dash(r->exchange), r->rk, r->type,
		        r->size_sum / (double)r->count, r->persistent,
		        r->expiration, dash(r->reply_to), r->traceparent,
		        r->mandatory, r->count);
	}
	if (fclose(f) != 0) {
		perror(out);
		return -1;
	}
	return 0;
}

/* echo_bench capture: what the daemons publish, as rules for the echo. */
static int
capture(const char *url, const char *out, int idle_ms)
{
	amqp_connection_state_t c;
	amqp_bytes_t qname;
	struct seen *m = NULL;
	size_t n = 0, cap = 0;
	struct profile pr = {0};

	if (firehose_open(url, &c, &qname) != 0)
		return 1;
	printf("ready\n");
	fflush(stdout);
	firehose_read(c, idle_ms, &m, &n, &cap);
	amqp_bytes_free(qname);
	amqp_connection_close(c, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(c);
	profile_of(m, n, &pr);
	free(m);
	if (write_profile(out, &pr) != 0)
		return 1;
	fprintf(stderr, "echo_bench: %zu publishes captured, %zu rules\n", n,
	        pr.n);
	return pr.n > 0 ? 0 : 1;
}

/* ---- echo ---- */

static int
load_profile(const char *path, const char *role, struct profile *pr)
{
	FILE *f = fopen(path, "r");
	char line[1024];

	if (f == NULL) {
		perror(path);
		return -1;
	}
	pr->n = 0;
	while (fgets(line, sizeof(line), f) != NULL && pr->n < MAX_RULES) {
		struct rule r;
		memset(&r, 0, sizeof(r));
		if (line[0] == '#')
			continue;
		if (sscanf(line,
		           "%15s %127s %127s %127s %127s %zu %d %ld %127s %d "
		           "%d %ld",
		           r.role, r.trigger, r.exchange, r.rk, r.type, &r.size,
		           &r.persistent, &r.expiration, r.reply_to,
		           &r.traceparent, &r.mandatory, &r.count) != 12 ||
		    r.size > MAX_BODY || r.count <= 0) {
			fprintf(stderr, "echo_bench: %s: bad line: %s", path,
			        line);
			fclose(f);
			return -1;
		}
		undash(r.exchange);
		undash(r.reply_to);
		if (strcmp(r.role, role) == 0)
			pr->r[pr->n++] = r;
	}
	fclose(f);
	return 0;
}

#define OPEN_MAX 16

/* Messages for one destination gathered during a poll, sent as a bundle
 * (or alone, if only one came) before the poll's ack, as the daemons do. */
struct gather {
	const struct rule *r;
	char rk[STR];
	size_t n;
	char saga[ENVELOPE_BUNDLE_MAX][STR];
	char *body[ENVELOPE_BUNDLE_MAX];
	size_t len[ENVELOPE_BUNDLE_MAX];
};

struct echo {
	struct bus *bus;
	struct profile pr;
	char body[MAX_BODY];
	uint64_t seq, last_ref;
	bool unacked, ack_each;
	size_t bundle_max; /* SAGA_BUNDLE as the orchestrator reads it */
	struct gather g[OPEN_MAX];
	size_t ng;
};

static const char tp_fixed[] =
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/* r's message for saga, alone. */
static void
publish_one(struct echo *e, const struct rule *r, const char *saga,
            const char *rk)
{
	char id[300];
	struct bus_message m;

	snprintf(id, sizeof(id), "%s:%s:%llu", saga, r->type,
	         (unsigned long long)++e->seq);
	memset(&m, 0, sizeof(m));
	m.exchange = r->exchange;
	m.routing_key = rk;
	m.message_id = id;
	m.correlation_id = saga;
	m.type = r->type;
	m.reply_to = r->reply_to[0] != '\0' ? r->reply_to : NULL;
	m.traceparent = r->traceparent ? tp_fixed : NULL;
	m.timestamp_ms = (int64_t)time(NULL) * 1000;
	m.mandatory = r->mandatory != 0;
	m.transient = r->persistent == 0;
	m.expiration_ms = r->expiration;
	m.body = e->body;
	m.len = r->size;
	if (bus_publish(e->bus, &m, e->seq) != 0)
		log_warnx("cannot publish %s", r->type);
}

/* An item of a bundle: a real envelope (the consumer reads the saga and
 * the type from it) padded to the recorded size. */
static int
make_item(const struct echo *e, const struct rule *r, const char *saga,
          uint64_t seq, char **body, size_t *len)
{
	struct envelope en;
	struct value pad;
	size_t want = r->size > 160 ? r->size - 160 : 1;
	int rc;

	envelope_init(&en);
	snprintf(en.id, sizeof(en.id), "%s:%s:%llu", saga, r->type,
	         (unsigned long long)seq);
	snprintf(en.saga, sizeof(en.saga), "%s", saga);
	snprintf(en.type, sizeof(en.type), "%s", r->type);
	en.ts = (int64_t)time(NULL) * 1000;
	if (value_set_bin(&pad, e->body, want) != 0 ||
	    value_map_put(&en.payload, "p", &pad) != 0) {
		envelope_clear(&en);
		return -1;
	}
	rc = envelope_encode(&en, body, len);
	envelope_clear(&en);
	return rc;
}

/* Sends what g gathered: a bundle, or the one message alone. */
static void
gather_send(struct echo *e, struct gather *g)
{
	struct envelope_item it[ENVELOPE_BUNDLE_MAX];
	char id[64], *body = NULL;
	size_t len = 0;

	if (g->n == 1) {
		publish_one(e, g->r, g->saga[0], g->rk);
	} else if (g->n > 1) {
		for (size_t k = 0; k < g->n; k++)
			it[k] = (struct envelope_item){
			        g->body[k], g->len[k],
			        g->r->traceparent ? tp_fixed : ""};
		snprintf(id, sizeof(id), "bundle-%llu",
		         (unsigned long long)++e->seq);
		if (envelope_bundle_encode(it, g->n, &body, &len) == 0) {
			struct bus_message m = {
			        .exchange = g->r->exchange,
			        .routing_key = g->rk,
			        .message_id = id,
			        .type = ENVELOPE_BUNDLE_TYPE,
			        .reply_to = g->r->reply_to[0] != '\0'
			                            ? g->r->reply_to
			                            : NULL,
			        .mandatory = g->r->mandatory != 0,
			        .body = body,
			        .len = len,
			};
			if (bus_publish(e->bus, &m, e->seq) != 0)
				log_warnx("cannot publish a bundle");
		}
		free(body);
	}
	for (size_t k = 0; k < g->n; k++)
		free(g->body[k]);
	g->n = 0;
}

static void
gather_flush(struct echo *e)
{
	for (size_t i = 0; i < e->ng; i++)
		gather_send(e, &e->g[i]);
	e->ng = 0;
}

/* r's message for saga: gathered into a bundle when the daemons would
 * bundle it (the orchestrator's commands; replies to bundled commands),
 * else sent now. */
static void
emit(struct echo *e, const struct rule *r, const char *saga, const char *rk,
     bool bundled_in)
{
	struct gather *g = NULL;
	bool bundle =
	        e->bundle_max > 1 &&
	        (strcmp(r->exchange, "saga.commands") == 0 ||
	         (bundled_in && strcmp(r->exchange, "saga.replies") == 0 &&
	          r->expiration == 0));

	if (!bundle) {
		publish_one(e, r, saga, rk);
		return;
	}
	for (size_t i = 0; i < e->ng && g == NULL; i++)
		if (strcmp(e->g[i].rk, rk) == 0 &&
		    strcmp(e->g[i].r->exchange, r->exchange) == 0)
			g = &e->g[i];
	if (g == NULL) {
		if (e->ng == OPEN_MAX) {
			publish_one(e, r, saga, rk);
			return;
		}
		g = &e->g[e->ng++];
		g->r = r;
		g->n = 0;
		snprintf(g->rk, sizeof(g->rk), "%s", rk);
	}
	if (make_item(e, r, saga, ++e->seq, &g->body[g->n], &g->len[g->n]) !=
	    0) {
		publish_one(e, r, saga, rk);
		return;
	}
	snprintf(g->saga[g->n], STR, "%s", saga);
	if (++g->n == e->bundle_max)
		gather_send(e, g);
}

/* What this role sends when a message of `type` for `saga` arrives. */
static void
respond(struct echo *e, const char *saga, const char *type,
        const char *reply_to, bool bundled_in)
{
	const struct profile *pr = &e->pr;
	uint32_t h = (uint32_t)hash_fnv1a_str(HASH_FNV_INIT, saga);

	for (size_t i = 0; i < pr->n; i++) {
		const struct rule *r = &pr->r[i];
		long total = 0, pick, at = 0;
		size_t k;
		bool first = true;

		if (strcmp(r->trigger, type) != 0)
			continue;
		/* alternatives of one message (same type, other keys): the
		 * first of them decides, by the saga's hash */
		for (size_t j = 0; j < i; j++)
			if (strcmp(pr->r[j].trigger, type) == 0 &&
			    strcmp(pr->r[j].type, r->type) == 0)
				first = false;
		if (!first)
			continue;
		for (k = i; k < pr->n; k++)
			if (strcmp(pr->r[k].trigger, type) == 0 &&
			    strcmp(pr->r[k].type, r->type) == 0)
				total += pr->r[k].count;
		pick = (long)(h % (uint32_t)total);
		for (k = i; k < pr->n; k++) {
			if (strcmp(pr->r[k].trigger, type) != 0 ||
			    strcmp(pr->r[k].type, r->type) != 0)
				continue;
			at += pr->r[k].count;
			if (pick < at)
				break;
		}
		r = &pr->r[k < pr->n ? k : i];
		emit(e, r, saga,
		     strcmp(r->exchange, "saga.replies") == 0 &&
		                     reply_to[0] != '\0'
		             ? reply_to
		             : r->rk,
		     bundled_in);
	}
}

static void
on_delivery(void *arg, const struct bus_delivery *d)
{
	struct echo *e = arg;

	if (strcmp(d->type, ENVELOPE_BUNDLE_TYPE) == 0) {
		struct envelope_bundle b;
		char err[256];
		if (envelope_bundle_decode(d->body, d->len, &b, err,
		                           sizeof(err)) != 0) {
			log_warnx("a bad bundle: %s", err);
		} else {
			for (size_t i = 0; i < b.n; i++) {
				struct envelope en;
				if (envelope_decode(b.items[i].body,
				                    b.items[i].len, &en, err,
				                    sizeof(err)) != 0)
					continue;
				respond(e, en.saga, en.type, d->reply_to, true);
				envelope_clear(&en);
			}
		}
		envelope_bundle_clear(&b);
	} else {
		respond(e, d->correlation_id, d->type, d->reply_to, false);
	}
	if (e->ack_each) { /* as the daemons do: one ack per delivery */
		gather_flush(e);
		bus_ack(e->bus, d->ref, false);
		return;
	}
	e->last_ref = d->ref;
	e->unacked = true;
}

static void
on_confirm(void *arg, uint64_t tag, enum bus_confirm c)
{
	(void)arg;
	(void)tag;
	(void)c;
}

static int
echo(const char *role, const char *url, const char *path, char *queues,
     int prefetch)
{
	static struct echo e;
	const char *qs[MAX_QUEUES];
	size_t nq = 0;
	char *save = NULL, err[512];
	struct bus_config cfg = {0};
	struct bus_handlers h = {on_delivery, on_confirm, &e};

	if (load_profile(path, role, &e.pr) != 0)
		return 1;
	e.ack_each = getenv("ECHO_ACK_EACH") != NULL;
	e.bundle_max = 64;
	if (getenv("SAGA_BUNDLE") != NULL) {
		long b = strtol(getenv("SAGA_BUNDLE"), NULL, 10);
		e.bundle_max =
		        b >= 1 && b <= ENVELOPE_BUNDLE_MAX ? (size_t)b : 64;
	}
	for (char *t = strtok_r(queues, ",", &save);
	     t != NULL && nq < MAX_QUEUES; t = strtok_r(NULL, ",", &save))
		qs[nq++] = t;
	memset(e.body, 'x', sizeof(e.body));
	cfg.url = url;
	cfg.name = role;
	cfg.prefetch = (uint16_t)prefetch;
	cfg.consume = qs;
	cfg.nconsume = nq;
	e.bus = bus_open(&cfg, err, sizeof(err));
	if (e.bus == NULL) {
		fprintf(stderr, "echo_bench: %s\n", err);
		return 1;
	}
	while (!stop) {
		bus_poll(e.bus, 200, &h);
		gather_flush(&e);
		if (e.unacked) {
			bus_ack(e.bus, e.last_ref, true);
			e.unacked = false;
		}
	}
	bus_flush(e.bus, 2000, &h);
	bus_close(e.bus);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"amqp", required_argument, NULL, 'a'},
	        {"out", required_argument, NULL, 'o'},
	        {"profile", required_argument, NULL, 'p'},
	        {"queues", required_argument, NULL, 'q'},
	        {"prefetch", required_argument, NULL, 'f'},
	        {"idle-ms", required_argument, NULL, 'i'},
	        {NULL, 0, NULL, 0},
	};
	const char *mode = argc > 1 ? argv[1] : "", *url = NULL, *out = NULL,
	           *profile = NULL;
	char *queues = NULL;
	int prefetch = 50, idle = 3000, c;
	struct sigaction sa;

	optind = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			url = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case 'p':
			profile = optarg;
			break;
		case 'q':
			queues = optarg;
			break;
		case 'f':
			prefetch = atoi(optarg);
			break;
		case 'i':
			idle = atoi(optarg);
			break;
		default:
			goto usage;
		}
	}
	log_init("echo_bench", LOG_WARN);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (strcmp(mode, "capture") == 0 && url != NULL && out != NULL)
		return capture(url, out, idle > 0 ? idle : 3000);
	if ((strcmp(mode, "orchestrator") == 0 ||
	     strcmp(mode, "participant") == 0) &&
	    url != NULL && profile != NULL && queues != NULL && prefetch > 0 &&
	    prefetch < 65536)
		return echo(mode, url, profile, queues, prefetch);
usage:
	fprintf(stderr, "usage: echo_bench capture --amqp URL --out PROFILE "
	                "[--idle-ms MS]\n"
	                "       echo_bench orchestrator|participant --amqp URL "
	                "--profile PROFILE --queues Q1[,Q2] [--prefetch N]\n");
	return 2;
}

/* bus.c -- the AMQP bus (see bus.h).
 *
 * Shape. One connection, one channel (1). The unconfirmed messages live in
 * an array in publish order; each has the AMQP publish seq it was last
 * sent with (0 = not sent on this connection yet). Seqs grow in array
 * order, so an ack for seq n (multiple or not) is found by binary search
 * and settled entries are compacted away from the front. A reconnect sets
 * every seq back to 0, and the next poll writes them all again.
 *
 * Reading: amqp_consume_message() handles basic.deliver; any other frame
 * makes it return AMQP_STATUS_UNEXPECTED_STATE, and the frame is then read
 * with amqp_simple_wait_frame() and dispatched (ack, nack, return, close,
 * blocked, cancel). After a failed consume the envelope is never destroyed
 * (rabbitmq-c #689: it was freed already). amqp_maybe_release_buffers()
 * runs every turn, or the per-channel pool grows without bound.
 * Waiting: rabbitmq-c polls for the whole milliseconds left before its
 * deadline, rounded down, so a wait under 1 ms is poll(fd, 0). The poll
 * loop keeps its deadline in microseconds and hands rabbitmq-c one more
 * millisecond (wait_for): before that, every bus_poll spun through its
 * last millisecond, which cost the orchestrator a fifth of a core when
 * idle and saga_bench's open loop a whole core (bench/README).
 *
 * Acks are coalesced: bus_ack only notes the tag, and before the bus next
 * reads (and before bus_poll returns) every acked tag that follows the
 * settled ones without a gap goes out as one `ack multiple` on the highest
 * of them; an acked tag above a delivery still unsettled goes alone. A
 * multiple ack never covers a delivery the caller has not settled, and
 * always names a tag the broker still holds (NOTES pitfall 7). The broker
 * spends its CPU per frame as well as per message: one ack frame per
 * delivery cost it 15-30% more per saga than one per batch (bench/README).
 */
#include "bus.h"
#include "clock.h"
#include "entropy.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>

#include "log.h"

#define CH       1
#define MAX_URLS 8

/* Delivery tags tracked for coalescing acks; a tag further than this
 * from the oldest unsettled one is acked on its own. */
#define ACK_WINDOW 65536
enum ack_state {
	TAG_NONE, /* not delivered (yet) */
	TAG_OPEN, /* delivered, not settled */
	TAG_ACK,  /* acked by the caller, not yet sent */
	TAG_DONE, /* settled and sent (a reject, a basic.get) */
};

struct pending {
	uint64_t tag;
	uint64_t seq; /* publish seq on this connection, 0 = not sent */
	bool returned;
	/* the message, one allocation: strings then body */
	char *exchange, *rk, *message_id, *correlation_id, *type, *reply_to,
	        *traceparent, *error, *content_type, *user_id;
	int64_t timestamp_ms, expiration_ms, attempts;
	bool mandatory, transient;
	bool sent;   /* written on some connection before: a resend */
	bool nacked; /* refused by the broker: resent after nack_retry_at */
	void *body;
	size_t len;
	char *mem;
	size_t memcap;
};

/* Message buffers of settled publishes, kept for the next ones: no
 * malloc per publish once the window is warm. */
#define SPARE_MAX 512
struct spare {
	char *mem;
	size_t cap;
};

struct bus {
	struct bus_config cfg;
	char *urls[MAX_URLS];
	size_t nurls, next_url;
	char *consume[BUS_MAX_CONSUME];
	size_t nconsume;
	struct bus_topology topo;     /* a deep copy of cfg->topology */
	char *topo_mem;               /* its one allocation */
	struct bus_binding *bindings; /* topo.bindings, writable */

	amqp_connection_state_t conn;
	bool connected, blocked, consuming;
	bool cancelled; /* bus_cancel: do not consume after a reconnect */
	bool quorum;    /* queue_type quorum */
	/* nacks: resent after a backoff, not at once (a queue that refuses
	 * must not turn into a busy loop); a run of them reopens the
	 * connection, since a quorum queue's channel state can stay stuck
	 * on a leader that is gone (seen on 3.10 after a node stopped) */
	int64_t nack_retry_at_ms;
	int nack_backoff_ms, nack_streak;
	size_t nnacked;
	int64_t connected_at_ms;
	uint32_t generation; /* connections made so far */
	uint64_t next_seq;
	int64_t retry_at_ms;
	int backoff_ms;
	char last_error[256];

	struct pending *p; /* unconfirmed, in publish order */
	size_t np, capp, head;
	size_t nlive;   /* entries with a message (mem != NULL) */
	size_t nunsent; /* of those, not sent on this connection (seq 0) */
	uint64_t nreturned_pending;
	struct spare spare[SPARE_MAX];
	size_t nspare;

	/* Acks, coalesced: what each delivery tag of this connection is
	 * (ACK_WINDOW tags from ack_base, by tag % ACK_WINDOW); tags below
	 * ack_base are settled. */
	uint8_t *ackst;
	uint64_t ack_base, ack_max;
	size_t nack_req;

	struct bus_stats stats;
};

/* The wait to hand rabbitmq-c for `left_us` more microseconds. It turns a
 * timeval into a deadline and polls for the whole milliseconds left until
 * it, rounded down (amqp_time_ms_until), so anything under 1 ms is
 * poll(fd, 0): a caller that asks for the last fraction of a millisecond
 * again and again spins through it (a 1 ms bus_poll spun the whole
 * millisecond; every orchestrator turn spun its last one). One more
 * millisecond makes poll() sleep at least what is left. */
static struct timeval
wait_for(int64_t left_us)
{
	struct timeval tv = {0, 0};
	if (left_us > 0) {
		left_us += 1000;
		tv.tv_sec = (time_t)(left_us / 1000000);
		tv.tv_usec = (suseconds_t)(left_us % 1000000);
	}
	return tv;
}

/* ---- URLs ----
 *
 * rabbitmq-c parses the URL (amqp_parse_url: the scheme, user:password@,
 * host or [IPv6], :port, /vhost, %-escapes). What is left here is what it
 * does not do: it writes into the string it is given (so it gets a copy),
 * it points at defaults it owns (so the parts are copied out, with their
 * length checked), it takes a missing host for localhost and port 0 for a
 * port (both refused here), and it says only AMQP_STATUS_BAD_URL: when it
 * refuses a URL, url_complaint says which part is wrong. Its escapes
 * decode to ASCII only (%00-%7f); other bytes are written as they are. */

#define URL_MAX 1024

static int
url_error(char *err, size_t errlen, const char *why)
{
	snprintf(err, errlen, "bad AMQP URL: %s", why);
	return -1;
}

/* The first bad %-escape in s (not two hex digits, or not ASCII), or
 * NULL. */
static const char *
bad_escape(const char *s)
{
	for (const char *p = strchr(s, '%'); p != NULL; p = strchr(p + 1, '%'))
		if (strspn(p + 1, "0123456789abcdefABCDEF") < 2 ||
		    strchr("01234567", p[1]) == NULL)
			return p;
	return NULL;
}

/* Why amqp_parse_url refused a URL; auth is what follows its "://". */
static const char *
url_complaint(const char *auth, char *buf, size_t cap)
{
	size_t n = strcspn(auth, "/");
	const char *at, *port;

	if (strpbrk(auth, "?#") != NULL)
		return "query (?...) and fragment (#...) are not supported";
	if (bad_escape(auth) != NULL)
		return "bad %-escape (%XX, from %00 to %7f)";
	if (auth[n] == '/' && strchr(auth + n + 1, '/') != NULL)
		return "bad vhost (use %2f for /)";
	at = memrchr(auth, '@', n);
	if (at != NULL) {
		n -= (size_t)(at + 1 - auth);
		auth = at + 1;
	}
	if (auth[0] == '[') {
		const char *close = memchr(auth, ']', n);
		if (close == NULL)
			return "unclosed [ in host";
		n -= (size_t)(close + 1 - auth);
		auth = close + 1;
	}
	port = memchr(auth, ':', n);
	if (port != NULL) {
		n -= (size_t)(port + 1 - auth);
		if (n == 0)
			return "bad port";
		snprintf(buf, cap, "port \"%.*s\" is not 1..65535", (int)n,
		         port + 1);
		return buf;
	}
	return "expected amqp[s]://[user[:password]@]host[:port][/vhost] "
	       "(%-escape : @ / [ ] in names)";
}

/* Copies a part amqp_parse_url found into out. -1 if it does not fit. */
static int
url_part(char *out, size_t cap, const char *part)
{
	size_t n = strlen(part);
	if (n >= cap)
		return -1;
	memcpy(out, part, n + 1);
	return 0;
}

int
bus_url_parse(const char *url, struct bus_url *u, char *err, size_t errlen)
{
	char copy[URL_MAX], why[128];
	struct amqp_connection_info ci;
	size_t n = strlen(url);

	memset(u, 0, sizeof(*u));
	if (strncmp(url, "amqp://", 7) != 0 && strncmp(url, "amqps://", 8) != 0)
		return url_error(err, errlen,
		                 "must start with amqp:// or amqps://");
	if (n >= sizeof(copy))
		return url_error(err, errlen, "too long");
	memcpy(copy, url, n + 1); /* amqp_parse_url writes into it */
	if (amqp_parse_url(copy, &ci) != AMQP_STATUS_OK)
		return url_error(err, errlen,
		                 url_complaint(url + (url[4] == 's' ? 8 : 7),
		                               why, sizeof(why)));
	/* a host not in the copy is rabbitmq-c's default: none was given */
	if ((uintptr_t)ci.host - (uintptr_t)copy >= sizeof(copy) ||
	    ci.host[0] == '\0')
		return url_error(err, errlen, "no host");
	if (ci.port < 1 || ci.port > 65535) {
		snprintf(why, sizeof(why), "port \"%d\" is not 1..65535",
		         ci.port);
		return url_error(err, errlen, why);
	}
	if (url_part(u->user, sizeof(u->user), ci.user) != 0 ||
	    url_part(u->password, sizeof(u->password), ci.password) != 0)
		return url_error(err, errlen, "user or password too long");
	if (url_part(u->host, sizeof(u->host), ci.host) != 0)
		return url_error(err, errlen, "host too long");
	/* "amqp://host/" has the vhost "": the default vhost, as without / */
	if (url_part(u->vhost, sizeof(u->vhost),
	             ci.vhost[0] != '\0' ? ci.vhost : "/") != 0)
		return url_error(err, errlen, "vhost too long");
	u->tls = ci.ssl != 0;
	u->port = ci.port;
	return 0;
}

void
bus_url_redact(const char *url, char *buf, size_t cap)
{
	const char *scheme = strstr(url, "://");
	const char *at, *colon, *slash;

	if (scheme == NULL) {
		snprintf(buf, cap, "(bad URL)");
		return;
	}
	scheme += 3;
	slash = strchr(scheme, '/');
	if (slash == NULL)
		slash = scheme + strlen(scheme);
	at = memchr(scheme, '@', (size_t)(slash - scheme));
	if (at == NULL) {
		snprintf(buf, cap, "%s", url);
		return;
	}
	colon = memchr(scheme, ':', (size_t)(at - scheme));
	if (colon == NULL) {
		snprintf(buf, cap, "%s", url);
		return;
	}
	snprintf(buf, cap, "%.*s:***%s", (int)(colon - url), url, at);
}

/* ---- pending messages ---- */

static char *
put(char **w, const char *s)
{
	char *start = *w;
	size_t n = s != NULL ? strlen(s) : 0;
	if (s == NULL)
		return NULL;
	memcpy(start, s, n + 1);
	*w += n + 1;
	return start;
}

static size_t
slen(const char *s)
{
	return s != NULL ? strlen(s) + 1 : 0;
}

static void
pending_free(struct bus *b, struct pending *p)
{
	if (p->mem == NULL)
		return;
	if (b->nspare < SPARE_MAX) {
		b->spare[b->nspare++] = (struct spare){p->mem, p->memcap};
	} else {
		free(p->mem);
	}
	p->mem = NULL;
	b->nlive--;
}

/* A buffer of at least n bytes: a spare one or a new one. */
static char *
buffer_get(struct bus *b, size_t n, size_t *cap)
{
	for (size_t i = b->nspare; i-- > 0;) {
		if (b->spare[i].cap >= n) {
			char *m = b->spare[i].mem;
			*cap = b->spare[i].cap;
			b->spare[i] = b->spare[--b->nspare];
			return m;
		}
	}
	*cap = (n + 511) & ~(size_t)511; /* round up: reusable by more */
	return malloc(*cap);
}

static size_t
live(const struct bus *b)
{
	return b->np - b->head;
}

/* ---- acks ---- */

static void drop_connection(struct bus *b, const char *why);

static void
ack_reset(struct bus *b)
{
	if (b->ackst != NULL)
		memset(b->ackst, TAG_NONE, ACK_WINDOW);
	b->ack_base = 1; /* delivery tags start at 1 on every channel */
	b->ack_max = 0;
	b->nack_req = 0;
}

static bool
ack_tracked(const struct bus *b, uint64_t tag)
{
	return b->ackst != NULL && tag >= b->ack_base &&
	       tag < b->ack_base + ACK_WINDOW;
}

/* A delivery (consumed or got) arrived with this tag. */
static void
ack_delivered(struct bus *b, uint64_t tag, enum ack_state st)
{
	if (tag > b->ack_max)
		b->ack_max = tag;
	if (ack_tracked(b, tag))
		b->ackst[tag % ACK_WINDOW] = (uint8_t)st;
}

/* Sends what bus_ack noted: one multiple ack for the run of settled tags
 * at the bottom, single acks for the rest. */
static void
ack_flush(struct bus *b)
{
	uint64_t last = 0;

	if (b->ackst == NULL || !b->connected)
		return;
	while (b->ack_base <= b->ack_max) {
		uint8_t *st = &b->ackst[b->ack_base % ACK_WINDOW];
		if (*st == TAG_OPEN || *st == TAG_NONE)
			break;
		if (*st == TAG_ACK) {
			last = b->ack_base;
			b->nack_req--;
		}
		*st = TAG_NONE;
		b->ack_base++;
	}
	if (last != 0 && amqp_basic_ack(b->conn, CH, last, 1) != 0) {
		drop_connection(b, "cannot send ack");
		return;
	}
	for (uint64_t t = b->ack_base;
	     b->nack_req > 0 && t <= b->ack_max && t < b->ack_base + ACK_WINDOW;
	     t++) {
		uint8_t *st = &b->ackst[t % ACK_WINDOW];
		if (*st != TAG_ACK)
			continue;
		*st = TAG_DONE;
		b->nack_req--;
		if (amqp_basic_ack(b->conn, CH, t, 0) != 0) {
			drop_connection(b, "cannot send ack");
			return;
		}
	}
}

/* ---- connection ---- */

static void set_error(struct bus *b, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void
set_error(struct bus *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b->last_error, sizeof(b->last_error), fmt, ap);
	va_end(ap);
}

static const char *
reply_text(amqp_rpc_reply_t r)
{
	static char buf[300];
	switch (r.reply_type) {
	case AMQP_RESPONSE_NORMAL:
		return "ok";
	case AMQP_RESPONSE_NONE:
		return "missing RPC reply";
	case AMQP_RESPONSE_LIBRARY_EXCEPTION:
		return amqp_error_string2(r.library_error);
	case AMQP_RESPONSE_SERVER_EXCEPTION:
		if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
			amqp_connection_close_t *m = r.reply.decoded;
			snprintf(buf, sizeof(buf), "connection closed: %u %.*s",
			         m->reply_code, (int)m->reply_text.len,
			         (const char *)m->reply_text.bytes);
			return buf;
		}
		if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
			amqp_channel_close_t *m = r.reply.decoded;
			snprintf(buf, sizeof(buf), "channel closed: %u %.*s",
			         m->reply_code, (int)m->reply_text.len,
			         (const char *)m->reply_text.bytes);
			return buf;
		}
		return "server error";
	}
	return "?";
}

static void
drop_connection(struct bus *b, const char *why)
{
	if (b->conn != NULL) {
		/* no connection.close: the peer may be gone (NOTES §1) */
		amqp_destroy_connection(b->conn);
		b->conn = NULL;
	}
	if (b->connected) {
		log_warnx("bus %s: connection lost: %s; reconnecting",
		          b->cfg.name, why);
		b->stats.reconnects++;
	}
	b->connected = b->blocked = false;
	/* a connection that dies young (e.g. a publish to a missing exchange
	 * closes the channel at once) must not reconnect in a tight loop */
	if (clock_mono_ms() - b->connected_at_ms < 2000) {
		b->backoff_ms = b->backoff_ms == 0 ? 100 : b->backoff_ms * 2;
		if (b->backoff_ms > BUS_RECONNECT_MAX_MS)
			b->backoff_ms = BUS_RECONNECT_MAX_MS;
	}
	for (size_t i = b->head; i < b->np; i++) {
		if (b->p[i].mem != NULL && b->p[i].seq != 0)
			b->nunsent++;
		b->p[i].seq = 0; /* publish again on the next connection */
		b->p[i].returned = false;
		b->p[i].nacked = false;
	}
	b->nnacked = 0;
	b->nack_streak = b->nack_backoff_ms = 0;
	b->retry_at_ms = clock_mono_ms() + b->backoff_ms;
}

static bool
rpc_ok(struct bus *b, const char *what)
{
	amqp_rpc_reply_t r = amqp_get_rpc_reply(b->conn);
	if (r.reply_type == AMQP_RESPONSE_NORMAL)
		return true;
	set_error(b, "%s: %s", what, reply_text(r));
	return false;
}

static amqp_table_entry_t *
entry(amqp_table_entry_t *e, size_t *n, const char *key)
{
	amqp_table_entry_t *x = &e[(*n)++];
	memset(x, 0, sizeof(*x));
	x->key = amqp_cstring_bytes(key);
	return x;
}

static void
entry_str(amqp_table_entry_t *e, size_t *n, const char *key, const char *v)
{
	amqp_table_entry_t *x = entry(e, n, key);
	x->value.kind = AMQP_FIELD_KIND_UTF8;
	x->value.value.bytes = amqp_cstring_bytes(v);
}

static void
entry_i64(amqp_table_entry_t *e, size_t *n, const char *key, int64_t v)
{
	amqp_table_entry_t *x = entry(e, n, key);
	x->value.kind = AMQP_FIELD_KIND_I64;
	x->value.value.i64 = v;
}

/* x-stream-offset for start s into e; false for the default (none). */
static bool
start_entry(amqp_table_entry_t *e, const struct bus_start *s)
{
	e->key = amqp_cstring_bytes("x-stream-offset");
	switch (s->from) {
	case BUS_FROM_FIRST:
	case BUS_FROM_NEXT:
		e->value.kind = AMQP_FIELD_KIND_UTF8;
		e->value.value.bytes = amqp_cstring_bytes(
		        s->from == BUS_FROM_FIRST ? "first" : "next");
		return true;
	case BUS_FROM_OFFSET:
		e->value.kind = AMQP_FIELD_KIND_I64;
		e->value.value.i64 = s->value < 0 ? 0 : s->value;
		return true;
	case BUS_FROM_TIME:
		e->value.kind = AMQP_FIELD_KIND_TIMESTAMP;
		e->value.value.u64 =
		        (uint64_t)(s->value < 0 ? 0 : s->value) / 1000;
		return true;
	case BUS_FROM_DEFAULT:
		break;
	}
	return false;
}

/* basic.consume of queue (consumer tag = its name), from where the
 * caller's start callback says. */
static int
consume_one(struct bus *b, const char *queue)
{
	struct bus_start s = {BUS_FROM_DEFAULT, 0};
	amqp_table_entry_t e;
	amqp_table_t args = amqp_empty_table;

	if (b->cfg.start != NULL)
		b->cfg.start(b->cfg.start_arg, queue, &s);
	if (start_entry(&e, &s))
		args = (amqp_table_t){1, &e};
	amqp_basic_consume(b->conn, CH, amqp_cstring_bytes(queue),
	                   amqp_cstring_bytes(queue), 0, 0, 0, args);
	return rpc_ok(b, queue) ? 0 : -1;
}

/* The reply code of r when the broker closed the channel (0 when r is
 * anything else), and its reply text in text. */
static int
channel_closed(amqp_rpc_reply_t r, char *text, size_t cap)
{
	const amqp_channel_close_t *m;

	text[0] = '\0';
	if (r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION ||
	    r.reply.id != AMQP_CHANNEL_CLOSE_METHOD)
		return 0;
	m = r.reply.decoded;
	snprintf(text, cap, "%.*s", (int)m->reply_text.len,
	         (const char *)m->reply_text.bytes);
	return m->reply_code;
}

/* A 406 "inequivalent arg 'K' ..." from RabbitMQ: K into key (the text
 * has said so since 2.x: rabbit_misc:assert_args_equivalence); false for
 * any other reply. */
static bool
inequivalent_arg(amqp_rpc_reply_t r, char *key, size_t cap, char *buf,
                 size_t bufcap)
{
	static const char mark[] = "inequivalent arg '";
	const char *k;
	size_t n;

	if (channel_closed(r, buf, bufcap) != 406 ||
	    (k = strstr(buf, mark)) == NULL)
		return false;
	k += sizeof(mark) - 1;
	n = strcspn(k, "'");
	snprintf(key, cap, "%.*s", (int)n, k);
	return true;
}

/* The channel again after the broker closed it: close-ok, open,
 * confirm.select (nothing is published before the topology is in
 * place, so publish seqs still start at 1). */
static int
reopen_channel(struct bus *b)
{
	amqp_channel_close_ok_t ok;

	if (amqp_send_method(b->conn, CH, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) !=
	    AMQP_STATUS_OK) {
		set_error(b, "cannot send channel.close-ok");
		return -1;
	}
	amqp_channel_open(b->conn, CH);
	if (!rpc_ok(b, "channel.open"))
		return -1;
	amqp_confirm_select(b->conn, CH);
	return rpc_ok(b, "confirm.select") ? 0 : -1;
}

/* The answer to declaring a keep_existing queue (bus.h): its type must
 * be the one asked; any other argument that differs is the existing
 * queue's to keep, logged with what RabbitMQ says is in effect. */
static int
declared_or_kept(struct bus *b, const struct bus_queue *q)
{
	amqp_rpc_reply_t r = amqp_get_rpc_reply(b->conn);
	char key[64], text[300];

	if (r.reply_type == AMQP_RESPONSE_NORMAL)
		return 0;
	if (!inequivalent_arg(r, key, sizeof(key), text, sizeof(text)))
		return rpc_ok(b, q->name) ? 0 : -1;
	if (strcmp(key, "x-queue-type") == 0) {
		set_error(b,
		          "queue %s exists and is not a %s (406 inequivalent "
		          "x-queue-type): a queue cannot change type; move or "
		          "export its messages, delete it once, and it is "
		          "declared again (deploy/README.md)",
		          q->name, q->stream ? "stream" : "queue of this type");
		return -1;
	}
	log_info("bus %s: queue %s kept as it exists, with its own %s (%s); "
	         "a policy may override it",
	         b->cfg.name, q->name, key, text);
	return reopen_channel(b);
}

/* The answer to a passive if_exists declare (bus.h): a queue that does
 * not exist is fine (the channel is opened again); any other error,
 * "home node ... is down or inaccessible" among them, is one. */
static int
declared_if_exists(struct bus *b, const struct bus_queue *q)
{
	amqp_rpc_reply_t r = amqp_get_rpc_reply(b->conn);
	char text[300];

	if (r.reply_type == AMQP_RESPONSE_NORMAL)
		return 0;
	if (channel_closed(r, text, sizeof(text)) != 404 ||
	    strstr(text, "no queue '") == NULL)
		return rpc_ok(b, q->name) ? 0 : -1;
	return reopen_channel(b);
}

/* Declares t's exchanges (durable); 0, or -1 after set_error. */
static int
declare_exchanges(struct bus *b, const struct bus_topology *t)
{
	for (size_t i = 0; i < t->nexchanges; i++) {
		const struct bus_exchange *x = &t->exchanges[i];
		amqp_table_entry_t e[2];
		size_t n = 0;
		if (x->alternate != NULL)
			entry_str(e, &n, "alternate-exchange", x->alternate);
		if (x->hash_property != NULL)
			entry_str(e, &n, "hash-property", x->hash_property);
		amqp_exchange_declare(b->conn, CH, amqp_cstring_bytes(x->name),
		                      amqp_cstring_bytes(x->type), 0, 1, 0, 0,
		                      (amqp_table_t){(int)n, e});
		if (!rpc_ok(b, x->name))
			return -1;
	}
	return 0;
}

/* The most arguments queue_args writes. */
#define QUEUE_ARGS 10

/* Writes queue q's x-arguments into e; returns how many. */
static size_t
queue_args(const struct bus *b, const struct bus_queue *q,
           amqp_table_entry_t e[QUEUE_ARGS])
{
	bool quorum = !q->exclusive && !q->stream &&
	              (q->quorum || (b->quorum && !q->classic));
	int64_t limit = q->delivery_limit;
	size_t n = 0;
	if (quorum && limit == 0 && q->dlx != NULL)
		limit = b->cfg.delivery_limit;
	if (q->dlx != NULL)
		entry_str(e, &n, "x-dead-letter-exchange", q->dlx);
	if (q->dlrk != NULL)
		entry_str(e, &n, "x-dead-letter-routing-key", q->dlrk);
	if (q->ttl_ms > 0)
		entry_i64(e, &n, "x-message-ttl", q->ttl_ms);
	if (q->max_length > 0)
		entry_i64(e, &n, "x-max-length", q->max_length);
	if (q->overflow != NULL)
		entry_str(e, &n, "x-overflow", q->overflow);
	if (quorum)
		entry_str(e, &n, "x-queue-type", "quorum");
	if (quorum && limit > 0)
		entry_i64(e, &n, "x-delivery-limit", limit);
	assert(!q->stream || (q->dlx == NULL && q->ttl_ms == 0 &&
	                      !q->exclusive && !q->quorum));
	if (q->stream)
		entry_str(e, &n, "x-queue-type", "stream");
	if (q->stream && q->max_age != NULL)
		entry_str(e, &n, "x-max-age", q->max_age);
	if (q->stream && q->max_bytes > 0)
		entry_i64(e, &n, "x-max-length-bytes", q->max_bytes);
	assert(n <= QUEUE_ARGS);
	return n;
}

/* Declares q, its answer checked as q asks; 0, or -1 after set_error. */
static int
declare_queue(struct bus *b, const struct bus_queue *q)
{
	amqp_table_entry_t e[QUEUE_ARGS];
	size_t n = queue_args(b, q, e);

	if (q->passive)
		n = 0; /* the owner's arguments */
	amqp_queue_declare(b->conn, CH, amqp_cstring_bytes(q->name), q->passive,
	                   !q->exclusive, q->exclusive, q->exclusive,
	                   (amqp_table_t){(int)n, e});
	assert(!q->if_exists || q->passive);
	if (q->keep_existing ? declared_or_kept(b, q) != 0
	    : q->if_exists   ? declared_if_exists(b, q) != 0
	                     : !rpc_ok(b, q->name))
		return -1;
	return 0;
}

/* Binds bd (queue or exchange); 0, or -1 after set_error. */
static int
declare_binding(struct bus *b, const struct bus_binding *bd)
{
	if (bd->queue != NULL)
		amqp_queue_bind(b->conn, CH, amqp_cstring_bytes(bd->queue),
		                amqp_cstring_bytes(bd->exchange),
		                amqp_cstring_bytes(bd->key), amqp_empty_table);
	else
		amqp_exchange_bind(
		        b->conn, CH, amqp_cstring_bytes(bd->dest_exchange),
		        amqp_cstring_bytes(bd->exchange),
		        amqp_cstring_bytes(bd->key), amqp_empty_table);
	if (!rpc_ok(b, bd->queue != NULL ? bd->queue : bd->dest_exchange))
		return -1;
	return 0;
}

/* Declares the whole topology in order; 0, or -1 after set_error. */
static int
declare(struct bus *b)
{
	const struct bus_topology *t = b->cfg.topology;
	if (t == NULL)
		return 0;
	if (declare_exchanges(b, t) != 0)
		return -1;
	for (size_t i = 0; i < t->nqueues; i++)
		if (declare_queue(b, &t->queues[i]) != 0)
			return -1;
	for (size_t i = 0; i < t->nbindings; i++)
		if (declare_binding(b, &t->bindings[i]) != 0)
			return -1;
	return 0;
}

/* The connection's socket, TLS (amqps://) as the config says, or TCP;
 * NULL after set_error. */
static amqp_socket_t *
new_socket(struct bus *b, bool tls)
{
	amqp_socket_t *sock;

	if (!tls) {
		sock = amqp_tcp_socket_new(b->conn);
		if (sock == NULL)
			set_error(b, "cannot create socket");
		return sock;
	}
	sock = amqp_ssl_socket_new(b->conn);
	if (sock == NULL) {
		set_error(b, "cannot create TLS socket");
		return NULL;
	}
	if (amqp_ssl_socket_set_ssl_versions(sock, AMQP_TLSv1_2,
	                                     AMQP_TLSvLATEST) != 0) {
		set_error(b, "cannot restrict TLS versions");
		return NULL;
	}
	amqp_ssl_socket_set_verify_peer(sock, !b->cfg.insecure);
	amqp_ssl_socket_set_verify_hostname(sock, !b->cfg.insecure);
	if (b->cfg.ca_file != NULL &&
	    amqp_ssl_socket_set_cacert(sock, b->cfg.ca_file) != 0) {
		set_error(b, "cannot load CA file %s", b->cfg.ca_file);
		return NULL;
	}
	if (b->cfg.cert_file != NULL &&
	    amqp_ssl_socket_set_key(sock, b->cfg.cert_file, b->cfg.key_file) !=
	            0) {
		set_error(b, "cannot load client certificate %s",
		          b->cfg.cert_file);
		return NULL;
	}
	return sock;
}

/* Login, asking for connection.blocked and consumer cancel
 * notifications. */
static int
login(struct bus *b, const struct bus_url *u)
{
	amqp_table_entry_t caps[2], props[1];
	amqp_table_t capt, propt;
	amqp_rpc_reply_t r;

	caps[0].key = amqp_cstring_bytes("connection.blocked");
	caps[0].value.kind = AMQP_FIELD_KIND_BOOLEAN;
	caps[0].value.value.boolean = 1;
	caps[1].key = amqp_cstring_bytes("consumer_cancel_notify");
	caps[1].value.kind = AMQP_FIELD_KIND_BOOLEAN;
	caps[1].value.value.boolean = 1;
	capt = (amqp_table_t){2, caps};
	props[0].key = amqp_cstring_bytes("capabilities");
	props[0].value.kind = AMQP_FIELD_KIND_TABLE;
	props[0].value.value.table = capt;
	propt = (amqp_table_t){1, props};
	r = amqp_login_with_properties(
	        b->conn, u->vhost, 0, 131072, b->cfg.heartbeat_s, &propt,
	        AMQP_SASL_METHOD_PLAIN, u->user, u->password);
	if (r.reply_type != AMQP_RESPONSE_NORMAL) {
		set_error(b, "login to %s:%d vhost %s as %s failed: %s",
		          u->host, u->port, u->vhost, u->user, reply_text(r));
		return -1;
	}
	return 0;
}

/* The channel, with confirms; the topology declared; consuming if asked
 * to (and not cancelled). */
static int
open_channel(struct bus *b)
{
	amqp_channel_open(b->conn, CH);
	if (!rpc_ok(b, "channel.open"))
		return -1;
	amqp_confirm_select(b->conn, CH);
	if (!rpc_ok(b, "confirm.select"))
		return -1;
	if (declare(b) != 0)
		return -1;
	b->stats.declared_ms = clock_wall_ms(); /* every binding is in place */
	if (b->nconsume > 0 && !b->cancelled) {
		amqp_basic_qos(b->conn, CH, 0, b->cfg.prefetch, 0);
		if (!rpc_ok(b, "basic.qos"))
			return -1;
		for (size_t i = 0; i < b->nconsume; i++)
			if (consume_one(b, b->consume[i]) != 0)
				return -1;
		b->consuming = true;
	}
	return 0;
}

/* One attempt at url: socket, login, channel; b->conn is the caller's to
 * destroy on failure too. */
static int
try_connect(struct bus *b, const char *url)
{
	struct bus_url u;
	char err[256];
	amqp_socket_t *sock;
	struct timeval tv = {b->cfg.connect_timeout_ms / 1000,
	                     (b->cfg.connect_timeout_ms % 1000) * 1000};
	struct timeval rpc = {b->cfg.rpc_timeout_ms / 1000,
	                      (b->cfg.rpc_timeout_ms % 1000) * 1000};
	int rc;

	if (bus_url_parse(url, &u, err, sizeof(err)) != 0) {
		set_error(b, "%s", err);
		return -1;
	}
	b->conn = amqp_new_connection();
	if (b->conn == NULL) {
		set_error(b, "out of memory");
		return -1;
	}
	sock = new_socket(b, u.tls);
	if (sock == NULL)
		return -1;
	rc = amqp_socket_open_noblock(sock, u.host, u.port, &tv);
	if (rc != AMQP_STATUS_OK) {
		set_error(b, "cannot connect to %s:%d: %s", u.host, u.port,
		          amqp_error_string2(rc));
		return -1;
	}
	amqp_set_rpc_timeout(b->conn, &rpc);
	if (login(b, &u) != 0)
		return -1;
	return open_channel(b);
}

int
bus_connect(struct bus *b, char *err, size_t errlen)
{
	char red[300];

	if (b->connected)
		return 0;
	for (size_t k = 0; k < b->nurls; k++) {
		const char *url = b->urls[b->next_url];
		b->next_url = (b->next_url + 1) % b->nurls;
		if (try_connect(b, url) == 0) {
			b->connected = true;
			b->blocked = false;
			b->generation++;
			if ((b->generation & 0xffff) ==
			    (uint32_t)(BUS_REF_FOREIGN >> 48))
				b->generation++; /* reserved (bus.h) */
			b->next_seq = 1; /* tags restart on every channel */
			ack_reset(b);
			b->connected_at_ms = clock_mono_ms();
			bus_url_redact(url, red, sizeof(red));
			if (b->cfg.quiet)
				log_debug("bus %s: connected to %s",
				          b->cfg.name, red);
			else
				log_info("bus %s: connected to %s", b->cfg.name,
				         red);
			return 0;
		}
		if (b->conn != NULL) {
			amqp_destroy_connection(b->conn);
			b->conn = NULL;
		}
		bus_url_redact(url, red, sizeof(red));
		if (err != NULL)
			snprintf(err, errlen, "%s: %s", red, b->last_error);
	}
	b->backoff_ms = b->backoff_ms == 0 ? 100 : b->backoff_ms * 2;
	if (b->backoff_ms > BUS_RECONNECT_MAX_MS)
		b->backoff_ms = BUS_RECONNECT_MAX_MS;
	{
		/* jitter: 75%..125% so a fleet does not reconnect in step */
		uint16_t r = 0;
		if (entropy_bytes(&r, sizeof(r)) != 0)
			r = 0;
		b->retry_at_ms = clock_mono_ms() + b->backoff_ms * 3 / 4 +
		                 (b->backoff_ms / 2) * r / 65535;
	}
	return -1;
}

/* ---- open / close ---- */

/* ---- the topology, copied so the caller's may go away ---- */

static int
topo_copy(struct bus *b, const struct bus_topology *t)
{
	size_t n = t->nexchanges * sizeof(struct bus_exchange) +
	           t->nqueues * sizeof(struct bus_queue) +
	           t->nbindings * sizeof(struct bus_binding);
	struct bus_exchange *ex;
	struct bus_queue *q;
	struct bus_binding *bd;
	char *at;

	for (size_t i = 0; i < t->nexchanges; i++)
		n += slen(t->exchanges[i].name) + slen(t->exchanges[i].type) +
		     slen(t->exchanges[i].alternate) +
		     slen(t->exchanges[i].hash_property);
	for (size_t i = 0; i < t->nqueues; i++)
		n += slen(t->queues[i].name) + slen(t->queues[i].dlx) +
		     slen(t->queues[i].dlrk) + slen(t->queues[i].overflow) +
		     slen(t->queues[i].max_age);
	for (size_t i = 0; i < t->nbindings; i++)
		n += slen(t->bindings[i].exchange) +
		     slen(t->bindings[i].queue) +
		     slen(t->bindings[i].dest_exchange) +
		     slen(t->bindings[i].key);
	b->topo_mem = malloc(n + 1);
	if (b->topo_mem == NULL)
		return -1;
	/* the arrays first (aligned: malloc's alignment, struct sizes) */
	ex = (struct bus_exchange *)(void *)b->topo_mem;
	q = (struct bus_queue *)(void *)(ex + t->nexchanges);
	bd = (struct bus_binding *)(void *)(q + t->nqueues);
	at = (char *)(bd + t->nbindings);
	for (size_t i = 0; i < t->nexchanges; i++) {
		ex[i].name = put(&at, t->exchanges[i].name);
		ex[i].type = put(&at, t->exchanges[i].type);
		ex[i].alternate = put(&at, t->exchanges[i].alternate);
		ex[i].hash_property = put(&at, t->exchanges[i].hash_property);
	}
	for (size_t i = 0; i < t->nqueues; i++) {
		q[i] = t->queues[i];
		q[i].name = put(&at, t->queues[i].name);
		q[i].dlx = put(&at, t->queues[i].dlx);
		q[i].dlrk = put(&at, t->queues[i].dlrk);
		q[i].overflow = put(&at, t->queues[i].overflow);
		q[i].max_age = put(&at, t->queues[i].max_age);
	}
	for (size_t i = 0; i < t->nbindings; i++) {
		bd[i].exchange = put(&at, t->bindings[i].exchange);
		bd[i].queue = put(&at, t->bindings[i].queue);
		bd[i].dest_exchange = put(&at, t->bindings[i].dest_exchange);
		bd[i].key = put(&at, t->bindings[i].key);
	}
	b->topo = (struct bus_topology){ex, t->nexchanges, q, t->nqueues,
	                                bd, t->nbindings};
	b->bindings = bd;
	return 0;
}

/* The TLS files can be read now: a clear error at start, not a failed
 * handshake later. 0, or -1 with the reason in err. */
static int
tls_files_check(const struct bus_config *cfg, char *err, size_t errlen)
{
	const struct {
		const char *path, *what, *flag;
	} f[] = {
	        {cfg->ca_file, "CA file", "--amqp-ca or SAGA_AMQP_CA"},
	        {cfg->cert_file, "client certificate",
	         "--amqp-cert or SAGA_AMQP_CERT"},
	        {cfg->key_file, "client key", "--amqp-key or SAGA_AMQP_KEY"},
	};

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		FILE *fp;
		if (f[i].path == NULL || f[i].path[0] == '\0')
			continue;
		fp = fopen(f[i].path, "r");
		if (fp == NULL) {
			snprintf(err, errlen, "cannot read the %s %s (%s): %s",
			         f[i].what, f[i].path, f[i].flag,
			         strerror(errno));
			return -1;
		}
		fclose(fp);
	}
	if ((cfg->cert_file != NULL && cfg->cert_file[0] != '\0') !=
	    (cfg->key_file != NULL && cfg->key_file[0] != '\0')) {
		snprintf(err, errlen,
		         "a client certificate needs its key and "
		         "a key its certificate (--amqp-cert and "
		         "--amqp-key)");
		return -1;
	}
	return 0;
}

/* Fills in the defaults (bus.h) for what c leaves at zero. */
static void
config_defaults(struct bus_config *c)
{
	if (c->name == NULL)
		c->name = "bus";
	if (c->heartbeat_s <= 0)
		c->heartbeat_s = 10;
	if (c->connect_timeout_ms <= 0)
		c->connect_timeout_ms = 5000;
	if (c->rpc_timeout_ms <= 0)
		c->rpc_timeout_ms = 15000;
	if (c->prefetch == 0)
		c->prefetch = 200;
	if (c->max_body == 0)
		c->max_body = 16u << 20;
	if (c->delivery_limit <= 0)
		c->delivery_limit = 20;
}

/* Sets b->quorum from the queue type; 0, or -1 with err if unknown. */
static int
queue_type_set(struct bus *b, const char *type, char *err, size_t errlen)
{
	if (type == NULL || type[0] == '\0' || strcmp(type, "classic") == 0)
		return 0;
	if (strcmp(type, "quorum") != 0) {
		snprintf(err, errlen, "queue type '%s': use classic or quorum",
		         type);
		return -1;
	}
	b->quorum = true;
	return 0;
}

/* Checks and copies cfg's URLs into b->urls; 0, or -1 with err. */
static int
urls_copy(struct bus *b, const struct bus_config *cfg, char *err, size_t errlen)
{
	char *list = strdup(cfg->url), *save = NULL, *tok;

	if (list == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (tok = strtok_r(list, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		struct bus_url u;
		char why[256];
		while (*tok == ' ')
			tok++;
		if (bus_url_parse(tok, &u, why, sizeof(why)) != 0) {
			snprintf(err, errlen, "%s", why);
			goto fail;
		}
		if (u.tls && cfg->ca_file == NULL && !cfg->insecure) {
			snprintf(err, errlen,
			         "amqps:// needs a CA file to verify the "
			         "broker (--amqp-ca or SAGA_AMQP_CA)");
			goto fail;
		}
		if (b->nurls == MAX_URLS) {
			snprintf(err, errlen, "more than %d AMQP URLs",
			         MAX_URLS);
			goto fail;
		}
		if ((b->urls[b->nurls] = strdup(tok)) == NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		b->nurls++;
	}
	if (b->nurls == 0) {
		snprintf(err, errlen, "no AMQP URL");
		goto fail;
	}
	free(list);
	return 0;
fail:
	free(list);
	return -1;
}

struct bus *
bus_open(const struct bus_config *cfg, char *err, size_t errlen)
{
	struct bus *b = calloc(1, sizeof(*b));

	if (b == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	b->cfg = *cfg;
	b->ackst = calloc(ACK_WINDOW, 1); /* NULL: acks go one by one */
	ack_reset(b);
	config_defaults(&b->cfg);
	if (queue_type_set(b, cfg->queue_type, err, errlen) != 0)
		goto fail;
	b->cfg.queue_type = NULL; /* not kept: b->quorum says it */
	if (cfg->url == NULL || cfg->url[0] == '\0') {
		snprintf(err, errlen, "no AMQP URL (--amqp or SAGA_AMQP_URL)");
		goto fail;
	}
	if (tls_files_check(cfg, err, errlen) != 0)
		goto fail;
	if (urls_copy(b, cfg, err, errlen) != 0)
		goto fail;
	if (cfg->nconsume > sizeof(b->consume) / sizeof(b->consume[0])) {
		snprintf(err, errlen, "too many queues to consume");
		goto fail;
	}
	for (size_t i = 0; i < cfg->nconsume; i++) {
		if ((b->consume[b->nconsume] = strdup(cfg->consume[i])) ==
		    NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		b->nconsume++;
	}
	if (cfg->topology != NULL && topo_copy(b, cfg->topology) != 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	b->cfg.topology = cfg->topology != NULL ? &b->topo : NULL;
	return b;
fail:
	bus_close(b);
	return NULL;
}

void
bus_close(struct bus *b)
{
	if (b == NULL)
		return;
	if (b->conn != NULL) {
		if (b->connected) {
			ack_flush(b);
			amqp_channel_close(b->conn, CH, AMQP_REPLY_SUCCESS);
			amqp_connection_close(b->conn, AMQP_REPLY_SUCCESS);
		}
		amqp_destroy_connection(b->conn);
	}
	for (size_t i = 0; i < b->np; i++)
		free(b->p[i].mem);
	free(b->p);
	for (size_t i = 0; i < b->nspare; i++)
		free(b->spare[i].mem);
	for (size_t i = 0; i < b->nurls; i++)
		free(b->urls[i]);
	for (size_t i = 0; i < b->nconsume; i++)
		free(b->consume[i]);
	free(b->topo_mem);
	free(b->ackst);
	free(b);
}

/* ---- publishing ---- */

/* Fills props from p, bar headers; exp (cap bytes) must outlive props. */
static void
props_fill(const struct pending *p, amqp_basic_properties_t *props, char *exp,
           size_t cap)
{
	memset(props, 0, sizeof(*props));
	props->_flags = AMQP_BASIC_DELIVERY_MODE_FLAG |
	                AMQP_BASIC_CONTENT_TYPE_FLAG |
	                AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TIMESTAMP_FLAG;
	props->delivery_mode = p->transient ? 1 : 2;
	props->content_type = amqp_cstring_bytes(
	        p->content_type != NULL ? p->content_type
	                                : "application/msgpack");
	props->message_id = amqp_cstring_bytes(p->message_id);
	props->timestamp = (uint64_t)(p->timestamp_ms / 1000);
	if (p->correlation_id != NULL) {
		props->_flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
		props->correlation_id = amqp_cstring_bytes(p->correlation_id);
	}
	if (p->type != NULL) {
		props->_flags |= AMQP_BASIC_TYPE_FLAG;
		props->type = amqp_cstring_bytes(p->type);
	}
	if (p->reply_to != NULL) {
		props->_flags |= AMQP_BASIC_REPLY_TO_FLAG;
		props->reply_to = amqp_cstring_bytes(p->reply_to);
	}
	if (p->user_id != NULL) {
		props->_flags |= AMQP_BASIC_USER_ID_FLAG;
		props->user_id = amqp_cstring_bytes(p->user_id);
	}
	if (p->expiration_ms > 0) {
		snprintf(exp, cap, "%lld", (long long)p->expiration_ms);
		props->_flags |= AMQP_BASIC_EXPIRATION_FLAG;
		props->expiration = amqp_cstring_bytes(exp);
	}
}

/* The most headers headers_fill writes. */
#define PUBLISH_HEADERS 5

/* Writes p's headers into h; returns how many. */
static size_t
headers_fill(const struct pending *p, amqp_table_entry_t h[PUBLISH_HEADERS])
{
	size_t nh = 0;

	if (p->traceparent != NULL)
		entry_str(h, &nh, "traceparent", p->traceparent);
	/* the timestamp with its milliseconds (bus.h, struct bus_delivery) */
	entry_i64(h, &nh, BUS_HEADER_PUBLISHED_MS, p->timestamp_ms);
	if (p->error != NULL)
		entry_str(h, &nh, "x-saga-error", p->error);
	if (p->attempts > 0)
		entry_i64(h, &nh, "x-saga-attempts", p->attempts);
	if (p->sent) {
		amqp_table_entry_t *x = entry(h, &nh, "x-republished");
		x->value.kind = AMQP_FIELD_KIND_BOOLEAN;
		x->value.value.boolean = 1;
	}
	assert(nh <= PUBLISH_HEADERS);
	return nh;
}

/* Publishes p with the next seq; 0, or -1 (the connection dropped). */
static int
send_one(struct bus *b, struct pending *p)
{
	amqp_basic_properties_t props;
	amqp_table_entry_t h[PUBLISH_HEADERS];
	size_t nh;
	char exp[32];
	int rc;

	props_fill(p, &props, exp, sizeof(exp));
	nh = headers_fill(p, h);
	if (nh > 0) {
		props._flags |= AMQP_BASIC_HEADERS_FLAG;
		props.headers = (amqp_table_t){(int)nh, h};
	}
	rc = amqp_basic_publish(b->conn, CH, amqp_cstring_bytes(p->exchange),
	                        amqp_cstring_bytes(p->rk), p->mandatory, 0,
	                        &props, (amqp_bytes_t){p->len, p->body});
	if (rc != AMQP_STATUS_OK) {
		drop_connection(b, amqp_error_string2(rc));
		return -1;
	}
	p->seq = b->next_seq++;
	p->sent = true;
	b->nunsent--;
	return 0;
}

/* Writes every message not yet sent on this connection. */
static void
send_pending(struct bus *b)
{
	bool hold;
	if (b->nunsent == 0)
		return; /* the usual case: no scan of the window */
	hold = b->nnacked > 0 && clock_mono_ms() < b->nack_retry_at_ms;
	for (size_t i = b->head; i < b->np && b->connected && !b->blocked;
	     i++) {
		if (b->p[i].seq != 0 || b->p[i].mem == NULL)
			continue;
		if (b->p[i].nacked) {
			if (hold)
				continue;
			b->p[i].nacked = false;
			b->nnacked--;
		}
		if (send_one(b, &b->p[i]) != 0)
			return;
		if (b->generation > 1 || b->p[i].returned)
			b->stats.republished++;
	}
}

bool
bus_message_fits(const struct bus *b, const struct bus_message *m)
{
	return m->message_id != NULL && m->exchange != NULL &&
	       m->routing_key != NULL && m->len <= b->cfg.max_body &&
	       strlen(m->routing_key) <= 255 && strlen(m->exchange) <= 255 &&
	       (m->user_id == NULL || strlen(m->user_id) <= 255);
}

size_t
bus_max_body(const struct bus *b)
{
	return b->cfg.max_body;
}

/* Makes room in b->p for one more entry; 0, or -1 out of memory. */
static int
window_room(struct bus *b)
{
	if (b->head > 0 && b->head == b->np) {
		b->head = b->np = 0; /* everything settled: start over */
	}
	if (b->np == b->capp) {
		/* compact the settled prefix before growing */
		if (b->head > 0) {
			memmove(b->p, b->p + b->head, live(b) * sizeof(*b->p));
			b->np -= b->head;
			b->head = 0;
		}
		if (b->np == b->capp) {
			size_t cap = b->capp ? b->capp * 2 : 256;
			struct pending *n = realloc(b->p, cap * sizeof(*n));
			if (n == NULL)
				return -1;
			b->p = n;
			b->capp = cap;
		}
	}
	return 0;
}

/* Copies m and tag into p, in one buffer; 0, or -1 out of memory. */
static int
pending_fill(struct bus *b, struct pending *p, const struct bus_message *m,
             uint64_t tag)
{
	size_t need = slen(m->exchange) + slen(m->routing_key) +
	              slen(m->message_id) + slen(m->correlation_id) +
	              slen(m->type) + slen(m->reply_to) + slen(m->traceparent) +
	              slen(m->error) + slen(m->content_type) +
	              slen(m->user_id) + m->len + 1;
	char *w;

	memset(p, 0, sizeof(*p));
	p->mem = buffer_get(b, need, &p->memcap);
	if (p->mem == NULL)
		return -1;
	w = p->mem;
	p->exchange = put(&w, m->exchange);
	p->rk = put(&w, m->routing_key);
	p->message_id = put(&w, m->message_id);
	p->correlation_id = put(&w, m->correlation_id);
	p->type = put(&w, m->type);
	p->reply_to = put(&w, m->reply_to);
	p->traceparent = put(&w, m->traceparent);
	p->error = put(&w, m->error);
	p->content_type = put(&w, m->content_type);
	p->user_id = put(&w, m->user_id);
	p->body = w;
	if (m->len > 0)
		memcpy(w, m->body, m->len);
	p->len = m->len;
	p->tag = tag;
	/* every message says when it was first published (a resend keeps
	 * it): shards tell old orders by it (orchestrator/svc/shard.h) */
	p->timestamp_ms =
	        m->timestamp_ms > 0 ? m->timestamp_ms : clock_wall_ms();
	p->expiration_ms = m->expiration_ms;
	p->attempts = m->attempts;
	p->mandatory = m->mandatory;
	p->transient = m->transient;
	return 0;
}

int
bus_publish(struct bus *b, const struct bus_message *m, uint64_t tag)
{
	struct pending *p;

	if (!bus_message_fits(b, m))
		return -1;
	if (window_room(b) != 0)
		return -1;
	p = &b->p[b->np];
	if (pending_fill(b, p, m, tag) != 0)
		return -1;
	b->np++;
	b->nlive++;
	b->nunsent++;
	b->stats.published++;
	if (b->connected && !b->blocked)
		send_one(b, p);
	return 0;
}

/* Index of the live entry sent with seq, or -1 (binary search: sent
 * entries have increasing seqs; unsent ones (0) come after them). */
static long
find_seq(struct bus *b, uint64_t seq)
{
	size_t lo = b->head, hi = b->np;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint64_t s = b->p[mid].seq;
		if (s == 0 || s > seq) {
			/* unsent entries sort last; settled entries keep
			 * their seq, so the order holds */
			hi = mid;
		} else if (s < seq) {
			lo = mid + 1;
		} else {
			return (long)mid;
		}
	}
	return -1;
}

static void
settle_entry(struct bus *b, struct pending *p, bool ack,
             const struct bus_handlers *h, int *events)
{
	if (p->mem == NULL)
		return;
	if (!ack) {
		/* nacked: send it again, after the backoff */
		b->stats.nacked++;
		if (p->seq != 0)
			b->nunsent++;
		p->seq = 0;
		if (!p->nacked)
			b->nnacked++;
		p->nacked = true;
		return;
	}
	if (p->returned) {
		b->stats.returned++;
		if (h != NULL && h->on_confirm != NULL)
			h->on_confirm(h->arg, p->tag, BUS_RETURNED);
	} else {
		b->stats.confirmed++;
		if (h != NULL && h->on_confirm != NULL)
			h->on_confirm(h->arg, p->tag, BUS_ACK);
	}
	(*events)++;
	pending_free(b, p);
}

static void
handle_confirm(struct bus *b, uint64_t seq, bool multiple, bool ack,
               const struct bus_handlers *h, int *events)
{
	if (ack) {
		b->nack_streak = 0;
		b->nack_backoff_ms = 0;
	} else {
		b->nack_streak++;
		b->nack_backoff_ms =
		        b->nack_backoff_ms == 0 ? 100 : b->nack_backoff_ms * 2;
		if (b->nack_backoff_ms > 2000)
			b->nack_backoff_ms = 2000;
		b->nack_retry_at_ms = clock_mono_ms() + b->nack_backoff_ms;
	}
	if (multiple) {
		for (size_t i = b->head; i < b->np; i++) {
			if (b->p[i].seq == 0 || b->p[i].seq > seq)
				break;
			settle_entry(b, &b->p[i], ack, h, events);
		}
	} else {
		long i = find_seq(b, seq);
		if (i >= 0)
			settle_entry(b, &b->p[i], ack, h, events);
	}
	/* nacked entries went back to seq 0 but stay in place: they are
	 * sent again by send_pending; the seq order then no longer holds
	 * for them, so move them to the end */
	if (!ack) {
		size_t n = b->np;
		for (size_t i = b->head; i < n; i++) {
			if (b->p[i].mem != NULL && b->p[i].seq == 0 &&
			    i + 1 < b->np) {
				struct pending tmp = b->p[i];
				memmove(&b->p[i], &b->p[i + 1],
				        (b->np - i - 1) * sizeof(*b->p));
				b->p[b->np - 1] = tmp;
				n--;
				i--;
			}
		}
	}
	while (b->head < b->np && b->p[b->head].mem == NULL)
		b->head++;
	if (!ack && b->nack_streak >= 5) {
		b->nack_streak = 0;
		drop_connection(b, "the broker refused publishes five times "
		                   "running (nack); opening a new connection");
	}
}

static void
handle_return(struct bus *b, amqp_frame_t *f)
{
	amqp_message_t msg;
	amqp_rpc_reply_t r;
	amqp_basic_return_t *ret = f->payload.method.decoded;

	(void)ret;
	/* the header and body follow: drain them or the stream falls out
	 * of step */
	r = amqp_read_message(b->conn, f->channel, &msg, 0);
	if (r.reply_type != AMQP_RESPONSE_NORMAL) {
		drop_connection(b, "cannot read returned message");
		return;
	}
	if (msg.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
		amqp_bytes_t id = msg.properties.message_id;
		for (size_t i = b->head; i < b->np; i++) {
			struct pending *p = &b->p[i];
			if (p->mem != NULL && p->seq != 0 && !p->returned &&
			    strlen(p->message_id) == id.len &&
			    memcmp(p->message_id, id.bytes, id.len) == 0) {
				p->returned = true;
				break;
			}
		}
	}
	amqp_destroy_message(&msg);
}

/* ---- consuming ---- */

static void
copy_bytes(char *dst, size_t cap, amqp_bytes_t b, bool present)
{
	size_t n = present ? b.len : 0;
	if (n >= cap)
		n = cap - 1;
	if (n > 0)
		memcpy(dst, b.bytes, n);
	dst[n] = '\0';
}

static const amqp_field_value_t *
table_get(const amqp_table_t *t, const char *key)
{
	size_t kl = strlen(key);
	for (int i = 0; i < t->num_entries; i++)
		if (t->entries[i].key.len == kl &&
		    memcmp(t->entries[i].key.bytes, key, kl) == 0)
			return &t->entries[i].value;
	return NULL;
}

static bool
bytes_eq(amqp_bytes_t b, const char *s)
{
	return b.len == strlen(s) && memcmp(b.bytes, s, b.len) == 0;
}

static long
field_int(const amqp_field_value_t *v)
{
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
	case AMQP_FIELD_KIND_U32:
		return (long)v->value.u32;
	case AMQP_FIELD_KIND_I64:
		return (long)v->value.i64;
	case AMQP_FIELD_KIND_U64:
		return (long)v->value.u64;
	default:
		return 0;
	}
}

/* When the message was published: the x-published-ms header (ours, to the
 * millisecond) if it agrees with the AMQP timestamp's second, else that
 * timestamp (whole seconds), else 0. */
static int64_t
published_at(const amqp_basic_properties_t *p)
{
	bool has_ts = (p->_flags & AMQP_BASIC_TIMESTAMP_FLAG) != 0;
	int64_t secs = has_ts ? (int64_t)p->timestamp : 0, ms = 0;
	const amqp_field_value_t *v = NULL;

	if (p->_flags & AMQP_BASIC_HEADERS_FLAG)
		v = table_get(&p->headers, BUS_HEADER_PUBLISHED_MS);
	if (v != NULL && v->kind == AMQP_FIELD_KIND_I64)
		ms = v->value.i64;
	else if (v != NULL && v->kind == AMQP_FIELD_KIND_U64)
		ms = (int64_t)(v->value.u64 & INT64_MAX);
	return ms > 0 && (!has_ts || ms / 1000 == secs) ? ms : secs * 1000;
}

/* x-death: an array of tables; the counts of {queue, rejected} and
 * {queue, delivery_limit} (a quorum queue's limit). */
static long
death_count(const amqp_basic_properties_t *p, const char *queue)
{
	const amqp_field_value_t *xd;
	long n = 0;
	if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
		return 0;
	xd = table_get(&p->headers, "x-death");
	if (xd == NULL || xd->kind != AMQP_FIELD_KIND_ARRAY)
		return 0;
	for (int i = 0; i < xd->value.array.num_entries; i++) {
		const amqp_field_value_t *e = &xd->value.array.entries[i];
		const amqp_field_value_t *q, *r, *c;
		if (e->kind != AMQP_FIELD_KIND_TABLE)
			continue;
		q = table_get(&e->value.table, "queue");
		r = table_get(&e->value.table, "reason");
		c = table_get(&e->value.table, "count");
		if (q != NULL && r != NULL && c != NULL &&
		    (q->kind == AMQP_FIELD_KIND_UTF8 ||
		     q->kind == AMQP_FIELD_KIND_BYTES) &&
		    (r->kind == AMQP_FIELD_KIND_UTF8 ||
		     r->kind == AMQP_FIELD_KIND_BYTES) &&
		    bytes_eq(q->value.bytes, queue) &&
		    (bytes_eq(r->value.bytes, "rejected") ||
		     bytes_eq(r->value.bytes, "delivery_limit")))
			n += field_int(c);
	}
	return n;
}

static void
header_str(const amqp_basic_properties_t *p, const char *key, char *dst,
           size_t cap)
{
	const amqp_field_value_t *v;
	dst[0] = '\0';
	if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
		return;
	v = table_get(&p->headers, key);
	if (v != NULL && (v->kind == AMQP_FIELD_KIND_UTF8 ||
	                  v->kind == AMQP_FIELD_KIND_BYTES))
		copy_bytes(dst, cap, v->value.bytes, true);
}

static uint64_t
make_ref(const struct bus *b, uint64_t tag)
{
	return ((uint64_t)(b->generation & 0xffff) << 48) |
	       (tag & 0xffffffffffffULL);
}

static void
to_delivery(struct bus *b, const amqp_basic_properties_t *p, amqp_bytes_t body,
            struct bus_delivery *d, char (*s)[256], const char *queue)
{
	copy_bytes(s[0], 256, p->message_id,
	           p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG);
	copy_bytes(s[1], 256, p->correlation_id,
	           p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG);
	copy_bytes(s[2], 256, p->type, p->_flags & AMQP_BASIC_TYPE_FLAG);
	copy_bytes(s[3], 256, p->reply_to,
	           p->_flags & AMQP_BASIC_REPLY_TO_FLAG);
	copy_bytes(s[4], 256, p->content_type,
	           p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG);
	copy_bytes(s[12], 256, p->user_id, p->_flags & AMQP_BASIC_USER_ID_FLAG);
	d->user_id = s[12];
	header_str(p, "traceparent", s[5], 256);
	header_str(p, "x-saga-error", s[6], 256);
	header_str(p, "x-first-death-queue", s[10], 256);
	header_str(p, "x-first-death-reason", s[11], 256);
	d->death_queue = s[10];
	d->death_reason = s[11];
	d->message_id = s[0];
	d->correlation_id = s[1];
	d->type = s[2];
	d->reply_to = s[3];
	d->content_type = s[4];
	d->traceparent = s[5];
	d->error = s[6];
	d->timestamp_ms = published_at(p);
	d->rejected_count = death_count(p, queue);
	d->stream_offset = -1;
	if (p->_flags & AMQP_BASIC_HEADERS_FLAG) {
		const amqp_field_value_t *o =
		        table_get(&p->headers, "x-stream-offset");
		if (o != NULL && field_int(o) >= 0)
			d->stream_offset = field_int(o);
	}
	d->republished = (p->_flags & AMQP_BASIC_HEADERS_FLAG) &&
	                 table_get(&p->headers, "x-republished") != NULL;
	if (p->_flags & AMQP_BASIC_HEADERS_FLAG) {
		const amqp_field_value_t *a =
		        table_get(&p->headers, "x-saga-attempts");
		long n = a != NULL ? field_int(a) : 0;
		d->attempts = n > 0 && n < 1000000 ? n : 0;
	}
	d->body = body.bytes;
	d->len = body.len;
	(void)b;
}

static void
handle_delivery(struct bus *b, amqp_envelope_t *env,
                const struct bus_handlers *h, int *events)
{
	struct bus_delivery d;
	char s[13][256];

	memset(&d, 0, sizeof(d));
	copy_bytes(s[7], 256, env->consumer_tag, true); /* = queue name */
	copy_bytes(s[8], 256, env->exchange, true);
	to_delivery(b, &env->message.properties, env->message.body, &d, s,
	            s[7]);
	d.ref = make_ref(b, env->delivery_tag);
	d.queue = s[7];
	d.exchange = s[8];
	copy_bytes(s[9], 256, env->routing_key, true);
	d.routing_key = s[9];
	d.redelivered = env->redelivered;
	if (env->message.body.len > b->cfg.max_body) {
		b->stats.oversize++;
		log_warnx("bus %s: rejecting a %zu-byte delivery on %s (limit "
		          "%zu)",
		          b->cfg.name, env->message.body.len, d.queue,
		          b->cfg.max_body);
		ack_delivered(b, env->delivery_tag, TAG_DONE);
		amqp_basic_reject(b->conn, CH, env->delivery_tag, 0);
		return;
	}
	ack_delivered(b, env->delivery_tag, TAG_OPEN);
	b->stats.delivered++;
	(*events)++;
	if (h != NULL && h->on_delivery != NULL)
		h->on_delivery(h->arg, &d);
}

/* On the broker's channel.close: sends close-ok, drops the connection. */
static void
channel_close_frame(struct bus *b, const amqp_channel_close_t *m)
{
	char why[300];
	amqp_channel_close_ok_t ok;

	snprintf(why, sizeof(why), "channel closed by the broker: %u %.*s",
	         m->reply_code, (int)m->reply_text.len,
	         (const char *)m->reply_text.bytes);
	amqp_send_method(b->conn, CH, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
	drop_connection(b, why);
}

/* On the broker's connection.close: sends close-ok, drops it. */
static void
connection_close_frame(struct bus *b, const amqp_connection_close_t *m)
{
	char why[300];
	amqp_connection_close_ok_t ok;

	snprintf(why, sizeof(why), "connection closed by the broker: %u %.*s",
	         m->reply_code, (int)m->reply_text.len,
	         (const char *)m->reply_text.bytes);
	amqp_send_method(b->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
	drop_connection(b, why);
}

/* Notes connection.blocked or .unblocked, logging a change. */
static void
set_blocked(struct bus *b, bool blocked)
{
	if (blocked && !b->blocked)
		log_warnx("bus %s: the broker blocked publishing "
		          "(resource alarm)",
		          b->cfg.name);
	if (!blocked && b->blocked)
		log_info("bus %s: publishing unblocked", b->cfg.name);
	b->blocked = blocked;
}

/* Reads one non-deliver frame and acts on it. */
static void
handle_frame(struct bus *b, const struct bus_handlers *h, int *events)
{
	amqp_frame_t f;
	struct timeval tv = {0, 0};
	int rc = amqp_simple_wait_frame_noblock(b->conn, &f, &tv);

	if (rc == AMQP_STATUS_TIMEOUT)
		return;
	if (rc != AMQP_STATUS_OK) {
		drop_connection(b, amqp_error_string2(rc));
		return;
	}
	if (f.frame_type != AMQP_FRAME_METHOD)
		return; /* a stray header/body: ignore */
	switch (f.payload.method.id) {
	case AMQP_BASIC_ACK_METHOD: {
		amqp_basic_ack_t *a = f.payload.method.decoded;
		handle_confirm(b, a->delivery_tag, a->multiple, true, h,
		               events);
		break;
	}
	case AMQP_BASIC_NACK_METHOD: {
		amqp_basic_nack_t *n = f.payload.method.decoded;
		handle_confirm(b, n->delivery_tag, n->multiple, false, h,
		               events);
		break;
	}
	case AMQP_BASIC_RETURN_METHOD:
		handle_return(b, &f);
		break;
	case AMQP_CHANNEL_CLOSE_METHOD:
		channel_close_frame(b, f.payload.method.decoded);
		break;
	case AMQP_CONNECTION_CLOSE_METHOD:
		connection_close_frame(b, f.payload.method.decoded);
		break;
	case AMQP_CONNECTION_BLOCKED_METHOD:
		set_blocked(b, true);
		break;
	case AMQP_CONNECTION_UNBLOCKED_METHOD:
		set_blocked(b, false);
		break;
	case AMQP_BASIC_CANCEL_METHOD:
		drop_connection(b, "the broker cancelled a consumer");
		break;
	default:
		break;
	}
}

/* Connects if due, else sleeps toward it; true if connected. */
static bool
reconnect_or_sleep(struct bus *b, int64_t deadline)
{
	char err[512];
	int64_t left;

	if (clock_mono_ms() >= b->retry_at_ms &&
	    bus_connect(b, err, sizeof(err)) != 0)
		log_warnx("bus %s: %s; retrying in %d ms", b->cfg.name, err,
		          b->backoff_ms);
	if (b->connected)
		return true;
	left = (deadline - clock_mono_us()) / 1000;
	if (left > 0) {
		int64_t wait = b->retry_at_ms - clock_mono_ms();
		struct timespec ts;
		if (wait > left)
			wait = left;
		if (wait < 1)
			wait = 1;
		ts.tv_sec = wait / 1000;
		ts.tv_nsec = (wait % 1000) * 1000000;
		nanosleep(&ts, NULL);
	}
	return false;
}

/* Returns how long (us) the next read may wait: see the caps below. */
static int64_t
read_wait_us(const struct bus *b, int64_t deadline, int events)
{
	int64_t left = deadline - clock_mono_us(); /* microseconds */
	if (events > 0 || left < 0)
		left = 0;
	/* never sleep past a heartbeat interval without reading */
	if (left > b->cfg.heartbeat_s * 500000L)
		left = b->cfg.heartbeat_s * 500000L;
	/* nor past the resend of nacked messages */
	if (b->nnacked > 0 &&
	    left > (b->nack_retry_at_ms - clock_mono_ms()) * 1000)
		left = b->nack_retry_at_ms > clock_mono_ms()
		               ? (b->nack_retry_at_ms - clock_mono_ms()) * 1000
		               : 0;
	return left;
}

/* Reads for up to tv, handles what came; true if nothing came in time. */
static bool
read_once(struct bus *b, const struct timeval *tv, const struct bus_handlers *h,
          int *events)
{
	amqp_envelope_t env;
	amqp_rpc_reply_t r = amqp_consume_message(b->conn, &env, tv, 0);

	if (r.reply_type == AMQP_RESPONSE_NORMAL) {
		handle_delivery(b, &env, h, events);
		amqp_destroy_envelope(&env);
	} else if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
	           r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
		handle_frame(b, h, events);
	} else if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
	           r.library_error == AMQP_STATUS_TIMEOUT) {
		/* nothing (more) to read */
		if (tv->tv_sec > 0 || tv->tv_usec > 0)
			b->stats.idle_reads++;
		return true;
	} else {
		/* #689: the envelope was already freed */
		drop_connection(b, reply_text(r));
	}
	return false;
}

static int
poll_inner(struct bus *b, int timeout_ms, const struct bus_handlers *h)
{
	int events = 0;
	int64_t deadline =
	        clock_mono_us() + (timeout_ms > 0 ? timeout_ms : 0) * 1000L;

	for (;;) {
		struct timeval tv;

		if (!b->connected && !reconnect_or_sleep(b, deadline)) {
			if (clock_mono_us() >= deadline)
				return events;
			continue;
		}
		send_pending(b);
		ack_flush(b);
		if (!b->connected)
			continue;
		amqp_maybe_release_buffers(b->conn);
		tv = wait_for(read_wait_us(b, deadline, events));
		if (read_once(b, &tv, h, &events) &&
		    (clock_mono_us() >= deadline || events > 0))
			return events;
		if (events >= 1000)
			return events;
		if (events > 0 && b->connected &&
		    !amqp_data_in_buffer(b->conn) &&
		    !amqp_frames_enqueued(b->conn))
			return events;
	}
}

int
bus_poll(struct bus *b, int timeout_ms, const struct bus_handlers *h)
{
	int events = poll_inner(b, timeout_ms, h);
	ack_flush(b); /* what the handlers acked goes out now */
	return events;
}

int
bus_flush(struct bus *b, int timeout_ms, const struct bus_handlers *h)
{
	int64_t deadline = clock_mono_ms() + timeout_ms;
	while (live(b) > 0) {
		int64_t left = deadline - clock_mono_ms();
		if (b->nlive == 0) {
			b->head = b->np = 0;
			break;
		}
		if (left <= 0)
			return -1;
		bus_poll(b, (int)(left < 100 ? left : 100), h);
	}
	return 0;
}

int
bus_ack(struct bus *b, uint64_t ref, bool multiple)
{
	uint64_t tag = ref & 0xffffffffffffULL;

	if ((ref >> 48) != (b->generation & 0xffff) || !b->connected)
		return 0; /* from an old connection: already requeued */
	if (ack_tracked(b, tag)) {
		/* noted; sent (coalesced) before the bus next reads */
		for (uint64_t t = multiple ? b->ack_base : tag; t <= tag; t++) {
			uint8_t *st = &b->ackst[t % ACK_WINDOW];
			if (*st == TAG_OPEN || (t == tag && *st == TAG_NONE)) {
				*st = TAG_ACK;
				b->nack_req++;
			}
		}
		return 0;
	}
	if (b->ackst != NULL && tag < b->ack_base)
		return 0; /* settled already (in an earlier multiple ack) */
	/* beyond the window (a delivery far below it left unsettled): sent
	 * now; a multiple one settles everything the window holds too */
	if (multiple && b->ackst != NULL) {
		uint64_t end = b->ack_base + ACK_WINDOW;
		for (uint64_t t = b->ack_base; t <= b->ack_max && t < end;
		     t++) {
			uint8_t *st = &b->ackst[t % ACK_WINDOW];
			if (*st == TAG_ACK)
				b->nack_req--;
			if (*st == TAG_OPEN || *st == TAG_ACK)
				*st = TAG_DONE;
		}
	}
	if (amqp_basic_ack(b->conn, CH, tag, multiple) != 0) {
		drop_connection(b, "cannot send ack");
		return 0;
	}
	return 0;
}

int
bus_reject(struct bus *b, uint64_t ref, bool requeue)
{
	uint64_t tag = ref & 0xffffffffffffULL;

	if ((ref >> 48) != (b->generation & 0xffff) || !b->connected)
		return 0;
	if (ack_tracked(b, tag)) {
		uint8_t *st = &b->ackst[tag % ACK_WINDOW];
		if (*st == TAG_ACK)
			return 0; /* acked already: the ack stands */
		*st = TAG_DONE;
	}
	if (amqp_basic_reject(b->conn, CH, tag, requeue) != 0) {
		drop_connection(b, "cannot send reject");
		return 0;
	}
	return 0;
}

int
bus_cancel(struct bus *b)
{
	b->cancelled = true;
	ack_flush(b);
	if (!b->connected || !b->consuming)
		return 0;
	for (size_t i = 0; i < b->nconsume; i++) {
		amqp_basic_cancel(b->conn, CH,
		                  amqp_cstring_bytes(b->consume[i]));
		if (!rpc_ok(b, "basic.cancel")) {
			drop_connection(b, b->last_error);
			return -1;
		}
	}
	b->consuming = false;
	b->cancelled = true; /* and do not resume after a reconnect */
	return 0;
}

size_t
bus_unconfirmed(const struct bus *b)
{
	return b->nlive;
}

bool
bus_connected(const struct bus *b)
{
	return b->connected;
}

bool
bus_blocked(const struct bus *b)
{
	return b->blocked;
}

const struct bus_stats *
bus_stats(const struct bus *b)
{
	return &b->stats;
}

int
bus_queue_info(struct bus *b, const char *queue, uint32_t *messages,
               uint32_t *consumers)
{
	amqp_queue_declare_ok_t *ok;
	if (!b->connected)
		return -1;
	ok = amqp_queue_declare(b->conn, CH, amqp_cstring_bytes(queue), 1, 0, 0,
	                        0, amqp_empty_table);
	if (ok == NULL) {
		rpc_ok(b, queue);
		drop_connection(b, b->last_error); /* 404 closed the channel */
		return -1;
	}
	*messages = ok->message_count;
	*consumers = ok->consumer_count;
	return 0;
}

int
bus_unbind(struct bus *b, const char *exchange, const char *queue,
           const char *key)
{
	/* from the copy, so a reconnect does not bind it again */
	struct bus_binding *bd = b->bindings;
	for (size_t i = 0; i < b->topo.nbindings; i++) {
		if (bd[i].queue == NULL || strcmp(bd[i].queue, queue) != 0 ||
		    strcmp(bd[i].exchange, exchange) != 0 ||
		    strcmp(bd[i].key, key) != 0)
			continue;
		memmove(&bd[i], &bd[i + 1],
		        (b->topo.nbindings - i - 1) * sizeof(*bd));
		b->topo.nbindings--;
		break;
	}
	if (!b->connected)
		return -1;
	amqp_queue_unbind(b->conn, CH, amqp_cstring_bytes(queue),
	                  amqp_cstring_bytes(exchange), amqp_cstring_bytes(key),
	                  amqp_empty_table);
	if (!rpc_ok(b, queue)) {
		drop_connection(b, b->last_error);
		return -1;
	}
	return 0;
}

int
bus_queue_delete(struct bus *b, const char *queue, bool if_empty)
{
	if (!b->connected)
		return -1;
	amqp_queue_delete(b->conn, CH, amqp_cstring_bytes(queue), 0,
	                  if_empty ? 1 : 0);
	if (!rpc_ok(b, queue)) {
		drop_connection(b, b->last_error);
		return -1;
	}
	return 0;
}

int
bus_queue_purge(struct bus *b, const char *queue, uint32_t *n)
{
	amqp_queue_purge_ok_t *ok;
	if (!b->connected)
		return -1;
	ok = amqp_queue_purge(b->conn, CH, amqp_cstring_bytes(queue));
	if (ok == NULL) {
		rpc_ok(b, queue);
		drop_connection(b, b->last_error);
		return -1;
	}
	*n = ok->message_count;
	return 0;
}

int
bus_get(struct bus *b, const char *queue,
        int (*fn)(void *arg, const struct bus_delivery *d), void *arg,
        bool *got)
{
	amqp_rpc_reply_t r;
	amqp_message_t msg;
	amqp_basic_get_ok_t *ok;
	struct bus_delivery d;
	char s[13][256];
	uint64_t tag;
	int keep;

	*got = false;
	if (!b->connected)
		return -1;
	r = amqp_basic_get(b->conn, CH, amqp_cstring_bytes(queue), 0);
	if (r.reply_type != AMQP_RESPONSE_NORMAL) {
		set_error(b, "basic.get %s: %s", queue, reply_text(r));
		drop_connection(b, b->last_error);
		return -1;
	}
	if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
		return 0;
	ok = r.reply.decoded;
	tag = ok->delivery_tag;
	ack_delivered(b, tag, TAG_DONE); /* settled below, at once */
	memset(&d, 0, sizeof(d));
	copy_bytes(s[7], 256, ok->exchange, true);
	copy_bytes(s[8], 256, ok->routing_key, true);
	r = amqp_read_message(b->conn, CH, &msg, 0);
	if (r.reply_type != AMQP_RESPONSE_NORMAL) {
		drop_connection(b, "cannot read message from basic.get");
		return -1;
	}
	to_delivery(b, &msg.properties, msg.body, &d, s, queue);
	d.queue = queue;
	d.exchange = s[7];
	d.routing_key = s[8];
	d.redelivered = ok->redelivered;
	d.ref = make_ref(b, tag);
	*got = true;
	keep = fn(arg, &d);
	amqp_destroy_message(&msg);
	if (keep == 1)
		amqp_basic_ack(b->conn, CH, tag, 0);
	else
		amqp_basic_reject(b->conn, CH, tag, 1);
	return 0;
}

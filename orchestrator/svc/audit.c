/* audit.c -- reading one order's events from the audit stream (audit.h).
 *
 * Why it is shaped so. A stream over AMQP 0-9-1 is a consumer that never
 * ends: the broker sends what is retained from the offset asked, then
 * waits for more. So "the order's events" means "those published before
 * the read began", and the read watches for two signs that it is past
 * them: a message whose publish time (lib/bus.h: x-published-ms, set by
 * every daemon's bus) is after the read began or after the query's
 * until, which a busy stream gives at once; and a short silence, which a
 * quiet one gives. The first is checked against this host's clock plus
 * a skew margin, so a publisher whose clock runs a little ahead does not
 * end the read early. Every delivery is acked as it comes: on a stream
 * an ack removes nothing, it only gives the consumer credit for more.
 *
 * The stream holds every order's events, so a read scans many to find
 * a few; starting at a time (the saga's creation, --since) keeps that
 * short, and the cap bounds it when it cannot be (a read from the first
 * message of a week's stream).
 */
#include "audit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus.h"
#include "clock.h"
#include "jsonout.h"

#define SCAN_DEFAULT    1000000
#define IDLE_DEFAULT_MS 500
#define FIRST_EXTRA_MS  2000 /* the first message: attaching takes time */
#define TIMEOUT_DEFAULT 30000
#define SKEW_MS         2000 /* another host's clock may be ahead */
#define PREFETCH        1000

int
audit_max_age_check(const char *s, char *err, size_t errlen)
{
	size_t digits = s != NULL ? strspn(s, "0123456789") : 0;
	const char *bad = NULL;

	if (s == NULL || s[0] == '\0')
		bad = "empty";
	else if (digits == 0)
		bad = "no number first";
	else if (digits > 9)
		bad = "too large";
	else if (s[digits] == '\0')
		bad = "no unit";
	else if (strchr("YMDhms", s[digits]) == NULL || s[digits + 1] != '\0')
		bad = "not one unit of Y M D h m s after the number";
	else if (strtol(s, NULL, 10) == 0)
		bad = "zero";
	if (bad == NULL)
		return 0;
	snprintf(err, errlen,
	         "bad retention \"%s\": %s (a whole number and one unit: Y "
	         "years, M months, D days, h hours, m minutes, s seconds, "
	         "e.g. 7D or 36h)",
	         s != NULL ? s : "", bad);
	return -1;
}

/* n digits at *p into *out (advancing *p): 0, or -1. */
static int
digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

/* ".123" (any number of digits, ms kept) at *p: 0, or -1. */
static int
fraction(const char **p, int *ms)
{
	int scale = 100;

	*ms = 0;
	if (**p != '.')
		return 0;
	(*p)++;
	if (**p < '0' || **p > '9')
		return -1;
	for (; **p >= '0' && **p <= '9'; (*p)++) {
		*ms += (**p - '0') * scale;
		scale /= 10;
	}
	return 0;
}

/* "Z" or "+hh:mm" / "-hh:mm" at p, the whole rest: the offset in
 * seconds east of UTC into *off. 0, or -1. */
static int
zone(const char *p, long *off)
{
	int h, m, sign;

	if ((p[0] == 'Z' || p[0] == 'z') && p[1] == '\0') {
		*off = 0;
		return 0;
	}
	if (p[0] != '+' && p[0] != '-')
		return -1;
	sign = p[0] == '-' ? -1 : 1;
	p++;
	if (digits(&p, 2, &h) != 0 || *p++ != ':' || digits(&p, 2, &m) != 0 ||
	    *p != '\0' || h > 23 || m > 59)
		return -1;
	*off = sign * (h * 3600L + m * 60L);
	return 0;
}

int
audit_parse_time(const char *s, int64_t *ms)
{
	struct tm tm = {0};
	const char *p = s;
	int y, mo, d, h, mi, sec, frac;
	long off;
	time_t t;

	if (digits(&p, 4, &y) != 0 || *p++ != '-' || digits(&p, 2, &mo) != 0 ||
	    *p++ != '-' || digits(&p, 2, &d) != 0 ||
	    (*p != 'T' && *p != 't' && *p != ' '))
		return -1;
	p++;
	if (digits(&p, 2, &h) != 0 || *p++ != ':' || digits(&p, 2, &mi) != 0 ||
	    *p++ != ':' || digits(&p, 2, &sec) != 0 ||
	    fraction(&p, &frac) != 0 || zone(p, &off) != 0)
		return -1;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
	    mi > 59 || sec > 60)
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (t == (time_t)-1 || tm.tm_mday != d) /* Feb 30 normalised */
		return -1;
	*ms = ((int64_t)t - off) * 1000 + frac;
	return 0;
}

/* ---- the read ---- */

struct reader {
	const struct audit_query *q;
	audit_event_fn fn;
	void *arg;
	struct audit_result *res;
	struct bus *bus;
	int64_t stop_after_ms; /* a message published after: caught up */
	size_t max_scan;
	bool done;
	const struct bus_delivery *d; /* the one being read */
};

static void
start_at(void *arg, const char *queue, struct bus_start *out)
{
	const struct reader *r = arg;

	(void)queue;
	if (r->q->since_ms > 0)
		*out = (struct bus_start){
		        BUS_FROM_TIME, r->q->since_ms - AUDIT_START_MARGIN_MS};
	else
		*out = (struct bus_start){BUS_FROM_FIRST, 0};
}

/* One envelope of a message (a bundle has several): the saga's, from
 * since on, go to the callback. */
static void
each_envelope(void *arg, const void *body, size_t len, const char *tp)
{
	struct reader *r = arg;
	struct envelope env;
	char err[256];

	(void)tp;
	if (r->done)
		return;
	if (envelope_decode(body, len, &env, err, sizeof(err)) != 0) {
		r->res->undecodable++;
	} else if ((r->q->saga == NULL || strcmp(env.saga, r->q->saga) == 0) &&
	           (r->d->timestamp_ms > 0 ? r->d->timestamp_ms : env.ts) >=
	                   r->q->since_ms) {
		struct audit_event e = {r->d->stream_offset, r->d->timestamp_ms,
		                        r->d->routing_key, &env};
		r->res->matched++;
		if (r->fn(r->arg, &e) != 0) {
			r->res->end = AUDIT_STOPPED;
			r->done = true;
		}
	}
	envelope_clear(&env);
}

static void
on_delivery(void *arg, const struct bus_delivery *d)
{
	struct reader *r = arg;
	char err[256];

	bus_ack(r->bus, d->ref, false); /* credit: nothing is removed */
	if (r->done)
		return;
	if (d->timestamp_ms > r->stop_after_ms) {
		r->res->end = AUDIT_CAUGHT_UP;
		r->done = true;
		return;
	}
	r->res->scanned++;
	r->res->last_offset = d->stream_offset;
	r->d = d;
	/* an event's correlation_id is its saga: most are skipped here */
	if (r->q->saga == NULL || d->correlation_id[0] == '\0' ||
	    strcmp(d->correlation_id, r->q->saga) == 0 ||
	    strcmp(d->type, ENVELOPE_BUNDLE_TYPE) == 0)
		if (envelope_each(d->type, d->body, d->len, d->traceparent,
		                  each_envelope, r, err, sizeof(err)) != 0)
			r->res->undecodable++;
	if (!r->done && r->res->scanned >= r->max_scan) {
		r->res->end = AUDIT_CAPPED;
		r->done = true;
	}
}

/* Polls until the read is done; -1 with err if the connection is lost. */
static int
read_loop(struct reader *r, int idle_ms, int timeout_ms, char *err,
          size_t errlen)
{
	const struct bus_handlers h = {on_delivery, NULL, r};
	int64_t begin = clock_mono_ms(), last = begin;
	uint64_t reconnects = bus_stats(r->bus)->reconnects;

	while (!r->done) {
		int64_t now, quiet;
		int n = bus_poll(r->bus, 50, &h);

		now = clock_mono_ms();
		if (!bus_connected(r->bus) ||
		    bus_stats(r->bus)->reconnects != reconnects) {
			snprintf(err, errlen,
			         "lost the connection to the broker while "
			         "reading %s",
			         AUDIT_QUEUE);
			return -1;
		}
		if (n > 0)
			last = now;
		quiet = idle_ms + (r->res->scanned == 0 ? FIRST_EXTRA_MS : 0);
		if (!r->done && now - last >= quiet) {
			r->res->end = AUDIT_CAUGHT_UP;
			r->done = true;
		} else if (!r->done && now - begin >= timeout_ms) {
			r->res->end = AUDIT_TIMED_OUT;
			r->done = true;
		}
	}
	return 0;
}

int
audit_read(const struct bus_config *conn, const struct audit_query *q,
           audit_event_fn fn, void *arg, struct audit_result *res, char *err,
           size_t errlen)
{
	static const char *const consume[] = {AUDIT_QUEUE};
	struct reader r = {.q = q, .fn = fn, .arg = arg, .res = res};
	struct bus_config bc = *conn;
	int64_t now = clock_wall_ms();
	char why[512];
	int rc;

	*res = (struct audit_result){.last_offset = -1};
	r.max_scan = q->max_scan > 0 ? q->max_scan : SCAN_DEFAULT;
	r.stop_after_ms = now + SKEW_MS;
	if (q->until_ms > 0 && q->until_ms < r.stop_after_ms)
		r.stop_after_ms = q->until_ms;
	bc.topology = NULL; /* the orchestrator declares it */
	bc.consume = consume;
	bc.nconsume = 1;
	bc.prefetch = PREFETCH;
	bc.start = start_at;
	bc.start_arg = &r;
	bc.quiet = true; /* a reader per page view: no line each */
	r.bus = bus_open(&bc, why, sizeof(why));
	if (r.bus == NULL) {
		snprintf(err, errlen, "%s", why);
		return -1;
	}
	if (bus_connect(r.bus, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "cannot read %s: %s", AUDIT_QUEUE, why);
		bus_close(r.bus);
		return -1;
	}
	rc = read_loop(&r, q->idle_ms > 0 ? q->idle_ms : IDLE_DEFAULT_MS,
	               q->timeout_ms > 0 ? q->timeout_ms : TIMEOUT_DEFAULT, err,
	               errlen);
	bus_close(r.bus);
	return rc;
}

const char *
audit_end_text(const struct audit_result *r, char *buf, size_t cap)
{
	switch (r->end) {
	case AUDIT_CAUGHT_UP:
		snprintf(buf, cap, "caught up after scanning %zu messages",
		         r->scanned);
		break;
	case AUDIT_CAPPED:
		snprintf(buf, cap,
		         "stopped after scanning %zu messages (the cap): older "
		         "or newer events may be missing; narrow the time",
		         r->scanned);
		break;
	case AUDIT_TIMED_OUT:
		snprintf(buf, cap,
		         "stopped at the time limit after scanning %zu "
		         "messages: events may be missing",
		         r->scanned);
		break;
	case AUDIT_STOPPED:
		snprintf(buf, cap, "stopped after scanning %zu messages",
		         r->scanned);
		break;
	}
	return buf;
}

/* ---- output ---- */

json_t *
audit_event_json(const struct audit_event *e)
{
	const struct envelope *v = e->env;

	return json_pack("{s:I,s:I,s:I,s:o,s:o,s:o,s:o}", "offset",
	                 (json_int_t)e->offset, "at", (json_int_t)v->ts,
	                 "published_at", (json_int_t)e->published_ms, "type",
	                 jsonout_str(v->type), "message_id", jsonout_str(v->id),
	                 "step", jsonout_str(v->step), "payload",
	                 jsonout_value(&v->payload));
}

void
audit_event_line(const struct audit_event *e, char *buf, size_t cap)
{
	static const char *const keys[] = {"saga_status", "reason",
	                                   "customer_id", "total_cents",
	                                   "currency",    "payment_method"};
	const struct envelope *v = e->env;
	time_t t = (time_t)(v->ts / 1000);
	struct tm tm;
	size_t n;

	gmtime_r(&t, &tm);
	n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, ".%03dZ %s %s",
	                      (int)(v->ts % 1000), v->type, v->id);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && n < cap; i++) {
		const struct value *f = value_map_get(&v->payload, keys[i]);
		char text[128];
		if (f == NULL || value_scalar_text(f, text, sizeof(text)) < 0)
			continue;
		n += (size_t)snprintf(buf + n, cap - n, " %s=%s", keys[i],
		                      text);
	}
}

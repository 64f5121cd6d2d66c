/* busloop.c -- the durable loop's transport on lib/bus (busloop.h). */
#include "busloop.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "envelope.h"
#include "log.h"

/* The bundler's publish function. A row it held fits the bus
 * (busloop_publish holds nothing else), so a row that fails here failed
 * for lack of memory: it goes back to the loop as NACKed, which publishes
 * it again at its next turn. A bundle that fails is the bundler's: it
 * sends the rows alone. */
static int
publish_fn(void *arg, const struct bus_message *m, uint64_t tag)
{
	struct busloop *bl = arg;

	if (bus_publish(bl->bus, m, tag) == 0)
		return 0;
	assert(bl->d != NULL); /* set by the adapter's poll, before any
	                        * turn publishes */
	if (!(tag & BUNDLER_TAG)) {
		log_error("cannot publish %s (%s) now: out of memory; it goes "
		          "out again at the next turn",
		          m->type != NULL ? m->type : "a message",
		          m->message_id);
		durable_confirmed(bl->d, tag, DURABLE_NACK);
	}
	return -1;
}

/* A row the bus can never take, logged and given back as REFUSED. */
static void
refuse(struct busloop *bl, const struct durable_msg *m, uint64_t tag)
{
	char why[128];

	if (m->len > bus_max_body(bl->bus))
		snprintf(why, sizeof(why),
		         "%zu bytes, more than the %zu a message may have",
		         m->len, bus_max_body(bl->bus));
	else
		snprintf(why, sizeof(why),
		         "an id missing, or a name over 255 bytes");
	log_error("cannot publish %s (%s) to %s/%s: %s; dropped",
	          m->type != NULL ? m->type : "a message",
	          m->message_id != NULL ? m->message_id : "no id",
	          m->exchange != NULL ? m->exchange : "",
	          m->routing_key != NULL ? m->routing_key : "", why);
	durable_confirmed(bl->d, tag, DURABLE_REFUSED);
}

int
busloop_publish(void *ctx, const struct durable_msg *m, uint64_t tag)
{
	struct busloop *bl = ctx;
	struct bus_message bm = {
	        .exchange = m->exchange,
	        .routing_key = m->routing_key,
	        .message_id = m->message_id,
	        .correlation_id = m->correlation_id,
	        .type = m->type,
	        .reply_to = m->reply_to,
	        .traceparent = m->traceparent,
	        .timestamp_ms = m->created_ms,
	        .expiration_ms = m->expiration_ms,
	        .mandatory = m->mandatory,
	        .body = m->body,
	        .len = m->len,
	};

	/* the bundler publishes later: it holds only what the bus takes */
	if (m->bundle && bus_message_fits(bl->bus, &bm) &&
	    bundler_hold(bl->bundler, &bm, tag, publish_fn, bl) == 0)
		return 0; /* goes out at the flush, maybe with others */
	if (bus_publish(bl->bus, &bm, tag) == 0)
		return 0;
	if (bus_message_fits(bl->bus, &bm))
		return -1; /* out of memory: the loop tries at its next turn */
	refuse(bl, m, tag);
	return 0;
}

void
busloop_flush(void *ctx)
{
	struct busloop *bl = ctx;
	bundler_flush(bl->bundler, publish_fn, bl);
}

bool
busloop_ready(void *ctx)
{
	struct busloop *bl = ctx;
	return bus_connected(bl->bus) && !bus_blocked(bl->bus);
}

int
busloop_stop(void *ctx)
{
	struct busloop *bl = ctx;
	return bus_cancel(bl->bus);
}

size_t
busloop_unconfirmed(void *ctx)
{
	struct busloop *bl = ctx;
	return bus_unconfirmed(bl->bus) + bundler_rows_extra(bl->bundler);
}

/* ---- copies of held deliveries ---- */

/* What h's copy is: made again from these if it does not land. */
static void
copy_note(struct held *h, bool dlq, const char *why, int64_t attempts)
{
	h->copy_dlq = dlq;
	h->copy_attempts = attempts;
	if (why == h->copy_why) /* made again: the reason it was given */
		return;
	free(h->copy_why);
	h->copy_why = why != NULL ? strdup(why) : NULL;
}

/* h's copy did not land: made again (busloop_copy_waiting) from after_ms
 * on, the original unsettled meanwhile. Logged the first time. */
static void
copy_later(struct busloop *bl, struct held *h, const char *rk, int64_t after_ms,
           const char *what)
{
	if (!h->copy_again)
		log_error("saga=%s the copy of %s to %s %s; the delivery "
		          "stays unsettled and is copied again",
		          h->correlation_id,
		          h->message_id[0] ? h->message_id : "a bundle's item",
		          rk, what);
	h->copy_again = true;
	h->copy_at_ms = clock_mono_ms() + after_ms;
	bl->copies_wait = true;
}

/* Where h's copy goes (busloop.copy_exchange, copy_dlq_key). */
static const char *
copy_key(const struct busloop *bl, const struct held *h, char *buf, size_t cap)
{
	if (h->copy_dlq && bl->copy_dlq_key != NULL)
		return bl->copy_dlq_key;
	snprintf(buf, cap, "%s.%s", h->queue, h->copy_dlq ? "dlq" : "retry");
	return buf;
}

void
busloop_copy(struct busloop *bl, struct held *h, bool dlq, const char *why,
             int64_t attempts)
{
	char rk[300];
	struct bus_message m;
	struct envelope e;
	uint64_t ref = h->ref;

	assert(bl->copy_exchange != NULL);
	copy_note(h, dlq, why, attempts);
	held_message(h, &e, &m);
	m.exchange = bl->copy_exchange;
	m.routing_key = copy_key(bl, h, rk, sizeof(rk));
	/* a dead letter always has a reason; a retry copy none */
	m.error = h->copy_why != NULL ? h->copy_why
	          : dlq               ? "(the reason was lost: out of memory)"
	                              : NULL;
	m.attempts = attempts;
	m.mandatory = true; /* else an unroutable copy is dropped unsaid */
	h->copying = true;
	if (bus_publish(bl->bus, &m, ref | HELD_COPY_TAG) == 0) {
		h->copy_again = false;
	} else if (bus_message_fits(bl->bus, &m)) {
		copy_later(bl, h, m.routing_key, 0,
		           "cannot be published now: out of memory");
	} else {
		log_error("cannot copy %s to %s: it can never be (a name over "
		          "255 bytes); acked",
		          m.message_id, m.routing_key);
		busloop_settle(bl, ref, false);
	}
	envelope_clear(&e);
}

void
busloop_copy_waiting(struct busloop *bl)
{
	struct held_set *s = &bl->held;
	int64_t now;

	if (!bl->copies_wait) /* every poll: nothing more on the way */
		return;
	now = clock_mono_ms();
	bl->copies_wait = false;
	/* backwards: a copy settled here moves the last entry, which has
	 * been seen, into its place (held_drop) */
	for (size_t i = s->n; i-- > 0;) {
		struct held *h = &s->v[i];
		if (!h->copy_again)
			continue;
		if (h->copy_at_ms > now)
			bl->copies_wait = true; /* not yet */
		else
			busloop_copy(bl, h, h->copy_dlq, h->copy_why,
			             h->copy_attempts);
	}
}

/* A copy came back unroutable: made again copy_retry_ms later. */
static void
copy_returned(struct busloop *bl, uint64_t ref)
{
	struct held *h = held_find(&bl->held, ref);
	char rk[300];

	if (h == NULL)
		return;
	copy_later(bl, h, copy_key(bl, h, rk, sizeof(rk)), bl->copy_retry_ms,
	           "came back unroutable (is the queue deleted?)");
}

/* The broker's answer for a bundle, passed on to each of its rows. */
struct row_answer {
	struct durable *d;
	enum durable_confirm c;
};

static void
row_answered(void *arg, uint64_t tag)
{
	const struct row_answer *r = arg;
	durable_confirmed(r->d, tag, r->c);
}

void
busloop_confirmed(struct busloop *bl, uint64_t tag, enum bus_confirm c)
{
	struct row_answer r = {bl->d,
	                       c == BUS_ACK ? DURABLE_ACK : DURABLE_RETURNED};

	if ((tag & HELD_COPY_TAG) && c == BUS_RETURNED) {
		copy_returned(bl, tag & ~HELD_COPY_TAG);
		return;
	}
	if (tag & HELD_COPY_TAG) { /* the copy is safe: drop the original */
		busloop_settle(bl, tag & ~HELD_COPY_TAG, false);
		return;
	}
	if (bundler_confirmed(bl->bundler, tag, row_answered, &r) == 0)
		row_answered(&r, tag); /* a row published alone */
}

void
busloop_settle(struct busloop *bl, uint64_t ref, bool reject)
{
	held_settle(&bl->held, bl->bundler, bl->bus, ref, reject);
}

void
busloop_close(struct busloop *bl)
{
	bus_close(bl->bus);
	held_clear(&bl->held);
	bundler_free(bl->bundler);
	bl->bus = NULL;
	bl->bundler = NULL;
}

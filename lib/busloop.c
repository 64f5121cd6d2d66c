/* busloop.c -- the durable loop's transport on lib/bus (busloop.h). */
#include "busloop.h"

#include <assert.h>
#include <stdio.h>

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

/* bundler.c -- see bundler.h. */
#include "bundler.h"

#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "items.h"

#define OPEN_MAX 16 /* routing keys filled at once */

/* A held command: its strings and body live in its bundle's arena
 * (offsets: the arena grows). */
struct row {
	uint64_t tag;
	size_t id, saga, type, tp, body, len;
	int64_t ts;
};

/* A bundle being filled: one destination. */
struct open {
	char exchange[256], rk[256], reply_to[256];
	bool mandatory;
	struct row *rows; /* max */
	size_t n;
	char *arena;
	size_t used, cap;
};

/* A bundle sent and not confirmed: its rows' tags. */
struct flight {
	bool used;
	size_t n;
	uint64_t *tags; /* max */
};

struct bundler {
	size_t max;
	struct open open[OPEN_MAX];
	size_t nopen;
	struct flight *fl;
	size_t nfl;
	size_t rows_inflight, bundles_inflight;
	struct items in; /* bundles of replies with items open */
};

struct bundler *
bundler_new(size_t max)
{
	struct bundler *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	if (max < 1)
		max = 1;
	if (max > ENVELOPE_BUNDLE_MAX)
		max = ENVELOPE_BUNDLE_MAX;
	b->max = max;
	for (size_t i = 0; i < OPEN_MAX; i++) {
		b->open[i].rows = calloc(max, sizeof(struct row));
		if (b->open[i].rows == NULL) {
			bundler_free(b);
			return NULL;
		}
	}
	return b;
}

void
bundler_free(struct bundler *b)
{
	if (b == NULL)
		return;
	for (size_t i = 0; i < OPEN_MAX; i++) {
		free(b->open[i].rows);
		free(b->open[i].arena);
	}
	for (size_t i = 0; i < b->nfl; i++)
		free(b->fl[i].tags);
	free(b->fl);
	items_free(&b->in);
	free(b);
}

/* ---- outgoing ---- */

/* Copies s (NULL as "") into o's arena; its offset, or -1 (OOM). */
static long
put(struct open *o, const void *s, size_t len)
{
	size_t at = o->used;

	if (o->used + len + 1 > o->cap) {
		size_t cap = o->cap ? o->cap : 4096;
		char *n;
		while (cap < o->used + len + 1)
			cap *= 2;
		n = realloc(o->arena, cap);
		if (n == NULL)
			return -1;
		o->arena = n;
		o->cap = cap;
	}
	if (len > 0)
		memcpy(o->arena + at, s, len);
	o->arena[at + len] = '\0';
	o->used += len + 1;
	return (long)at;
}

static long
put_str(struct open *o, const char *s)
{
	return put(o, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

static const char *
at(const struct open *o, size_t off)
{
	return o->arena + off;
}

static const char *
or_null(const char *s)
{
	return s[0] != '\0' ? s : NULL;
}

/* A row of o as the message it would be alone. */
static struct bus_message
row_message(const struct open *o, const struct row *r)
{
	struct bus_message m = {
	        .exchange = o->exchange,
	        .routing_key = o->rk,
	        .message_id = at(o, r->id),
	        .correlation_id = or_null(at(o, r->saga)),
	        .type = or_null(at(o, r->type)),
	        .reply_to = or_null(o->reply_to),
	        .traceparent = or_null(at(o, r->tp)),
	        .timestamp_ms = r->ts,
	        .mandatory = o->mandatory,
	        .body = at(o, r->body),
	        .len = r->len,
	};
	return m;
}

static int
publish_singles(struct open *o, bundler_publish_fn fn, void *arg)
{
	int rc = 0;

	for (size_t i = 0; i < o->n; i++) {
		struct bus_message m = row_message(o, &o->rows[i]);
		if (fn(arg, &m, o->rows[i].tag) != 0)
			rc = -1; /* the row is fn's to answer for */
	}
	return rc;
}

/* A free flight slot (grown as needed); -1 on OOM. */
static long
flight_slot(struct bundler *b)
{
	size_t i;

	for (i = 0; i < b->nfl && b->fl[i].used; i++)
		;
	if (i == b->nfl) {
		size_t cap = b->nfl ? b->nfl * 2 : 16;
		struct flight *n = realloc(b->fl, cap * sizeof(*n));
		if (n == NULL)
			return -1;
		memset(n + b->nfl, 0, (cap - b->nfl) * sizeof(*n));
		b->fl = n;
		b->nfl = cap;
	}
	if (b->fl[i].tags == NULL) {
		b->fl[i].tags = calloc(b->max, sizeof(uint64_t));
		if (b->fl[i].tags == NULL)
			return -1;
	}
	return (long)i;
}

/* Sends what o holds and empties it. */
static int
send_open(struct bundler *b, struct open *o, bundler_publish_fn fn, void *arg)
{
	struct envelope_item items[ENVELOPE_BUNDLE_MAX];
	struct bus_message m = {0};
	char id[ENVELOPE_ID_MAX], *body = NULL;
	size_t len = 0;
	long slot = -1;
	int rc = 0;

	if (o->n == 0)
		return 0;
	for (size_t i = 0; i < o->n; i++)
		items[i] = (struct envelope_item){at(o, o->rows[i].body),
		                                  o->rows[i].len,
		                                  at(o, o->rows[i].tp)};
	if (o->n == 1 || envelope_new_id(id, sizeof(id), "bundle") != 0 ||
	    (slot = flight_slot(b)) < 0 ||
	    envelope_bundle_encode(items, o->n, &body, &len) != 0) {
		rc = publish_singles(o, fn, arg);
		goto out;
	}
	m.exchange = o->exchange;
	m.routing_key = o->rk;
	m.message_id = id;
	m.type = ENVELOPE_BUNDLE_TYPE;
	m.reply_to = or_null(o->reply_to);
	m.mandatory = o->mandatory;
	m.body = body;
	m.len = len;
	if (fn(arg, &m, BUNDLER_TAG | (uint64_t)slot) != 0) {
		rc = publish_singles(o, fn, arg); /* too large: one by one */
	} else {
		struct flight *f = &b->fl[slot];
		f->used = true;
		f->n = o->n;
		for (size_t i = 0; i < o->n; i++)
			f->tags[i] = o->rows[i].tag;
		b->rows_inflight += o->n;
		b->bundles_inflight++;
	}
	free(body);
out:
	o->n = 0;
	o->used = 0;
	return rc;
}

static bool
same_place(const struct open *o, const struct bus_message *m)
{
	return o->mandatory == m->mandatory &&
	       strcmp(o->exchange, m->exchange) == 0 &&
	       strcmp(o->rk, m->routing_key) == 0 &&
	       strcmp(o->reply_to, m->reply_to != NULL ? m->reply_to : "") == 0;
}

int
bundler_hold(struct bundler *b, const struct bus_message *m, uint64_t tag,
             bundler_publish_fn fn, void *arg)
{
	struct open *o = NULL;
	struct row r;
	long id, saga, type, tp, body;
	size_t i;

	if (strlen(m->exchange) >= sizeof(o->exchange) ||
	    strlen(m->routing_key) >= sizeof(o->rk) ||
	    (m->reply_to != NULL && strlen(m->reply_to) >= sizeof(o->reply_to)))
		return -1;
	for (i = 0; i < b->nopen && o == NULL; i++)
		if (same_place(&b->open[i], m))
			o = &b->open[i];
	if (o == NULL) {
		if (b->nopen < OPEN_MAX) {
			o = &b->open[b->nopen++];
		} else { /* every slot taken: send the fullest, reuse it */
			o = &b->open[0];
			for (i = 1; i < OPEN_MAX; i++)
				if (b->open[i].n > o->n)
					o = &b->open[i];
			send_open(b, o, fn, arg); /* fn answers for a row
			                           * it did not send */
		}
		o->n = 0;
		o->used = 0;
		o->mandatory = m->mandatory;
		strcpy(o->exchange, m->exchange);
		strcpy(o->rk, m->routing_key);
		strcpy(o->reply_to, m->reply_to != NULL ? m->reply_to : "");
	}
	if ((id = put_str(o, m->message_id)) < 0 ||
	    (saga = put_str(o, m->correlation_id)) < 0 ||
	    (type = put_str(o, m->type)) < 0 ||
	    (tp = put_str(o, m->traceparent)) < 0 ||
	    (body = put(o, m->body, m->len)) < 0)
		return -1;
	r = (struct row){tag,          (size_t)id,     (size_t)saga,
	                 (size_t)type, (size_t)tp,     (size_t)body,
	                 m->len,       m->timestamp_ms};
	o->rows[o->n++] = r;
	if (o->n == b->max)
		send_open(b, o, fn, arg); /* as in the flush */
	return 0;
}

int
bundler_flush(struct bundler *b, bundler_publish_fn fn, void *arg)
{
	int rc = 0;

	for (size_t i = 0; i < b->nopen; i++)
		if (send_open(b, &b->open[i], fn, arg) != 0)
			rc = -1;
	b->nopen = 0;
	return rc;
}

int
bundler_confirmed(struct bundler *b, uint64_t tag,
                  void (*row)(void *arg, uint64_t tag), void *arg)
{
	uint64_t slot = tag & ~BUNDLER_TAG;
	struct flight *f;

	if ((tag & BUNDLER_TAG) == 0 || (tag >> 62) != 0 || slot >= b->nfl ||
	    !b->fl[slot].used)
		return 0;
	f = &b->fl[slot];
	f->used = false;
	b->rows_inflight -= f->n;
	b->bundles_inflight--;
	for (size_t i = 0; i < f->n; i++)
		row(arg, f->tags[i]);
	return 1;
}

size_t
bundler_rows_extra(const struct bundler *b)
{
	return b->rows_inflight - b->bundles_inflight;
}

/* ---- incoming ---- */

#define ITEM_BITS 9 /* > log2(ENVELOPE_BUNDLE_MAX) */
#define ITEM_MASK ((UINT64_C(1) << 48) - 1)

int
bundler_items(struct bundler *b, uint64_t ref, size_t n, uint64_t *first)
{
	long slot = items_open(&b->in, ref, n);

	if (slot < 0 || (uint64_t)slot > (ITEM_MASK >> ITEM_BITS))
		return -1;
	*first = BUNDLER_ITEM | ((uint64_t)slot << ITEM_BITS);
	return 0;
}

/* The slot of an item's reference, or -1 for any other reference. */
static long
slot_of(const struct bundler *b, uint64_t ref)
{
	uint64_t slot = (ref & ITEM_MASK) >> ITEM_BITS;

	if ((ref & ~ITEM_MASK) != BUNDLER_ITEM || !items_is_open(&b->in, slot))
		return -1;
	return (long)slot;
}

bool
bundler_is_item(const struct bundler *b, uint64_t ref)
{
	return slot_of(b, ref) >= 0;
}

enum bundler_settle
bundler_settle(struct bundler *b, uint64_t ref, bool reject, uint64_t *bundle)
{
	long slot = slot_of(b, ref);

	if (slot < 0)
		return BUNDLER_PLAIN;
	switch (items_settle(&b->in, (size_t)slot, reject, bundle)) {
	case ITEMS_ACK:
		return BUNDLER_ACK;
	case ITEMS_REJECT:
		return BUNDLER_REJECT;
	case ITEMS_WAIT:
		break;
	}
	return BUNDLER_WAIT;
}

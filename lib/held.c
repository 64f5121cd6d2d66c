/* held.c -- see held.h. */
#include "held.h"

#include <stdlib.h>
#include <string.h>

#define HELD_FIELDS 7

_Static_assert((HELD_COPY_TAG & BUNDLER_TAG) == 0 &&
                       (HELD_COPY_TAG & BUS_REF_FOREIGN) == 0,
               "a copy's tag is told apart from bundles and items");

static const char *
nz(const char *s)
{
	return s != NULL ? s : "";
}

static int
grow(struct held_set *s)
{
	size_t cap;
	struct held *v;

	if (s->n < s->cap)
		return 0;
	cap = s->cap ? s->cap * 2 : 256;
	v = realloc(s->v, cap * sizeof(*v));
	if (v == NULL)
		return -1;
	s->v = v;
	s->cap = cap;
	return 0;
}

struct held *
held_add(struct held_set *s, const struct bus_delivery *d, const char *queue)
{
	const char *f[HELD_FIELDS] = {queue != NULL ? queue : d->queue,
	                              d->message_id,
	                              d->correlation_id,
	                              d->type,
	                              d->reply_to,
	                              d->traceparent,
	                              d->content_type};
	const char **dst[HELD_FIELDS];
	size_t n = d->len + 1, l[HELD_FIELDS];
	struct held *h;
	char *w;

	for (int i = 0; i < HELD_FIELDS; i++)
		n += (l[i] = strlen(nz(f[i]))) + 1;
	if (grow(s) != 0)
		return NULL;
	h = &s->v[s->n];
	memset(h, 0, sizeof(*h));
	if ((h->mem = malloc(n)) == NULL)
		return NULL;
	dst[0] = &h->queue, dst[1] = &h->message_id;
	dst[2] = &h->correlation_id, dst[3] = &h->type;
	dst[4] = &h->reply_to, dst[5] = &h->traceparent;
	dst[6] = &h->content_type;
	w = h->mem;
	for (int i = 0; i < HELD_FIELDS; i++) {
		memcpy(w, nz(f[i]), l[i] + 1);
		*dst[i] = w;
		w += l[i] + 1;
	}
	if (d->len > 0)
		memcpy(w, d->body, d->len);
	h->body = w;
	h->len = d->len;
	h->ref = d->ref;
	h->offset = d->stream_offset;
	h->timestamp_ms = d->timestamp_ms;
	s->n++;
	return h;
}

struct held *
held_find(struct held_set *s, uint64_t ref)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].ref == ref)
			return &s->v[i];
	return NULL;
}

void
held_drop(struct held_set *s, uint64_t ref)
{
	struct held *h = held_find(s, ref);
	if (h == NULL)
		return;
	free(h->mem);
	free(h->copy_why);
	*h = s->v[--s->n];
}

void
held_clear(struct held_set *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].mem);
		free(s->v[i].copy_why);
	}
	free(s->v);
	memset(s, 0, sizeof(*s));
}

void
held_settle(struct held_set *s, struct bundler *b, struct bus *bus,
            uint64_t ref, bool reject)
{
	uint64_t target = ref;
	enum bundler_settle st;

	held_drop(s, ref);
	st = bundler_settle(b, ref, reject, &target);
	if (st == BUNDLER_REJECT || (st == BUNDLER_PLAIN && reject))
		bus_reject(bus, target, false);
	else if (st != BUNDLER_WAIT)
		bus_ack(bus, target, false);
}

void
held_message(const struct held *h, struct envelope *e, struct bus_message *m)
{
	char err[256];

	envelope_init(e);
	if ((h->item || h->message_id[0] == '\0') &&
	    envelope_decode(h->body, h->len, e, err, sizeof(err)) != 0)
		envelope_clear(e); /* undecodable: its own properties only */
	memset(m, 0, sizeof(*m));
	m->message_id = h->message_id[0] ? h->message_id
	                : e->id[0]       ? e->id
	                                 : "unknown";
	m->correlation_id = h->correlation_id[0] ? h->correlation_id
	                    : e->saga[0]         ? e->saga
	                                         : NULL;
	m->type = h->type[0] ? h->type : e->type[0] ? e->type : NULL;
	m->reply_to = h->reply_to[0] ? h->reply_to : NULL; /* for a replay */
	m->traceparent = h->traceparent[0] ? h->traceparent : NULL;
	m->content_type = h->content_type[0] ? h->content_type : NULL;
	m->timestamp_ms = e->ts > 0 ? e->ts : h->timestamp_ms;
	m->body = h->body;
	m->len = h->len;
}

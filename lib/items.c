/* items.c -- see items.h. */
#include "items.h"

#include <stdlib.h>
#include <string.h>

struct items_slot {
	bool used, rejected;
	uint64_t ref;
	size_t remaining;
};

long
items_open(struct items *t, uint64_t ref, size_t n)
{
	size_t i;

	for (i = 0; i < t->n && t->s[i].used; i++)
		;
	if (i == t->n) {
		size_t cap = t->n ? t->n * 2 : 16;
		struct items_slot *s = realloc(t->s, cap * sizeof(*s));
		if (s == NULL)
			return -1;
		memset(s + t->n, 0, (cap - t->n) * sizeof(*s));
		t->s = s;
		t->n = cap;
	}
	t->s[i] = (struct items_slot){true, false, ref, n};
	return (long)i;
}

bool
items_is_open(const struct items *t, size_t slot)
{
	return slot < t->n && t->s[slot].used;
}

enum items_verdict
items_settle(struct items *t, size_t slot, bool reject, uint64_t *ref)
{
	struct items_slot *s = &t->s[slot];
	enum items_verdict v = ITEMS_WAIT;

	*ref = s->ref;
	if (reject && !s->rejected) {
		s->rejected = true;
		v = ITEMS_REJECT;
	}
	if (--s->remaining == 0) {
		if (!s->rejected)
			v = ITEMS_ACK;
		s->used = false;
	}
	return v;
}

void
items_free(struct items *t)
{
	free(t->s);
	t->s = NULL;
	t->n = 0;
}

/* items.h -- the items of bundles (lib/envelope.h), settled one by one: a
 * bundle's delivery is acked once every item is settled, or rejected
 * (whole, once) when an item must come back and cannot alone. The
 * participant framework and the orchestrator both keep one.
 *
 * No I/O: items_settle says what to do with the bundle's delivery, and
 * the caller acks or rejects it. Ownership: the table owns its slots;
 * items_free releases them.
 */
#ifndef SAGA_ITEMS_H
#define SAGA_ITEMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct items_slot;

struct items {
	struct items_slot *s;
	size_t n;
};

enum items_verdict {
	ITEMS_WAIT,   /* other items are open, or the bundle is rejected */
	ITEMS_ACK,    /* the last item: ack the bundle's delivery */
	ITEMS_REJECT, /* reject the bundle's delivery (the first item
	               * rejected) */
};

/* A bundle delivery `ref` with n (> 0) items: its slot, or -1 on out of
 * memory. A zeroed struct items is an empty table. */
long items_open(struct items *t, uint64_t ref, size_t n);

/* 1 if slot holds a bundle with items still open. */
bool items_is_open(const struct items *t, size_t slot);

/* One item of slot's bundle is settled: done (reject false) or it must
 * come back (reject true). *ref gets the bundle's delivery. The slot is
 * free again once every item is settled. */
enum items_verdict items_settle(struct items *t, size_t slot, bool reject,
                                uint64_t *ref);

void items_free(struct items *t);

#endif

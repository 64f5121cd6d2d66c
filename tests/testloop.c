/* testloop.c -- see testloop.h. */
#include "testloop.h"

#include <string.h>

static int
ok(void *ctx)
{
	(void)ctx;
	return 0;
}

static void
rollback(void *ctx)
{
	(void)ctx;
}

static const char *
error(void *ctx)
{
	(void)ctx;
	return "";
}

static int
apply(void *ctx, const struct durable_item *it, struct durable_time now,
      enum durable_verdict *v, char *why, size_t whylen)
{
	(void)ctx, (void)it, (void)now, (void)why, (void)whylen;
	*v = DURABLE_DONE;
	return 0;
}

static int
scan(void *ctx, int64_t after, size_t limit, durable_row_fn fn, void *arg)
{
	(void)ctx, (void)after, (void)limit, (void)fn, (void)arg;
	return 0;
}

static int
delete_row(void *ctx, int64_t seq, int64_t confirmed_ms)
{
	(void)ctx, (void)seq, (void)confirmed_ms;
	return 0;
}

void
testloop_handler(struct durable_handler *h)
{
	memset(h, 0, sizeof(*h));
	h->begin = ok;
	h->commit = ok;
	h->rollback = rollback;
	h->error = error;
	h->apply = apply;
	h->outbox_scan = scan;
	h->outbox_delete = delete_row;
}

/* test_bundler -- lib/bundler: commands held in one pass go
 * out one bundle per destination (a lone one as itself), a bundle's
 * confirm comes back as one per row, a bundle the broker refuses goes out
 * as singles, and a bundle of replies is settled item by item. No broker:
 * the publish function records what it is given. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundler.h"
#include "check.h"
#include "envelope.h"

#define MAXSENT 64

struct sent {
	char rk[64], type[64], id[256], reply_to[64], tp[128];
	bool mandatory;
	uint64_t tag;
	char *body;
	size_t len;
};

struct fake {
	struct sent s[MAXSENT];
	size_t n;
	size_t refuse_over; /* refuse bodies longer than this (0: never) */
	uint64_t rows[512];
	size_t nrows;
};

static int
fake_publish(void *arg, const struct bus_message *m, uint64_t tag)
{
	struct fake *f = arg;
	struct sent *s;

	if (f->refuse_over > 0 && m->len > f->refuse_over)
		return -1;
	if (f->n == MAXSENT)
		return -1;
	s = &f->s[f->n++];
	snprintf(s->rk, sizeof(s->rk), "%s", m->routing_key);
	snprintf(s->type, sizeof(s->type), "%s", m->type ? m->type : "");
	snprintf(s->id, sizeof(s->id), "%s", m->message_id);
	snprintf(s->reply_to, sizeof(s->reply_to), "%s",
	         m->reply_to ? m->reply_to : "");
	snprintf(s->tp, sizeof(s->tp), "%s",
	         m->traceparent ? m->traceparent : "");
	s->mandatory = m->mandatory;
	s->tag = tag;
	s->body = malloc(m->len);
	memcpy(s->body, m->body, m->len);
	s->len = m->len;
	return 0;
}

static void
fake_clear(struct fake *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->s[i].body);
	memset(f, 0, sizeof(*f));
}

static void
on_row(void *arg, uint64_t tag)
{
	struct fake *f = arg;
	f->rows[f->nrows++] = tag;
}

/* Holds command i for routing key rk (its body: a real envelope). */
static int
hold(struct bundler *b, struct fake *f, const char *rk, int i)
{
	struct envelope e;
	struct bus_message m = {0};
	char *body;
	size_t len;
	char tp[64];
	int rc;

	envelope_init(&e);
	snprintf(e.id, sizeof(e.id), "cmd-%d", i);
	snprintf(e.saga, sizeof(e.saga), "ord-%d", i);
	snprintf(e.type, sizeof(e.type), "inventory.reserve");
	if (envelope_encode(&e, &body, &len) != 0)
		return -1;
	snprintf(tp, sizeof(tp), "tp-%d", i);
	m.exchange = "saga.commands";
	m.routing_key = rk;
	m.message_id = e.id;
	m.correlation_id = e.saga;
	m.type = e.type;
	m.reply_to = "orchestrator";
	m.traceparent = tp;
	m.mandatory = true;
	m.body = body;
	m.len = len;
	rc = bundler_hold(b, &m, (uint64_t)i, fake_publish, f);
	free(body);
	envelope_clear(&e);
	return rc;
}

static void
test_one_pass(void)
{
	struct bundler *b = bundler_new(64);
	struct fake f = {0};
	struct envelope_bundle bd;
	struct envelope e;
	char err[256];

	CHECK(b != NULL);
	/* 5 for inventory, 1 for payment, 3 for shipping.fr */
	for (int i = 1; i <= 9; i++)
		CHECK(hold(b, &f,
		           i <= 5   ? "inventory"
		           : i == 6 ? "payment"
		                    : "shipping.fr.books",
		           i) == 0);
	CHECK_EQ(f.n, 0); /* nothing before the flush */
	CHECK_EQ(bundler_flush(b, fake_publish, &f), 0);
	CHECK_EQ(f.n, 3);
	/* inventory: one bundle of 5, in order, traceparents kept */
	CHECK_STR(f.s[0].rk, "inventory");
	CHECK_STR(f.s[0].type, ENVELOPE_BUNDLE_TYPE);
	CHECK_STR(f.s[0].reply_to, "orchestrator");
	CHECK(f.s[0].mandatory);
	CHECK(f.s[0].tag & BUNDLER_TAG);
	CHECK(envelope_bundle_decode(f.s[0].body, f.s[0].len, &bd, err,
	                             sizeof(err)) == 0);
	CHECK_EQ(bd.n, 5);
	for (size_t i = 0; i < 5; i++) {
		char want[32];
		CHECK(envelope_decode(bd.items[i].body, bd.items[i].len, &e,
		                      err, sizeof(err)) == 0);
		snprintf(want, sizeof(want), "cmd-%zu", i + 1);
		CHECK_STR(e.id, want);
		snprintf(want, sizeof(want), "tp-%zu", i + 1);
		CHECK_STR(bd.items[i].traceparent, want);
		envelope_clear(&e);
	}
	envelope_bundle_clear(&bd);
	/* payment: alone, as itself */
	CHECK_STR(f.s[1].rk, "payment");
	CHECK_STR(f.s[1].type, "inventory.reserve");
	CHECK_STR(f.s[1].id, "cmd-6");
	CHECK_STR(f.s[1].tp, "tp-6");
	CHECK_EQ(f.s[1].tag, 6);
	CHECK(envelope_decode(f.s[1].body, f.s[1].len, &e, err, sizeof(err)) ==
	      0);
	envelope_clear(&e);
	CHECK_STR(f.s[2].type, ENVELOPE_BUNDLE_TYPE);
	/* rows in flight: 9 rows in 3 messages */
	CHECK_EQ(bundler_rows_extra(b), 4 + 2);
	/* the confirms: a bundle's tag is its rows' tags */
	CHECK_EQ(bundler_confirmed(b, f.s[0].tag, on_row, &f), 1);
	CHECK_EQ(f.nrows, 5);
	for (size_t i = 0; i < 5; i++)
		CHECK_EQ(f.rows[i], i + 1);
	CHECK_EQ(bundler_confirmed(b, f.s[0].tag, on_row, &f), 0); /* once */
	CHECK_EQ(bundler_confirmed(b, 6, on_row, &f), 0); /* a plain row */
	CHECK_EQ(bundler_confirmed(b, f.s[2].tag, on_row, &f), 1);
	CHECK_EQ(f.nrows, 8);
	CHECK_EQ(bundler_rows_extra(b), 0);
	/* an empty flush sends nothing */
	CHECK_EQ(bundler_flush(b, fake_publish, &f), 0);
	CHECK_EQ(f.n, 3);
	fake_clear(&f);
	bundler_free(b);
}

static void
test_max_and_refused(void)
{
	struct bundler *b = bundler_new(4);
	struct fake f = {0};

	CHECK(b != NULL);
	for (int i = 1; i <= 10; i++)
		CHECK(hold(b, &f, "inventory", i) == 0);
	CHECK_EQ(f.n, 2); /* two full bundles went at once */
	CHECK_EQ(bundler_flush(b, fake_publish, &f), 0);
	CHECK_EQ(f.n, 3); /* and the last two */
	fake_clear(&f);
	/* a broker that refuses big messages: the bundle goes out as
	 * singles, each with its own row's tag */
	f.refuse_over = 200; /* one command is about 100 bytes */
	for (int i = 1; i <= 3; i++)
		CHECK(hold(b, &f, "payment", i) == 0);
	CHECK_EQ(bundler_flush(b, fake_publish, &f), 0);
	CHECK_EQ(f.n, 3);
	for (size_t i = 0; i < 3; i++) {
		CHECK_EQ(f.s[i].tag, i + 1);
		CHECK_STR(f.s[i].type, "inventory.reserve");
	}
	/* the three bundles above (10 rows) are still unconfirmed; the
	 * singles add nothing */
	CHECK_EQ(bundler_rows_extra(b), 10 - 3);
	fake_clear(&f);
	bundler_free(b);
	/* bundle 1: never bundles */
	b = bundler_new(1);
	CHECK(b != NULL);
	for (int i = 1; i <= 3; i++)
		CHECK(hold(b, &f, "payment", i) == 0);
	CHECK_EQ(f.n, 3);
	CHECK_STR(f.s[2].type, "inventory.reserve");
	fake_clear(&f);
	bundler_free(b);
}

/* More destinations than open slots: the fullest goes early; nothing is
 * lost. */
static void
test_many_destinations(void)
{
	struct bundler *b = bundler_new(64);
	struct fake f = {0};
	char rk[32];
	size_t items = 0;

	CHECK(b != NULL);
	for (int i = 1; i <= 40; i++) {
		snprintf(rk, sizeof(rk), "shipping.c%d.x", i % 20);
		CHECK(hold(b, &f, rk, i) == 0);
	}
	CHECK_EQ(bundler_flush(b, fake_publish, &f), 0);
	for (size_t i = 0; i < f.n; i++) {
		struct envelope_bundle bd;
		char err[256];
		if (strcmp(f.s[i].type, ENVELOPE_BUNDLE_TYPE) != 0) {
			items++;
			continue;
		}
		CHECK(envelope_bundle_decode(f.s[i].body, f.s[i].len, &bd, err,
		                             sizeof(err)) == 0);
		items += bd.n;
		envelope_bundle_clear(&bd);
	}
	CHECK_EQ(items, 40);
	fake_clear(&f);
	bundler_free(b);
}

static void
test_items(void)
{
	struct bundler *b = bundler_new(64);
	uint64_t first = 0, first2 = 0, bundle = 0;

	CHECK(b != NULL);
	CHECK_EQ(bundler_settle(b, 42, false, &bundle), BUNDLER_PLAIN);
	CHECK(bundler_items(b, 1001, 3, &first) == 0);
	CHECK(bundler_items(b, 1002, 2, &first2) == 0);
	CHECK(first != first2);
	CHECK(bundler_is_item(b, first + 2));
	CHECK(!bundler_is_item(b, 1001));
	/* acked once all three are */
	CHECK_EQ(bundler_settle(b, first + 1, false, &bundle), BUNDLER_WAIT);
	CHECK_EQ(bundler_settle(b, first, false, &bundle), BUNDLER_WAIT);
	CHECK_EQ(bundler_settle(b, first + 2, false, &bundle), BUNDLER_ACK);
	CHECK_EQ(bundle, 1001);
	CHECK(!bundler_is_item(b, first)); /* the slot is free again */
	/* a rejected item rejects the bundle once, and it is never acked */
	CHECK_EQ(bundler_settle(b, first2, true, &bundle), BUNDLER_REJECT);
	CHECK_EQ(bundle, 1002);
	CHECK_EQ(bundler_settle(b, first2 + 1, false, &bundle), BUNDLER_WAIT);
	CHECK(!bundler_is_item(b, first2));
	/* slots are reused, and many bundles can be open */
	for (int i = 0; i < 100; i++)
		CHECK(bundler_items(b, 2000 + (uint64_t)i, 1, &first) == 0);
	CHECK_EQ(bundler_settle(b, first, false, &bundle), BUNDLER_ACK);
	CHECK_EQ(bundle, 2099);
	bundler_free(b);
}

int
main(void)
{
	RUN(test_one_pass);
	RUN(test_max_and_refused);
	RUN(test_many_destinations);
	RUN(test_items);
	return check_summary();
}

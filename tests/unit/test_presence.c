/* test_presence -- lib/presence: topic matching, the announcement's
 * encoding and its strict decoding, and the view's verdicts: unknown,
 * taken only after an unbroken run since the attempt began, absent after
 * a lapse, and a fallback instance only for keys nobody else claims. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "presence.h"

static void
test_topic_match(void)
{
	static const struct {
		const char *p, *k;
		bool want;
	} t[] = {
	        {"inventory", "inventory", true},
	        {"inventory", "inventory.x", false},
	        {"inventory.#", "inventory", true},
	        {"inventory.#", "inventory.a.b", true},
	        {"payment.*", "payment.card", true},
	        {"payment.*", "payment", false},
	        {"payment.*", "payment.card.x", false},
	        {"payment.card", "payment.cod", false},
	        {"shipping.india.*", "shipping.india.books", true},
	        {"shipping.india.*", "shipping.eu.books", false},
	        {"#", "anything.at.all", true},
	        {"#.books", "shipping.india.books", true},
	        {"*.*.books", "shipping.india.books", true},
	        {"#.#.#.#.#.#.x", "a.b.c.d.e.f.g.h.i.y", false},
	        {"shipping.#.books", "shipping.books", true},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		CHECK_MSG(presence_topic_match(t[i].p, t[i].k) == t[i].want,
		          "%s ~ %s", t[i].p, t[i].k);
}

static struct presence_announce
ann(const char *name, const char *inst, const char *key, bool fallback)
{
	struct presence_announce a;
	memset(&a, 0, sizeof(a));
	snprintf(a.name, sizeof(a.name), "%s", name);
	snprintf(a.instance, sizeof(a.instance), "%s", inst);
	snprintf(a.keys[0], sizeof(a.keys[0]), "%s", key);
	a.nkeys = 1;
	a.interval_ms = 2000;
	a.fallback = fallback;
	return a;
}

static void
test_roundtrip(void)
{
	struct presence_announce a = ann("shipping", "india",
	                                 "shipping.india.*", false),
	                         b;
	struct envelope e;
	char err[200];

	snprintf(a.keys[1], sizeof(a.keys[1]), "x.#");
	a.nkeys = 2;
	CHECK(presence_encode(&a, 1234, &e) == 0);
	CHECK_STR(e.type, PRESENCE_TYPE);
	CHECK(presence_decode(&e, &b, err, sizeof(err)) == 0);
	CHECK_STR(b.name, "shipping");
	CHECK_STR(b.instance, "india");
	CHECK_EQ(b.nkeys, 2);
	CHECK_STR(b.keys[1], "x.#");
	CHECK(!b.fallback);
	CHECK_EQ(b.interval_ms, 2000);
	/* each field wrong in turn is refused with its name */
	value_map_put_int(&e.payload, "interval_ms", 5);
	CHECK(presence_decode(&e, &b, err, sizeof(err)) == -1);
	CHECK_MSG(strstr(err, "interval_ms") != NULL, "%s", err);
	value_map_put_int(&e.payload, "interval_ms", 2000);
	value_map_put_int(&e.payload, "keys", 3);
	CHECK(presence_decode(&e, &b, err, sizeof(err)) == -1);
	CHECK_MSG(strstr(err, "keys") != NULL, "%s", err);
	envelope_clear(&e);
	CHECK(presence_encode(&a, 1234, &e) == 0);
	value_map_put_str(&e.payload, "name", "");
	CHECK(presence_decode(&e, &b, err, sizeof(err)) == -1);
	{ /* a NUL inside a string: refused (it would not encode back) */
		struct value k = VALUE_NIL_INIT, arr = VALUE_NIL_INIT;
		value_set_array(&arr);
		value_set_strn(&k, "a\0b", 3);
		value_array_push(&arr, &k);
		value_map_put_str(&e.payload, "name", "x");
		value_map_put(&e.payload, "keys", &arr);
		CHECK(presence_decode(&e, &b, err, sizeof(err)) == -1);
		CHECK_MSG(strstr(err, "keys[0]") != NULL, "%s", err);
	}
	value_map_put_int(&e.payload, "name", 1);
	CHECK(presence_decode(&e, &b, err, sizeof(err)) == -1);
	CHECK_MSG(strstr(err, "name") != NULL, "%s", err);
	envelope_clear(&e);
}

static void
test_verdicts(void)
{
	struct presence *p = presence_new();
	struct presence_announce inv = ann("inventory", "", "inventory", false);
	int64_t t = 100000;

	CHECK(p != NULL);
	/* never heard: unknown, the timeout counts as it always did */
	CHECK_EQ(presence_check(p, "inventory", "inventory", t, t),
	         PRESENCE_UNKNOWN);
	presence_note(p, &inv, t);
	/* heard from t on: taken for an attempt begun at t, not before */
	CHECK_EQ(presence_check(p, "inventory", "inventory", t, t),
	         PRESENCE_TAKEN);
	CHECK_EQ(presence_check(p, "inventory", "inventory", t - 1, t),
	         PRESENCE_ABSENT);
	for (int i = 1; i <= 5; i++)
		presence_note(p, &inv, t + i * 2000);
	CHECK_EQ(presence_check(p, "inventory", "inventory", t, t + 10000),
	         PRESENCE_TAKEN);
	/* silent for more than PRESENCE_LAPSE intervals: absent */
	CHECK_EQ(presence_check(p, "inventory", "inventory", t, t + 16001),
	         PRESENCE_ABSENT);
	/* back: a new run, from its return */
	presence_note(p, &inv, t + 30000);
	CHECK_EQ(presence_check(p, "inventory", "inventory", t, t + 30000),
	         PRESENCE_ABSENT);
	CHECK_EQ(presence_check(p, "inventory", "inventory", t + 30000,
	                        t + 30000),
	         PRESENCE_TAKEN);
	/* a key it does not serve */
	CHECK_EQ(presence_check(p, "inventory", "inventory.eu", t + 30000,
	                        t + 30000),
	         PRESENCE_ABSENT);
	CHECK_EQ(presence_live(p, t + 30000), 1);
	presence_free(p);
}

static void
test_fallback(void)
{
	struct presence *p = presence_new();
	struct presence_announce def = ann("shipping", "", "shipping.#", true);
	struct presence_announce india =
	        ann("shipping", "india", "shipping.india.*", false);
	int64_t t = 5000;

	presence_note(p, &def, t);
	/* no region claims india yet: the default takes it */
	CHECK_EQ(presence_check(p, "shipping", "shipping.india.x", t, t),
	         PRESENCE_TAKEN);
	presence_note(p, &india, t);
	CHECK_EQ(presence_check(p, "shipping", "shipping.india.x", t, t),
	         PRESENCE_TAKEN);
	/* india goes away: its commands wait in its queue, the default
	 * does not take them */
	presence_note(p, &def, t + 20000);
	CHECK_EQ(
	        presence_check(p, "shipping", "shipping.india.x", t, t + 20000),
	        PRESENCE_ABSENT);
	CHECK_EQ(presence_check(p, "shipping", "shipping.eu.x", t, t + 20000),
	         PRESENCE_ABSENT); /* the default's run broke too */
	CHECK_EQ(presence_check(p, "shipping", "shipping.eu.x", t + 20000,
	                        t + 20000),
	         PRESENCE_TAKEN);
	presence_free(p);
}

/* More instances than it remembers: the one heard longest ago goes. */
static void
test_bounded(void)
{
	struct presence *p = presence_new();
	char name[32];

	for (int i = 0; i < PRESENCE_MAX + 10; i++) {
		snprintf(name, sizeof(name), "p%d", i);
		struct presence_announce a = ann(name, "", name, false);
		presence_note(p, &a, 1000 + i);
	}
	CHECK_EQ(presence_check(p, "p0", "p0", 0, 1000 + PRESENCE_MAX),
	         PRESENCE_UNKNOWN);
	CHECK_EQ(presence_check(p, "p10", "p10", 2000, 2000), PRESENCE_TAKEN);
	snprintf(name, sizeof(name), "p%d", PRESENCE_MAX + 9);
	CHECK_EQ(presence_check(p, name, name, 2000, 2000), PRESENCE_TAKEN);
	presence_free(p);
}

int
main(void)
{
	RUN(test_topic_match);
	RUN(test_roundtrip);
	RUN(test_verdicts);
	RUN(test_fallback);
	RUN(test_bounded);
	return check_summary();
}

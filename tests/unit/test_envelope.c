/* The value codec and the envelope: round trips, a table of malformed
 * bodies each with the exact error it must give, and 20,000 mutations of
 * a valid envelope decoded without a crash or a leak (run under ASan in
 * scripts/test). Also trace context parsing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "testutil.h"
#include "trace.h"

/* A valid envelope body, built by hand with msgpack-c. */
static void
pack_kv_str(msgpack_packer *pk, const char *k, const char *v)
{
	msgpack_pack_str_with_body(pk, k, strlen(k));
	msgpack_pack_str_with_body(pk, v, strlen(v));
}

static void
valid_body(msgpack_sbuffer *sb, int skip, const char *extra)
{
	msgpack_packer pk;
	int n = 8 - (skip >= 0) + (extra != NULL);
	msgpack_sbuffer_init(sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, (size_t)n);
	if (skip != 0) {
		msgpack_pack_str_with_body(&pk, "v", 1);
		msgpack_pack_int(&pk, 1);
	}
	if (skip != 1)
		pack_kv_str(&pk, "id", "m-1");
	if (skip != 2)
		pack_kv_str(&pk, "saga", "ord-1");
	if (skip != 3)
		pack_kv_str(&pk, "type", "inventory.reserve");
	if (skip != 4)
		pack_kv_str(&pk, "step", "reserve_stock");
	if (skip != 5) {
		msgpack_pack_str_with_body(&pk, "attempt", 7);
		msgpack_pack_int(&pk, 1);
	}
	if (skip != 6) {
		msgpack_pack_str_with_body(&pk, "ts", 2);
		msgpack_pack_int64(&pk, 1700000000000LL);
	}
	if (skip != 7) {
		msgpack_pack_str_with_body(&pk, "payload", 7);
		msgpack_pack_map(&pk, 1);
		pack_kv_str(&pk, "order_id", "ord-1");
	}
	if (extra != NULL)
		pack_kv_str(&pk, extra, "x");
}

static void
test_round_trip(void)
{
	struct envelope e, d;
	struct value items, item;
	char *buf, err[256];
	size_t len;

	envelope_init(&e);
	snprintf(e.id, sizeof(e.id), "ord-1:payment:2");
	snprintf(e.saga, sizeof(e.saga), "ord-1");
	snprintf(e.type, sizeof(e.type), "payment.charge");
	snprintf(e.step, sizeof(e.step), "payment");
	snprintf(e.re, sizeof(e.re), "cmd-9");
	e.attempt = 2;
	e.ts = 1700000000123LL;
	value_map_put_int(&e.payload, "total_cents", -5);
	value_map_put_str(&e.payload, "currency", "EUR");
	value_set_array(&items);
	value_set_map(&item);
	value_map_put_str(&item, "sku", "é-1");
	value_array_push(&items, &item);
	value_map_put(&e.payload, "items", &items);
	{
		struct value f, bin;
		value_set_float(&f, 0.5);
		value_map_put(&e.payload, "ratio", &f);
		value_set_bin(&bin, "\0\1\2", 3);
		value_map_put(&e.payload, "raw", &bin);
		value_map_put_int(&e.payload, "min", INT64_MIN);
		value_map_put_int(&e.payload, "max", INT64_MAX);
	}
	CHECK(envelope_encode(&e, &buf, &len) == 0);
	CHECK_MSG(envelope_decode(buf, len, &d, err, sizeof(err)) == 0, "%s",
	          err);
	CHECK_STR(d.id, e.id);
	CHECK_STR(d.saga, "ord-1");
	CHECK_STR(d.type, "payment.charge");
	CHECK_STR(d.step, "payment");
	CHECK_STR(d.re, "cmd-9");
	CHECK_EQ(d.attempt, 2);
	CHECK_EQ(d.ts, 1700000000123LL);
	CHECK(value_equal(&d.payload, &e.payload));
	CHECK_EQ(value_path_get(&d.payload, "min")->u.i, INT64_MIN);
	free(buf);
	envelope_clear(&d);
	envelope_clear(&e);
}

struct bad {
	const char *name;
	const unsigned char *bytes;
	size_t len;
	const char *error; /* substring the error must contain */
};

#define B(...)                                                                 \
	(const unsigned char[]){__VA_ARGS__},                                  \
	        sizeof((const unsigned char[]){__VA_ARGS__})

static void
check_bad(const struct bad *b)
{
	struct envelope e;
	char err[256] = "";
	int rc = envelope_decode(b->bytes, b->len, &e, err, sizeof(err));
	CHECK_MSG(rc == -1, "%s: accepted", b->name);
	CHECK_MSG(strstr(err, b->error) != NULL, "%s: want \"%s\", got \"%s\"",
	          b->name, b->error, err);
	envelope_clear(&e);
}

static void
test_malformed_table(void)
{
	static unsigned char deep33[40], deep17[20];
	const struct bad table[] = {
	        {"empty", (const unsigned char *)"", 0, "empty input"},
	        {"garbage", B(0xc1, 0x00), "reserved byte 0xc1"},
	        {"truncated str", B(0x81, 0xa2, 'i'), "exceeds the input"},
	        {"truncated map", B(0x82, 0xa1, 'v', 0x01),
	         "map of 2 items exceeds"},
	        {"truncated int", B(0x81, 0xa1, 'v', 0xcd, 0x01),
	         "truncated input"},
	        {"array32 huge", B(0xdd, 0xff, 0xff, 0xff, 0xff),
	         "exceeds the input"},
	        {"map32 huge", B(0xdf, 0xff, 0xff, 0xff, 0xff),
	         "exceeds the input"},
	        {"str32 huge", B(0xdb, 0x7f, 0xff, 0xff, 0xff, 'a'),
	         "exceeds the limit"},
	        {"trailing", B(0x80, 0x00), "1 trailing bytes"},
	        {"not a map", B(0x93, 1, 2, 3),
	         "body must be a map, got array"},
	        {"key not str", B(0x81, 0x01, 0x01), "map key is not a string"},
	        {"duplicate key", B(0x82, 0xa1, 'v', 0x01, 0xa1, 'v', 0x01),
	         "duplicate map key \"v\""},
	        {"bad utf8", B(0x81, 0xa2, 0xc3, 0x28, 0x01),
	         "not valid UTF-8"},
	        {"overlong utf8", B(0x81, 0xa2, 0xc0, 0xaf, 0x01),
	         "not valid UTF-8"},
	        {"fixext", B(0xd4, 0x01, 0x00), "ext type 0xd4"},
	        {"zero-length ext8", B(0xc7, 0x00, 0x01), "ext type 0xc7"},
	        {"uint64 max",
	         B(0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
	         "above INT64_MAX"},
	        {"depth 33", deep33, 34, "nesting deeper than 16"},
	        {"depth 17", deep17, 18, "nesting deeper than 16"},
	        {"nul in key", B(0x81, 0xa2, 'a', 0x00, 0x01),
	         "map key contains a NUL byte"},
	};
	memset(deep33, 0x91, 33);
	deep33[33] = 0x01;
	memset(deep17, 0x91, 17);
	deep17[17] = 0x01;
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		check_bad(&table[i]);
		if (check_current_failed)
			return;
	}
}

static void
test_field_errors(void)
{
	static const struct {
		int skip;
		const char *extra;
		const char *error;
	} cases[] = {
	        {1, NULL, "missing field \"id\""},
	        {2, NULL, "missing field \"saga\""},
	        {7, NULL, "missing field \"payload\""},
	        {-1, "colour", "unknown field \"colour\""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		msgpack_sbuffer sb;
		struct envelope e;
		char err[256] = "";
		valid_body(&sb, cases[i].skip, cases[i].extra);
		CHECK(envelope_decode(sb.data, sb.size, &e, err, sizeof(err)) ==
		      -1);
		CHECK_MSG(strstr(err, cases[i].error) != NULL, "want %s got %s",
		          cases[i].error, err);
		envelope_clear(&e);
		msgpack_sbuffer_destroy(&sb);
	}
}

/* A body with one field replaced by raw bytes (type errors, limits). */
static void
test_wrong_types_and_limits(void)
{
	const struct {
		const char *key;
		const unsigned char *val;
		size_t vlen;
		const char *error;
	} cases[] = {
	        {"attempt", B(0xa1, 'x'),
	         "field \"attempt\" must be an integer, got string"},
	        {"payload", B(0x90),
	         "field \"payload\" must be a map, got array"},
	        {"v", B(0x02), "unsupported envelope version 2"},
	        {"type", B(0xa3, 'A', 'B', 'C'), "outside [a-z0-9_.-]"},
	        {"saga", B(0xa0), "field \"saga\" must be 1..200 bytes"},
	        {"attempt", B(0xff), "field \"attempt\" out of range"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		msgpack_sbuffer sb;
		msgpack_packer pk;
		struct envelope e;
		char err[256] = "";
		const char *keys[] = {"v",    "id",      "saga", "type",
		                      "step", "attempt", "ts",   "payload"};
		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_map(&pk, 8);
		for (size_t k = 0; k < 8; k++) {
			msgpack_pack_str_with_body(&pk, keys[k],
			                           strlen(keys[k]));
			if (strcmp(keys[k], cases[i].key) == 0)
				msgpack_sbuffer_write(
				        &sb, (const char *)cases[i].val,
				        cases[i].vlen);
			else if (k == 0 || k == 5 || k == 6)
				msgpack_pack_int(&pk, 1);
			else if (k == 7)
				msgpack_pack_map(&pk, 0);
			else
				msgpack_pack_str_with_body(&pk, "ab", 2);
		}
		CHECK(envelope_decode(sb.data, sb.size, &e, err, sizeof(err)) ==
		      -1);
		CHECK_MSG(strstr(err, cases[i].error) != NULL,
		          "%s: want %s got %s", cases[i].key, cases[i].error,
		          err);
		envelope_clear(&e);
		msgpack_sbuffer_destroy(&sb);
	}
}

static void
test_mutations_never_crash(void)
{
	msgpack_sbuffer sb;
	uint32_t x = 12345;
	size_t accepted = 0;
	valid_body(&sb, -1, NULL);
	for (int i = 0; i < 20000; i++) {
		unsigned char buf[512];
		size_t len = sb.size;
		struct envelope e;
		char err[256];
		memcpy(buf, sb.data, len);
		for (int k = 0; k < 1 + i % 4; k++) {
			x = x * 1103515245u + 12345u;
			buf[(x >> 8) % len] ^=
			        (unsigned char)(1u << ((x >> 4) % 8));
		}
		if (i % 5 == 0) {
			x = x * 1103515245u + 12345u;
			len = (x >> 8) % len; /* truncate */
		}
		if (envelope_decode(buf, len, &e, err, sizeof(err)) == 0)
			accepted++;
		envelope_clear(&e);
	}
	msgpack_sbuffer_destroy(&sb);
	fprintf(stderr, "     20000 mutations, %zu still valid\n", accepted);
	CHECK(accepted < 20000);
}

static void
test_trace(void)
{
	char root[64], child[64], tid[33];
	CHECK(trace_new(root, sizeof(root)) == 0);
	CHECK(trace_parse(root, tid) == 0);
	CHECK(trace_child(root, child, sizeof(child)) == 0);
	CHECK(strncmp(root, child, 35) == 0);      /* same trace id */
	CHECK(strcmp(root + 36, child + 36) != 0); /* new parent id */
	CHECK(trace_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-"
	                  "00f067aa0ba902b7-01",
	                  NULL) == 0);
	CHECK(trace_parse("00-00000000000000000000000000000000-"
	                  "00f067aa0ba902b7-01",
	                  NULL) == -1);
	CHECK(trace_parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-"
	                  "00f067aa0ba902b7-01",
	                  NULL) == -1);
	CHECK(trace_parse("01-4bf92f3577b34da6a3ce929d0e0e4736-"
	                  "00f067aa0ba902b7-01",
	                  NULL) == -1);
	CHECK(trace_parse("garbage", NULL) == -1);
	CHECK(trace_child("garbage", child, sizeof(child)) == -1);
}

int
main(void)
{
	RUN(test_round_trip);
	RUN(test_malformed_table);
	RUN(test_field_errors);
	RUN(test_wrong_types_and_limits);
	RUN(test_mutations_never_crash);
	RUN(test_trace);
	return check_summary();
}

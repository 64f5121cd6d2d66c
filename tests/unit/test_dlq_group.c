/* test_dlq_group -- orchestrator/svc/dlq_group.h without a broker: the
 * reason's normalisation (what a group is), the key's stability, the
 * records made from a management API message, the groups (largest first,
 * ties in queue order, distinct sagas), where a replay goes, and the
 * messages' JSON. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "check.h"
#include "dlq_group.h"

static void
test_normalise(void)
{
	static const struct {
		const char *in, *want;
	} t[] = {
	        {"unknown sku SKU-17 in order ord-4",
	         "unknown sku # in order #"},
	        {"failed 5 times: gateway unavailable",
	         "failed # times: gateway unavailable"},
	        {"message_id property \"m-17\" differs from envelope id "
	         "\"e-17\"",
	         "message_id property \"#\" differs from envelope id \"#\""},
	        {"amount 12.50 over limit 10.", "amount # over limit #."},
	        {"  spaces\t and\nlines  ", "spaces and lines"},
	        {"unknown message type inventory.frob",
	         "unknown message type inventory.frob"},
	        {"", ""},
	        {"deadbeef", "deadbeef"}, /* no digit: kept (the known limit) */
	};
	char out[256];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		dlq_normalise(t[i].in, out, sizeof(out));
		CHECK_STR(out, t[i].want);
	}
	/* a small buffer: cut, terminated, never overrun */
	dlq_normalise("abcdefghij klmnop", out, 8);
	CHECK(strlen(out) < 8);
	dlq_normalise("1234567890", out, 3);
	CHECK_STR(out, "#");
}

/* A record as the management API's get-messages gives it. */
static void
from_mgmt(struct dlq_msg *m, const char *text)
{
	json_t *j = json_loads(text, 0, NULL);
	CHECK(j != NULL);
	dlq_msg_from_mgmt(m, j);
	json_decref(j);
}

static void
test_records(void)
{
	struct dlq_msg a, b, c;

	from_mgmt(&a, "{\"payload_bytes\":61,\"properties\":{\"message_id\":"
	              "\"m-1\",\"correlation_id\":\"ord-1\",\"type\":\"t\","
	              "\"timestamp\":1700000000,\"headers\":{\"x-saga-error\":"
	              "\"unknown sku SKU-1\",\"x-saga-attempts\":2}}}");
	from_mgmt(&b, "{\"properties\":{\"message_id\":\"m-2\",\"headers\":{"
	              "\"x-saga-error\":\"unknown sku SKU-22\","
	              "\"x-published-ms\":1700000000123}}}");
	from_mgmt(&c, "{\"properties\":{\"headers\":{\"x-first-death-reason\":"
	              "\"rejected\",\"x-first-death-queue\":\"shipping.india\","
	              "\"x-death\":[{\"count\":3,\"reason\":\"rejected\"}]}}}");
	CHECK_STR(a.id, "m-1");
	CHECK_STR(a.saga, "ord-1");
	CHECK_EQ(a.bytes, 61);
	CHECK_EQ(a.attempts, 2);
	CHECK_EQ(a.published_ms, 1700000000000);
	CHECK_EQ(b.published_ms, 1700000000123);
	CHECK_EQ(strlen(a.key), DLQ_KEY_LEN);
	CHECK_STR(a.key, b.key); /* one group */
	CHECK_STR(c.reason, "rejected by the broker in shipping.india");
	CHECK_STR(c.from, "shipping.india");
	CHECK_EQ(c.attempts, 3);
	CHECK(strcmp(a.key, c.key) != 0);
}

static void
test_key_stable(void)
{
	struct dlq_msg m = {0};

	/* the key is a promise: `dlq show` today, `dlq replay` tomorrow.
	 * FNV-1a of "unknown sku #", its top 48 bits */
	from_mgmt(&m, "{\"properties\":{\"headers\":{\"x-saga-error\":"
	              "\"unknown sku SKU-5\"}}}");
	CHECK_STR(m.key, "f86872a65eb9");
}

static void
test_groups(void)
{
	struct dlq_msg m[5];
	const char *reasons[] = {"bad thing 1", "other", "bad thing 2", "other",
	                         "bad thing 3"};
	const char *sagas[] = {"s1", "s2", "s1", "s3", "s4"};
	json_t *g;

	for (int i = 0; i < 5; i++) {
		char text[300];
		snprintf(text, sizeof(text),
		         "{\"properties\":{\"correlation_id\":\"%s\","
		         "\"headers\":{\"x-saga-error\":\"%s\"}}}",
		         sagas[i], reasons[i]);
		from_mgmt(&m[i], text);
	}
	g = dlq_groups_json(m, 5);
	CHECK(g != NULL);
	CHECK_EQ(json_array_size(g), 2);
	CHECK_STR(json_string_value(
	                  json_object_get(json_array_get(g, 0), "reason")),
	          "bad thing #");
	CHECK_STR(json_string_value(
	                  json_object_get(json_array_get(g, 0), "example")),
	          "bad thing 1");
	CHECK_EQ(json_integer_value(
	                 json_object_get(json_array_get(g, 0), "count")),
	         3);
	/* s1 twice: once in sagas */
	CHECK_EQ(
	        json_array_size(json_object_get(json_array_get(g, 0), "sagas")),
	        2);
	CHECK_EQ(json_integer_value(
	                 json_object_get(json_array_get(g, 1), "count")),
	         2);
	CHECK(json_object_get(json_array_get(g, 0), "_order") == NULL);
	json_decref(g);
	g = dlq_groups_json(m, 0);
	CHECK(g != NULL && json_array_size(g) == 0);
	json_decref(g);
}

static void
test_origin_and_json(void)
{
	struct dlq_msg m = {0};
	char buf[256];
	json_t *j;

	CHECK(dlq_origin(&m, "inventory.commands.dlq", NULL, buf, sizeof(buf)));
	CHECK_STR(buf, "inventory.commands");
	CHECK(dlq_origin(&m, "x.dlq", "elsewhere", buf, sizeof(buf)));
	CHECK_STR(buf, "elsewhere");
	CHECK(!dlq_origin(&m, "parked", NULL, buf, sizeof(buf)));
	snprintf(m.from, sizeof(m.from), "shipping.india");
	CHECK(dlq_origin(&m, "shipping.india.dlq", NULL, buf, sizeof(buf)));
	CHECK_STR(buf, "shipping.india");

	m.published_ms = 1000;
	j = dlq_msgs_json(&m, 1, 4000);
	CHECK(j != NULL);
	CHECK_EQ(json_integer_value(
	                 json_object_get(json_array_get(j, 0), "age_ms")),
	         3000);
	json_decref(j);
	m.published_ms = 0;
	j = dlq_msgs_json(&m, 1, 4000);
	CHECK_EQ(json_integer_value(
	                 json_object_get(json_array_get(j, 0), "age_ms")),
	         -1);
	json_decref(j);
}

int
main(void)
{
	RUN(test_normalise);
	RUN(test_records);
	RUN(test_key_stable);
	RUN(test_groups);
	RUN(test_origin_and_json);
	return check_summary();
}

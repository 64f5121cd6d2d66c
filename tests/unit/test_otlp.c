/* Unit tests of lib/otlp against a small fake collector (lib/http on a
 * loopback port): the spans arrive as OTLP/JSON with their ids, parent,
 * times and attributes; a collector that answers 500 or is not there costs
 * the spans, counted, and never blocks the emitter; a bad URL is refused;
 * span ids derived from a text are stable. */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "otlp.h"
#include "testutil.h"

static struct {
	pthread_mutex_t mu;
	int status; /* what the collector answers */
	int posts;
	json_t *spans; /* every span received */
	char content_type[64];
} col = {.mu = PTHREAD_MUTEX_INITIALIZER, .status = 200};

static void
collect(void *arg, const struct http_request *req, struct http_response *r)
{
	json_t *j = json_loads(req->body != NULL ? req->body : "", 0, NULL);
	json_t *rs = json_object_get(j, "resourceSpans");
	const char *ct = http_header(req, "Content-Type");

	(void)arg;
	pthread_mutex_lock(&col.mu);
	col.posts++;
	snprintf(col.content_type, sizeof(col.content_type), "%s",
	         ct != NULL ? ct : "");
	for (size_t i = 0; i < json_array_size(rs); i++) {
		json_t *ss =
		        json_object_get(json_array_get(rs, i), "scopeSpans");
		for (size_t k = 0; k < json_array_size(ss); k++)
			json_array_extend(col.spans,
			                  json_object_get(json_array_get(ss, k),
			                                  "spans"));
	}
	r->status = col.status;
	pthread_mutex_unlock(&col.mu);
	json_decref(j);
	http_printf(r, "{}");
}

static struct otlp_span
span(const char *name, const char *parent)
{
	struct otlp_span s = {.kind = OTLP_INTERNAL,
	                      .start_ms = 1796000000000,
	                      .end_ms = 1796000000250};

	snprintf(s.trace_id, sizeof(s.trace_id), "%s",
	         "0af7651916cd43dd8448eb211c80319c");
	otlp_span_id(name, s.span_id);
	snprintf(s.parent_id, sizeof(s.parent_id), "%s", parent);
	snprintf(s.name, sizeof(s.name), "%s", name);
	return s;
}

static json_t *
find(const char *name)
{
	json_t *s;
	size_t i;

	json_array_foreach(col.spans, i, s)
	{
		if (strcmp(json_string_value(json_object_get(s, "name")),
		           name) == 0)
			return s;
	}
	return NULL;
}

static void
test_spans_reach_the_collector(void)
{
	char err[256], url[128];
	struct http *h = http_listen("127.0.0.1:0", err, sizeof(err));
	struct otlp *o;
	struct otlp_span s;
	json_t *j;

	CHECK_MSG(h != NULL, "%s", err);
	CHECK(http_route(h, "/v1/traces", HTTP_POST, collect, NULL) == 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces",
	         http_port(h));
	o = otlp_start(url, "saga-orchestrator", err, sizeof(err));
	CHECK_MSG(o != NULL, "%s", err);
	s = span("saga order", "b7ad6b7169203331");
	s.kind = OTLP_SERVER;
	otlp_attr(&s, "saga.id", "ord-1");
	otlp_attr(&s, "saga.status", "completed");
	CHECK(otlp_emit(o, &s));
	s = span("inventory.reserve", s.span_id);
	s.error = true;
	CHECK(otlp_emit(o, &s));
	otlp_stop(o); /* posts what is queued */

	pthread_mutex_lock(&col.mu);
	CHECK_EQ(json_array_size(col.spans), 2);
	CHECK_STR(col.content_type, "application/json");
	j = find("saga order");
	CHECK(j != NULL);
	CHECK_STR(json_string_value(json_object_get(j, "traceId")),
	          "0af7651916cd43dd8448eb211c80319c");
	CHECK_STR(json_string_value(json_object_get(j, "parentSpanId")),
	          "b7ad6b7169203331");
	CHECK_STR(json_string_value(json_object_get(j, "startTimeUnixNano")),
	          "1796000000000000000");
	CHECK_STR(json_string_value(json_object_get(j, "endTimeUnixNano")),
	          "1796000000250000000");
	CHECK_EQ(json_integer_value(json_object_get(j, "kind")), 2);
	CHECK_STR(json_string_value(json_object_get(
	                  json_object_get(
	                          json_array_get(
	                                  json_object_get(j, "attributes"), 0),
	                          "value"),
	                  "stringValue")),
	          "ord-1");
	CHECK(json_object_get(j, "status") == NULL);
	j = find("inventory.reserve");
	CHECK(j != NULL);
	/* the child's parent is the saga span */
	CHECK_STR(json_string_value(json_object_get(j, "parentSpanId")),
	          json_string_value(
	                  json_object_get(find("saga order"), "spanId")));
	CHECK_EQ(json_integer_value(
	                 json_object_get(json_object_get(j, "status"), "code")),
	         2);
	pthread_mutex_unlock(&col.mu);
	http_close(h);
}

static void
test_collector_failing_or_gone(void)
{
	char err[256], url[128];
	struct http *h = http_listen("127.0.0.1:0", err, sizeof(err));
	struct otlp *o;
	struct otlp_span s = span("x", "");
	struct otlp_stats st;
	int port;

	CHECK_MSG(h != NULL, "%s", err);
	CHECK(http_route(h, "/v1/traces", HTTP_POST, collect, NULL) == 0);
	port = http_port(h);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", port);
	pthread_mutex_lock(&col.mu);
	col.status = 500;
	col.posts = 0;
	pthread_mutex_unlock(&col.mu);
	o = otlp_start(url, "t", err, sizeof(err));
	CHECK(o != NULL);
	CHECK(otlp_emit(o, &s));
	otlp_stop(o);
	pthread_mutex_lock(&col.mu);
	CHECK_EQ(col.posts, 1);
	col.status = 200;
	pthread_mutex_unlock(&col.mu);
	http_close(h);

	/* nobody listens: emitting never waits, what cannot go is counted */
	o = otlp_start(url, "t", err, sizeof(err));
	CHECK(o != NULL);
	for (int i = 0; i < OTLP_QUEUE + 10; i++)
		otlp_emit(o, &s);
	usleep(100000);
	st = otlp_stats(o);
	CHECK_EQ(st.exported, 0);
	CHECK_MSG(st.dropped >= 10, "dropped %llu",
	          (unsigned long long)st.dropped);
	otlp_stop(o);
}

static void
test_bad_url_and_ids(void)
{
	char err[256], a[17], b[17];

	CHECK(otlp_start("collector:4318", "t", err, sizeof(err)) == NULL);
	CHECK_MSG(strstr(err, "expected http://") != NULL, "%s", err);
	otlp_span_id("ord-1/reserve@1", a);
	otlp_span_id("ord-1/reserve@1", b);
	CHECK_STR(a, b);
	CHECK_EQ(strlen(a), 16);
	otlp_span_id("ord-1/reserve@2", b);
	CHECK(strcmp(a, b) != 0);
	CHECK(!otlp_emit(NULL, NULL));
}

int
main(void)
{
	col.spans = json_array();
	RUN(test_spans_reach_the_collector);
	RUN(test_collector_failing_or_gone);
	RUN(test_bad_url_and_ids);
	json_decref(col.spans);
	return check_summary();
}

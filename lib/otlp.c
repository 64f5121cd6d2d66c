/* otlp.c -- see otlp.h. One mutex guards the queue (a ring of spans) and
 * the counters; the thread takes a batch out under it and posts without
 * it, so otlp_emit waits at most for a memcpy. */
#include "otlp.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "clock.h"
#include "hash.h"
#include "log.h"

_Static_assert(OTLP_BATCH <= OTLP_QUEUE, "a batch fits in the queue");

#define OTLP_TIMEOUT_MS 5000
#define OTLP_STOP_MS    2000

struct otlp {
	char *url, *service;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stopping;
	struct otlp_span *ring; /* OTLP_QUEUE slots */
	size_t head, n;         /* oldest, how many */
	struct otlp_stats stats;
	CURL *curl;
	bool failing; /* the last POST failed (the thread's own) */
};

void
otlp_attr(struct otlp_span *s, const char *key, const char *value)
{
	if (s->nattr == OTLP_ATTRS || key == NULL || value == NULL)
		return;
	snprintf(s->attr[s->nattr].key, sizeof(s->attr[0].key), "%s", key);
	snprintf(s->attr[s->nattr].value, sizeof(s->attr[0].value), "%s",
	         value);
	s->nattr++;
}

void
otlp_span_id(const char *text, char out[17])
{
	uint64_t h = hash_fnv1a_str(HASH_FNV_INIT, text);

	if (h == 0)
		h = 1; /* an all-zero span id is invalid */
	snprintf(out, 17, "%016" PRIx64, h);
}

static json_t *
span_json(const struct otlp_span *s)
{
	json_t *j = json_object(), *attrs = json_array();
	char ns[32];

	json_object_set_new(j, "traceId", json_string(s->trace_id));
	json_object_set_new(j, "spanId", json_string(s->span_id));
	if (s->parent_id[0] != '\0')
		json_object_set_new(j, "parentSpanId",
		                    json_string(s->parent_id));
	json_object_set_new(j, "name", json_string(s->name));
	json_object_set_new(j, "kind", json_integer(s->kind));
	/* uint64 nanoseconds, as strings (the OTLP JSON mapping) */
	snprintf(ns, sizeof(ns), "%" PRId64 "000000", s->start_ms);
	json_object_set_new(j, "startTimeUnixNano", json_string(ns));
	snprintf(ns, sizeof(ns), "%" PRId64 "000000", s->end_ms);
	json_object_set_new(j, "endTimeUnixNano", json_string(ns));
	for (size_t i = 0; i < s->nattr; i++)
		json_array_append_new(attrs, json_pack("{s:s, s:{s:s}}", "key",
		                                       s->attr[i].key, "value",
		                                       "stringValue",
		                                       s->attr[i].value));
	json_object_set_new(j, "attributes", attrs);
	if (s->error)
		json_object_set_new(j, "status", json_pack("{s:i}", "code", 2));
	return j;
}

/* The ExportTraceServiceRequest of spans b[0..n), as JSON text. */
static char *
request_json(const struct otlp *o, const struct otlp_span *b, size_t n)
{
	json_t *spans = json_array(), *req;
	char *text;

	for (size_t i = 0; i < n; i++)
		json_array_append_new(spans, span_json(&b[i]));
	req = json_pack("{s:[{s:{s:[{s:s, s:{s:s}}]}, s:[{s:{s:s}, s:o}]}]}",
	                "resourceSpans", "resource", "attributes", "key",
	                "service.name", "value", "stringValue", o->service,
	                "scopeSpans", "scope", "name", "saga-orchestrator",
	                "spans", spans);
	if (req == NULL)
		return NULL;
	text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	return text;
}

static size_t
discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

/* One POST; 0 when the collector answered 2xx. */
static int
post(struct otlp *o, const char *body)
{
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: "
	                                               "application/json");
	long code = 0;
	CURLcode rc;

	curl_easy_reset(o->curl);
	curl_easy_setopt(o->curl, CURLOPT_URL, o->url);
	curl_easy_setopt(o->curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(o->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(o->curl, CURLOPT_TIMEOUT_MS, (long)OTLP_TIMEOUT_MS);
	curl_easy_setopt(o->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(o->curl, CURLOPT_WRITEFUNCTION, discard);
	rc = curl_easy_perform(o->curl);
	if (rc == CURLE_OK)
		curl_easy_getinfo(o->curl, CURLINFO_RESPONSE_CODE, &code);
	curl_slist_free_all(h);
	if (rc != CURLE_OK || code < 200 || code > 299) {
		if (!o->failing) /* once per outage, not once per batch */
			log_warnx("otlp: POST %s: %s (HTTP %ld); spans are "
			          "dropped until the collector answers",
			          o->url,
			          rc != CURLE_OK ? curl_easy_strerror(rc)
			                         : "not a 2xx answer",
			          code);
		o->failing = true;
		return -1;
	}
	if (o->failing)
		log_info("otlp: the collector at %s answers again", o->url);
	o->failing = false;
	return 0;
}

/* Takes up to OTLP_BATCH spans out of the ring into b (mutex held). */
static size_t
take(struct otlp *o, struct otlp_span *b)
{
	size_t k = o->n < OTLP_BATCH ? o->n : OTLP_BATCH;

	for (size_t i = 0; i < k; i++)
		b[i] = o->ring[(o->head + i) % OTLP_QUEUE];
	o->head = (o->head + k) % OTLP_QUEUE;
	o->n -= k;
	return k;
}

/* Waits for a full batch, the flush interval or stop (mutex held). */
static void
wait_for_work(struct otlp *o)
{
	struct timespec until;
	int64_t ms;

	if (o->stopping || o->n >= OTLP_BATCH)
		return;
	/* pthread_cond_timedwait reads CLOCK_MONOTONIC (otlp_start) */
	ms = clock_mono_ms() + OTLP_FLUSH_MS;
	until.tv_sec = (time_t)(ms / 1000);
	until.tv_nsec = (long)(ms % 1000) * 1000000L;
	pthread_cond_timedwait(&o->cv, &o->mu, &until);
}

static void *
run(void *arg)
{
	struct otlp *o = arg;
	struct otlp_span *b = malloc(OTLP_BATCH * sizeof(*b));
	int64_t stop_by = 0;

	pthread_mutex_lock(&o->mu);
	for (;;) {
		size_t k;
		char *body;
		int rc;

		wait_for_work(o);
		if (o->stopping && stop_by == 0)
			stop_by = clock_mono_ms() + OTLP_STOP_MS;
		if (o->stopping && (o->n == 0 || clock_mono_ms() > stop_by))
			break;
		k = b != NULL ? take(o, b) : 0;
		if (k == 0)
			continue;
		pthread_mutex_unlock(&o->mu);
		body = request_json(o, b, k);
		rc = body != NULL ? post(o, body) : -1;
		free(body);
		pthread_mutex_lock(&o->mu);
		if (rc == 0) {
			o->stats.exported += k;
		} else {
			o->stats.dropped += k;
			o->stats.posts_failed++;
		}
	}
	o->stats.dropped += o->n;
	pthread_mutex_unlock(&o->mu);
	free(b);
	return NULL;
}

static void
otlp_free(struct otlp *o)
{
	if (o->curl != NULL)
		curl_easy_cleanup(o->curl);
	free(o->ring);
	free(o->url);
	free(o->service);
	free(o);
}

struct otlp *
otlp_start(const char *url, const char *service, char *err, size_t errlen)
{
	struct otlp *o;
	pthread_condattr_t ca;

	if (strncmp(url, "http://", 7) != 0 &&
	    strncmp(url, "https://", 8) != 0) {
		snprintf(err, errlen,
		         "--otlp-url %s: expected http://HOST:PORT/v1/traces",
		         url);
		return NULL;
	}
	o = calloc(1, sizeof(*o));
	if (o == NULL ||
	    (o->ring = calloc(OTLP_QUEUE, sizeof(*o->ring))) == NULL ||
	    (o->url = strdup(url)) == NULL ||
	    (o->service = strdup(service)) == NULL ||
	    (o->curl = curl_easy_init()) == NULL) {
		snprintf(err, errlen, "otlp: out of memory");
		if (o != NULL)
			otlp_free(o);
		return NULL;
	}
	pthread_mutex_init(&o->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&o->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&o->thread, NULL, run, o) != 0) {
		snprintf(err, errlen, "otlp: cannot start a thread");
		pthread_cond_destroy(&o->cv);
		pthread_mutex_destroy(&o->mu);
		otlp_free(o);
		return NULL;
	}
	return o;
}

void
otlp_stop(struct otlp *o)
{
	if (o == NULL)
		return;
	pthread_mutex_lock(&o->mu);
	o->stopping = true;
	pthread_cond_signal(&o->cv);
	pthread_mutex_unlock(&o->mu);
	pthread_join(o->thread, NULL);
	pthread_cond_destroy(&o->cv);
	pthread_mutex_destroy(&o->mu);
	otlp_free(o);
}

bool
otlp_emit(struct otlp *o, const struct otlp_span *s)
{
	bool queued = false;

	if (o == NULL)
		return false;
	assert(strlen(s->trace_id) == 32 && strlen(s->span_id) == 16);
	pthread_mutex_lock(&o->mu);
	if (o->n < OTLP_QUEUE && !o->stopping) {
		o->ring[(o->head + o->n) % OTLP_QUEUE] = *s;
		o->n++;
		queued = true;
		if (o->n == OTLP_BATCH)
			pthread_cond_signal(&o->cv);
	} else {
		o->stats.dropped++;
	}
	pthread_mutex_unlock(&o->mu);
	return queued;
}

struct otlp_stats
otlp_stats(struct otlp *o)
{
	struct otlp_stats s;

	pthread_mutex_lock(&o->mu);
	s = o->stats;
	pthread_mutex_unlock(&o->mu);
	return s;
}

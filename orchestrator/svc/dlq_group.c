/* dlq_group.c -- dead letters as records, their groups, and what the
 * management API says about them (dlq_group.h). The AMQP side, the
 * actions, is dlq_act.c.
 *
 * Grouping is a hash of the normalised reason into a table sized for n:
 * a DLQ the console looks at holds at most DLQ_PEEK_MAX messages and one
 * `sagactl` acts on at most DLQ_ACT_MAX, so a linear scan of the groups
 * found so far would do; the keys make it one strcmp per group anyway.
 */
#include "dlq_group.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "hash.h"
#include "jsonout.h"
#include "mgmt.h"

static bool
word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' ||
	       (unsigned char)c >= 0x80;
}

void
dlq_normalise(const char *reason, char *out, size_t cap)
{
	size_t o = 0;
	const char *p = reason;

	while (*p != '\0' && o + 2 < cap) {
		const char *w = p;
		bool digit = false;

		if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
			while (*p == ' ' || *p == '\t' || *p == '\n' ||
			       *p == '\r')
				p++;
			if (o > 0 && *p != '\0')
				out[o++] = ' ';
			continue;
		}
		if (!word_char(*p)) {
			out[o++] = *p++;
			continue;
		}
		while (word_char(*p)) {
			digit = digit || (*p >= '0' && *p <= '9');
			p++;
		}
		/* a sentence's full stop is not part of its last word */
		if (digit) {
			out[o++] = '#';
			if (p[-1] == '.' && o + 1 < cap)
				out[o++] = '.';
		} else {
			size_t k = (size_t)(p - w);
			if (k > cap - o - 1)
				k = cap - o - 1;
			memcpy(out + o, w, k);
			o += k;
		}
	}
	out[o < cap ? o : cap - 1] = '\0';
}

static void
set_key(struct dlq_msg *m)
{
	char norm[sizeof(m->reason)];
	uint64_t h;

	dlq_normalise(m->reason, norm, sizeof(norm));
	h = hash_fnv1a_str(HASH_FNV_INIT, norm);
	snprintf(m->key, sizeof(m->key), "%012" PRIx64, h >> 16);
}

/* The broker's reason when no copy said why. */
static void
broker_reason(struct dlq_msg *m, const char *reason, const char *queue)
{
	if (reason[0] == '\0')
		snprintf(m->reason, sizeof(m->reason), "(no reason given)");
	else if (queue[0] != '\0')
		snprintf(m->reason, sizeof(m->reason), "%s by the broker in %s",
		         reason, queue);
	else
		snprintf(m->reason, sizeof(m->reason), "%s by the broker",
		         reason);
}

/* A copy's "from QUEUE: reason" (the orchestrator's) names its queue. */
static void
from_error(struct dlq_msg *m)
{
	const char *end;

	if (m->from[0] != '\0' || strncmp(m->reason, "from ", 5) != 0)
		return;
	end = strstr(m->reason + 5, ": ");
	if (end != NULL && end > m->reason + 5)
		snprintf(m->from, sizeof(m->from), "%.*s",
		         (int)(end - m->reason - 5), m->reason + 5);
}

void
dlq_msg_from_delivery(struct dlq_msg *m, const struct bus_delivery *d)
{
	memset(m, 0, sizeof(*m));
	snprintf(m->id, sizeof(m->id), "%s", d->message_id);
	snprintf(m->saga, sizeof(m->saga), "%s", d->correlation_id);
	snprintf(m->type, sizeof(m->type), "%s", d->type);
	snprintf(m->from, sizeof(m->from), "%s", d->death_queue);
	if (d->error[0] != '\0')
		snprintf(m->reason, sizeof(m->reason), "%s", d->error);
	else
		broker_reason(m, d->death_reason, d->death_queue);
	from_error(m);
	m->attempts = d->attempts + d->rejected_count;
	m->published_ms = d->timestamp_ms;
	m->bytes = d->len;
	set_key(m);
}

static const char *
jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s != NULL ? s : "";
}

/* x-saga-attempts plus every x-death count (rejections and expiries). */
static long
mgmt_attempts(const json_t *headers)
{
	const json_t *v = json_object_get(headers, "x-saga-attempts"), *e;
	long n = json_is_integer(v) ? (long)json_integer_value(v) : 0;
	size_t i;

	json_array_foreach(json_object_get(headers, "x-death"), i, e)
	{
		v = json_object_get(e, "count");
		if (json_is_integer(v) && json_integer_value(v) > 0)
			n += (long)json_integer_value(v);
	}
	return n;
}

/* The publish time: x-published-ms, else the AMQP timestamp (s). */
static int64_t
mgmt_time(const json_t *props, const json_t *headers)
{
	const json_t *v = json_object_get(headers, BUS_HEADER_PUBLISHED_MS);

	if (json_is_integer(v))
		return (int64_t)json_integer_value(v);
	v = json_object_get(props, "timestamp");
	return json_is_integer(v) ? (int64_t)json_integer_value(v) * 1000 : 0;
}

void
dlq_msg_from_mgmt(struct dlq_msg *m, const json_t *msg)
{
	const json_t *p = json_object_get(msg, "properties");
	const json_t *h = json_object_get(p, "headers");
	const json_t *b = json_object_get(msg, "payload_bytes");

	memset(m, 0, sizeof(*m));
	snprintf(m->id, sizeof(m->id), "%s", jstr(p, "message_id"));
	snprintf(m->saga, sizeof(m->saga), "%s", jstr(p, "correlation_id"));
	snprintf(m->type, sizeof(m->type), "%s", jstr(p, "type"));
	snprintf(m->from, sizeof(m->from), "%s",
	         jstr(h, "x-first-death-queue"));
	if (jstr(h, "x-saga-error")[0] != '\0')
		snprintf(m->reason, sizeof(m->reason), "%s",
		         jstr(h, "x-saga-error"));
	else
		broker_reason(m, jstr(h, "x-first-death-reason"),
		              jstr(h, "x-first-death-queue"));
	from_error(m);
	m->attempts = mgmt_attempts(h);
	m->published_ms = mgmt_time(p, h);
	m->bytes = json_is_integer(b) ? (size_t)json_integer_value(b) : 0;
	set_key(m);
}

bool
dlq_origin(const struct dlq_msg *m, const char *dlq, const char *to, char *buf,
           size_t cap)
{
	size_t n = strlen(dlq);

	if (to != NULL && to[0] != '\0')
		snprintf(buf, cap, "%s", to);
	else if (m->from[0] != '\0')
		snprintf(buf, cap, "%s", m->from);
	else if (n > 4 && strcmp(dlq + n - 4, ".dlq") == 0)
		snprintf(buf, cap, "%.*s", (int)(n - 4), dlq);
	else
		return false;
	return true;
}

/* Appends s to the array a unless it is there (or empty); 0, or -1. */
static int
add_distinct(json_t *a, const char *s, size_t max, json_int_t *more)
{
	size_t i;
	json_t *v;

	if (s[0] == '\0')
		return 0;
	json_array_foreach(a, i, v)
	{
		if (strcmp(json_string_value(v), s) == 0)
			return 0;
	}
	if (json_array_size(a) >= max) {
		(*more)++;
		return 0;
	}
	return json_array_append_new(a, jsonout_str(s));
}

static json_t *
new_group(const struct dlq_msg *m)
{
	char norm[sizeof(m->reason)];

	dlq_normalise(m->reason, norm, sizeof(norm));
	return json_pack("{s:s,s:o,s:o,s:I,s:[],s:[],s:[],s:I}", "key", m->key,
	                 "reason", jsonout_str(norm), "example",
	                 jsonout_str(m->reason), "count", (json_int_t)0, "from",
	                 "types", "sagas", "sagas_more", (json_int_t)0);
}

/* Counts m into its group g; 0, or -1 (out of memory). */
static int
count_in(json_t *g, const struct dlq_msg *m)
{
	json_int_t more = json_integer_value(json_object_get(g, "sagas_more"));
	json_int_t unused = 0;

	if (add_distinct(json_object_get(g, "sagas"), m->saga, DLQ_SAGAS_MAX,
	                 &more) != 0 ||
	    add_distinct(json_object_get(g, "from"), m->from, 50, &unused) !=
	            0 ||
	    add_distinct(json_object_get(g, "types"), m->type, 50, &unused) !=
	            0)
		return -1;
	return json_object_set_new(g, "sagas_more", json_integer(more)) ||
	       json_object_set_new(
	               g, "count",
	               json_integer(
	                       json_integer_value(json_object_get(g, "count")) +
	                       1));
}

static int
by_count(const void *a, const void *b)
{
	const json_t *x = *(const json_t *const *)a;
	const json_t *y = *(const json_t *const *)b;
	json_int_t cx = json_integer_value(json_object_get(x, "count"));
	json_int_t cy = json_integer_value(json_object_get(y, "count"));
	json_int_t ox = json_integer_value(json_object_get(x, "_order"));
	json_int_t oy = json_integer_value(json_object_get(y, "_order"));

	if (cx != cy)
		return cx > cy ? -1 : 1;
	return ox < oy ? -1 : ox > oy;
}

/* The groups of byk (an object key -> group) as a sorted array. */
static json_t *
sorted(json_t *byk)
{
	size_t n = json_object_size(byk), i = 0;
	json_t **v = calloc(n + 1, sizeof(*v)), *arr = json_array(), *g;
	const char *k;

	if (v == NULL || arr == NULL) {
		free(v);
		json_decref(arr);
		return NULL;
	}
	json_object_foreach(byk, k, g) v[i++] = g;
	qsort(v, n, sizeof(*v), by_count);
	for (i = 0; i < n; i++) {
		json_object_del(v[i], "_order");
		if (json_array_append(arr, v[i]) != 0) {
			json_decref(arr);
			arr = NULL;
			break;
		}
	}
	free(v);
	return arr;
}

json_t *
dlq_groups_json(const struct dlq_msg *m, size_t n)
{
	json_t *byk = json_object(), *arr;
	json_int_t order = 0;

	for (size_t i = 0; byk != NULL && i < n; i++) {
		json_t *g = json_object_get(byk, m[i].key);
		if (g == NULL) {
			g = new_group(&m[i]);
			if (g == NULL ||
			    json_object_set_new(g, "_order",
			                        json_integer(order++)) != 0 ||
			    json_object_set_new(byk, m[i].key, g) != 0) {
				json_decref(byk);
				return NULL;
			}
		}
		if (count_in(g, &m[i]) != 0) {
			json_decref(byk);
			return NULL;
		}
	}
	if (byk == NULL)
		return NULL;
	arr = sorted(byk);
	json_decref(byk);
	return arr;
}

json_t *
dlq_msgs_json(const struct dlq_msg *m, size_t n, int64_t now_ms)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr != NULL && i < n; i++) {
		int64_t age =
		        m[i].published_ms > 0 && now_ms >= m[i].published_ms
		                ? now_ms - m[i].published_ms
		                : -1;
		json_t *o = json_pack(
		        "{s:o,s:o,s:o,s:o,s:s,s:o,s:I,s:I,s:I,s:I}",
		        "message_id", jsonout_str(m[i].id), "saga",
		        jsonout_str(m[i].saga), "type", jsonout_str(m[i].type),
		        "reason", jsonout_str(m[i].reason), "key", m[i].key,
		        "from", jsonout_str(m[i].from), "attempts",
		        (json_int_t)m[i].attempts, "published_ms",
		        (json_int_t)m[i].published_ms, "age_ms",
		        (json_int_t)age, "bytes", (json_int_t)m[i].bytes);
		if (json_array_append_new(arr, o) != 0) {
			json_decref(arr);
			arr = NULL;
		}
	}
	return arr;
}

static bool
is_dlq(const char *name)
{
	size_t n = strlen(name);
	return n > 4 && strcmp(name + n - 4, ".dlq") == 0;
}

json_t *
dlq_discover(const char *mgmt_url, const char *vhost, char *err, size_t errlen)
{
	struct mgmt_queue *q;
	size_t n;
	json_t *arr;

	if (mgmt_queues(mgmt_url, vhost, &q, &n, err, errlen) != 0)
		return NULL;
	arr = json_array();
	for (size_t i = 0; arr != NULL && i < n; i++) {
		if (!is_dlq(q[i].name))
			continue;
		if (json_array_append_new(
		            arr,
		            json_pack("{s:o,s:I,s:I}", "queue",
		                      jsonout_str(q[i].name), "messages",
		                      (json_int_t)q[i].messages, "consumers",
		                      (json_int_t)q[i].consumers)) != 0) {
			json_decref(arr);
			arr = NULL;
		}
	}
	free(q);
	if (arr == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	return json_pack("{s:o}", "queues", arr);
}

int
dlq_peek(const char *mgmt_url, const char *vhost, const char *queue, long max,
         struct dlq_msg **out, size_t *n, char *err, size_t errlen)
{
	json_t *doc = mgmt_peek(mgmt_url, vhost, queue, max, err, errlen), *e;
	size_t i;

	*out = NULL;
	*n = 0;
	if (doc == NULL)
		return -1;
	*out = calloc(json_array_size(doc) + 1, sizeof(**out));
	if (*out == NULL) {
		snprintf(err, errlen, "out of memory");
		json_decref(doc);
		return -1;
	}
	json_array_foreach(doc, i, e) dlq_msg_from_mgmt(&(*out)[i], e);
	*n = json_array_size(doc);
	json_decref(doc);
	return 0;
}

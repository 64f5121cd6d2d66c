/* mgmt.c -- see mgmt.h. One curl easy handle per call: the console calls
 * from several HTTP threads at once, and a handle must not be shared
 * between threads; a call is rare (a page load, a sagactl command), so
 * the connection set-up it repeats costs nothing that matters. */
#include "mgmt.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "bus.h"

#define ANSWER_MAX (64L * 1024 * 1024) /* a peek at many large messages */

struct answer {
	char *buf;
	size_t len;
	bool too_big;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_start(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t
collect(char *p, size_t size, size_t n, void *arg)
{
	struct answer *a = arg;
	size_t k = size * n;
	char *nb;

	if (a->len + k > (size_t)ANSWER_MAX) {
		a->too_big = true;
		return 0;
	}
	nb = realloc(a->buf, a->len + k + 1);
	if (nb == NULL)
		return 0;
	a->buf = nb;
	memcpy(a->buf + a->len, p, k);
	a->len += k;
	a->buf[a->len] = '\0';
	return k;
}

void
mgmt_redact(const char *url, char *buf, size_t cap)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL;

	snprintf(buf, cap, "(a bad URL)");
	if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
		if (curl_url_get(u, CURLUPART_PORT, &port,
		                 CURLU_DEFAULT_PORT) != CURLUE_OK)
			port = NULL;
		snprintf(buf, cap, "%s://%s%s%s/", scheme, host,
		         port != NULL ? ":" : "", port != NULL ? port : "");
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
}

/* The user name in url, for the 401 message ("" if none). */
static void
url_user(const char *url, char *buf, size_t cap)
{
	CURLU *u = curl_url();
	char *user = NULL;

	buf[0] = '\0';
	if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_USER, &user, CURLU_URLDECODE) ==
	            CURLUE_OK)
		snprintf(buf, cap, "%s", user);
	curl_free(user);
	curl_url_cleanup(u);
}

/* base + path (base's trailing slash or not). NULL: out of memory. */
static char *
join(const char *base, const char *path)
{
	size_t n = strlen(base);
	bool slash = n > 0 && base[n - 1] == '/';
	size_t cap = n + strlen(path) + 2;
	char *s = malloc(cap);

	if (s != NULL)
		snprintf(s, cap, "%s%s%s", base, slash ? "" : "/", path);
	return s;
}

/* The error for an HTTP status other than 200. */
static void
status_error(const char *url, long code, const char *what, char *err,
             size_t errlen)
{
	char where[300], user[128];

	mgmt_redact(url, where, sizeof(where));
	if (code == 401) {
		url_user(url, user, sizeof(user));
		snprintf(err, errlen,
		         "the management API at %s refused user \"%s\" (401): "
		         "wrong password, or the user lacks the management "
		         "tag",
		         where, user);
	} else if (code == 404) {
		snprintf(err, errlen, "the management API at %s has no %s",
		         where, what);
	} else {
		snprintf(err, errlen,
		         "the management API at %s answered HTTP %ld for %s",
		         where, code, what);
	}
}

/* One request: GET when body is NULL, else a POST of JSON. The parsed
 * JSON answer, or NULL with err set. */
static json_t *
request(const char *url, const char *path, const char *body, const char *what,
        char *err, size_t errlen)
{
	struct answer a = {0};
	struct curl_slist *h = NULL;
	char *full = join(url, path), where[300];
	CURL *c;
	CURLcode rc = CURLE_OUT_OF_MEMORY;
	long code = 0;
	json_t *doc = NULL;
	json_error_t je;

	pthread_once(&curl_once, curl_start);
	c = curl_easy_init();
	if (full != NULL && c != NULL) {
		curl_easy_setopt(c, CURLOPT_URL, full);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)MGMT_TIMEOUT_MS);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
		curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
		if (body != NULL) {
			h = curl_slist_append(h, "Content-Type: "
			                         "application/json");
			curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
			curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		}
		rc = curl_easy_perform(c);
		if (rc == CURLE_OK)
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	}
	mgmt_redact(url, where, sizeof(where));
	if (rc != CURLE_OK)
		snprintf(err, errlen,
		         "cannot reach the broker's management API at %s: %s",
		         where,
		         a.too_big ? "the answer is larger than 64 MiB"
		                   : curl_easy_strerror(rc));
	else if (code != 200)
		status_error(url, code, what, err, errlen);
	else if ((doc = json_loadb(a.buf != NULL ? a.buf : "", a.len, 0,
	                           &je)) == NULL)
		snprintf(err, errlen,
		         "the management API at %s answered %s with something "
		         "that is not JSON (%s)",
		         where, what, je.text);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	free(full);
	free(a.buf);
	return doc;
}

int
mgmt_default_url(const char *amqp_url, char *out, size_t cap, char *err,
                 size_t errlen)
{
	struct bus_url u;
	char first[1024], *user, *pass;
	const char *comma = strchr(amqp_url, ',');
	size_t n =
	        comma != NULL ? (size_t)(comma - amqp_url) : strlen(amqp_url);

	snprintf(first, sizeof(first), "%.*s", (int)n, amqp_url);
	if (bus_url_parse(first, &u, err, errlen) != 0)
		return -1;
	user = curl_easy_escape(NULL, u.user, 0);
	pass = curl_easy_escape(NULL, u.password, 0);
	if (user == NULL || pass == NULL) {
		curl_free(user);
		curl_free(pass);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(out, cap, "http://%s:%s@%s:%d/", user, pass, u.host,
	         MGMT_PORT);
	curl_free(user);
	curl_free(pass);
	return 0;
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(((const struct mgmt_queue *)a)->name,
	              ((const struct mgmt_queue *)b)->name);
}

/* A statistic that may be missing (not computed yet): -1. */
static long
stat_of(const json_t *q, const char *key)
{
	const json_t *v = json_object_get(q, key);
	return json_is_integer(v) ? (long)json_integer_value(v) : -1;
}

/* "api/queues/VHOST" or "api/queues/VHOST/QUEUE/get", each name
 * percent-encoded ("/" is "%2F"). NULL: out of memory. */
static char *
queue_path(const char *vhost, const char *queue, const char *tail)
{
	char *v = curl_easy_escape(NULL, vhost != NULL ? vhost : "/", 0);
	char *q = queue != NULL ? curl_easy_escape(NULL, queue, 0) : NULL;
	size_t cap;
	char *s = NULL;

	if (v != NULL && (queue == NULL || q != NULL)) {
		cap = strlen(v) + (q != NULL ? strlen(q) : 0) + 64;
		s = malloc(cap);
		if (s != NULL)
			snprintf(s, cap, "api/queues/%s%s%s%s", v,
			         q != NULL ? "/" : "", q != NULL ? q : "",
			         tail);
	}
	curl_free(v);
	curl_free(q);
	return s;
}

int
mgmt_queues(const char *url, const char *vhost, struct mgmt_queue **out,
            size_t *n, char *err, size_t errlen)
{
	char *path =
	        queue_path(vhost, NULL, "?columns=name,messages,consumers");
	json_t *doc, *q;
	size_t i, k = 0;

	*out = NULL;
	*n = 0;
	if (path == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	doc = request(url, path, NULL, "such vhost", err, errlen);
	free(path);
	if (doc == NULL)
		return -1;
	if (!json_is_array(doc)) {
		snprintf(err, errlen,
		         "the management API's list of queues "
		         "is not an array");
		json_decref(doc);
		return -1;
	}
	*out = calloc(json_array_size(doc) + 1, sizeof(**out));
	if (*out == NULL) {
		snprintf(err, errlen, "out of memory");
		json_decref(doc);
		return -1;
	}
	json_array_foreach(doc, i, q)
	{
		const char *name =
		        json_string_value(json_object_get(q, "name"));
		if (name == NULL || strlen(name) >= sizeof((*out)->name))
			continue;
		snprintf((*out)[k].name, sizeof((*out)[k].name), "%s", name);
		(*out)[k].messages = stat_of(q, "messages");
		(*out)[k].consumers = stat_of(q, "consumers");
		k++;
	}
	json_decref(doc);
	qsort(*out, k, sizeof(**out), by_name);
	*n = k;
	return 0;
}

json_t *
mgmt_peek(const char *url, const char *vhost, const char *queue, long count,
          char *err, size_t errlen)
{
	char *path = queue_path(vhost, queue, "/get"), what[300], body[200];
	json_t *doc;

	if (path == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(what, sizeof(what), "queue %s", queue);
	/* truncate: the console shows no payloads, only their size */
	snprintf(body, sizeof(body),
	         "{\"count\":%ld,\"ackmode\":\"ack_requeue_true\","
	         "\"encoding\":\"auto\",\"truncate\":64}",
	         count);
	doc = request(url, path, body, what, err, errlen);
	free(path);
	if (doc != NULL && !json_is_array(doc)) {
		snprintf(err, errlen,
		         "the management API's messages of %s are "
		         "not an array",
		         queue);
		json_decref(doc);
		doc = NULL;
	}
	return doc;
}

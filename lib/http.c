/* http.c -- the daemons' HTTP endpoint on libmicrohttpd: see http.h.
 *
 * libmicrohttpd runs an internal polling thread pool (HTTP_THREADS); each
 * request is answered on one of those threads, from a snapshot copied out
 * under the mutex or by a route's handler. Why not the loop's own poll
 * (external select, as order-api once did): a handler that reads a large
 * database would then hold up every message; with threads the loop shares
 * only the snapshots, through one mutex held for a memcpy.
 */
#include "clock.h"
#include "http.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SNAPSHOTS 8

_Static_assert(HTTP_THREADS >= 2, "one slow handler must not block probes");

struct snapshot {
	char path[64];
	int status;
	const char *type; /* a literal (http_publish's contract) */
	char *body;
	size_t len;
	int64_t at_ms, max_age_ms;
};

struct route {
	char prefix[64];
	int methods;
	http_handler fn;
	void *arg;
};

struct http {
	struct MHD_Daemon *d;
	int port;
	pthread_mutex_t mu;
	struct snapshot snaps[SNAPSHOTS];
	size_t nsnaps;
	struct route routes[HTTP_ROUTES];
	size_t nroutes;
};

/* A POST body being received. */
struct upload {
	char *buf;
	size_t len;
	bool too_big;
};

/* ---- responses ---- */

static void
grow(struct http_response *r, size_t more)
{
	size_t cap = r->cap ? r->cap : 1024;
	char *n;

	if (r->oom || r->len + more + 1 <= r->cap)
		return;
	while (cap < r->len + more + 1)
		cap *= 2;
	n = realloc(r->body, cap);
	if (n == NULL) {
		r->oom = true;
		return;
	}
	r->body = n;
	r->cap = cap;
}

void
http_append(struct http_response *r, const char *s, size_t n)
{
	grow(r, n);
	if (r->oom)
		return;
	memcpy(r->body + r->len, s, n);
	r->len += n;
	r->body[r->len] = '\0';
}

void
http_printf(struct http_response *r, const char *fmt, ...)
{
	va_list ap;
	char small[512];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		r->oom = true;
		return;
	}
	if ((size_t)n < sizeof(small)) {
		http_append(r, small, (size_t)n);
		return;
	}
	grow(r, (size_t)n);
	if (r->oom)
		return;
	va_start(ap, fmt);
	vsnprintf(r->body + r->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	r->len += (size_t)n;
}

void
http_add_header(struct http_response *r, const char *name, const char *value)
{
	size_t i = r->nheaders;

	if (i >= 8)
		return;
	r->headers[i][0] = strdup(name);
	r->headers[i][1] = strdup(value);
	if (r->headers[i][0] == NULL || r->headers[i][1] == NULL) {
		free(r->headers[i][0]);
		free(r->headers[i][1]);
		r->oom = true;
		return;
	}
	r->nheaders++;
}

static void
response_clear(struct http_response *r)
{
	free(r->body);
	for (size_t i = 0; i < r->nheaders; i++) {
		free(r->headers[i][0]);
		free(r->headers[i][1]);
	}
	memset(r, 0, sizeof(*r));
}

/* Queues r on c (MHD copies the body); frees r's buffers. */
static enum MHD_Result
send_response(struct MHD_Connection *c, struct http_response *r)
{
	struct MHD_Response *m;
	enum MHD_Result ret;
	static char oom[] = "out of memory\n";

	if (r->oom)
		m = MHD_create_response_from_buffer(sizeof(oom) - 1, oom,
		                                    MHD_RESPMEM_PERSISTENT);
	else
		m = MHD_create_response_from_buffer(r->len, r->body,
		                                    MHD_RESPMEM_MUST_COPY);
	if (m == NULL) {
		response_clear(r);
		return MHD_NO;
	}
	MHD_add_response_header(m, "Content-Type",
	                        r->content_type != NULL
	                                ? r->content_type
	                                : "text/plain; charset=utf-8");
	MHD_add_response_header(m, "Cache-Control", "no-store");
	for (size_t i = 0; !r->oom && i < r->nheaders; i++)
		MHD_add_response_header(m, r->headers[i][0], r->headers[i][1]);
	ret = MHD_queue_response(c, r->oom ? 503 : (unsigned)r->status, m);
	MHD_destroy_response(m);
	response_clear(r);
	return ret;
}

/* ---- snapshots ---- */

void
http_publish(struct http *h, const char *path, int status,
             const char *content_type, const char *body, size_t len,
             int64_t max_age_ms)
{
	struct snapshot *s = NULL;
	char *copy = malloc(len + 1);

	if (copy == NULL)
		return; /* the old copy stays; it ages and goes stale */
	memcpy(copy, body, len);
	copy[len] = '\0';
	pthread_mutex_lock(&h->mu);
	for (size_t i = 0; i < h->nsnaps; i++)
		if (strcmp(h->snaps[i].path, path) == 0)
			s = &h->snaps[i];
	if (s == NULL && h->nsnaps < SNAPSHOTS) {
		s = &h->snaps[h->nsnaps++];
		snprintf(s->path, sizeof(s->path), "%s", path);
	}
	if (s != NULL) {
		free(s->body);
		s->body = copy;
		s->len = len;
		s->status = status;
		s->type = content_type != NULL ? content_type
		                               : "text/plain; charset=utf-8";
		s->at_ms = clock_mono_ms();
		s->max_age_ms = max_age_ms;
		copy = NULL;
	}
	pthread_mutex_unlock(&h->mu);
	free(copy); /* the table was full */
}

/* Fills r from the snapshot at path: 1, or 0 if there is none. */
static int
from_snapshot(struct http *h, const char *path, struct http_response *r)
{
	int found = 0;

	pthread_mutex_lock(&h->mu);
	for (size_t i = 0; i < h->nsnaps; i++) {
		const struct snapshot *s = &h->snaps[i];
		int64_t age = clock_mono_ms() - s->at_ms;
		if (strcmp(s->path, path) != 0)
			continue;
		found = 1;
		if (s->max_age_ms > 0 && age > s->max_age_ms) {
			r->status = 503;
			http_printf(r,
			            "stale: the daemon's loop has not turned "
			            "for %lld ms\n",
			            (long long)age);
		} else {
			r->status = s->status;
			r->content_type = s->type;
			http_append(r, s->body, s->len);
		}
		break;
	}
	pthread_mutex_unlock(&h->mu);
	return found;
}

/* ---- requests ---- */

/* The route for path, copied out: 1, or 0 if none. */
static int
route_for(struct http *h, const char *path, struct route *out)
{
	const struct route *best = NULL;

	pthread_mutex_lock(&h->mu);
	for (size_t i = 0; i < h->nroutes; i++) {
		const struct route *r = &h->routes[i];
		if (strncmp(path, r->prefix, strlen(r->prefix)) == 0 &&
		    (best == NULL || strlen(r->prefix) > strlen(best->prefix)))
			best = r;
	}
	if (best != NULL)
		*out = *best;
	pthread_mutex_unlock(&h->mu);
	return best != NULL;
}

/* Collects a POST body; 1 while more is coming. */
static int
collect(struct upload *u, const char *data, size_t *size)
{
	if (*size == 0)
		return 0;
	if (!u->too_big && u->len + *size <= HTTP_BODY_MAX) {
		char *n = realloc(u->buf, u->len + *size + 1);
		if (n == NULL) {
			u->too_big = true;
		} else {
			memcpy(n + u->len, data, *size);
			u->buf = n;
			u->len += *size;
			u->buf[u->len] = '\0';
		}
	} else {
		u->too_big = true;
	}
	*size = 0;
	return 1;
}

static enum MHD_Result
answer(void *cls, struct MHD_Connection *c, const char *url, const char *method,
       const char *version, const char *data, size_t *data_size, void **con_cls)
{
	struct http *h = cls;
	struct http_response r = {.status = 200};
	bool post = strcmp(method, "POST") == 0;
	bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	struct route rt;
	struct upload *u = *con_cls;

	(void)version;
	if (post && u == NULL) {
		u = calloc(1, sizeof(*u));
		*con_cls = u;
		return u != NULL ? MHD_YES : MHD_NO;
	}
	if (post && collect(u, data, data_size))
		return MHD_YES;
	if (get && from_snapshot(h, url, &r))
		return send_response(c, &r);
	if (!route_for(h, url, &rt)) {
		r.status = 404;
		http_printf(&r, "not found: %s\n", url);
	} else if (!((get && (rt.methods & HTTP_GET)) ||
	             (post && (rt.methods & HTTP_POST)))) {
		r.status = 405;
		http_printf(&r, "method %s not allowed on %s\n", method, url);
	} else if (post && u->too_big) {
		r.status = 413;
		http_printf(&r, "the body is over %d bytes\n", HTTP_BODY_MAX);
	} else {
		struct http_request req = {
		        .method = method,
		        .path = url,
		        .body = post ? (u->buf != NULL ? u->buf : "") : NULL,
		        .body_len = post ? u->len : 0,
		        .conn = c,
		};
		rt.fn(rt.arg, &req, &r);
	}
	return send_response(c, &r);
}

static void
on_done(void *cls, struct MHD_Connection *c, void **con_cls,
        enum MHD_RequestTerminationCode code)
{
	struct upload *u = *con_cls;
	(void)cls;
	(void)c;
	(void)code;
	if (u != NULL) {
		free(u->buf);
		free(u);
		*con_cls = NULL;
	}
}

const char *
http_query(const struct http_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND,
	                                   name);
}

const char *
http_header(const struct http_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

int
http_peer(const struct http_request *req, char *buf, size_t cap)
{
	const union MHD_ConnectionInfo *ci =
	        req->conn != NULL
	                ? MHD_get_connection_info(
	                          req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS)
	                : NULL;
	const struct sockaddr_in *sin;

	assert(cap >= INET_ADDRSTRLEN);
	if (ci == NULL || ci->client_addr == NULL ||
	    ci->client_addr->sa_family != AF_INET) {
		snprintf(buf, cap, "unknown");
		return -1;
	}
	sin = (const struct sockaddr_in *)(const void *)ci->client_addr;
	if (inet_ntop(AF_INET, &sin->sin_addr, buf, (socklen_t)cap) == NULL) {
		snprintf(buf, cap, "unknown");
		return -1;
	}
	return 0;
}

/* ---- lifetime ---- */

int
http_parse_addr(const char *s, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	char *end;
	long port;

	if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
		return -1;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - s), s);
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno != 0 || end == colon + 1 || *end != '\0' || port < 0 ||
	    port > 65535)
		return -1;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &sa->sin_addr) ==
	                       1
	               ? 0
	               : -1;
}

struct http *
http_listen(const char *addr, char *err, size_t errlen)
{
	struct sockaddr_in sa;
	struct http *h;
	const union MHD_DaemonInfo *info;

	if (http_parse_addr(addr, &sa) != 0) {
		snprintf(err, errlen, "http: \"%s\" is not IPv4ADDR:PORT",
		         addr);
		return NULL;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		snprintf(err, errlen, "http: out of memory");
		return NULL;
	}
	pthread_mutex_init(&h->mu, NULL);
	h->d = MHD_start_daemon(
	        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
	                MHD_USE_ERROR_LOG,
	        0, NULL, NULL, answer, h, MHD_OPTION_SOCK_ADDR,
	        (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE,
	        (unsigned)HTTP_THREADS, MHD_OPTION_NOTIFY_COMPLETED, on_done,
	        NULL, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_TIMEOUT_S,
	        MHD_OPTION_END);
	if (h->d == NULL) {
		snprintf(err, errlen, "http: cannot listen on %s: %s", addr,
		         strerror(errno));
		pthread_mutex_destroy(&h->mu);
		free(h);
		return NULL;
	}
	info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
	h->port = info != NULL ? info->port : ntohs(sa.sin_port);
	return h;
}

int
http_port(const struct http *h)
{
	return h->port;
}

int
http_route(struct http *h, const char *prefix, int methods, http_handler fn,
           void *arg)
{
	struct route *r;

	int rc = -1;

	assert(fn != NULL && methods != 0);
	pthread_mutex_lock(&h->mu);
	if (h->nroutes < HTTP_ROUTES && strlen(prefix) < sizeof(r->prefix)) {
		r = &h->routes[h->nroutes++];
		snprintf(r->prefix, sizeof(r->prefix), "%s", prefix);
		r->methods = methods;
		r->fn = fn;
		r->arg = arg;
		rc = 0;
	}
	pthread_mutex_unlock(&h->mu);
	return rc;
}

void
http_close(struct http *h)
{
	if (h == NULL)
		return;
	MHD_stop_daemon(h->d);
	for (size_t i = 0; i < h->nsnaps; i++)
		free(h->snaps[i].body);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

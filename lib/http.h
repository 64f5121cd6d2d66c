/* http.h -- a daemon's HTTP endpoint (/healthz, /metrics, and whatever
 * else it routes) on libmicrohttpd, served by its own threads: never by
 * the daemon's loop.
 *
 * Why. The loop must never wait for a client (the old hand-written server
 * answered from the loop and a silent client held it up to 250 ms), and a
 * client must never wait for the loop. So there are two kinds of routes:
 *
 *   - Snapshots (http_publish): the loop renders a page (health, metrics)
 *     when it suits it and hands over a copy; requests are answered from
 *     the latest copy under a mutex. A snapshot older than its `max_age_ms`
 *     is answered 503 "stale: the daemon's loop has not turned for N ms"
 *     (a loop that is stuck fails its health check instead of passing on
 *     an old answer).
 *   - Handlers (http_route): called on an HTTP thread with the request,
 *     for work that must not run on the loop and touches nothing of it
 *     (pages and JSON read from the database through a connection of
 *     their own). Several requests run at once (a thread pool).
 *
 * GET and HEAD everywhere; POST only on routes registered with
 * HTTP_POST (the body, at most HTTP_BODY_MAX bytes, is handed over whole;
 * a larger one is 413). Anything else is 405, an unknown path 404.
 *
 * Failure contract: http_listen returns NULL with the reason in err;
 * http_publish and the handlers never fail the daemon (out of memory: the
 * request gets 503).
 */
#ifndef SAGA_HTTP_H
#define SAGA_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_BODY_MAX  (64 * 1024)
#define HTTP_ROUTES    32
#define HTTP_THREADS   4 /* the pool answering requests */
#define HTTP_TIMEOUT_S 30

struct http;

/* A response being built: status, content type, body (grown as needed)
 * and extra headers ("Name: value\r\n" pairs, at most 8). */
struct http_response {
	int status;
	const char *content_type; /* default text/plain; charset=utf-8 */
	char *body;
	size_t len, cap;
	bool oom;            /* an append failed: answered 503 */
	char *headers[8][2]; /* owned copies */
	size_t nheaders;
};

/* What a handler is given; everything borrowed for the call. */
struct http_request {
	const char *method; /* GET, HEAD, POST */
	const char *path;   /* without the query */
	const char *body;   /* POST: the body (NUL-terminated), else NULL */
	size_t body_len;
	void *conn; /* for http_query and http_header */
};

typedef void (*http_handler)(void *arg, const struct http_request *req,
                             struct http_response *resp);

/* Listens on "HOST:PORT" (IPv4; port 0: any free port) with its own
 * threads. */
struct http *http_listen(const char *addr, char *err, size_t errlen);
/* The bound port (useful with port 0). */
int http_port(const struct http *h);
/* Stops the threads and frees everything. NULL is fine. */
void http_close(struct http *h);

/* Sets (or replaces) the snapshot answered at `path`, copying the body
 * (content_type is kept as a pointer: pass a literal). max_age_ms:
 * answered 503 once older than that (0: never stale). */
void http_publish(struct http *h, const char *path, int status,
                  const char *content_type, const char *body, size_t len,
                  int64_t max_age_ms);

#define HTTP_GET  1
#define HTTP_POST 2
/* Routes every path starting with `prefix` (longest prefix wins; a
 * snapshot at the exact path wins over a route) to fn on an HTTP thread.
 * methods: HTTP_GET, HTTP_POST or both. -1 when the table is full.
 * Safe to call while serving. */
int http_route(struct http *h, const char *prefix, int methods, http_handler fn,
               void *arg);

/* A query parameter or request header, NULL if absent. */
const char *http_query(const struct http_request *req, const char *name);
const char *http_header(const struct http_request *req, const char *name);
/* The client's IPv4 address ("10.0.0.7") into buf (cap at least
 * INET_ADDRSTRLEN, 16): 0, or -1 with "unknown" when there is none. The
 * TCP peer: behind a reverse proxy, the proxy's address. */
int http_peer(const struct http_request *req, char *buf, size_t cap);

/* Appends printf-style text to a response body (grows it). */
void http_printf(struct http_response *r, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
/* Appends n bytes. */
void http_append(struct http_response *r, const char *s, size_t n);
/* Adds a response header (copied; at most 8, later ones dropped). */
void http_add_header(struct http_response *r, const char *name,
                     const char *value);

/* Parses "HOST:PORT" (IPv4, HOST may be empty for any) into *sa: 0, or -1
 * when it is not that (order-api's listener uses it too). */
struct sockaddr_in;
int http_parse_addr(const char *s, struct sockaddr_in *sa);

#endif

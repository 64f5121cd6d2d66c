/* http.h -- a very small HTTP/1.x server for /healthz and /metrics,
 * driven from a daemon's own poll loop (no threads).
 *
 * http_serve() accepts the connections waiting on the listening socket
 * and answers each one before returning: it reads one request (at most
 * 8 KiB, 250 ms), calls the handler, writes the response and closes. A
 * client that sends nothing costs the loop at most those 250 ms; that is
 * the price of having no thread, acceptable for scrapes and probes, not
 * for public traffic. Only GET; anything else is answered 405; a request
 * that does not parse, 400.
 *
 * Failure contract: http_listen returns NULL with the reason in err;
 * http_serve never fails (a broken client is dropped).
 */
#ifndef SAGA_HTTP_H
#define SAGA_HTTP_H

#include <stddef.h>

struct http;

/* The response a handler fills: status, content type and body (the
 * handler writes into body, up to cap bytes, and sets len). */
struct http_response {
	int status;
	const char *content_type;
	char *body;
	size_t len, cap;
};

/* Called for each GET; path is NUL-terminated, without the query. */
typedef void (*http_handler)(void *arg, const char *path,
                             struct http_response *resp);

/* Listens on "HOST:PORT" (port 0: any free port). */
struct http *http_listen(const char *addr, char *err, size_t errlen);
/* The bound port (useful with port 0). */
int http_port(const struct http *h);
/* Serves every connection waiting now; returns how many. */
int http_serve(struct http *h, http_handler fn, void *arg);
void http_close(struct http *h);

/* Appends printf-style text to a response body (truncating at cap). */
void http_printf(struct http_response *r, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

#endif

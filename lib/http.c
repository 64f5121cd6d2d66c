/* http.c -- see http.h. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define REQ_MAX  8192
#define BODY_MAX (256 * 1024)
#define READ_MS  250

struct http {
	int fd;
	int port;
	char *body;
};

struct http *
http_listen(const char *addr, char *err, size_t errlen)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	struct addrinfo hints = {0}, *ai = NULL;
	struct http *h;
	int one = 1, rc;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (colon == NULL || colon == addr || colon[1] == '\0' ||
	    (size_t)(colon - addr) >= sizeof(host)) {
		snprintf(err, errlen,
		         "bad listen address \"%s\": expected HOST:PORT", addr);
		return NULL;
	}
	snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host, colon + 1, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "bad listen address \"%s\": %s", addr,
		         gai_strerror(rc));
		return NULL;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		freeaddrinfo(ai);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->fd = socket(ai->ai_family,
	               SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->fd < 0 ||
	    setsockopt(h->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(h->fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
	    listen(h->fd, 16) != 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", addr,
		         strerror(errno));
		freeaddrinfo(ai);
		http_close(h);
		return NULL;
	}
	freeaddrinfo(ai);
	if (getsockname(h->fd, (struct sockaddr *)&ss, &sl) == 0)
		h->port =
		        ntohs(ss.ss_family == AF_INET6
		                      ? ((struct sockaddr_in6 *)&ss)->sin6_port
		                      : ((struct sockaddr_in *)&ss)->sin_port);
	h->body = malloc(BODY_MAX);
	if (h->body == NULL) {
		snprintf(err, errlen, "out of memory");
		http_close(h);
		return NULL;
	}
	return h;
}

int
http_port(const struct http *h)
{
	return h->port;
}

void
http_close(struct http *h)
{
	if (h == NULL)
		return;
	if (h->fd >= 0)
		close(h->fd);
	free(h->body);
	free(h);
}

void
http_printf(struct http_response *r, const char *fmt, ...)
{
	va_list ap;
	int n;
	if (r->len >= r->cap)
		return;
	va_start(ap, fmt);
	n = vsnprintf(r->body + r->len, r->cap - r->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		r->len = r->len + (size_t)n < r->cap ? r->len + (size_t)n
		                                     : r->cap - 1;
}

static const char *
reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 431:
		return "Request Header Fields Too Large";
	case 503:
		return "Service Unavailable";
	default:
		return "Status";
	}
}

static void
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		struct pollfd pfd = {fd, POLLOUT, 0};
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
		} else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (poll(&pfd, 1, READ_MS) <= 0)
				return;
		} else {
			return;
		}
	}
}

static void
answer(struct http *h, int fd, http_handler fn, void *arg)
{
	char req[REQ_MAX + 1], path[1024], head[256];
	size_t n = 0;
	struct http_response r = {404, "text/plain; charset=utf-8", h->body, 0,
	                          BODY_MAX};
	char *sp1, *sp2, *q;

	/* read until the end of the headers, bounded in size and time */
	while (n < REQ_MAX && memmem(req, n, "\r\n\r\n", 4) == NULL &&
	       memmem(req, n, "\n\n", 2) == NULL) {
		struct pollfd pfd = {fd, POLLIN, 0};
		ssize_t got;
		if (poll(&pfd, 1, READ_MS) <= 0)
			return; /* slow or silent client: dropped */
		got = recv(fd, req + n, REQ_MAX - n, 0);
		if (got <= 0)
			return;
		n += (size_t)got;
	}
	req[n] = '\0';
	if (n >= REQ_MAX) {
		r.status = 431;
		http_printf(&r, "request too large\n");
		goto send;
	}
	sp1 = strchr(req, ' ');
	sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
	if (sp1 == NULL || sp2 == NULL || strncmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
	    (size_t)(sp2 - sp1 - 1) >= sizeof(path)) {
		r.status = 400;
		http_printf(&r, "bad request\n");
		goto send;
	}
	if (sp1 - req != 3 || strncmp(req, "GET", 3) != 0) {
		r.status = 405;
		http_printf(&r, "only GET\n");
		goto send;
	}
	memcpy(path, sp1 + 1, (size_t)(sp2 - sp1 - 1));
	path[sp2 - sp1 - 1] = '\0';
	q = strchr(path, '?');
	if (q != NULL)
		*q = '\0';
	fn(arg, path, &r);
send:
	snprintf(head, sizeof(head),
	         "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: "
	         "%zu\r\nConnection: close\r\n\r\n",
	         r.status, reason(r.status), r.content_type, r.len);
	write_all(fd, head, strlen(head));
	write_all(fd, r.body, r.len);
}

int
http_serve(struct http *h, http_handler fn, void *arg)
{
	int served = 0;
	for (;;) {
		int fd = accept4(h->fd, NULL, NULL,
		                 SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return served; /* EAGAIN: nobody waiting */
		answer(h, fd, fn, arg);
		close(fd);
		served++;
	}
}

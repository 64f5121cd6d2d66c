/* api_bench -- an HTTP load client for order-api's POST /orders: N
 * keep-alive connections (default 16), each posting a fresh order as
 * soon as its previous answer arrived (closed loop), for a fixed time.
 * Prints one line:
 *
 *   accepted/s p50_ms p99_ms max_ms answered other_status
 *
 * accepted: 202 answers; latency is from the request's first byte
 * written to the answer's last byte read, for every answer. One thread
 * and epoll, so the client costs little of the machine it shares with
 * order-api (there is no wrk package guarantee, so it lives here).
 *
 *   api_bench --port P [--clients 16] [--seconds 5] [--warmup 1]
 */
#include "clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 256
#define BUF         8192

struct client {
	int fd;
	char in[BUF];
	size_t nin;
	char out[2048];
	size_t nout, sent;
	int64_t started_us;
};

static struct {
	int64_t *lat; /* microseconds */
	size_t n, cap;
	long accepted, other;
	uint64_t seq;
	bool measuring;
} S;

static void
next_request(struct client *c)
{
	char body[512];
	int n = snprintf(body, sizeof(body),
	                 "{\"customer_id\":\"bench-%llu\",\"items\":[{\"sku\":"
	                 "\"sku-1\",\"quantity\":1,\"unit_price_cents\":100}],"
	                 "\"currency\":\"EUR\",\"payment_method\":\"card\","
	                 "\"card_token\":\"tok_ok\",\"ship_to\":{\"country\":"
	                 "\"india\"}}",
	                 (unsigned long long)++S.seq);
	c->nout = (size_t)snprintf(c->out, sizeof(c->out),
	                           "POST /orders HTTP/1.1\r\nHost: bench\r\n"
	                           "Content-Type: application/json\r\n"
	                           "Content-Length: %d\r\n\r\n%s",
	                           n, body);
	c->sent = 0;
	c->nin = 0;
	c->started_us = clock_mono_us();
}

static int
connect_to(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port)};
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		perror("api_bench: connect");
		exit(1);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

/* A whole answer in c->in: its status, or 0 if more is to come. */
static int
answer_done(struct client *c)
{
	char *end, *cl;
	long len;
	int status = 0;

	c->in[c->nin] = '\0';
	end = strstr(c->in, "\r\n\r\n");
	if (end == NULL)
		return 0;
	cl = strcasestr(c->in, "Content-Length:");
	len = cl != NULL && cl < end ? strtol(cl + 15, NULL, 10) : 0;
	if ((size_t)(end + 4 - c->in) + (size_t)len > c->nin)
		return 0;
	sscanf(c->in, "HTTP/1.%*d %d", &status);
	return status > 0 ? status : -1;
}

static void
record(int status, int64_t us)
{
	if (!S.measuring)
		return;
	if (status == 202)
		S.accepted++;
	else
		S.other++;
	if (S.n == S.cap) {
		S.cap = S.cap ? S.cap * 2 : 65536;
		S.lat = realloc(S.lat, S.cap * sizeof(*S.lat));
		if (S.lat == NULL)
			exit(1);
	}
	S.lat[S.n++] = us;
}

/* Reads and writes what c can: 1 after an answer (a new request is
 * ready), 0 when it would block, -1 if the connection is gone. */
static int
step(struct client *c)
{
	ssize_t r;

	while (c->sent < c->nout) {
		r = write(c->fd, c->out + c->sent, c->nout - c->sent);
		if (r <= 0)
			return r < 0 && errno == EAGAIN ? 0 : -1;
		c->sent += (size_t)r;
	}
	for (;;) {
		r = read(c->fd, c->in + c->nin, BUF - 1 - c->nin);
		if (r == 0 || (r < 0 && errno != EAGAIN))
			return -1;
		if (r < 0)
			return 0;
		c->nin += (size_t)r;
		int st = answer_done(c);
		if (st != 0) {
			record(st, clock_mono_us() - c->started_us);
			next_request(c);
			return 1; /* the next request: step again */
		}
	}
}

static int
cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static double
pct(double p)
{
	size_t i = (size_t)(p * (double)(S.n - 1));
	return S.n ? (double)S.lat[i] / 1000.0 : 0;
}

static void
run(int ep, int64_t until_us)
{
	struct epoll_event ev[MAX_CLIENTS];

	while (clock_mono_us() < until_us) {
		int k = epoll_wait(ep, ev, MAX_CLIENTS, 100);
		for (int i = 0; i < k; i++) {
			struct client *c = ev[i].data.ptr;
			int r;
			while ((r = step(c)) == 1)
				;
			if (r != 0) {
				fprintf(stderr, "api_bench: connection lost\n");
				exit(1);
			}
		}
	}
}

int
main(int argc, char **argv)
{
	static struct client cl[MAX_CLIENTS];
	int port = 0, n = 16, c, ep;
	double secs = 5, warm = 1;
	int64_t t0;

	while ((c = getopt(argc, argv, "p:c:s:w:")) != -1) {
		if (c == 'p')
			port = atoi(optarg);
		else if (c == 'c')
			n = atoi(optarg);
		else if (c == 's')
			secs = atof(optarg);
		else if (c == 'w')
			warm = atof(optarg);
		else
			return 2;
	}
	if (port <= 0 || n < 1 || n > MAX_CLIENTS || secs <= 0) {
		fprintf(stderr, "usage: api_bench -p PORT [-c CLIENTS] "
		                "[-s SECONDS] [-w WARMUP_SECONDS]\n");
		return 2;
	}
	ep = epoll_create1(0);
	for (int i = 0; i < n; i++) {
		struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLET,
		                        .data.ptr = &cl[i]};
		cl[i].fd = connect_to(port);
		next_request(&cl[i]);
		epoll_ctl(ep, EPOLL_CTL_ADD, cl[i].fd, &e);
	}
	t0 = clock_mono_us();
	run(ep, t0 + (int64_t)(warm * 1e6));
	S.measuring = true;
	t0 = clock_mono_us();
	run(ep, t0 + (int64_t)(secs * 1e6));
	secs = (double)(clock_mono_us() - t0) / 1e6;
	qsort(S.lat, S.n, sizeof(*S.lat), cmp64);
	printf("%.0f %.2f %.2f %.2f %zu %ld\n", (double)S.accepted / secs,
	       pct(0.50), pct(0.99), pct(1.0), S.n, S.other);
	return 0;
}

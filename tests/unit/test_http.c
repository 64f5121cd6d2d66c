/* test_http -- lib/http on libmicrohttpd: snapshots (answered from the
 * latest copy, 503 once stale), routes (longest prefix, query, POST body,
 * 404/405/413), and that a handler that blocks does not hold up the
 * snapshots or other requests (the reason it has threads). */
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "http.h"
#include "testutil.h"

static void
echo(void *arg, const struct http_request *req, struct http_response *r)
{
	const char *q = http_query(req, "q");
	(void)arg;
	r->content_type = "application/json";
	http_printf(r, "{\"path\":\"%s\",\"method\":\"%s\",\"q\":\"%s\"",
	            req->path, req->method, q != NULL ? q : "");
	if (req->body != NULL)
		http_printf(r, ",\"body\":%zu", req->body_len);
	http_printf(r, "}");
	http_add_header(r, "X-Test", "yes");
}

static void
other(void *arg, const struct http_request *req, struct http_response *r)
{
	(void)arg;
	(void)req;
	r->status = 201;
	http_printf(r, "other");
}

static sem_t entered, release;

static void
blocking(void *arg, const struct http_request *req, struct http_response *r)
{
	(void)arg;
	(void)req;
	sem_post(&entered);
	sem_wait(&release);
	http_printf(r, "released");
}

static void *
get_slow(void *arg)
{
	int port = *(int *)arg, st = 0;
	free(testutil_http(port, "GET", "/slow", NULL, NULL, &st));
	return NULL;
}

static void
test_snapshots_and_routes(void)
{
	char err[256], *r;
	int st = 0, port;
	struct http *h = http_listen("127.0.0.1:0", err, sizeof(err));

	CHECK_MSG(h != NULL, "%s", err);
	if (h == NULL)
		return;
	port = http_port(h);
	CHECK(port > 0);
	r = testutil_http(port, "GET", "/healthz", NULL, NULL, &st);
	CHECK_EQ(st, 404); /* nothing published yet */
	free(r);
	http_publish(h, "/healthz", 200, NULL, "ok\n", 3, 0);
	r = testutil_http(port, "GET", "/healthz", NULL, NULL, &st);
	CHECK_EQ(st, 200);
	CHECK(r != NULL && strstr(r, "ok") != NULL);
	free(r);
	http_publish(h, "/healthz", 503, NULL, "down\n", 5, 0);
	r = testutil_http(port, "GET", "/healthz", NULL, NULL, &st);
	CHECK_EQ(st, 503);
	free(r);
	/* stale: a snapshot older than its max age */
	http_publish(h, "/metrics", 200, "text/plain; version=0.0.4", "m 1\n",
	             4, 50);
	usleep(120000);
	r = testutil_http(port, "GET", "/metrics", NULL, NULL, &st);
	CHECK_EQ(st, 503);
	CHECK(r != NULL && strstr(r, "stale") != NULL);
	free(r);
	CHECK(http_route(h, "/api/", HTTP_GET | HTTP_POST, echo, NULL) == 0);
	CHECK(http_route(h, "/api/other", HTTP_GET, other, NULL) == 0);
	r = testutil_http(port, "GET", "/api/x?q=hello%20you", NULL, NULL, &st);
	CHECK_EQ(st, 200);
	CHECK_MSG(r != NULL && strstr(r, "\"q\":\"hello you\"") != NULL, "%s",
	          r ? r : "");
	free(r);
	r = testutil_http(port, "POST", "/api/x", NULL, "{\"a\":1}", &st);
	CHECK_EQ(st, 200);
	CHECK_MSG(r != NULL && strstr(r, "\"body\":7") != NULL, "%s",
	          r ? r : "");
	free(r);
	r = testutil_http(port, "GET", "/api/other/1", NULL, NULL, &st);
	CHECK_EQ(st, 201); /* the longest prefix */
	free(r);
	r = testutil_http(port, "POST", "/api/other", NULL, "x", &st);
	CHECK_EQ(st, 405);
	free(r);
	r = testutil_http(port, "GET", "/nothing", NULL, NULL, &st);
	CHECK_EQ(st, 404);
	free(r);
	{
		size_t n = HTTP_BODY_MAX + 10;
		char *big = malloc(n + 1);
		memset(big, 'x', n);
		big[n] = '\0';
		r = testutil_http(port, "POST", "/api/x", NULL, big, &st);
		CHECK_EQ(st, 413);
		free(r);
		free(big);
	}
	http_close(h);
}

/* While a handler is blocked, snapshots and other routes still answer. */
static void
test_blocked_handler_blocks_nothing(void)
{
	char err[256], *r;
	int st = 0, port;
	pthread_t t;
	struct http *h = http_listen("127.0.0.1:0", err, sizeof(err));

	CHECK_MSG(h != NULL, "%s", err);
	if (h == NULL)
		return;
	port = http_port(h);
	sem_init(&entered, 0, 0);
	sem_init(&release, 0, 0);
	CHECK(http_route(h, "/slow", HTTP_GET, blocking, NULL) == 0);
	CHECK(http_route(h, "/api/", HTTP_GET, echo, NULL) == 0);
	http_publish(h, "/healthz", 200, NULL, "ok\n", 3, 0);
	CHECK(pthread_create(&t, NULL, get_slow, &port) == 0);
	sem_wait(&entered); /* the handler holds one HTTP thread now */
	r = testutil_http(port, "GET", "/healthz", NULL, NULL, &st);
	CHECK_EQ(st, 200);
	free(r);
	r = testutil_http(port, "GET", "/api/y", NULL, NULL, &st);
	CHECK_EQ(st, 200);
	free(r);
	sem_post(&release);
	pthread_join(t, NULL);
	http_close(h);
	sem_destroy(&entered);
	sem_destroy(&release);
}

static void
test_bad_address(void)
{
	char err[256];
	CHECK(http_listen("nowhere", err, sizeof(err)) == NULL);
	CHECK_MSG(strstr(err, "IPv4ADDR:PORT") != NULL, "%s", err);
	CHECK(http_listen("127.0.0.1:99999", err, sizeof(err)) == NULL);
}

int
main(void)
{
	RUN(test_snapshots_and_routes);
	RUN(test_blocked_handler_blocks_nothing);
	RUN(test_bad_address);
	return check_summary();
}

/* console.c -- the console's routes (console.h): which path gets which
 * document, JSON or HTML, and the one read-only connection each request
 * opens and closes.
 *
 * Why a connection per request: libmicrohttpd calls the handlers on
 * several threads at once, and an SQLite connection must not be shared
 * between them without a lock that would make one slow page hold up the
 * others. Opening a read-only connection is cheap next to a page's queries
 * and leaves nothing behind (no statement kept, no snapshot pinned).
 */
#include "console.h"

#include <sys/resource.h>
#include <unistd.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console_int.h"
#include "http.h"
#include "jsonout.h"
#include "store.h"

struct console {
	char *db;
};

json_t *
console_fail(struct console_err *e, int status, const char *fmt, ...)
{
	va_list ap;

	e->status = status;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return NULL;
}

static void
json_answer(struct http_response *r, int status, json_t *doc)
{
	char *text = doc != NULL ? jsonout_text(doc) : NULL;

	json_decref(doc);
	if (text == NULL) {
		r->status = 503;
		http_printf(r, "out of memory\n");
		return;
	}
	r->status = status;
	r->content_type = "application/json";
	http_add_header(r, "Cache-Control", "no-store");
	http_printf(r, "%s\n", text);
	free(text);
}

static void
json_error(struct http_response *r, const struct console_err *e)
{
	json_answer(r, e->status,
	            json_pack("{s:o}", "error", jsonout_str(e->msg)));
}

/* The console's reading must not slow the saga loop: on a small machine
 * the HTTP threads and the loop share few cores, and a summary is tens of
 * milliseconds of CPU. Linux gives each thread its own nice value
 * (setpriority on a thread id): the thread that serves a console request
 * gives way to the loop from its first request on. Best effort: a failure
 * leaves the thread as it was. */
#define CONSOLE_NICE 10

static void
give_way(void)
{
	static _Thread_local int done;

	if (done)
		return;
	done = 1;
	(void)setpriority(PRIO_PROCESS, (id_t)gettid(), CONSOLE_NICE);
}

/* The request's own read-only connection; NULL with e set. */
static struct store *
open_store(const struct console *c, struct console_err *e)
{
	char err[512];
	struct store *st;

	give_way();
	st = store_open_readonly(c->db, err, sizeof(err));

	if (st == NULL)
		console_fail(e, 503, "cannot open the database: %s", err);
	return st;
}

/* /api/...: one document per path. */
static void
api(void *arg, const struct http_request *req, struct http_response *r)
{
	const char *p = req->path + strlen("/api/");
	struct console_err e = {0};
	struct store *st = open_store(arg, &e);
	json_t *doc = NULL;

	if (st == NULL) {
		json_error(r, &e);
		return;
	}
	if (strcmp(p, "sagas") == 0)
		doc = console_sagas_json(st, req, &e);
	else if (strncmp(p, "sagas/", 6) == 0 && p[6] != '\0')
		doc = console_saga_json(st, p + 6, &e, NULL, NULL);
	else if (strcmp(p, "stuck") == 0)
		doc = console_stuck_json(st, req, &e);
	else if (strcmp(p, "charts") == 0)
		doc = console_charts_json(st, &e);
	else if (strcmp(p, "summary") == 0)
		doc = console_summary_json(st, &e);
	else
		console_fail(&e, 404, "no such API: %s", req->path);
	store_close(st);
	if (doc == NULL)
		json_error(r, &e);
	else
		json_answer(r, 200, doc);
}

/* Everything else: the pages. */
static void
page(void *arg, const struct http_request *req, struct http_response *r)
{
	struct console_err e = {0};
	struct store *st = open_store(arg, &e);

	if (st == NULL) {
		r->status = e.status;
		http_printf(r, "%s\n", e.msg);
		return;
	}
	console_page(st, req, r);
	store_close(st);
}

struct console *
console_start(struct http *h, const char *db_path, char *err, size_t errlen)
{
	struct console *c = calloc(1, sizeof(*c));

	if (c == NULL || (c->db = strdup(db_path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		console_free(c);
		return NULL;
	}
	if (http_route(h, "/api/", HTTP_GET, api, c) != 0 ||
	    http_route(h, "/", HTTP_GET, page, c) != 0) {
		/* a route may hold c already: it stays (the daemon stops) */
		snprintf(err, errlen, "console: the HTTP route table is full");
		return NULL;
	}
	return c;
}

void
console_free(struct console *c)
{
	if (c == NULL)
		return;
	free(c->db);
	free(c);
}

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

#include <arpa/inet.h>
#include <netinet/in.h>
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
	struct console_config cfg; /* its strings are the copies below */
	char *strings[5];
	struct console_auth *auth;
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

void
console_json_answer(struct http_response *r, int status, json_t *doc)
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

void
console_json_error(struct http_response *r, int status, const char *msg)
{
	console_json_answer(r, status,
	                    json_pack("{s:o}", "error", jsonout_str(msg)));
}

int
console_guard(struct console *c, const struct http_request *req,
              struct http_response *r, char *actor, size_t cap)
{
	return console_auth_act(c->auth, req, r, actor, cap);
}

bool
console_may_read(struct console *c, const struct http_request *req)
{
	return console_auth_may_read(c->auth, req);
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
	st = store_open_readonly(c->cfg.db_path, err, sizeof(err));

	if (st == NULL)
		console_fail(e, 503, "cannot open the database: %s", err);
	return st;
}

/* p ("sagas/ID/<verb>") names saga ID and verb: ID copied into id. */
static bool
saga_verb(const char *p, const char *verb, char *id, size_t cap)
{
	size_t n = strlen(p), v = strlen(verb);
	size_t idlen = n - 6 - v - 1;

	if (strncmp(p, "sagas/", 6) != 0 || n <= 6 + v + 1 ||
	    strcmp(p + n - v, verb) != 0 || p[n - v - 1] != '/' ||
	    idlen >= cap || memchr(p + 6, '/', idlen) != NULL)
		return false;
	memcpy(id, p + 6, idlen);
	id[idlen] = '\0';
	return true;
}

/* GET /api/...: one document per path. */
static json_t *
api_get(struct store *st, const struct http_request *req, const char *p,
        struct console_err *e)
{
	char id[SAGA_ID_MAX];

	if (strcmp(p, "sagas") == 0)
		return console_sagas_json(st, req, e);
	if (saga_verb(p, "preview", id, sizeof(id)))
		return console_preview_json(st, id, req, e);
	if (strncmp(p, "sagas/", 6) == 0 && p[6] != '\0')
		return console_saga_json(st, p + 6, e, NULL, NULL);
	if (strcmp(p, "stuck") == 0)
		return console_stuck_json(st, req, e);
	if (strcmp(p, "charts") == 0)
		return console_charts_json(st, e);
	if (strcmp(p, "summary") == 0)
		return console_summary_json(st, e);
	if (strcmp(p, "actions/preview") == 0)
		return console_bulk_preview_json(st, req, e);
	return console_fail(e, 404, "no such API: %s", req->path);
}

/* POST /api/...: the actions, behind the guard. */
static void
api_post(struct console *c, struct store *st, const struct http_request *req,
         const char *p, struct http_response *r)
{
	char actor[64], id[SAGA_ID_MAX];

	if (console_guard(c, req, r, actor, sizeof(actor)) != 0)
		return;
	if (saga_verb(p, "actions", id, sizeof(id)))
		console_act_one(&c->cfg, st, id, actor, req, r);
	else if (strcmp(p, "actions") == 0)
		console_act_bulk(&c->cfg, st, actor, req, r);
	else
		console_json_error(r, 404, "no such action path");
}

static void
api(void *arg, const struct http_request *req, struct http_response *r)
{
	struct console *c = arg;
	const char *p = req->path + strlen("/api/");
	struct console_err e = {0};
	struct store *st;
	json_t *doc;

	if (!console_auth_may_read(c->auth, req)) {
		console_json_error(r, 401, "not logged in: POST /login first");
		return;
	}
	st = open_store(c, &e);
	if (st == NULL) {
		console_json_error(r, e.status, e.msg);
		return;
	}
	if (strcmp(req->method, "POST") == 0) {
		api_post(c, st, req, p, r);
		store_close(st);
		return;
	}
	doc = api_get(st, req, p, &e);
	store_close(st);
	/* one saga's document: its events too, read with no store open */
	if (doc != NULL && strncmp(p, "sagas/", 6) == 0 &&
	    strchr(p + 6, '/') == NULL)
		console_saga_audit(c->cfg.audit_amqp, doc);
	if (doc == NULL)
		console_json_error(r, e.status, e.msg);
	else
		console_json_answer(r, 200, doc);
}

static void
viewer(struct console *c, const struct http_request *req, char *user,
       size_t cap, struct console_viewer *v)
{
	v->user = console_auth_user(c->auth, req, user, cap) ? user : NULL;
	v->can_act = console_auth_enabled(c->auth);
	v->can_login = c->cfg.users_file != NULL;
	v->audit_amqp = c->cfg.audit_amqp;
}

/* Everything else: the pages; a reader who must log in goes there. */
static void
page(void *arg, const struct http_request *req, struct http_response *r)
{
	struct console *c = arg;
	struct console_err e = {0};
	struct console_viewer v;
	struct store *st;
	char user[64];

	if (!console_auth_may_read(c->auth, req)) {
		r->status = 303;
		http_add_header(r, "Location", "/login");
		http_printf(r, "log in first: /login\n");
		return;
	}
	st = open_store(c, &e);
	if (st == NULL) {
		r->status = e.status;
		http_printf(r, "%s\n", e.msg);
		return;
	}
	viewer(c, req, user, sizeof(user), &v);
	console_page(st, req, r, &v);
	store_close(st);
}

/* /login (GET the page, POST the credentials) and POST /logout. */
static void
login(void *arg, const struct http_request *req, struct http_response *r)
{
	struct console *c = arg;
	struct console_viewer v;
	char user[64];

	if (strcmp(req->path, "/logout") == 0) {
		if (strcmp(req->method, "POST") == 0)
			console_auth_logout(c->auth, req, r);
		else
			console_json_error(r, 405, "POST /logout");
	} else if (strcmp(req->path, "/login") != 0) {
		console_json_error(r, 404, "no such page");
	} else if (strcmp(req->method, "POST") == 0) {
		console_auth_login(c->auth, req, r);
	} else {
		viewer(c, req, user, sizeof(user), &v);
		console_login_page(req, r, &v);
	}
}

/* Whether HOST:PORT is on 127.0.0.0/8. */
static bool
is_loopback(const char *addr)
{
	struct sockaddr_in sa;

	return addr != NULL && http_parse_addr(addr, &sa) == 0 &&
	       (ntohl(sa.sin_addr.s_addr) >> 24) == 127;
}

/* cfg's string *view copied into c->strings[k] (NULL or "" stays NULL). */
static int
copy(struct console *c, size_t k, const char **view)
{
	const char *src = *view;

	*view = NULL;
	if (src == NULL || src[0] == '\0')
		return 0;
	c->strings[k] = strdup(src);
	*view = c->strings[k];
	return *view != NULL ? 0 : -1;
}

struct console *
console_start(struct http *h, const struct console_config *cfg, char *err,
              size_t errlen)
{
	struct console *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->cfg = *cfg;
	if (copy(c, 0, &c->cfg.db_path) != 0 ||
	    copy(c, 1, &c->cfg.listen) != 0 ||
	    copy(c, 2, &c->cfg.users_file) != 0 ||
	    copy(c, 3, &c->cfg.trust_header) != 0 ||
	    copy(c, 4, &c->cfg.audit_amqp) != 0 || c->cfg.db_path == NULL) {
		snprintf(err, errlen, "out of memory");
		console_free(c);
		return NULL;
	}
	c->auth = console_auth_new(c->cfg.users_file, c->cfg.trust_header,
	                           is_loopback(c->cfg.listen), err, errlen);
	if (c->auth == NULL) {
		console_free(c);
		return NULL;
	}
	if (http_route(h, "/api/", HTTP_GET | HTTP_POST, api, c) != 0 ||
	    http_route(h, "/login", HTTP_GET | HTTP_POST, login, c) != 0 ||
	    http_route(h, "/logout", HTTP_POST, login, c) != 0 ||
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
	console_auth_free(c->auth);
	for (size_t i = 0; i < sizeof(c->strings) / sizeof(c->strings[0]); i++)
		free(c->strings[i]);
	free(c);
}

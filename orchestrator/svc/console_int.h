/* console_int.h -- private to the console (console.c: routes and
 * parameters; console_api.c: the JSON documents; console_html.c: the pages
 * rendered from those documents; console_svg.c: a chart drawn as SVG).
 *
 * Every page is rendered from the JSON document its API answers, so the
 * page and /api/... cannot disagree.
 */
#ifndef SAGA_CONSOLE_INT_H
#define SAGA_CONSOLE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "chart.h"
#include "chart_tools.h"
#include "engine.h"
#include "http.h"
#include "store.h"

/* Why a document could not be built: an HTTP status and a message. */
struct console_err {
	int status; /* 400, 404, 503 */
	char msg[256];
};

/* Sets e and returns NULL (for the builders' one-line failures). */
json_t *console_fail(struct console_err *e, int status, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* The documents (NULL with e set on failure; the caller owns the rest).
 * console_saga_json, when chart is not NULL, also hands over the saga's
 * chart (*chart, chart_free) and its path (*walk, chart_walk_release);
 * both are NULL/empty when the chart cannot be loaded. */
json_t *console_sagas_json(struct store *st, const struct http_request *req,
                           struct console_err *e);
json_t *console_saga_json(struct store *st, const char *id,
                          struct console_err *e, struct chart **chart,
                          struct chart_walk *walk);
json_t *console_stuck_json(struct store *st, const struct http_request *req,
                           struct console_err *e);
json_t *console_charts_json(struct store *st, struct console_err *e);
json_t *console_summary_json(struct store *st, struct console_err *e);
/* Adds "audit" to a saga's document (console_saga_json's): {events:
 * [audit_event_json...], complete, note, error} read from the stream
 * audit at amqp (console_audit.c; NULL: error says it is not
 * configured). Blocks the calling HTTP thread for the read (a few
 * seconds at most). */
void console_saga_audit(const char *amqp, json_t *doc);

/* Where a filter's parameters come from: the query (console_query, src
 * the request) or a JSON body (src the object). NULL when absent. */
typedef const char *(*console_param_fn)(const void *src, const char *name);
const char *console_query(const void *req, const char *name);
/* The filter /api/sagas, /sagas and the bulk actions take (status, chart,
 * state, id_prefix, older_than, q, limit, after): 0, or -1 with e set. */
int console_filter(console_param_fn get, const void *src,
                   struct store_saga_filter *f, struct console_err *e);

/* ---- actions (console_preview.c, console_act.c) ---- */

struct preview;
struct preview_undo;
struct saga;

/* The most sagas one bulk action takes (a larger set: narrow the
 * filter). */
#define CONSOLE_BULK_MAX 1000

/* Compensations as JSON: [{state, to, command, message_id,
 * outcome_unknown, current}]. NULL on out of memory. */
json_t *console_undos_json(const struct preview_undo *u, size_t n);

/* Saga id and its chart from the database: 0, or -1 with e set (404 no
 * such saga). Release with saga_clear and chart_free. */
int console_load_saga(struct store *st, const char *id, struct saga *s,
                      struct chart **c, struct console_err *e);

/* GET /api/sagas/ID/preview?action=&step= and /api/actions/preview?
 * action=&step=&<filters>: the documents (docs/console.md). */
json_t *console_preview_json(struct store *st, const char *id,
                             const struct http_request *req,
                             struct console_err *e);
json_t *console_bulk_preview_json(struct store *st,
                                  const struct http_request *req,
                                  struct console_err *e);

/* The ids of the sagas filter f selects, at most CONSOLE_BULK_MAX (more:
 * 400 naming the count). *ids is a malloc'd array of *n ids. */
int console_select(struct store *st, struct store_saga_filter *f,
                   char (**ids)[SAGA_ID_MAX], size_t *n, struct console_err *e);

/* Parses an action name and its step (NULL when none): 0, or -1 with e
 * set (400 naming the field). */
int console_action_param(const char *action, const char *step,
                         enum engine_event_type *op, struct console_err *e);

/* ---- who may act (console_auth.c) ---- */

/* The header every request that acts must carry (any value): the CSRF
 * guard, with the SameSite session cookie. */
#define CONSOLE_CSRF_HEADER "X-Saga-Console"

struct console_auth;

/* users_file (lines "name:crypt-hash") and trust_header may be NULL;
 * loopback: the listener is on 127.0.0.0/8, pages are open. NULL with err
 * on a bad users file (the line named) or out of memory. */
struct console_auth *console_auth_new(const char *users_file,
                                      const char *trust_header, bool loopback,
                                      char *err, size_t errlen);
void console_auth_free(struct console_auth *a);
/* Whether anyone can log in (a users file or a trusted header). */
bool console_auth_enabled(const struct console_auth *a);
/* The request's user (a live session, or the trusted header) into user:
 * true, or false if nobody. */
bool console_auth_user(struct console_auth *a, const struct http_request *req,
                       char *user, size_t cap);
/* May the request read pages and the API? On loopback, or with no login
 * configured, anyone; else a logged-in user. */
bool console_auth_may_read(struct console_auth *a,
                           const struct http_request *req);
/* The guard of every request that acts: 0 with the actor in user; else
 * the response is answered (403 no login configured or the CSRF header
 * missing, 401 not logged in; JSON) and -1. */
int console_auth_act(struct console_auth *a, const struct http_request *req,
                     struct http_response *r, char *user, size_t cap);
/* POST /login and POST /logout (docs/console.md, "Login"). */
void console_auth_login(struct console_auth *a, const struct http_request *req,
                        struct http_response *r);
void console_auth_logout(struct console_auth *a, const struct http_request *req,
                         struct http_response *r);

/* The console's guard for routes that act (console.c; what every POST
 * route but /login calls first): console_auth_act with the console's
 * settings. */
struct console;
int console_guard(struct console *c, const struct http_request *req,
                  struct http_response *r, char *actor, size_t cap);

/* {"error": msg} with status. */
void console_json_error(struct http_response *r, int status, const char *msg);
/* doc (taken) as the JSON answer with status; NULL doc: 503. */
void console_json_answer(struct http_response *r, int status, json_t *doc);

/* POST /api/sagas/ID/actions and POST /api/actions (console_act.c):
 * actor is the guard's user; operate applies the requests (console.h). */
struct console_config;
void console_act_one(const struct console_config *cfg, struct store *st,
                     const char *id, const char *actor,
                     const struct http_request *req, struct http_response *r);
void console_act_bulk(const struct console_config *cfg, struct store *st,
                      const char *actor, const struct http_request *req,
                      struct http_response *r);

/* Parses "250ms", "10s", "5m", "2h", "1d" into *ms: 0, or -1. */
int console_parse_duration(const char *s, int64_t *ms);

/* The chart version `version` from the database; NULL if it is not there
 * or cannot be loaded (the reason in e). */
struct chart *console_chart(struct store *st, const char *version,
                            struct console_err *e);

/* HTML: text escaped for element content and attribute values. */
void html_text(struct http_response *r, const char *s);
/* Text percent-encoded for a URL's query. */
void html_url(struct http_response *r, const char *s);

/* Pieces of console_html.c for the pages built elsewhere
 * (console_dlq.c): the page's head with the navigation and its foot with
 * the refresh script, a link to /sagas/ID, a duration ("3.5 s", "12 min"),
 * an error page. */
void console_html_head(struct http_response *r, const char *title);
void console_html_foot(struct http_response *r);
void console_html_saga(struct http_response *r, const char *id);
void console_html_dur(struct http_response *r, int64_t ms);
void console_html_error(struct http_response *r, const struct console_err *e);
/* Who is looking, for the pages: the header's login link and the
 * actions offered. */
struct console_viewer {
	const char *user; /* logged in as, or NULL */
	bool can_act;     /* logins are configured: actions can be taken */
	bool can_login;   /* a users file: /login works */
	const char *audit_amqp; /* the saga page reads its events with it
	                         * (console_saga_audit), or NULL */
};

/* The pages: path is the request's ("/", "/sagas", "/sagas/ID", ...). */
void console_page(struct store *st, const struct http_request *req,
                  struct http_response *r, const struct console_viewer *v);
/* The action pieces of the pages (console_act_html.c): the script, the
 * header's login link, the saga page's section#actions (the buttons
 * the status allows, the preview panel), the sagas list's bulk form. */
void console_act_script(struct http_response *r);
void console_login_link(struct http_response *r,
                        const struct console_viewer *v);
void console_actions_section(struct http_response *r, const char *id,
                             const char *status, const char *state,
                             const struct console_viewer *v);
void console_bulk_form(struct http_response *r, size_t shown);

/* GET /login. */
void console_login_page(const struct http_request *req, struct http_response *r,
                        const struct console_viewer *v);

/* Draws chart c as an SVG element, marking w's path (w may be NULL) and
 * the current state `current` (or NULL). Each state is a <g
 * class="state ..."> with data-state=NAME (classes visited, current,
 * undone); each edge a <path class="edge ..."> (class taken). */
void console_svg(struct http_response *r, const struct chart *c,
                 const struct chart_walk *w, const char *current);

#endif

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

/* The pages: path is the request's ("/", "/sagas", "/sagas/ID", ...). */
void console_page(struct store *st, const struct http_request *req,
                  struct http_response *r);

/* Draws chart c as an SVG element, marking w's path (w may be NULL) and
 * the current state `current` (or NULL). Each state is a <g
 * class="state ..."> with data-state=NAME (classes visited, current,
 * undone); each edge a <path class="edge ..."> (class taken). */
void console_svg(struct http_response *r, const struct chart *c,
                 const struct chart_walk *w, const char *current);

#endif

/* console_api.c -- the console's JSON documents (console.h lists them;
 * docs/console.md describes each field). Built with jansson from the
 * store's read-only queries and the pure engine: nothing here writes.
 *
 * Paging is by key, never OFFSET: a page of /api/sagas ends with the key
 * of its last row, "next": "<started_at>.<id>", and the next page asks for
 * the rows after it (store_saga_filter.after_*), which the index
 * sagas_by_start finds directly. Each page reads `limit` + 1 rows (the one
 * extra says whether there is a next page) plus those the filter skips.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "console_int.h"
#include "engine.h"
#include "jsonout.h"
#include "number.h"

#define LIST_DEFAULT  50
#define LIST_MAX      500
#define STUCK_MAX     200
#define STUCK_DEFAULT (10 * 60 * 1000) /* in one state 10 minutes */
#define Q_MAX         200

int
console_parse_duration(const char *s, int64_t *ms)
{
	static const struct {
		const char *unit;
		int64_t ms;
	} units[] = {{"ms", 1},
	             {"s", 1000},
	             {"m", 60000},
	             {"h", 3600000LL},
	             {"d", 86400000LL}};
	char *end;
	long long n;

	if (s == NULL || s[0] < '0' || s[0] > '9')
		return -1;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno != 0 || n < 0)
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit) == 0) {
			if (n > INT64_MAX / units[i].ms / 2)
				return -1;
			*ms = n * units[i].ms;
			return 0;
		}
	}
	return -1;
}

const char *
console_query(const void *req, const char *name)
{
	return http_query(req, name);
}

/* A parameter, NULL when absent or empty (an empty form field). */
static const char *
param(console_param_fn get, const void *src, const char *name)
{
	const char *v = get(src, name);
	return v != NULL && v[0] != '\0' ? v : NULL;
}

/* A text parameter of at most max bytes: 0, or -1 with e set. */
static int
text_param(console_param_fn get, const void *src, const char *name, size_t max,
           const char **out, struct console_err *e)
{
	*out = param(get, src, name);
	if (*out != NULL && strlen(*out) > max) {
		console_fail(e, 400, "%s: longer than %zu bytes", name, max);
		return -1;
	}
	return 0;
}

static int
limit_param(console_param_fn get, const void *src, int64_t *limit,
            struct console_err *e)
{
	const char *v = param(get, src, "limit");
	long long n;

	*limit = LIST_DEFAULT;
	if (v == NULL)
		return 0;
	if (number_parse(v, 1, LIST_MAX, &n) != 0) {
		console_fail(e, 400, "limit: not a whole number from 1 to %d",
		             LIST_MAX);
		return -1;
	}
	*limit = n;
	return 0;
}

/* after=<started_at>.<id>: the key of the previous page's last row. */
static int
after_param(console_param_fn get, const void *src, struct store_saga_filter *f,
            struct console_err *e)
{
	const char *v = param(get, src, "after");
	char *end;
	long long n;

	if (v == NULL)
		return 0;
	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno != 0 || v[0] < '0' || v[0] > '9' || *end != '.' ||
	    strlen(end + 1) >= SAGA_ID_MAX) {
		console_fail(e, 400,
		             "after: not a page key (<started_at>.<id>, "
		             "the \"next\" of the previous page)");
		return -1;
	}
	f->after_started_ms = n;
	f->after_id = end + 1;
	return 0;
}

/* The filter /api/sagas and /sagas take: 0, or -1 with e set. */
int
console_filter(console_param_fn get, const void *src,
               struct store_saga_filter *f, struct console_err *e)
{
	enum saga_status sst;
	const char *older;
	int64_t ms;

	memset(f, 0, sizeof(*f));
	f->started_before_ms = f->entered_before_ms = -1;
	if (text_param(get, src, "status", 24, &f->status, e) != 0 ||
	    text_param(get, src, "chart", CHART_NAME_MAX, &f->chart, e) != 0 ||
	    text_param(get, src, "state", CHART_NAME_MAX, &f->state, e) != 0 ||
	    text_param(get, src, "id_prefix", SAGA_ID_MAX, &f->id_prefix, e) !=
	            0 ||
	    text_param(get, src, "q", Q_MAX, &f->data_q, e) != 0 ||
	    limit_param(get, src, &f->limit, e) != 0 ||
	    after_param(get, src, f, e) != 0)
		return -1;
	if (f->status != NULL && saga_status_parse(f->status, &sst) != 0) {
		console_fail(e, 400,
		             "status: not a status (running, compensating, "
		             "completed, failed, stuck, aborted, cancelled)");
		return -1;
	}
	older = param(get, src, "older_than");
	if (older != NULL) {
		if (console_parse_duration(older, &ms) != 0) {
			console_fail(e, 400,
			             "older_than: not a duration (250ms, 10s, "
			             "5m, 2h, 1d)");
			return -1;
		}
		f->started_before_ms = clock_wall_ms() - ms;
	}
	return 0;
}

/* Rows gathered into a JSON array; `failed` once one did not build. */
struct rows {
	json_t *a;
	bool failed;
	int64_t n, max;
	struct store_saga_summary last;
};

static int
rows_add(struct rows *r, json_t *j)
{
	if (j == NULL || json_array_append_new(r->a, j) != 0)
		r->failed = true;
	return r->failed ? 1 : 0;
}

static int
list_row(void *arg, const struct store_saga_summary *s)
{
	struct rows *r = arg;

	if (r->n++ == r->max)
		return 1; /* the extra row: there is a next page */
	r->last = *s;
	return rows_add(r, jsonout_saga_summary(s));
}

json_t *
console_sagas_json(struct store *st, const struct http_request *req,
                   struct console_err *e)
{
	struct store_saga_filter f;
	struct rows r = {0};
	json_t *doc, *next = json_null();

	if (console_filter(console_query, req, &f, e) != 0)
		return NULL;
	r.max = f.limit;
	f.limit++;
	r.a = json_array();
	if (r.a == NULL)
		return console_fail(e, 503, "out of memory");
	if (store_list_sagas(st, &f, list_row, &r) != 0) {
		json_decref(r.a);
		return console_fail(e, 503, "%s", store_error(st));
	}
	if (r.n > r.max) {
		char key[32 + SAGA_ID_MAX];
		snprintf(key, sizeof(key), "%" PRId64 ".%s", r.last.started_ms,
		         r.last.id);
		next = jsonout_str(key);
	}
	doc = json_pack("{s:o,s:o,s:I}", "sagas", r.a, "next", next, "limit",
	                (json_int_t)r.max);
	if (doc == NULL || r.failed) {
		json_decref(doc);
		return console_fail(e, 503, "out of memory");
	}
	return doc;
}

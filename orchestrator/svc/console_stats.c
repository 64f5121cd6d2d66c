/* console_stats.c -- the console's overviews: /api/stuck, /api/charts and
 * /api/summary (console.h).
 *
 * Costs (measured on a million sagas, no history). /api/charts is one
 * GROUP BY over the sagas table (a full scan, 1.5 s: no index covers
 * chart, version, status and state) plus loading each chart version once
 * to list its states. /api/summary counts by status from the index
 * sagas_by_status (0.1 s), counts finished sagas in the last minute and
 * hour (range scans of the same index) and computes step latency from the
 * history (store_step_stays: a window over the whole history table, the
 * costliest part on a large database). /api/stuck reads the stuck and the long
 * waiting sagas, at most STUCK_MAX, and each one's last history entries.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "console_int.h"
#include "engine.h"
#include "jsonout.h"

#define STUCK_MAX     200
#define STUCK_DEFAULT (10 * 60 * 1000) /* in one state over 10 minutes */

/* ---- /api/stuck ---- */

/* The newest history entry that says why: the last one that changed the
 * status to stuck, else the last entry. */
struct why {
	char kind[24], detail[256];
	int64_t at;
	bool stuck_seen;
};

static int
why_row(void *arg, const struct store_history *h)
{
	struct why *w = arg;

	if (w->stuck_seen && strcmp(h->status, "stuck") == 0)
		return 0; /* keep the entry that made it stuck */
	snprintf(w->kind, sizeof(w->kind), "%s", h->kind);
	snprintf(w->detail, sizeof(w->detail), "%s", h->detail);
	w->at = h->at_ms;
	w->stuck_seen = strcmp(h->status, "stuck") == 0;
	return 0;
}

struct stuck_list {
	struct store *st;
	json_t *a;
	bool failed;
	int64_t now;
	bool skip_stuck; /* the second pass: those were listed already */
};

static int
stuck_row(void *arg, const struct store_saga_summary *s)
{
	struct stuck_list *l = arg;
	struct why w = {0};
	json_t *j;

	if (l->skip_stuck && strcmp(s->status, "stuck") == 0)
		return 0;
	if (store_history_each(l->st, s->id, why_row, &w) != 0) {
		l->failed = true;
		return 1;
	}
	j = json_pack("{s:o,s:o,s:o,s:o,s:I,s:I,s:{s:o,s:o,s:I}}", "id",
	              jsonout_str(s->id), "chart", jsonout_str(s->chart),
	              "status", jsonout_str(s->status), "state",
	              jsonout_str(s->state), "state_entered_at",
	              (json_int_t)s->state_entered_ms, "for_ms",
	              (json_int_t)(l->now - s->state_entered_ms), "why", "kind",
	              jsonout_str(w.kind), "detail", jsonout_str(w.detail),
	              "at", (json_int_t)w.at);
	if (j == NULL || json_array_append_new(l->a, j) != 0)
		l->failed = true;
	return l->failed ? 1 : 0;
}

json_t *
console_stuck_json(struct store *st, const struct http_request *req,
                   struct console_err *e)
{
	const char *v = http_query(req, "for");
	struct stuck_list l = {st, json_array(), false, clock_wall_ms(), false};
	struct store_saga_filter f;
	int64_t ms = STUCK_DEFAULT;

	if (v != NULL && v[0] != '\0' && console_parse_duration(v, &ms) != 0) {
		json_decref(l.a);
		return console_fail(e, 400,
		                    "for: not a duration (250ms, 10s, 5m, 2h, "
		                    "1d)");
	}
	if (l.a == NULL)
		return console_fail(e, 503, "out of memory");
	/* stuck by status, then anything unfinished waiting too long */
	memset(&f, 0, sizeof(f));
	f.status = "stuck";
	f.started_before_ms = f.entered_before_ms = -1;
	f.limit = STUCK_MAX;
	if (store_list_sagas(st, &f, stuck_row, &l) == 0 && !l.failed) {
		f.status = NULL;
		f.entered_before_ms = l.now - ms;
		f.limit = STUCK_MAX;
		f.unfinished = true;
		l.skip_stuck = true;
		if (store_list_sagas(st, &f, stuck_row, &l) != 0)
			l.failed = true;
	} else {
		l.failed = true;
	}
	if (l.failed) {
		json_decref(l.a);
		return console_fail(e, 503, "%s", store_error(st));
	}
	return json_pack("{s:o,s:I,s:I}", "stuck", l.a, "waiting_over_ms",
	                 (json_int_t)ms, "now", (json_int_t)l.now);
}

/* ---- /api/charts ---- */

struct charts {
	json_t *by_name;  /* name -> {"name", "versions": [...]} */
	json_t *versions; /* version -> its object in a "versions" array */
	bool failed;
};

static int
chart_row(void *arg, const char *version, const char *name, const char *file,
          int64_t loaded_ms)
{
	struct charts *cs = arg;
	json_t *ch = json_object_get(cs->by_name, name), *v;

	if (ch == NULL) {
		ch = json_pack("{s:o,s:[]}", "name", jsonout_str(name),
		               "versions");
		if (ch == NULL ||
		    json_object_set_new(cs->by_name, name, ch) != 0)
			goto oom;
	}
	v = json_pack("{s:o,s:o,s:I,s:I,s:{},s:{}}", "version",
	              jsonout_str(version), "file", jsonout_str(file),
	              "loaded_at", (json_int_t)loaded_ms, "sagas",
	              (json_int_t)0, "by_status", "by_state");
	if (v == NULL || json_object_set(cs->versions, version, v) != 0 ||
	    json_array_append_new(json_object_get(ch, "versions"), v) != 0)
		goto oom;
	return 0;
oom:
	cs->failed = true;
	return 1;
}

/* obj[key] += n */
static int
add_count(json_t *obj, const char *key, int64_t n)
{
	json_t *c = json_object_get(obj, key);
	json_int_t had = c != NULL ? json_integer_value(c) : 0;
	return json_object_set_new(obj, key, json_integer(had + n));
}

static int
version_count(void *arg, const char *chart, const char *version,
              const char *status, const char *state, int64_t n)
{
	struct charts *cs = arg;
	json_t *v = json_object_get(cs->versions, version);

	(void)chart;
	if (v == NULL)
		return 0; /* a version without its chart row: not shown */
	if (add_count(v, "sagas", n) != 0 ||
	    add_count(json_object_get(v, "by_status"), status, n) != 0 ||
	    add_count(json_object_get(v, "by_state"), state, n) != 0) {
		cs->failed = true;
		return 1;
	}
	return 0;
}

/* ch's "states": every state of its newest version's chart, in chart
 * order, with its type and the sagas in it over every version. */
static int
chart_states(struct store *st, json_t *ch)
{
	json_t *vs = json_object_get(ch, "versions"), *states = json_array();
	json_t *newest = json_array_get(vs, 0);
	struct console_err e;
	struct chart *c = console_chart(
	        st, json_string_value(json_object_get(newest, "version")), &e);
	static const char *const types[] = {"step", "choice", "wait", "final",
	                                    "parallel"};

	if (states == NULL || json_object_set_new(ch, "states", states) != 0)
		return -1;
	for (size_t i = 0; c != NULL && i < c->nstates; i++) {
		int64_t n = 0;
		size_t k;
		json_t *v;
		json_array_foreach(vs, k, v)
		{
			json_t *m =
			        json_object_get(json_object_get(v, "by_state"),
			                        c->states[i].name);
			n += m != NULL ? json_integer_value(m) : 0;
		}
		if (json_array_append_new(
		            states, json_pack("{s:o,s:s,s:I}", "state",
		                              jsonout_str(c->states[i].name),
		                              "type", types[c->states[i].type],
		                              "sagas", (json_int_t)n)) != 0) {
			chart_free(c);
			return -1;
		}
	}
	chart_free(c);
	return 0;
}

json_t *
console_charts_json(struct store *st, struct console_err *e)
{
	struct charts cs = {json_object(), json_object(), false};
	json_t *list = json_array(), *ch;
	const char *name;

	if (cs.by_name == NULL || cs.versions == NULL || list == NULL)
		goto oom;
	if (store_charts_each(st, chart_row, &cs) != 0 ||
	    store_count_by_version(st, version_count, &cs) != 0) {
		console_fail(e, 503, "%s", store_error(st));
		goto out;
	}
	if (cs.failed)
		goto oom;
	json_object_foreach(cs.by_name, name, ch)
	{
		if (chart_states(st, ch) != 0 ||
		    json_array_append(list, ch) != 0)
			goto oom;
	}
	json_decref(cs.by_name);
	json_decref(cs.versions);
	return json_pack("{s:o}", "charts", list);
oom:
	console_fail(e, 503, "out of memory");
out:
	json_decref(cs.by_name);
	json_decref(cs.versions);
	json_decref(list);
	return NULL;
}

/* ---- /api/summary ---- */

static int
status_count(void *arg, const char *status, int64_t n)
{
	return add_count(arg, status, n) != 0 ? 1 : 0;
}

/* Every stay of one state, gathered to take its percentiles. */
struct stays {
	json_t *a;
	char state[CHART_NAME_MAX];
	int64_t *v;
	size_t n, cap;
	bool failed;
};

static int64_t
percentile(const int64_t *v, size_t n, int p)
{
	size_t i = (n * (size_t)p + 99) / 100; /* nearest rank */
	return v[i > 0 ? i - 1 : 0];
}

static void
stays_flush(struct stays *s)
{
	if (s->n == 0)
		return;
	/* store_step_stays orders each state's stays by length */
	if (json_array_append_new(
	            s->a,
	            json_pack("{s:o,s:I,s:I,s:I}", "state",
	                      jsonout_str(s->state), "n", (json_int_t)s->n,
	                      "p50_ms", (json_int_t)percentile(s->v, s->n, 50),
	                      "p99_ms",
	                      (json_int_t)percentile(s->v, s->n, 99))) != 0)
		s->failed = true;
	s->n = 0;
}

static int
stay_row(void *arg, const char *state, int64_t ms)
{
	struct stays *s = arg;

	if (strcmp(state, s->state) != 0) {
		stays_flush(s);
		snprintf(s->state, sizeof(s->state), "%s", state);
	}
	if (s->n == s->cap) {
		size_t cap = s->cap != 0 ? s->cap * 2 : 256;
		int64_t *v = realloc(s->v, cap * sizeof(*v));
		if (v == NULL) {
			s->failed = true;
			return 1;
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = ms;
	return s->failed ? 1 : 0;
}

static json_t *
throughput_json(struct store *st, int64_t now, struct console_err *e)
{
	int64_t c1m, c1h, f1h;

	if (store_count_updated_since(st, "completed", now - 60000, &c1m) !=
	            0 ||
	    store_count_updated_since(st, "completed", now - 3600000, &c1h) !=
	            0 ||
	    store_count_updated_since(st, "failed", now - 3600000, &f1h) != 0)
		return console_fail(e, 503, "%s", store_error(st));
	return json_pack("{s:I,s:I,s:I,s:f}", "completed_last_minute",
	                 (json_int_t)c1m, "completed_last_hour",
	                 (json_int_t)c1h, "failed_last_hour", (json_int_t)f1h,
	                 "completed_per_second_last_minute",
	                 (double)c1m / 60.0);
}

json_t *
console_summary_json(struct store *st, struct console_err *e)
{
	int64_t now = clock_wall_ms();
	struct stays s = {.a = json_array()};
	json_t *counts = json_object(), *tp;
	const char *k;
	json_t *v;
	json_int_t total = 0;

	if (counts == NULL || s.a == NULL)
		goto oom;
	if (store_count_by_status(st, status_count, counts) != 0 ||
	    store_step_stays(st, stay_row, &s) != 0) {
		console_fail(e, 503, "%s", store_error(st));
		goto out;
	}
	stays_flush(&s);
	if (s.failed)
		goto oom;
	tp = throughput_json(st, now, e);
	if (tp == NULL)
		goto out;
	json_object_foreach(counts, k, v) total += json_integer_value(v);
	free(s.v);
	return json_pack("{s:I,s:o,s:I,s:o,s:o}", "now", (json_int_t)now,
	                 "counts", counts, "total", total, "steps", s.a,
	                 "throughput", tp);
oom:
	console_fail(e, 503, "out of memory");
out:
	free(s.v);
	json_decref(counts);
	json_decref(s.a);
	return NULL;
}

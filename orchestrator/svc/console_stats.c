/* console_stats.c -- the console's overviews: /api/stuck, /api/charts and
 * /api/summary (console.h).
 *
 * Costs (bench/console_bench: a million sagas, 12 million history rows).
 * /api/charts is one GROUP BY over the sagas table (a full scan, 1.5 s: no
 * index covers chart, version, status and state) plus loading each chart
 * version once to list its states. /api/summary counts by status from the index
 * sagas_by_status, keeping the finished statuses' counts between requests
 * (below: a request reads the sagas updated in the last minute or so, not
 * all of them), counts finished sagas in the last minute and
 * hour (range scans of the same index) and computes step latency from the
 * newest SUMMARY_HISTORY_ROWS history entries (store_recent_step_stays: a
 * range of history's key, whatever its length). /api/stuck reads the stuck
 * sagas, then the waiting ones (running or compensating) past their state's
 * stuck_after (statecharts/README.md 5.7: one range scan of the index
 * sagas_waiting per chart version and state that declares one), then, in
 * states without one, past the request's `for`; at most STUCK_MAX in all,
 * and each one's history, to say why.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "console_int.h"
#include "engine.h"
#include "jsonout.h"

/* /api/summary's step latency: over the sagas that started within the
 * newest this many history entries (about 12 a saga for order.yaml: the
 * last 400 sagas or so), not the whole history, which grows without bound
 * (a million sagas: 12 million rows, a minute and more). The window
 * functions cost about 4.5 us a row here: 20,000 rows were 90 ms of CPU
 * taken from the loop's cores at every refresh. */
#define SUMMARY_HISTORY_ROWS 5000
#define STUCK_MAX            200
#define STUCK_DEFAULT        (10 * 60 * 1000) /* in one state over 10 minutes */

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

/* Why a saga is listed: its status, its state's stuck_after, or the
 * request's `for` (states without a stuck_after). */
enum stuck_by { BY_STATUS, BY_STUCK_AFTER, BY_FOR };

#define STUCK_VERSIONS_MAX 32 /* chart versions of waiting sagas, read */

struct stuck_list {
	struct store *st;
	json_t *a;
	bool failed;
	int64_t now;
	enum stuck_by by; /* the pass */
	int64_t limit_ms; /* BY_STUCK_AFTER, BY_FOR: the limit that applied */
	size_t nversions; /* the versions waiting sagas run on, and their */
	char versions[STUCK_VERSIONS_MAX][17];
	struct chart *charts[STUCK_VERSIONS_MAX]; /* charts (NULL: unread) */
};

/* "41m", "2h05m": how long, for the text of a row. */
static void
dur_text(char *buf, size_t cap, int64_t ms)
{
	long long s = (long long)(ms / 1000);

	if (ms < 1000)
		snprintf(buf, cap, "%lldms", (long long)ms);
	else if (s < 60)
		snprintf(buf, cap, "%llds", s);
	else if (s < 3600)
		snprintf(buf, cap, "%lldm", s / 60);
	else if (s < 86400)
		snprintf(buf, cap, "%lldh%02lldm", s / 3600, s / 60 % 60);
	else
		snprintf(buf, cap, "%lldd%02lldh", s / 86400, s / 3600 % 24);
}

/* The row's "limit" ({ms, from} or null) and "text" ("in payment 41m,
 * stuck_after 30m"). */
static int
stuck_limit(const struct stuck_list *l, const struct store_saga_summary *s,
            json_t *j)
{
	static const char *const from[] = {"status", "stuck_after", "for"};
	char in[32], lim[32], text[160];

	dur_text(in, sizeof(in), l->now - s->state_entered_ms);
	dur_text(lim, sizeof(lim), l->limit_ms);
	if (l->by == BY_STATUS)
		snprintf(text, sizeof(text), "stuck in %s %s", s->state, in);
	else
		snprintf(text, sizeof(text), "in %s %s, %s %s", s->state, in,
		         from[l->by], lim);
	return json_object_set_new(j, "limit",
	                           l->by == BY_STATUS
	                                   ? json_null()
	                                   : json_pack("{s:I,s:s}", "ms",
	                                               (json_int_t)l->limit_ms,
	                                               "from", from[l->by])) !=
	               0 ||
	       json_object_set_new(j, "text", jsonout_str(text)) != 0;
}

/* The stuck_after of state `state` in the saga's chart version; 0 when
 * it has none or the chart is not read. */
static int64_t
declared_limit(const struct stuck_list *l, const char *version,
               const char *state)
{
	for (size_t i = 0; i < l->nversions; i++) {
		int k;
		if (l->charts[i] == NULL ||
		    strcmp(l->versions[i], version) != 0)
			continue;
		k = chart_state_index(l->charts[i], state);
		return k >= 0 ? l->charts[i]->states[k].stuck_after_ms : 0;
	}
	return 0;
}

static int
stuck_row(void *arg, const struct store_saga_summary *s)
{
	struct stuck_list *l = arg;
	struct why w = {0};
	json_t *j;

	if (l->by == BY_FOR &&
	    declared_limit(l, s->chart_version, s->state) > 0)
		return 0; /* its own limit applies: listed by it, or not due */
	if (json_array_size(l->a) >= STUCK_MAX)
		return 1;
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
	if (j == NULL || stuck_limit(l, s, j) != 0 ||
	    json_array_append_new(l->a, j) != 0)
		l->failed = true;
	return l->failed ? 1 : 0;
}

static int
add_version(void *arg, const char *version)
{
	struct stuck_list *l = arg;

	if (l->nversions == STUCK_VERSIONS_MAX)
		return 1; /* more: their states fall back to `for` */
	snprintf(l->versions[l->nversions++], sizeof(l->versions[0]), "%s",
	         version);
	return 0;
}

/* The waiting sagas past their state's stuck_after: one range scan of
 * the index sagas_waiting per (version, state) that declares one. */
static int
stuck_by_limit(struct stuck_list *l)
{
	if (store_waiting_versions(l->st, add_version, l) != 0)
		return -1;
	l->by = BY_STUCK_AFTER;
	for (size_t i = 0; i < l->nversions; i++) {
		struct console_err e;
		const struct chart *c = l->charts[i] =
		        console_chart(l->st, l->versions[i], &e);
		for (size_t k = 0; c != NULL && k < c->nstates; k++) {
			l->limit_ms = c->states[k].stuck_after_ms;
			if (l->limit_ms <= 0)
				continue;
			if (store_list_waiting(l->st, l->versions[i],
			                       c->states[k].name,
			                       l->now - l->limit_ms, STUCK_MAX,
			                       stuck_row, l) != 0)
				return -1;
			if (l->failed)
				return 0;
		}
	}
	return 0;
}

/* stuck by status; past stuck_after; then, in states without one, past
 * `for` (ms) */
static int
stuck_passes(struct stuck_list *l, int64_t ms)
{
	struct store_saga_filter f;

	memset(&f, 0, sizeof(f));
	f.status = "stuck";
	f.started_before_ms = f.entered_before_ms = -1;
	f.limit = STUCK_MAX;
	l->by = BY_STATUS;
	if (store_list_sagas(l->st, &f, stuck_row, l) != 0 || l->failed)
		return -1;
	if (stuck_by_limit(l) != 0 || l->failed)
		return -1;
	l->by = BY_FOR;
	l->limit_ms = ms;
	if (store_list_waiting(l->st, NULL, NULL, l->now - ms, STUCK_MAX,
	                       stuck_row, l) != 0 ||
	    l->failed)
		return -1;
	return 0;
}

json_t *
console_stuck_json(struct store *st, const struct http_request *req,
                   struct console_err *e)
{
	const char *v = http_query(req, "for");
	struct stuck_list *l = calloc(1, sizeof(*l));
	int64_t ms = STUCK_DEFAULT;
	json_t *doc = NULL;

	if (v != NULL && v[0] != '\0' && console_parse_duration(v, &ms) != 0) {
		free(l);
		return console_fail(e, 400,
		                    "for: not a duration (250ms, 10s, 5m, 2h, "
		                    "1d)");
	}
	if (l == NULL || (l->a = json_array()) == NULL) {
		free(l);
		return console_fail(e, 503, "out of memory");
	}
	l->st = st;
	l->now = clock_wall_ms();
	if (stuck_passes(l, ms) != 0)
		console_fail(e, 503, "%s",
		             l->failed && store_error(st)[0] == '\0'
		                     ? "out of memory"
		                     : store_error(st));
	else
		doc = json_pack("{s:O,s:I,s:I}", "stuck", l->a,
		                "waiting_over_ms", (json_int_t)ms, "now",
		                (json_int_t)l->now);
	for (size_t i = 0; i < l->nversions; i++)
		chart_free(l->charts[i]);
	json_decref(l->a);
	free(l);
	if (doc == NULL && e->status == 0)
		console_fail(e, 503, "out of memory");
	return doc;
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

/* ---- the counts by status, kept between requests ----
 *
 * Counting a million sagas by status reads a million index entries (0.1
 * to 0.4 s here), and the sagas finished in the last hour as many as the
 * hour saw (80 ms for 230,000). But a finished saga's status never changes
 * again (engine.h, saga_status_final), so the number of sagas of a final
 * status updated before a time is fixed once that time is past. The
 * console keeps two such numbers per final status: every saga updated
 * before `upto` (a minute behind the clock) and before `hour_from` (an
 * hour behind); a request reads only the ranges of sagas_by_status
 * updated since `upto` and the delta each boundary moved over.
 * Unfinished statuses are counted whole: their ranges are the work in
 * flight. What this misses: a batch committed more than COUNT_MARGIN_MS
 * after its sagas' time (a loop stalled that long mid-batch) is not
 * counted until the daemon restarts. One console per process (console.h)
 * and one database: the kept counts are this file's, behind a mutex. */
#define COUNT_MARGIN_MS 60000
#define HOUR_MS         3600000
#define NSTATUS         (SAGA_CANCELLED + 1)
_Static_assert(NSTATUS == 7, "a new status: add it to status_counts' by_name");

static pthread_mutex_t counts_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	bool known;
	int64_t upto, hour_from;
	int64_t base[NSTATUS];   /* final statuses: updated before upto */
	int64_t before[NSTATUS]; /* and before hour_from */
} kept;

/* Moves a kept count from `from` up to `to`: adds the sagas of status
 * i updated in [from, to) (from INT64_MIN: everything before to). */
static int
kept_move(struct store *st, int i, int64_t from, int64_t to, int64_t *count)
{
	int64_t n = 0;

	if (store_count_updated_between(st,
	                                saga_status_name((enum saga_status)i),
	                                from, to, &n) != 0)
		return -1;
	*count += n;
	return 0;
}

/* Fills total[] (every status) and hour[] (final statuses: updated in
 * the last hour). */
static int
kept_counts(struct store *st, int64_t now, int64_t *total, int64_t *hour)
{
	int64_t upto = now - COUNT_MARGIN_MS, hfrom = now - HOUR_MS;

	if (kept.known && upto < kept.upto) /* the clock went back */
		upto = kept.upto;
	if (kept.known && hfrom < kept.hour_from)
		hfrom = kept.hour_from;

	for (int i = 0; i < NSTATUS; i++) {
		bool fin = saga_status_final((enum saga_status)i);
		int64_t n = 0;
		if (fin && !kept.known) {
			kept.base[i] = kept.before[i] = 0;
			if (kept_move(st, i, INT64_MIN, upto, &kept.base[i]) ||
			    kept_move(st, i, INT64_MIN, hfrom, &kept.before[i]))
				return -1;
		} else if (fin && (kept_move(st, i, kept.upto, upto,
		                             &kept.base[i]) != 0 ||
		                   kept_move(st, i, kept.hour_from, hfrom,
		                             &kept.before[i]) != 0)) {
			return -1;
		}
		if (kept_move(st, i, fin ? upto : INT64_MIN, INT64_MAX, &n) !=
		    0)
			return -1;
		total[i] = n + (fin ? kept.base[i] : 0);
		hour[i] = fin ? total[i] - kept.before[i] : 0;
	}
	kept.upto = upto;
	kept.hour_from = hfrom;
	kept.known = true;
	return 0;
}

/* counts: {status: n} for each status with sagas; *tp the throughput. */
static int
status_counts(struct store *st, int64_t now, json_t *counts, json_t **tp)
{
	static const char *const by_name[NSTATUS] = {
	        "aborted", "cancelled", "compensating", "completed",
	        "failed",  "running",   "stuck"};
	int64_t total[NSTATUS], hour[NSTATUS], c1m = 0;
	int rc;

	pthread_mutex_lock(&counts_lock);
	rc = kept_counts(st, now, total, hour);
	if (rc != 0)
		kept.known = false; /* counted again from scratch next time */
	pthread_mutex_unlock(&counts_lock);
	if (rc == 0)
		rc = store_count_updated_since(st, "completed", now - 60000,
		                               &c1m);
	/* by name, as the API always listed them */
	for (size_t k = 0; rc == 0 && k < NSTATUS; k++) {
		enum saga_status x;
		if (saga_status_parse(by_name[k], &x) != 0 ||
		    (total[x] > 0 &&
		     json_object_set_new(counts, by_name[k],
		                         json_integer(total[x])) != 0))
			rc = -1;
	}
	if (rc != 0)
		return -1;
	*tp = json_pack("{s:I,s:I,s:I,s:f}", "completed_last_minute",
	                (json_int_t)c1m, "completed_last_hour",
	                (json_int_t)hour[SAGA_COMPLETED], "failed_last_hour",
	                (json_int_t)hour[SAGA_FAILED],
	                "completed_per_second_last_minute", (double)c1m / 60.0);
	return *tp != NULL ? 0 : -1;
}

json_t *
console_summary_json(struct store *st, struct console_err *e)
{
	int64_t now = clock_wall_ms();
	struct stays s = {.a = json_array()};
	json_t *counts = json_object(), *tp = NULL;
	const char *k;
	json_t *v;
	json_int_t total = 0;

	if (counts == NULL || s.a == NULL)
		goto oom;
	if (status_counts(st, now, counts, &tp) != 0 ||
	    store_recent_step_stays(st, SUMMARY_HISTORY_ROWS, stay_row, &s) !=
	            0) {
		console_fail(e, 503, "%s", store_error(st));
		goto out;
	}
	stays_flush(&s);
	if (s.failed)
		goto oom;
	json_object_foreach(counts, k, v) total += json_integer_value(v);
	free(s.v);
	return json_pack("{s:I,s:o,s:I,s:o,s:o}", "now", (json_int_t)now,
	                 "counts", counts, "total", total, "steps", s.a,
	                 "throughput", tp);
oom:
	console_fail(e, 503, "out of memory");
out:
	free(s.v);
	json_decref(tp);
	json_decref(counts);
	json_decref(s.a);
	return NULL;
}

/* console_saga.c -- one saga's document (/api/sagas/ID, the page
 * /sagas/ID): its row, order data, trace, pending timer, timeline, its path
 * on its chart, and what compensating it now would run.
 *
 * "What compensating now would run" is preview_compensation's answer
 * (preview.h): the engine's COMPENSATE run on a copy of the saga, so a
 * step in flight is listed as the engine treats it (outcome unknown,
 * undone too, first); a compensating or stuck saga lists the undo it
 * waits on, then the rest. A finished saga has nothing to undo.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chart_load.h"
#include "clock.h"
#include "console_int.h"
#include "engine.h"
#include "jsonout.h"
#include "preview.h"

struct chart *
console_chart(struct store *st, const char *version, struct console_err *e)
{
	struct chart_errors errs;
	struct chart *c;
	char *source = NULL, *file = NULL;
	bool found;

	if (store_chart_get(st, version, &source, &file, &found) != 0) {
		console_fail(e, 503, "%s", store_error(st));
		return NULL;
	}
	if (!found) {
		console_fail(e, 404, "chart version %s is not in the database",
		             version);
		return NULL;
	}
	chart_errors_init(&errs);
	c = chart_load_buffer(file, source, strlen(source), &errs);
	if (c == NULL)
		console_fail(e, 503, "cannot load chart version %s", version);
	chart_errors_clear(&errs);
	free(source);
	free(file);
	return c;
}

/* The compensations, in the order they would run (preview.h), as a
 * JSON array. */
static json_t *
undo_plan(const struct chart *c, const struct saga *s)
{
	struct preview_undo plan[PREVIEW_PLAN_MAX];
	int n = preview_compensation(c, s, clock_wall_ms(), plan,
	                             PREVIEW_PLAN_MAX);

	return n < 0 ? NULL : console_undos_json(plan, (size_t)n);
}

/* The names of the states marked in m (nstates entries). */
static json_t *
marked_names(const struct chart *c, const bool *m)
{
	json_t *a = json_array();

	for (size_t i = 0; a != NULL && i < c->nstates; i++)
		if (m[i] && json_array_append_new(
		                    a, jsonout_str(c->states[i].name)) != 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static json_t *
path_json(const struct chart *c, const struct chart_walk *w)
{
	json_t *edges = json_array();

	for (size_t i = 0; edges != NULL && i < c->nstates; i++)
		for (size_t j = 0; j < c->nstates; j++) {
			if (!w->edges[i * c->nstates + j])
				continue;
			if (json_array_append_new(
			            edges,
			            json_pack(
			                    "[o,o]",
			                    jsonout_str(c->states[i].name),
			                    jsonout_str(c->states[j].name))) !=
			    0) {
				json_decref(edges);
				return NULL;
			}
		}
	return json_pack("{s:o,s:o,s:o}", "visited", marked_names(c, w->states),
	                 "edges", edges, "undone", marked_names(c, w->undone));
}

/* The timeline, fed to the walk (if any) as it goes. */
struct timeline {
	json_t *a;
	bool failed;
	struct chart_walk *w;
};

static int
timeline_row(void *arg, const struct store_history *h)
{
	struct timeline *t = arg;
	json_t *e = json_pack(
	        "{s:I,s:o,s:o,s:o,s:o}", "at", (json_int_t)h->at_ms, "kind",
	        jsonout_str(h->kind), "state", jsonout_str(h->state), "status",
	        jsonout_str(h->status), "detail", jsonout_str(h->detail));

	if (e != NULL && h->message_id != NULL)
		json_object_set_new(e, "message_id",
		                    jsonout_str(h->message_id));
	if (e != NULL && h->actor != NULL)
		json_object_set_new(e, "actor", jsonout_str(h->actor));
	if (e != NULL && h->reason != NULL)
		json_object_set_new(e, "reason", jsonout_str(h->reason));
	if (e == NULL || json_array_append_new(t->a, e) != 0)
		t->failed = true;
	if (t->w != NULL && t->w->states != NULL)
		chart_walk_entry(t->w, h->kind, h->state, h->status);
	return t->failed ? 1 : 0;
}

static json_t *
timer_json(struct store *st, const char *id, struct console_err *e)
{
	int64_t seq, at;
	bool found;

	if (store_timer_get(st, id, &seq, &at, &found) != 0)
		return console_fail(e, 503, "%s", store_error(st));
	if (!found)
		return json_null();
	return json_pack("{s:I,s:I}", "seq", (json_int_t)seq, "fire_at",
	                 (json_int_t)at);
}

/* doc's "data", "trace" and "compensation" from the stored record. */
static int
record_fields(struct store *st, const struct chart *c, const char *id,
              json_t *doc, struct console_err *e)
{
	struct value rec = VALUE_NIL_INIT;
	const struct value *data;
	struct saga s;
	char version[17], trace[128], why[256];
	bool found;

	if (store_saga_get(st, id, version, &rec, trace, sizeof(trace),
	                   &found) != 0 ||
	    !found) {
		console_fail(e, 503, "%s", store_error(st));
		return -1;
	}
	data = value_map_get(&rec, "data");
	json_object_set_new(doc, "data",
	                    data != NULL ? jsonout_value(data) : json_null());
	json_object_set_new(doc, "trace",
	                    trace[0] != '\0' ? jsonout_str(trace)
	                                     : json_null());
	saga_init(&s, id);
	if (c != NULL && saga_from_value(&s, c, &rec, why, sizeof(why)) == 0)
		json_object_set_new(doc, "compensation", undo_plan(c, &s));
	else
		json_object_set_new(doc, "compensation", json_null());
	saga_clear(&s);
	value_clear(&rec);
	return 0;
}

json_t *
console_saga_json(struct store *st, const char *id, struct console_err *e,
                  struct chart **chart, struct chart_walk *walk)
{
	struct store_saga_summary s;
	struct console_err ce = {0};
	struct timeline t = {0};
	struct chart *c;
	struct chart_walk w = {0};
	bool found;
	json_t *doc;

	if (store_saga_find(st, id, &s, &found) != 0)
		return console_fail(e, 503, "%s", store_error(st));
	if (!found)
		return console_fail(e, 404, "no saga %s", id);
	c = console_chart(st, s.chart_version, &ce);
	if (c != NULL && chart_walk_init(&w, c) != 0) {
		chart_free(c);
		return console_fail(e, 503, "out of memory");
	}
	doc = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:i,s:I,s:I,s:I,s:o}", "id",
	                jsonout_str(s.id), "chart", jsonout_str(s.chart),
	                "chart_version", jsonout_str(s.chart_version), "status",
	                jsonout_str(s.status), "state", jsonout_str(s.state),
	                "phase", jsonout_str(s.phase), "attempt", s.attempt,
	                "started_at", (json_int_t)s.started_ms,
	                "state_entered_at", (json_int_t)s.state_entered_ms,
	                "updated_at", (json_int_t)s.updated_ms, "actions",
	                json_array());
	t.a = json_array(); /* doc holds it from here */
	t.w = c != NULL ? &w : NULL;
	if (doc == NULL || json_object_set_new(doc, "history", t.a) != 0 ||
	    record_fields(st, c, id, doc, e) != 0 ||
	    json_object_set_new(doc, "timer", timer_json(st, id, e)) != 0 ||
	    store_history_each(st, id, timeline_row, &t) != 0 || t.failed) {
		if (e->status == 0)
			console_fail(e, 503, "%s",
			             t.failed ? "out of memory"
			                      : store_error(st));
		json_decref(doc);
		chart_walk_release(&w);
		chart_free(c);
		return NULL;
	}
	json_object_set_new(doc, "path",
	                    c != NULL ? path_json(c, &w) : json_null());
	if (c == NULL)
		json_object_set_new(doc, "chart_error", jsonout_str(ce.msg));
	if (chart != NULL) {
		*chart = c;
		*walk = w;
	} else {
		chart_walk_release(&w);
		chart_free(c);
	}
	return doc;
}

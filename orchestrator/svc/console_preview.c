/* console_preview.c -- what an operator action would do, as the console
 * shows it before anything is sent: for one saga (GET
 * /api/sagas/ID/preview) and for every saga of a filter (GET
 * /api/actions/preview). Both are preview_run (preview.h) on the stored
 * saga: the engine on a copy, so the ids shown are the ids sent. Nothing
 * here writes.
 *
 * The bulk summary counts sagas, not messages: "412 sagas: 412
 * payment.refund, 398 inventory.release, 14 stuck on an undo; 3 refused:
 * <note> (3)" -- for each command type, how many sagas would send it now
 * or undo with it later (a saga counts once per type), how many are stuck
 * now, and the refusals grouped by the engine's note.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chart_load.h"
#include "clock.h"
#include "console_int.h"
#include "jsonout.h"
#include "preview.h"

#define STEP_MAX CHART_NAME_MAX
#define CHARTS   16 /* chart versions a bulk preview keeps loaded */
#define SENTENCE 1024

json_t *
console_undos_json(const struct preview_undo *u, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a != NULL && i < n; i++)
		if (json_array_append_new(
		            a,
		            json_pack("{s:o,s:o,s:o,s:o,s:b,s:b}", "state",
		                      jsonout_str(u[i].state), "to",
		                      jsonout_str(u[i].to), "command",
		                      jsonout_str(u[i].command), "message_id",
		                      jsonout_str(u[i].message_id),
		                      "outcome_unknown", u[i].unknown,
		                      "current", u[i].current)) != 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

int
console_action_param(const char *action, const char *step,
                     enum engine_event_type *op, struct console_err *e)
{
	if (action == NULL || preview_op_parse(action, op) != 0) {
		console_fail(e, 400,
		             "action: not an action (retry, resume, skip, "
		             "abort, compensate, mark-compensated)");
		return -1;
	}
	if (step != NULL && (step[0] == '\0' || strlen(step) >= STEP_MAX)) {
		console_fail(e, 400, "step: not a state name");
		return -1;
	}
	if (*op == EV_OP_MARK_COMPENSATED && step == NULL) {
		console_fail(e, 400,
		             "step: mark-compensated needs the step "
		             "undone by hand");
		return -1;
	}
	return 0;
}

int
console_load_saga(struct store *st, const char *id, struct saga *s,
                  struct chart **c, struct console_err *e)
{
	struct value rec = VALUE_NIL_INIT;
	char version[17], trace[128], why[256];
	bool found;

	*c = NULL;
	saga_init(s, id);
	if (store_saga_get(st, id, version, &rec, trace, sizeof(trace),
	                   &found) != 0) {
		console_fail(e, 503, "%s", store_error(st));
		return -1;
	}
	if (!found) {
		console_fail(e, 404, "no saga %s", id);
		return -1;
	}
	*c = console_chart(st, version, e);
	if (*c != NULL && saga_from_value(s, *c, &rec, why, sizeof(why)) != 0) {
		console_fail(e, 503, "saga %s: %s", id, why);
		chart_free(*c);
		*c = NULL;
	}
	value_clear(&rec);
	return *c != NULL ? 0 : -1;
}

/* The SENDs and EMITs of p as {commands: [...], events: [...]}. */
static int
actions_json(const struct preview *p, json_t *doc)
{
	json_t *cmds = json_array(), *evs = json_array();

	json_object_set_new(doc, "commands", cmds);
	json_object_set_new(doc, "events", evs);
	for (size_t i = 0; cmds != NULL && evs != NULL && i < p->out.nactions;
	     i++) {
		const struct engine_action *a = &p->out.actions[i];
		json_t *j = NULL;
		if (a->type == ACT_SEND)
			j = json_pack("{s:o,s:o,s:o,s:o,s:o,s:i,s:b}", "to",
			              jsonout_str(a->to), "command",
			              jsonout_str(a->command), "message_id",
			              jsonout_str(a->message_id), "step",
			              jsonout_str(a->step), "route",
			              jsonout_str(a->route), "attempt",
			              a->attempt, "compensation",
			              a->compensation);
		else if (a->type == ACT_EMIT)
			j = jsonout_str(a->event);
		else
			continue;
		if (json_array_append_new(a->type == ACT_SEND ? cmds : evs,
		                          j) != 0)
			return -1;
	}
	return cmds != NULL && evs != NULL ? 0 : -1;
}

/* One preview as the API's document. */
static json_t *
preview_doc(const struct saga *s, const struct preview *p, const char *before)
{
	json_t *doc = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:b}", "saga",
	                        jsonout_str(s->id), "action",
	                        jsonout_str(preview_op_name(p->op)), "result",
	                        jsonout_str(engine_result_name(p->out.result)),
	                        "note", jsonout_str(p->out.note),
	                        "status_before", jsonout_str(before), "status",
	                        jsonout_str(saga_status_name(p->status)),
	                        "state", jsonout_str(p->state), "compensations",
	                        console_undos_json(p->plan, p->nplan),
	                        "compensations_run", p->plan_runs);

	if (doc != NULL && actions_json(p, doc) != 0) {
		json_decref(doc);
		doc = NULL;
	}
	return doc;
}

json_t *
console_preview_json(struct store *st, const char *id,
                     const struct http_request *req, struct console_err *e)
{
	const char *step = http_query(req, "step");
	enum engine_event_type op;
	struct chart *c;
	struct saga s;
	struct preview p;
	json_t *doc = NULL;

	if (step != NULL && step[0] == '\0')
		step = NULL;
	if (console_action_param(http_query(req, "action"), step, &op, e) != 0)
		return NULL;
	if (console_load_saga(st, id, &s, &c, e) != 0) {
		saga_clear(&s);
		return NULL;
	}
	if (preview_run(c, &s, op, step, clock_wall_ms(), &p) != 0)
		console_fail(e, 503, "out of memory");
	else
		doc = preview_doc(&s, &p, saga_status_name(s.status));
	if (doc == NULL && e->status == 0)
		console_fail(e, 503, "out of memory");
	preview_clear(&p);
	saga_clear(&s);
	chart_free(c);
	return doc;
}

/* ---- the set of a filter ---- */

struct select {
	char (*ids)[SAGA_ID_MAX];
	size_t n;
	bool oom;
};

static int
select_row(void *arg, const struct store_saga_summary *row)
{
	struct select *sel = arg;

	if (sel->n == CONSOLE_BULK_MAX)
		return 1;
	snprintf(sel->ids[sel->n++], SAGA_ID_MAX, "%s", row->id);
	return 0;
}

/* How many f selects in all (counted past CONSOLE_BULK_MAX). */
static int
count_row(void *arg, const struct store_saga_summary *row)
{
	(void)row;
	(*(size_t *)arg)++;
	return 0;
}

int
console_select(struct store *st, struct store_saga_filter *f,
               char (**ids)[SAGA_ID_MAX], size_t *n, struct console_err *e)
{
	struct select sel = {calloc(CONSOLE_BULK_MAX, SAGA_ID_MAX), 0, false};
	size_t all = 0;

	*ids = NULL;
	*n = 0;
	if (sel.ids == NULL) {
		console_fail(e, 503, "out of memory");
		return -1;
	}
	f->limit = CONSOLE_BULK_MAX + 1;
	f->after_id = NULL;
	if (store_list_sagas(st, f, select_row, &sel) != 0 ||
	    (sel.n == CONSOLE_BULK_MAX &&
	     (f->limit = -1, store_list_sagas(st, f, count_row, &all)) != 0)) {
		console_fail(e, 503, "%s", store_error(st));
		free(sel.ids);
		return -1;
	}
	if (all > CONSOLE_BULK_MAX) {
		console_fail(e, 400,
		             "%zu sagas match, more than %d: narrow the filter",
		             all, CONSOLE_BULK_MAX);
		free(sel.ids);
		return -1;
	}
	*ids = sel.ids;
	*n = sel.n;
	return 0;
}

/* ---- the bulk preview ---- */

/* Chart versions loaded once for a whole set. */
struct charts {
	char version[CHARTS][17];
	struct chart *c[CHARTS];
	size_t n;
};

static void
charts_free(struct charts *cs)
{
	for (size_t i = 0; i < cs->n; i++)
		chart_free(cs->c[i]);
	cs->n = 0;
}

static bool
charts_own(const struct charts *cs, const struct chart *c)
{
	for (size_t i = 0; i < cs->n; i++)
		if (cs->c[i] == c)
			return true;
	return false;
}

static struct chart *
charts_get(struct charts *cs, struct store *st, const char *version,
           struct console_err *e)
{
	struct chart *c;

	for (size_t i = 0; i < cs->n; i++)
		if (strcmp(cs->version[i], version) == 0)
			return cs->c[i];
	c = console_chart(st, version, e);
	if (c == NULL || cs->n == CHARTS)
		return c; /* the caller frees one past the cache */
	snprintf(cs->version[cs->n], sizeof(cs->version[0]), "%s", version);
	cs->c[cs->n++] = c;
	return c;
}

/* Saga id as stored, its chart from the cache: 0, or -1 with e set. */
static int
load_cached(struct store *st, struct charts *cs, const char *id, struct saga *s,
            struct chart **c, struct console_err *e)
{
	struct value rec = VALUE_NIL_INIT;
	char version[17], trace[128], why[256];
	bool found;
	int rc = -1;

	saga_init(s, id);
	if (store_saga_get(st, id, version, &rec, trace, sizeof(trace),
	                   &found) != 0)
		console_fail(e, 503, "%s", store_error(st));
	else if (!found)
		console_fail(e, 404, "no saga %s", id);
	else if ((*c = charts_get(cs, st, version, e)) == NULL)
		;
	else if (saga_from_value(s, *c, &rec, why, sizeof(why)) != 0)
		console_fail(e, 503, "saga %s: %s", id, why);
	else
		rc = 0;
	value_clear(&rec);
	return rc;
}

/* Adds 1 to counts[key]. */
static void
bump(json_t *counts, const char *key)
{
	json_t *v = json_object_get(counts, key);

	json_object_set_new(
	        counts, key,
	        json_integer(v != NULL ? json_integer_value(v) + 1 : 1));
}

struct tally {
	size_t sagas, applicable, stuck;
	json_t *commands, *refused, *after, *ids;
};

/* Counts one saga's preview: each command type once. */
static void
tally_add(struct tally *t, const struct saga *s, const struct preview *p)
{
	json_t *seen = json_object();

	t->sagas++;
	t->stuck += s->status == SAGA_STUCK;
	if (p->out.result != ENGINE_OK) {
		bump(t->refused, p->out.note);
		json_decref(seen);
		return;
	}
	t->applicable++;
	bump(t->after, saga_status_name(p->status));
	for (size_t i = 0; seen != NULL && i < p->out.nactions; i++)
		if (p->out.actions[i].type == ACT_SEND)
			json_object_set_new(seen, p->out.actions[i].command,
			                    json_true());
	for (size_t i = 0; seen != NULL && p->plan_runs && i < p->nplan; i++)
		json_object_set_new(seen, p->plan[i].command, json_true());
	{
		const char *k;
		json_t *v;
		json_object_foreach(seen, k, v) bump(t->commands, k);
	}
	json_decref(seen);
}

/* "412 sagas: 412 payment.refund, 14 stuck on an undo; 3 refused:
 * <note> (3)". */
static json_t *
sentence(const struct tally *t)
{
	char buf[SENTENCE];
	size_t n = 0;
	const char *k, *sep = ": ";
	json_t *v;

#define ADD(...)                                                               \
	do {                                                                   \
		if (n < sizeof(buf))                                           \
			n += (size_t)snprintf(buf + n, sizeof(buf) - n,        \
			                      __VA_ARGS__);                    \
	} while (0)
	ADD("%zu saga%s", t->sagas, t->sagas == 1 ? "" : "s");
	json_object_foreach(t->commands, k, v)
	{
		ADD("%s%lld %s", sep, (long long)json_integer_value(v), k);
		sep = ", ";
	}
	if (t->stuck > 0)
		ADD("%s%zu stuck on an undo", sep, t->stuck);
	if (json_object_size(t->refused) > 0) {
		ADD("; %zu refused", t->sagas - t->applicable);
		sep = ": ";
		json_object_foreach(t->refused, k, v)
		{
			ADD("%s%s (%lld)", sep, k,
			    (long long)json_integer_value(v));
			sep = "; ";
		}
	}
#undef ADD
	return jsonout_str(buf);
}

static json_t *
tally_doc(struct tally *t, enum engine_event_type op)
{
	return json_pack(
	        "{s:o,s:I,s:I,s:I,s:O,s:O,s:O,s:O,s:o,s:i}", "action",
	        jsonout_str(preview_op_name(op)), "sagas", (json_int_t)t->sagas,
	        "applicable", (json_int_t)t->applicable, "stuck",
	        (json_int_t)t->stuck, "commands", t->commands, "status_after",
	        t->after, "refused", t->refused, "ids", t->ids, "summary",
	        sentence(t), "max", CONSOLE_BULK_MAX);
}

static void
tally_clear(struct tally *t)
{
	json_decref(t->commands);
	json_decref(t->refused);
	json_decref(t->after);
	json_decref(t->ids);
}

/* Previews op on each of ids into t: 0, or -1 with e set. */
static int
tally_each(struct store *st, char (*ids)[SAGA_ID_MAX], size_t n,
           enum engine_event_type op, const char *step, struct tally *t,
           struct console_err *e)
{
	struct charts cs = {0};
	int64_t now = clock_wall_ms();
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct chart *c = NULL;
		struct saga s;
		struct preview p;

		if (load_cached(st, &cs, ids[i], &s, &c, e) != 0) {
			rc = e->status == 404 ? 0 : -1; /* gone meanwhile */
		} else if (preview_run(c, &s, op, step, now, &p) != 0) {
			rc = -1;
			console_fail(e, 503, "out of memory");
		} else {
			tally_add(t, &s, &p);
			json_array_append_new(t->ids, jsonout_str(s.id));
			preview_clear(&p);
		}
		if (c != NULL && !charts_own(&cs, c))
			chart_free(c);
		saga_clear(&s);
	}
	charts_free(&cs);
	return rc;
}

json_t *
console_bulk_preview_json(struct store *st, const struct http_request *req,
                          struct console_err *e)
{
	const char *step = http_query(req, "step");
	struct tally t = {0};
	struct store_saga_filter f;
	enum engine_event_type op;
	char(*ids)[SAGA_ID_MAX] = NULL;
	size_t n = 0;
	json_t *doc = NULL;

	if (step != NULL && step[0] == '\0')
		step = NULL;
	if (console_action_param(http_query(req, "action"), step, &op, e) !=
	            0 ||
	    console_filter(console_query, req, &f, e) != 0 ||
	    console_select(st, &f, &ids, &n, e) != 0)
		return NULL;
	t.commands = json_object();
	t.refused = json_object();
	t.after = json_object();
	t.ids = json_array();
	if (t.commands == NULL || t.refused == NULL || t.after == NULL ||
	    t.ids == NULL)
		console_fail(e, 503, "out of memory");
	else if (tally_each(st, ids, n, op, step, &t, e) == 0)
		doc = tally_doc(&t, op);
	if (doc == NULL && e->status == 0)
		console_fail(e, 503, "out of memory");
	tally_clear(&t);
	free(ids);
	return doc;
}

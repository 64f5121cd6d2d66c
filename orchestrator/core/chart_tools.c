/* chart_tools.c -- dot, diff, plan and simulate over a loaded chart: see
 * chart_tools.h for the contract.
 *
 * What shaped it. Operators read these outputs while changing a chart, so
 * every text names states, reply types and commands exactly as the YAML
 * file does. The tools only read the chart model (chart.h), never the YAML,
 * so what they show is what the engine runs: defaults applied, targets
 * resolved. The simulator goes further and drives engine_step itself; the
 * timeline is the engine's own actions and notes, not a re-implementation.
 *
 * Text is built in fixed buffers (TEXT_MAX): a label or a diff value longer
 * than that is cut, which can hide a difference only past 2 KiB of one key.
 */
#include "chart_tools.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "chart_load.h"

#define TEXT_MAX 2048

/* ---- text helpers ---- */

static void app(char *buf, size_t cap, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Appends to a NUL-terminated buffer, cutting what does not fit. */
static void
app(char *buf, size_t cap, const char *fmt, ...)
{
	size_t len = strlen(buf);
	va_list ap;

	if (len + 1 >= cap)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + len, cap - len, fmt, ap);
	va_end(ap);
}

/* "250ms", "5s", "2m", "1h", "1m30s". */
static const char *
dur_text(int64_t ms, char *buf, size_t cap)
{
	if (ms != 0 && ms % 3600000 == 0)
		snprintf(buf, cap, "%" PRId64 "h", ms / 3600000);
	else if (ms != 0 && ms % 60000 == 0)
		snprintf(buf, cap, "%" PRId64 "m", ms / 60000);
	else if (ms != 0 && ms % 1000 == 0)
		snprintf(buf, cap, "%" PRId64 "s", ms / 1000);
	else
		snprintf(buf, cap, "%" PRId64 "ms", ms);
	return buf;
}

static const char *
retry_text(const struct chart_retry *r, char *buf, size_t cap)
{
	if (r->attempts <= 1) {
		snprintf(buf, cap, "1 attempt");
	} else {
		char b1[32], b2[32];
		snprintf(buf, cap, "%d attempts, backoff %s x%g, cap %s",
		         r->attempts, dur_text(r->backoff_ms, b1, sizeof(b1)),
		         r->multiplier, dur_text(r->cap_ms, b2, sizeof(b2)));
	}
	return buf;
}

/* A value as flow YAML; strings quoted. */
static void
value_text(const struct value *v, char *buf, size_t cap)
{
	char tmp[256];
	size_t i;

	switch (v->type) {
	case VALUE_STR:
		app(buf, cap, "\"%s\"", v->u.s.ptr);
		break;
	case VALUE_ARRAY:
		app(buf, cap, "[");
		for (i = 0; i < v->u.a.len; i++) {
			if (i > 0)
				app(buf, cap, ", ");
			value_text(&v->u.a.items[i], buf, cap);
		}
		app(buf, cap, "]");
		break;
	case VALUE_MAP:
		app(buf, cap, "{");
		for (i = 0; i < v->u.m.len; i++) {
			app(buf, cap, "%s%s: ", i > 0 ? ", " : "",
			    v->u.m.items[i].key);
			value_text(&v->u.m.items[i].val, buf, cap);
		}
		app(buf, cap, "}");
		break;
	case VALUE_NIL:
		app(buf, cap, "null");
		break;
	default:
		if (value_scalar_text(v, tmp, sizeof(tmp)) < 0)
			snprintf(tmp, sizeof(tmp), "?");
		app(buf, cap, "%s", tmp);
		break;
	}
}

static void
cond_text(const struct chart_cond *c, char *buf, size_t cap)
{
	static const char *const ops[] = {
	        [OP_EQ] = "==",         [OP_NE] = "!=", [OP_IN] = "in",
	        [OP_NOT_IN] = "not in", [OP_LT] = "<",  [OP_LE] = "<=",
	        [OP_GT] = ">",          [OP_GE] = ">="};

	if (c->op == OP_PRESENT) {
		bool want = c->operand.type == VALUE_BOOL && c->operand.u.b;
		app(buf, cap, "%s %s", c->field, want ? "present" : "absent");
		return;
	}
	app(buf, cap, "%s %s ", c->field,
	    (size_t)c->op < sizeof(ops) / sizeof(ops[0]) && ops[c->op]
	            ? ops[c->op]
	            : "?");
	value_text(&c->operand, buf, cap);
}

/* The branch's conditions joined with sep. */
static void
guard_text(const struct chart_branch *b, const char *sep, char *buf, size_t cap)
{
	size_t i;

	buf[0] = '\0';
	for (i = 0; i < b->nconds; i++) {
		if (i > 0)
			app(buf, cap, "%s", sep);
		cond_text(&b->conds[i], buf, cap);
	}
	if (b->nconds == 0)
		app(buf, cap, "always");
}

static void
strv_text(char **v, size_t n, char *buf, size_t cap)
{
	size_t i;

	app(buf, cap, "[");
	for (i = 0; i < n; i++)
		app(buf, cap, "%s%s", i > 0 ? ", " : "", v[i]);
	app(buf, cap, "]");
}

static const char *
sname(const struct chart *c, int i)
{
	return i >= 0 && (size_t)i < c->nstates ? c->states[i].name : "(none)";
}

/* ---- loading ---- */

struct chart *
chart_tools_load(const char *path, FILE *err)
{
	struct chart_errors errs;
	struct chart *c;

	chart_errors_init(&errs);
	c = chart_load_file(path, &errs);
	if (c == NULL) {
		for (size_t i = 0; i < errs.count; i++)
			fprintf(err, "%s\n", errs.items[i].text);
		if (errs.dropped > 0)
			fprintf(err, "%s: %zu more errors\n", path,
			        errs.dropped);
	}
	chart_errors_clear(&errs);
	return c;
}

/* ---- dot ---- */

/* A dot string literal: quotes and backslashes escaped, newlines as \n. */
static void
dot_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

/* A final state that ends a failure: some failure leads into it. */
static bool
is_failure_final(const struct chart *c, int idx)
{
	size_t i, k;

	if (c->states[idx].type != STATE_FINAL)
		return false;
	if (c->failure == idx)
		return true;
	for (i = 0; i < c->nstates; i++) {
		const struct chart_state *s = &c->states[i];
		if (s->max_visits > 0 && s->too_many_kind == REPLY_FAIL &&
		    s->too_many_target == idx)
			return true;
		if (s->type == STATE_STEP) {
			if (s->exhausted_target == idx)
				return true;
			for (k = 0; k < s->nreplies; k++)
				if (s->replies[k].kind == REPLY_FAIL &&
				    s->replies[k].target == idx)
					return true;
		} else if (s->type == STATE_CHOICE) {
			for (k = 0; k < s->nbranches; k++)
				if (s->branches[k].kind == REPLY_FAIL &&
				    s->branches[k].target == idx)
					return true;
		}
	}
	return false;
}

/* A marked (taken) edge or (visited) node: drawn thick and blue; the
 * attributes come last, so they win over the type's own colour. */
#define DOT_MARK_EDGE "color=blue, fontcolor=blue, penwidth=2.5"
#define DOT_MARK_NODE "color=blue, fontcolor=blue, penwidth=3"

static void
dot_edge(FILE *f, const char *from, const char *to, const char *label,
         const char *attrs, bool marked)
{
	fputs("  ", f);
	dot_str(f, from);
	fputs(" -> ", f);
	dot_str(f, to);
	fputs(" [label=", f);
	dot_str(f, label);
	if (attrs != NULL && *attrs)
		fprintf(f, ", %s", attrs);
	if (marked)
		fputs(", " DOT_MARK_EDGE, f);
	fputs("];\n", f);
}

static void
dot_node(FILE *f, const char *name, const char *label, const char *attrs,
         bool marked)
{
	fputs("  ", f);
	dot_str(f, name);
	fputs(" [label=", f);
	dot_str(f, label);
	fprintf(f, ", %s%s];\n", attrs, marked ? ", " DOT_MARK_NODE : "");
}

/* Whether the marks say state i was visited / edge i -> j was taken /
 * state i's compensation was sent. */
static bool
mark_state(const struct chart_dot_marks *m, int i)
{
	return m != NULL && m->states != NULL && i >= 0 && m->states[i];
}

static bool
mark_edge(const struct chart *c, const struct chart_dot_marks *m, int i, int j)
{
	return m != NULL && m->edges != NULL && i >= 0 && j >= 0 &&
	       m->edges[(size_t)i * c->nstates + (size_t)j];
}

static bool
mark_undo(const struct chart_dot_marks *m, int i)
{
	return m != NULL && m->undone != NULL && i >= 0 && m->undone[i];
}

#define DOT_FAIL  "style=dashed, color=red, fontcolor=red"
#define DOT_RETRY "style=dotted, color=gray40, fontcolor=gray40"

/* A bounded state's too_many: the edge an entry past max_visits takes
 * instead (drawn from the state, labelled with the refused visit). */
static void
dot_bound(FILE *f, const struct chart *c, const struct chart_state *s,
          const struct chart_dot_marks *m)
{
	int me = (int)(s - c->states);
	char label[64];

	if (s->max_visits == 0 || s->too_many_target < 0)
		return;
	snprintf(label, sizeof(label), "visit %d\n(too_many)",
	         s->max_visits + 1);
	dot_edge(f, s->name, sname(c, s->too_many_target), label,
	         s->too_many_kind == REPLY_FAIL ? DOT_FAIL : DOT_RETRY,
	         mark_edge(c, m, me, s->too_many_target));
}

/* The dot node a GOTO from state `from` leads to: "<parallel>.join" for
 * a branch's join, else the target state. */
static const char *
dot_target(const struct chart *c, int from, int to, char *buf, size_t cap)
{
	if (to < 0 || !CHART_IS_JOIN(c, from, to))
		return sname(c, to);
	snprintf(buf, cap, "%s.join", c->states[to].name);
	return buf;
}

/* A parallel state: a fork bar with an edge to each branch's first state,
 * and a join bar (which the branches' `join` edges reach) leading on. */
static void
dot_parallel(FILE *f, const struct chart *c, const struct chart_state *s,
             const struct chart_dot_marks *m)
{
	int me = (int)(s - c->states);
	char node[CHART_NAME_MAX + 8], label[TEXT_MAX];
	const char *bar = "shape=box, style=filled, fillcolor=black, "
	                  "fontcolor=white, height=0.2, fontsize=9";
	size_t k;

	snprintf(label, sizeof(label), "%s: fork", s->name);
	dot_node(f, s->name, label, bar, mark_state(m, me));
	snprintf(node, sizeof(node), "%s.join", s->name);
	snprintf(label, sizeof(label), "%s: join", s->name);
	dot_node(f, node, label, bar, mark_state(m, me));
	for (k = 0; k < s->nfork; k++) {
		snprintf(label, sizeof(label), "branch %zu", k + 1);
		dot_edge(f, s->name, sname(c, s->fork[k]), label, NULL,
		         mark_edge(c, m, me, s->fork[k]));
	}
	dot_edge(f, node, sname(c, s->next), "all joined", NULL,
	         mark_edge(c, m, me, s->next));
}

/* Appends a bounded state's "\nmax_visits N" to its node label. */
static void
app_max_visits(char *label, size_t cap, const struct chart_state *s)
{
	if (s->max_visits > 0)
		app(label, cap, "\nmax_visits %d", s->max_visits);
}

/* Into label, the reply types of s from reply i on that share its kind
 * and target, one a line, each flagged in seen; without seen (out of
 * memory) only reply i's type. */
static void
dot_reply_types(const struct chart_state *s, size_t i, bool *seen, char *label,
                size_t cap)
{
	const struct chart_reply *r = &s->replies[i];
	size_t k;

	label[0] = '\0';
	for (k = i; k < s->nreplies; k++) {
		const struct chart_reply *o = &s->replies[k];
		if (o->kind != r->kind || o->target != r->target)
			continue;
		if (seen != NULL)
			seen[k] = true;
		app(label, cap, "%s%s", k > i ? "\n" : "", o->type);
		if (seen == NULL)
			break;
	}
}

/* A step's replies: one edge per (kind, target), its reply types stacked
 * in the label; a retry reply is a self-loop. */
static void
dot_replies(FILE *f, const struct chart *c, const struct chart_state *s,
            const struct chart_dot_marks *m)
{
	int me = (int)(s - c->states);
	char label[TEXT_MAX], jb[CHART_NAME_MAX + 8];
	bool *seen = calloc(s->nreplies ? s->nreplies : 1, sizeof(*seen));
	size_t i;

	for (i = 0; i < s->nreplies; i++) {
		const struct chart_reply *r = &s->replies[i];
		if (seen != NULL && seen[i])
			continue;
		dot_reply_types(s, i, seen, label, sizeof(label));
		switch (r->kind) {
		case REPLY_GOTO:
			dot_edge(f, s->name,
			         dot_target(c, me, r->target, jb, sizeof(jb)),
			         label, NULL, mark_edge(c, m, me, r->target));
			break;
		case REPLY_FAIL:
			dot_edge(f, s->name, sname(c, r->target), label,
			         DOT_FAIL, mark_edge(c, m, me, r->target));
			break;
		case REPLY_RETRY:
			app(label, sizeof(label), "\n(retry)");
			dot_edge(f, s->name, s->name, label, DOT_RETRY,
			         mark_edge(c, m, me, me));
			break;
		}
	}
	free(seen);
}

/* A step's compensation: a note node joined to the step by a dotted edge
 * pointing back to it, both on one rank. */
static void
dot_undo(FILE *f, const struct chart *c, const struct chart_state *s,
         const struct chart_dot_marks *m)
{
	const struct chart_compensation *u = s->compensate;
	int me = (int)(s - c->states);
	char node[CHART_NAME_MAX + 8], label[TEXT_MAX];

	assert(u != NULL);
	snprintf(node, sizeof(node), "%s.undo", s->name);
	label[0] = '\0';
	app(label, sizeof(label), "undo: %s -> %s", u->command, u->to);
	if (u->route != NULL)
		app(label, sizeof(label), "\nroute %s", u->route);
	app(label, sizeof(label), "\nok: ");
	strv_text(u->ok, u->nok, label, sizeof(label));
	dot_node(f, node, label,
	         "shape=note, style=filled, fillcolor=lightyellow, "
	         "fontsize=9",
	         mark_undo(m, me));
	dot_edge(f, node, s->name, "compensates",
	         "style=dotted, color=darkorange, fontcolor=darkorange, "
	         "arrowhead=empty",
	         mark_undo(m, me));
	fputs("  { rank=same; ", f);
	dot_str(f, s->name);
	fputs("; ", f);
	dot_str(f, node);
	fputs("; }\n", f);
}

/* A step: its node (command, route, emit, bound), its bound's edge, its
 * reply edges, the edge taken when its attempts run out, and its
 * compensation. */
static void
dot_step(FILE *f, const struct chart *c, const struct chart_state *s,
         const struct chart_dot_marks *m)
{
	int me = (int)(s - c->states);
	char label[TEXT_MAX], b1[32];

	label[0] = '\0';
	app(label, sizeof(label), "%s\n%s -> %s", s->name, s->command, s->to);
	if (s->route != NULL)
		app(label, sizeof(label), "\nroute %s", s->route);
	if (s->emit != NULL)
		app(label, sizeof(label), "\nemit %s", s->emit);
	app_max_visits(label, sizeof(label), s);
	dot_node(f, s->name, label,
	         "shape=box, style=\"rounded,filled\", fillcolor=aliceblue",
	         mark_state(m, me));
	dot_bound(f, c, s, m);
	dot_replies(f, c, s, m);

	snprintf(label, sizeof(label), "%d attempt%s exhausted\n(timeout %s%s)",
	         s->retry.attempts, s->retry.attempts == 1 ? "" : "s",
	         dur_text(s->timeout_ms, b1, sizeof(b1)),
	         s->retry.attempts == 1 ? "" : " each");
	dot_edge(f, s->name, sname(c, s->exhausted_target), label, DOT_FAIL,
	         mark_edge(c, m, me, s->exhausted_target));
	if (s->compensate != NULL)
		dot_undo(f, c, s, m);
}

/* A choice: a diamond, an edge per branch labelled with its guard, and
 * the default edge. */
static void
dot_choice(FILE *f, const struct chart *c, const struct chart_state *s,
           const struct chart_dot_marks *m)
{
	int me = (int)(s - c->states);
	char label[TEXT_MAX], jb[CHART_NAME_MAX + 8];
	size_t k;

	snprintf(label, sizeof(label), "%s", s->name);
	app_max_visits(label, sizeof(label), s);
	dot_node(f, s->name, label,
	         "shape=diamond, style=filled, fillcolor=lightgoldenrod1",
	         mark_state(m, me));
	dot_bound(f, c, s, m);
	for (k = 0; k < s->nbranches; k++) {
		const struct chart_branch *b = &s->branches[k];
		guard_text(b, " &&\n", label, sizeof(label));
		dot_edge(f, s->name,
		         dot_target(c, me, b->target, jb, sizeof(jb)), label,
		         b->kind == REPLY_FAIL ? DOT_FAIL : NULL,
		         mark_edge(c, m, me, b->target));
	}
	dot_edge(f, s->name,
	         dot_target(c, me, s->default_target, jb, sizeof(jb)),
	         "default", NULL, mark_edge(c, m, me, s->default_target));
}

/* A wait: a double dashed ellipse and its "after D" edge to next. */
static void
dot_wait(FILE *f, const struct chart *c, const struct chart_state *s,
         const struct chart_dot_marks *m)
{
	int me = (int)(s - c->states);
	char label[TEXT_MAX], b1[32];

	snprintf(label, sizeof(label), "%s\nwait %s", s->name,
	         dur_text(s->duration_ms, b1, sizeof(b1)));
	app_max_visits(label, sizeof(label), s);
	dot_node(f, s->name, label,
	         "shape=ellipse, style=\"dashed,filled\", "
	         "fillcolor=honeydew, peripheries=2",
	         mark_state(m, me));
	dot_bound(f, c, s, m);
	snprintf(label, sizeof(label), "after %s",
	         dur_text(s->duration_ms, b1, sizeof(b1)));
	dot_edge(f, s->name, sname(c, s->next), label, NULL,
	         mark_edge(c, m, me, s->next));
}

/* A final: a double circle with its event, red if a failure ends there. */
static void
dot_final(FILE *f, const struct chart *c, const struct chart_state *s,
          const struct chart_dot_marks *m)
{
	int me = (int)(s - c->states);
	char label[TEXT_MAX];

	label[0] = '\0';
	app(label, sizeof(label), "%s", s->name);
	if (s->emit != NULL)
		app(label, sizeof(label), "\n%s", s->emit);
	dot_node(f, s->name, label,
	         is_failure_final(c, me) ? "shape=doublecircle, color=red, "
	                                   "fontcolor=red, fontsize=9"
	                                 : "shape=doublecircle, "
	                                   "color=darkgreen, fontsize=9",
	         mark_state(m, me));
}

/* The graph's opening: its name and label, the default styles, and the
 * start point's arrow to the initial state. */
static void
dot_header(FILE *out, const struct chart *c, const struct chart_dot_marks *m)
{
	char label[TEXT_MAX];

	fputs("digraph ", out);
	dot_str(out, c->name);
	fputs(" {\n", out);
	snprintf(label, sizeof(label), "saga %s, version %s", c->name,
	         c->version);
	fputs("  label=", out);
	dot_str(out, label);
	fputs(";\n  labelloc=t;\n  rankdir=TB;\n"
	      "  node [fontname=\"Helvetica\", fontsize=11];\n"
	      "  edge [fontname=\"Helvetica\", fontsize=9];\n"
	      "  \"__start\" [shape=point, width=0.15, label=\"\"];\n"
	      "  \"__start\" -> ",
	      out);
	dot_str(out, sname(c, c->initial));
	fputs(mark_state(m, c->initial) ? " [" DOT_MARK_EDGE "];\n" : ";\n",
	      out);
}

int
chart_dot(FILE *out, const struct chart *c)
{
	return chart_dot_marked(out, c, NULL);
}

int
chart_dot_marked(FILE *out, const struct chart *c,
                 const struct chart_dot_marks *m)
{
	size_t i;

	dot_header(out, c, m);
	for (i = 0; i < c->nstates; i++) {
		const struct chart_state *s = &c->states[i];

		fprintf(out, "\n  /* %s: %s */\n", s->name,
		        chart_state_type_name(s->type));
		switch (s->type) {
		case STATE_STEP:
			dot_step(out, c, s, m);
			break;
		case STATE_CHOICE:
			dot_choice(out, c, s, m);
			break;
		case STATE_WAIT:
			dot_wait(out, c, s, m);
			break;
		case STATE_FINAL:
			dot_final(out, c, s, m);
			break;
		case STATE_PARALLEL:
			dot_parallel(out, c, s, m);
			break;
		}
	}
	fputs("}\n", out);
	return ferror(out) ? -1 : 0;
}

/* ---- diff ---- */

/* A flat list of "key" -> "value text" for one chart or one state; two
 * lists are compared key by key. */
struct kv {
	char *key, *val;
};

struct kvl {
	struct kv *v;
	size_t n, cap;
	bool oom;
};

static void kv_add(struct kvl *l, const char *key, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void
kv_add(struct kvl *l, const char *key, const char *fmt, ...)
{
	char val[TEXT_MAX];
	va_list ap;

	if (l->oom)
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct kv *nv = realloc(l->v, cap * sizeof(*nv));
		if (nv == NULL) {
			l->oom = true;
			return;
		}
		l->v = nv;
		l->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	l->v[l->n].key = strdup(key);
	l->v[l->n].val = strdup(val);
	if (l->v[l->n].key == NULL || l->v[l->n].val == NULL) {
		free(l->v[l->n].key);
		free(l->v[l->n].val);
		l->oom = true;
		return;
	}
	l->n++;
}

static void
kv_clear(struct kvl *l)
{
	size_t i;

	for (i = 0; i < l->n; i++) {
		free(l->v[i].key);
		free(l->v[i].val);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static const struct kv *
kv_find(const struct kvl *l, const char *key)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (strcmp(l->v[i].key, key) == 0)
			return &l->v[i];
	return NULL;
}

static const char *
reply_text(const struct chart *c, const struct chart_reply *r, char *buf,
           size_t cap)
{
	switch (r->kind) {
	case REPLY_GOTO:
		snprintf(buf, cap, "%s", sname(c, r->target));
		break;
	case REPLY_FAIL:
		snprintf(buf, cap, "{fail: %s}", sname(c, r->target));
		break;
	case REPLY_RETRY:
		snprintf(buf, cap, "retry");
		break;
	}
	return buf;
}

/* The text of an optional key: the value, or "(none)". */
static const char *
or_none(const char *s)
{
	return s != NULL ? s : "(none)";
}

/* Adds a target under key: its state, or "{fail: state}" for a failure. */
static void
kv_target(struct kvl *l, const char *key, const struct chart *c,
          enum chart_reply_kind kind, int target)
{
	kv_add(l, key, "%s%s%s", kind == REPLY_FAIL ? "{fail: " : "",
	       sname(c, target), kind == REPLY_FAIL ? "}" : "");
}

/* Adds a list of names under key, as "[a, b]". */
static void
kv_strv(struct kvl *l, const char *key, char **v, size_t n)
{
	char t[TEXT_MAX];

	t[0] = '\0';
	strv_text(v, n, t, sizeof(t));
	kv_add(l, key, "%s", t);
}

/* The keys of a step's compensation ("compensate.to" ...), or
 * "compensate: (none)". */
static void
compensate_kvs(const struct chart_compensation *u, struct kvl *l)
{
	char t[TEXT_MAX], b1[32];

	if (u == NULL) {
		kv_add(l, "compensate", "(none)");
		return;
	}
	kv_add(l, "compensate.to", "%s", u->to);
	kv_add(l, "compensate.command", "%s", u->command);
	kv_add(l, "compensate.route", "%s", or_none(u->route));
	kv_strv(l, "compensate.pass", u->pass, u->npass);
	kv_strv(l, "compensate.ok", u->ok, u->nok);
	kv_add(l, "compensate.timeout", "%s",
	       dur_text(u->timeout_ms, b1, sizeof(b1)));
	kv_add(l, "compensate.retry", "%s",
	       retry_text(&u->retry, t, sizeof(t)));
}

/* The keys of a step: its command, replies, timing and compensation. */
static void
step_kvs(const struct chart *c, const struct chart_state *s, struct kvl *l)
{
	char t[TEXT_MAX], key[CHART_TYPE_MAX + 16], b1[32];
	size_t i;

	kv_add(l, "to", "%s", s->to);
	kv_add(l, "command", "%s", s->command);
	kv_add(l, "route", "%s", or_none(s->route));
	kv_strv(l, "pass", s->pass, s->npass);
	for (i = 0; i < s->nreplies; i++) {
		snprintf(key, sizeof(key), "on %s", s->replies[i].type);
		kv_add(l, key, "%s",
		       reply_text(c, &s->replies[i], t, sizeof(t)));
	}
	kv_strv(l, "save", s->save, s->nsave);
	kv_add(l, "emit", "%s", or_none(s->emit));
	kv_add(l, "timeout", "%s", dur_text(s->timeout_ms, b1, sizeof(b1)));
	kv_add(l, "retry", "%s", retry_text(&s->retry, t, sizeof(t)));
	kv_add(l, "exhausted", "%s", sname(c, s->exhausted_target));
	compensate_kvs(s->compensate, l);
}

/* The keys of a choice: each branch's guard and target, the default. */
static void
choice_kvs(const struct chart *c, const struct chart_state *s, struct kvl *l)
{
	char t[TEXT_MAX], key[CHART_TYPE_MAX + 16];
	size_t i;

	for (i = 0; i < s->nbranches; i++) {
		const struct chart_branch *b = &s->branches[i];
		guard_text(b, " && ", t, sizeof(t));
		snprintf(key, sizeof(key), "branch %zu when", i + 1);
		kv_add(l, key, "%s", t);
		snprintf(key, sizeof(key), "branch %zu", i + 1);
		kv_target(l, key, c, b->kind, b->target);
	}
	kv_add(l, "default", "%s", sname(c, s->default_target));
}

/* The operator-visible keys of one state. */
static void
state_kvs(const struct chart *c, const struct chart_state *s, struct kvl *l)
{
	char key[CHART_TYPE_MAX + 16], b1[32];
	size_t i;

	kv_add(l, "type", "%s", chart_state_type_name(s->type));
	if (s->max_visits > 0) {
		kv_add(l, "max_visits", "%d", s->max_visits);
		kv_target(l, "too_many", c, s->too_many_kind,
		          s->too_many_target);
	}
	switch (s->type) {
	case STATE_STEP:
		step_kvs(c, s, l);
		break;
	case STATE_CHOICE:
		choice_kvs(c, s, l);
		break;
	case STATE_WAIT:
		kv_add(l, "duration", "%s",
		       dur_text(s->duration_ms, b1, sizeof(b1)));
		kv_add(l, "next", "%s", sname(c, s->next));
		break;
	case STATE_FINAL:
		kv_add(l, "emit", "%s", or_none(s->emit));
		break;
	case STATE_PARALLEL:
		for (i = 0; i < s->nfork; i++) {
			snprintf(key, sizeof(key), "branch %zu", i + 1);
			kv_add(l, key, "%s", sname(c, s->fork[i]));
		}
		kv_add(l, "next", "%s", sname(c, s->next));
		break;
	}
}

/* Prints the differences between two key lists, each line prefixed with
 * `who` ("payment: "). Returns how many. */
static int
kv_diff(FILE *out, const char *who, const struct kvl *a, const struct kvl *b)
{
	int n = 0;
	size_t i;

	for (i = 0; i < a->n; i++) {
		const struct kv *o = kv_find(b, a->v[i].key);
		if (o == NULL) {
			fprintf(out, "- %s%s: %s\n", who, a->v[i].key,
			        a->v[i].val);
			n++;
		} else if (strcmp(o->val, a->v[i].val) != 0) {
			fprintf(out, "~ %s%s: %s -> %s\n", who, a->v[i].key,
			        a->v[i].val, o->val);
			n++;
		}
	}
	for (i = 0; i < b->n; i++) {
		if (kv_find(a, b->v[i].key) == NULL) {
			fprintf(out, "+ %s%s: %s\n", who, b->v[i].key,
			        b->v[i].val);
			n++;
		}
	}
	return n;
}

static void
top_kvs(const struct chart *c, struct kvl *l)
{
	char key[CHART_NAME_MAX + 16];
	size_t i;

	kv_add(l, "saga", "%s", c->name);
	kv_add(l, "initial", "%s", sname(c, c->initial));
	kv_add(l, "failure", "%s", sname(c, c->failure));
	for (i = 0; i < c->nfields; i++) {
		snprintf(key, sizeof(key), "field %s", c->fields[i].path);
		kv_add(l, key, "%s", chart_field_type_name(c->fields[i].type));
	}
}

/* The names of a's states that b also has, in a's order, as one text. */
static void
common_order(const struct chart *a, const struct chart *b, char *buf,
             size_t cap)
{
	size_t i;

	buf[0] = '\0';
	for (i = 0; i < a->nstates; i++)
		if (chart_state_index(b, a->states[i].name) >= 0)
			app(buf, cap, "%s%s", buf[0] ? ", " : "",
			    a->states[i].name);
}

/* Writes the states only a has ("-"), those only b has ("+"), and a
 * change in the order of the states both have. Returns how many lines. */
static int
diff_state_sets(FILE *out, const struct chart *a, const struct chart *b)
{
	char oa[TEXT_MAX], ob[TEXT_MAX];
	int n = 0;
	size_t i;

	for (i = 0; i < a->nstates; i++)
		if (chart_state_index(b, a->states[i].name) < 0) {
			fprintf(out, "- state %s (%s)\n", a->states[i].name,
			        chart_state_type_name(a->states[i].type));
			n++;
		}
	for (i = 0; i < b->nstates; i++)
		if (chart_state_index(a, b->states[i].name) < 0) {
			fprintf(out, "+ state %s (%s)\n", b->states[i].name,
			        chart_state_type_name(b->states[i].type));
			n++;
		}
	common_order(a, b, oa, sizeof(oa));
	common_order(b, a, ob, sizeof(ob));
	if (strcmp(oa, ob) != 0) {
		fprintf(out, "~ state order: %s -> %s\n", oa, ob);
		n++;
	}
	return n;
}

/* What a reload means for the sagas running on a: they finish on a,
 * whatever b says; only new sagas start on b. */
static void
diff_running(FILE *out, const struct chart *a, const struct chart *b)
{
	bool gone = false;
	size_t i;

	fprintf(out,
	        "\nrunning sagas: every saga started on %s finishes on %s,\n"
	        "  even after a reload or a restart: the orchestrator keeps "
	        "the source of\n  every version it ran. A reload (SIGHUP) "
	        "starts only new sagas of chart %s\n  on %s.\n",
	        a->version, a->version, b->name, b->version);
	for (i = 0; i < a->nstates; i++) {
		if (chart_state_index(b, a->states[i].name) >= 0)
			continue;
		fprintf(out, "%s%s (%s)",
		        gone ? ", "
		             : "states of the old version that the new one "
		               "does not have (sagas in them\n  finish there, "
		               "on the old version): ",
		        a->states[i].name,
		        chart_state_type_name(a->states[i].type));
		gone = true;
	}
	fputs(gone ? "\n"
	           : "every state of the old version is in the new one.\n",
	      out);
}

int
chart_diff(FILE *out, const struct chart *a, const struct chart *b)
{
	struct kvl la = {0}, lb = {0};
	char who[CHART_NAME_MAX + 4];
	bool oom = false;
	int n = 0;
	size_t i;

	fprintf(out, "--- %s  version %s\n+++ %s  version %s\n", a->file,
	        a->version, b->file, b->version);
	if (strcmp(a->version, b->version) == 0) {
		fprintf(out,
		        "same version: no change\n\nrunning sagas: "
		        "nothing changes for them (they run on version "
		        "%s).\n",
		        a->version);
		return ferror(out) ? -1 : 0;
	}
	top_kvs(a, &la);
	top_kvs(b, &lb);
	oom = la.oom || lb.oom;
	n += kv_diff(out, "", &la, &lb);
	kv_clear(&la);
	kv_clear(&lb);

	n += diff_state_sets(out, a, b);
	for (i = 0; i < a->nstates && !oom; i++) {
		int j = chart_state_index(b, a->states[i].name);
		if (j < 0)
			continue;
		state_kvs(a, &a->states[i], &la);
		state_kvs(b, &b->states[j], &lb);
		oom = la.oom || lb.oom;
		snprintf(who, sizeof(who), "%s: ", a->states[i].name);
		if (!oom)
			n += kv_diff(out, who, &la, &lb);
		kv_clear(&la);
		kv_clear(&lb);
	}
	if (n == 0)
		fprintf(out, "no difference in operator terms (the versions "
		             "differ in detail only)\n");
	diff_running(out, a, b);
	if (oom || ferror(out))
		return -1;
	return 1;
}

/* ---- plan ---- */

#define PLAN_DEPTH_MAX 1024 /* states on one unrolled path */

struct plan {
	FILE *out;
	const struct chart *c;
	bool failures; /* this pass lists failure points, else successes */
	int *path;     /* states on the current path */
	char (*how)[TEXT_MAX / 4]; /* how[i]: the edge from path[i] onward */
	bool *refused;    /* refused[i]: path[i] was past its max_visits */
	int *on_path;     /* times each state is on the current path */
	int *stack;       /* completed steps with a compensation */
	int *stack_visit; /* the visit each completed on */
	size_t depth, nstack;
	int count;
	bool cut; /* CHART_PLAN_MAX_POINTS reached */
};

static void
plan_path(struct plan *p)
{
	size_t i;

	for (i = 0; i < p->depth; i++) {
		if (i > 0)
			fprintf(p->out, " -[%s]-> ", p->how[i - 1]);
		fputs(p->c->states[p->path[i]].name, p->out);
		if (p->refused[i])
			fprintf(p->out, " (past max_visits %d)",
			        p->c->states[p->path[i]].max_visits);
	}
}

/* ", visit N" for a later visit, else "". */
static const char *
visit_text(int visit, char *buf, size_t cap)
{
	if (visit <= 1)
		return "";
	snprintf(buf, cap, ", visit %d", visit);
	return buf;
}

/* A failure point in a branch of a parallel state: the other branches'
 * steps with a compensation that this path has not completed may be done
 * or in flight when it fails (the plan follows the branches one after
 * the other; at run time they go at once): they are undone too. */
static void
plan_other_branches(struct plan *p)
{
	const struct chart *c = p->c;
	const struct chart_state *at = &c->states[p->path[p->depth - 1]];
	bool first = true;
	size_t i, k;

	if (at->parallel < 0)
		return;
	for (i = 0; i < c->nstates; i++) {
		const struct chart_state *s = &c->states[i];

		if (s->parallel != at->parallel || s->branch == at->branch ||
		    s->compensate == NULL)
			continue;
		for (k = 0; k < p->nstack && p->stack[k] != (int)i; k++)
			;
		if (k < p->nstack)
			continue;
		fprintf(p->out, "%s%s (%s, branch %d)",
		        first ? "\n     and, if done or in flight by then: "
		              : ", ",
		        s->compensate->command, s->name, s->branch + 1);
		first = false;
	}
}

/* One failure point at the current path's end. `unknown` is the failing
 * step itself when its outcome is unknown (it is undone first), or -1. */
static void
plan_point(struct plan *p, const char *what, int unknown, int final)
{
	const struct chart *c = p->c;
	bool first = true;
	char v[32];
	size_t i;

	if (p->count >= CHART_PLAN_MAX_POINTS) {
		p->cut = true;
		return;
	}
	p->count++;
	fprintf(p->out, "%3d. %s\n     path:       ", p->count, what);
	plan_path(p);
	fputs("\n     compensate: ", p->out);
	if (unknown >= 0 && c->states[unknown].compensate != NULL) {
		fprintf(p->out, "%s (%s%s, outcome unknown)",
		        c->states[unknown].compensate->command,
		        c->states[unknown].name,
		        visit_text(p->on_path[unknown], v, sizeof(v)));
		first = false;
	}
	for (i = p->nstack; i-- > 0;) {
		const struct chart_state *s = &c->states[p->stack[i]];
		fprintf(p->out, "%s%s (%s%s)", first ? "" : ", then ",
		        s->compensate->command, s->name,
		        visit_text(p->stack_visit[i], v, sizeof(v)));
		first = false;
	}
	if (first)
		fputs("nothing", p->out);
	plan_other_branches(p);
	fprintf(p->out, "\n     final:      %s\n", sname(c, final));
}

static void plan_walk(struct plan *p, int state);
static void plan_follow(struct plan *p, const char *how, int target);

/* A branch joined: the plan goes on with the next branch's first state
 * (branches run at once; the plan lists them one after the other), or
 * after the last one with the parallel state's `next`. */
static void
plan_join(struct plan *p, const char *how, int from)
{
	const struct chart_state *s = &p->c->states[from];
	const struct chart_state *par = &p->c->states[s->parallel];
	char label[TEXT_MAX / 4];
	size_t k = (size_t)s->branch + 1;

	if (k < par->nfork) {
		snprintf(label, sizeof(label), "%s; join; branch %zu", how,
		         k + 1);
		plan_follow(p, label, par->fork[k]);
	} else {
		snprintf(label, sizeof(label), "%s; all joined", how);
		plan_follow(p, label, par->next);
	}
}

/* True if the path since target's last entry passes a state with
 * max_visits: following the loop again ends at that bound. */
static bool
plan_bounded_loop(const struct plan *p, int target)
{
	size_t i = p->depth;

	while (i-- > 0) {
		if (p->c->states[p->path[i]].max_visits > 0)
			return true;
		if (p->path[i] == target)
			return false;
	}
	return false;
}

/* `target` entered past its bound: its too_many instead. */
static void
plan_refused(struct plan *p, int target)
{
	const struct chart_state *s = &p->c->states[target];
	char what[TEXT_MAX];

	p->path[p->depth] = target;
	p->refused[p->depth++] = true;
	if (s->too_many_kind == REPLY_GOTO) {
		plan_follow(p, "too_many", s->too_many_target);
	} else if (p->failures) {
		snprintf(what, sizeof(what),
		         "%s: entered past max_visits %d (too_many)", s->name,
		         s->max_visits);
		plan_point(p, what, -1, s->too_many_target);
	}
	p->refused[--p->depth] = false;
}

/* Follows an edge labelled `how` into `target`: loops are unrolled up to
 * their bounds; a loop that nothing bounds (through no step: the
 * validator refuses those) is reported and not followed. */
static void
plan_follow(struct plan *p, const char *how, int target)
{
	int from = p->path[p->depth - 1];
	const struct chart_state *s = &p->c->states[target];

	if (CHART_IS_JOIN(p->c, from, target)) {
		plan_join(p, how, from);
		return;
	}
	snprintf(p->how[p->depth - 1], sizeof(p->how[0]), "%s", how);
	if (p->depth + 2 >= PLAN_DEPTH_MAX ||
	    p->count >= CHART_PLAN_MAX_POINTS) {
		p->cut = true;
		return;
	}
	if (s->max_visits > 0 && p->on_path[target] >= s->max_visits) {
		plan_refused(p, target);
		return;
	}
	if (p->on_path[target] > 0 && !plan_bounded_loop(p, target)) {
		if (!p->failures) {
			p->count++;
			fprintf(p->out, "%3d. loop: ", p->count);
			plan_path(p);
			fprintf(p->out,
			        " -[%s]-> %s (already on the path: not "
			        "followed)\n",
			        how, s->name);
		}
		return;
	}
	plan_walk(p, target);
}

/* Whether reply i of s is the first of its kind to its target: replies
 * of one kind to one target are listed together, at the first. */
static bool
reply_group_first(const struct chart_state *s, size_t i)
{
	const struct chart_reply *r = &s->replies[i];
	size_t k;

	for (k = 0; k < i; k++)
		if (s->replies[k].kind == r->kind &&
		    s->replies[k].target == r->target)
			return false;
	return true;
}

/* Appends the types of reply i of s and of the later replies of its kind
 * to its target, joined with sep. */
static void
reply_group_text(const struct chart_state *s, size_t i, const char *sep,
                 char *buf, size_t cap)
{
	const struct chart_reply *r = &s->replies[i];
	size_t k;

	for (k = i; k < s->nreplies; k++)
		if (s->replies[k].kind == r->kind &&
		    s->replies[k].target == r->target)
			app(buf, cap, "%s%s", k > i ? sep : "",
			    s->replies[k].type);
}

/* A step's failure points: its failure replies, one point per target,
 * then its attempts running out (its outcome unknown). */
static void
plan_step_failures(struct plan *p, const struct chart_state *s, int idx)
{
	char what[TEXT_MAX], b1[32], b2[TEXT_MAX], b3[32];
	size_t i, k;

	for (i = 0; i < s->nreplies; i++) {
		if (s->replies[i].kind != REPLY_FAIL ||
		    !reply_group_first(s, i))
			continue;
		snprintf(what, sizeof(what), "%s: reply ", s->name);
		reply_group_text(s, i, " or ", what, sizeof(what));
		plan_point(p, what, -1, s->replies[i].target);
	}
	snprintf(what, sizeof(what),
	         "%s: attempts exhausted or deadline %s passed (%s, "
	         "timeout %s each, not counted while nobody takes the "
	         "command",
	         s->name, dur_text(s->deadline_ms, b3, sizeof(b3)),
	         retry_text(&s->retry, b2, sizeof(b2)),
	         dur_text(s->timeout_ms, b1, sizeof(b1)));
	for (k = 0; k < s->nreplies; k++)
		if (s->replies[k].kind == REPLY_RETRY)
			app(what, sizeof(what), "; %s retries",
			    s->replies[k].type);
	app(what, sizeof(what), ")");
	plan_point(p, what, idx, s->exhausted_target);
}

/* A step: in the failure pass its failure points; then, with the step
 * on the completed stack if it has a compensation, each success reply's
 * target (replies to one target as one edge, "a|b"). */
static void
plan_step(struct plan *p, const struct chart_state *s, int idx)
{
	char label[TEXT_MAX / 4];
	bool pushed = false;
	size_t i;

	if (p->failures)
		plan_step_failures(p, s, idx);
	if (s->compensate != NULL) {
		p->stack_visit[p->nstack] = p->on_path[idx];
		p->stack[p->nstack++] = idx;
		pushed = true;
	}
	for (i = 0; i < s->nreplies; i++) {
		if (s->replies[i].kind != REPLY_GOTO ||
		    !reply_group_first(s, i))
			continue;
		label[0] = '\0';
		reply_group_text(s, i, "|", label, sizeof(label));
		plan_follow(p, label, s->replies[i].target);
	}
	if (pushed)
		p->nstack--;
}

static void
plan_walk(struct plan *p, int state)
{
	const struct chart *c = p->c;
	const struct chart_state *s = &c->states[state];
	char label[TEXT_MAX / 4], what[TEXT_MAX];
	size_t i;

	if (p->cut)
		return;
	p->path[p->depth++] = state;
	p->on_path[state]++;
	switch (s->type) {
	case STATE_STEP:
		plan_step(p, s, state);
		break;
	case STATE_CHOICE:
		for (i = 0; i < s->nbranches; i++) {
			const struct chart_branch *b = &s->branches[i];
			guard_text(b, " && ", label, sizeof(label));
			if (b->kind == REPLY_FAIL) {
				if (!p->failures)
					continue;
				snprintf(what, sizeof(what), "%s: branch %s",
				         s->name, label);
				plan_point(p, what, -1, b->target);
			} else {
				plan_follow(p, label, b->target);
			}
		}
		plan_follow(p, "default", s->default_target);
		break;
	case STATE_WAIT:
		plan_follow(p, "wait", s->next);
		break;
	case STATE_PARALLEL:
		plan_follow(p, "fork: branch 1", s->fork[0]);
		break;
	case STATE_FINAL:
		if (!p->failures && p->count < CHART_PLAN_MAX_POINTS) {
			p->count++;
			fprintf(p->out, "%3d. ", p->count);
			plan_path(p);
			fputs("\n", p->out);
		}
		break;
	}
	p->on_path[state]--;
	p->depth--;
}

/* Where a customer's cancel is accepted, and where it ends. */
static void
plan_cancel(FILE *out, const struct chart *c)
{
	fputs("\ncancel (POST /orders/{id}/cancel):\n", out);
	if (c->ncancel_in == 0 || c->cancel_final < 0) {
		fputs("  refused in every state (no \"cancel:\")\n", out);
		return;
	}
	fputs("  accepted in:  ", out);
	for (size_t i = 0; i < c->ncancel_in; i++)
		fprintf(out, "%s%s", i > 0 ? ", " : "",
		        sname(c, c->cancel_in[i]));
	fprintf(out,
	        "\n  then:         a step in flight counts as done (outcome "
	        "unknown); what was done is compensated, newest first\n"
	        "  final:        %s (status cancelled)\n"
	        "  anywhere else: refused, with the state, and nothing "
	        "changes\n",
	        sname(c, c->cancel_final));
}

/* The end of a pass: "(none)", or what was cut. */
static void
plan_end(struct plan *p)
{
	if (p->count == 0)
		fputs("  (none)\n", p->out);
	if (p->cut)
		fprintf(p->out,
		        "  ... more than %d points or a path longer than %d "
		        "states: the rest is not listed\n",
		        CHART_PLAN_MAX_POINTS, PLAN_DEPTH_MAX);
	p->cut = false;
}

int
chart_plan(FILE *out, const struct chart *c)
{
	struct plan p = {.out = out, .c = c};
	size_t n = PLAN_DEPTH_MAX;
	int rc = -1;

	p.path = calloc(n, sizeof(*p.path));
	p.how = calloc(n, sizeof(*p.how));
	p.refused = calloc(n, sizeof(*p.refused));
	p.on_path = calloc(c->nstates + 1, sizeof(*p.on_path));
	p.stack = calloc(n, sizeof(*p.stack));
	p.stack_visit = calloc(n, sizeof(*p.stack_visit));
	if (p.path == NULL || p.how == NULL || p.on_path == NULL ||
	    p.stack == NULL || p.refused == NULL || p.stack_visit == NULL)
		goto out;
	fprintf(out, "saga %s, version %s, initial %s\n\nsuccess paths:\n",
	        c->name, c->version, sname(c, c->initial));
	plan_walk(&p, c->initial);
	plan_end(&p);
	fputs("\nfailure points (compensations run in the order listed):\n",
	      out);
	p.failures = true;
	p.count = 0;
	plan_walk(&p, c->initial);
	plan_end(&p);
	plan_cancel(out, c);
	rc = ferror(out) ? -1 : 0;
out:
	free(p.path);
	free(p.how);
	free(p.refused);
	free(p.on_path);
	free(p.stack);
	free(p.stack_visit);
	return rc;
}

/* ---- simulate: orders ---- */

static int
put_default(struct value *order, const struct chart_field *f)
{
	const char *last = strrchr(f->path, '.');
	struct value v = VALUE_NIL_INIT, item = VALUE_NIL_INIT;
	char buf[CHART_NAME_MAX + 8];
	size_t n;
	int rc = 0;

	last = last != NULL ? last + 1 : f->path;
	n = strlen(last);
	switch (f->type) {
	case FIELD_STRING:
		if (strcmp(last, "payment_method") == 0)
			snprintf(buf, sizeof(buf), "card");
		else if (n >= 7 && strcmp(last + n - 7, "country") == 0)
			snprintf(buf, sizeof(buf), "india");
		else if (n >= 8 && strcmp(last + n - 8, "currency") == 0)
			snprintf(buf, sizeof(buf), "INR");
		else if (strcmp(last, "category") == 0)
			snprintf(buf, sizeof(buf), "electronics");
		else if (n > 3 && strcmp(last + n - 3, "_id") == 0)
			snprintf(buf, sizeof(buf), "%.*s-1", (int)(n - 3),
			         last);
		else
			snprintf(buf, sizeof(buf), "%s-1", last);
		rc = value_set_str(&v, buf);
		break;
	case FIELD_INTEGER:
		value_set_int(&v, 1999);
		break;
	case FIELD_NUMBER:
		value_set_float(&v, 19.99);
		break;
	case FIELD_BOOLEAN:
		value_set_bool(&v, true);
		break;
	case FIELD_LIST:
		value_set_array(&v);
		if (strcmp(last, "items") == 0) {
			value_set_map(&item);
			rc = value_map_put_str(&item, "sku", "sku-1");
			if (rc == 0)
				rc = value_map_put_int(&item, "qty", 1);
		} else {
			snprintf(buf, sizeof(buf), "%s-1", last);
			rc = value_set_str(&item, buf);
		}
		if (rc == 0)
			rc = value_array_push(&v, &item);
		break;
	case FIELD_MAP:
		if (value_path_get(order, f->path) != NULL)
			return 0; /* made by a sub-field declared before */
		value_set_map(&v);
		break;
	}
	if (rc == 0)
		rc = value_path_put(order, f->path, &v);
	value_clear(&v);
	value_clear(&item);
	return rc;
}

int
chart_sim_default_order(const struct chart *c, struct value *order)
{
	size_t i;

	value_set_map(order);
	for (i = 0; i < c->nfields; i++) {
		if (value_path_get(order, c->fields[i].path) != NULL)
			continue;
		if (put_default(order, &c->fields[i]) != 0) {
			value_clear(order);
			return -1;
		}
	}
	return 0;
}

static bool
plain_int(const char *s)
{
	if (*s == '-')
		s++;
	if (!isdigit((unsigned char)*s))
		return false;
	while (isdigit((unsigned char)*s))
		s++;
	return *s == '\0';
}

static bool
plain_float(const char *s)
{
	char *end;

	if (*s == '\0' || isspace((unsigned char)*s))
		return false;
	errno = 0;
	(void)strtod(s, &end);
	return *end == '\0' && errno == 0 && strpbrk(s, ".eE") != NULL;
}

static int order_node(yaml_document_t *d, yaml_node_t *n, int depth,
                      struct value *out, char *err, size_t errlen);

static int
order_scalar(yaml_node_t *n, struct value *out, char *err, size_t errlen)
{
	const char *s = (const char *)n->data.scalar.value;

	if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return value_set_str(out, s);
	if (plain_int(s)) {
		errno = 0;
		long long v = strtoll(s, NULL, 10);
		if (errno != 0) {
			snprintf(err, errlen, "integer %s out of range", s);
			return -1;
		}
		value_set_int(out, v);
	} else if (plain_float(s)) {
		value_set_float(out, strtod(s, NULL));
	} else if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
		value_set_bool(out, s[0] == 't');
	} else if (strcmp(s, "null") == 0 || strcmp(s, "~") == 0 || !*s) {
		value_set_nil(out);
	} else {
		return value_set_str(out, s);
	}
	return 0;
}

static int
order_node(yaml_document_t *d, yaml_node_t *n, int depth, struct value *out,
           char *err, size_t errlen)
{
	struct value v = VALUE_NIL_INIT;

	value_set_nil(out);
	if (n == NULL || depth > 32) {
		snprintf(err, errlen, "order nested too deep");
		return -1;
	}
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return order_scalar(n, out, err, errlen);
	case YAML_SEQUENCE_NODE: {
		yaml_node_item_t *it;
		value_set_array(out);
		for (it = n->data.sequence.items.start;
		     it < n->data.sequence.items.top; it++) {
			if (order_node(d, yaml_document_get_node(d, *it),
			               depth + 1, &v, err, errlen) != 0 ||
			    value_array_push(out, &v) != 0)
				goto bad;
		}
		return 0;
	}
	case YAML_MAPPING_NODE: {
		yaml_node_pair_t *pr;
		value_set_map(out);
		for (pr = n->data.mapping.pairs.start;
		     pr < n->data.mapping.pairs.top; pr++) {
			yaml_node_t *k = yaml_document_get_node(d, pr->key);
			const char *key;
			if (k == NULL || k->type != YAML_SCALAR_NODE) {
				snprintf(err, errlen,
				         "order: a key is not a string");
				goto bad;
			}
			key = (const char *)k->data.scalar.value;
			if (value_map_get(out, key) != NULL) {
				snprintf(err, errlen,
				         "order: duplicate key \"%s\"", key);
				goto bad;
			}
			if (order_node(d, yaml_document_get_node(d, pr->value),
			               depth + 1, &v, err, errlen) != 0 ||
			    value_map_put(out, key, &v) != 0)
				goto bad;
		}
		return 0;
	}
	default:
		break;
	}
	snprintf(err, errlen, "order: unexpected YAML node");
bad:
	if (err[0] == '\0')
		snprintf(err, errlen, "out of memory");
	value_clear(&v);
	value_clear(out);
	return -1;
}

int
chart_sim_parse_order(const char *text, struct value *order, char *err,
                      size_t errlen)
{
	yaml_parser_t p;
	yaml_document_t d;
	yaml_node_t *root;
	int rc = -1;

	value_set_nil(order);
	if (errlen > 0)
		err[0] = '\0';
	if (!yaml_parser_initialize(&p)) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	yaml_parser_set_input_string(&p, (const unsigned char *)text,
	                             strlen(text));
	if (!yaml_parser_load(&p, &d)) {
		snprintf(err, errlen, "order: %s at line %zu column %zu",
		         p.problem ? p.problem : "invalid YAML/JSON",
		         p.problem_mark.line + 1, p.problem_mark.column + 1);
		yaml_parser_delete(&p);
		return -1;
	}
	root = yaml_document_get_root_node(&d);
	if (root == NULL || root->type != YAML_MAPPING_NODE)
		snprintf(err, errlen,
		         "order: expected a map like "
		         "{total_cents: 60000, payment_method: "
		         "cod}");
	else
		rc = order_node(&d, root, 0, order, err, errlen);
	yaml_document_delete(&d);
	yaml_parser_delete(&p);
	return rc;
}

/* ---- simulate: script ---- */

enum sim_kind {
	SIM_REPLY,     /* deliver `reply` */
	SIM_TIMEOUT,   /* let the attempt's timer fire */
	SIM_AWAY,      /* the timer fires while nobody takes the command */
	SIM_UNDO_FAIL, /* every undo attempt times out */
};

struct sim_item {
	char key[CHART_NAME_MAX + 8];   /* state, or state.undo */
	char text[CHART_TYPE_MAX + 16]; /* as written, for the timeline */
	enum sim_kind kind;
	const char *reply; /* a reply type in the chart (borrowed) */
	int left;          /* times still to deliver */
	bool used;
};

struct sim {
	FILE *out;
	const struct chart *c;
	struct sim_item *items;
	size_t nitems;
	char *err;
	size_t errlen;
	int64_t *sent_at;              /* per state: its last command's time */
	char par_id[ENGINE_MSGID_MAX]; /* the id a parallel reply answers */
};

static void sim_err(struct sim *m, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void
sim_err(struct sim *m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m->err, m->errlen, fmt, ap);
	va_end(ap);
}

/* Matches `want` against a reply type: in full, or its last part. */
static bool
type_matches(const char *type, const char *want)
{
	const char *dot = strrchr(type, '.');

	return strcmp(type, want) == 0 ||
	       (dot != NULL && strcmp(dot + 1, want) == 0);
}

static void
list_types(char **types, size_t n, char *buf, size_t cap)
{
	size_t i;

	buf[0] = '\0';
	for (i = 0; i < n; i++)
		app(buf, cap, "%s%s", i > 0 ? ", " : "", types[i]);
}

/* The reply a command gets when the script says nothing: ok. */
static const char *
default_ok(const struct chart_state *st, bool undo)
{
	size_t i;

	if (undo)
		return st->compensate->ok[0];
	for (i = 0; i < st->nreplies; i++)
		if (st->replies[i].kind == REPLY_GOTO)
			return st->replies[i].type;
	return NULL; /* the validator requires one */
}

/* Resolves the outcomes that are words: timeout, away, ok, fail. Returns
 * 0, -1 with the error in m, or 1 when `what` is none of them (or is ok
 * for a step with no success reply): it names a reply type then. */
static int
sim_keyword(struct sim *m, struct sim_item *it, const struct chart_state *s,
            bool undo, const char *what)
{
	size_t i;

	if (strcmp(what, "timeout") == 0 || strcmp(what, "away") == 0) {
		it->kind = what[0] == 't' ? SIM_TIMEOUT : SIM_AWAY;
		return 0;
	}
	if (strcmp(what, "ok") == 0) {
		it->kind = SIM_REPLY;
		it->reply = default_ok(s, undo);
		return it->reply != NULL ? 0 : 1;
	}
	if (strcmp(what, "fail") != 0)
		return 1;
	if (undo) {
		it->kind = SIM_UNDO_FAIL;
		return 0;
	}
	it->kind = SIM_REPLY;
	for (i = 0; i < s->nreplies; i++)
		if (s->replies[i].kind == REPLY_FAIL) {
			it->reply = s->replies[i].type;
			return 0;
		}
	sim_err(m,
	        "script: %s: step %s has no {fail: X} reply (use "
	        "timeout xN to exhaust its attempts)",
	        it->text, s->name);
	return -1;
}

/* Into names (at most cap), the reply types an outcome may name: the
 * step's replies, or its undo's ok replies. Returns the count. */
static size_t
sim_reply_names(const struct chart_state *s, bool undo, char **names,
                size_t cap)
{
	size_t n = 0, i;

	if (undo) {
		for (i = 0; i < s->compensate->nok && n < cap; i++)
			names[n++] = s->compensate->ok[i];
	} else {
		for (i = 0; i < s->nreplies && n < cap; i++)
			names[n++] = s->replies[i].type;
	}
	return n;
}

/* The reply type `what` names among names: one equal to it, else every
 * one whose last part it is. Returns how many matched, the last in
 * *found. */
static int
sim_match(char **names, size_t n, const char *what, const char **found)
{
	int matches = 0;
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(names[i], what) == 0) {
			*found = names[i];
			return 1;
		}
	for (i = 0; i < n; i++)
		if (type_matches(names[i], what)) {
			*found = names[i];
			matches++;
		}
	return matches;
}

/* The error for an outcome that names no reply type of s, or several
 * (matches): the types there are, and the closest one to a typo. */
static void
sim_no_reply(struct sim *m, const struct sim_item *it,
             const struct chart_state *s, bool undo, const char *what,
             char **names, size_t n, int matches)
{
	char list[TEXT_MAX];
	struct chart_near near;
	size_t i;

	list_types(names, n, list, sizeof(list));
	chart_near_init(&near, what);
	for (i = 0; i < n; i++) {
		const char *dot = strrchr(names[i], '.');
		chart_near_try(&near, names[i]);
		if (dot != NULL && strchr(what, '.') == NULL)
			chart_near_try(&near, dot + 1);
	}
	sim_err(m, "script: %s: %s \"%s\" for %s (%s%s%s)%s%s%s", it->text,
	        matches > 1 ? "ambiguous reply" : "no reply", what,
	        undo ? "its undo" : s->name,
	        undo ? "ok replies: " : "replies: ", list,
	        ", or ok, fail, timeout, away",
	        near.best != NULL && matches == 0 ? "; did you mean \"" : "",
	        near.best != NULL && matches == 0 ? near.best : "",
	        near.best != NULL && matches == 0 ? "\"?" : "");
}

/* Resolves item->text's outcome for step s (undo or not). */
static int
sim_resolve(struct sim *m, struct sim_item *it, const struct chart_state *s,
            bool undo, const char *what)
{
	char *names[64];
	size_t n = sim_reply_names(s, undo, names, 64);
	const char *found = NULL;
	int rc = sim_keyword(m, it, s, undo, what);

	if (rc <= 0)
		return rc;
	rc = sim_match(names, n, what, &found);
	if (rc == 1) {
		it->kind = SIM_REPLY;
		it->reply = found;
		return 0;
	}
	sim_no_reply(m, it, s, undo, what, names, n, rc);
	return -1;
}

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

static int
sim_parse_item(struct sim *m, struct sim_item *it, char *text)
{
	char *eq, *key, *what, *sp, *end;
	const struct chart_state *s;
	bool undo = false;
	long times = 1;
	int idx;
	size_t kl;

	memset(it, 0, sizeof(*it));
	text = trim(text);
	snprintf(it->text, sizeof(it->text), "%s", text);
	eq = strchr(text, '=');
	if (eq == NULL) {
		sim_err(m, "script: \"%s\": expected STEP=OUTCOME", text);
		return -1;
	}
	*eq = '\0';
	key = trim(text);
	what = trim(eq + 1);
	/* a trailing " xN" repeats */
	sp = strrchr(what, ' ');
	if (sp != NULL && sp[1] == 'x' && isdigit((unsigned char)sp[2])) {
		errno = 0;
		times = strtol(sp + 2, &end, 10);
		if (*end != '\0' || errno != 0 || times < 1 || times > 1000) {
			sim_err(m, "script: %s: bad repeat \"%s\" (x1..x1000)",
			        it->text, sp + 1);
			return -1;
		}
		*sp = '\0';
		what = trim(what);
	}
	kl = strlen(key);
	if (kl > 5 && strcmp(key + kl - 5, ".undo") == 0) {
		undo = true;
		key[kl - 5] = '\0';
	}
	idx = chart_state_index(m->c, key);
	if (idx < 0 || m->c->states[idx].type != STATE_STEP) {
		sim_err(m, "script: %s: \"%s\" is not a step of chart %s",
		        it->text, key, m->c->name);
		return -1;
	}
	s = &m->c->states[idx];
	if (undo && s->compensate == NULL) {
		sim_err(m, "script: %s: step %s has no compensation", it->text,
		        key);
		return -1;
	}
	if (*what == '\0') {
		sim_err(m, "script: %s: no outcome after '='", it->text);
		return -1;
	}
	snprintf(it->key, sizeof(it->key), "%s%s", key, undo ? ".undo" : "");
	it->left = (int)times;
	return sim_resolve(m, it, s, undo, what);
}

static int
sim_parse_script(struct sim *m, const char *script)
{
	const char *q;
	char *copy, *p, *comma;
	size_t n = 1;

	if (script == NULL)
		return 0;
	for (q = script; *q; q++)
		if (*q == ',')
			n++;
	m->items = calloc(n, sizeof(*m->items));
	copy = strdup(script);
	if (m->items == NULL || copy == NULL) {
		free(copy);
		sim_err(m, "out of memory");
		return -1;
	}
	for (p = copy;; p = comma + 1) {
		comma = strchr(p, ',');
		if (comma != NULL)
			*comma = '\0';
		if (*trim(p) != '\0') {
			if (sim_parse_item(m, &m->items[m->nitems], p) != 0) {
				free(copy);
				return -1;
			}
			m->nitems++;
		}
		if (comma == NULL)
			break;
	}
	free(copy);
	return 0;
}

/* ---- simulate: the run ---- */

static struct sim_item *
sim_next(struct sim *m, const char *key)
{
	size_t i;

	for (i = 0; i < m->nitems; i++)
		if (m->items[i].left > 0 && strcmp(m->items[i].key, key) == 0)
			return &m->items[i];
	return NULL;
}

static const char *
vtime(int64_t ms, char *buf, size_t cap)
{
	snprintf(buf, cap, "%" PRId64 ".%03ds", ms / 1000, (int)(ms % 1000));
	return buf;
}

/* A plausible value for a saved reply field: "charge_id" -> "charge-1". */
static int
put_saved(struct value *reply, const char *field)
{
	char buf[CHART_NAME_MAX + 8];
	size_t n = strlen(field);

	if (n > 3 && strcmp(field + n - 3, "_id") == 0)
		snprintf(buf, sizeof(buf), "%.*s-1", (int)(n - 3), field);
	else
		snprintf(buf, sizeof(buf), "%s-1", field);
	return value_map_put_str(reply, field, buf);
}

static void sim_print_branches(struct sim *m, const struct saga *s);

static void
sim_print(struct sim *m, int64_t now, const char *event, const struct saga *s,
          const struct engine_output *o)
{
	FILE *f = m->out;
	char t[32];
	size_t i;

	fprintf(f, "%10s  %s\n", vtime(now, t, sizeof(t)), event);
	fprintf(f, "%12s%s: %s\n", "", engine_result_name(o->result), o->note);
	fprintf(f, "%12s=> %s (%s", "", sname(m->c, s->state),
	        saga_status_name(s->status));
	if (s->phase != PHASE_NONE)
		fprintf(f, ", %s", saga_phase_name(s->phase));
	if (s->attempt > 0 && s->phase != PHASE_NONE)
		fprintf(f, ", attempt %d", s->attempt);
	fputs(")\n", f);
	sim_print_branches(m, s);
	for (i = 0; i < o->nactions; i++) {
		const struct engine_action *a = &o->actions[i];
		switch (a->type) {
		case ACT_SEND:
			fprintf(f, "%12ssend    %s%s -> %s", "",
			        a->compensation ? "undo " : "", a->command,
			        a->to);
			if (a->route[0])
				fprintf(f, " [%s]", a->route);
			fprintf(f, "  id %s\n", a->message_id);
			break;
		case ACT_EMIT:
			fprintf(f, "%12semit    %s\n", "", a->event);
			break;
		case ACT_SET_TIMER:
			fprintf(f, "%12stimer   #%" PRId64 " at %s\n", "",
			        a->timer_seq,
			        vtime(a->fire_at_ms, t, sizeof(t)));
			break;
		case ACT_CANCEL_TIMER:
			fprintf(f, "%12scancel  timer\n", "");
			break;
		case ACT_FINISH:
			fprintf(f, "%12sfinish  %s\n", "",
			        saga_status_name(a->status));
			break;
		}
	}
}

/* Uses up one delivery of a script item. */
static void
sim_use(struct sim_item *it)
{
	it->used = true;
	it->left--;
}

/* The saga's timer fires: the virtual clock moves to it. */
static void
sim_at_timer(const struct saga *s, int64_t *now, struct engine_event *ev)
{
	*now = s->timer_at_ms;
	ev->now_ms = *now;
}

/* The type of the reply a command of st gets: the script item's, else
 * ok. NULL, with the error in m, when st has no success reply. */
static const char *
sim_reply_type(struct sim *m, const struct sim_item *it,
               const struct chart_state *st, bool undo)
{
	const char *type = it != NULL ? it->reply : default_ok(st, undo);

	if (type == NULL)
		sim_err(m, "step %s has no success reply", st->name);
	return type;
}

/* Makes reply the payload of a reply to a command of st: a plausible
 * value for each field st saves (none for an undo). -1 with the error in
 * m on out of memory. */
static int
sim_payload(struct sim *m, const struct chart_state *st, bool undo,
            struct value *reply)
{
	size_t i;

	value_set_map(reply);
	for (i = 0; !undo && i < st->nsave; i++)
		if (put_saved(reply, st->save[i]) != 0) {
			sim_err(m, "out of memory");
			return -1;
		}
	return 0;
}

/* Makes ev the reply `type` to message `to` at now, with payload reply,
 * and text its timeline line (it: the script item, NULL if unscripted). */
static void
sim_reply_event(struct engine_event *ev, int64_t now, const char *type,
                const char *to, const struct value *reply,
                const struct sim_item *it, char *text, size_t cap)
{
	ev->type = EV_REPLY;
	ev->now_ms = now;
	ev->reply_type = type;
	ev->in_reply_to = to;
	ev->payload = reply;
	snprintf(text, cap, "REPLY %s to %s  [%s]", type, to,
	         it != NULL ? it->text : "unscripted: ok");
}

/* A scripted timeout, outage or failing undo (it) of the outstanding
 * command: its timer fires. An undo's fail is never used up. */
static void
sim_timeout_item(const struct saga *s, struct sim_item *it,
                 const char *outstanding, int64_t *now, struct engine_event *ev,
                 char *text, size_t cap)
{
	it->used = true;
	if (it->kind != SIM_UNDO_FAIL)
		it->left--;
	sim_at_timer(s, now, ev);
	ev->absent = it->kind == SIM_AWAY;
	snprintf(text, cap, "TIMEOUT #%" PRId64 ": %s %s  [%s]", s->timer_seq,
	         ev->absent ? "nobody took (participant away)" : "no reply to",
	         outstanding, it->text);
}

/* Chooses the next event for a saga that waits; fills ev, *now, text and
 * reply (the payload). */
static int sim_parallel_event(struct sim *m, const struct saga *s,
                              int64_t latency, int64_t *now,
                              struct engine_event *ev, struct value *reply,
                              char *text, size_t cap);

static int
sim_next_event(struct sim *m, const struct saga *s, const char *outstanding,
               int64_t latency, int64_t *now, struct engine_event *ev,
               struct value *reply, char *text, size_t cap)
{
	const struct chart_state *st = &m->c->states[s->state];
	bool undo = s->status == SAGA_COMPENSATING;
	char key[CHART_NAME_MAX + 8];
	struct sim_item *it;
	const char *type;

	memset(ev, 0, sizeof(*ev));
	ev->type = EV_TIMEOUT;
	ev->timer_seq = s->timer_seq;
	if (s->phase == PHASE_PARALLEL)
		return sim_parallel_event(m, s, latency, now, ev, reply, text,
		                          cap);
	if (s->phase != PHASE_AWAIT) {
		sim_at_timer(s, now, ev);
		snprintf(text, cap, "TIMER #%" PRId64 " (%s over)",
		         s->timer_seq,
		         s->phase == PHASE_WAIT ? "wait" : "backoff");
		return 0;
	}
	snprintf(key, sizeof(key), "%s%s", st->name, undo ? ".undo" : "");
	it = sim_next(m, key);
	if (it != NULL && it->kind != SIM_REPLY) {
		sim_timeout_item(s, it, outstanding, now, ev, text, cap);
		return 0;
	}
	type = sim_reply_type(m, it, st, undo);
	if (type == NULL)
		return -1;
	if (*now + latency >= s->timer_at_ms) {
		char t[32];
		sim_at_timer(s, now, ev);
		snprintf(text, cap,
		         "TIMEOUT #%" PRId64 ": the reply %s to %s would come "
		         "after %s",
		         s->timer_seq, type, outstanding,
		         vtime(s->timer_at_ms, t, sizeof(t)));
		return 0;
	}
	if (it != NULL)
		sim_use(it);
	if (sim_payload(m, st, undo, reply) != 0)
		return -1;
	*now += latency;
	sim_reply_event(ev, *now, type, outstanding, reply, it, text, cap);
	return 0;
}

/* ---- simulate: parallel states ----
 *
 * In a parallel state several commands are outstanding at once. Each
 * gets its scripted outcome by its own step name, as outside: a reply
 * comes latency_ms after that command was sent (sent_at), a timeout lets
 * the branch's timer fire. The earliest reply is delivered unless the
 * saga's timer (the earliest branch time) comes first; a TIMEOUT then
 * uses up the timeout items of every branch due. */

static void
sim_sent(struct sim *m, const struct engine_action *a, int64_t now)
{
	int i = chart_state_index(m->c, a->step);

	if (i >= 0 && m->sent_at != NULL)
		m->sent_at[i] = now;
}

/* The branch whose scripted reply comes first, before its own timer and
 * the saga's; -1 if the saga's timer comes first. */
static int
sim_first_reply(struct sim *m, const struct saga *s, int64_t latency)
{
	int64_t best_at = s->timer_at_ms;
	int best = -1;
	size_t k;

	for (k = 0; k < s->nbranches; k++) {
		const struct saga_branch *b = &s->branches[k];
		const struct sim_item *it;
		int64_t at;

		if (b->phase != PHASE_AWAIT)
			continue;
		it = sim_next(m, m->c->states[b->state].name);
		if (it != NULL && it->kind != SIM_REPLY)
			continue;
		at = m->sent_at[b->state] + latency;
		if (at < b->timer_at_ms && at < best_at) {
			best = (int)k;
			best_at = at;
		}
	}
	return best;
}

/* The saga's timer fires: every branch due uses up its timeout item. */
static void
sim_parallel_timer(struct sim *m, const struct saga *s, int64_t *now,
                   struct engine_event *ev, char *text, size_t cap)
{
	size_t k;

	sim_at_timer(s, now, ev);
	snprintf(text, cap, "TIMER #%" PRId64 " (branches due:", s->timer_seq);
	for (k = 0; k < s->nbranches; k++) {
		const struct saga_branch *b = &s->branches[k];
		const char *name = m->c->states[b->state].name;
		struct sim_item *it;

		if (b->phase == PHASE_NONE || b->timer_at_ms > *now)
			continue;
		app(text, cap, " %s %s", name,
		    b->phase == PHASE_AWAIT ? "timeout" : "backoff over");
		it = b->phase == PHASE_AWAIT ? sim_next(m, name) : NULL;
		if (it != NULL && it->kind != SIM_REPLY) {
			sim_use(it);
			ev->absent |= it->kind == SIM_AWAY;
			app(text, cap, " [%s]", it->text);
		}
	}
	app(text, cap, ")");
}

/* The next event of a saga in a parallel state. */
static int
sim_parallel_event(struct sim *m, const struct saga *s, int64_t latency,
                   int64_t *now, struct engine_event *ev, struct value *reply,
                   char *text, size_t cap)
{
	const struct saga_branch *b;
	const struct chart_state *st;
	struct sim_item *it;
	const char *type;
	int k = sim_first_reply(m, s, latency);

	if (k < 0) {
		sim_parallel_timer(m, s, now, ev, text, cap);
		return 0;
	}
	b = &s->branches[k];
	st = &m->c->states[b->state];
	it = sim_next(m, st->name);
	type = sim_reply_type(m, it, st, false);
	if (type == NULL)
		return -1;
	if (it != NULL)
		sim_use(it);
	if (sim_payload(m, st, false, reply) != 0)
		return -1;
	engine_message_id(m->par_id, sizeof(m->par_id), s->id, st->name,
	                  s->visits[b->state], false, b->attempt);
	*now = m->sent_at[b->state] + latency;
	sim_reply_event(ev, *now, type, m->par_id, reply, it, text, cap);
	return 0;
}

/* The branches of a parallel state, after the state line. */
static void
sim_print_branches(struct sim *m, const struct saga *s)
{
	size_t k;

	for (k = 0; k < s->nbranches; k++) {
		const struct saga_branch *b = &s->branches[k];

		if (b->phase == PHASE_NONE)
			fprintf(m->out, "%14sbranch %zu: joined\n", "", k + 1);
		else
			fprintf(m->out, "%14sbranch %zu: %s (%s, attempt %d)\n",
			        "", k + 1, sname(m->c, b->state),
			        saga_phase_name(b->phase), b->attempt);
	}
}

static void
sim_summary(struct sim *m, const struct saga *s, int64_t now, int events)
{
	FILE *f = m->out;
	char t[32];
	size_t i;

	fputs("\n", f);
	if (saga_status_final(s->status))
		fprintf(f, "final: %s in state %s at %s after %d events\n",
		        saga_status_name(s->status), sname(m->c, s->state),
		        vtime(now, t, sizeof(t)), events);
	else if (s->status == SAGA_STUCK)
		fprintf(f,
		        "not final: stuck undoing %s at %s after %d events "
		        "(an operator must act: resume, skip or "
		        "mark-compensated)\n",
		        sname(m->c, s->state), vtime(now, t, sizeof(t)),
		        events);
	else
		fprintf(f, "not final: %s in state %s at %s after %d events\n",
		        saga_status_name(s->status), sname(m->c, s->state),
		        vtime(now, t, sizeof(t)), events);
	for (i = 0; i < m->nitems; i++)
		if (m->items[i].kind != SIM_UNDO_FAIL && m->items[i].left > 0)
			fprintf(f, "script: %s: %d left unused\n",
			        m->items[i].text, m->items[i].left);
		else if (m->items[i].kind == SIM_UNDO_FAIL && !m->items[i].used)
			fprintf(f, "script: %s: never used\n",
			        m->items[i].text);
}

/* Gets a run ready: the per-state send times, the script, the order
 * (o's, else the default one) and the saga's id (the order's order_id, if
 * any). Returns 0; -2 for a bad script or an order that is not a map, -1
 * on out of memory, with the error in m. */
static int
sim_setup(struct sim *m, const struct chart_sim_options *o, struct value *order,
          struct saga *s)
{
	const struct value *oid;

	m->sent_at = calloc(m->c->nstates + 1, sizeof(*m->sent_at));
	if (m->sent_at == NULL) {
		sim_err(m, "out of memory");
		return -1;
	}
	if (sim_parse_script(m, o->script) != 0)
		return -2;
	if (o->order != NULL ? value_copy(order, o->order)
	                     : chart_sim_default_order(m->c, order)) {
		sim_err(m, "out of memory");
		return -1;
	}
	if (order->type != VALUE_MAP) {
		sim_err(m, "the order is not a map");
		return -2;
	}
	oid = value_map_get(order, "order_id");
	if (oid != NULL && oid->type == VALUE_STR && oid->u.s.len > 0) {
		saga_clear(s);
		saga_init(s, oid->u.s.ptr);
	}
	return 0;
}

/* The timeline's head: chart, version, latency, and the order. */
static void
sim_header(struct sim *m, int64_t latency, const struct value *order)
{
	char text[TEXT_MAX], t[32];

	text[0] = '\0';
	value_text(order, text, sizeof(text));
	fprintf(m->out, "saga %s, version %s; virtual time; replies after %s\n",
	        m->c->name, m->c->version, vtime(latency, t, sizeof(t)));
	fprintf(m->out, "order %s\n\n", text);
}

/* Notes the commands an engine step sent: their send time, and the last
 * one's id in outstanding. */
static void
sim_note_sends(struct sim *m, const struct engine_output *eo, int64_t now,
               char *outstanding, size_t cap)
{
	size_t i;

	for (i = 0; i < eo->nactions; i++)
		if (eo->actions[i].type == ACT_SEND) {
			snprintf(outstanding, cap, "%s",
			         eo->actions[i].message_id);
			sim_sent(m, &eo->actions[i], now);
		}
}

/* Feeds the engine START with the order, then the saga's next event,
 * printing each, until the saga is final, waits for nothing, or has had
 * o's max_events. Returns 0, or -1 with the error in m. */
static int
sim_run(struct sim *m, struct saga *s, const struct value *order,
        const struct chart_sim_options *o, int64_t *now, int *events)
{
	struct value reply = VALUE_NIL_INIT;
	struct engine_event ev;
	struct engine_output eo;
	char outstanding[ENGINE_MSGID_MAX] = "", text[TEXT_MAX], t[32];
	int max = o->max_events > 0 ? o->max_events : 1000;
	int rc = -1;

	memset(&eo, 0, sizeof(eo));
	memset(&ev, 0, sizeof(ev));
	ev.type = EV_START;
	ev.payload = order;
	snprintf(text, sizeof(text), "START %s", s->id);
	for (;;) {
		engine_step(m->c, s, &ev, &eo);
		(*events)++;
		sim_print(m, *now, text, s, &eo);
		sim_note_sends(m, &eo, *now, outstanding, sizeof(outstanding));
		if (eo.result == ENGINE_ERROR) {
			sim_err(m, "engine error at %s: %s",
			        vtime(*now, t, sizeof(t)), eo.note);
			break;
		}
		engine_output_clear(&eo);
		value_clear(&reply);
		if (saga_status_final(s->status) || s->phase == PHASE_NONE ||
		    *events >= max) {
			rc = 0;
			break;
		}
		if (sim_next_event(m, s, outstanding, o->latency_ms, now, &ev,
		                   &reply, text, sizeof(text)) != 0)
			break;
	}
	engine_output_clear(&eo);
	value_clear(&reply);
	return rc;
}

/* Whether a script item was left over: a reply or timeout not delivered
 * as often as written, or an undo's fail never used. */
static bool
sim_item_unused(const struct sim_item *it)
{
	return it->kind == SIM_UNDO_FAIL ? !it->used : it->left > 0;
}

/* Fills res from the saga at the end of the run. */
static void
sim_result(const struct sim *m, const struct saga *s, int64_t now, int events,
           struct chart_sim_result *res)
{
	size_t i;

	res->status = s->status;
	snprintf(res->state, sizeof(res->state), "%s", sname(m->c, s->state));
	res->events = events;
	res->end_ms = now;
	res->unused_items = 0;
	for (i = 0; i < m->nitems; i++)
		if (sim_item_unused(&m->items[i]))
			res->unused_items++;
}

int
chart_simulate(FILE *out, const struct chart *c,
               const struct chart_sim_options *o, struct chart_sim_result *res,
               char *err, size_t errlen)
{
	struct sim m = {.out = out, .c = c, .err = err, .errlen = errlen};
	struct value order = VALUE_NIL_INIT;
	struct saga s;
	int64_t now = 0;
	int events = 0;
	int rc;

	if (errlen > 0)
		err[0] = '\0';
	saga_init(&s, "sim");
	rc = sim_setup(&m, o, &order, &s);
	if (rc != 0)
		goto out;
	sim_header(&m, o->latency_ms, &order);
	rc = -1;
	if (sim_run(&m, &s, &order, o, &now, &events) != 0)
		goto out;
	sim_summary(&m, &s, now, events);
	if (res != NULL)
		sim_result(&m, &s, now, events, res);
	if (ferror(out)) {
		sim_err(&m, "write error");
		goto out;
	}
	rc = saga_status_final(s.status) ? 0 : 1;
out:
	value_clear(&order);
	saga_clear(&s);
	free(m.items);
	free(m.sent_at);
	return rc;
}

/* ---- a saga's path (chart_walk) ---- */

/* Marks a path from a to b: the direct edge, else through choice states
 * (which the history never shows: they chain within one step). */
size_t
chart_successors(const struct chart *c, int a, int *succ, size_t cap)
{
	const struct chart_state *s = &c->states[a];
	size_t n = 0, i;

	if (cap < 2)
		return 0;
	switch (s->type) {
	case STATE_STEP:
		for (i = 0; i < s->nreplies && n < cap - 1; i++)
			if (s->replies[i].kind != REPLY_RETRY)
				succ[n++] = s->replies[i].target;
		succ[n++] = s->exhausted_target;
		break;
	case STATE_CHOICE:
		for (i = 0; i < s->nbranches && n < cap - 1; i++)
			succ[n++] = s->branches[i].target;
		succ[n++] = s->default_target;
		break;
	case STATE_WAIT:
		succ[n++] = s->next;
		break;
	case STATE_FINAL:
		break;
	case STATE_PARALLEL:
		for (i = 0; i < s->nfork && n < cap - 1; i++)
			succ[n++] = s->fork[i];
		succ[n++] = s->next;
		break;
	}
	return n;
}

static bool
mark_path(const struct chart *c, int a, int b, bool *states, bool *edges,
          int depth)
{
	int succ[64];
	size_t n = chart_successors(c, a, succ, 64), i;

	for (i = 0; i < n; i++) {
		if (succ[i] == b) {
			edges[(size_t)a * c->nstates + (size_t)b] = true;
			return true;
		}
	}
	if (depth >= 8)
		return false;
	for (i = 0; i < n; i++) {
		int x = succ[i];
		if (x >= 0 && c->states[x].type == STATE_CHOICE &&
		    mark_path(c, x, b, states, edges, depth + 1)) {
			states[x] = true;
			edges[(size_t)a * c->nstates + (size_t)x] = true;
			return true;
		}
	}
	return false;
}

int
chart_walk_init(struct chart_walk *w, const struct chart *c)
{
	w->c = c;
	w->prev = -1;
	w->states = calloc(c->nstates, sizeof(bool));
	w->undone = calloc(c->nstates, sizeof(bool));
	w->edges = calloc(c->nstates * c->nstates, sizeof(bool));
	if (w->states != NULL && w->undone != NULL && w->edges != NULL)
		return 0;
	chart_walk_release(w);
	return -1;
}

void
chart_walk_entry(struct chart_walk *w, const char *kind, const char *state,
                 const char *status)
{
	const struct chart *c = w->c;
	int idx = chart_state_index(c, state);

	if (idx < 0 || strcmp(kind, "ignored") == 0 ||
	    strcmp(kind, "rejected") == 0)
		return;
	if (strcmp(status, "running") == 0 ||
	    c->states[idx].type == STATE_FINAL) {
		/* moving forward, or arriving at a final */
		w->states[idx] = true;
		if (w->prev >= 0 && w->prev != idx)
			mark_path(c, w->prev, idx, w->states, w->edges, 0);
		w->prev = idx;
	} else if (strcmp(kind, "send") == 0 &&
	           (strcmp(status, "compensating") == 0 ||
	            strcmp(status, "stuck") == 0)) {
		w->undone[idx] = true; /* its undo command went out */
	}
}

void
chart_walk_release(struct chart_walk *w)
{
	free(w->states);
	free(w->edges);
	free(w->undone);
	w->states = w->edges = w->undone = NULL;
}

/* chart_load.c -- YAML statecharts in, validated struct chart out.
 *
 * Two passes. First, libyaml's event API builds a small node tree where
 * every node keeps its 1-based line and column; this pass rejects what
 * libyaml lets through (NOTES-dependencies §4): duplicate keys (reported at
 * the second key), anchors and aliases, nesting deeper than 32, a second
 * document; it turns reader errors (invalid UTF-8, whose mark is 0:0) into
 * a position computed from the byte offset, and it never loops on
 * YAML_NO_EVENT. Second, a builder walks the tree with typed getters that
 * report unknown keys (with a "did you mean"), wrong types and missing
 * keys, fills the chart and applies defaults; then whole-chart checks run:
 * targets exist, fail targets are final, every state is reachable and can
 * reach a final state, guards and routes name declared fields of fitting
 * types.
 *
 * Scalars: a quoted scalar is always a string; a plain one is an integer
 * if it looks like one (-?[0-9]+), a float if it looks like one, true or
 * false a boolean, else a string. So `eq: "5"` on an integer field is an
 * error, by design: the file says exactly what it means.
 *
 * The version is FNV-1a 64 over a canonical text of the built chart (after
 * defaults): comments, whitespace, quoting and the order of keys inside a
 * map do not change it; the order of states does (state indices are part
 * of a saga's stored record, so two files that number states differently
 * must not share a version).
 */
#include "chart_load.h"
#include "hash.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#define MAX_DEPTH       32
#define MAX_FILE        (1024 * 1024)
#define MAX_DURATION_MS (30LL * 24 * 3600 * 1000)

/* ---- errors ---- */

void
chart_errors_init(struct chart_errors *e)
{
	memset(e, 0, sizeof(*e));
}

void
chart_errors_clear(struct chart_errors *e)
{
	for (size_t i = 0; i < e->count; i++)
		free(e->items[i].text);
	memset(e, 0, sizeof(*e));
}

struct ctx {
	const char *file;
	const char *buf;
	size_t len;
	struct chart_errors *errs;
	int nerr;
};

__attribute__((format(printf, 4, 5))) static void
err_at(struct ctx *x, int line, int col, const char *fmt, ...)
{
	char msg[512], *text;
	va_list ap;

	x->nerr++;
	if (x->errs->count == CHART_MAX_ERRORS) {
		x->errs->dropped++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0) {
		if (asprintf(&text, "%s:%d:%d: %s", x->file, line, col, msg) <
		    0)
			text = NULL;
	} else if (asprintf(&text, "%s: %s", x->file, msg) < 0) {
		text = NULL;
	}
	x->errs->items[x->errs->count].line = line;
	x->errs->items[x->errs->count].col = col;
	x->errs->items[x->errs->count].text =
	        text != NULL ? text : strdup("out of memory");
	x->errs->count++;
}

/* ---- pass 1: the node tree ---- */

enum nkind { N_SCALAR, N_MAP, N_SEQ };

struct node {
	enum nkind kind;
	int line, col;
	char *text;         /* scalar */
	bool quoted;        /* scalar was quoted or block */
	struct node **kids; /* map: key, value, key, value...; seq: items */
	size_t nkids, capkids;
	bool used; /* map key consumed by the builder */
};

static void
node_free(struct node *n)
{
	if (n == NULL)
		return;
	for (size_t i = 0; i < n->nkids; i++)
		node_free(n->kids[i]);
	free(n->kids);
	free(n->text);
	free(n);
}

static int
node_add(struct node *parent, struct node *kid)
{
	if (parent->nkids == parent->capkids) {
		size_t cap = parent->capkids ? parent->capkids * 2 : 8;
		struct node **k = realloc(parent->kids, cap * sizeof(*k));
		if (k == NULL)
			return -1;
		parent->kids = k;
		parent->capkids = cap;
	}
	parent->kids[parent->nkids++] = kid;
	return 0;
}

static struct node *
node_new(enum nkind kind, const yaml_mark_t *m)
{
	struct node *n = calloc(1, sizeof(*n));
	if (n != NULL) {
		n->kind = kind;
		n->line = (int)m->line + 1;
		n->col = (int)m->column + 1;
	}
	return n;
}

/* line:col of a byte offset, counting characters (not bytes) in the line,
 * as libyaml's marks do. */
static void
offset_pos(const char *buf, size_t len, size_t off, int *line, int *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off && i < len; i++) {
		unsigned char c = (unsigned char)buf[i];
		if (c == '\n') {
			(*line)++;
			*col = 1;
		} else if ((c & 0xc0) != 0x80) {
			(*col)++;
		}
	}
}

static void
parser_error(struct ctx *x, yaml_parser_t *p)
{
	int line = (int)p->problem_mark.line + 1;
	int col = (int)p->problem_mark.column + 1;
	const char *problem = p->problem != NULL ? p->problem : "syntax error";

	if (p->error == YAML_READER_ERROR) {
		offset_pos(x->buf, x->len, p->problem_offset, &line, &col);
		if (p->problem_value != -1)
			err_at(x, line, col, "%s (byte 0x%02x)", problem,
			       (unsigned)p->problem_value & 0xff);
		else
			err_at(x, line, col, "%s", problem);
		return;
	}
	/* a tab where indentation is expected: say so plainly */
	if (p->problem_mark.index < x->len) {
		size_t i = p->problem_mark.index;
		/* index counts characters; for ASCII files it is the byte */
		if (i < x->len && x->buf[i] == '\t') {
			err_at(x, line, col,
			       "tab character used for indentation (use "
			       "spaces)");
			return;
		}
	}
	if (p->context != NULL)
		err_at(x, line, col, "%s %s (line %d, column %d)", problem,
		       p->context, (int)p->context_mark.line + 1,
		       (int)p->context_mark.column + 1);
	else
		err_at(x, line, col, "%s", problem);
}

/* An anchor makes aliases possible (a billion laughs): none allowed.
 * true when there is none, else false with the error set. */
static bool
no_anchor(struct ctx *x, const yaml_event_t *ev, const yaml_char_t *anchor)
{
	if (anchor == NULL)
		return true;
	err_at(x, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
	       "anchors (&%s) are not allowed in statecharts",
	       (const char *)anchor);
	return false;
}

/* A scalar event's node, or NULL with the error set. */
static struct node *
scalar_node(struct ctx *x, const yaml_event_t *ev)
{
	struct node *n;

	if (!no_anchor(x, ev, ev->data.scalar.anchor))
		return NULL;
	n = node_new(N_SCALAR, &ev->start_mark);
	if (n != NULL)
		n->text = strndup((const char *)ev->data.scalar.value,
		                  ev->data.scalar.length);
	if (n == NULL || n->text == NULL) {
		node_free(n);
		err_at(x, 0, 0, "out of memory");
		return NULL;
	}
	n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
	if (strlen(n->text) != ev->data.scalar.length) {
		err_at(x, n->line, n->col, "NUL character in a scalar");
		node_free(n);
		return NULL;
	}
	return n;
}

/* A mapping's or a sequence's start at depth: its node, or NULL with the
 * error set. */
static struct node *
container_node(struct ctx *x, const yaml_event_t *ev, int depth)
{
	bool map = ev->type == YAML_MAPPING_START_EVENT;
	struct node *n;

	if (!no_anchor(x, ev,
	               map ? ev->data.mapping_start.anchor
	                   : ev->data.sequence_start.anchor))
		return NULL;
	if (depth >= MAX_DEPTH) {
		err_at(x, (int)ev->start_mark.line + 1,
		       (int)ev->start_mark.column + 1,
		       "nesting deeper than %d levels", MAX_DEPTH);
		return NULL;
	}
	n = node_new(map ? N_MAP : N_SEQ, &ev->start_mark);
	if (n == NULL)
		err_at(x, 0, 0, "out of memory");
	return n;
}

/* n as parent's next child; in a mapping every other child is a key,
 * which must be a scalar not seen before in it (libyaml lets duplicates
 * through). 0, or -1 with n freed and the error set. */
static int
attach(struct ctx *x, struct node *parent, struct node *n)
{
	if (parent->kind == N_MAP && parent->nkids % 2 == 0) {
		if (n->kind != N_SCALAR) {
			err_at(x, n->line, n->col,
			       "a mapping key must be a plain name");
			node_free(n);
			return -1;
		}
		for (size_t k = 0; k < parent->nkids; k += 2) {
			if (strcmp(parent->kids[k]->text, n->text) != 0)
				continue;
			err_at(x, n->line, n->col,
			       "duplicate key \"%s\" (first at line %d)",
			       n->text, parent->kids[k]->line);
			node_free(n);
			return -1;
		}
	}
	if (node_add(parent, n) != 0) {
		node_free(n);
		err_at(x, 0, 0, "out of memory");
		return -1;
	}
	return 0;
}

/* The tree as it is built: the open containers, innermost last. */
struct tree {
	struct node *open[MAX_DEPTH];
	int depth, docs;
	struct node *root;
};

/* A finished node goes to the innermost open container, or is the root. */
static int
tree_put(struct ctx *x, struct tree *t, struct node *n)
{
	if (t->depth == 0) {
		assert(t->root == NULL); /* one document, one root */
		t->root = n;
		return 0;
	}
	return attach(x, t->open[t->depth - 1], n);
}

/* One parser event: 1 at the stream's end, 0 to go on, -1 on an error
 * (set). */
static int
tree_event(struct ctx *x, struct tree *t, const yaml_event_t *ev)
{
	int line = (int)ev->start_mark.line + 1;
	int col = (int)ev->start_mark.column + 1;
	struct node *n;

	switch (ev->type) {
	case YAML_NO_EVENT:
	case YAML_STREAM_END_EVENT:
		return 1;
	case YAML_DOCUMENT_START_EVENT:
		if (++t->docs == 1)
			return 0;
		err_at(x, line, col,
		       "a second YAML document: a statechart file holds one");
		return -1;
	case YAML_ALIAS_EVENT:
		err_at(x, line, col,
		       "aliases (*%s) are not allowed in statecharts",
		       (const char *)ev->data.alias.anchor);
		return -1;
	case YAML_SCALAR_EVENT:
		n = scalar_node(x, ev);
		return n != NULL ? tree_put(x, t, n) : -1;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		if ((n = container_node(x, ev, t->depth)) == NULL)
			return -1;
		t->open[t->depth++] = n;
		return 0;
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		assert(t->depth > 0); /* libyaml pairs them */
		return tree_put(x, t, t->open[--t->depth]);
	default: /* the stream's start, a document's end */
		return 0;
	}
}

/* Parses the whole stream into one document tree; NULL on error. */
static struct node *
parse_tree(struct ctx *x)
{
	yaml_parser_t p;
	yaml_event_t ev;
	struct tree t = {.depth = 0};
	int rc = 0;

	if (!yaml_parser_initialize(&p)) {
		err_at(x, 0, 0, "out of memory");
		return NULL;
	}
	yaml_parser_set_input_string(&p, (const unsigned char *)x->buf, x->len);
	while (rc == 0) {
		if (!yaml_parser_parse(&p, &ev)) {
			parser_error(x, &p);
			rc = -1;
			break;
		}
		rc = tree_event(x, &t, &ev);
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);
	if (rc < 0) {
		while (t.depth > 0)
			node_free(t.open[--t.depth]);
		node_free(t.root);
		return NULL;
	}
	if (t.root == NULL)
		err_at(x, 0, 0, "empty statechart");
	return t.root;
}

/* ---- pass 2: helpers over the tree ---- */

static const char *
kind_name(enum nkind k)
{
	return k == N_SCALAR ? "a scalar" : k == N_MAP ? "a mapping" : "a list";
}

static struct node *
map_get(struct node *map, const char *key)
{
	if (map == NULL || map->kind != N_MAP)
		return NULL;
	for (size_t i = 0; i + 1 < map->nkids; i += 2) {
		if (strcmp(map->kids[i]->text, key) == 0) {
			map->kids[i]->used = true;
			return map->kids[i + 1];
		}
	}
	return NULL;
}

static size_t
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];
	if (la >= 63 || lb >= 63)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
			cur[j] = sub < del ? (sub < ins ? sub : ins)
			                   : (del < ins ? del : ins);
		}
		memcpy(prev, cur, (lb + 1) * sizeof(size_t));
	}
	return prev[lb];
}

void
chart_near_init(struct chart_near *n, const char *word)
{
	n->word = word;
	n->best = NULL;
	n->dist = 99;
}

void
chart_near_try(struct chart_near *n, const char *cand)
{
	size_t d;

	if (cand == NULL || strcmp(cand, n->word) == 0)
		return;
	d = edit_distance(n->word, cand);
	if (d <= 2 && d < strlen(n->word) && d < n->dist) {
		n->dist = d;
		n->best = cand;
	}
}

/* " (did you mean \"x\"?)" when a candidate is close, else "". */
static const char *
near_hint(const struct chart_near *n, char *buf, size_t cap)
{
	if (n->best == NULL)
		return "";
	snprintf(buf, cap, " (did you mean \"%s\"?)", n->best);
	return buf;
}

/* Reports every key of map not in allowed[] (NULL-terminated). */
static void
check_keys(struct ctx *x, struct node *map, const char *where,
           const char *const *allowed)
{
	for (size_t i = 0; i + 1 < map->nkids; i += 2) {
		const char *k = map->kids[i]->text;
		struct chart_near near;
		char hint[CHART_TYPE_MAX + 24];
		bool ok = false;

		chart_near_init(&near, k);
		for (size_t a = 0; allowed[a] != NULL && !ok; a++) {
			ok = strcmp(k, allowed[a]) == 0;
			chart_near_try(&near, allowed[a]);
		}
		if (!ok)
			err_at(x, map->kids[i]->line, map->kids[i]->col,
			       "unknown key \"%s\" in %s%s", k, where,
			       near_hint(&near, hint, sizeof(hint)));
	}
}

static bool
want_kind(struct ctx *x, struct node *n, enum nkind k, const char *what)
{
	if (n->kind == k)
		return true;
	err_at(x, n->line, n->col, "%s must be %s, not %s", what, kind_name(k),
	       kind_name(n->kind));
	return false;
}

static char *
xstrdup(struct ctx *x, const char *s)
{
	char *d = strdup(s);
	if (d == NULL)
		err_at(x, 0, 0, "out of memory");
	return d;
}

static bool
name_ok(const char *s, const char *extra)
{
	if (*s == '\0' || strlen(s) >= CHART_TYPE_MAX)
		return false;
	for (; *s; s++)
		if (!islower((unsigned char)*s) &&
		    !isdigit((unsigned char)*s) && *s != '_' &&
		    strchr(extra, *s) == NULL)
			return false;
	return true;
}

/* A required or optional string scalar; NULL if absent or wrong. */
static char *
get_str(struct ctx *x, struct node *map, const char *key, const char *what,
        bool required, const char *charset)
{
	struct node *n = map_get(map, key);
	if (n == NULL) {
		if (required)
			err_at(x, map->line, map->col, "%s: missing key \"%s\"",
			       what, key);
		return NULL;
	}
	if (n->kind != N_SCALAR) {
		err_at(x, n->line, n->col,
		       "\"%s\" in %s must be a string, not %s", key, what,
		       kind_name(n->kind));
		return NULL;
	}
	if (charset != NULL && !name_ok(n->text, charset)) {
		err_at(x, n->line, n->col,
		       "\"%s\" in %s: \"%s\" must be lowercase letters, "
		       "digits, "
		       "_%s",
		       key, what, n->text,
		       strchr(charset, '.') != NULL ? ", . and -" : "");
		return NULL;
	}
	return xstrdup(x, n->text);
}

int
chart_parse_duration(const char *s, int64_t *ms)
{
	char *end;
	long long v;
	int64_t mult;

	if (s == NULL || !isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s)
		return -1;
	if (strcmp(end, "ms") == 0)
		mult = 1;
	else if (strcmp(end, "s") == 0)
		mult = 1000;
	else if (strcmp(end, "m") == 0)
		mult = 60000;
	else if (strcmp(end, "h") == 0)
		mult = 3600000;
	else
		return -1;
	if (v > MAX_DURATION_MS / mult)
		return -1;
	*ms = v * mult;
	return 0;
}

/* Backoffs and caps may be 0 (retry at once); timeouts and waits may
 * not. */
static bool
get_duration(struct ctx *x, struct node *map, const char *key, const char *what,
             int64_t *out)
{
	struct node *n = map_get(map, key);
	bool zero_ok = strcmp(key, "backoff") == 0 || strcmp(key, "cap") == 0;
	int64_t v = 0;
	if (n == NULL)
		return false;
	if (n->kind != N_SCALAR || chart_parse_duration(n->text, &v) != 0 ||
	    (v == 0 && !zero_ok)) {
		err_at(x, n->line, n->col,
		       "\"%s\" in %s: bad duration \"%s\" (use e.g. 250ms, "
		       "10s, 5m, 1h; %s, at most 30 days)",
		       key, what, n->kind == N_SCALAR ? n->text : "...",
		       zero_ok ? "0 or more" : "positive");
		return false;
	}
	*out = v;
	return true;
}

static bool
looks_int(const char *s)
{
	if (*s == '-')
		s++;
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

static bool
looks_float(const char *s)
{
	char *end;
	errno = 0;
	if (!*s || isspace((unsigned char)*s))
		return false;
	(void)strtod(s, &end);
	return *end == '\0' && errno == 0 && strpbrk(s, ".eE") != NULL;
}

/* The typed value of a scalar node (see the opening comment). */
static int
scalar_value(struct ctx *x, struct node *n, struct value *out)
{
	if (n->kind != N_SCALAR) {
		err_at(x, n->line, n->col, "expected a single value, not %s",
		       kind_name(n->kind));
		return -1;
	}
	if (!n->quoted && looks_int(n->text)) {
		errno = 0;
		long long v = strtoll(n->text, NULL, 10);
		if (errno != 0) {
			err_at(x, n->line, n->col, "integer %s out of range",
			       n->text);
			return -1;
		}
		value_set_int(out, v);
	} else if (!n->quoted && looks_float(n->text)) {
		value_set_float(out, strtod(n->text, NULL));
	} else if (!n->quoted && (strcmp(n->text, "true") == 0 ||
	                          strcmp(n->text, "false") == 0)) {
		value_set_bool(out, n->text[0] == 't');
	} else if (!n->quoted &&
	           (strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0 ||
	            n->text[0] == '\0')) {
		err_at(x, n->line, n->col, "a value is required here");
		return -1;
	} else if (value_set_str(out, n->text) != 0) {
		err_at(x, 0, 0, "out of memory");
		return -1;
	}
	return 0;
}

static bool
get_int(struct ctx *x, struct node *map, const char *key, const char *what,
        long long min, long long max, long long *out)
{
	struct node *n = map_get(map, key);
	if (n == NULL)
		return false;
	if (n->kind != N_SCALAR || n->quoted || !looks_int(n->text) ||
	    strtoll(n->text, NULL, 10) < min ||
	    strtoll(n->text, NULL, 10) > max) {
		err_at(x, n->line, n->col,
		       "\"%s\" in %s must be a whole number from %lld to %lld",
		       key, what, min, max);
		return false;
	}
	*out = strtoll(n->text, NULL, 10);
	return true;
}

/* A list of strings (a single string is accepted as a list of one). */
static int
get_strv(struct ctx *x, struct node *map, const char *key, const char *what,
         char ***out, size_t *nout, const char *charset)
{
	struct node *n = map_get(map, key);
	struct node *one[1];
	struct node **items;
	size_t nitems;

	*out = NULL;
	*nout = 0;
	if (n == NULL)
		return 0;
	if (n->kind == N_SCALAR) {
		one[0] = n;
		items = one;
		nitems = 1;
	} else if (n->kind == N_SEQ) {
		items = n->kids;
		nitems = n->nkids;
	} else {
		err_at(x, n->line, n->col,
		       "\"%s\" in %s must be a list of names, not a mapping",
		       key, what);
		return -1;
	}
	*out = calloc(nitems + 1, sizeof(char *));
	if (*out == NULL) {
		err_at(x, 0, 0, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < nitems; i++) {
		if (items[i]->kind != N_SCALAR ||
		    (charset != NULL && !name_ok(items[i]->text, charset))) {
			err_at(x, items[i]->line, items[i]->col,
			       "\"%s\" in %s: each entry must be a name of "
			       "lowercase letters, digits, _%s",
			       key, what,
			       charset && strchr(charset, '.') ? ", . and -"
			                                       : "");
			continue;
		}
		(*out)[(*nout)++] = xstrdup(x, items[i]->text);
	}
	return 0;
}

/* ---- pass 2: the builder ---- */

/* Targets are kept by name while building, resolved at the end. */
struct pending_target {
	int *slot;
	char *name;
	int line, col;
	const char *what;   /* e.g. "reply \"x\" of state \"y\"" */
	bool must_be_final; /* fail and exhausted targets */
};

struct builder {
	struct ctx *x;
	struct chart *c;
	struct pending_target *targets;
	size_t ntargets, captargets;
	struct node **state_nodes;
	struct chart_retry def_retry, def_comp_retry;
	int64_t def_timeout, def_deadline;
	int64_t def_stuck_after; /* defaults: stuck_after; 0: none */
	char *failure_name;
	int failure_line, failure_col;
};

/* Keeps a target by name, resolved into *slot (-1 until then) once every
 * state is known. */
static void
want_target_name(struct builder *b, int *slot, const char *name, int line,
                 int col, const char *what, bool must_be_final)
{
	struct pending_target *t;

	*slot = -1;
	if (b->ntargets == b->captargets) {
		size_t cap = b->captargets ? b->captargets * 2 : 32;
		struct pending_target *nt =
		        realloc(b->targets, cap * sizeof(*nt));
		if (nt == NULL) {
			err_at(b->x, 0, 0, "out of memory");
			return;
		}
		b->targets = nt;
		b->captargets = cap;
	}
	t = &b->targets[b->ntargets++];
	t->slot = slot;
	t->name = xstrdup(b->x, name);
	t->line = line;
	t->col = col;
	t->what = what; /* a literal: formatted when an error is reported */
	t->must_be_final = must_be_final;
}

static void
want_target(struct builder *b, int *slot, struct node *n, const char *what,
            bool must_be_final)
{
	*slot = -1;
	if (n->kind != N_SCALAR) {
		err_at(b->x, n->line, n->col, "%s must name a state, not %s",
		       what, kind_name(n->kind));
		return;
	}
	want_target_name(b, slot, n->text, n->line, n->col, what,
	                 must_be_final);
}

static void
build_retry(struct builder *b, struct node *n, const char *what,
            struct chart_retry *r)
{
	static const char *const keys[] = {"attempts", "backoff", "multiplier",
	                                   "cap", NULL};
	long long attempts;
	struct node *m;

	if (!want_kind(b->x, n, N_MAP, what))
		return;
	check_keys(b->x, n, what, keys);
	if (get_int(b->x, n, "attempts", what, 1, 100, &attempts))
		r->attempts = (int)attempts;
	get_duration(b->x, n, "backoff", what, &r->backoff_ms);
	get_duration(b->x, n, "cap", what, &r->cap_ms);
	m = map_get(n, "multiplier");
	if (m != NULL) {
		if (m->kind != N_SCALAR || m->quoted ||
		    !(looks_int(m->text) || looks_float(m->text)) ||
		    strtod(m->text, NULL) < 1.0 ||
		    strtod(m->text, NULL) > 100.0)
			err_at(b->x, m->line, m->col,
			       "\"multiplier\" in %s must be a number from 1 "
			       "to 100",
			       what);
		else
			r->multiplier = strtod(m->text, NULL);
	}
	if (r->cap_ms < r->backoff_ms)
		err_at(b->x, n->line, n->col,
		       "%s: cap (%lldms) is smaller than backoff (%lldms)",
		       what, (long long)r->cap_ms, (long long)r->backoff_ms);
}

static const char *
where(char *buf, size_t cap, const char *kind, const char *name)
{
	snprintf(buf, cap, "%s \"%s\"", kind, name);
	return buf;
}

/* A reply type whose participant part (before the first '.') nearly,
 * but not exactly, matches the command's is a typo: the participant
 * never sends it, and the step would wait for it in vain. */
static void
check_reply_type(struct builder *b, const struct node *k, const char *command,
                 const char *what)
{
	char want[CHART_TYPE_MAX], got[CHART_TYPE_MAX];
	const char *dot = strchr(k->text, '.');
	struct chart_near near;
	size_t wl;

	if (command == NULL || dot == NULL)
		return;
	wl = strcspn(command, ".");
	if (wl >= sizeof(want) || (size_t)(dot - k->text) >= sizeof(got))
		return;
	memcpy(want, command, wl);
	want[wl] = '\0';
	memcpy(got, k->text, (size_t)(dot - k->text));
	got[dot - k->text] = '\0';
	chart_near_init(&near, got);
	chart_near_try(&near, want);
	if (near.best == NULL)
		return;
	err_at(b->x, k->line, k->col,
	       "%s \"%s\" does not start with \"%s.\" as its command "
	       "\"%s\" does (did you mean \"%s%s\"?)",
	       what, k->text, want, command, want, dot);
}

/* max_visits and too_many, on a step, choice or wait state. The default
 * too_many ({fail: <failure>}) is applied once the chart is known. */
static void
build_bound(struct builder *b, struct chart_state *s, struct node *n,
            const char *w)
{
	struct node *tm = map_get(n, "too_many"), *g, *f;
	long long mv;

	s->too_many_kind = REPLY_FAIL;
	s->too_many_target = -1;
	if (get_int(b->x, n, "max_visits", w, 1, CHART_MAX_VISITS_MAX, &mv))
		s->max_visits = (int)mv;
	if (tm == NULL)
		return;
	if (map_get(n, "max_visits") == NULL) {
		err_at(b->x, tm->line, tm->col,
		       "state \"%s\": \"too_many\" without \"max_visits\"",
		       s->name);
		return;
	}
	if (tm->kind == N_SCALAR) {
		s->too_many_kind = REPLY_GOTO;
		want_target(b, &s->too_many_target, tm, "\"too_many\"", false);
		return;
	}
	if (!want_kind(b->x, tm, N_MAP, "\"too_many\""))
		return;
	check_keys(b->x, tm, "\"too_many\"",
	           (const char *const[]){"goto", "fail", NULL});
	g = map_get(tm, "goto");
	f = map_get(tm, "fail");
	if ((g == NULL) == (f == NULL)) {
		err_at(b->x, tm->line, tm->col,
		       "\"too_many\" of state \"%s\" needs exactly one of "
		       "goto: or fail:",
		       s->name);
	} else if (g != NULL) {
		s->too_many_kind = REPLY_GOTO;
		want_target(b, &s->too_many_target, g, "\"too_many\"", false);
	} else {
		want_target(b, &s->too_many_target, f,
		            "\"too_many\" fail target", true);
	}
}

/* check_reply_type for each entry of a compensation's `ok`. */
static void
check_ok_types(struct builder *b, const struct node *ok, const char *command)
{
	if (ok == NULL || ok->kind == N_MAP)
		return;
	if (ok->kind == N_SCALAR) {
		check_reply_type(b, ok, command, "ok reply");
		return;
	}
	for (size_t i = 0; i < ok->nkids; i++)
		if (ok->kids[i]->kind == N_SCALAR)
			check_reply_type(b, ok->kids[i], command, "ok reply");
}

static void
build_compensation(struct builder *b, struct chart_state *s, struct node *n)
{
	static const char *const keys[] = {"to",    "command",     "route",
	                                   "pass",  "ok",          "timeout",
	                                   "retry", "description", NULL};
	char w[160];
	struct chart_compensation *k;

	snprintf(w, sizeof(w), "compensate of state \"%s\"", s->name);
	if (!want_kind(b->x, n, N_MAP, w))
		return;
	check_keys(b->x, n, w, keys);
	k = calloc(1, sizeof(*k));
	if (k == NULL) {
		err_at(b->x, 0, 0, "out of memory");
		return;
	}
	s->compensate = k;
	k->to = get_str(b->x, n, "to", w, false, "-");
	k->command = get_str(b->x, n, "command", w, true, ".-");
	k->route = get_str(b->x, n, "route", w, false, NULL);
	get_strv(b->x, n, "pass", w, &k->pass, &k->npass, ".");
	get_strv(b->x, n, "ok", w, &k->ok, &k->nok, ".-");
	check_ok_types(b, map_get(n, "ok"), k->command);
	if (k->nok == 0 && map_get(n, "ok") == NULL)
		err_at(b->x, n->line, n->col,
		       "%s: missing key \"ok\" (the replies that mean undone)",
		       w);
	k->timeout_ms = b->def_timeout;
	get_duration(b->x, n, "timeout", w, &k->timeout_ms);
	k->retry = b->def_comp_retry;
	if (map_get(n, "retry") != NULL)
		build_retry(b, map_get(n, "retry"), w, &k->retry);
	if (k->to == NULL && s->to != NULL)
		k->to = xstrdup(b->x, s->to);
	if (k->route == NULL && s->route != NULL)
		k->route = xstrdup(b->x, s->route);
}

/* One entry of a step's "on": reply type k leads to v (a state, retry,
 * {goto: S} or {fail: S}). r is s's next reply, counted when k is a
 * valid type. */
static void
build_reply(struct builder *b, struct chart_state *s, struct node *k,
            struct node *v)
{
	static const char *const rk[] = {"goto", "fail", NULL};
	struct chart_reply *r = &s->replies[s->nreplies];
	struct node *g, *f;

	if (!name_ok(k->text, ".-")) {
		err_at(b->x, k->line, k->col,
		       "reply type \"%s\" must be lowercase letters, digits, "
		       "_, . and -",
		       k->text);
		return;
	}
	check_reply_type(b, k, s->command, "reply");
	r->type = xstrdup(b->x, k->text);
	r->target = -1;
	s->nreplies++;
	if (v->kind == N_SCALAR && strcmp(v->text, "retry") == 0) {
		r->kind = REPLY_RETRY;
		return;
	}
	if (v->kind == N_SCALAR) {
		r->kind = REPLY_GOTO;
		want_target(b, &r->target, v, "reply target", false);
		return;
	}
	if (v->kind != N_MAP) {
		err_at(b->x, v->line, v->col,
		       "reply \"%s\" must lead to a state name, retry, "
		       "{goto: S} or {fail: S}",
		       k->text);
		return;
	}
	g = map_get(v, "goto");
	f = map_get(v, "fail");
	check_keys(b->x, v, "a reply", rk);
	if ((g == NULL) == (f == NULL)) {
		err_at(b->x, v->line, v->col,
		       "reply \"%s\" needs exactly one of goto: or fail:",
		       k->text);
	} else if (g != NULL) {
		r->kind = REPLY_GOTO;
		want_target(b, &r->target, g, "reply target", false);
	} else {
		r->kind = REPLY_FAIL;
		want_target(b, &r->target, f, "fail target", true);
	}
}

/* A step's "on": the replies it waits for, at least one leading on. */
static void
build_replies(struct builder *b, struct chart_state *s, struct node *n)
{
	struct node *on = map_get(n, "on");
	bool success = false;

	if (on == NULL) {
		err_at(b->x, n->line, n->col,
		       "state \"%s\": missing key \"on\" (the replies it "
		       "waits for)",
		       s->name);
		return;
	}
	if (!want_kind(b->x, on, N_MAP, "\"on\""))
		return;
	s->replies = calloc(on->nkids / 2 + 1, sizeof(*s->replies));
	if (s->replies == NULL) {
		err_at(b->x, 0, 0, "out of memory");
		return;
	}
	for (size_t i = 0; i < on->nkids / 2; i++)
		build_reply(b, s, on->kids[2 * i], on->kids[2 * i + 1]);
	for (size_t i = 0; i < s->nreplies; i++)
		success |= s->replies[i].kind == REPLY_GOTO;
	if (!success)
		err_at(b->x, on->line, on->col,
		       "state \"%s\" has no reply mapped to success (a reply "
		       "leading to the next state)",
		       s->name);
}

/* A step's timeout and deadline (the defaults unless it says), the
 * deadline no shorter than one attempt. */
static void
build_step_times(struct builder *b, struct chart_state *s, struct node *n,
                 const char *w)
{
	struct node *d;

	s->timeout_ms = b->def_timeout;
	get_duration(b->x, n, "timeout", w, &s->timeout_ms);
	s->deadline_ms = b->def_deadline;
	get_duration(b->x, n, "deadline", w, &s->deadline_ms);
	if (s->deadline_ms >= s->timeout_ms)
		return;
	if ((d = map_get(n, "deadline")) == NULL)
		d = map_get(n, "timeout");
	err_at(b->x, d != NULL ? d->line : n->line, d != NULL ? d->col : n->col,
	       "state \"%s\": \"deadline\" is shorter than \"timeout\": "
	       "the step would end before its first attempt could time out",
	       s->name);
}

static void
build_step(struct builder *b, struct chart_state *s, struct node *n)
{
	static const char *const keys[] = {
	        "type",        "description", "to",         "command",
	        "route",       "pass",        "on",         "save",
	        "emit",        "timeout",     "retry",      "compensate",
	        "exhausted",   "deadline",    "max_visits", "too_many",
	        "stuck_after", NULL};
	char w[120];
	struct node *ex;

	where(w, sizeof(w), "state", s->name);
	check_keys(b->x, n, w, keys);
	build_bound(b, s, n, w);
	s->to = get_str(b->x, n, "to", w, true, "-");
	s->command = get_str(b->x, n, "command", w, true, ".-");
	s->route = get_str(b->x, n, "route", w, false, NULL);
	s->emit = get_str(b->x, n, "emit", w, false, ".-");
	get_strv(b->x, n, "pass", w, &s->pass, &s->npass, ".");
	get_strv(b->x, n, "save", w, &s->save, &s->nsave, NULL);
	build_step_times(b, s, n, w);
	s->retry = b->def_retry;
	if (map_get(n, "retry") != NULL)
		build_retry(b, map_get(n, "retry"), w, &s->retry);
	s->exhausted_target = -1;
	ex = map_get(n, "exhausted");
	if (ex != NULL)
		want_target(b, &s->exhausted_target, ex, "\"exhausted\"", true);
	build_replies(b, s, n);
	if (map_get(n, "compensate") != NULL)
		build_compensation(b, s, map_get(n, "compensate"));
}

/* " (did you mean ...)" for a field path that is not declared: the
 * declared paths, and the saved reply fields when `saved`. */
static const char *
field_hint(const struct chart *c, const char *path, bool saved, char *buf,
           size_t cap)
{
	struct chart_near near;

	chart_near_init(&near, path);
	for (size_t i = 0; i < c->nfields; i++)
		chart_near_try(&near, c->fields[i].path);
	for (size_t i = 0; saved && i < c->nstates; i++)
		for (size_t k = 0; k < c->states[i].nsave; k++)
			chart_near_try(&near, c->states[i].save[k]);
	return near_hint(&near, buf, cap);
}

static const struct {
	const char *name;
	enum chart_op op;
} ops[] = {
        {"eq", OP_EQ},         {"ne", OP_NE}, {"in", OP_IN},
        {"not_in", OP_NOT_IN}, {"lt", OP_LT}, {"le", OP_LE},
        {"gt", OP_GT},         {"ge", OP_GE}, {"present", OP_PRESENT},
};

/* The field a guard reads: declared under fields:, or a visit counter
 * ("visits.STATE", resolved once every state is named). NULL with the
 * error set. */
static const struct chart_field *
cond_field(struct builder *b, struct chart_cond *c, const struct node *n)
{
	static const struct chart_field counter = {NULL, FIELD_INTEGER};
	const struct chart_field *f = chart_field_find(b->c, c->field);
	char hint[CHART_TYPE_MAX + 24];

	if (f != NULL)
		return f;
	if (strncmp(c->field, "visits.", 7) == 0 && c->field[7] != '\0') {
		c->visits = true;
		want_target_name(b, &c->visits_state, c->field + 7, n->line,
		                 n->col, "guard on visits of", false);
		return &counter;
	}
	err_at(b->x, n->line, n->col,
	       "guard on field \"%s\", which is not declared under "
	       "fields:%s",
	       c->field, field_hint(b->c, c->field, false, hint, sizeof(hint)));
	return NULL;
}

/* The operator's value: a list for in/not_in, else a scalar. 0, or -1
 * with the error set. */
static int
cond_operand(struct builder *b, struct chart_cond *c, struct node *opnode)
{
	if (c->op != OP_IN && c->op != OP_NOT_IN)
		return scalar_value(b->x, opnode, &c->operand);
	if (opnode->kind != N_SEQ || opnode->nkids == 0) {
		err_at(b->x, opnode->line, opnode->col,
		       "%s: takes a non-empty list",
		       c->op == OP_IN ? "in" : "not_in");
		return -1;
	}
	value_set_array(&c->operand);
	for (size_t i = 0; i < opnode->nkids; i++) {
		struct value item;
		if (scalar_value(b->x, opnode->kids[i], &item) == 0)
			value_array_push(&c->operand, &item);
	}
	return 0;
}

/* The operator and every value it compares with fit field f's type. */
static void
cond_types(struct builder *b, const struct chart_cond *c,
           const struct chart_field *f, const struct node *opnode)
{
	bool numeric_op = c->op == OP_LT || c->op == OP_LE || c->op == OP_GT ||
	                  c->op == OP_GE;
	bool field_num = f->type == FIELD_INTEGER || f->type == FIELD_NUMBER;
	const struct value *vals = &c->operand;
	size_t nvals = 1;

	if (numeric_op && !field_num) {
		err_at(b->x, opnode->line, opnode->col,
		       "comparison on field \"%s\", which is a %s, not a "
		       "number",
		       c->field, chart_field_type_name(f->type));
		return;
	}
	if (f->type == FIELD_LIST || f->type == FIELD_MAP) {
		err_at(b->x, opnode->line, opnode->col,
		       "guard on field \"%s\", which is a %s: only present: "
		       "applies",
		       c->field, chart_field_type_name(f->type));
		return;
	}
	if (c->operand.type == VALUE_ARRAY) {
		vals = c->operand.u.a.items;
		nvals = c->operand.u.a.len;
	}
	for (size_t i = 0; i < nvals; i++) {
		enum value_type t = vals[i].type;
		bool fits = (f->type == FIELD_STRING && t == VALUE_STR) ||
		            (f->type == FIELD_INTEGER && t == VALUE_INT) ||
		            (f->type == FIELD_NUMBER &&
		             (t == VALUE_INT || t == VALUE_FLOAT)) ||
		            (f->type == FIELD_BOOLEAN && t == VALUE_BOOL);
		if (fits)
			continue;
		err_at(b->x, opnode->line, opnode->col,
		       "guard compares field \"%s\" (%s) with a value of type "
		       "%s",
		       c->field, chart_field_type_name(f->type),
		       value_type_name(t));
		return;
	}
}

static void
build_cond(struct builder *b, struct chart_state *s, struct node *n,
           struct chart_cond *c)
{
	static const char *const keys[] = {"field",  "eq",      "ne", "in",
	                                   "not_in", "lt",      "le", "gt",
	                                   "ge",     "present", NULL};
	char w[120];
	struct node *opnode = NULL;
	const struct chart_field *f;
	int nops = 0;

	snprintf(w, sizeof(w), "a guard of state \"%s\"", s->name);
	value_set_nil(&c->operand);
	if (!want_kind(b->x, n, N_MAP, w))
		return;
	check_keys(b->x, n, w, keys);
	c->field = get_str(b->x, n, "field", w, true, NULL);
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		struct node *o = map_get(n, ops[i].name);
		if (o != NULL) {
			nops++;
			c->op = ops[i].op;
			opnode = o;
		}
	}
	if (nops != 1) {
		err_at(b->x, n->line, n->col,
		       "%s needs exactly one operator (eq, ne, in, not_in, "
		       "lt, le, gt, ge, present)",
		       w);
		return;
	}
	if (c->field == NULL || (f = cond_field(b, c, n)) == NULL)
		return;
	if (c->op == OP_PRESENT) {
		if (scalar_value(b->x, opnode, &c->operand) == 0 &&
		    c->operand.type != VALUE_BOOL)
			err_at(b->x, opnode->line, opnode->col,
			       "present: takes true or false");
		return;
	}
	if (cond_operand(b, c, opnode) == 0)
		cond_types(b, c, f, opnode);
}

/* One of a choice state's `branches:`, a mapping: `when:` (a guard or a
 * list of guards, all of which must hold) and `goto:` or `fail:`. */
static void
build_branch(struct builder *b, struct chart_state *s, struct node *bn,
             struct chart_branch *bb)
{
	static const char *const bk[] = {"when", "goto", "fail", NULL};
	struct node *when, *g, *f;
	size_t nc;

	bb->target = -1;
	check_keys(b->x, bn, "a branch", bk);
	when = map_get(bn, "when");
	g = map_get(bn, "goto");
	f = map_get(bn, "fail");
	if (when == NULL)
		err_at(b->x, bn->line, bn->col,
		       "branch of state \"%s\": missing key \"when\"", s->name);
	if ((g == NULL) == (f == NULL))
		err_at(b->x, bn->line, bn->col,
		       "branch of state \"%s\" needs exactly one of "
		       "goto: or fail:",
		       s->name);
	else if (g != NULL) {
		bb->kind = REPLY_GOTO;
		want_target(b, &bb->target, g, "branch target", false);
	} else {
		bb->kind = REPLY_FAIL;
		want_target(b, &bb->target, f, "fail target", true);
	}
	if (when == NULL)
		return;
	nc = when->kind == N_SEQ ? when->nkids : 1;
	bb->conds = calloc(nc + 1, sizeof(*bb->conds));
	if (bb->conds == NULL) {
		err_at(b->x, 0, 0, "out of memory");
		return;
	}
	for (size_t k = 0; k < nc; k++) {
		build_cond(b, s, when->kind == N_SEQ ? when->kids[k] : when,
		           &bb->conds[k]);
		bb->nconds++;
	}
}

static void
build_choice(struct builder *b, struct chart_state *s, struct node *n)
{
	static const char *const keys[] = {
	        "type",     "description", "branches",
	        "default",  "compensate",  "max_visits",
	        "too_many", "stuck_after", NULL};
	char w[120];
	struct node *br, *def;

	where(w, sizeof(w), "state", s->name);
	check_keys(b->x, n, w, keys);
	build_bound(b, s, n, w);
	s->default_target = -1;
	def = map_get(n, "default");
	if (def == NULL)
		err_at(b->x, n->line, n->col,
		       "choice state \"%s\": missing key \"default\"", s->name);
	else
		want_target(b, &s->default_target, def, "\"default\"", false);
	br = map_get(n, "branches");
	if (br == NULL) {
		err_at(b->x, n->line, n->col,
		       "choice state \"%s\": missing key \"branches\"",
		       s->name);
		return;
	}
	if (!want_kind(b->x, br, N_SEQ, "\"branches\""))
		return;
	s->branches = calloc(br->nkids + 1, sizeof(*s->branches));
	if (s->branches == NULL) {
		err_at(b->x, 0, 0, "out of memory");
		return;
	}
	for (size_t i = 0; i < br->nkids; i++) {
		struct node *bn = br->kids[i];
		if (!want_kind(b->x, bn, N_MAP, "a branch"))
			continue;
		build_branch(b, s, bn, &s->branches[s->nbranches++]);
	}
}

/* ---- parallel states ----
 *
 * A parallel state names the first state of each branch; which states
 * belong to a branch is found after targets resolve (check_parallel), by
 * following GOTO transitions from its first state up to `join`. While
 * building, a `join` target is JOIN_PENDING; check_parallel turns it into
 * the index of the parallel state that holds the branch. */

#define CHART_JOIN_NAME "join"
#define JOIN_PENDING    (-2)

static void
build_parallel(struct builder *b, struct chart_state *s, struct node *n)
{
	static const char *const keys[] = {"type", "description", "branches",
	                                   "next", "compensate",  "stuck_after",
	                                   NULL};
	struct node *br = map_get(n, "branches"), *nx = map_get(n, "next");
	char w[120];

	where(w, sizeof(w), "state", s->name);
	check_keys(b->x, n, w, keys);
	if (map_get(n, "compensate") != NULL)
		err_at(b->x, map_get(n, "compensate")->line,
		       map_get(n, "compensate")->col,
		       "a parallel state has nothing to compensate: "
		       "\"compensate\" belongs on the steps of its branches");
	if (nx == NULL)
		err_at(b->x, n->line, n->col,
		       "parallel state \"%s\": missing key \"next\"", s->name);
	else
		want_target(b, &s->next, nx, "\"next\"", false);
	if (br == NULL || br->kind != N_SEQ || br->nkids < 2 ||
	    br->nkids > CHART_BRANCHES_MAX) {
		struct node *at = br != NULL ? br : n;
		err_at(b->x, at->line, at->col,
		       "parallel state \"%s\": \"branches\" must be a list of "
		       "2 to %d state names",
		       s->name, CHART_BRANCHES_MAX);
		return;
	}
	s->fork = calloc(br->nkids, sizeof(*s->fork));
	if (s->fork == NULL) {
		err_at(b->x, 0, 0, "out of memory");
		return;
	}
	s->nfork = br->nkids;
	for (size_t i = 0; i < br->nkids; i++)
		want_target(b, &s->fork[i], br->kids[i], "branch", false);
}

/* `stuck_after: DURATION` (chart.h stuck_after_ms): a saga waits in a
 * step, a wait or a parallel state; a choice or a final state is never
 * waited in. The default (defaults: stuck_after) is applied once the
 * branches are known (stuck_after_defaults). */
static void
build_stuck_after(struct builder *b, struct chart_state *s, struct node *n)
{
	struct node *k = map_get(n, "stuck_after");
	char w[120];

	if (k == NULL)
		return;
	if (s->type == STATE_CHOICE || s->type == STATE_FINAL) {
		err_at(b->x, k->line, k->col,
		       "state \"%s\": a %s state is never waited in: "
		       "\"stuck_after\" belongs on step, wait and parallel "
		       "states",
		       s->name, chart_state_type_name(s->type));
		return;
	}
	where(w, sizeof(w), "state", s->name);
	if (!get_duration(b->x, n, "stuck_after", w, &s->stuck_after_ms))
		return;
	if (s->type == STATE_WAIT && s->duration_ms > 0 &&
	    s->stuck_after_ms <= s->duration_ms)
		err_at(b->x, k->line, k->col,
		       "state \"%s\": \"stuck_after\" is not longer than "
		       "the wait's \"duration\": every saga would count as "
		       "stuck while it waits as told",
		       s->name);
}

/* A wait state: its duration and the state after it. */
static void
build_wait(struct builder *b, struct chart_state *s, struct node *n,
           const char *w)
{
	/* "compensate" is reported on its own (build_state), not as unknown */
	static const char *const keys[] = {
	        "type",     "description", "duration",
	        "next",     "compensate",  "max_visits",
	        "too_many", "stuck_after", NULL};
	struct node *nx = map_get(n, "next");

	check_keys(b->x, n, w, keys);
	build_bound(b, s, n, w);
	if (!get_duration(b->x, n, "duration", w, &s->duration_ms) &&
	    map_get(n, "duration") == NULL)
		err_at(b->x, n->line, n->col,
		       "wait state \"%s\": missing key \"duration\"", s->name);
	if (nx == NULL)
		err_at(b->x, n->line, n->col,
		       "wait state \"%s\": missing key \"next\"", s->name);
	else
		want_target(b, &s->next, nx, "\"next\"", false);
}

/* A state's name: lowercase, and not the reserved "join". */
static void
state_name(struct builder *b, struct chart_state *s, const struct node *key)
{
	s->name = xstrdup(b->x, key->text);
	s->line = key->line;
	s->col = key->col;
	if (!name_ok(key->text, ""))
		err_at(b->x, key->line, key->col,
		       "state name \"%s\" must be lowercase letters, digits "
		       "and _",
		       key->text);
	if (strcmp(key->text, CHART_JOIN_NAME) == 0)
		err_at(b->x, key->line, key->col,
		       "state name \"join\" is reserved: it ends a branch of "
		       "a parallel state");
}

static void
build_state(struct builder *b, struct chart_state *s, struct node *key,
            struct node *n)
{
	static const char *const final_keys[] = {"type",        "description",
	                                         "emit",        "compensate",
	                                         "stuck_after", NULL};
	struct node *t, *c;
	char w[120];

	s->default_target = s->next = s->exhausted_target = -1;
	s->too_many_target = -1;
	s->parallel = s->branch = -1;
	state_name(b, s, key);
	where(w, sizeof(w), "state", key->text);
	if (!want_kind(b->x, n, N_MAP, w))
		return;
	t = map_get(n, "type");
	if (t == NULL || t->kind != N_SCALAR) {
		err_at(b->x, n->line, n->col,
		       "state \"%s\": missing key \"type\" (step, choice, "
		       "wait or final)",
		       key->text);
		return;
	}
	if (strcmp(t->text, "step") == 0) {
		s->type = STATE_STEP;
		build_step(b, s, n);
		build_stuck_after(b, s, n);
		return;
	}
	if (strcmp(t->text, "parallel") == 0) {
		s->type = STATE_PARALLEL;
		build_parallel(b, s, n);
		build_stuck_after(b, s, n);
		return;
	}
	if (strcmp(t->text, "choice") == 0)
		s->type = STATE_CHOICE;
	else if (strcmp(t->text, "wait") == 0)
		s->type = STATE_WAIT;
	else if (strcmp(t->text, "final") == 0)
		s->type = STATE_FINAL;
	else {
		err_at(b->x, t->line, t->col,
		       "state \"%s\": unknown type \"%s\" (step, choice, wait "
		       "or final)",
		       key->text, t->text);
		return;
	}
	if ((c = map_get(n, "compensate")) != NULL)
		err_at(b->x, c->line, c->col,
		       "a %s state has nothing to compensate: \"compensate\" "
		       "belongs on step states",
		       t->text);
	if (s->type == STATE_CHOICE) {
		build_choice(b, s, n);
	} else if (s->type == STATE_WAIT) {
		build_wait(b, s, n, w);
	} else {
		check_keys(b->x, n, w, final_keys);
		s->emit = get_str(b->x, n, "emit", w, false, ".-");
	}
	build_stuck_after(b, s, n);
}

static void
build_fields(struct builder *b, struct node *n)
{
	static const char *const types[] = {"string",  "integer", "number",
	                                    "boolean", "list",    "map"};
	if (!want_kind(b->x, n, N_MAP, "\"fields\""))
		return;
	b->c->fields = calloc(n->nkids / 2 + 1, sizeof(*b->c->fields));
	if (b->c->fields == NULL) {
		err_at(b->x, 0, 0, "out of memory");
		return;
	}
	for (size_t i = 0; i + 1 < n->nkids; i += 2) {
		struct node *k = n->kids[i], *v = n->kids[i + 1];
		size_t t;
		if (!name_ok(k->text, ".")) {
			err_at(b->x, k->line, k->col,
			       "field \"%s\" must be a dotted path of "
			       "lowercase names",
			       k->text);
			continue;
		}
		for (t = 0; t < 6; t++)
			if (v->kind == N_SCALAR &&
			    strcmp(v->text, types[t]) == 0)
				break;
		if (t == 6) {
			err_at(b->x, v->line, v->col,
			       "field \"%s\": unknown type (string, integer, "
			       "number, boolean, list, map)",
			       k->text);
			continue;
		}
		b->c->fields[b->c->nfields].path = xstrdup(b->x, k->text);
		b->c->fields[b->c->nfields].type = (enum chart_field_type)t;
		b->c->nfields++;
	}
}

static bool
scalar_field(const struct chart_field *f)
{
	return f->type != FIELD_LIST && f->type != FIELD_MAP;
}

static void
check_route(struct builder *b, const struct chart_state *s, const char *route,
            const char *what)
{
	const char *p = route;
	char hint[CHART_TYPE_MAX + 24];

	while (p != NULL && (p = strchr(p, '{')) != NULL) {
		const char *end = strchr(p, '}');
		char path[128];
		const struct chart_field *f;
		if (end == NULL || (size_t)(end - p - 1) >= sizeof(path) ||
		    end == p + 1) {
			err_at(b->x, s->line, s->col,
			       "state \"%s\": %s \"%s\" has an unterminated "
			       "or empty {placeholder}",
			       s->name, what, route);
			return;
		}
		memcpy(path, p + 1, (size_t)(end - p - 1));
		path[end - p - 1] = '\0';
		f = chart_field_find(b->c, path);
		if (f == NULL)
			err_at(b->x, s->line, s->col,
			       "state \"%s\": %s \"%s\" names field \"%s\", "
			       "which is not declared under fields:%s",
			       s->name, what, route, path,
			       field_hint(b->c, path, false, hint,
			                  sizeof(hint)));
		else if (!scalar_field(f))
			err_at(b->x, s->line, s->col,
			       "state \"%s\": %s \"%s\" names field \"%s\", a "
			       "%s, not a single value",
			       s->name, what, route, path,
			       chart_field_type_name(f->type));
		p = end + 1;
	}
}

/* True if some step saves `name` from its reply. */
static bool
saved_somewhere(const struct chart *c, const char *name)
{
	for (size_t i = 0; i < c->nstates; i++)
		for (size_t k = 0; k < c->states[i].nsave; k++)
			if (c->states[i].save[k] != NULL &&
			    strcmp(c->states[i].save[k], name) == 0)
				return true;
	return false;
}

/* A passed field is declared, or saved from an earlier reply. */
static void
check_pass(struct builder *b, const struct chart_state *s, char **pass,
           size_t n)
{
	char hint[CHART_TYPE_MAX + 24];

	for (size_t i = 0; i < n; i++)
		if (pass[i] != NULL &&
		    chart_field_find(b->c, pass[i]) == NULL &&
		    !saved_somewhere(b->c, pass[i]))
			err_at(b->x, s->line, s->col,
			       "state \"%s\" passes field \"%s\", which is "
			       "neither declared under fields: nor saved from "
			       "a reply%s",
			       s->name, pass[i],
			       field_hint(b->c, pass[i], true, hint,
			                  sizeof(hint)));
}

/* " (did you mean ...)" for a name that is not a state; final states
 * only when `finals`. */
static const char *
state_hint(const struct chart *c, const char *name, bool finals, char *buf,
           size_t cap)
{
	struct chart_near near;

	chart_near_init(&near, name);
	for (size_t i = 0; i < c->nstates; i++)
		if (!finals || c->states[i].type == STATE_FINAL)
			chart_near_try(&near, c->states[i].name);
	return near_hint(&near, buf, cap);
}

static void
resolve_targets(struct builder *b)
{
	char hint[CHART_TYPE_MAX + 24];

	for (size_t i = 0; i < b->ntargets; i++) {
		struct pending_target *t = &b->targets[i];
		int idx;
		if (t->name == NULL)
			continue;
		if (strcmp(t->name, CHART_JOIN_NAME) == 0 &&
		    !t->must_be_final) {
			*t->slot = JOIN_PENDING; /* check_parallel */
			continue;
		}
		idx = chart_state_index(b->c, t->name);
		if (idx < 0) {
			err_at(b->x, t->line, t->col,
			       "%s \"%s\" is not a state%s", t->what, t->name,
			       state_hint(b->c, t->name, t->must_be_final, hint,
			                  sizeof(hint)));
			continue;
		}
		if (t->must_be_final && b->c->states[idx].type != STATE_FINAL) {
			err_at(b->x, t->line, t->col,
			       "%s \"%s\" must be a final state, it is a %s "
			       "state",
			       t->what, t->name,
			       chart_state_type_name(b->c->states[idx].type));
			continue;
		}
		*t->slot = idx;
	}
}

/* A branch's `join` goes on at its parallel state's `next`: the graph
 * checks see that edge, not one back to the parallel state (which would
 * be a cycle that is not there). */
struct join_edge {
	void (*fn)(void *, int);
	void *arg;
	int par, next;
};

static void
via_join(void *arg, int to)
{
	const struct join_edge *j = arg;

	j->fn(j->arg, to == j->par ? j->next : to);
}

/* Calls fn for every transition out of state i. */
static void
for_each_exit(const struct chart *c, size_t i, void (*fn)(void *, int),
              void *arg)
{
	const struct chart_state *s = &c->states[i];
	struct join_edge j = {fn, arg, s->parallel, -1};

	if (s->parallel >= 0) {
		j.next = c->states[s->parallel].next;
		fn = via_join;
		arg = &j;
	}
	if (chart_cancel_accepted(c, (int)i)) /* a customer's cancel */
		fn(arg, c->cancel_final);
	switch (s->type) {
	case STATE_STEP:
		for (size_t k = 0; k < s->nreplies; k++)
			if (s->replies[k].target >= 0)
				fn(arg, s->replies[k].target);
		fn(arg,
		   s->exhausted_target >= 0 ? s->exhausted_target : c->failure);
		break;
	case STATE_CHOICE:
		for (size_t k = 0; k < s->nbranches; k++)
			if (s->branches[k].target >= 0)
				fn(arg, s->branches[k].target);
		if (s->default_target >= 0)
			fn(arg, s->default_target);
		break;
	case STATE_WAIT:
		if (s->next >= 0)
			fn(arg, s->next);
		break;
	case STATE_FINAL:
		break;
	case STATE_PARALLEL:
		for (size_t k = 0; k < s->nfork; k++)
			fn(arg, s->fork[k]);
		if (s->next >= 0)
			fn(arg, s->next);
		break;
	}
}

/* Calls fn for every transition out of state i, and for the one its
 * bound takes instead of entering it. */
static void
for_each_edge(const struct chart *c, size_t i, void (*fn)(void *, int),
              void *arg)
{
	const struct chart_state *s = &c->states[i];

	for_each_exit(c, i, fn, arg);
	if (s->max_visits > 0 && s->too_many_target >= 0)
		fn(arg, s->too_many_target);
}

/* Calls fn with a pointer to every GOTO target of state i: the
 * transitions that stay inside a branch when i is in one. */
static void
for_each_goto(struct chart *c, size_t i, void (*fn)(void *, int *), void *arg)
{
	struct chart_state *s = &c->states[i];

	if (s->type == STATE_STEP) {
		for (size_t k = 0; k < s->nreplies; k++)
			if (s->replies[k].kind == REPLY_GOTO)
				fn(arg, &s->replies[k].target);
	} else if (s->type == STATE_CHOICE) {
		for (size_t k = 0; k < s->nbranches; k++)
			if (s->branches[k].kind == REPLY_GOTO)
				fn(arg, &s->branches[k].target);
		fn(arg, &s->default_target);
	} else if (s->type == STATE_WAIT || s->type == STATE_PARALLEL) {
		fn(arg, &s->next);
	}
}

/* Following one branch from its first state. */
struct branch_walk {
	struct builder *b;
	int par, branch; /* the parallel state, the branch's index */
	int from;        /* the state whose targets are followed */
	int *stack;
	size_t n;
	bool ok; /* CHART_IS_JOIN reached, or a state that reaches it */
	const char *can;
};

/* Adds state `to` to the branch; an error if it cannot be in it. */
static void
branch_add(struct branch_walk *w, int to, const char *via)
{
	struct chart *c = w->b->c;
	struct chart_state *t = &c->states[to];
	const struct chart_state *p = &c->states[w->par];

	if (t->parallel == w->par && t->branch == w->branch)
		return;
	if (t->parallel >= 0) {
		err_at(w->b->x, t->line, t->col,
		       "state \"%s\" is in branch %d of parallel state \"%s\" "
		       "and in branch %d of \"%s\": branches share no state",
		       t->name, t->branch + 1, c->states[t->parallel].name,
		       w->branch + 1, p->name);
		return;
	}
	if (t->type != STATE_STEP && t->type != STATE_CHOICE) {
		err_at(w->b->x, t->line, t->col,
		       "%s state \"%s\" cannot be in branch %d of parallel "
		       "state \"%s\" (%s): a branch holds step and choice "
		       "states and ends with join",
		       chart_state_type_name(t->type), t->name, w->branch + 1,
		       p->name, via);
		return;
	}
	t->parallel = w->par;
	t->branch = w->branch;
	w->stack[w->n++] = to;
}

static void
walk_target(void *arg, int *slot)
{
	struct branch_walk *w = arg;

	if (*slot == JOIN_PENDING)
		*slot = w->par;
	else if (*slot >= 0 && *slot != w->par)
		branch_add(w, *slot, "a transition of the branch leads to it");
	else if (*slot == w->par)
		err_at(w->b->x, w->b->c->states[w->from].line,
		       w->b->c->states[w->from].col,
		       "state \"%s\" leads to its own parallel state \"%s\": "
		       "write join to end the branch",
		       w->b->c->states[w->from].name,
		       w->b->c->states[w->par].name);
}

static void
walk_branch(struct builder *b, int par, int branch, int *stack)
{
	struct branch_walk w = {b, par, branch, par, stack, 0, false, NULL};
	const struct chart_state *p = &b->c->states[par];

	if (p->fork[branch] < 0) {
		err_at(b->x, p->line, p->col,
		       "parallel state \"%s\": branch %d must start at a "
		       "step or choice state",
		       p->name, branch + 1);
		return;
	}
	branch_add(&w, p->fork[branch], "the branch starts there");
	while (w.n > 0) {
		w.from = stack[--w.n];
		for_each_goto(b->c, (size_t)w.from, walk_target, &w);
	}
}

/* A `join` left unresolved is outside every branch. */
static void
stray_join(void *arg, int *slot)
{
	struct branch_walk *w = arg;
	const struct chart_state *s = &w->b->c->states[w->from];

	if (*slot != JOIN_PENDING)
		return;
	*slot = -1;
	err_at(w->b->x, s->line, s->col,
	       "state \"%s\": \"join\" outside a branch of a parallel state",
	       s->name);
}

/* A GOTO from outside a branch into it. */
static void
entry_from(void *arg, int *slot)
{
	struct branch_walk *w = arg;
	const struct chart *c = w->b->c;
	const struct chart_state *f = &c->states[w->from], *t;

	if (*slot < 0)
		return;
	t = &c->states[*slot];
	if (t->parallel < 0 || CHART_IS_JOIN(c, w->from, *slot) ||
	    (f->parallel == t->parallel && f->branch == t->branch))
		return;
	err_at(w->b->x, t->line, t->col,
	       "state \"%s\" is in branch %d of parallel state \"%s\": it "
	       "cannot be entered from \"%s\", outside the branch",
	       t->name, t->branch + 1, c->states[t->parallel].name, f->name);
}

/* A for_each_goto callback: `slot` is not written here. */
static void
/* cppcheck-suppress constParameter */
reach_join(void *arg, int *slot)
{
	struct branch_walk *w = arg;

	if (*slot >= 0 &&
	    (CHART_IS_JOIN(w->b->c, w->from, *slot) || w->can[*slot]))
		w->ok = true;
}

/* Every state of a branch has a way to join. */
static void
check_joins(struct builder *b, char *can)
{
	struct chart *c = b->c;
	bool changed = true;

	while (changed) {
		changed = false;
		for (size_t i = 0; i < c->nstates; i++) {
			struct branch_walk w = {b,    -1, -1,    (int)i,
			                        NULL, 0,  false, can};
			if (can[i] || c->states[i].parallel < 0)
				continue;
			for_each_goto(c, i, reach_join, &w);
			if (w.ok)
				can[i] = changed = true;
		}
	}
	for (size_t i = 0; i < c->nstates; i++)
		if (c->states[i].parallel >= 0 && !can[i])
			err_at(b->x, c->states[i].line, c->states[i].col,
			       "state \"%s\" in branch %d of parallel state "
			       "\"%s\" has no way to join",
			       c->states[i].name, c->states[i].branch + 1,
			       c->states[c->states[i].parallel].name);
}

/* Finds the states of every branch and checks the branch rules
 * (statecharts/README.md, "parallel"). */
static void
check_parallel(struct builder *b)
{
	struct chart *c = b->c;
	int *stack = calloc(c->nstates + 1, sizeof(int));
	char *can = calloc(c->nstates + 1, 1);

	if (stack == NULL || can == NULL) {
		err_at(b->x, 0, 0, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < c->nstates; i++)
		for (size_t k = 0; c->states[i].type == STATE_PARALLEL &&
		                   k < c->states[i].nfork;
		     k++)
			walk_branch(b, (int)i, (int)k, stack);
	for (size_t i = 0; i < c->nstates; i++) {
		struct branch_walk w = {b,    -1, -1,    (int)i,
		                        NULL, 0,  false, NULL};
		for_each_goto(c, i, stray_join, &w);
		for_each_goto(c, i, entry_from, &w);
	}
	if (c->initial >= 0 && c->states[c->initial].parallel >= 0)
		err_at(b->x, c->states[c->initial].line,
		       c->states[c->initial].col,
		       "the initial state \"%s\" is in a branch of a parallel "
		       "state",
		       c->states[c->initial].name);
	if (b->x->nerr == 0)
		check_joins(b, can);
out:
	free(stack);
	free(can);
}

struct mark {
	char *seen;
	int *stack;
	size_t n;
};

static void
visit(void *arg, int to)
{
	struct mark *m = arg;
	if (to >= 0 && !m->seen[to]) {
		m->seen[to] = 1;
		m->stack[m->n++] = to;
	}
}

struct reach_final {
	const char *can;
	bool any;
};

static void
edge_to_good(void *arg, int to)
{
	struct reach_final *r = arg;
	if (to >= 0 && r->can[to])
		r->any = true;
}

static void
check_graph(struct builder *b)
{
	struct chart *c = b->c;
	struct mark m;
	char *can;
	bool changed = true;

	if (c->nstates == 0 || c->initial < 0)
		return;
	m.seen = calloc(c->nstates, 1);
	m.stack = calloc(c->nstates * 4 + 4, sizeof(int));
	can = calloc(c->nstates, 1);
	if (m.seen == NULL || m.stack == NULL || can == NULL) {
		err_at(b->x, 0, 0, "out of memory");
		goto out;
	}
	m.n = 0;
	visit(&m, c->initial);
	while (m.n > 0)
		for_each_edge(c, (size_t)m.stack[--m.n], visit, &m);
	for (size_t i = 0; i < c->nstates; i++)
		if (!m.seen[i])
			err_at(b->x, c->states[i].line, c->states[i].col,
			       "state \"%s\" is unreachable from the initial "
			       "state \"%s\"",
			       c->states[i].name, c->states[c->initial].name);
	for (size_t i = 0; i < c->nstates; i++)
		can[i] = c->states[i].type == STATE_FINAL;
	while (changed) {
		changed = false;
		for (size_t i = 0; i < c->nstates; i++) {
			struct reach_final r = {can, false};
			if (can[i])
				continue;
			for_each_edge(c, i, edge_to_good, &r);
			if (r.any) {
				can[i] = 1;
				changed = true;
			}
		}
	}
	for (size_t i = 0; i < c->nstates; i++)
		if (m.seen[i] && !can[i])
			err_at(b->x, c->states[i].line, c->states[i].col,
			       "state \"%s\" has no way to a final state",
			       c->states[i].name);
out:
	free(m.seen);
	free(m.stack);
	free(can);
}

/* ---- loops ----
 *
 * Every loop through a step must pass a state with max_visits: each visit
 * of a step is a new command (engine.h, "Loops"), so an unbounded loop
 * would charge, reserve or ship without end. The graph has two nodes per
 * state: "entering i" (node i) and "in i" (node n + i). Entering leads
 * in, or, past the state's bound, to entering its too_many target (a
 * goto); being in a state leads to entering each of its exits. The "in"
 * node of a bounded state is left out: a loop through it ends after
 * max_visits turns. A loop through a too_many edge is not bounded by it:
 * the refused state is not entered, so nothing counts. */

struct loops {
	const struct chart *c;
	int n;
	int *parent; /* BFS: the node each node was reached from; -2 unseen */
	int *queue;
	size_t tail;
	int from, start;
};

static void
loop_push(struct loops *l, int node)
{
	if (l->parent[node] != -2)
		return;
	l->parent[node] = l->from;
	if (node != l->start)
		l->queue[l->tail++] = node;
}

static void
loop_enter(void *arg, int to)
{
	if (to >= 0)
		loop_push(arg, to);
}

/* Pushes the nodes one edge from `node`. */
static void
loop_next(struct loops *l, int node)
{
	const struct chart_state *s;

	l->from = node;
	if (node >= l->n) {
		for_each_exit(l->c, (size_t)(node - l->n), loop_enter, l);
		return;
	}
	s = &l->c->states[node];
	if (s->max_visits == 0)
		loop_push(l, l->n + node);
	else if (s->too_many_kind == REPLY_GOTO && s->too_many_target >= 0)
		loop_push(l, s->too_many_target);
}

/* True if a loop leads from "in step" back to it; parent[] then holds
 * it. */
static bool
loop_find(struct loops *l, int step)
{
	size_t head = 0;

	for (int i = 0; i < 2 * l->n; i++)
		l->parent[i] = -2;
	l->start = l->n + step;
	l->tail = 0;
	l->queue[l->tail++] = l->start;
	while (head < l->tail && l->parent[l->start] == -2)
		loop_next(l, l->queue[head++]);
	return l->parent[l->start] != -2;
}

/* The loop found, as "a -> b -> a"; marks the steps on it in done[]. */
static void
loop_text(struct loops *l, char *buf, size_t cap, bool *done)
{
	int *path = l->queue, len = 0, node = l->start;
	size_t used = 0;

	do { /* backwards from start to start */
		path[len++] = node;
		node = l->parent[node];
	} while (node != l->start && len < 2 * l->n);
	path[len++] = l->start;
	buf[0] = '\0';
	for (int i = len - 1; i >= 0; i--) {
		int v = path[i];
		const char *name;
		if (v < l->n && i > 0 && path[i - 1] == l->n + v)
			continue; /* entering, then in: one state */
		name = l->c->states[v % l->n].name;
		if (v >= l->n && l->c->states[v - l->n].type == STATE_STEP)
			done[v - l->n] = true;
		snprintf(buf + used, cap - used, "%s%s%s",
		         used > 0 ? " -> " : "", name,
		         v < l->n ? " (past max_visits)" : "");
		used += strlen(buf + used);
		if (used + 1 >= cap)
			break;
	}
}

static void
check_loops(struct builder *b)
{
	const struct chart *c = b->c;
	struct loops l = {.c = c, .n = (int)c->nstates};
	bool *done = calloc(c->nstates + 1, sizeof(bool));
	char text[1024];

	l.parent = calloc(2 * c->nstates + 1, sizeof(int));
	l.queue = calloc(2 * c->nstates + 2, sizeof(int));
	if (done == NULL || l.parent == NULL || l.queue == NULL) {
		err_at(b->x, 0, 0, "out of memory");
		goto out;
	}
	for (int i = 0; i < l.n; i++) {
		const struct chart_state *s = &c->states[i];
		if (s->type != STATE_STEP || s->max_visits > 0 || done[i] ||
		    !loop_find(&l, i))
			continue;
		loop_text(&l, text, sizeof(text), done);
		err_at(b->x, s->line, s->col,
		       "step \"%s\" is on a loop that nothing bounds: %s "
		       "(add max_visits to a state on it)",
		       s->name, text);
	}
out:
	free(done);
	free(l.parent);
	free(l.queue);
}

/* ---- version: FNV-1a over a canonical text ---- */

struct hash {
	uint64_t h;
};

static void
hput(struct hash *h, const char *s)
{
	static const unsigned char sep = 0xff; /* field separator */

	h->h = hash_fnv1a_str(h->h, s ? s : "\x01");
	h->h = hash_fnv1a(h->h, &sep, 1);
}

static void
hint(struct hash *h, long long v)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%lld", v);
	hput(h, buf);
}

static void
hretry(struct hash *h, const struct chart_retry *r)
{
	char buf[64];
	hint(h, r->attempts);
	hint(h, r->backoff_ms);
	snprintf(buf, sizeof(buf), "%.6f", r->multiplier);
	hput(h, buf);
	hint(h, r->cap_ms);
}

static void
hvalue(struct hash *h, const struct value *v)
{
	char buf[64];
	if (v->type == VALUE_ARRAY) {
		hint(h, (long long)v->u.a.len);
		for (size_t i = 0; i < v->u.a.len; i++)
			hvalue(h, &v->u.a.items[i]);
		return;
	}
	hput(h, value_type_name(v->type));
	value_scalar_text(v, buf, sizeof(buf));
	hput(h, buf);
}

static void
hstrv(struct hash *h, char **v, size_t n)
{
	hint(h, (long long)n);
	for (size_t i = 0; i < n; i++)
		hput(h, v[i]);
}

/* The fields in the order of their paths: their order in the file is not
 * content. Each pass takes the least path after the last one taken, so
 * nothing is copied and the version cannot come out different when
 * memory is short. Paths are unique: they are a mapping's keys, and a
 * chart with a duplicate key has no version. */
static void
hfields(struct hash *h, const struct chart *c)
{
	const char *last = NULL;

	for (size_t pass = 0; pass < c->nfields; pass++) {
		const struct chart_field *next = NULL;
		for (size_t k = 0; k < c->nfields; k++) {
			const struct chart_field *f = &c->fields[k];
			if (last != NULL && strcmp(f->path, last) <= 0)
				continue;
			if (next == NULL || strcmp(f->path, next->path) < 0)
				next = f;
		}
		assert(next != NULL);
		hput(h, next->path);
		hint(h, next->type);
		last = next->path;
	}
}

/* A state's replies in the order of their types: a mapping, so their
 * order in the file is not content. */
static void
hreplies(struct hash *h, const struct chart_state *s)
{
	hint(h, (long long)s->nreplies);
	for (size_t pass = 0; pass < s->nreplies; pass++) {
		const struct chart_reply *best = NULL;
		for (size_t k = 0; k < s->nreplies; k++) {
			const struct chart_reply *r = &s->replies[k];
			size_t rank = 0;
			for (size_t j = 0; j < s->nreplies; j++)
				if (strcmp(s->replies[j].type, r->type) < 0)
					rank++;
			if (rank == pass)
				best = r;
		}
		if (best != NULL) {
			hput(h, best->type);
			hint(h, best->kind);
			hint(h, best->target);
		}
	}
}

static void
hcompensate(struct hash *h, const struct chart_compensation *k)
{
	if (k == NULL)
		return;
	hput(h, "compensate");
	hput(h, k->to);
	hput(h, k->command);
	hput(h, k->route);
	hstrv(h, k->pass, k->npass);
	hstrv(h, k->ok, k->nok);
	hint(h, k->timeout_ms);
	hretry(h, &k->retry);
}

static void
hbranches(struct hash *h, const struct chart_state *s)
{
	hint(h, (long long)s->nbranches);
	for (size_t k = 0; k < s->nbranches; k++) {
		const struct chart_branch *br = &s->branches[k];
		hint(h, br->kind);
		hint(h, br->target);
		hint(h, (long long)br->nconds);
		for (size_t j = 0; j < br->nconds; j++) {
			hput(h, br->conds[j].field);
			hint(h, br->conds[j].op);
			hvalue(h, &br->conds[j].operand);
		}
	}
}

/* What later versions of the language added is hashed only when a state
 * uses it, so the charts written before keep their versions. */
static void
hadded(struct hash *h, const struct chart_state *s)
{
	if (s->max_visits > 0) {
		hput(h, "max_visits");
		hint(h, s->max_visits);
		hint(h, s->too_many_kind);
		hint(h, s->too_many_target);
	}
	if (s->stuck_after_ms > 0) {
		hput(h, "stuck_after");
		hint(h, s->stuck_after_ms);
	}
	if (s->type == STATE_PARALLEL) {
		hput(h, "parallel");
		hint(h, (long long)s->nfork);
		for (size_t k = 0; k < s->nfork; k++)
			hint(h, s->fork[k]);
	}
}

static void
hstate(struct hash *h, const struct chart_state *s)
{
	hput(h, s->name);
	hint(h, s->type);
	hput(h, s->emit);
	hput(h, s->to);
	hput(h, s->command);
	hput(h, s->route);
	hstrv(h, s->pass, s->npass);
	hreplies(h, s);
	hstrv(h, s->save, s->nsave);
	hint(h, s->timeout_ms);
	/* only when not the built-in value (charts before deadlines) */
	if (s->type == STATE_STEP &&
	    s->deadline_ms != CHART_DEADLINE_DEFAULT_MS) {
		hput(h, "deadline");
		hint(h, s->deadline_ms);
	}
	hretry(h, &s->retry);
	hint(h, s->exhausted_target);
	hcompensate(h, s->compensate);
	hbranches(h, s);
	hint(h, s->default_target);
	hint(h, s->duration_ms);
	hint(h, s->next);
	hadded(h, s);
}

/* The version: a hash of the content, not of the text (comments, layout
 * and key order do not count). test_chart_load pins the shipped charts'
 * versions: the order of what is hashed here is part of the format. */
static void
compute_version(struct chart *c)
{
	struct hash h = {HASH_FNV_INIT};

	hput(&h, "saga-chart-v1");
	hput(&h, c->name);
	hint(&h, c->initial);
	hint(&h, c->failure);
	hfields(&h, c);
	for (size_t i = 0; i < c->nstates; i++)
		hstate(&h, &c->states[i]);
	if (c->cancel_final >= 0) { /* hashed only when present */
		hput(&h, "cancel");
		hint(&h, c->cancel_final);
		for (size_t i = 0; i < c->ncancel_in; i++)
			hint(&h, c->cancel_in[i]);
	}
	snprintf(c->version, sizeof(c->version), "%016llx",
	         (unsigned long long)h.h);
}

/* ---- cancel ---- */

/* `cancel: {final: F, in: [S, ...]}`: targets resolved with the others. */
static void
build_cancel(struct builder *b, struct node *n)
{
	static const char *const keys[] = {"final", "in", "description", NULL};
	struct chart *c = b->c;
	struct node *in, *fin;

	c->cancel_final = -1;
	if (n == NULL || !want_kind(b->x, n, N_MAP, "\"cancel\""))
		return;
	check_keys(b->x, n, "cancel", keys);
	fin = map_get(n, "final");
	in = map_get(n, "in");
	if (fin == NULL || in == NULL) {
		err_at(b->x, n->line, n->col,
		       "\"cancel\" needs \"final\" (the final state a "
		       "cancelled order ends in) and \"in\" (the states in "
		       "which a cancel is accepted)");
		return;
	}
	want_target(b, &c->cancel_final, fin, "\"cancel\" final", true);
	if (in->kind == N_SCALAR) {
		c->cancel_in = calloc(1, sizeof(int));
		if (c->cancel_in != NULL) {
			c->ncancel_in = 1;
			want_target(b, &c->cancel_in[0], in, "\"cancel\" in",
			            false);
		}
		return;
	}
	if (!want_kind(b->x, in, N_SEQ, "\"cancel\" in"))
		return;
	c->cancel_in = calloc(in->nkids + 1, sizeof(int));
	if (c->cancel_in == NULL) {
		err_at(b->x, 0, 0, "out of memory");
		return;
	}
	c->ncancel_in = in->nkids;
	for (size_t i = 0; i < in->nkids; i++)
		want_target(b, &c->cancel_in[i], in->kids[i], "\"cancel\" in",
		            false);
}

/* The cancel final state is only that: a saga that reaches it after
 * compensation is `cancelled`, so no failure may end there too; and a
 * cancel is accepted only where a saga waits (not in a final state). */
static void
check_cancel(struct builder *b, struct node *n)
{
	const struct chart *c = b->c;
	int f = c->cancel_final;

	if (n == NULL || f < 0)
		return;
	if (c->failure == f)
		err_at(b->x, n->line, n->col,
		       "\"cancel\" final \"%s\" is also the top-level "
		       "failure: give cancelled orders a final state of "
		       "their own",
		       c->states[f].name);
	for (size_t i = 0; i < c->nstates; i++) {
		const struct chart_state *s = &c->states[i];
		bool used = s->exhausted_target == f;
		for (size_t k = 0; k < s->nreplies; k++)
			used |= s->replies[k].target == f;
		for (size_t k = 0; k < s->nbranches; k++)
			used |= s->branches[k].target == f;
		used |= (s->type == STATE_CHOICE && s->default_target == f) ||
		        (s->type == STATE_WAIT && s->next == f);
		if (used)
			err_at(b->x, s->line, s->col,
			       "state \"%s\" leads to \"%s\", the cancel "
			       "final state: give cancelled orders a final "
			       "state of their own",
			       s->name, c->states[f].name);
	}
	for (size_t i = 0; i < c->ncancel_in; i++) {
		int k = c->cancel_in[i];
		if (k >= 0 && c->states[k].type == STATE_FINAL)
			err_at(b->x, c->states[k].line, c->states[k].col,
			       "\"cancel\" in: \"%s\" is a final state: "
			       "nothing is left to cancel there",
			       c->states[k].name);
		else if (k >= 0 && c->states[k].parallel >= 0)
			err_at(b->x, c->states[k].line, c->states[k].col,
			       "\"cancel\" in: \"%s\" is in a branch of "
			       "\"%s\": name the parallel state",
			       c->states[k].name,
			       c->states[c->states[k].parallel].name);
	}
}

/* A bound's default target ({fail: <failure>}), and a too_many that
 * leads back to its own state (refused again, and again). */
static void
bound_defaults(struct builder *b, struct chart_state *s, struct node *n)
{
	if (s->max_visits == 0)
		return;
	if (map_get(n, "too_many") == NULL) {
		s->too_many_kind = REPLY_FAIL;
		s->too_many_target = b->c->failure;
		if (s->too_many_target < 0)
			err_at(b->x, s->line, s->col,
			       "state \"%s\": nowhere to go past max_visits: "
			       "add \"too_many: <state>\" or a top-level "
			       "\"failure:\" (or a final state named failed)",
			       s->name);
		return;
	}
	if (s->too_many_target >= 0 && &b->c->states[s->too_many_target] == s)
		err_at(b->x, s->line, s->col,
		       "state \"%s\": \"too_many\" leads back to \"%s\" "
		       "itself, which is past its bound",
		       s->name, s->name);
}

/* A saga in a branch of a parallel state is in the parallel state (its
 * sagas row names that one): a limit belongs there. Steps and parallel
 * states outside branches without their own take defaults: stuck_after;
 * wait states only their own (a long wait is what they are for). */
static void
stuck_after_defaults(struct builder *b, struct node *states)
{
	struct chart *c = b->c;

	for (size_t i = 0; i < c->nstates; i++) {
		struct chart_state *s = &c->states[i];
		struct node *k =
		        map_get(states->kids[2 * i + 1], "stuck_after");

		if (s->parallel >= 0 && k != NULL)
			err_at(b->x, k->line, k->col,
			       "state \"%s\" is in a branch of parallel state "
			       "\"%s\", where its sagas wait: put "
			       "\"stuck_after\" there",
			       s->name, c->states[s->parallel].name);
		if (k == NULL && s->parallel < 0 &&
		    (s->type == STATE_STEP || s->type == STATE_PARALLEL))
			s->stuck_after_ms = b->def_stuck_after;
		if (s->parallel >= 0)
			s->stuck_after_ms = 0;
	}
}

/* ---- top level ---- */

/* The top-level "defaults": each step's timeout, deadline, stuck_after
 * and retries unless it says otherwise (the built-in ones without). */
static void
build_defaults(struct builder *b, struct node *root)
{
	static const char *const dkeys[] = {"timeout",     "deadline",
	                                    "retry",       "compensate_retry",
	                                    "stuck_after", NULL};
	struct node *defaults = map_get(root, "defaults");

	b->def_timeout = 10000;
	b->def_deadline = CHART_DEADLINE_DEFAULT_MS;
	b->def_retry = (struct chart_retry){3, 1000, 2.0, 30000};
	b->def_comp_retry = (struct chart_retry){5, 1000, 2.0, 60000};
	if (defaults == NULL ||
	    !want_kind(b->x, defaults, N_MAP, "\"defaults\""))
		return;
	check_keys(b->x, defaults, "defaults", dkeys);
	get_duration(b->x, defaults, "timeout", "defaults", &b->def_timeout);
	get_duration(b->x, defaults, "deadline", "defaults", &b->def_deadline);
	get_duration(b->x, defaults, "stuck_after", "defaults",
	             &b->def_stuck_after);
	if (map_get(defaults, "retry") != NULL)
		build_retry(b, map_get(defaults, "retry"), "defaults retry",
		            &b->def_retry);
	if (map_get(defaults, "compensate_retry") != NULL)
		build_retry(b, map_get(defaults, "compensate_retry"),
		            "defaults compensate_retry", &b->def_comp_retry);
}

/* "states": every state built, names first so that targets resolve
 * whatever the order. The node, or NULL with the error set. */
static struct node *
build_states(struct builder *b, struct node *root)
{
	struct node *states = map_get(root, "states");
	struct chart *c = b->c;

	if (states == NULL) {
		err_at(b->x, root->line, root->col,
		       "the statechart: missing key \"states\"");
		return NULL;
	}
	if (!want_kind(b->x, states, N_MAP, "\"states\""))
		return NULL;
	if (states->nkids == 0) {
		err_at(b->x, states->line, states->col, "no states");
		return NULL;
	}
	if (states->nkids / 2 > CHART_STATES_MAX) {
		err_at(b->x, states->line, states->col,
		       "%zu states: at most %d (a saga counts the visits of "
		       "each)",
		       states->nkids / 2, CHART_STATES_MAX);
		return NULL;
	}
	c->states = calloc(states->nkids / 2, sizeof(*c->states));
	if (c->states == NULL) {
		err_at(b->x, 0, 0, "out of memory");
		return NULL;
	}
	c->nstates = states->nkids / 2;
	for (size_t i = 0; i < c->nstates; i++)
		build_state(b, &c->states[i], states->kids[2 * i],
		            states->kids[2 * i + 1]);
	return states;
}

/* The per-state checks that need the whole chart (its targets resolved,
 * its failure state known). */
static void
check_states(struct builder *b, struct node *states)
{
	struct chart *c = b->c;

	for (size_t i = 0; i < c->nstates; i++) {
		struct chart_state *s = &c->states[i];
		struct node *def = states->kids[2 * i + 1];
		bound_defaults(b, s, def);
		if (s->type != STATE_STEP)
			continue;
		check_route(b, s, s->route, "route");
		check_pass(b, s, s->pass, s->npass);
		if (s->compensate != NULL) {
			check_route(b, s, s->compensate->route,
			            "compensation route");
			check_pass(b, s, s->compensate->pass,
			           s->compensate->npass);
		}
		if (s->exhausted_target >= 0 ||
		    map_get(def, "exhausted") != NULL)
			continue;
		s->exhausted_target = c->failure; /* the default */
		if (s->exhausted_target < 0)
			err_at(b->x, s->line, s->col,
			       "state \"%s\": nowhere to go when its attempts "
			       "run out: add \"exhausted: <final state>\" or a "
			       "top-level \"failure:\" (or a final state named "
			       "failed)",
			       s->name);
	}
}

static void
build_chart(struct builder *b, struct node *root)
{
	static const char *const keys[] = {"saga",    "description", "initial",
	                                   "failure", "fields",      "defaults",
	                                   "states",  "cancel",      NULL};
	struct node *states, *init, *fail;
	struct chart *c = b->c;

	if (!want_kind(b->x, root, N_MAP, "a statechart"))
		return;
	check_keys(b->x, root, "the statechart", keys);
	c->name = get_str(b->x, root, "saga", "the statechart", true, "-");
	build_defaults(b, root);
	if (map_get(root, "fields") != NULL)
		build_fields(b, map_get(root, "fields"));
	if ((states = build_states(b, root)) == NULL)
		return;
	c->initial = -1;
	init = map_get(root, "initial");
	if (init == NULL)
		err_at(b->x, root->line, root->col,
		       "the statechart: missing key \"initial\"");
	else
		want_target(b, &c->initial, init, "\"initial\"", false);
	c->failure = -1;
	fail = map_get(root, "failure");
	if (fail != NULL)
		want_target(b, &c->failure, fail, "\"failure\"", true);
	build_cancel(b, map_get(root, "cancel"));
	resolve_targets(b);
	if (fail == NULL) {
		int f = chart_state_index(c, "failed");
		if (f >= 0 && c->states[f].type == STATE_FINAL)
			c->failure = f;
	}
	check_states(b, states);
	check_cancel(b, map_get(root, "cancel"));
	if (b->x->nerr == 0)
		check_parallel(b);
	if (b->x->nerr == 0)
		stuck_after_defaults(b, states);
	if (b->x->nerr == 0)
		check_graph(b);
	if (b->x->nerr == 0)
		check_loops(b);
}

struct chart *
chart_load_buffer(const char *name, const char *buf, size_t len,
                  struct chart_errors *errs)
{
	struct ctx x = {name, buf, len, errs, 0};
	struct builder b;
	struct node *root;
	struct chart *c;

	memset(&b, 0, sizeof(b));
	b.x = &x;
	if (len == 0) {
		err_at(&x, 0, 0, "empty statechart");
		return NULL;
	}
	root = parse_tree(&x);
	if (root == NULL)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		err_at(&x, 0, 0, "out of memory");
		node_free(root);
		return NULL;
	}
	c->initial = c->failure = -1;
	c->file = xstrdup(&x, name);
	b.c = c;
	build_chart(&b, root);
	for (size_t i = 0; i < b.ntargets; i++)
		free(b.targets[i].name);
	free(b.targets);
	node_free(root);
	if (x.nerr > 0) {
		chart_free(c);
		return NULL;
	}
	compute_version(c);
	return c;
}

struct chart *
chart_load_file(const char *path, struct chart_errors *errs)
{
	struct ctx x = {path, NULL, 0, errs, 0};
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;
	struct chart *c;

	if (f == NULL) {
		err_at(&x, 0, 0, "cannot open: %s", strerror(errno));
		return NULL;
	}
	buf = malloc(MAX_FILE + 1);
	if (buf == NULL) {
		fclose(f);
		err_at(&x, 0, 0, "out of memory");
		return NULL;
	}
	n = fread(buf, 1, MAX_FILE + 1, f);
	if (ferror(f)) {
		err_at(&x, 0, 0, "cannot read: %s", strerror(errno));
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	if (n > MAX_FILE) {
		err_at(&x, 0, 0, "larger than 1 MiB");
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	c = chart_load_buffer(path, buf, n, errs);
	free(buf);
	return c;
}

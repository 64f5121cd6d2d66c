/* chart.c -- the statechart model's helpers (see chart.h): freeing,
 * lookups, routing-key rendering, guard evaluation, retry delays. The
 * loader (chart_load.c) builds charts; the engine reads them. */
#include "chart.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void
free_state(struct chart_state *s)
{
	free(s->name);
	free(s->emit);
	free(s->to);
	free(s->command);
	free(s->route);
	free_strv(s->pass, s->npass);
	for (size_t i = 0; i < s->nreplies; i++)
		free(s->replies[i].type);
	free(s->replies);
	free(s->fork);
	free_strv(s->save, s->nsave);
	if (s->compensate != NULL) {
		free(s->compensate->to);
		free(s->compensate->command);
		free(s->compensate->route);
		free_strv(s->compensate->pass, s->compensate->npass);
		free_strv(s->compensate->ok, s->compensate->nok);
		free(s->compensate);
	}
	for (size_t i = 0; i < s->nbranches; i++) {
		for (size_t k = 0; k < s->branches[i].nconds; k++) {
			free(s->branches[i].conds[k].field);
			value_clear(&s->branches[i].conds[k].operand);
		}
		free(s->branches[i].conds);
	}
	free(s->branches);
}

void
chart_free(struct chart *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nstates; i++)
		free_state(&c->states[i]);
	free(c->states);
	for (size_t i = 0; i < c->nfields; i++)
		free(c->fields[i].path);
	free(c->fields);
	free(c->cancel_in);
	free(c->name);
	free(c->file);
	free(c);
}

bool
chart_cancel_accepted(const struct chart *c, int idx)
{
	for (size_t i = 0; c->cancel_final >= 0 && i < c->ncancel_in; i++)
		if (c->cancel_in[i] == idx)
			return true;
	return false;
}

int
chart_state_index(const struct chart *c, const char *name)
{
	for (size_t i = 0; i < c->nstates; i++)
		if (strcmp(c->states[i].name, name) == 0)
			return (int)i;
	return -1;
}

const struct chart_field *
chart_field_find(const struct chart *c, const char *path)
{
	for (size_t i = 0; i < c->nfields; i++)
		if (strcmp(c->fields[i].path, path) == 0)
			return &c->fields[i];
	return NULL;
}

const struct chart_reply *
chart_step_reply(const struct chart_state *s, const char *type)
{
	for (size_t i = 0; i < s->nreplies; i++)
		if (strcmp(s->replies[i].type, type) == 0)
			return &s->replies[i];
	return NULL;
}

int
chart_render_route(chart_template tpl, const struct value *data, char *buf,
                   size_t cap, char *err, size_t errlen)
{
	size_t n = 0;
	const char *p = tpl;

	if (cap == 0)
		return -1;
	buf[0] = '\0';
	if (tpl == NULL)
		return 0;
	while (*p != '\0') {
		if (*p == '{') {
			const char *end = strchr(p, '}');
			char path[CHART_NAME_MAX * 2], text[256];
			const struct value *v;
			int len;
			if (end == NULL ||
			    (size_t)(end - p - 1) >= sizeof(path)) {
				snprintf(err, errlen,
				         "route \"%s\": unterminated {", tpl);
				return -1;
			}
			memcpy(path, p + 1, (size_t)(end - p - 1));
			path[end - p - 1] = '\0';
			v = value_path_get(data, path);
			if (v == NULL) {
				snprintf(err, errlen,
				         "route \"%s\": field %s is missing",
				         tpl, path);
				return -1;
			}
			len = value_scalar_text(v, text, sizeof(text));
			if (len < 0) {
				snprintf(err, errlen,
				         "route \"%s\": field %s is a %s, not "
				         "a scalar",
				         tpl, path, value_type_name(v->type));
				return -1;
			}
			if (len == 0) {
				snprintf(err, errlen,
				         "route \"%s\": field %s is empty", tpl,
				         path);
				return -1;
			}
			if (n + (size_t)len >= cap || n + (size_t)len > 255)
				goto too_long;
			memcpy(buf + n, text, (size_t)len);
			n += (size_t)len;
			p = end + 1;
		} else {
			if (n + 1 >= cap || n + 1 > 255)
				goto too_long;
			buf[n++] = *p++;
		}
	}
	buf[n] = '\0';
	return 0;
too_long:
	buf[0] = '\0';
	snprintf(err, errlen, "route \"%s\": longer than 255 bytes", tpl);
	return -1;
}

static bool
is_number(const struct value *v)
{
	return v->type == VALUE_INT || v->type == VALUE_FLOAT;
}

/* -1, 0, 1 like strcmp; *ok false when the two cannot be compared. */
static int
compare(const struct value *a, const struct value *b, bool *ok)
{
	*ok = true;
	if (is_number(a) && is_number(b)) {
		if (a->type == VALUE_INT && b->type == VALUE_INT)
			return (a->u.i > b->u.i) - (a->u.i < b->u.i);
		double x = a->type == VALUE_INT ? (double)a->u.i : a->u.f;
		double y = b->type == VALUE_INT ? (double)b->u.i : b->u.f;
		return (x > y) - (x < y);
	}
	if (a->type == VALUE_STR && b->type == VALUE_STR) {
		int c = strcmp(a->u.s.ptr, b->u.s.ptr);
		return (c > 0) - (c < 0);
	}
	if (a->type == VALUE_BOOL && b->type == VALUE_BOOL)
		return (int)a->u.b - (int)b->u.b;
	*ok = false;
	return 0;
}

static bool
in_list(const struct value *v, const struct value *list)
{
	if (list->type != VALUE_ARRAY)
		return false;
	for (size_t i = 0; i < list->u.a.len; i++) {
		bool ok;
		if (compare(v, &list->u.a.items[i], &ok) == 0 && ok)
			return true;
	}
	return false;
}

int
chart_cond_holds(const struct chart_cond *cond, const struct value *data)
{
	return chart_cond_eval(cond, value_path_get(data, cond->field));
}

int
chart_cond_eval(const struct chart_cond *cond, const struct value *v)
{
	bool ok = false;
	int c;

	if (cond->op == OP_PRESENT) {
		bool want = cond->operand.type == VALUE_BOOL ? cond->operand.u.b
		                                             : true;
		bool present = v != NULL && v->type != VALUE_NIL;
		return present == want;
	}
	if (v == NULL || v->type == VALUE_NIL)
		return cond->op == OP_NE || cond->op == OP_NOT_IN;
	switch (cond->op) {
	case OP_IN:
		return in_list(v, &cond->operand);
	case OP_NOT_IN:
		return !in_list(v, &cond->operand);
	default:
		break;
	}
	c = compare(v, &cond->operand, &ok);
	if (!ok) /* a type the chart did not declare: never true */
		return cond->op == OP_NE;
	switch (cond->op) {
	case OP_EQ:
		return c == 0;
	case OP_NE:
		return c != 0;
	case OP_LT:
		return c < 0;
	case OP_LE:
		return c <= 0;
	case OP_GT:
		return c > 0;
	case OP_GE:
		return c >= 0;
	default:
		return 0;
	}
}

int64_t
chart_retry_delay(const struct chart_retry *r, int next_attempt)
{
	double d = (double)r->backoff_ms;
	for (int i = 2; i < next_attempt && d < (double)r->cap_ms; i++)
		d *= r->multiplier;
	if (d > (double)r->cap_ms)
		d = (double)r->cap_ms;
	if (d < 0)
		d = 0;
	return (int64_t)llround(d);
}

const char *
chart_state_type_name(enum chart_state_type t)
{
	switch (t) {
	case STATE_STEP:
		return "step";
	case STATE_CHOICE:
		return "choice";
	case STATE_WAIT:
		return "wait";
	case STATE_FINAL:
		return "final";
	case STATE_PARALLEL:
		return "parallel";
	}
	return "?";
}

const char *
chart_field_type_name(enum chart_field_type t)
{
	switch (t) {
	case FIELD_STRING:
		return "string";
	case FIELD_INTEGER:
		return "integer";
	case FIELD_NUMBER:
		return "number";
	case FIELD_BOOLEAN:
		return "boolean";
	case FIELD_LIST:
		return "list";
	case FIELD_MAP:
		return "map";
	}
	return "?";
}

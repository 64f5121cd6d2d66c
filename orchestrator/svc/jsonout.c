/* jsonout.c -- JSON output through jansson (jsonout.h). jansson refuses
 * strings that are not UTF-8, and our text comes from the network and the
 * database, so jsonout_str repairs instead of failing the whole document.
 */
#include "jsonout.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define JSONOUT_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER)

/* The length of the UTF-8 sequence starting at p if it is a valid one
 * (jansson's own check decides), else 0. */
static size_t
utf8_seq(const char *p)
{
	unsigned char c = (unsigned char)*p;
	size_t n = c < 0x80         ? 1
	           : (c >> 5) == 6  ? 2
	           : (c >> 4) == 14 ? 3
	           : (c >> 3) == 30 ? 4
	                            : 0;
	json_t *j;

	for (size_t i = 1; i < n; i++)
		if (p[i] == '\0')
			return 0;
	if (n <= 1)
		return n;
	j = json_stringn(p, n);
	json_decref(j);
	return j != NULL ? n : 0;
}

/* s with each byte that starts no valid sequence replaced by U+FFFD. */
static json_t *
repaired(const char *s)
{
	size_t len = strlen(s), o = 0;
	char *buf = malloc(len * 3 + 1);
	json_t *j;

	if (buf == NULL)
		return NULL;
	while (*s != '\0') {
		size_t n = utf8_seq(s);
		if (n == 0) {
			memcpy(buf + o, "\xef\xbf\xbd", 3);
			o += 3;
			s++;
		} else {
			memcpy(buf + o, s, n);
			o += n;
			s += n;
		}
	}
	j = json_stringn(buf, o);
	free(buf);
	return j;
}

json_t *
jsonout_str(const char *s)
{
	json_t *j;
	if (s == NULL)
		s = "";
	j = json_string(s);
	return j != NULL ? j : repaired(s);
}

static json_t *
map_to_json(const struct value *v)
{
	json_t *o = json_object();

	for (size_t i = 0; o != NULL && i < v->u.m.len; i++) {
		json_t *k = jsonout_str(v->u.m.items[i].key);
		/* set_new takes val, also when it fails or val is NULL */
		if (k == NULL ||
		    json_object_set_new(o, json_string_value(k),
		                        jsonout_value(&v->u.m.items[i].val)) !=
		            0) {
			json_decref(o);
			o = NULL;
		}
		json_decref(k);
	}
	return o;
}

json_t *
jsonout_value(const struct value *v)
{
	json_t *a;
	char buf[48];

	switch (v->type) {
	case VALUE_NIL:
		return json_null();
	case VALUE_BOOL:
		return json_boolean(v->u.b);
	case VALUE_INT:
		return json_integer((json_int_t)v->u.i);
	case VALUE_FLOAT:
		return isfinite(v->u.f) ? json_real(v->u.f) : json_null();
	case VALUE_STR:
		return jsonout_str(v->u.s.ptr);
	case VALUE_BIN:
		snprintf(buf, sizeof(buf), "(%zu bytes)", v->u.s.len);
		return json_string(buf);
	case VALUE_ARRAY:
		a = json_array();
		for (size_t i = 0; a != NULL && i < v->u.a.len; i++) {
			if (json_array_append_new(
			            a, jsonout_value(&v->u.a.items[i])) != 0) {
				json_decref(a);
				a = NULL;
			}
		}
		return a;
	case VALUE_MAP:
		return map_to_json(v);
	}
	return NULL;
}

int
jsonout_print(FILE *f, json_t *j)
{
	int rc = -1;
	if (j != NULL && json_dumpf(j, f, JSONOUT_FLAGS) == 0 &&
	    fputc('\n', f) != EOF)
		rc = 0;
	json_decref(j);
	return rc;
}

char *
jsonout_text(const json_t *j)
{
	return json_dumps(j, JSONOUT_FLAGS);
}

json_t *
jsonout_saga_summary(const struct store_saga_summary *s)
{
	return json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:i,s:I,s:I,s:I}", "id",
	                 jsonout_str(s->id), "chart", jsonout_str(s->chart),
	                 "chart_version", jsonout_str(s->chart_version),
	                 "status", jsonout_str(s->status), "state",
	                 jsonout_str(s->state), "phase", jsonout_str(s->phase),
	                 "attempt", s->attempt, "started_at",
	                 (json_int_t)s->started_ms, "state_entered_at",
	                 (json_int_t)s->state_entered_ms, "updated_at",
	                 (json_int_t)s->updated_ms);
}

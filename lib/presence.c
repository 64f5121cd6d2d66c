/* presence.c -- participants' announcements and the orchestrator's view of
 * them: see presence.h. */
#include "presence.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the announcement ---- */

static int
put_keys(struct value *m, const struct presence_announce *a)
{
	struct value arr = VALUE_NIL_INIT;

	value_set_array(&arr);
	for (size_t i = 0; i < a->nkeys; i++) {
		struct value k = VALUE_NIL_INIT;
		if (value_set_str(&k, a->keys[i]) != 0 ||
		    value_array_push(&arr, &k) != 0) {
			value_clear(&k);
			value_clear(&arr);
			return -1;
		}
	}
	return value_map_put(m, "keys", &arr);
}

int
presence_encode(const struct presence_announce *a, int64_t now_ms,
                struct envelope *out)
{
	struct value fb = VALUE_NIL_INIT;

	assert(a->nkeys <= PRESENCE_MAX_KEYS);
	envelope_init(out);
	if (envelope_new_id(out->id, sizeof(out->id), "presence") < 0)
		return -1;
	snprintf(out->saga, sizeof(out->saga), "-");
	snprintf(out->type, sizeof(out->type), "%s", PRESENCE_TYPE);
	out->ts = now_ms;
	value_set_bool(&fb, a->fallback);
	if (value_map_put_str(&out->payload, "name", a->name) != 0 ||
	    value_map_put_str(&out->payload, "instance", a->instance) != 0 ||
	    value_map_put_int(&out->payload, "interval_ms", a->interval_ms) !=
	            0 ||
	    put_keys(&out->payload, a) != 0 ||
	    value_map_put(&out->payload, "fallback", &fb) != 0) {
		envelope_clear(out);
		return -1;
	}
	return 0;
}

static int
get_str(const struct value *m, const char *key, char *buf, size_t cap,
        char *err, size_t errlen)
{
	const struct value *v = value_map_get(m, key);

	if (v == NULL || v->type != VALUE_STR || v->u.s.len >= cap) {
		snprintf(err, errlen,
		         "presence: \"%s\" is not a string of at "
		         "most %zu bytes",
		         key, cap - 1);
		return -1;
	}
	memcpy(buf, v->u.s.ptr, v->u.s.len + 1);
	return 0;
}

static int
get_keys(const struct value *m, struct presence_announce *out, char *err,
         size_t errlen)
{
	const struct value *k = value_map_get(m, "keys");

	if (k == NULL || k->type != VALUE_ARRAY ||
	    k->u.a.len > PRESENCE_MAX_KEYS) {
		snprintf(err, errlen,
		         "presence: \"keys\" is not a list of at most %d",
		         PRESENCE_MAX_KEYS);
		return -1;
	}
	for (size_t i = 0; i < k->u.a.len; i++) {
		const struct value *s = &k->u.a.items[i];
		if (s->type != VALUE_STR || s->u.s.len == 0 ||
		    s->u.s.len >= sizeof(out->keys[0]) ||
		    memchr(s->u.s.ptr, '\0', s->u.s.len) != NULL) {
			snprintf(err, errlen,
			         "presence: keys[%zu] is not a "
			         "routing pattern",
			         i);
			return -1;
		}
		memcpy(out->keys[i], s->u.s.ptr, s->u.s.len + 1);
	}
	out->nkeys = k->u.a.len;
	return 0;
}

int
presence_decode(const struct envelope *e, struct presence_announce *out,
                char *err, size_t errlen)
{
	const struct value *m = &e->payload, *iv, *fb;

	memset(out, 0, sizeof(*out));
	if (strcmp(e->type, PRESENCE_TYPE) != 0) {
		snprintf(err, errlen, "presence: type is %s", e->type);
		return -1;
	}
	if (get_str(m, "name", out->name, sizeof(out->name), err, errlen) ||
	    get_str(m, "instance", out->instance, sizeof(out->instance), err,
	            errlen) ||
	    get_keys(m, out, err, errlen))
		return -1;
	if (out->name[0] == '\0') {
		snprintf(err, errlen, "presence: empty name");
		return -1;
	}
	iv = value_map_get(m, "interval_ms");
	if (iv == NULL || iv->type != VALUE_INT || iv->u.i < 100 ||
	    iv->u.i > 60000) {
		snprintf(err, errlen,
		         "presence: \"interval_ms\" is not 100..60000");
		return -1;
	}
	out->interval_ms = iv->u.i;
	fb = value_map_get(m, "fallback");
	if (fb == NULL || fb->type != VALUE_BOOL) {
		snprintf(err, errlen,
		         "presence: \"fallback\" is not a boolean");
		return -1;
	}
	out->fallback = fb->u.b;
	return 0;
}

/* ---- topic patterns ---- */

/* Length of the word at s (up to '.' or the end). */
static size_t
word_len(const char *s)
{
	const char *dot = strchr(s, '.');
	return dot != NULL ? (size_t)(dot - s) : strlen(s);
}

/* The rest after the word at s: past its '.', or NULL at the last word. */
static const char *
next_word(const char *s)
{
	const char *dot = strchr(s, '.');
	return dot != NULL ? dot + 1 : NULL;
}

/* p and k point at a word, or are NULL when all words are used. */
static bool
match_words(const char *p, const char *k, int depth)
{
	if (depth > 64) /* patterns here are short; bounds the recursion */
		return false;
	if (p == NULL)
		return k == NULL;
	if (word_len(p) == 1 && p[0] == '#') {
		/* '#' takes zero words, or one and stays */
		if (match_words(next_word(p), k, depth + 1))
			return true;
		return k != NULL && match_words(p, next_word(k), depth + 1);
	}
	if (k == NULL)
		return false;
	if (!(word_len(p) == 1 && p[0] == '*') &&
	    (word_len(p) != word_len(k) || memcmp(p, k, word_len(p)) != 0))
		return false;
	return match_words(next_word(p), next_word(k), depth + 1);
}

bool
presence_topic_match(const char *pattern, const char *key)
{
	return match_words(pattern, key, 0);
}

/* ---- the view ---- */

struct instance {
	struct presence_announce a;
	int64_t heard_ms; /* last heard */
	int64_t since_ms; /* heard without a gap since */
};

struct presence {
	struct instance *v;
	size_t n;
};

struct presence *
presence_new(void)
{
	struct presence *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->v = calloc(PRESENCE_MAX, sizeof(*p->v));
	if (p->v == NULL) {
		free(p);
		return NULL;
	}
	return p;
}

void
presence_free(struct presence *p)
{
	if (p == NULL)
		return;
	free(p->v);
	free(p);
}

static bool
live(const struct instance *in, int64_t now_ms)
{
	return now_ms - in->heard_ms <= PRESENCE_LAPSE * in->a.interval_ms;
}

static struct instance *
slot_for(struct presence *p, const struct presence_announce *a)
{
	size_t oldest = 0;

	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->v[i].a.name, a->name) == 0 &&
		    strcmp(p->v[i].a.instance, a->instance) == 0)
			return &p->v[i];
	if (p->n < PRESENCE_MAX) {
		memset(&p->v[p->n], 0, sizeof(p->v[0]));
		return &p->v[p->n++];
	}
	for (size_t i = 1; i < p->n; i++)
		if (p->v[i].heard_ms < p->v[oldest].heard_ms)
			oldest = i;
	memset(&p->v[oldest], 0, sizeof(p->v[0]));
	return &p->v[oldest];
}

void
presence_note(struct presence *p, const struct presence_announce *a,
              int64_t now_ms)
{
	struct instance *in = slot_for(p, a);
	bool fresh = in->a.name[0] == '\0' || !live(in, now_ms);

	in->a = *a;
	if (fresh)
		in->since_ms = now_ms;
	in->heard_ms = now_ms;
}

static bool
serves(const struct instance *in, const char *key)
{
	for (size_t k = 0; k < in->a.nkeys; k++)
		if (presence_topic_match(in->a.keys[k], key))
			return true;
	return false;
}

/* Some non-fallback instance of `to`, live or not, claims the key. */
static bool
claimed(const struct presence *p, const char *to, const char *key)
{
	for (size_t i = 0; i < p->n; i++)
		if (!p->v[i].a.fallback && strcmp(p->v[i].a.name, to) == 0 &&
		    serves(&p->v[i], key))
			return true;
	return false;
}

enum presence_verdict
presence_check(const struct presence *p, const char *to, const char *key,
               int64_t since_ms, int64_t now_ms)
{
	bool known = false, is_claimed = claimed(p, to, key);

	for (size_t i = 0; i < p->n; i++) {
		const struct instance *in = &p->v[i];
		if (strcmp(in->a.name, to) != 0)
			continue;
		known = true;
		if (in->a.fallback && is_claimed)
			continue;
		if (serves(in, key) && live(in, now_ms) &&
		    in->since_ms <= since_ms)
			return PRESENCE_TAKEN;
	}
	return known ? PRESENCE_ABSENT : PRESENCE_UNKNOWN;
}

size_t
presence_live(const struct presence *p, int64_t now_ms)
{
	size_t n = 0;
	for (size_t i = 0; i < p->n; i++)
		n += live(&p->v[i], now_ms);
	return n;
}

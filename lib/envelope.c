/* envelope.c -- see envelope.h. Field checks are table-driven: one row per
 * field with its type and bounds, so the decoder and the documentation
 * (schema/envelope.md) list the same things. */
#include "clock.h"
#include "entropy.h"
#include "envelope.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

enum field_kind { F_INT, F_STR, F_MAP };

struct field {
	const char *name;
	enum field_kind kind;
	int required;
	size_t min, max; /* string bytes */
};

static const struct field fields[] = {
        {"v", F_INT, 1, 0, 0},
        {"id", F_STR, 1, 1, ENVELOPE_ID_MAX - 1},
        {"saga", F_STR, 1, 1, ENVELOPE_ID_MAX - 1},
        {"type", F_STR, 1, 1, ENVELOPE_TYPE_MAX - 1},
        {"step", F_STR, 1, 0, ENVELOPE_STEP_MAX - 1},
        {"attempt", F_INT, 1, 0, 0},
        {"ts", F_INT, 1, 0, 0},
        {"payload", F_MAP, 1, 0, 0},
        {"re", F_STR, 0, 1, ENVELOPE_ID_MAX - 1},
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

void
envelope_init(struct envelope *e)
{
	memset(e, 0, sizeof(*e));
	e->v = ENVELOPE_VERSION;
	value_set_map(&e->payload);
}

void
envelope_clear(struct envelope *e)
{
	if (e == NULL)
		return;
	value_clear(&e->payload);
	envelope_init(e);
}

int
envelope_type_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= ENVELOPE_TYPE_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

static int
pack_str(msgpack_packer *pk, const char *k, const char *v)
{
	return msgpack_pack_str_with_body(pk, k, strlen(k)) ||
	       msgpack_pack_str_with_body(pk, v, strlen(v));
}

int
envelope_encode(const struct envelope *e, char **buf, size_t *len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int bad;

	*buf = NULL;
	*len = 0;
	if (e->id[0] == '\0' || e->saga[0] == '\0' ||
	    !envelope_type_valid(e->type) || e->payload.type != VALUE_MAP ||
	    e->attempt < 0)
		return -1;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	bad = msgpack_pack_map(&pk, e->re[0] != '\0' ? 9 : 8) ||
	      msgpack_pack_str_with_body(&pk, "v", 1) ||
	      msgpack_pack_int64(&pk, ENVELOPE_VERSION) ||
	      pack_str(&pk, "id", e->id) || pack_str(&pk, "saga", e->saga) ||
	      pack_str(&pk, "type", e->type) ||
	      pack_str(&pk, "step", e->step) ||
	      msgpack_pack_str_with_body(&pk, "attempt", 7) ||
	      msgpack_pack_int64(&pk, e->attempt) ||
	      msgpack_pack_str_with_body(&pk, "ts", 2) ||
	      msgpack_pack_int64(&pk, e->ts) ||
	      msgpack_pack_str_with_body(&pk, "payload", 7) ||
	      value_pack(&pk, &e->payload) ||
	      (e->re[0] != '\0' && pack_str(&pk, "re", e->re));
	if (bad) {
		msgpack_sbuffer_destroy(&sb);
		return -1;
	}
	*len = sb.size;
	*buf = msgpack_sbuffer_release(&sb);
	return *buf != NULL ? 0 : -1;
}

static const char *
kind_name(enum field_kind k)
{
	return k == F_INT ? "an integer" : k == F_STR ? "a string" : "a map";
}

__attribute__((format(printf, 3, 4))) static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* A field's type and, for a string, its length (no NUL inside). */
static int
check_field(const struct field *fd, const struct value *v, char *err,
            size_t errlen)
{
	char num[32];

	if ((fd->kind == F_INT && v->type != VALUE_INT) ||
	    (fd->kind == F_STR && v->type != VALUE_STR) ||
	    (fd->kind == F_MAP && v->type != VALUE_MAP)) {
		char what[64];
		snprintf(what, sizeof(what), "%s, got %s", kind_name(fd->kind),
		         value_type_name(v->type));
		return fail(err, errlen, "field \"%s\" must be %s", fd->name,
		            what);
	}
	if (fd->kind == F_STR &&
	    (v->u.s.len < fd->min || v->u.s.len > fd->max ||
	     memchr(v->u.s.ptr, '\0', v->u.s.len) != NULL)) {
		snprintf(num, sizeof(num), "%zu..%zu", fd->min, fd->max);
		return fail(err, errlen,
		            "field \"%s\" must be %s bytes without NUL",
		            fd->name, num);
	}
	return 0;
}

/* A checked field `k` into the envelope; the payload is moved out of v. */
static int
take_field(struct envelope *out, const char *k, struct value *v, char *err,
           size_t errlen)
{
	char num[32];

	if (strcmp(k, "v") == 0 && v->u.i != ENVELOPE_VERSION) {
		snprintf(num, sizeof(num), "%lld", (long long)v->u.i);
		return fail(err, errlen, "unsupported envelope version %s%s",
		            num, "");
	}
	if (strcmp(k, "type") == 0 && !envelope_type_valid(v->u.s.ptr))
		return fail(err, errlen,
		            "field \"type\" \"%.60s\" has characters outside "
		            "[a-z0-9_.-]%s",
		            v->u.s.ptr, "");
	if (strcmp(k, "attempt") == 0 && (v->u.i < 0 || v->u.i > 1000000))
		return fail(err, errlen, "field \"attempt\" out of range%s%s",
		            "", "");
	if (strcmp(k, "id") == 0)
		memcpy(out->id, v->u.s.ptr, v->u.s.len + 1);
	else if (strcmp(k, "saga") == 0)
		memcpy(out->saga, v->u.s.ptr, v->u.s.len + 1);
	else if (strcmp(k, "type") == 0)
		memcpy(out->type, v->u.s.ptr, v->u.s.len + 1);
	else if (strcmp(k, "step") == 0)
		memcpy(out->step, v->u.s.ptr, v->u.s.len + 1);
	else if (strcmp(k, "re") == 0)
		memcpy(out->re, v->u.s.ptr, v->u.s.len + 1);
	else if (strcmp(k, "attempt") == 0)
		out->attempt = v->u.i;
	else if (strcmp(k, "ts") == 0)
		out->ts = v->u.i;
	else if (strcmp(k, "payload") == 0) {
		value_clear(&out->payload);
		out->payload = *v;
		value_set_nil(v); /* moved */
	}
	return 0;
}

int
envelope_decode(const void *body, size_t len, struct envelope *out, char *err,
                size_t errlen)
{
	struct value root = VALUE_NIL_INIT;
	int seen[NFIELDS] = {0};

	envelope_init(out);
	if (value_unpack(body, len, &value_default_limits, &root, err,
	                 errlen) != 0)
		return -1;
	if (root.type != VALUE_MAP) {
		fail(err, errlen, "body must be a map, got %s%s",
		     value_type_name(root.type), "");
		goto bad;
	}
	for (size_t i = 0; i < root.u.m.len; i++) {
		const char *k = root.u.m.items[i].key;
		struct value *v = &root.u.m.items[i].val;
		size_t f;
		for (f = 0; f < NFIELDS; f++)
			if (strcmp(fields[f].name, k) == 0)
				break;
		if (f == NFIELDS) {
			fail(err, errlen, "unknown field \"%.60s\"%s", k, "");
			goto bad;
		}
		seen[f] = 1;
		if (check_field(&fields[f], v, err, errlen) != 0 ||
		    take_field(out, k, v, err, errlen) != 0)
			goto bad;
	}
	for (size_t f = 0; f < NFIELDS; f++) {
		if (fields[f].required && !seen[f]) {
			fail(err, errlen, "missing field \"%s\"%s",
			     fields[f].name, "");
			goto bad;
		}
	}
	value_clear(&root);
	return 0;
bad:
	value_clear(&root);
	envelope_clear(out);
	return -1;
}

int
envelope_new_id(char *buf, size_t cap, const char *prefix)
{
	unsigned char b[10];
	char hex[21];
	uint64_t ms = (uint64_t)clock_wall_ms();

	if (entropy_bytes(b, sizeof(b)) != 0)
		return -1;
	for (size_t i = 0; i < sizeof(b); i++)
		snprintf(hex + 2 * i, 3, "%02x", b[i]);
	return snprintf(buf, cap, "%s-%012" PRIx64 "%s", prefix,
	                ms & (uint64_t)0xffffffffffff, hex) < (int)cap
	               ? 0
	               : -1;
}

/* ---- bundles ---- */

#define BUNDLE_VERSION 2

int
envelope_bundle_encode(const struct envelope_item *items, size_t n, char **buf,
                       size_t *len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int bad;

	*buf = NULL;
	*len = 0;
	if (n == 0 || n > ENVELOPE_BUNDLE_MAX)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (items[i].len == 0 ||
		    items[i].len > value_default_limits.max_str ||
		    (items[i].traceparent != NULL &&
		     strlen(items[i].traceparent) >= ENVELOPE_TP_MAX))
			return -1;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	bad = msgpack_pack_map(&pk, 2) ||
	      msgpack_pack_str_with_body(&pk, "v", 1) ||
	      msgpack_pack_int64(&pk, BUNDLE_VERSION) ||
	      msgpack_pack_str_with_body(&pk, "items", 5) ||
	      msgpack_pack_array(&pk, n);
	for (size_t i = 0; i < n && !bad; i++) {
		const char *tp = items[i].traceparent;
		bool has_tp = tp != NULL && tp[0] != '\0';
		bad = msgpack_pack_map(&pk, has_tp ? 2 : 1) ||
		      msgpack_pack_str_with_body(&pk, "m", 1) ||
		      msgpack_pack_bin_with_body(&pk, items[i].body,
		                                 items[i].len) ||
		      (has_tp && pack_str(&pk, "tp", tp));
	}
	if (bad) {
		msgpack_sbuffer_destroy(&sb);
		return -1;
	}
	*len = sb.size;
	*buf = msgpack_sbuffer_release(&sb);
	return *buf != NULL ? 0 : -1;
}

void
envelope_bundle_clear(struct envelope_bundle *b)
{
	if (b == NULL)
		return;
	value_clear(&b->root);
	free(b->items);
	b->items = NULL;
	b->n = 0;
}

/* Checks one item map and points it[0] into it. */
static int
bundle_item(const struct value *v, size_t i, struct envelope_item *it,
            char *err, size_t errlen)
{
	it->body = NULL;
	it->len = 0;
	it->traceparent = "";
	if (v->type != VALUE_MAP)
		return fail(err, errlen, "item %zu must be a map, got %s", i,
		            value_type_name(v->type));
	for (size_t k = 0; k < v->u.m.len; k++) {
		const char *key = v->u.m.items[k].key;
		const struct value *f = &v->u.m.items[k].val;
		if (strcmp(key, "m") == 0) {
			if (f->type != VALUE_BIN)
				return fail(err, errlen,
				            "item %zu: field \"m\" must be "
				            "binary, got %s",
				            i, value_type_name(f->type));
			if (f->u.s.len == 0)
				return fail(err, errlen,
				            "item %zu: field \"m\" is empty",
				            i);
			it->body = f->u.s.ptr;
			it->len = f->u.s.len;
		} else if (strcmp(key, "tp") == 0) {
			if (f->type != VALUE_STR ||
			    f->u.s.len >= ENVELOPE_TP_MAX ||
			    memchr(f->u.s.ptr, '\0', f->u.s.len) != NULL)
				return fail(err, errlen,
				            "item %zu: field \"tp\" must be a "
				            "string of 0..%d bytes without NUL",
				            i, ENVELOPE_TP_MAX - 1);
			it->traceparent = f->u.s.ptr;
		} else {
			return fail(err, errlen,
			            "item %zu: unknown field \"%.60s\"", i,
			            key);
		}
	}
	if (it->body == NULL)
		return fail(err, errlen, "item %zu: missing field \"m\"%s", i,
		            "");
	return 0;
}

int
envelope_bundle_decode(const void *body, size_t len,
                       struct envelope_bundle *out, char *err, size_t errlen)
{
	const struct value *v = NULL, *items = NULL;

	memset(out, 0, sizeof(*out));
	if (value_unpack(body, len, &value_default_limits, &out->root, err,
	                 errlen) != 0)
		return -1;
	if (out->root.type != VALUE_MAP) {
		fail(err, errlen, "bundle must be a map, got %s%s",
		     value_type_name(out->root.type), "");
		goto bad;
	}
	for (size_t i = 0; i < out->root.u.m.len; i++) {
		const char *k = out->root.u.m.items[i].key;
		if (strcmp(k, "v") == 0) {
			v = &out->root.u.m.items[i].val;
		} else if (strcmp(k, "items") == 0) {
			items = &out->root.u.m.items[i].val;
		} else {
			fail(err, errlen, "unknown field \"%.60s\"%s", k, "");
			goto bad;
		}
	}
	if (v == NULL || items == NULL) {
		fail(err, errlen, "missing field \"%s\"%s",
		     v == NULL ? "v" : "items", "");
		goto bad;
	}
	if (v->type != VALUE_INT || v->u.i != BUNDLE_VERSION) {
		fail(err, errlen, "a bundle must have \"v\" %d%s",
		     BUNDLE_VERSION, "");
		goto bad;
	}
	if (items->type != VALUE_ARRAY || items->u.a.len == 0) {
		fail(err, errlen, "field \"items\" must be a non-empty array%s",
		     "");
		goto bad;
	}
	if (items->u.a.len > ENVELOPE_BUNDLE_MAX) {
		fail(err, errlen, "bundle of %zu items exceeds %d",
		     items->u.a.len, ENVELOPE_BUNDLE_MAX);
		goto bad;
	}
	out->items = calloc(items->u.a.len, sizeof(*out->items));
	if (out->items == NULL) {
		fail(err, errlen, "out of memory%s", "");
		goto bad;
	}
	for (size_t i = 0; i < items->u.a.len; i++)
		if (bundle_item(&items->u.a.items[i], i, &out->items[i], err,
		                errlen) != 0)
			goto bad;
	out->n = items->u.a.len;
	return 0;
bad:
	envelope_bundle_clear(out);
	return -1;
}

int
envelope_each(const char *amqp_type, const void *body, size_t len,
              const char *traceparent, envelope_each_fn fn, void *arg,
              char *err, size_t errlen)
{
	struct envelope_bundle b;

	if (amqp_type == NULL || strcmp(amqp_type, ENVELOPE_BUNDLE_TYPE) != 0) {
		fn(arg, body, len, traceparent != NULL ? traceparent : "");
		return 0;
	}
	if (envelope_bundle_decode(body, len, &b, err, errlen) != 0)
		return -1;
	for (size_t i = 0; i < b.n; i++)
		fn(arg, b.items[i].body, b.items[i].len,
		   b.items[i].traceparent);
	envelope_bundle_clear(&b);
	return 0;
}

/* value.c -- the value tree and its strict msgpack codec (see value.h).
 *
 * Decoding does not use msgpack-c's unpacker: it has no limits (an array32
 * header allocates count x 24 bytes before reading an element) and checks
 * neither UTF-8 nor duplicate keys (NOTES-dependencies §3). Instead a
 * recursive-descent reader walks the bytes with explicit bounds: every
 * count and length is checked against the remaining input and the limits
 * before anything is allocated, depth is counted, and the result is a deep
 * copy. Encoding uses msgpack-c's packer.
 */
#include "value.h"

#include <assert.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct value_limits value_default_limits = {16, 10000, 65536};

void
value_clear(struct value *v)
{
	if (v == NULL)
		return;
	switch (v->type) {
	case VALUE_STR:
	case VALUE_BIN:
		free(v->u.s.ptr);
		break;
	case VALUE_ARRAY:
		for (size_t i = 0; i < v->u.a.len; i++)
			value_clear(&v->u.a.items[i]);
		free(v->u.a.items);
		break;
	case VALUE_MAP:
		for (size_t i = 0; i < v->u.m.len; i++) {
			free(v->u.m.items[i].key);
			value_clear(&v->u.m.items[i].val);
		}
		free(v->u.m.items);
		break;
	default:
		break;
	}
	memset(v, 0, sizeof(*v));
	v->type = VALUE_NIL;
}

void
value_set_nil(struct value *out)
{
	memset(out, 0, sizeof(*out));
	out->type = VALUE_NIL;
}

void
value_set_bool(struct value *out, bool b)
{
	value_set_nil(out);
	out->type = VALUE_BOOL;
	out->u.b = b;
}

void
value_set_int(struct value *out, int64_t i)
{
	value_set_nil(out);
	out->type = VALUE_INT;
	out->u.i = i;
}

void
value_set_float(struct value *out, double f)
{
	value_set_nil(out);
	out->type = VALUE_FLOAT;
	out->u.f = f;
}

static int
set_bytes(struct value *out, enum value_type t, const void *p, size_t len)
{
	char *buf = malloc(len + 1);
	value_set_nil(out);
	if (buf == NULL)
		return -1;
	if (len > 0)
		memcpy(buf, p, len);
	buf[len] = '\0';
	out->type = t;
	out->u.s.ptr = buf;
	out->u.s.len = len;
	return 0;
}

int
value_set_str(struct value *out, const char *s)
{
	return set_bytes(out, VALUE_STR, s, strlen(s));
}

int
value_set_strn(struct value *out, const char *s, size_t len)
{
	return set_bytes(out, VALUE_STR, s, len);
}

int
value_set_bin(struct value *out, const void *p, size_t len)
{
	return set_bytes(out, VALUE_BIN, p, len);
}

void
value_set_array(struct value *out)
{
	value_set_nil(out);
	out->type = VALUE_ARRAY;
}

void
value_set_map(struct value *out)
{
	value_set_nil(out);
	out->type = VALUE_MAP;
}

int
value_copy(struct value *dst, const struct value *src)
{
	value_set_nil(dst);
	switch (src->type) {
	case VALUE_NIL:
	case VALUE_BOOL:
	case VALUE_INT:
	case VALUE_FLOAT:
		*dst = *src;
		return 0;
	case VALUE_STR:
	case VALUE_BIN:
		return set_bytes(dst, src->type, src->u.s.ptr, src->u.s.len);
	case VALUE_ARRAY:
		value_set_array(dst);
		for (size_t i = 0; i < src->u.a.len; i++) {
			struct value item;
			if (value_copy(&item, &src->u.a.items[i]) != 0 ||
			    value_array_push(dst, &item) != 0) {
				value_clear(dst);
				return -1;
			}
		}
		return 0;
	case VALUE_MAP:
		value_set_map(dst);
		for (size_t i = 0; i < src->u.m.len; i++) {
			struct value item;
			if (value_copy(&item, &src->u.m.items[i].val) != 0 ||
			    value_map_put(dst, src->u.m.items[i].key, &item)) {
				value_clear(dst);
				return -1;
			}
		}
		return 0;
	}
	return -1;
}

int
value_array_push(struct value *arr, struct value *item)
{
	if (arr->type != VALUE_ARRAY)
		goto fail;
	if (arr->u.a.len == arr->u.a.cap) {
		size_t cap = arr->u.a.cap ? arr->u.a.cap * 2 : 4;
		struct value *n = realloc(arr->u.a.items, cap * sizeof(*n));
		if (n == NULL)
			goto fail;
		arr->u.a.items = n;
		arr->u.a.cap = cap;
	}
	arr->u.a.items[arr->u.a.len++] = *item;
	value_set_nil(item);
	return 0;
fail:
	value_clear(item);
	return -1;
}

static struct value_kv *
map_find(const struct value *map, const char *key, size_t keylen)
{
	for (size_t i = 0; i < map->u.m.len; i++) {
		const char *k = map->u.m.items[i].key;
		if (strncmp(k, key, keylen) == 0 && k[keylen] == '\0')
			return &map->u.m.items[i];
	}
	return NULL;
}

int
value_map_put(struct value *map, const char *key, struct value *val)
{
	struct value_kv *kv;
	char *k;

	if (map->type != VALUE_MAP)
		goto fail;
	kv = map_find(map, key, strlen(key));
	if (kv != NULL) {
		value_clear(&kv->val);
		kv->val = *val;
		value_set_nil(val);
		return 0;
	}
	if (map->u.m.len == map->u.m.cap) {
		size_t cap = map->u.m.cap ? map->u.m.cap * 2 : 8;
		struct value_kv *n = realloc(map->u.m.items, cap * sizeof(*n));
		if (n == NULL)
			goto fail;
		map->u.m.items = n;
		map->u.m.cap = cap;
	}
	k = strdup(key);
	if (k == NULL)
		goto fail;
	map->u.m.items[map->u.m.len].key = k;
	map->u.m.items[map->u.m.len].val = *val;
	map->u.m.len++;
	value_set_nil(val);
	return 0;
fail:
	value_clear(val);
	return -1;
}

int
value_map_put_str(struct value *map, const char *key, const char *s)
{
	struct value v;
	if (value_set_str(&v, s) != 0)
		return -1;
	return value_map_put(map, key, &v);
}

int
value_map_put_int(struct value *map, const char *key, int64_t i)
{
	struct value v;
	value_set_int(&v, i);
	return value_map_put(map, key, &v);
}

const struct value *
value_map_get(const struct value *map, const char *key)
{
	struct value_kv *kv;
	if (map == NULL || map->type != VALUE_MAP)
		return NULL;
	kv = map_find(map, key, strlen(key));
	return kv != NULL ? &kv->val : NULL;
}

const struct value *
value_path_get(const struct value *root, const char *path)
{
	const struct value *cur = root;
	const char *p = path;

	for (;;) {
		const char *dot = strchr(p, '.');
		size_t n = dot != NULL ? (size_t)(dot - p) : strlen(p);
		struct value_kv *kv;
		if (cur == NULL || cur->type != VALUE_MAP)
			return NULL;
		kv = map_find(cur, p, n);
		if (kv == NULL)
			return NULL;
		cur = &kv->val;
		if (dot == NULL)
			return cur;
		p = dot + 1;
	}
}

int
value_path_put(struct value *root, const char *path, struct value *val)
{
	struct value *cur = root;
	const char *p = path;
	char key[256];

	for (;;) {
		const char *dot = strchr(p, '.');
		size_t n = dot != NULL ? (size_t)(dot - p) : strlen(p);
		struct value_kv *kv;
		if (cur->type != VALUE_MAP || n == 0 || n >= sizeof(key))
			break;
		memcpy(key, p, n);
		key[n] = '\0';
		if (dot == NULL)
			return value_map_put(cur, key, val);
		kv = map_find(cur, key, n);
		if (kv == NULL) {
			struct value m;
			value_set_map(&m);
			if (value_map_put(cur, key, &m) != 0)
				break;
			kv = map_find(cur, key, n);
		}
		cur = &kv->val;
		p = dot + 1;
	}
	value_clear(val);
	return -1;
}

bool
value_equal(const struct value *a, const struct value *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case VALUE_NIL:
		return true;
	case VALUE_BOOL:
		return a->u.b == b->u.b;
	case VALUE_INT:
		return a->u.i == b->u.i;
	case VALUE_FLOAT: /* a NaN equals a NaN: the same value came back */
		return a->u.f == b->u.f || (isnan(a->u.f) && isnan(b->u.f));
	case VALUE_STR:
	case VALUE_BIN:
		return a->u.s.len == b->u.s.len &&
		       memcmp(a->u.s.ptr, b->u.s.ptr, a->u.s.len) == 0;
	case VALUE_ARRAY:
		if (a->u.a.len != b->u.a.len)
			return false;
		for (size_t i = 0; i < a->u.a.len; i++)
			if (!value_equal(&a->u.a.items[i], &b->u.a.items[i]))
				return false;
		return true;
	case VALUE_MAP:
		if (a->u.m.len != b->u.m.len)
			return false;
		for (size_t i = 0; i < a->u.m.len; i++) {
			const struct value *o =
			        value_map_get(b, a->u.m.items[i].key);
			if (o == NULL || !value_equal(&a->u.m.items[i].val, o))
				return false;
		}
		return true;
	}
	return false;
}

int
value_scalar_text(const struct value *v, char *buf, size_t cap)
{
	switch (v->type) {
	case VALUE_STR:
		return snprintf(buf, cap, "%s", v->u.s.ptr);
	case VALUE_INT:
		return snprintf(buf, cap, "%lld", (long long)v->u.i);
	case VALUE_FLOAT:
		return snprintf(buf, cap, "%.17g", v->u.f);
	case VALUE_BOOL:
		return snprintf(buf, cap, "%s", v->u.b ? "true" : "false");
	default:
		if (cap > 0)
			buf[0] = '\0';
		return -1;
	}
}

const char *
value_type_name(enum value_type t)
{
	switch (t) {
	case VALUE_NIL:
		return "nil";
	case VALUE_BOOL:
		return "boolean";
	case VALUE_INT:
		return "integer";
	case VALUE_FLOAT:
		return "float";
	case VALUE_STR:
		return "string";
	case VALUE_BIN:
		return "binary";
	case VALUE_ARRAY:
		return "array";
	case VALUE_MAP:
		return "map";
	}
	return "?";
}

/* ---- packing ---- */

int
value_pack(msgpack_packer *pk, const struct value *v)
{
	switch (v->type) {
	case VALUE_NIL:
		return msgpack_pack_nil(pk);
	case VALUE_BOOL:
		return v->u.b ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
	case VALUE_INT:
		return msgpack_pack_int64(pk, v->u.i);
	case VALUE_FLOAT:
		return msgpack_pack_double(pk, v->u.f);
	case VALUE_STR:
		return msgpack_pack_str_with_body(pk, v->u.s.ptr, v->u.s.len);
	case VALUE_BIN:
		return msgpack_pack_bin_with_body(pk, v->u.s.ptr, v->u.s.len);
	case VALUE_ARRAY:
		if (msgpack_pack_array(pk, v->u.a.len) != 0)
			return -1;
		for (size_t i = 0; i < v->u.a.len; i++)
			if (value_pack(pk, &v->u.a.items[i]) != 0)
				return -1;
		return 0;
	case VALUE_MAP:
		if (msgpack_pack_map(pk, v->u.m.len) != 0)
			return -1;
		for (size_t i = 0; i < v->u.m.len; i++) {
			const char *k = v->u.m.items[i].key;
			if (msgpack_pack_str_with_body(pk, k, strlen(k)) != 0 ||
			    value_pack(pk, &v->u.m.items[i].val) != 0)
				return -1;
		}
		return 0;
	}
	return -1;
}

int
value_to_msgpack(const struct value *v, char **buf, size_t *len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	if (value_pack(&pk, v) != 0) {
		msgpack_sbuffer_destroy(&sb);
		*buf = NULL;
		*len = 0;
		return -1;
	}
	*len = sb.size; /* release() zeroes the size */
	*buf = msgpack_sbuffer_release(&sb);
	if (*buf == NULL) {
		/* an empty buffer: hand out a real allocation */
		*buf = malloc(1);
		*len = 0;
		return *buf != NULL ? 0 : -1;
	}
	return 0;
}

/* ---- strict decoding ---- */

struct reader {
	const unsigned char *p;
	size_t len, off;
	const struct value_limits *lim;
	size_t elements;
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 2, 3))) static int
rfail(struct reader *r, const char *fmt, ...)
{
	char msg[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (r->err != NULL && r->errlen > 0)
		snprintf(r->err, r->errlen, "at byte %zu: %s", r->off, msg);
	return -1;
}

static size_t
remaining(const struct reader *r)
{
	return r->len - r->off;
}

static int
need(struct reader *r, size_t n)
{
	if (remaining(r) < n)
		return rfail(r, "truncated input");
	return 0;
}

static uint64_t
be(const unsigned char *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

static bool
utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned c = s[i];
		size_t len;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			len = 2;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (i + len > n)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
		    (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

static int read_value(struct reader *r, struct value *out, size_t depth);

static int
read_len(struct reader *r, size_t width, size_t *n)
{
	if (need(r, width) != 0)
		return -1;
	*n = (size_t)be(r->p + r->off, width);
	r->off += width;
	return 0;
}

static int
read_bytes(struct reader *r, struct value *out, enum value_type t, size_t n)
{
	const char *what = t == VALUE_STR ? "string" : "binary";
	if (n > r->lim->max_str)
		return rfail(r, "%s of %zu bytes exceeds the limit of %zu",
		             what, n, r->lim->max_str);
	if (n > remaining(r))
		return rfail(r, "%s of %zu bytes exceeds the input", what, n);
	if (t == VALUE_STR && !utf8_valid(r->p + r->off, n))
		return rfail(r, "string is not valid UTF-8");
	if (set_bytes(out, t, r->p + r->off, n) != 0)
		return rfail(r, "out of memory");
	r->off += n;
	return 0;
}

static int
count_elements(struct reader *r, size_t n, const char *what, size_t minbytes)
{
	/* every element takes at least one byte (two for a map pair) */
	if (n > remaining(r) / minbytes)
		return rfail(r, "%s of %zu items exceeds the input", what, n);
	if (n > r->lim->max_elements - r->elements)
		return rfail(r, "more than %zu elements in total",
		             r->lim->max_elements);
	r->elements += n;
	return 0;
}

static int
read_array(struct reader *r, struct value *out, size_t n, size_t depth)
{
	if (count_elements(r, n, "array", 1) != 0)
		return -1;
	value_set_array(out);
	if (n > 0) {
		out->u.a.items = calloc(n, sizeof(*out->u.a.items));
		if (out->u.a.items == NULL)
			return rfail(r, "out of memory");
		out->u.a.cap = n;
	}
	for (size_t i = 0; i < n; i++) {
		if (read_value(r, &out->u.a.items[i], depth + 1) != 0) {
			/* not counted in len yet: release what it built */
			value_clear(&out->u.a.items[i]);
			return -1;
		}
		out->u.a.len++;
	}
	return 0;
}

static int
read_map(struct reader *r, struct value *out, size_t n, size_t depth)
{
	if (count_elements(r, n, "map", 2) != 0)
		return -1;
	value_set_map(out);
	if (n > 0) {
		out->u.m.items = calloc(n, sizeof(*out->u.m.items));
		if (out->u.m.items == NULL)
			return rfail(r, "out of memory");
		out->u.m.cap = n;
	}
	for (size_t i = 0; i < n; i++) {
		struct value key = VALUE_NIL_INIT;
		size_t at = r->off;
		struct value_kv *kv = &out->u.m.items[out->u.m.len];
		if (read_value(r, &key, depth + 1) != 0) {
			value_clear(&key);
			return -1;
		}
		if (key.type != VALUE_STR) {
			value_clear(&key);
			r->off = at;
			return rfail(r, "map key is not a string");
		}
		if (memchr(key.u.s.ptr, '\0', key.u.s.len) != NULL) {
			value_clear(&key);
			r->off = at;
			return rfail(r, "map key contains a NUL byte");
		}
		if (map_find(out, key.u.s.ptr, key.u.s.len) != NULL) {
			r->off = at;
			rfail(r, "duplicate map key \"%.60s\"", key.u.s.ptr);
			value_clear(&key);
			return -1;
		}
		kv->key = key.u.s.ptr; /* take the string */
		if (read_value(r, &kv->val, depth + 1) != 0) {
			free(kv->key);
			kv->key = NULL;
			value_clear(&kv->val);
			return -1;
		}
		out->u.m.len++;
	}
	return 0;
}

/* float 32 (0xca, w 4) or float 64 (0xcb, w 8): big-endian IEEE 754. */
static int
read_float(struct reader *r, struct value *out, size_t w)
{
	uint64_t bits;

	_Static_assert(sizeof(float) == 4 && sizeof(double) == 8,
	               "IEEE 754 single and double");
	assert(w == 4 || w == 8);
	if (need(r, w) != 0)
		return -1;
	bits = be(r->p + r->off, w);
	r->off += w;
	if (w == 4) {
		uint32_t b32 = (uint32_t)bits;
		float f;
		memcpy(&f, &b32, 4);
		value_set_float(out, (double)f);
	} else {
		double d;
		memcpy(&d, &bits, 8);
		value_set_float(out, d);
	}
	return 0;
}

/* uint 8-64 (0xcc-0xcf): w bytes; above INT64_MAX is refused, as
 * values hold signed integers. */
static int
read_uint(struct reader *r, struct value *out, size_t w)
{
	uint64_t u;

	assert(w == 1 || w == 2 || w == 4 || w == 8);
	if (need(r, w) != 0)
		return -1;
	u = be(r->p + r->off, w);
	if (u > (uint64_t)INT64_MAX)
		return rfail(r, "unsigned integer %llu is above INT64_MAX",
		             (unsigned long long)u);
	r->off += w;
	value_set_int(out, (int64_t)u);
	return 0;
}

/* int 8-64 (0xd0-0xd3): w bytes, two's complement, sign-extended. */
static int
read_sint(struct reader *r, struct value *out, size_t w)
{
	uint64_t u;
	int64_t i;

	assert(w == 1 || w == 2 || w == 4 || w == 8);
	if (need(r, w) != 0)
		return -1;
	u = be(r->p + r->off, w);
	r->off += w;
	if (w < 8 && (u >> (w * 8 - 1)) != 0)
		u |= ~(uint64_t)0 << (w * 8); /* sign-extend */
	memcpy(&i, &u, sizeof(i));
	value_set_int(out, i);
	return 0;
}

/* The formats of type byte c in 0xc0-0xdf (the fix formats and the
 * negative fixint are read_value's); r->off is past c. */
static int
read_typed(struct reader *r, struct value *out, unsigned c, size_t depth)
{
	size_t n;

	assert(c >= 0xc0 && c <= 0xdf);
	switch (c) {
	case 0xc0:
		return 0;
	case 0xc2:
		value_set_bool(out, false);
		return 0;
	case 0xc3:
		value_set_bool(out, true);
		return 0;
	case 0xc4:
	case 0xc5:
	case 0xc6:
		if (read_len(r, (size_t)1 << (c - 0xc4), &n) != 0)
			return -1;
		return read_bytes(r, out, VALUE_BIN, n);
	case 0xca:
	case 0xcb:
		return read_float(r, out, c == 0xca ? 4 : 8);
	case 0xcc:
	case 0xcd:
	case 0xce:
	case 0xcf:
		return read_uint(r, out, (size_t)1 << (c - 0xcc));
	case 0xd0:
	case 0xd1:
	case 0xd2:
	case 0xd3:
		return read_sint(r, out, (size_t)1 << (c - 0xd0));
	case 0xd9:
	case 0xda:
	case 0xdb:
		if (read_len(r, (size_t)1 << (c - 0xd9), &n) != 0)
			return -1;
		return read_bytes(r, out, VALUE_STR, n);
	case 0xdc:
	case 0xdd:
		if (read_len(r, c == 0xdc ? 2 : 4, &n) != 0)
			return -1;
		return read_array(r, out, n, depth);
	case 0xde:
	case 0xdf:
		if (read_len(r, c == 0xde ? 2 : 4, &n) != 0)
			return -1;
		return read_map(r, out, n, depth);
	case 0xc1:
		r->off--;
		return rfail(r, "reserved byte 0xc1");
	default:
		/* 0xc7-0xc9 ext, 0xd4-0xd8 fixext */
		r->off--;
		return rfail(r, "ext type 0x%02x is not accepted", c);
	}
}

static int
read_value(struct reader *r, struct value *out, size_t depth)
{
	unsigned c;

	value_set_nil(out);
	if (depth > r->lim->max_depth)
		return rfail(r, "nesting deeper than %zu", r->lim->max_depth);
	if (need(r, 1) != 0)
		return -1;
	c = r->p[r->off++];
	if (c <= 0x7f) {
		value_set_int(out, (int64_t)c);
		return 0;
	}
	if (c >= 0xe0) {
		value_set_int(out, (int64_t)(int8_t)c);
		return 0;
	}
	if ((c & 0xf0) == 0x80)
		return read_map(r, out, c & 0x0f, depth);
	if ((c & 0xf0) == 0x90)
		return read_array(r, out, c & 0x0f, depth);
	if ((c & 0xe0) == 0xa0)
		return read_bytes(r, out, VALUE_STR, c & 0x1f);
	return read_typed(r, out, c, depth);
}

int
value_unpack(const void *buf, size_t len, const struct value_limits *lim,
             struct value *out, char *err, size_t errlen)
{
	struct value_limits l = lim != NULL ? *lim : value_default_limits;
	struct reader r = {buf, len, 0, &l, 0, err, errlen};

	if (l.max_depth > 32)
		l.max_depth = 32;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	value_set_nil(out);
	if (len == 0) {
		rfail(&r, "empty input");
		return -1;
	}
	if (read_value(&r, out, 1) != 0) {
		value_clear(out);
		return -1;
	}
	if (r.off != len) {
		rfail(&r, "%zu trailing bytes after the object", len - r.off);
		value_clear(out);
		return -1;
	}
	return 0;
}

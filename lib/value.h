/* value.h -- a small dynamic value tree: the saga's order data, message
 * payloads and reply fields.
 *
 * A value is plain data that owns everything it points to. Map keys are
 * NUL-terminated strings (no embedded NUL); a map keeps insertion order and
 * never holds the same key twice. Strings are NUL-terminated as well as
 * length-counted. Integers are int64; floats are double.
 *
 * Ownership: whoever holds a struct value releases it with value_clear().
 * Functions that take a `struct value *v` "to move" take over its contents
 * and leave *v as NIL, whether they succeed or fail.
 *
 * Failure contract: functions returning int give 0 on success and -1 on
 * failure (out of memory, wrong type, limit exceeded); on failure their
 * output is left NIL or unaltered as each says.
 *
 * The msgpack codec (value_pack / value_unpack) lives here too so that every
 * byte from the network goes through one strict, bounded decoder.
 */
#ifndef SAGA_VALUE_H
#define SAGA_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

enum value_type {
	VALUE_NIL = 0,
	VALUE_BOOL,
	VALUE_INT,
	VALUE_FLOAT,
	VALUE_STR,
	VALUE_BIN,
	VALUE_ARRAY,
	VALUE_MAP,
};

struct value_kv;

struct value {
	enum value_type type;
	union {
		bool b;
		int64_t i;
		double f;
		struct {
			char *ptr;  /* NUL-terminated (also for BIN) */
			size_t len; /* bytes, without the NUL */
		} s;
		struct {
			struct value *items;
			size_t len, cap;
		} a;
		struct {
			struct value_kv *items;
			size_t len, cap;
		} m;
	} u;
};

struct value_kv {
	char *key;
	struct value val;
};

#define VALUE_NIL_INIT                                                         \
	{                                                                      \
		.type = VALUE_NIL                                              \
	}

/* Releases what v owns and leaves it NIL. Can't fail; NULL is fine. */
void value_clear(struct value *v);

/* Constructors. The string ones copy `s`; they return 0, or -1 (out of
 * memory) leaving *out NIL. */
void value_set_nil(struct value *out);
void value_set_bool(struct value *out, bool b);
void value_set_int(struct value *out, int64_t i);
void value_set_float(struct value *out, double f);
int value_set_str(struct value *out, const char *s);
int value_set_strn(struct value *out, const char *s, size_t len);
int value_set_bin(struct value *out, const void *p, size_t len);
void value_set_array(struct value *out); /* empty array */
void value_set_map(struct value *out);   /* empty map */

/* Deep copy; on failure *dst is NIL. */
int value_copy(struct value *dst, const struct value *src);

/* Appends `item` (moved) to an array. -1 if arr is not an array or OOM. */
int value_array_push(struct value *arr, struct value *item);

/* Sets map[key] = val (val moved); replaces an existing entry's value.
 * -1 if map is not a map or OOM. */
int value_map_put(struct value *map, const char *key, struct value *val);
/* Convenience forms of value_map_put. */
int value_map_put_str(struct value *map, const char *key, const char *s);
int value_map_put_int(struct value *map, const char *key, int64_t i);

/* map[key], or NULL if map is not a map or has no such key. */
const struct value *value_map_get(const struct value *map, const char *key);
/* Follows a dotted path ("ship_to.country") through nested maps; NULL if
 * any part is missing or not a map. */
const struct value *value_path_get(const struct value *root, const char *path);
/* Sets a dotted path, creating intermediate maps; val is moved. -1 if an
 * intermediate exists and is not a map, or OOM. */
int value_path_put(struct value *root, const char *path, struct value *val);

/* Structural equality (an INT and a FLOAT with the same number are not
 * equal: types are strict; two NaNs are equal, so a value that went
 * through msgpack and back equals itself). */
bool value_equal(const struct value *a, const struct value *b);

/* Scalar to text for routing keys and logs: STR as is, INT and FLOAT in
 * decimal, BOOL as true/false. Returns the length written (snprintf
 * semantics, output always NUL-terminated when cap > 0), or -1 if v is not
 * a scalar of those types. */
int value_scalar_text(const struct value *v, char *buf, size_t cap);

/* A short name for a type ("string", "integer", ...), for error messages. */
const char *value_type_name(enum value_type t);

/* ---- msgpack codec ---- */

/* Bounds for decoding input from the network. */
struct value_limits {
	size_t max_depth;    /* nesting of arrays/maps; <= 32 */
	size_t max_elements; /* total array items + map pairs in one input */
	size_t max_str;      /* longest str or bin, bytes */
};
/* depth 16, 10,000 elements, 64 KiB strings */
extern const struct value_limits value_default_limits;

/* Appends v to pk. -1 if the packer's writer failed. */
int value_pack(msgpack_packer *pk, const struct value *v);

/* Encodes v into a fresh malloc'd buffer (*buf, *len); caller frees. */
int value_to_msgpack(const struct value *v, char **buf, size_t *len);

/* Decodes exactly one msgpack object spanning all of buf[0..len) into *out
 * (a deep copy: nothing points into buf afterwards). Strict and bounded:
 * rejected with -1 and a message in err (e.g. "nesting deeper than 16",
 * "trailing bytes after object", "map key is not a string", "duplicate map
 * key \"x\"", "string is not valid UTF-8", "truncated input", "array of
 * 4294967295 items exceeds the input") for: truncated input, trailing
 * bytes, counts or lengths larger than the remaining input or the limits,
 * depth over the limit, non-string or duplicate map keys, invalid UTF-8 in
 * str, ext types, the reserved byte 0xc1, unsigned integers above
 * INT64_MAX. No allocation is made before the input is known to fit the
 * limits. On failure *out is NIL. */
int value_unpack(const void *buf, size_t len, const struct value_limits *lim,
                 struct value *out, char *err, size_t errlen);

#endif

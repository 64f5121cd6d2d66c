/* trace.h -- W3C trace context (`traceparent`), carried by every hop so
 * one order can be followed through every daemon's logs:
 *   "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>"
 * Lowercase hex only, version 00, ids not all zero.
 */
#ifndef SAGA_TRACE_H
#define SAGA_TRACE_H

#include <stddef.h>

#define TRACE_PARENT_LEN 55 /* without the NUL */

/* 0 if s is a valid traceparent; the trace id (32 hex + NUL) is copied to
 * trace_id when not NULL. -1 otherwise. */
int trace_parse(const char *s, char *trace_id);
/* A new root traceparent (random ids). -1 if cap < 56 or no randomness. */
int trace_new(char *buf, size_t cap);
/* A child of parent: same trace id and flags, a new parent id. -1 if
 * parent is invalid or cap < 56. */
int trace_child(const char *parent, char *buf, size_t cap);

#endif

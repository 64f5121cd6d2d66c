/* jsonout.h -- the JSON the orchestrator's tools write (sagactl's --json,
 * `sagactl dlq --json`), built with jansson.
 *
 * Output is compact (no spaces), keys in the order they were set, one
 * document a line. Text that is not valid UTF-8 (a message id from another
 * publisher, a key in stored data) cannot be a JSON string: each bad byte
 * becomes U+FFFD, so the output always parses.
 *
 * Ownership: the json_t * returned belong to the caller (json_decref, or
 * hand them to json_object_set_new / json_array_append_new, which take
 * them and fail cleanly on NULL).
 */
#ifndef SAGA_JSONOUT_H
#define SAGA_JSONOUT_H

#include <stdio.h>

#include <jansson.h>

#include "store.h"
#include "value.h"

/* s (NULL: "") as a JSON string. NULL only when out of memory. */
json_t *jsonout_str(const char *s);

/* A value as JSON: nil null, maps objects (keys in order), bin "(N bytes)",
 * a float that is not finite null. NULL only when out of memory. */
json_t *jsonout_value(const struct value *v);

/* A saga's summary, the same object in sagactl's list --json and show
 * --json and the console's /api/sagas: id, chart, chart_version, status,
 * state, phase, attempt, and started_at, state_entered_at, updated_at
 * (ms since the epoch). NULL only when out of memory. */
json_t *jsonout_saga_summary(const struct store_saga_summary *s);

/* Writes j and a newline to f and releases j (also when j is NULL). -1
 * when j is NULL (something failed to build) or on a write error. */
int jsonout_print(FILE *f, json_t *j);

/* j written compact into a malloc'd string (the caller frees it); NULL
 * when out of memory. j is kept. */
char *jsonout_text(const json_t *j);

#endif

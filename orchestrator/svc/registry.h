/* registry.h -- the statecharts the orchestrator runs: the current chart
 * of each name (from the --statecharts folder) and every older version a
 * saga still runs on.
 *
 * A saga keeps the chart version it started with. Loading a folder
 * records each chart's source in the store (charts table), so after a
 * restart or a reload a saga whose version is no longer in the folder is
 * run on its own version, rebuilt from the stored source.
 *
 * Reload is all-or-nothing (OpenBSD daemons' config swap): every *.yaml in
 * the folder is parsed into a fresh set; only when all are valid does the
 * set replace the current one. On any error the old set stays in use and
 * the errors are returned as "file:line:col: message" lines.
 *
 * Ownership: the registry owns every chart it hands out; a pointer stays
 * valid until registry_free (old versions are kept, never freed early, so a
 * reload never invalidates a saga's chart).
 */
#ifndef SAGA_REGISTRY_H
#define SAGA_REGISTRY_H

#include <stddef.h>

#include "chart.h"
#include "store.h"

struct registry;

/* A registry that records charts in `st` (borrowed; may be NULL for tools
 * that only validate). NULL on out of memory. */
struct registry *registry_new(struct store *st);
void registry_free(struct registry *r);

/* Loads every *.yaml in dir. Returns 0 and swaps the set in; or -1 with
 * the errors (one per line, "file:line:col: message") in err, keeping the
 * old set. An empty folder is an error. Two files with the same `saga:`
 * name are an error. */
int registry_load_dir(struct registry *r, const char *dir, int64_t now_ms,
                      char *err, size_t errlen);

/* The current chart called `name`, or NULL. */
const struct chart *registry_current(struct registry *r, const char *name);

/* The chart with this version: a loaded one, or one rebuilt from the store.
 * NULL (with the reason in err) if unknown or its stored source no longer
 * loads. */
const struct chart *registry_version(struct registry *r, const char *version,
                                     char *err, size_t errlen);

/* Iterates the current charts: fills *out with up to cap pointers and
 * returns how many there are. */
size_t registry_list(struct registry *r, const struct chart **out, size_t cap);

#endif

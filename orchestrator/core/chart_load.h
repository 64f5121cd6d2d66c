/* chart_load.h -- loads and validates a statechart written in YAML
 * (the format: statecharts/README.md; the model: chart.h).
 *
 * Every problem is reported as "file:line:col: message" (1-based), naming
 * the key, and as many problems as can be found are collected, so an
 * operator fixes a file in one pass. A chart is returned only when there
 * is no error at all.
 *
 * Failure contract: chart_load_* return a chart the caller frees with
 * chart_free(), or NULL with at least one entry in errs (out of memory is
 * reported as an error too). errs must be initialised with
 * chart_errors_init and released with chart_errors_clear, whatever the
 * result.
 */
#ifndef SAGA_CHART_LOAD_H
#define SAGA_CHART_LOAD_H

#include <stddef.h>

#include "chart.h"

#define CHART_MAX_ERRORS 50 /* more are counted but not kept */

struct chart_error {
	int line, col; /* 1-based; 0 when the file as a whole is at fault */
	char *text;    /* "file:line:col: message", malloc'd */
};

struct chart_errors {
	struct chart_error items[CHART_MAX_ERRORS];
	size_t count;   /* kept */
	size_t dropped; /* past CHART_MAX_ERRORS */
};

void chart_errors_init(struct chart_errors *e);
void chart_errors_clear(struct chart_errors *e);

/* Reads and loads a file (at most 1 MiB). */
struct chart *chart_load_file(const char *path, struct chart_errors *errs);

/* Loads from memory; `name` is used as the file name in errors and kept
 * as chart->file. */
struct chart *chart_load_buffer(const char *name, const char *buf, size_t len,
                                struct chart_errors *errs);

/* Parses a duration ("250ms", "10s", "5m", "1h") into milliseconds.
 * 0, or -1 if s is not one (no sign, no fraction, at most 30 days;
 * 0 parses: callers decide where zero makes sense). */
int chart_parse_duration(const char *s, int64_t *ms);

/* Did you mean: the candidate closest to a misspelt word. Feed every
 * candidate to chart_near_try; best is then the closest one within an
 * edit distance of 2 (and less than the word's length), or NULL. */
struct chart_near {
	const char *word;
	const char *best;
	size_t dist;
};

void chart_near_init(struct chart_near *n, const char *word);
void chart_near_try(struct chart_near *n, const char *cand);

#endif

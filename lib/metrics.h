/* metrics.h -- what a daemon counts, in the Prometheus text format (0.0.4):
 * the one metrics module every daemon serves at GET /metrics.
 *
 *   struct metrics *m = metrics_new("part");
 *   int handled = metrics_family(m, "messages_total", METRIC_COUNTER,
 *                                "Messages handled, by type and outcome.");
 *   char lv[METRIC_LABELS_MAX];
 *   metrics_labels(lv, sizeof(lv), "type", type, "outcome", "ok",
 *                  METRIC_END);
 *   metrics_add(m, handled, lv, 1);
 *   ...
 *   metrics_render(m, &response);   (then http_publish it)
 *
 * A family is a name (prefixed with the registry's prefix and "_": the
 * daemon's namespace, "saga" or "part"), a type and a help text; a series
 * is a family with one set of label values, created on first use. Counters
 * only go up (metrics_add of a negative value is refused by an assert),
 * gauges are set, histograms observe seconds (or any unit) into fixed
 * buckets (METRIC_BUCKETS, or per family with metrics_buckets).
 *
 * Bounded: label values may come from the network (a message's type), so a
 * family holds at most METRIC_SERIES_MAX series; past that a new label set
 * is counted in the family's series labelled overflow="true" instead, and
 * the registry never grows without bound. Label values are escaped
 * (backslash, quote, newline) by metrics_labels.
 *
 * Threading: none. The daemon's loop updates and renders; the HTTP
 * threads only see the rendered copy (lib/http.h snapshots).
 *
 * Failure contract: metrics_new returns NULL on out of memory;
 * metrics_family returns -1 when the table is full or out of memory; an
 * update that cannot allocate is dropped and counted in <prefix>_metrics_
 * dropped_total, never a failure of the daemon.
 */
#ifndef SAGA_METRICS_H
#define SAGA_METRICS_H

#include <stddef.h>

#include "http.h"

#define METRIC_FAMILIES_MAX 64
#define METRIC_SERIES_MAX   256
#define METRIC_LABELS_MAX   256 /* the text of one label set, with NUL */
#define METRIC_BUCKETS_MAX  16

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct metrics;

/* prefix: the namespace of every family ("saga", "part"). */
struct metrics *metrics_new(const char *prefix);
void metrics_free(struct metrics *m);

/* Declares a family; returns its handle (>= 0), or -1. Declaring the same
 * name again returns the same handle (the type must match). Histograms get
 * the default latency buckets (5 ms to 60 s). */
int metrics_family(struct metrics *m, const char *name, enum metric_type type,
                   const char *help);
/* A histogram's own upper bounds, ascending, at most METRIC_BUCKETS_MAX.
 * Before the first observation. -1 if not a histogram or bad bounds. */
int metrics_buckets(struct metrics *m, int family, const double *le, size_t n);

/* The end of metrics_labels' pairs: a pointer, not a bare NULL (which may
 * be an int 0 where a variadic function reads a pointer). */
#define METRIC_END ((const char *)0)

/* Formats label pairs (name, value, name, value, ..., METRIC_END) as
 * `name="value",...` with values escaped, into buf. Truncated values are
 * cut, never left half-escaped. Returns buf. */
const char *metrics_labels(char *buf, size_t cap, ...)
        __attribute__((sentinel));

/* labels: NULL or "" for the series without labels. */
void metrics_add(struct metrics *m, int family, const char *labels, double v);
void metrics_set(struct metrics *m, int family, const char *labels, double v);
void metrics_observe(struct metrics *m, int family, const char *labels,
                     double v);
/* Forgets every series of a gauge family (before setting what is true now,
 * so a label set that no longer exists stops being reported). */
void metrics_reset(struct metrics *m, int family);

/* Appends every family with at least one series, in declaration order. */
void metrics_render(const struct metrics *m, struct http_response *r);

#endif

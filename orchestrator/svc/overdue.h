/* overdue.h -- the sagas past their state's stuck_after
 * (statecharts/README.md 5.7), counted per chart and state: the gauge
 * saga_overdue_sagas (orch_metrics.h).
 *
 * A saga is overdue when it is running or compensating (not finished, and
 * not yet stuck: those are saga_sagas{status="stuck"}) and has been in its
 * current state longer than that state's stuck_after in the chart version
 * it runs on. States without a stuck_after are not counted.
 *
 * Every state of a current chart that declares a limit gets an entry, at
 * 0 when no saga is overdue there, so an alert or a dashboard has a series
 * to read from the start; an older version's state that the current chart
 * no longer has gets one only while it has overdue sagas.
 *
 * Cost: one scan of the index sagas_waiting for the chart versions in use
 * (store_waiting_versions), then per version and state with a limit one
 * range scan of it (store_count_waiting): the sagas in flight, never the
 * finished ones. Meant for the loop's periodic gauge refresh (daemon.c,
 * every 2 s), not for every render.
 *
 * Failure contract: overdue_count returns 0, or -1 with the reason in err
 * (a database error) and *out unchanged.
 */
#ifndef SAGA_OVERDUE_H
#define SAGA_OVERDUE_H

#include <stddef.h>
#include <stdint.h>

#include "registry.h"
#include "store.h"

#define OVERDUE_MAX 128 /* (chart, state) pairs; more are not counted */

struct overdue {
	const char *chart, *state; /* owned by the registry's charts */
	int64_t n;
};

struct overdue_set {
	struct overdue v[OVERDUE_MAX];
	size_t n;
};

/* Counts the sagas overdue at now_ms (wall clock) into *out. */
int overdue_count(struct store *st, struct registry *reg, int64_t now_ms,
                  struct overdue_set *out, char *err, size_t errlen);

#endif

/* overdue.c -- see overdue.h.
 *
 * The limits live in the charts, not in the database, so the store cannot
 * count overdue sagas in one query: the chart versions in use come from the
 * store, their limits from the registry (which rebuilds an old version from
 * its stored source once and keeps it), and each (version, state) with a
 * limit is one indexed count.
 */
#include "overdue.h"

#include <stdio.h>
#include <string.h>

struct counting {
	struct store *st;
	struct registry *reg;
	int64_t now;
	struct overdue_set *set;
	int failed;
};

/* The entry of (chart, state), added at 0 if new; NULL when full. */
static struct overdue *
entry(struct overdue_set *set, const char *chart, const char *state)
{
	for (size_t i = 0; i < set->n; i++)
		if (strcmp(set->v[i].chart, chart) == 0 &&
		    strcmp(set->v[i].state, state) == 0)
			return &set->v[i];
	if (set->n == OVERDUE_MAX)
		return NULL;
	set->v[set->n] = (struct overdue){chart, state, 0};
	return &set->v[set->n++];
}

static int
count_version(void *arg, const char *version)
{
	struct counting *k = arg;
	char err[256];
	const struct chart *c =
	        registry_version(k->reg, version, err, sizeof(err));

	if (c == NULL)
		return 0; /* its source no longer loads: nothing to count by */
	for (size_t i = 0; i < c->nstates; i++) {
		const struct chart_state *s = &c->states[i];
		struct overdue *e;
		int64_t n = 0;

		if (s->stuck_after_ms <= 0)
			continue;
		if (store_count_waiting(k->st, version, s->name,
		                        k->now - s->stuck_after_ms, &n) != 0) {
			k->failed = 1;
			return 1;
		}
		e = n > 0 ? entry(k->set, c->name, s->name) : NULL;
		if (e != NULL)
			e->n += n;
	}
	return 0;
}

int
overdue_count(struct store *st, struct registry *reg, int64_t now_ms,
              struct overdue_set *out, char *err, size_t errlen)
{
	struct overdue_set set;
	const struct chart *cur[64];
	size_t ncur = registry_list(reg, cur, sizeof(cur) / sizeof(cur[0]));
	struct counting k = {st, reg, now_ms, &set, 0};

	set.n = 0;
	for (size_t i = 0; i < ncur && i < sizeof(cur) / sizeof(cur[0]); i++)
		for (size_t j = 0; j < cur[i]->nstates; j++)
			if (cur[i]->states[j].stuck_after_ms > 0)
				(void)entry(&set, cur[i]->name,
				            cur[i]->states[j].name);
	if (store_waiting_versions(st, count_version, &k) != 0 || k.failed) {
		snprintf(err, errlen, "%s", store_error(st));
		return -1;
	}
	*out = set;
	return 0;
}

/* login_guard.c -- wrong passwords cost time (login_guard.h).
 *
 * A flat table searched linearly: at most LOGIN_GUARD_KEYS entries, and
 * only logins touch it, so a scan of 512 short strings is nothing next
 * to the password hash it may save. */
#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "login_guard.h"

_Static_assert(LOGIN_GUARD_FORGET_MS > LOGIN_GUARD_MAX_MS,
               "a key must not be forgotten while it still waits");
_Static_assert(LOGIN_GUARD_BASE_MS > 0 &&
                       LOGIN_GUARD_BASE_MS <= LOGIN_GUARD_MAX_MS,
               "the first wait is positive and within the cap");

struct entry {
	char key[LOGIN_GUARD_KEY_MAX]; /* "" when free */
	int failures;
	int64_t last_ms; /* the last failure */
};

struct login_guard {
	struct entry e[LOGIN_GUARD_KEYS];
};

struct login_guard *
login_guard_new(void)
{
	return calloc(1, sizeof(struct login_guard));
}

void
login_guard_free(struct login_guard *g)
{
	free(g);
}

/* The wait after n failures, from the last one. */
static int64_t
delay_ms(int n)
{
	int64_t d = LOGIN_GUARD_BASE_MS;

	if (n <= LOGIN_GUARD_FREE)
		return 0;
	for (int i = LOGIN_GUARD_FREE + 1; i < n && d < LOGIN_GUARD_MAX_MS; i++)
		d *= 2;
	return d < LOGIN_GUARD_MAX_MS ? d : LOGIN_GUARD_MAX_MS;
}

static bool
live(const struct entry *x, int64_t now_ms)
{
	return x->key[0] != '\0' && now_ms - x->last_ms < LOGIN_GUARD_FORGET_MS;
}

/* key's index in the table, or -1 (keys are compared as stored: cut). */
static long
find(const struct login_guard *g, const char *key)
{
	char k[LOGIN_GUARD_KEY_MAX];

	snprintf(k, sizeof(k), "%s", key);
	for (size_t i = 0; i < LOGIN_GUARD_KEYS; i++)
		if (g->e[i].key[0] != '\0' && strcmp(g->e[i].key, k) == 0)
			return (long)i;
	return -1;
}

int64_t
login_guard_wait(const struct login_guard *g, const char *key, int64_t now_ms)
{
	long i = find(g, key);
	const struct entry *x = i >= 0 ? &g->e[i] : NULL;
	int64_t left;

	if (x == NULL || !live(x, now_ms))
		return 0;
	left = x->last_ms + delay_ms(x->failures) - now_ms;
	return left > 0 ? left : 0;
}

/* key's entry, else a free or forgotten one, else the oldest. */
static struct entry *
slot_for(struct login_guard *g, const char *key, int64_t now_ms)
{
	long at = find(g, key);
	struct entry *old = &g->e[0];

	if (at >= 0)
		return &g->e[at];
	for (size_t i = 0; i < LOGIN_GUARD_KEYS; i++) {
		if (!live(&g->e[i], now_ms)) {
			old = &g->e[i];
			break;
		}
		if (g->e[i].last_ms < old->last_ms)
			old = &g->e[i];
	}
	memset(old, 0, sizeof(*old));
	snprintf(old->key, sizeof(old->key), "%s", key);
	return old;
}

void
login_guard_failed(struct login_guard *g, const char *key, int64_t now_ms)
{
	struct entry *x;

	assert(key != NULL && key[0] != '\0');
	x = slot_for(g, key, now_ms);
	if (!live(x, now_ms)) /* forgotten: starts over */
		x->failures = 0;
	if (x->failures < 1000) /* the wait is capped long before */
		x->failures++;
	x->last_ms = now_ms;
}

void
login_guard_ok(struct login_guard *g, const char *key)
{
	long at = find(g, key);

	if (at >= 0)
		memset(&g->e[at], 0, sizeof(g->e[at]));
}

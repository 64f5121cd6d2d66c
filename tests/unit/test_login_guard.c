/* test_login_guard.c -- the console's guard against password guessing
 * (login_guard.h), on a clock the test runs: free failures, the
 * doubling wait and its cap, a success starting over, keys apart,
 * forgetting, and a full table giving up its oldest key. Through the
 * real listener (429, Retry-After) in test_console. */
#include <stdio.h>

#include "check.h"
#include "login_guard.h"

#define S 1000LL

/* n failures of key, one a second from t; returns the time of the last. */
static int64_t
fail_n(struct login_guard *g, const char *key, int n, int64_t t)
{
	for (int i = 0; i < n; i++, t += S)
		login_guard_failed(g, key, t);
	return t - S;
}

static void
test_free_then_doubling(void)
{
	struct login_guard *g = login_guard_new();
	int64_t t;

	CHECK(g != NULL);
	CHECK_EQ(login_guard_wait(g, "addr 10.0.0.7", 0), 0);
	t = fail_n(g, "addr 10.0.0.7", LOGIN_GUARD_FREE, 1);
	CHECK_EQ(login_guard_wait(g, "addr 10.0.0.7", t), 0);
	login_guard_failed(g, "addr 10.0.0.7", t);
	CHECK_EQ(login_guard_wait(g, "addr 10.0.0.7", t), 1 * S);
	CHECK_EQ(login_guard_wait(g, "addr 10.0.0.7", t + 400), 600);
	CHECK_EQ(login_guard_wait(g, "addr 10.0.0.7", t + S), 0);
	t += S;
	login_guard_failed(g, "addr 10.0.0.7", t);
	CHECK_EQ(login_guard_wait(g, "addr 10.0.0.7", t), 2 * S);
	t += 2 * S;
	login_guard_failed(g, "addr 10.0.0.7", t);
	CHECK_EQ(login_guard_wait(g, "addr 10.0.0.7", t), 4 * S);
	/* many more: capped */
	t = fail_n(g, "addr 10.0.0.7", 40, t + 4 * S);
	CHECK_EQ(login_guard_wait(g, "addr 10.0.0.7", t), LOGIN_GUARD_MAX_MS);
	/* another key is not touched */
	CHECK_EQ(login_guard_wait(g, "addr 10.0.0.8", t), 0);
	CHECK_EQ(login_guard_wait(g, "user alice", t), 0);
	/* the right password: starts over, five free failures again */
	login_guard_ok(g, "addr 10.0.0.7");
	CHECK_EQ(login_guard_wait(g, "addr 10.0.0.7", t), 0);
	t = fail_n(g, "addr 10.0.0.7", LOGIN_GUARD_FREE, t);
	CHECK_EQ(login_guard_wait(g, "addr 10.0.0.7", t), 0);
	login_guard_free(g);
}

static void
test_forgotten_after_quiet(void)
{
	struct login_guard *g = login_guard_new();
	int64_t t = fail_n(g, "user bob", LOGIN_GUARD_FREE + 3, 5 * S);

	CHECK_EQ(login_guard_wait(g, "user bob", t), 4 * S);
	/* an hour without a failure: forgotten, the count starts over */
	t += LOGIN_GUARD_FORGET_MS;
	CHECK_EQ(login_guard_wait(g, "user bob", t), 0);
	login_guard_failed(g, "user bob", t);
	CHECK_EQ(login_guard_wait(g, "user bob", t), 0);
	t = fail_n(g, "user bob", LOGIN_GUARD_FREE - 1, t + S);
	CHECK_EQ(login_guard_wait(g, "user bob", t), 0);
	login_guard_failed(g, "user bob", t + S);
	CHECK_EQ(login_guard_wait(g, "user bob", t + S), 1 * S);
	login_guard_free(g);
}

/* More keys than the table: the oldest quiet key gives way, never the
 * one being counted; a key longer than the limit is cut, not refused. */
static void
test_full_table(void)
{
	struct login_guard *g = login_guard_new();
	char key[32];
	int64_t t = fail_n(g, "addr 10.0.0.1", LOGIN_GUARD_FREE + 1, S);

	CHECK_EQ(login_guard_wait(g, "addr 10.0.0.1", t), S);
	for (int i = 0; i < LOGIN_GUARD_KEYS; i++) {
		snprintf(key, sizeof(key), "addr 10.1.%d.%d", i / 256, i % 256);
		login_guard_failed(g, key, t + 1 + i);
	}
	/* 10.0.0.1 was the oldest: it went first */
	CHECK_EQ(login_guard_wait(g, "addr 10.0.0.1", t), 0);
	/* the newest keys are all still counted */
	t = fail_n(g, key, LOGIN_GUARD_FREE, t + 2 * LOGIN_GUARD_KEYS);
	CHECK_EQ(login_guard_wait(g, key, t), S);
	char longkey[LOGIN_GUARD_KEY_MAX * 2];
	snprintf(longkey, sizeof(longkey), "user %0*d", LOGIN_GUARD_KEY_MAX, 7);
	t = fail_n(g, longkey, LOGIN_GUARD_FREE + 1, t + S);
	CHECK_EQ(login_guard_wait(g, longkey, t), S);
	login_guard_free(g);
}

int
main(void)
{
	RUN(test_free_then_doubling);
	RUN(test_forgotten_after_quiet);
	RUN(test_full_table);
	return check_summary();
}

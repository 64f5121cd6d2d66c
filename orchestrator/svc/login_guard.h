/* login_guard.h -- wrong passwords cost time: the console's guard against
 * guessing (console_auth.c; docs/console.md, "Login").
 *
 * Every failed login is counted against keys the caller names: the
 * client's address ("addr 10.0.0.7") and the user name tried ("user
 * alice"). A key's first LOGIN_GUARD_FREE failures cost nothing; after
 * that it must wait before its next try, 1 s after the 6th failure,
 * doubling with each further one, at most LOGIN_GUARD_MAX_MS, counted
 * from its last failure. A try while a key waits is refused without
 * checking the password (a yescrypt hash is tens of milliseconds of
 * CPU, itself worth guarding) and is not counted.
 *
 * A success clears its keys; a key without a failure for
 * LOGIN_GUARD_FORGET_MS is forgotten. The table holds LOGIN_GUARD_KEYS
 * keys: when it is full the key whose last failure is oldest gives way,
 * so a flood of new addresses costs memory bounded by the table and can
 * only make the guard forget old, quiet keys.
 *
 * Pure: no clock, no lock, no I/O. The caller passes the time
 * (clock_mono_ms) and serialises the calls. */
#ifndef SAGA_LOGIN_GUARD_H
#define SAGA_LOGIN_GUARD_H

#include <stdint.h>

#define LOGIN_GUARD_FREE      5
#define LOGIN_GUARD_BASE_MS   1000LL
#define LOGIN_GUARD_MAX_MS    (15LL * 60 * 1000)
#define LOGIN_GUARD_FORGET_MS (60LL * 60 * 1000)
#define LOGIN_GUARD_KEYS      512
#define LOGIN_GUARD_KEY_MAX   80 /* longer keys are cut */

struct login_guard;

/* A guard with no key; NULL when out of memory. */
struct login_guard *login_guard_new(void);
void login_guard_free(struct login_guard *g);

/* How long key must still wait before it may try again (ms, 0: now). */
int64_t login_guard_wait(const struct login_guard *g, const char *key,
                         int64_t now_ms);
/* A wrong password for key at now_ms. */
void login_guard_failed(struct login_guard *g, const char *key, int64_t now_ms);
/* The right password: key starts over. */
void login_guard_ok(struct login_guard *g, const char *key);

#endif

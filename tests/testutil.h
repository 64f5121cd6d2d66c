/* testutil.h -- helpers shared by the test programs.
 *
 * Private brokers: a test that only publishes and consumes uses the broker
 * scripts/test started (SAGA_TEST_AMQP_URL). A test that restarts or breaks
 * a broker starts its own with testbroker_start(); the broker script's
 * watchdog stops it even if the test is killed.
 */
#ifndef SAGA_TESTUTIL_H
#define SAGA_TESTUTIL_H

#include <stddef.h>

#include "check.h"

/* Creates a fresh private directory under $TMPDIR; returns a malloc'd path
 * (caller frees) or NULL. testutil_rmtree() removes it again. */
char *testutil_tmpdir(const char *prefix);
int testutil_rmtree(const char *path);

/* Reads a whole file into a malloc'd NUL-terminated buffer; NULL on error. */
char *testutil_slurp(const char *path, size_t *len);

/* Runs a shell command and captures stdout (malloc'd, trailing newline
 * stripped) into *out if out is not NULL. Returns the exit status, -1 if
 * the command could not run. */
int testutil_sh(char **out, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* The AMQP URL of the shared private broker, or NULL when none was started
 * (the caller then SKIPs or starts its own). */
const char *testutil_amqp_url(void);

/* Starts a private broker named `name` (unique per test) owned by this
 * process; returns its AMQP URL (malloc'd) or NULL. */
char *testbroker_start(const char *name);
/* The same with extra scripts/broker flags, e.g. "--tls". */
char *testbroker_start_args(const char *name, const char *args);
/* stop / restart / any scripts/broker verb, e.g. "stop", "restart". */
int testbroker_ctl(const char *name, const char *verb);

#endif

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
#include <stdint.h>

#include <sqlite3.h>

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

/* Starts a private broker named `name`-<pid> (unique per test and per
 * run) owned by this process; returns its AMQP URL (malloc'd) or NULL. */
char *testbroker_start(const char *name);
/* The same with extra scripts/broker flags, e.g. "--tls". */
char *testbroker_start_args(const char *name, const char *args);
/* The management API's URL of that broker, with its guest credentials
 * (malloc'd), or NULL. */
char *testbroker_mgmt_url(const char *name);
/* stop / restart / any scripts/broker verb, e.g. "stop", "restart". */
int testbroker_ctl(const char *name, const char *verb);

/* A free loopback TCP port for a daemon to listen on: one that binds now,
 * from below the kernel's ephemeral range (like scripts/broker), so no
 * outgoing connection takes it before the daemon binds it; 0 if none. */
int testutil_free_port(void);

/* The first column of the first row of sql on the SQLite database at
 * path, opened read-only (a daemon may be writing it: 5 s busy
 * timeout); -1 if it cannot be read. */
int testutil_db_count(const char *path, const char *sql);

/* The same on an open connection; -1 if the statement fails or returns
 * no row. */
int64_t testutil_db_int(sqlite3 *db, const char *sql);

/* One HTTP/1.1 request to 127.0.0.1:port (body may be NULL; extra_headers
 * "Name: value\r\n..." or NULL). Returns the response body (malloc'd)
 * and the status code in *status; NULL if the connection failed. */
char *testutil_http(int port, const char *method, const char *path,
                    const char *extra_headers, const char *body, int *status);

/* GETs path until its body holds every string of `want` (NULL-ended),
 * for at most timeout_ms (a daemon's /metrics is a snapshot its loop
 * refreshes every 250 ms, lib/http.h); the last body (caller frees). */
char *testutil_http_until(int port, const char *path, const char *const *want,
                          int timeout_ms, int *status);

/* Starts argv[0] (a program in $SAGA_BIN_DIR, or a path) with argv, its
 * stderr appended to log; remembers it so testutil_kill_all() stops every
 * process a test started, even after a failed check. pid or -1. */
int testutil_spawn(const char *const argv[], const char *log);
/* Sends sig, waits; returns the exit status (128+signal if killed). */
int testutil_stop(int pid, int sig);
void testutil_kill_all(void);

#endif

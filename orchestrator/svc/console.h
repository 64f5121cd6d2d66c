/* console.h -- the operator console: read-only HTML pages and the JSON API
 * behind them, served on the orchestrator's HTTP listener (lib/http.h).
 *
 *   GET /api/sagas?status=&chart=&state=&id_prefix=&older_than=&q=
 *                  &limit=&after=            sagas, newest first, by key
 *   GET /api/sagas/ID                        one saga: data, timeline, timer,
 *                                            path, what compensating runs,
 *                                            its events from the stream
 *                                            audit (console_saga_audit)
 *   GET /api/stuck?for=                      stuck sagas: how long, why
 *   GET /api/charts                          versions, sagas per state
 *   GET /api/summary                         counts, step latency, throughput
 *   GET /  /sagas  /sagas/ID  /stuck  /charts   the same as pages
 *
 *   GET /api/dlq?peek=N                      dead-letter queues (found on the
 *                                            broker), groups by reason
 *   GET /api/dlq/QUEUE?limit=N               one DLQ: groups and messages
 *   GET /dlq  /dlq/QUEUE                     the same as pages
 *                                            (console_dlq_start)
 *
 * docs/console.md is the API's reference.
 *
 * Threads. Every request runs on an HTTP thread (never the saga loop) and
 * opens its own read-only connection to the database (store_open_readonly)
 * for the request: no connection is shared between threads, and no
 * statement outlives the request, so nothing pins a WAL snapshot. Opening
 * costs a few hundred microseconds; a page costs a few queries more. A
 * thread that serves a console request runs at nice 10 from then on, so
 * that on a small machine the saga loop gets the cores first
 * (bench/README.md, "Console").
 *
 *   GET  /api/sagas/ID/preview?action=&step=   what an action would do
 *   POST /api/sagas/ID/actions {action, reason, step?}   do it: the answer
 *   GET  /api/actions/preview?action=&step=&<filter>   the same in bulk
 *   POST /api/actions {action, reason, step?, expect, <filter>}
 *   GET  /login   POST /login {user, password}   POST /logout
 *
 * Actions. The HTTP thread hands the request to the saga loop (`operate`,
 * the loop's mailbox: loop_operate) and waits for its answer, after the
 * loop's commit; the loop is never held up by a client. Every POST but
 * /login needs a logged-in user (a session from a users file of crypt(3)
 * hashes, or a reverse proxy's trusted header) and the header
 * X-Saga-Console (the CSRF guard); with neither a users file nor a
 * trusted header, actions are refused. Reading is open on a loopback
 * listener (or with no login configured); on any other address with
 * logins configured, reading needs a login too.
 *
 * Failure contract: console_start returns NULL with the reason in err (out
 * of memory, or the route table full); requests never fail the daemon: a
 * bad parameter is 400, an unknown saga 404, a database error 503, each
 * with a message.
 */
#ifndef SAGA_CONSOLE_H
#define SAGA_CONSOLE_H

#include <stddef.h>

#include <stdbool.h>

struct http;
struct console;
struct loop_op;

/* Applies operator requests in the saga loop and waits for them
 * (loop_operate's contract: 0 answered, -1 not applied, -2 the loop did
 * not take them within timeout_ms). Called on HTTP threads. */
typedef int (*console_operate_fn)(void *arg, struct loop_op *ops, size_t n,
                                  int timeout_ms, char *err, size_t errlen);

/* How long an action waits for the loop to take it. */
#define CONSOLE_ACT_TIMEOUT_MS 10000

struct console_config {
	const char *db_path;      /* read with connections of its own */
	const char *listen;       /* the listener's HOST:PORT (loopback?) */
	const char *users_file;   /* --console-users, or NULL */
	const char *trust_header; /* --console-trust-header, or NULL */
	/* the broker URL the saga page and /api/sagas/ID read the saga's
	 * events from the stream audit with (the operator's: --dlq-amqp),
	 * or NULL: they say it is not configured */
	const char *audit_amqp;
	console_operate_fn operate; /* NULL: actions answered 503 */
	void *operate_arg;
};

/* Routes the console's paths on h (cfg's strings are copied). NULL with
 * err on a bad users file or out of memory. Free with console_free after
 * http_close(h): the routes use the console until the listener stops. */
struct console *console_start(struct http *h, const struct console_config *cfg,
                              char *err, size_t errlen);

/* "name:$y$...": a users-file line for name and password (yescrypt, a
 * fresh salt): 0, or -1 with err. */
int console_hash_line(const char *name, const char *password, char *out,
                      size_t cap, char *err, size_t errlen);
/* NULL is fine. */
void console_free(struct console *c);

/* Routes /dlq and /api/dlq on h: the dead-letter queues read through the
 * broker's management API (lib/mgmt.h) at mgmt_url, or, when it is NULL
 * or empty, at the one mgmt_default_url derives from amqp; the vhost is
 * amqp's. Every request is a peek (ackmode ack_requeue_true: see
 * console_dlq.c). Reading follows the console's rules (console_may_read);
 * replaying or discarding a group (POST /api/dlq/QUEUE/groups/KEY/replay
 * or /discard, {"expect": N, "reason": "..."}) is dlq_group_act
 * (dlq_group.h) over AMQP at act_amqp, the operator's broker URL, behind
 * console_guard; with no act_amqp it is refused (403) and the pages show
 * the sagactl command instead. NULL with the reason in err (a bad AMQP
 * URL, out of memory, the route table full). Free with console_dlq_free
 * after http_close(h). */
struct console_dlq;
struct console;
struct http_request;
/* May req read pages and the API (docs/console.md, "Who may read")? */
bool console_may_read(struct console *c, const struct http_request *req);
struct console_dlq *console_dlq_start(struct http *h, struct console *console,
                                      const char *amqp, const char *mgmt_url,
                                      const char *act_amqp, char *err,
                                      size_t errlen);
/* NULL is fine. */
void console_dlq_free(struct console_dlq *c);

#endif

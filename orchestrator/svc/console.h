/* console.h -- the operator console: read-only HTML pages and the JSON API
 * behind them, served on the orchestrator's HTTP listener (lib/http.h).
 *
 *   GET /api/sagas?status=&chart=&state=&id_prefix=&older_than=&q=
 *                  &limit=&after=            sagas, newest first, by key
 *   GET /api/sagas/ID                        one saga: data, timeline, timer,
 *                                            path, what compensating runs
 *   GET /api/stuck?for=                      stuck sagas: how long, why
 *   GET /api/charts                          versions, sagas per state
 *   GET /api/summary                         counts, step latency, throughput
 *   GET /  /sagas  /sagas/ID  /stuck  /charts   the same as pages
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
 * Actions (retry, resume, abort...) are not here yet: the saga page keeps
 * a place for them (section#actions) and the API answers GET only.
 *
 * Failure contract: console_start returns NULL with the reason in err (out
 * of memory, or the route table full); requests never fail the daemon: a
 * bad parameter is 400, an unknown saga 404, a database error 503, each
 * with a message.
 */
#ifndef SAGA_CONSOLE_H
#define SAGA_CONSOLE_H

#include <stddef.h>

struct http;
struct console;

/* Routes the console's paths on h, reading the database at db_path (the
 * string is copied). Free with console_free after http_close(h): the
 * routes use the console until the listener stops. */
struct console *console_start(struct http *h, const char *db_path, char *err,
                              size_t errlen);
/* NULL is fine. */
void console_free(struct console *c);

#endif

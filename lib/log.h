/* log.h -- the logging API: a handful of printf-like functions.
 *
 * One line per event on stderr:
 *   2026-11-24T19:12:03.123Z level=info prog=saga-orchestrator msg="..." k=v
 * ... Callers put structured fields in the message as key=value pairs
 * ("saga started saga=%s state=%s"). log_warn appends strerror(errno);
 * log_warnx does not. fatal/fatalx log and exit(1); they are for start-up
 * errors only, never for input from the network.
 * Not thread-safe beyond what stdio gives (one line is one fprintf).
 *
 * Trace context: while a daemon handles a message that carries a W3C
 * traceparent (lib/trace.h), it calls log_set_trace(traceparent), and
 * every line this thread logs until log_set_trace(NULL) ends with
 * ` trace_id=<32 hex>` after the message: the id a trace viewer, an
 * exported span (--otlp) and `sagactl show` give for the same order, so
 * `grep trace_id=ID` follows one order through every daemon's log.
 */
#ifndef SAGA_LOG_H
#define SAGA_LOG_H

#include <stdnoreturn.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the program name and the lowest level printed. Can't fail. */
void log_init(const char *prog, enum log_level level);
/* Parses "debug", "info", "warn", "error". Returns 0, or -1 if unknown. */
int log_level_parse(const char *s, enum log_level *out);
enum log_level log_get_level(void);
/* The trace of what this thread handles now; NULL or an invalid
 * traceparent: none. */
void log_set_trace(const char *traceparent);

#define LOG_PRINTF_(a, b) __attribute__((format(printf, a, b)))
void log_debug(const char *fmt, ...) LOG_PRINTF_(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF_(1, 2);
void log_warn(const char *fmt, ...) LOG_PRINTF_(1, 2);
void log_warnx(const char *fmt, ...) LOG_PRINTF_(1, 2);
void log_error(const char *fmt, ...) LOG_PRINTF_(1, 2);
noreturn void fatal(const char *fmt, ...) LOG_PRINTF_(1, 2);
noreturn void fatalx(const char *fmt, ...) LOG_PRINTF_(1, 2);

#endif

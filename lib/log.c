/* log.c -- see log.h. Lines are built in a local buffer and written with a
 * single fputs so that lines from one process never interleave. */
#include "log.h"

#include "clock.h"
#include "trace.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *log_prog = "saga";
static enum log_level log_min = LOG_INFO;

void
log_init(const char *prog, enum log_level level)
{
	log_prog = prog;
	log_min = level;
}

enum log_level
log_get_level(void)
{
	return log_min;
}

int
log_level_parse(const char *s, enum log_level *out)
{
	static const char *names[] = {"debug", "info", "warn", "error"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(s, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

/* The trace id of the message this thread handles now (log_set_trace),
 * "" for none. */
static _Thread_local char log_trace_id[33];

void
log_set_trace(const char *traceparent)
{
	if (traceparent == NULL || trace_parse(traceparent, log_trace_id) != 0)
		log_trace_id[0] = '\0';
}

static void log_vemit(enum log_level level, int err, const char *fmt,
                      va_list ap) __attribute__((format(printf, 3, 0)));

static void
log_vemit(enum log_level level, int err, const char *fmt, va_list ap)
{
	static const char *names[] = {"debug", "info", "warn", "error"};
	char line[2048];
	int64_t ms;
	time_t secs;
	struct tm tm;
	size_t n;
	int r;

	if (level < log_min)
		return;
	ms = clock_wall_ms();
	secs = (time_t)(ms / 1000);
	gmtime_r(&secs, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof(line) - n,
	             ".%03ldZ level=%s prog=%s msg=\"", (long)(ms % 1000),
	             names[level], log_prog);
	if (r > 0)
		n += (size_t)r;
	if (n < sizeof(line)) {
		r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		if (r > 0)
			n += (size_t)r;
	}
	if (n > sizeof(line) - 128)
		n = sizeof(line) - 128; /* truncated: keep room for the tail */
	if (err != 0)
		n += (size_t)snprintf(line + n, sizeof(line) - n, ": %s",
		                      strerror(err));
	if (log_trace_id[0] != '\0')
		snprintf(line + n, sizeof(line) - n, "\" trace_id=%s\n",
		         log_trace_id);
	else
		snprintf(line + n, sizeof(line) - n, "\"\n");
	/* fields after the message: "msg=\"text k=v\"" stays one quoted
	 * string, which grep and logfmt parsers both accept */
	fputs(line, stderr);
}

#define LOG_FN_(name, level, witherr)                                          \
	void name(const char *fmt, ...)                                        \
	{                                                                      \
		int e = errno;                                                 \
		va_list ap;                                                    \
		va_start(ap, fmt);                                             \
		log_vemit(level, witherr ? e : 0, fmt, ap);                    \
		va_end(ap);                                                    \
		errno = e;                                                     \
	}

LOG_FN_(log_debug, LOG_DEBUG, 0)
LOG_FN_(log_info, LOG_INFO, 0)
LOG_FN_(log_warn, LOG_WARN, 1)
LOG_FN_(log_warnx, LOG_WARN, 0)
LOG_FN_(log_error, LOG_ERROR, 0)

void
fatal(const char *fmt, ...)
{
	int e = errno;
	va_list ap;
	va_start(ap, fmt);
	log_vemit(LOG_ERROR, e, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vemit(LOG_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}

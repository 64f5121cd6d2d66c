/* Unit tests of lib/log: level parsing, that nothing below the level
 * is printed, and the trace id of the message in hand on every line. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "testutil.h"

static void
test_level_parse(void)
{
	enum log_level l;
	CHECK_EQ(log_level_parse("debug", &l), 0);
	CHECK_EQ(l, LOG_DEBUG);
	CHECK_EQ(log_level_parse("WARN", &l), 0);
	CHECK_EQ(l, LOG_WARN);
	CHECK_EQ(log_level_parse("loud", &l), -1);
}

static void
test_filtering(void)
{
	char path[] = "/tmp/saga-logtest-XXXXXX";
	int fd = mkstemp(path);
	int saved = dup(2);
	char *text;

	CHECK(fd >= 0 && saved >= 0);
	fflush(stderr);
	dup2(fd, 2);
	log_init("t", LOG_WARN);
	log_info("hidden line");
	log_warnx("shown line k=%d", 7);
	log_set_trace(
	        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
	log_warnx("traced line");
	log_set_trace("00-not-a-traceparent");
	log_warnx("bad trace line");
	log_set_trace(
	        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
	log_set_trace(NULL);
	log_warnx("untraced line");
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(fd);
	text = testutil_slurp(path, NULL);
	unlink(path);
	CHECK(text != NULL);
	CHECK_MSG(strstr(text, "hidden") == NULL, "info printed at warn: %s",
	          text);
	CHECK_MSG(strstr(text, "level=warn prog=t msg=\"shown line k=7\"") !=
	                  NULL,
	          "got: %s", text);
	CHECK_MSG(strstr(text,
	                 "msg=\"traced line\" "
	                 "trace_id=0af7651916cd43dd8448eb211c80319c\n") != NULL,
	          "got: %s", text);
	CHECK_MSG(strstr(text, "msg=\"bad trace line\"\n") != NULL, "got: %s",
	          text);
	CHECK_MSG(strstr(text, "msg=\"untraced line\"\n") != NULL, "got: %s",
	          text);
	free(text);
}

int
main(void)
{
	RUN(test_level_parse);
	RUN(test_filtering);
	return check_summary();
}

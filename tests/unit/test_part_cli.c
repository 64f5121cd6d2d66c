/* Unit tests of the participants' command line (participants/common/
 * cli.c): a flag that takes one of a list of words stores its index,
 * and refuses any other word by naming them all. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "participant.h"
#include "testutil.h"

static const char *const colours[] = {"red", "green", "blue", NULL};
static int colour = -1;
static const struct part_flag flags[] = {
        {"colour", .words = colours, .choice = &colour},
};
static const struct part_cli cli = {"test-svc", "usage\n", false,
                                    flags,      1,         NULL};

/* part_parse on argv, its stderr into err. */
static int
parse(char **argv, int argc, char *err, size_t errlen)
{
	struct part_common c;
	FILE *tmp = tmpfile();
	int saved = dup(2), rc;
	size_t n;

	fflush(stderr);
	dup2(fileno(tmp), 2);
	optind = 0; /* glibc: start getopt afresh */
	rc = part_parse(&cli, argc, argv, &c);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(tmp);
	n = fread(err, 1, errlen - 1, tmp);
	err[n] = '\0';
	fclose(tmp);
	return rc;
}

static void
test_word_stored(void)
{
	char a0[] = "test-svc", a1[] = "--colour", a2[] = "blue";
	char *argv[] = {a0, a1, a2, NULL};
	char err[256];
	CHECK_EQ(parse(argv, 3, err, sizeof(err)), -1);
	CHECK_EQ(colour, 2);
	CHECK_STR(err, "");
}

static void
test_other_word_refused(void)
{
	char a0[] = "test-svc", a1[] = "--colour", a2[] = "mauve";
	char *argv[] = {a0, a1, a2, NULL};
	char err[256];
	colour = -1;
	CHECK_EQ(parse(argv, 3, err, sizeof(err)), 2);
	CHECK_EQ(colour, -1);
	CHECK_STR(err, "test-svc: --colour: \"mauve\" is not red, green or "
	               "blue\n");
}

int
main(void)
{
	RUN(test_word_stored);
	RUN(test_other_word_refused);
	return check_summary();
}

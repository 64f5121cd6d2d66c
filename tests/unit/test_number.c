/* Unit tests of lib/number: the whole string is the number, within its
 * range; everything strtoll alone would let through is refused. */
#include <limits.h>
#include <stdio.h>

#include "number.h"
#include "testutil.h"

static void
test_good(void)
{
	static const struct {
		const char *s;
		long long want;
	} cases[] = {{"0", 0},
	             {"7", 7},
	             {"-3", -3},
	             {"0012", 12},
	             {"9223372036854775807", LLONG_MAX},
	             {"-9223372036854775808", LLONG_MIN}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long long v = 42;
		CHECK_MSG(number_parse(cases[i].s, LLONG_MIN, LLONG_MAX, &v) ==
		                          0 &&
		                  v == cases[i].want,
		          "\"%s\" gave %lld", cases[i].s, v);
	}
}

static void
test_refused(void)
{
	static const char *const bad[] = {"",
	                                  " 1",
	                                  "1 ",
	                                  "+1",
	                                  "1x",
	                                  "x1",
	                                  "-",
	                                  "--1",
	                                  "- 1",
	                                  "1.5",
	                                  "0x10",
	                                  "1e3",
	                                  "9223372036854775808",
	                                  "-9223372036854775809"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		long long v = 42;
		CHECK_MSG(number_parse(bad[i], LLONG_MIN, LLONG_MAX, &v) ==
		                          -1 &&
		                  v == 42,
		          "\"%s\" was taken as %lld", bad[i], v);
	}
	CHECK_EQ(number_parse(NULL, 0, 1, &(long long){0}), -1);
}

static void
test_range(void)
{
	long long v = 42;
	CHECK_EQ(number_parse("1", 1, 10, &v), 0);
	CHECK_EQ(v, 1);
	CHECK_EQ(number_parse("10", 1, 10, &v), 0);
	CHECK_EQ(v, 10);
	CHECK_EQ(number_parse("0", 1, 10, &v), -1);
	CHECK_EQ(number_parse("11", 1, 10, &v), -1);
	CHECK_EQ(number_parse("-1", 0, 10, &v), -1);
	CHECK_EQ(v, 10);
}

int
main(void)
{
	RUN(test_good);
	RUN(test_refused);
	RUN(test_range);
	return check_summary();
}

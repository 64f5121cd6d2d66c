/* check.h -- the tiny assert header for every test program.
 *
 * A test file defines functions `static void test_x(void)` and calls
 * RUN(test_x) from main(), then returns check_summary(). A failed CHECK
 * prints file:line and both operands, marks the current test failed and
 * returns from it (so later checks in the same test do not run on bad state).
 * check_summary() prints "N passed, N failed" (the line CI reads) and returns
 * the exit code.
 */
#ifndef SAGA_CHECK_H
#define SAGA_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

extern int check_passed, check_failed, check_current_failed;
extern const char *check_current;

#define CHECK_FAIL_(...)                                                       \
	do {                                                                   \
		fprintf(stderr, "FAIL %s (%s:%d): ", check_current, __FILE__,  \
		        __LINE__);                                             \
		fprintf(stderr, __VA_ARGS__);                                  \
		fputc('\n', stderr);                                           \
		check_current_failed = 1;                                      \
	} while (0)

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			CHECK_FAIL_("%s", #cond);                              \
			return;                                                \
		}                                                              \
	} while (0)

#define CHECK_MSG(cond, ...)                                                   \
	do {                                                                   \
		if (!(cond)) {                                                 \
			CHECK_FAIL_(__VA_ARGS__);                              \
			return;                                                \
		}                                                              \
	} while (0)

#define CHECK_INT(a, op, b)                                                    \
	do {                                                                   \
		intmax_t a_ = (intmax_t)(a), b_ = (intmax_t)(b);               \
		if (!(a_ op b_)) {                                             \
			CHECK_FAIL_("%s %s %s (%jd vs %jd)", #a, #op, #b, a_,  \
			            b_);                                       \
			return;                                                \
		}                                                              \
	} while (0)

#define CHECK_EQ(a, b) CHECK_INT(a, ==, b)

#define CHECK_STR(a, b)                                                        \
	do {                                                                   \
		const char *a_ = (a), *b_ = (b);                               \
		if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {         \
			CHECK_FAIL_("%s == %s (\"%s\" vs \"%s\")", #a, #b,     \
			            a_ ? a_ : "(null)", b_ ? b_ : "(null)");   \
			return;                                                \
		}                                                              \
	} while (0)

/* A test that cannot run here says why and counts as neither. */
#define SKIP(...)                                                              \
	do {                                                                   \
		fprintf(stderr, "SKIP %s: ", check_current);                   \
		fprintf(stderr, __VA_ARGS__);                                  \
		fputc('\n', stderr);                                           \
		check_current_failed = -1;                                     \
		return;                                                        \
	} while (0)

/* RUN(fn) runs test fn; with CHECK_ONLY=TEXT in the environment only the
 * tests whose name contains TEXT run (a developer's filter). */
#define RUN(fn) check_run_(#fn, fn)

void check_run_(const char *name, void (*fn)(void));
int check_summary(void);

#endif

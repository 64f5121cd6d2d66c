/* number.h -- a whole decimal number from text: a flag's value, a query
 * parameter, a config file's value.
 *
 * The whole string must be the number: digits, with an optional '-' in
 * front; no space, no '+', nothing after. What strtoll alone would let
 * through ("12abc", " 12", "", an overflow clamped to LLONG_MAX) is
 * refused, and so is a number outside [min, max]. The caller says what
 * was wrong: the flag, the value and the range.
 */
#ifndef SAGA_NUMBER_H
#define SAGA_NUMBER_H

/* 0 with the number in *out, or -1 (*out untouched) if s is not a whole
 * decimal number within [min, max]. s may be NULL (-1). */
int number_parse(const char *s, long long min, long long max, long long *out);

#endif

/* number.c -- see number.h. */
#include "number.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>

int
number_parse(const char *s, long long min, long long max, long long *out)
{
	const char *digits;
	char *end;
	long long v;

	assert(min <= max);
	if (s == NULL)
		return -1;
	digits = s[0] == '-' ? s + 1 : s;
	if (!isdigit((unsigned char)digits[0]))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

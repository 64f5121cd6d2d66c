/* entropy.c -- see entropy.h. */
#include "entropy.h"

#include <assert.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

_Static_assert(ENTROPY_POOL_BYTES <= 256,
               "getrandom returns at most 256 bytes without a short read");

static _Thread_local unsigned char pool[ENTROPY_POOL_BYTES];
static _Thread_local size_t left; /* unused bytes, at the pool's end */

int
entropy_bytes(void *buf, size_t n)
{
	assert(n <= ENTROPY_POOL_BYTES);
	if (n > ENTROPY_POOL_BYTES)
		return -1;
	if (left < n) {
		if (getrandom(pool, sizeof(pool), 0) != (ssize_t)sizeof(pool))
			return -1;
		left = sizeof(pool);
	}
	memcpy(buf, pool + sizeof(pool) - left, n);
	/* a byte handed out is never handed out again */
	memset(pool + sizeof(pool) - left, 0, n);
	left -= n;
	return 0;
}

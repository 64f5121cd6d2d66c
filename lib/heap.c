/* heap.c -- see heap.h. */
#include "heap.h"

#include <malloc.h>

_Static_assert(HEAP_KEEP_BYTES >= 128 * 1024,
               "below glibc's default trim threshold it would trim more");

int
heap_keep_top(void)
{
	/* M_TRIM_THRESHOLD set by hand also stops glibc from raising it
	 * (and the mmap threshold) on its own: large blocks stay mmap()ed. */
	return mallopt(M_TRIM_THRESHOLD, HEAP_KEEP_BYTES) == 1 ? 0 : -1;
}

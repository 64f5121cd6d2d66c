/* Unit tests of lib/heap: after heap_keep_top() the free memory at the
 * top of the heap stays there instead of going back to the kernel. The
 * same steps before it show glibc trimming, so the test can fail. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include "heap.h"
#include "testutil.h"

enum { BLOCKS = 1024, BLOCK = 1000 }; /* ~1 MiB, none of them mmap()ed */

/* Allocates ~1 MiB at the top of the heap, frees it, and returns how
 * much free memory the top of the heap then holds (mallinfo2 keepcost). */
static size_t
top_after_free(void)
{
	static void *p[BLOCKS];

	for (int i = 0; i < BLOCKS; i++) {
		p[i] = malloc(BLOCK);
		if (p[i] == NULL)
			return 0;
	}
	for (int i = 0; i < BLOCKS; i++) /* in order: each joins the last */
		free(p[i]);
	return mallinfo2().keepcost;
}

static void
test_keeps_top(void)
{
	size_t before, after;

#if defined(__SANITIZE_ADDRESS__)
	/* ASan replaces malloc: neither mallopt nor mallinfo2 mean anything. */
	printf("# skipped under AddressSanitizer\n");
	return;
#endif
	before = top_after_free();
	CHECK_EQ(heap_keep_top(), 0);
	after = top_after_free();
	printf("# free at the heap's top: %zu bytes before, %zu after\n",
	       before, after);
	CHECK_MSG(
	        before < (size_t)BLOCKS * BLOCK / 2,
	        "glibc did not trim by default (%zu): the test proves nothing",
	        before);
	CHECK_MSG(after >= (size_t)BLOCKS * BLOCK,
	          "the top was given back after heap_keep_top (%zu)", after);
	CHECK(after <= HEAP_KEEP_BYTES);
}

int
main(void)
{
	RUN(test_keeps_top);
	return check_summary();
}

/* Unit tests of lib/entropy: the bytes are getrandom's, distinct from id
 * to id and from thread to thread, and one getrandom call serves many
 * ids. This program defines getrandom itself (the executable's symbol
 * comes first), counts the calls and passes them to the kernel. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "entropy.h"
#include "envelope.h"
#include "testutil.h"

static int calls;

ssize_t
getrandom(void *buf, size_t len, unsigned int flags)
{
	__atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
	return syscall(SYS_getrandom, buf, len, flags);
}

enum { IDS = 1000, ID_BYTES = 10 };

static void
test_distinct_and_pooled(void)
{
	static unsigned char ids[IDS][ID_BYTES];
	int before = calls;

	for (int i = 0; i < IDS; i++)
		CHECK_EQ(entropy_bytes(ids[i], ID_BYTES), 0);
	for (int i = 0; i < IDS; i++)
		for (int j = i + 1; j < IDS; j++)
			CHECK_MSG(memcmp(ids[i], ids[j], ID_BYTES) != 0,
			          "ids %d and %d are the same", i, j);
	printf("# %d ids of %d bytes: %d getrandom calls\n", IDS, ID_BYTES,
	       calls - before);
	CHECK(calls - before > 0);
	CHECK(calls - before <= IDS * ID_BYTES / ENTROPY_POOL_BYTES + 1);
}

/* A request larger than what is left refills the pool; the whole pool
 * can be taken at once. */
static void
test_sizes(void)
{
	unsigned char a[ENTROPY_POOL_BYTES], b[ENTROPY_POOL_BYTES];
	CHECK_EQ(entropy_bytes(a, ENTROPY_POOL_BYTES - 3), 0);
	CHECK_EQ(entropy_bytes(b, 7), 0);
	CHECK(memcmp(a + ENTROPY_POOL_BYTES - 10, b, 7) != 0);
	CHECK_EQ(entropy_bytes(a, ENTROPY_POOL_BYTES), 0);
	CHECK_EQ(entropy_bytes(b, ENTROPY_POOL_BYTES), 0);
	CHECK(memcmp(a, b, ENTROPY_POOL_BYTES) != 0);
}

static void *
draw(void *arg)
{
	return entropy_bytes(arg, 16) == 0 ? arg : NULL;
}

static void
test_threads_own_pools(void)
{
	unsigned char a[16], b[16];
	pthread_t ta, tb;
	void *ra, *rb;
	CHECK_EQ(pthread_create(&ta, NULL, draw, a), 0);
	CHECK_EQ(pthread_create(&tb, NULL, draw, b), 0);
	pthread_join(ta, &ra);
	pthread_join(tb, &rb);
	CHECK(ra == a && rb == b);
	CHECK(memcmp(a, b, sizeof(a)) != 0);
}

/* The message ids built on it stay distinct. */
static void
test_message_ids(void)
{
	char x[64], y[64];
	CHECK_EQ(envelope_new_id(x, sizeof(x), "cmd"), 0);
	CHECK_EQ(envelope_new_id(y, sizeof(y), "cmd"), 0);
	CHECK(strcmp(x, y) != 0);
	CHECK_EQ(strncmp(x, "cmd-", 4), 0);
}

int
main(void)
{
	RUN(test_distinct_and_pooled);
	RUN(test_sizes);
	RUN(test_threads_own_pools);
	RUN(test_message_ids);
	return check_summary();
}

/* hash.c -- see hash.h. */
#include "hash.h"

#include <string.h>

uint64_t
hash_fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * HASH_FNV_PRIME;
	return h;
}

uint64_t
hash_fnv1a_str(uint64_t h, const char *s)
{
	return hash_fnv1a(h, s, strlen(s));
}

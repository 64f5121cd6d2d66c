/* hash.h -- FNV-1a, the one non-cryptographic hash in the tree.
 *
 * Used where a stable, well-spread number is wanted from bytes and an
 * attacker gains nothing by choosing collisions: a chart's version (the
 * hash of its canonical text), a shard of a saga id, the simulated outcome
 * of a payment. Stable across hosts and releases: a chart version written
 * to the database must hash the same tomorrow, so never change it.
 *
 * Incremental: start with HASH_FNV_INIT, feed bytes in as many calls as
 * needed; the same bytes in any split give the same hash.
 */
#ifndef SAGA_HASH_H
#define SAGA_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_FNV_INIT  14695981039346656037ULL
#define HASH_FNV_PRIME 1099511628211ULL

/* h folded with the n bytes at p. */
uint64_t hash_fnv1a(uint64_t h, const void *p, size_t n);
/* h folded with the bytes of the C string s (not its NUL). */
uint64_t hash_fnv1a_str(uint64_t h, const char *s);

#endif

/* entropy.h -- random bytes for ids, without a syscall each.
 *
 * Every message id (envelope_new_id) and every trace span id takes 8-16
 * random bytes. Read straight from getrandom(2), that was 9.5 syscalls
 * per saga in the orchestrator at half load on the bench, a sixth of all
 * it made, and a syscall is dear on a virtual machine (bench/README.md,
 * "Fewer syscalls a step"). entropy_bytes() hands out bytes from a
 * per-thread pool of ENTROPY_POOL_BYTES that getrandom fills, so one
 * syscall serves about thirty ids.
 *
 * The bytes are getrandom's own, unchanged: ids stay unpredictable and
 * distinct. What the pool gives up is forward secrecy for bytes not yet
 * handed out (they sit in memory until used), which is why secrets
 * (console session tokens) keep calling getrandom directly.
 *
 * Threads: each thread has its own pool, no lock. Fork: a child would
 * hand out the bytes its parent still had; no daemon forks after it has
 * used the pool (none forks at all).
 */
#ifndef SAGA_ENTROPY_H
#define SAGA_ENTROPY_H

#include <stddef.h>

/* Bytes getrandom(2) fills at once: at most 256, the size it never
 * splits or interrupts. */
#define ENTROPY_POOL_BYTES 256

/* Fills buf with n random bytes (n at most ENTROPY_POOL_BYTES). 0, or -1
 * when getrandom fails (buf is then unspecified). */
int entropy_bytes(void *buf, size_t n);

#endif

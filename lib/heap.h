/* heap.h -- how a daemon's malloc heap behaves.
 *
 * glibc gives the top of its heap back to the kernel (brk) whenever more
 * than 128 KiB is free there, and takes it back on the next allocation
 * that needs it. SQLite frees and reallocates such blocks inside its
 * transactions (savepoints): payment-svc did so 22 times a second at
 * half load on the bench. On a virtual machine each
 * shrink is an unmap and a TLB flush, which cost about a millisecond
 * each there (bench/README.md, "A core for the broker": 2.8% of the
 * daemons' core went to brk alone).
 */
#ifndef SAGA_HEAP_H
#define SAGA_HEAP_H

/* The most free memory a daemon keeps at the top of its heap instead of
 * giving it back: above it, glibc trims as before. */
#define HEAP_KEEP_BYTES (16 * 1024 * 1024)

/* Call once at start, before the first allocation that matters. Returns
 * 0, or -1 when the C library does not take the setting (it then trims
 * as before; nothing else changes). */
int heap_keep_top(void);

#endif

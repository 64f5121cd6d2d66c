/* walbuf.h -- one write(2) per commit to SQLite's write-ahead log.
 *
 * SQLite writes a WAL frame as two pwrite calls, its 24-byte header and
 * its page, so a commit that changes 49 pages (the orchestrator's at
 * half load on the bench) makes 98 of them before its fdatasync: 24.6
 * syscalls per saga, the most of any call, on a virtual machine where a
 * syscall is dear (bench/README.md, "Fewer syscalls a step").
 *
 * WALBUF_VFS is a VFS shim over SQLite's default one. A file SQLite
 * opens as a WAL (SQLITE_OPEN_WAL) gets a buffer: a write that continues
 * the buffered run is appended to it; any other write, and every read,
 * sync, truncate, size query, file control and close, first writes the
 * run out with one call. Every other file (the database, its -shm, any
 * journal) is the default VFS's own file, untouched.
 *
 * Why it keeps every promise:
 *   - Order: the buffer holds one contiguous run and is written out
 *     before any write elsewhere, so the file sees the writes in
 *     SQLite's order (an in-place rewrite of a frame included).
 *   - Durability: a commit ends with xSync on the WAL when synchronous is
 *     FULL, which writes the run out first: COMMIT returns after the same
 *     fdatasync as before, of the same bytes.
 *   - Other connections: they read a frame only once the wal-index says
 *     it is committed, and SQLite updates the wal-index after that sync.
 *     With synchronous=NORMAL there is no sync at commit and a reader
 *     could look for a frame still in the buffer, so db_open() checks
 *     that every connection it opens through this VFS is FULL (or EXTRA).
 *   - Errors: a write that fails when the run goes out (a full disk) is
 *     returned by the call that sent it out, the sync of a commit most
 *     often; SQLite then rolls back as if the write itself had failed,
 *     and the run is dropped (the frames past the last commit mean
 *     nothing to SQLite).
 *   - A crash: what was buffered was never synced, as if the process had
 *     died before the write; nothing had been acknowledged.
 *
 * A run is written out when it reaches WALBUF_MAX_BYTES, so a big
 * transaction costs at most that much memory per WAL.
 */
#ifndef SAGA_WALBUF_H
#define SAGA_WALBUF_H

#include <stdint.h>

/* The name to pass to sqlite3_open_v2 after walbuf_register(). */
#define WALBUF_VFS "saga-walbuf"

/* The longest run held in memory: 64 frames of 16 KiB pages. */
#define WALBUF_MAX_BYTES (1024 * 1024)

/* Registers WALBUF_VFS over the default VFS (not as the default). Safe to
 * call from any thread, any number of times. SQLITE_OK or SQLite's error
 * code. */
int walbuf_register(void);

/* What the shim did in this process so far: the writes SQLite asked for
 * on WAL files, and the writes the files received. */
struct walbuf_stats {
	uint64_t writes_asked;
	uint64_t writes_made;
};
void walbuf_stats(struct walbuf_stats *out);

#endif

/* walbuf.c -- see walbuf.h. A VFS shim in the shape of SQLite's own
 * (ext/misc/vfstrace.c): the file struct holds ours first and the
 * default VFS's file after it. */
#include "walbuf.h"

#include <assert.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

_Static_assert(WALBUF_MAX_BYTES >= 2 * (65536 + 24) &&
                       WALBUF_MAX_BYTES <= 0x7fffffff,
               "a run holds at least two frames of the largest page");

struct wal_file {
	sqlite3_file base;   /* pMethods = &wal_methods */
	unsigned char *buf;  /* the run, WALBUF_MAX_BYTES, on first write */
	size_t len;          /* bytes in the run */
	sqlite3_int64 start; /* the file offset of buf[0] */
	sqlite3_file *real;  /* the default VFS's file, just after us */
};

static sqlite3_vfs shim;
static sqlite3_vfs *under;
static int register_rc = SQLITE_ERROR;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static uint64_t asked, made; /* atomics */

/* The unix VFS writes at most 128 KiB - 1 bytes a call (seekAndWriteFd
 * masks the length with 0x1ffff: a call of exactly 128 KiB writes
 * nothing and returns SQLITE_FULL), so a run goes out in pieces of 124
 * KiB. */
#define PIECE_BYTES (124 * 1024)
_Static_assert(PIECE_BYTES < 0x1ffff, "within the unix VFS's write size");

static int
run_out(struct wal_file *w)
{
	int rc = SQLITE_OK;
	for (size_t at = 0; at < w->len && rc == SQLITE_OK; at += PIECE_BYTES) {
		size_t n =
		        w->len - at < PIECE_BYTES ? w->len - at : PIECE_BYTES;
		rc = w->real->pMethods->xWrite(w->real, w->buf + at, (int)n,
		                               w->start + (sqlite3_int64)at);
		__atomic_add_fetch(&made, 1, __ATOMIC_RELAXED);
	}
	w->len = 0; /* written or failed, it is not written again */
	return rc;
}

static int
wal_close(sqlite3_file *f)
{
	struct wal_file *w = (struct wal_file *)f;
	int rc = run_out(w);
	int rc2 = w->real->pMethods->xClose(w->real);
	free(w->buf);
	w->buf = NULL;
	return rc != SQLITE_OK ? rc : rc2;
}

static int
wal_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
	struct wal_file *w = (struct wal_file *)f;
	int rc = run_out(w);
	return rc != SQLITE_OK ? rc
	                       : w->real->pMethods->xRead(w->real, p, n, off);
}

static int
wal_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
	struct wal_file *w = (struct wal_file *)f;
	int rc;

	assert(n >= 0);
	__atomic_add_fetch(&asked, 1, __ATOMIC_RELAXED);
	if (w->len > 0 && off == w->start + (sqlite3_int64)w->len &&
	    w->len + (size_t)n <= WALBUF_MAX_BYTES) {
		memcpy(w->buf + w->len, p, (size_t)n);
		w->len += (size_t)n;
		return SQLITE_OK;
	}
	if ((rc = run_out(w)) != SQLITE_OK)
		return rc;
	if (w->buf == NULL)
		w->buf = malloc(WALBUF_MAX_BYTES);
	if (w->buf == NULL || (size_t)n > WALBUF_MAX_BYTES / 2) {
		__atomic_add_fetch(&made, 1, __ATOMIC_RELAXED);
		return w->real->pMethods->xWrite(w->real, p, n, off);
	}
	memcpy(w->buf, p, (size_t)n);
	w->len = (size_t)n;
	w->start = off;
	return SQLITE_OK;
}

static int
wal_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	struct wal_file *w = (struct wal_file *)f;
	int rc = run_out(w);
	return rc != SQLITE_OK ? rc
	                       : w->real->pMethods->xTruncate(w->real, size);
}

static int
wal_sync(sqlite3_file *f, int flags)
{
	struct wal_file *w = (struct wal_file *)f;
	int rc = run_out(w);
	return rc != SQLITE_OK ? rc : w->real->pMethods->xSync(w->real, flags);
}

static int
wal_size(sqlite3_file *f, sqlite3_int64 *size)
{
	struct wal_file *w = (struct wal_file *)f;
	int rc = run_out(w);
	return rc != SQLITE_OK ? rc
	                       : w->real->pMethods->xFileSize(w->real, size);
}

static int
wal_lock(sqlite3_file *f, int lock)
{
	struct wal_file *w = (struct wal_file *)f;
	return w->real->pMethods->xLock(w->real, lock);
}

static int
wal_unlock(sqlite3_file *f, int lock)
{
	struct wal_file *w = (struct wal_file *)f;
	return w->real->pMethods->xUnlock(w->real, lock);
}

static int
wal_reserved(sqlite3_file *f, int *out)
{
	struct wal_file *w = (struct wal_file *)f;
	return w->real->pMethods->xCheckReservedLock(w->real, out);
}

static int
wal_control(sqlite3_file *f, int op, void *arg)
{
	struct wal_file *w = (struct wal_file *)f;
	int rc = run_out(w);
	return rc != SQLITE_OK
	               ? rc
	               : w->real->pMethods->xFileControl(w->real, op, arg);
}

static int
wal_sector(sqlite3_file *f)
{
	struct wal_file *w = (struct wal_file *)f;
	return w->real->pMethods->xSectorSize(w->real);
}

static int
wal_caps(sqlite3_file *f)
{
	struct wal_file *w = (struct wal_file *)f;
	return w->real->pMethods->xDeviceCharacteristics(w->real);
}

/* Version 1: SQLite never maps or shares memory through a WAL file. */
static const sqlite3_io_methods wal_methods = {
        .iVersion = 1,
        .xClose = wal_close,
        .xRead = wal_read,
        .xWrite = wal_write,
        .xTruncate = wal_truncate,
        .xSync = wal_sync,
        .xFileSize = wal_size,
        .xLock = wal_lock,
        .xUnlock = wal_unlock,
        .xCheckReservedLock = wal_reserved,
        .xFileControl = wal_control,
        .xSectorSize = wal_sector,
        .xDeviceCharacteristics = wal_caps,
};

/* Any file but a WAL is the default VFS's own, opened in our space (our
 * szOsFile is larger than its). */
static int
shim_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags,
          int *out_flags)
{
	struct wal_file *w = (struct wal_file *)f;
	int rc;

	(void)vfs;
	if ((flags & SQLITE_OPEN_WAL) == 0)
		return under->xOpen(under, name, f, flags, out_flags);
	memset(w, 0, sizeof(*w));
	w->real = (sqlite3_file *)(w + 1);
	rc = under->xOpen(under, name, w->real, flags, out_flags);
	if (w->real->pMethods != NULL)
		w->base.pMethods = &wal_methods;
	return rc;
}

/* The rest is the default VFS's. */
static int
shim_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
	(void)v;
	return under->xDelete(under, name, sync_dir);
}

static int
shim_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
	(void)v;
	return under->xAccess(under, name, flags, out);
}

static int
shim_full(sqlite3_vfs *v, const char *name, int n, char *out)
{
	(void)v;
	return under->xFullPathname(under, name, n, out);
}

static int
shim_random(sqlite3_vfs *v, int n, char *out)
{
	(void)v;
	return under->xRandomness(under, n, out);
}

static int
shim_sleep(sqlite3_vfs *v, int us)
{
	(void)v;
	return under->xSleep(under, us);
}

static int
shim_time(sqlite3_vfs *v, double *out)
{
	(void)v;
	return under->xCurrentTime(under, out);
}

static int
shim_last_error(sqlite3_vfs *v, int n, char *out)
{
	(void)v;
	return under->xGetLastError(under, n, out);
}

static int
shim_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
	(void)v;
	return under->xCurrentTimeInt64(under, out);
}

static void *
shim_dlopen(sqlite3_vfs *v, const char *name)
{
	(void)v;
	return under->xDlOpen(under, name);
}

static void
shim_dlerror(sqlite3_vfs *v, int n, char *out)
{
	(void)v;
	under->xDlError(under, n, out);
}

static void (*shim_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
	(void)v;
	return under->xDlSym(under, h, sym);
}

static void
shim_dlclose(sqlite3_vfs *v, void *h)
{
	(void)v;
	under->xDlClose(under, h);
}

static void
register_once(void)
{
	under = sqlite3_vfs_find(NULL);
	if (under == NULL || under->iVersion < 2)
		return;
	shim = (sqlite3_vfs){
	        .iVersion = 2,
	        .szOsFile = (int)sizeof(struct wal_file) + under->szOsFile,
	        .mxPathname = under->mxPathname,
	        .zName = WALBUF_VFS,
	        .xOpen = shim_open,
	        .xDelete = shim_delete,
	        .xAccess = shim_access,
	        .xFullPathname = shim_full,
	        .xDlOpen = shim_dlopen,
	        .xDlError = shim_dlerror,
	        .xDlSym = shim_dlsym,
	        .xDlClose = shim_dlclose,
	        .xRandomness = shim_random,
	        .xSleep = shim_sleep,
	        .xCurrentTime = shim_time,
	        .xGetLastError = shim_last_error,
	        .xCurrentTimeInt64 = shim_time64,
	};
	register_rc = sqlite3_vfs_register(&shim, 0);
}

int
walbuf_register(void)
{
	pthread_once(&once, register_once);
	return register_rc;
}

void
walbuf_stats(struct walbuf_stats *out)
{
	out->writes_asked = __atomic_load_n(&asked, __ATOMIC_RELAXED);
	out->writes_made = __atomic_load_n(&made, __ATOMIC_RELAXED);
}

/* SPDX-License-Identifier: MIT */
/*
 * How a live database is copied (see the header for the contract):
 *
 *   source   sqlite3_open_v2(SQLITE_OPEN_READONLY), busy handler: retry every
 *            millisecond for BUSY_MS (see busy())
 *   check    BEGIN; SELECT count(*) FROM sqlite_master  (a read transaction:
 *            fails here if the file is locked, corrupt or not a database)
 *   WAL      keep that read transaction: it pins one snapshot (the wal-index
 *            read mark), so every backup step reads the same state, the
 *            backup never restarts, and writers, which append to the -wal,
 *            are never blocked. Checkpoints stop at our read mark until the
 *            copy ends, so the -wal may grow for that long.
 *   rollback end the read transaction; each backup step then takes and drops
 *            the shared lock around STEP pages, so a writer's commit (which
 *            needs every shared lock gone) waits for one step at most. A
 *            commit between steps restarts the backup from page 1; after
 *            RESTARTS_MAX restarts the rest is copied in one step under one
 *            read transaction, which holds writers off for that copy.
 *   dest     a new database file in the store's tmp/ (journal_mode=OFF,
 *            synchronous=OFF: it is thrown away after it is read, and
 *            recovery removes it after a crash), written page for page,
 *            then streamed to the caller and removed.
 *   direct   but first, in WAL mode: if the -wal is empty once the read
 *            transaction is open, the database file is the snapshot and is
 *            streamed as it is, with no copy (see direct()).
 *
 * A backup's copy is the source page for page except the header fields the
 * destination's commit updates (file change counter, version-valid-for,
 * schema cookie), so its chunks deduplicate as well as the file's own; the
 * direct path passes the file's bytes unchanged.
 *
 * Both connections use the "stamp-capture" VFS, a thin wrapper of the
 * default one. SQLite reads and writes one page per system call, which
 * made most of a capture's time (62,000 of each for a 253 MB database);
 * for the main database files only, the wrapper
 *   - reads the source ahead in aligned WINDOW-byte blocks. A block is kept
 *     only while the file's lock state is unchanged: within one read
 *     transaction the pages SQLite takes from the database file cannot
 *     change (in WAL mode a checkpoint only writes pages that the
 *     transaction reads from the -wal; in rollback mode writers wait for
 *     the shared lock), and any xLock/xUnlock drops the block;
 *   - gathers the destination's writes, which the backup makes in
 *     ascending order (page 1 last), into WINDOW-byte writes, flushed
 *     before anything that looks at the file (read, size, sync, truncate,
 *     locks, close).
 */
#include "sqlite-capture.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "dbcheck.h"
#include "index.h"
#include "macro.h"

#define BUSY_MS 3000
/* The unix VFS's limit on a database's full path (MAX_PATHNAME in os_unix.c). */
#define SQLITE_PATH_MAX 512
#define STEP 256
#define RESTARTS_MAX 4
/*
 * The default VFS masks a single read or write with 0x1ffff (os_unix.c,
 * seekAndWrite/seekAndRead), so one call moves less than 128 KiB: 64 KiB,
 * the largest page size, is the most it can take.
 */
#define WINDOW (64u << 10)
#define VFS_NAME "stamp-capture"

bool stamp_capture_is_sqlite(const uint8_t *head, size_t len)
{
        /* A whole header: a shorter file cannot be a database worth capturing. */
        return len >= STAMP_SQLITE_HEADER_SIZE && stamp_is_sqlite_header(head, len);
}

/* ---- the wrapping VFS ---- */

struct wfile {
        sqlite3_file base;
        sqlite3_file *real; /* the default VFS's file, allocated right after us */
        uint8_t *buf;       /* NULL: plain forwarding */
        bool writer;        /* gathers writes (destination) or reads ahead (source) */
        sqlite3_int64 off;  /* of buf[0] */
        size_t len;         /* bytes pending (writer) or valid (reader) */
};

static sqlite3_vfs *base_vfs;

static int flush(struct wfile *f)
{
        int rc;

        if (!f->writer || f->len == 0)
                return SQLITE_OK;
        rc = f->real->pMethods->xWrite(f->real, f->buf, (int)f->len, f->off);
        f->len = 0;
        return rc;
}

/* Before anything but a read or write: flushes (a writer) or forgets (a reader) the window. */
static struct wfile *settle(sqlite3_file *file, int *rc)
{
        struct wfile *f = (struct wfile *)file;

        *rc = flush(f);
        f->len = 0;
        return f;
}

static int w_close(sqlite3_file *file)
{
        int rc;
        struct wfile *f = settle(file, &rc);
        int rc2 = f->real->pMethods->xClose(f->real);

        free(f->buf);
        f->buf = NULL;
        return rc != SQLITE_OK ? rc : rc2;
}

/*
 * Fills the reader's window with the aligned block holding @off. Only a
 * whole block is kept: the block where the file ends comes back zero-filled
 * (SQLITE_IOERR_SHORT_READ), and its pages are read one by one instead.
 */
static void fill(struct wfile *f, sqlite3_int64 off)
{
        sqlite3_int64 start = off - off % WINDOW;

        f->len = 0;
        if (f->real->pMethods->xRead(f->real, f->buf, WINDOW, start) == SQLITE_OK) {
                f->off = start;
                f->len = WINDOW;
        }
}

static int w_read(sqlite3_file *file, void *out, int amt, sqlite3_int64 off)
{
        struct wfile *f = (struct wfile *)file;
        const sqlite3_io_methods *m = f->real->pMethods;
        int rc;

        if (!f->buf || amt <= 0)
                return m->xRead(f->real, out, amt, off);
        if (f->writer) {
                rc = flush(f);
                return rc != SQLITE_OK ? rc : m->xRead(f->real, out, amt, off);
        }
        if (off < f->off || off + amt > f->off + (sqlite3_int64)f->len) {
                /* A read across two blocks (never a page) or past the end: as it is. */
                if (off % WINDOW + (sqlite3_int64)amt > WINDOW)
                        return m->xRead(f->real, out, amt, off);
                fill(f, off);
                if (off < f->off || off + amt > f->off + (sqlite3_int64)f->len)
                        return m->xRead(f->real, out, amt, off);
        }
        memcpy(out, f->buf + (off - f->off), (size_t)amt);
        return SQLITE_OK;
}

static int w_write(sqlite3_file *file, const void *in, int amt, sqlite3_int64 off)
{
        struct wfile *f = (struct wfile *)file;
        int rc;

        if (!f->buf || !f->writer) {
                if (f->buf)
                        f->len = 0;
                return f->real->pMethods->xWrite(f->real, in, amt, off);
        }
        if (f->len > 0 && (off != f->off + (sqlite3_int64)f->len || f->len + (size_t)amt > WINDOW)) {
                rc = flush(f);
                if (rc != SQLITE_OK)
                        return rc;
        }
        if (amt <= 0 || (size_t)amt > WINDOW)
                return f->real->pMethods->xWrite(f->real, in, amt, off);
        if (f->len == 0)
                f->off = off;
        memcpy(f->buf + f->len, in, (size_t)amt);
        f->len += (size_t)amt;
        return SQLITE_OK;
}

static int w_truncate(sqlite3_file *file, sqlite3_int64 size)
{
        int rc;
        struct wfile *f = settle(file, &rc);

        return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int w_sync(sqlite3_file *file, int flags)
{
        int rc;
        struct wfile *f = settle(file, &rc);

        return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int w_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
        int rc;
        struct wfile *f = settle(file, &rc);

        return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int w_lock(sqlite3_file *file, int level)
{
        int rc;
        struct wfile *f = settle(file, &rc);

        return rc != SQLITE_OK ? rc : f->real->pMethods->xLock(f->real, level);
}

static int w_unlock(sqlite3_file *file, int level)
{
        int rc;
        struct wfile *f = settle(file, &rc);

        return rc != SQLITE_OK ? rc : f->real->pMethods->xUnlock(f->real, level);
}

static int w_check_reserved(sqlite3_file *file, int *out)
{
        struct wfile *f = (struct wfile *)file;

        return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int w_file_control(sqlite3_file *file, int op, void *arg)
{
        int rc;
        struct wfile *f = settle(file, &rc);

        return rc != SQLITE_OK ? rc : f->real->pMethods->xFileControl(f->real, op, arg);
}

static int w_sector_size(sqlite3_file *file)
{
        struct wfile *f = (struct wfile *)file;

        return f->real->pMethods->xSectorSize(f->real);
}

static int w_device(sqlite3_file *file)
{
        struct wfile *f = (struct wfile *)file;

        return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static int w_shm_map(sqlite3_file *file, int pg, int pgsz, int extend, void volatile **pp)
{
        struct wfile *f = (struct wfile *)file;

        return f->real->pMethods->xShmMap(f->real, pg, pgsz, extend, pp);
}

static int w_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
        struct wfile *f = (struct wfile *)file;

        return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

static void w_shm_barrier(sqlite3_file *file)
{
        struct wfile *f = (struct wfile *)file;

        f->real->pMethods->xShmBarrier(f->real);
}

static int w_shm_unmap(sqlite3_file *file, int del)
{
        struct wfile *f = (struct wfile *)file;

        return f->real->pMethods->xShmUnmap(f->real, del);
}

/* Version 2: shared memory (WAL sources), no memory mapping (mmap_size stays 0). */
static const sqlite3_io_methods w_methods = {
        .iVersion = 2,
        .xClose = w_close,
        .xRead = w_read,
        .xWrite = w_write,
        .xTruncate = w_truncate,
        .xSync = w_sync,
        .xFileSize = w_file_size,
        .xLock = w_lock,
        .xUnlock = w_unlock,
        .xCheckReservedLock = w_check_reserved,
        .xFileControl = w_file_control,
        .xSectorSize = w_sector_size,
        .xDeviceCharacteristics = w_device,
        .xShmMap = w_shm_map,
        .xShmLock = w_shm_lock,
        .xShmBarrier = w_shm_barrier,
        .xShmUnmap = w_shm_unmap,
};

static int w_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags,
                  int *out_flags)
{
        struct wfile *f = (struct wfile *)file;
        int rc;

        (void)vfs;
        memset(f, 0, sizeof(*f));
        f->real = (sqlite3_file *)(f + 1);
        rc = base_vfs->xOpen(base_vfs, name, f->real, flags, out_flags);
        if (rc != SQLITE_OK || !f->real->pMethods) {
                f->base.pMethods = NULL; /* not opened: SQLite must not close it */
                return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
        }
        if (f->real->pMethods->iVersion < 2) {
                (void)f->real->pMethods->xClose(f->real);
                f->base.pMethods = NULL;
                return SQLITE_CANTOPEN;
        }
        f->base.pMethods = &w_methods;
        if (flags & SQLITE_OPEN_MAIN_DB) {
                f->writer = !(flags & SQLITE_OPEN_READONLY);
                f->buf = malloc(WINDOW); /* NULL: plain forwarding */
        }
        return SQLITE_OK;
}

static sqlite3_vfs w_vfs;
static pthread_once_t w_once = PTHREAD_ONCE_INIT;
static bool w_registered;

static void register_vfs(void)
{
        stamp_sqlite_setup();
        base_vfs = sqlite3_vfs_find(NULL);
        if (!base_vfs)
                return;
        w_vfs = *base_vfs;
        w_vfs.zName = VFS_NAME;
        w_vfs.szOsFile = (int)sizeof(struct wfile) + base_vfs->szOsFile;
        w_vfs.xOpen = w_open;
        w_vfs.pNext = NULL;
        w_registered = sqlite3_vfs_register(&w_vfs, 0) == SQLITE_OK;
}

/* The wrapper's name, or NULL (the default VFS) if it could not be registered. */
static const char *vfs_name(void)
{
        pthread_once(&w_once, register_vfs);
        return w_registered ? VFS_NAME : NULL;
}

/* ---- capturing ---- */

static void closep_db(sqlite3 **db)
{
        (void)sqlite3_close_v2(*db);
}

/*
 * Sorts a failed SQLite call into "the store's temporary file failed"
 * (negative errno) and "this source cannot be captured" (1, with a reason).
 * The source is opened read-only, so a full disk or a failed write can only
 * be the destination's.
 */
static int failure(int rc, char *reason, size_t size)
{
        switch (rc & 0xff) {
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_IOERR:
                if (rc == SQLITE_IOERR_WRITE || rc == SQLITE_IOERR_FSYNC ||
                    rc == SQLITE_IOERR_TRUNCATE || rc == SQLITE_IOERR_DIR_FSYNC)
                        return -EIO;
                break;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                snprintf(reason, size, "database is locked (waited %d s)", BUSY_MS / 1000);
                return 1;
        case SQLITE_READONLY:
                if (rc == SQLITE_READONLY_ROLLBACK) {
                        snprintf(reason, size,
                                 "a hot journal must be rolled back first (a writer "
                                 "stopped mid-transaction)");
                        return 1;
                }
                break;
        case SQLITE_CANTOPEN:
                snprintf(reason, size,
                         "cannot open it read-only (%s; a WAL database needs its -wal "
                         "and -shm files, or a directory where they can be created)",
                         sqlite3_errstr(rc));
                return 1;
        }
        snprintf(reason, size, "%s", sqlite3_errstr(rc));
        return 1;
}

/*
 * A rollback-journal database refuses new shared locks while a writer
 * commits, and a busy writer leaves only short gaps between commits.
 * SQLite's own busy timeout sleeps longer and longer between tries (up to
 * 100 ms), so under a steady stream of slow commits (a loaded machine) it
 * can miss every gap for seconds; trying every millisecond finds them.
 */
static int busy(void *userdata, int count)
{
        (void)userdata;
        if (count >= BUSY_MS)
                return 0;
        (void)usleep(1000);
        return 1;
}

static int open_source(const char *path, sqlite3 **ret, char *reason, size_t size)
{
        sqlite3 *db = NULL;
        int rc;

        rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, vfs_name());
        if (rc != SQLITE_OK) {
                char *full = realpath(path, NULL);
                bool too_long = full && strlen(full) >= SQLITE_PATH_MAX;
                free(full);
                rc = db ? sqlite3_extended_errcode(db) : rc;
                (void)sqlite3_close_v2(db);
                if ((rc & 0xff) == SQLITE_CANTOPEN && too_long) {
                        snprintf(reason, size, "its path is longer than SQLite's limit of %d bytes",
                                 SQLITE_PATH_MAX);
                        return 1;
                }
                return failure(rc, reason, size);
        }
        sqlite3_extended_result_codes(db, 1);
        sqlite3_busy_handler(db, busy, NULL);
        *ret = db;
        return 0;
}

/* Starts a read transaction: this is where a bad or locked source fails. */
static int begin_read(sqlite3 *db, char *reason, size_t size)
{
        int rc = sqlite3_exec(db, "BEGIN; SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);

        if (rc == SQLITE_OK)
                return 0;
        rc = sqlite3_extended_errcode(db);
        (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return failure(rc, reason, size);
}

static bool is_wal(sqlite3 *db)
{
        sqlite3_stmt *st;
        bool wal = false;

        if (sqlite3_prepare_v2(db, "PRAGMA main.journal_mode", -1, &st, NULL) != SQLITE_OK)
                return false;
        if (sqlite3_step(st) == SQLITE_ROW) {
                const char *mode = (const char *)sqlite3_column_text(st, 0);
                wal = mode && strcmp(mode, "wal") == 0;
        }
        sqlite3_finalize(st);
        return wal;
}

static int open_dest(const char *path, sqlite3 **ret)
{
        sqlite3 *db = NULL;
        int rc;

        rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, vfs_name());
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(db, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
                                      "PRAGMA locking_mode=EXCLUSIVE",
                                  NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                (void)sqlite3_close_v2(db);
                return rc == SQLITE_NOMEM ? -ENOMEM : -EIO;
        }
        *ret = db;
        return 0;
}

/*
 * Runs the backup to the end. With @pinned the source's read transaction is
 * already open, so no step can see a newer state than the first.
 */
static int copy(sqlite3 *src, sqlite3 *dest, bool pinned, struct stamp_capture_info *info,
                char *reason, size_t size)
{
        sqlite3_backup *b = sqlite3_backup_init(dest, "main", src, "main");
        int rc, done = 0;

        if (!b)
                return failure(sqlite3_extended_errcode(dest), reason, size);
        for (;;) {
                rc = sqlite3_backup_step(b, STEP);
                if (rc != SQLITE_OK)
                        break;
                if (!pinned) {
                        int now = sqlite3_backup_pagecount(b) - sqlite3_backup_remaining(b);
                        if (now < done && ++info->restarts == RESTARTS_MAX) {
                                /* Writers keep committing: copy the rest under one read lock. */
                                rc = begin_read(src, reason, size);
                                if (rc != 0) {
                                        (void)sqlite3_backup_finish(b);
                                        return rc;
                                }
                                pinned = true;
                                info->pinned = true;
                        }
                        done = now;
                        (void)sched_yield(); /* let a waiting writer take its lock */
                }
        }
        if (rc == SQLITE_DONE)
                rc = sqlite3_backup_finish(b);
        else
                (void)sqlite3_backup_finish(b);
        return rc == SQLITE_OK ? 0 : failure(rc, reason, size);
}

/* An integer PRAGMA of the source; -1 if it fails. */
static sqlite3_int64 pragma_int(sqlite3 *db, const char *sql)
{
        sqlite3_stmt *st;
        sqlite3_int64 v = -1;

        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
                return -1;
        if (sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return v;
}

enum { NOT_DIRECT = 2 };

/*
 * The direct path, for a WAL database whose -wal is empty while our read
 * transaction is open. Then the transaction holds WAL read-lock 0 (it reads
 * nothing from the -wal), and no checkpoint can write the database file
 * while anyone holds that lock; nor can the -wal be emptied under a reader
 * that uses it (a restart needs read-locks 1..N, deleting it needs the
 * database file's exclusive lock). So an empty -wal seen now means the
 * database file is this transaction's snapshot, frozen until COMMIT: its
 * first page_count pages are streamed as they are, through SQLite's own
 * file handle (a second fd, once closed, would drop SQLite's POSIX locks).
 * Returns 0, 1 (a read error: @reason), NOT_DIRECT, or @fn's error.
 */
static int direct(sqlite3 *src, const char *path, stamp_capture_write_fn fn, void *userdata,
                  uint64_t *ret_size, char *reason, size_t size)
{
        sqlite3_int64 pages = pragma_int(src, "PRAGMA main.page_count");
        sqlite3_int64 page_size = pragma_int(src, "PRAGMA main.page_size");
        sqlite3_file *file = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        sqlite3_int64 fsize, total;
        struct wfile *f;
        char wal[PATH_MAX];
        struct stat st;

        if (pages <= 0 || page_size <= 0 || page_size > (sqlite3_int64)WINDOW)
                return NOT_DIRECT;
        total = pages * page_size;
        if (snprintf(wal, sizeof(wal), "%s-wal", path) >= (int)sizeof(wal) ||
            stat(wal, &st) < 0 || st.st_size != 0)
                return NOT_DIRECT;
        if (sqlite3_file_control(src, "main", SQLITE_FCNTL_FILE_POINTER, &file) != SQLITE_OK ||
            !file || file->pMethods != &w_methods)
                return NOT_DIRECT;
        f = (struct wfile *)file;
        /* A file shorter than its pages (they would read as zeros): let SQLite decide. */
        if (f->real->pMethods->xFileSize(f->real, &fsize) != SQLITE_OK || fsize < total)
                return NOT_DIRECT;
        buf = malloc(WINDOW);
        if (!buf)
                return -ENOMEM;
        for (sqlite3_int64 off = 0; off < total; off += WINDOW) {
                int n = (int)(total - off < (sqlite3_int64)WINDOW ? total - off : WINDOW);
                int rc = f->real->pMethods->xRead(f->real, buf, n, off), r;
                if (rc != SQLITE_OK)
                        return failure(rc, reason, size);
                r = fn(userdata, buf, (size_t)n);
                if (r < 0)
                        return r;
        }
        *ret_size = (uint64_t)total;
        return 0;
}

/* The backup into @tmp (an existing empty file); the source's read transaction is open. */
static int backup_to(sqlite3 *src, const char *tmp, struct stamp_capture_info *info, char *reason,
                     size_t size)
{
        _cleanup_(closep_db) sqlite3 *dest = NULL;
        int r;

        if (!info->wal)
                (void)sqlite3_exec(src, "COMMIT", NULL, NULL, NULL);
        info->pinned = info->wal;
        r = open_dest(tmp, &dest);
        if (r < 0)
                return r;
        r = copy(src, dest, info->wal, info, reason, size);
        if (r != 0)
                return r;
        /* Closing the destination writes what is still in its page cache. */
        r = sqlite3_close_v2(TAKE_PTR(dest));
        return r == SQLITE_OK ? 0 : -EIO;
}

/* Streams the file @path to @fn and removes it. */
static int stream_file(const char *path, stamp_capture_write_fn fn, void *userdata,
                       uint64_t *ret_size)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        _cleanup_free_ uint8_t *buf = NULL;
        uint64_t total = 0;
        ssize_t n;
        int r;

        (void)unlink(path);
        if (fd < 0)
                return negerrno();
        buf = malloc(WINDOW);
        if (!buf)
                return -ENOMEM;
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        while ((n = read(fd, buf, WINDOW)) != 0) {
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negerrno();
                }
                r = fn(userdata, buf, (size_t)n);
                if (r < 0)
                        return r;
                total += (uint64_t)n;
        }
        *ret_size = total;
        return 0;
}

/* A database file path's copy through the backup API, streamed to @fn. */
static int capture_by_backup(sqlite3 *src, const char *tmp_dir, stamp_capture_write_fn fn,
                             void *userdata, struct stamp_capture_info *info, char *reason,
                             size_t size)
{
        char tmp[PATH_MAX];
        int fd, r;

        if (snprintf(tmp, sizeof(tmp), "%s/sqlite-XXXXXX", tmp_dir) >= (int)sizeof(tmp))
                return -ENAMETOOLONG;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return negerrno();
        /* SQLite opens it by name; our fd must not outlive its locks' owner. */
        (void)close(fd);
        r = backup_to(src, tmp, info, reason, size);
        if (r != 0) {
                (void)unlink(tmp);
                return r;
        }
        if (sqlite3_get_autocommit(src) == 0)
                (void)sqlite3_exec(src, "COMMIT", NULL, NULL, NULL); /* writers may checkpoint */
        return stream_file(tmp, fn, userdata, &info->size);
}

int stamp_sqlite_capture(const char *path, const char *tmp_dir, stamp_capture_write_fn fn,
                         void *userdata, struct stamp_capture_info *ret_info, char *reason,
                         size_t reason_size)
{
        _cleanup_(closep_db) sqlite3 *src = NULL;
        struct stamp_capture_info info = { 0 };
        int r;

        if (!path || !tmp_dir || !fn || !reason || reason_size == 0)
                return -EINVAL;
        r = open_source(path, &src, reason, reason_size);
        if (r != 0)
                return r;
        r = begin_read(src, reason, reason_size);
        if (r != 0)
                return r;
        info.wal = is_wal(src);
        r = info.wal ? direct(src, path, fn, userdata, &info.size, reason, reason_size) : NOT_DIRECT;
        if (r == NOT_DIRECT)
                r = capture_by_backup(src, tmp_dir, fn, userdata, &info, reason, reason_size);
        else
                info.direct = info.pinned = r == 0;
        if (r == 0 && ret_info)
                *ret_info = info;
        return r;
}

/* SPDX-License-Identifier: MIT */
#include "index.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <sqlite3.h>

#include "macro.h"

enum {
        Q_ADD_PACK,
        Q_ADD_OBJECT,
        Q_HAS_PACK,
        Q_FIND,
        Q_FILES_GET,
        Q_FILES_PUT,
        Q_SNAP_PUT,
        Q_SNAP_HAS,
        Q_SNAP_DEL,
        _Q_MAX,
};

static const char *const queries[_Q_MAX] = {
        [Q_ADD_PACK] = "INSERT OR IGNORE INTO packs(name, size, objects) VALUES(?, ?, ?)",
        [Q_ADD_OBJECT] = "INSERT OR IGNORE INTO objects(id, pack, offset, raw_len, stored_len, "
                         "type, comp) VALUES(?, (SELECT id FROM packs WHERE name = ?), ?, ?, ?, ?, ?)",
        [Q_HAS_PACK] = "SELECT 1 FROM packs WHERE name = ?",
        [Q_FIND] = "SELECT o.offset, o.raw_len, o.stored_len, o.type, o.comp, p.name "
                   "FROM objects o JOIN packs p ON p.id = o.pack WHERE o.id = ?",
        [Q_FILES_GET] = "SELECT content, xattrs, flags FROM files WHERE dev = ? AND ino = ? "
                        "AND size = ? AND mtime = ? AND ctime = ?",
        [Q_FILES_PUT] = "INSERT OR REPLACE INTO files(dev, ino, size, mtime, ctime, content, xattrs, "
                        "flags) VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
        [Q_SNAP_PUT] = "INSERT OR REPLACE INTO snapshots(stamp, root) VALUES(?, ?)",
        [Q_SNAP_HAS] = "SELECT 1 FROM snapshots WHERE stamp = ?",
        [Q_SNAP_DEL] = "DELETE FROM snapshots WHERE stamp = ?",
};

static const char schema[] =
        "CREATE TABLE IF NOT EXISTS packs("
        " id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
        " size INTEGER NOT NULL, objects INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS objects("
        " id BLOB PRIMARY KEY, pack INTEGER NOT NULL, offset INTEGER NOT NULL,"
        " raw_len INTEGER NOT NULL, stored_len INTEGER NOT NULL,"
        " type INTEGER NOT NULL, comp INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS snapshots("
        " stamp TEXT PRIMARY KEY, root BLOB NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS files("
        " dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,"
        " mtime INTEGER NOT NULL, ctime INTEGER NOT NULL, content BLOB NOT NULL, xattrs BLOB,"
        " flags INTEGER NOT NULL DEFAULT 0,"
        " PRIMARY KEY(dev, ino)) WITHOUT ROWID;";

/* Scratch sets for gc and stats (index.h). */

enum {
        S_SEEN_VISIT,
        S_SEEN_HAS,
        S_PUSH,
        S_TOP,
        S_POP,
        S_PLAN_NEXT,
        S_PLAN_SET,
        S_COPY_NEXT,
        S_ROW_LIVE,
        S_DROPFILE,
        S_PACK_ID,
        S_RELOCATE,
        _S_MAX,
};

/*
 * One step per schema version, from the version in the key to the next.
 * Version 0 is a new database: the schema above creates the newest tables.
 */
static const char *const upgrades[STAMP_INDEX_SCHEMA] = {
        [0] = "PRAGMA user_version = 2",
        /* Rows of version 1 get flags 0: "not looked at", which snapshot.c never trusts for a database. */
        [1] = "ALTER TABLE files ADD COLUMN flags INTEGER NOT NULL DEFAULT 0;"
              "PRAGMA user_version = 2",
};

struct stamp_index {
        sqlite3 *db;
        sqlite3_stmt *q[_Q_MAX];
        sqlite3_stmt *s[_S_MAX]; /* scratch statements, once attached (index.h) */
};

static int sql_errno(int rc)
{
        switch (rc & 0xff) {
        case SQLITE_OK:
        case SQLITE_ROW:
        case SQLITE_DONE:
                return 0;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                return -EBADMSG;
        case SQLITE_CANTOPEN:
                return -ENOENT;
        case SQLITE_READONLY:
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        default:
                return -EIO;
        }
}

/*
 * Whether SQLite's extended code @ext is a failure to change a file: the
 * system's, never a file that is not an index, even where SQLite kept no
 * errno for it (its -shm code keeps none, and errno may have moved on by
 * the time it is asked).
 */
static bool io_write_side(int ext)
{
        switch (ext) {
        case SQLITE_IOERR_WRITE:
        case SQLITE_IOERR_FSYNC:
        case SQLITE_IOERR_DIR_FSYNC:
        case SQLITE_IOERR_TRUNCATE:
        case SQLITE_IOERR_DELETE:
        case SQLITE_IOERR_SHMOPEN:
        case SQLITE_IOERR_SHMSIZE:
        case SQLITE_IOERR_SHMMAP:
        case SQLITE_IOERR_SHMLOCK:
        case SQLITE_IOERR_LOCK:
        case SQLITE_IOERR_CLOSE:
                return true;
        default:
                return false;
        }
}

/* Whether the file system holding @path has next to no room left (< 1 MiB or no inodes). */
static bool nearly_full(const char *path)
{
        char dir[4096];
        struct statvfs v;
        const char *slash = path ? strrchr(path, '/') : NULL;

        if (!slash || (size_t)(slash - path) >= sizeof(dir))
                return false;
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash == path ? 1 : slash - path] = 0;
        if (slash == path)
                dir[0] = '/';
        if (statvfs(dir, &v) < 0 || v.f_blocks == 0)
                return false;
        return (uint64_t)v.f_bavail * v.f_frsize < (1u << 20) || (v.f_files > 0 && v.f_favail == 0);
}

/*
 * As sql_errno(), but an I/O error says what the system said: a full disk
 * is -ENOSPC (SQLite reports ENOSPC as SQLITE_FULL only for writes; a -shm
 * or -wal it cannot grow is SQLITE_IOERR), never -EIO, which callers may
 * read as a damaged file; the disk's EIO stays -EIO even where SQLite says
 * it cannot open a file (not -ENOENT, which means "no such store").
 */
static int db_errno(sqlite3 *db, int rc)
{
        int r = sql_errno(rc);

        if (r == -EIO || r == -ENOENT) {
                switch (sqlite3_system_errno(db)) {
                case ENOSPC:
                case EDQUOT:
                        return -ENOSPC;
                case EROFS:
                        return -EROFS;
                case EACCES:
                case EPERM:
                        return -EACCES;
                case EIO:
                        return -EIO; /* the disk's own error, also where SQLite says CANTOPEN */
                default:
                        break;
                }
        }
        /* A write SQLite could not make, with no errno: a full disk says why. */
        if (r == -EIO && sqlite3_system_errno(db) == 0 &&
            io_write_side(sqlite3_extended_errcode(db)) && nearly_full(sqlite3_db_filename(db, "main")))
                return -ENOSPC;
        return r;
}

static int ix_errno(struct stamp_index *ix, int rc)
{
        return db_errno(ix->db, rc);
}

static int exec(struct stamp_index *ix, const char *sql)
{
        return ix_errno(ix, sqlite3_exec(ix->db, sql, NULL, NULL, NULL));
}

const char *stamp_index_errmsg(struct stamp_index *ix)
{
        return sqlite3_errmsg(ix->db);
}

void stamp_index_free(struct stamp_index *ix)
{
        if (!ix)
                return;
        for (unsigned i = 0; i < _Q_MAX; i++)
                sqlite3_finalize(ix->q[i]);
        for (unsigned i = 0; i < _S_MAX; i++)
                sqlite3_finalize(ix->s[i]);
        sqlite3_close_v2(ix->db);
        free(ix);
}

static int migrate(struct stamp_index *ix)
{
        sqlite3_stmt *st;
        int version, r;

        r = ix_errno(ix, sqlite3_prepare_v2(ix->db, "PRAGMA user_version", -1, &st, NULL));
        if (r < 0)
                return r;
        r = sqlite3_step(st);
        version = r == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
        sqlite3_finalize(st);
        if (version < 0)
                return ix_errno(ix, r) ?: -EIO;
        if (version > STAMP_INDEX_SCHEMA)
                return -EOPNOTSUPP;
        if (version == STAMP_INDEX_SCHEMA)
                return 0;
        r = exec(ix, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        if (version == 0)
                r = exec(ix, schema);
        if (r == 0)
                r = exec(ix, upgrades[version]);
        if (r == 0)
                return exec(ix, "COMMIT");
        (void)exec(ix, "ROLLBACK");
        return r;
}

/*
 * "file:PATH?immutable=1", PATH %-escaped where a URI needs it; an absolute
 * PATH gets an empty authority ("file://" PATH), so that one starting with
 * "//" is not read as a host. NULL on out of memory.
 */
static char *immutable_uri(const char *path)
{
        static const char suffix[] = "?immutable=1";
        char *uri = malloc(7 + 3 * strlen(path) + sizeof(suffix)), *p = uri;

        if (!uri)
                return NULL;
        p += sprintf(p, path[0] == '/' ? "file://" : "file:");
        for (const unsigned char *c = (const unsigned char *)path; *c; c++) {
                if (*c == '%' || *c == '?' || *c == '#' || *c < 0x20 || *c >= 0x7f)
                        p += sprintf(p, "%%%02X", *c);
                else
                        *p++ = (char)*c;
        }
        memcpy(p, suffix, sizeof(suffix));
        return uri;
}

int stamp_index_open(const char *path, unsigned flags, struct stamp_index **ret)
{
        struct stamp_index *ix = calloc(1, sizeof(*ix));
        int oflags = SQLITE_OPEN_NOMUTEX;
        char *uri = NULL;
        int r;

        if (!ix)
                return -ENOMEM;
        if (flags & STAMP_INDEX_IMMUTABLE) {
                uri = immutable_uri(path);
                if (!uri) {
                        free(ix);
                        return -ENOMEM;
                }
                oflags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI;
                flags |= STAMP_INDEX_READONLY; /* no WAL switch, no migration below */
        } else if (flags & STAMP_INDEX_READONLY)
                oflags |= SQLITE_OPEN_READONLY;
        else
                oflags |= SQLITE_OPEN_READWRITE | ((flags & STAMP_INDEX_CREATE) ? SQLITE_OPEN_CREATE : 0);
        if (flags & STAMP_INDEX_CREATE) {
                /*
                 * Created here, not by SQLite: when it cannot create the
                 * file (a full disk), it tries to open it read-only and
                 * reports that failure, ENOENT, instead.
                 */
                int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd < 0) {
                        r = negerrno();
                        free(ix);
                        return r;
                }
                close(fd);
        }
        stamp_sqlite_setup();
        r = ix_errno(ix, sqlite3_open_v2(uri ? uri : path, &ix->db, oflags, NULL));
        free(uri);
        if (r < 0)
                goto fail;
        sqlite3_busy_timeout(ix->db, 30000);
        if (!(flags & STAMP_INDEX_READONLY)) {
                r = exec(ix, "PRAGMA journal_mode=WAL");
                if (r < 0)
                        goto fail;
        }
        r = exec(ix, "PRAGMA synchronous=FULL; PRAGMA mmap_size=67108864");
        if (r < 0)
                goto fail;
        if (!(flags & STAMP_INDEX_READONLY)) {
                r = migrate(ix);
                if (r < 0)
                        goto fail;
        }
        for (unsigned i = 0; i < _Q_MAX; i++) {
                r = ix_errno(ix, sqlite3_prepare_v3(ix->db, queries[i], -1,
                                                 SQLITE_PREPARE_PERSISTENT, &ix->q[i], NULL));
                if (r < 0)
                        goto fail;
        }
        *ret = ix;
        return 0;
fail:
        /* An I/O error SQLite found by itself, not the system: a file that is not an index. */
        if (r == -EIO && (!ix->db || (sqlite3_system_errno(ix->db) == 0 &&
                                      !io_write_side(sqlite3_extended_errcode(ix->db)))))
                r = -EBADMSG;
        /*
         * The index exists, but SQLite says CANTOPEN: an index.db-wal or
         * -shm it could not create, with the errno of its read-only retry
         * (ENOENT), which would read as "no such store".
         */
        if (r == -ENOENT && !(flags & STAMP_INDEX_READONLY) && access(path, F_OK) == 0)
                r = nearly_full(path) ? -ENOSPC : -EIO;
        stamp_index_free(ix);
        return r;
}

int stamp_index_begin(struct stamp_index *ix)
{
        return exec(ix, "BEGIN IMMEDIATE");
}

int stamp_index_begin_read(struct stamp_index *ix)
{
        return exec(ix, "BEGIN DEFERRED");
}

void stamp_index_end_read(struct stamp_index *ix)
{
        (void)exec(ix, "COMMIT");
}

bool stamp_index_autocommit(struct stamp_index *ix)
{
        return sqlite3_get_autocommit(ix->db) != 0;
}

int stamp_index_commit(struct stamp_index *ix)
{
        return exec(ix, "COMMIT");
}

void stamp_index_rollback(struct stamp_index *ix)
{
        (void)exec(ix, "ROLLBACK");
}

/* Steps a statement to completion and resets it. */
static int step_done(sqlite3_stmt *st)
{
        int rc = sqlite3_step(st);
        int r = rc == SQLITE_DONE ? 0 : (db_errno(sqlite3_db_handle(st), rc) ?: -EIO);

        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return r;
}

int stamp_index_add_pack(struct stamp_index *ix, const char *name, uint64_t size,
                         const struct stamp_pack_entry *e, size_t n)
{
        sqlite3_stmt *st = ix->q[Q_ADD_PACK];
        int r;

        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)size);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)n);
        r = step_done(st);
        if (r < 0)
                return r;
        st = ix->q[Q_ADD_OBJECT];
        for (size_t i = 0; i < n; i++) {
                sqlite3_bind_blob(st, 1, e[i].id.b, STAMP_ID_SIZE, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 3, (sqlite3_int64)e[i].offset);
                sqlite3_bind_int64(st, 4, e[i].raw_len);
                sqlite3_bind_int64(st, 5, e[i].stored_len);
                sqlite3_bind_int(st, 6, e[i].type);
                sqlite3_bind_int(st, 7, e[i].comp);
                r = step_done(st);
                if (r < 0)
                        return r;
        }
        return 0;
}

int stamp_index_has_pack(struct stamp_index *ix, const char *name)
{
        sqlite3_stmt *st = ix->q[Q_HAS_PACK];
        int rc;

        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_ROW)
                return 1;
        return rc == SQLITE_DONE ? 0 : (db_errno(sqlite3_db_handle(st), rc) ?: -EIO);
}

int stamp_index_find(struct stamp_index *ix, const struct stamp_id *id, struct stamp_loc *ret)
{
        sqlite3_stmt *st = ix->q[Q_FIND];
        const unsigned char *name;
        int rc, r = 0;

        sqlite3_bind_blob(st, 1, id->b, STAMP_ID_SIZE, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                sqlite3_int64 off = sqlite3_column_int64(st, 0);
                sqlite3_int64 raw = sqlite3_column_int64(st, 1);
                sqlite3_int64 stored = sqlite3_column_int64(st, 2);
                name = sqlite3_column_text(st, 5);
                if (off < 0 || raw < 0 || raw > STAMP_OBJECT_MAX || stored < 0 ||
                    stored > STAMP_OBJECT_MAX || !name || strlen((const char *)name) >= 64) {
                        r = -EBADMSG;
                } else {
                        ret->id = *id;
                        ret->offset = (uint64_t)off;
                        ret->raw_len = (uint32_t)raw;
                        ret->stored_len = (uint32_t)stored;
                        ret->type = (uint8_t)sqlite3_column_int(st, 3);
                        ret->comp = (uint8_t)sqlite3_column_int(st, 4);
                        strcpy(ret->pack, (const char *)name);
                        r = 1;
                }
        } else if (rc != SQLITE_DONE)
                r = ix_errno(ix, rc) ?: -EIO;
        sqlite3_reset(st);
        return r;
}

static uint8_t *column_copy(sqlite3_stmt *st, int col, size_t *ret_len)
{
        const void *p = sqlite3_column_blob(st, col);
        int n = sqlite3_column_bytes(st, col);
        uint8_t *copy;

        *ret_len = 0;
        if (!p || n <= 0)
                return NULL;
        copy = malloc((size_t)n);
        if (copy) {
                memcpy(copy, p, (size_t)n);
                *ret_len = (size_t)n;
        }
        return copy;
}

int stamp_index_files_get(struct stamp_index *ix, uint64_t dev, uint64_t ino, uint64_t size,
                          int64_t mtime_ns, int64_t ctime_ns, struct stamp_files_row *ret)
{
        sqlite3_stmt *st = ix->q[Q_FILES_GET];
        int rc, r = 0;

        sqlite3_bind_int64(st, 1, (sqlite3_int64)dev);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)ino);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)size);
        sqlite3_bind_int64(st, 4, mtime_ns);
        sqlite3_bind_int64(st, 5, ctime_ns);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                struct stamp_files_row row;
                row.content = column_copy(st, 0, &row.content_len);
                row.xattrs = column_copy(st, 1, &row.xattrs_len);
                if (!row.content || (sqlite3_column_bytes(st, 1) > 0 && !row.xattrs)) {
                        free(row.content);
                        free(row.xattrs);
                        r = row.content ? -ENOMEM : 0; /* an empty content is a miss */
                } else {
                        row.flags = (unsigned)sqlite3_column_int(st, 2);
                        *ret = row;
                        r = 1;
                }
        } else if (rc != SQLITE_DONE)
                r = ix_errno(ix, rc) ?: -EIO;
        sqlite3_reset(st);
        return r;
}

int stamp_index_files_put(struct stamp_index *ix, uint64_t dev, uint64_t ino, uint64_t size,
                          int64_t mtime_ns, int64_t ctime_ns, const uint8_t *content,
                          size_t len, const uint8_t *xattrs, size_t xattrs_len, unsigned flags)
{
        sqlite3_stmt *st = ix->q[Q_FILES_PUT];

        sqlite3_bind_int64(st, 1, (sqlite3_int64)dev);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)ino);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)size);
        sqlite3_bind_int64(st, 4, mtime_ns);
        sqlite3_bind_int64(st, 5, ctime_ns);
        sqlite3_bind_blob(st, 6, content, (int)len, SQLITE_STATIC);
        if (xattrs_len)
                sqlite3_bind_blob(st, 7, xattrs, (int)xattrs_len, SQLITE_STATIC);
        else
                sqlite3_bind_null(st, 7);
        sqlite3_bind_int(st, 8, (int)flags);
        return step_done(st);
}

int stamp_index_snapshot_put(struct stamp_index *ix, const char *stamp,
                             const struct stamp_id *root)
{
        sqlite3_stmt *st = ix->q[Q_SNAP_PUT];

        sqlite3_bind_text(st, 1, stamp, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, root->b, STAMP_ID_SIZE, SQLITE_STATIC);
        return step_done(st);
}

int stamp_index_snapshot_del(struct stamp_index *ix, const char *stamp)
{
        sqlite3_stmt *st = ix->q[Q_SNAP_DEL];

        sqlite3_bind_text(st, 1, stamp, -1, SQLITE_STATIC);
        return step_done(st);
}

int stamp_index_snapshot_has(struct stamp_index *ix, const char *stamp)
{
        sqlite3_stmt *st = ix->q[Q_SNAP_HAS];
        int rc;

        sqlite3_bind_text(st, 1, stamp, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_ROW)
                return 1;
        return rc == SQLITE_DONE ? 0 : (db_errno(sqlite3_db_handle(st), rc) ?: -EIO);
}

int stamp_index_counts(struct stamp_index *ix, uint64_t *ret_packs, uint64_t *ret_objects,
                       uint64_t *ret_pack_bytes)
{
        sqlite3_stmt *st;
        int rc;

        rc = sqlite3_prepare_v2(ix->db,
                                "SELECT (SELECT count(*) FROM packs), (SELECT count(*) FROM objects),"
                                " (SELECT coalesce(sum(size), 0) FROM packs)",
                                -1, &st, NULL);
        if (rc != SQLITE_OK)
                return ix_errno(ix, rc) ?: -EIO;
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                *ret_packs = (uint64_t)sqlite3_column_int64(st, 0);
                *ret_objects = (uint64_t)sqlite3_column_int64(st, 1);
                *ret_pack_bytes = (uint64_t)sqlite3_column_int64(st, 2);
        }
        sqlite3_finalize(st);
        return rc == SQLITE_ROW ? 0 : (ix_errno(ix, rc) ?: -EIO);
}

int stamp_index_foreach_pack(struct stamp_index *ix, stamp_index_pack_fn fn, void *userdata)
{
        sqlite3_stmt *st;
        int rc, r = 0;

        rc = sqlite3_prepare_v2(ix->db,
                                "SELECT p.name, p.size, p.objects, coalesce(c.n, 0) FROM packs p"
                                " LEFT JOIN (SELECT pack, count(*) AS n FROM objects GROUP BY pack) c"
                                " ON c.pack = p.id ORDER BY p.name",
                                -1, &st, NULL);
        if (rc != SQLITE_OK)
                return ix_errno(ix, rc) ?: -EIO;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *name = (const char *)sqlite3_column_text(st, 0);
                sqlite3_int64 size = sqlite3_column_int64(st, 1);
                sqlite3_int64 objects = sqlite3_column_int64(st, 2);
                sqlite3_int64 located = sqlite3_column_int64(st, 3);
                if (!name || size < 0 || objects < 0 || located < 0) {
                        r = -EBADMSG;
                        break;
                }
                r = fn(name, (uint64_t)size, (uint64_t)objects, (uint64_t)located, userdata);
                if (r != 0)
                        break;
        }
        if (r == 0 && rc != SQLITE_DONE)
                r = ix_errno(ix, rc) ?: -EIO;
        sqlite3_finalize(st);
        return r;
}

int stamp_index_checkpoint(struct stamp_index *ix)
{
        return exec(ix, "PRAGMA wal_checkpoint(TRUNCATE)");
}

static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;

static void sqlite_setup_once(void)
{
        /*
         * By default SQLite counts its allocations under one process-wide
         * mutex, which the mount's threads, a connection each, queued on
         * at every lookup of a cold read. Nothing here reads the counts.
         * If SQLite was initialized already this fails, harmlessly.
         */
        (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

void stamp_sqlite_setup(void)
{
        (void)pthread_once(&sqlite_once, sqlite_setup_once);
}

int stamp_index_tune_reader(struct stamp_index *ix)
{
        return exec(ix, "PRAGMA cache_size=-512; PRAGMA mmap_size=0");
}

static const char *const scratch_queries[_S_MAX] = {
        /*
         * Inserted, or reached again by a new pass: a row comes back. The
         * same pass again: the update's WHERE fails and nothing comes back.
         */
        [S_SEEN_VISIT] = "INSERT INTO scratch.seen(id, n, last, bytes) "
                         "VALUES(?1, 1, ?2, (SELECT stored_len FROM main.objects WHERE id = ?1)) "
                         "ON CONFLICT(id) DO UPDATE SET n = n + 1, last = excluded.last "
                         "WHERE last <> excluded.last RETURNING coalesce(bytes, -1)",
        [S_SEEN_HAS] = "SELECT 1 FROM scratch.seen WHERE id = ?",
        [S_PUSH] = "INSERT INTO scratch.stack(id) VALUES(?)",
        [S_TOP] = "SELECT seq, id FROM scratch.stack ORDER BY seq DESC LIMIT 1",
        [S_POP] = "DELETE FROM scratch.stack WHERE seq = ?",
        [S_PLAN_NEXT] = "SELECT pack, name, size, objects, live_n, live_bytes, action "
                        "FROM scratch.plan WHERE pack > ? ORDER BY pack LIMIT 1",
        [S_PLAN_SET] = "UPDATE scratch.plan SET action = ? WHERE pack = ?",
        [S_COPY_NEXT] = "SELECT seq, id, pack, offset, raw_len, stored_len, type, comp "
                        "FROM scratch.copy WHERE seq > ? ORDER BY seq LIMIT ?",
        [S_ROW_LIVE] = "SELECT o.pack = ?2 AND NOT (EXISTS (SELECT 1 FROM scratch.cand c "
                       "WHERE c.id = o.id) AND NOT EXISTS (SELECT 1 FROM scratch.seen s "
                       "WHERE s.id = o.id)) FROM main.objects o WHERE o.id = ?1",
        [S_DROPFILE] = "INSERT OR IGNORE INTO scratch.dropfiles(dev, ino) VALUES(?, ?)",
        [S_PACK_ID] = "SELECT id FROM main.packs WHERE name = ?",
        [S_RELOCATE] = "INSERT INTO main.objects(id, pack, offset, raw_len, stored_len, type, "
                       "comp) VALUES(?, (SELECT id FROM main.packs WHERE name = ?), ?, ?, ?, ?, ?) "
                       "ON CONFLICT(id) DO UPDATE SET pack = excluded.pack, "
                       "offset = excluded.offset, "
                       "raw_len = excluded.raw_len, stored_len = excluded.stored_len, "
                       "type = excluded.type, comp = excluded.comp",
};

static const char scratch_schema[] =
        "PRAGMA scratch.journal_mode=OFF;"
        "PRAGMA scratch.synchronous=OFF;"
        "PRAGMA scratch.cache_size=-16384;"
        "CREATE TABLE scratch.seen(id BLOB PRIMARY KEY, n INTEGER NOT NULL,"
        " last INTEGER NOT NULL, bytes INTEGER) WITHOUT ROWID;"
        "CREATE TABLE scratch.stack(seq INTEGER PRIMARY KEY, id BLOB NOT NULL);"
        "CREATE TABLE scratch.cand(id BLOB PRIMARY KEY, pack INTEGER NOT NULL,"
        " bytes INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE scratch.plan(pack INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " size INTEGER NOT NULL, objects INTEGER NOT NULL, live_n INTEGER NOT NULL,"
        " live_bytes INTEGER NOT NULL, action INTEGER NOT NULL);"
        "CREATE TABLE scratch.copy(seq INTEGER PRIMARY KEY, id BLOB NOT NULL,"
        " pack TEXT NOT NULL, offset INTEGER NOT NULL, raw_len INTEGER NOT NULL,"
        " stored_len INTEGER NOT NULL, type INTEGER NOT NULL, comp INTEGER NOT NULL);"
        "CREATE TABLE scratch.dropfiles(dev INTEGER NOT NULL, ino INTEGER NOT NULL,"
        " PRIMARY KEY(dev, ino)) WITHOUT ROWID;";

int stamp_index_scratch_attach(struct stamp_index *ix, const char *path)
{
        sqlite3_stmt *st;
        int r;

        if (ix->s[0])
                return -EINVAL;
        r = ix_errno(ix, sqlite3_prepare_v2(ix->db, "ATTACH DATABASE ? AS scratch", -1, &st, NULL));
        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
        r = step_done(st);
        sqlite3_finalize(st);
        if (r < 0)
                return r;
        r = exec(ix, scratch_schema);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < _S_MAX; i++) {
                r = ix_errno(ix, sqlite3_prepare_v3(ix->db, scratch_queries[i], -1,
                                                 SQLITE_PREPARE_PERSISTENT, &ix->s[i], NULL));
                if (r < 0)
                        return r;
        }
        return 0;
}

int stamp_index_scratch_begin(struct stamp_index *ix)
{
        return exec(ix, "BEGIN DEFERRED");
}

int stamp_index_scratch_commit(struct stamp_index *ix)
{
        return exec(ix, "COMMIT");
}

/* Steps a statement expected to return at most one row; 1 row, 0 none. */
static int step_row(sqlite3_stmt *st)
{
        int rc = sqlite3_step(st);

        if (rc == SQLITE_ROW)
                return 1;
        return rc == SQLITE_DONE ? 0 : (db_errno(sqlite3_db_handle(st), rc) ?: -EIO);
}

static void finish(sqlite3_stmt *st)
{
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
}

int stamp_index_seen_visit(struct stamp_index *ix, const struct stamp_id *id, int64_t pass,
                           int64_t *ret_stored_len)
{
        sqlite3_stmt *st = ix->s[S_SEEN_VISIT];
        int r;

        sqlite3_bind_blob(st, 1, id->b, STAMP_ID_SIZE, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, pass);
        r = step_row(st);
        if (r == 1) {
                *ret_stored_len = sqlite3_column_int64(st, 0);
                /* RETURNING rows are produced before the change is final: run it out. */
                r = sqlite3_step(st) == SQLITE_DONE ? 1 : -EIO;
        }
        finish(st);
        return r;
}

int stamp_index_seen_has(struct stamp_index *ix, const struct stamp_id *id)
{
        sqlite3_stmt *st = ix->s[S_SEEN_HAS];
        int r;

        sqlite3_bind_blob(st, 1, id->b, STAMP_ID_SIZE, SQLITE_STATIC);
        r = step_row(st);
        finish(st);
        return r;
}

int stamp_index_stack_push(struct stamp_index *ix, const struct stamp_id *id)
{
        sqlite3_stmt *st = ix->s[S_PUSH];

        sqlite3_bind_blob(st, 1, id->b, STAMP_ID_SIZE, SQLITE_STATIC);
        return step_done(st);
}

int stamp_index_stack_pop(struct stamp_index *ix, struct stamp_id *ret)
{
        sqlite3_stmt *st = ix->s[S_TOP];
        sqlite3_int64 seq = 0;
        int r;

        r = step_row(st);
        if (r == 1) {
                if (sqlite3_column_bytes(st, 1) != STAMP_ID_SIZE)
                        r = -EIO;
                else {
                        memcpy(ret->b, sqlite3_column_blob(st, 1), STAMP_ID_SIZE);
                        seq = sqlite3_column_int64(st, 0);
                }
        }
        finish(st);
        if (r != 1)
                return r;
        st = ix->s[S_POP];
        sqlite3_bind_int64(st, 1, seq);
        r = step_done(st);
        return r < 0 ? r : 1;
}

/* Runs a query that returns one row of integers into @v (NULL is 0). */
static int query_u64s(struct stamp_index *ix, const char *sql, uint64_t *v, int n)
{
        sqlite3_stmt *st;
        int rc;

        rc = sqlite3_prepare_v2(ix->db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return ix_errno(ix, rc) ?: -EIO;
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                for (int i = 0; i < n; i++)
                        v[i] = (uint64_t)sqlite3_column_int64(st, i);
        sqlite3_finalize(st);
        return rc == SQLITE_ROW ? 0 : (ix_errno(ix, rc) ?: -EIO);
}

int stamp_index_usage(struct stamp_index *ix, struct stamp_index_usage *ret)
{
        uint64_t v[9];
        int r;

        r = query_u64s(ix,
                       "SELECT (SELECT count(*) FROM main.packs),"
                       " (SELECT coalesce(sum(size), 0) FROM main.packs),"
                       " (SELECT count(*) FROM main.objects),"
                       " (SELECT count(*) FROM main.objects WHERE type = 1),"
                       " (SELECT count(*) FROM scratch.seen WHERE bytes IS NOT NULL),"
                       " (SELECT coalesce(sum(bytes), 0) FROM scratch.seen"
                       "   WHERE bytes IS NOT NULL),"
                       " (SELECT count(DISTINCT o.pack) FROM scratch.seen s"
                       "   JOIN main.objects o ON o.id = s.id),"
                       " (SELECT count(*) FROM scratch.seen WHERE bytes IS NULL), 0",
                       v, 9);
        if (r < 0)
                return r;
        *ret = (struct stamp_index_usage){
                .packs = v[0], .pack_bytes = v[1], .objects = v[2], .chunks = v[3],
                .referenced = v[4], .referenced_bytes = v[5], .live_packs = v[6], .missing = v[7],
        };
        return 0;
}

int stamp_index_seen_exclusive(struct stamp_index *ix,
                               int (*fn)(int64_t pass, uint64_t objects, uint64_t bytes,
                                         void *userdata),
                               void *userdata)
{
        sqlite3_stmt *st;
        int rc, r = 0;

        rc = sqlite3_prepare_v2(ix->db,
                                "SELECT last, count(*), sum(bytes) FROM scratch.seen "
                                "WHERE n = 1 AND bytes IS NOT NULL GROUP BY last",
                                -1, &st, NULL);
        if (rc != SQLITE_OK)
                return ix_errno(ix, rc) ?: -EIO;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW && r == 0)
                r = fn(sqlite3_column_int64(st, 0), (uint64_t)sqlite3_column_int64(st, 1),
                       (uint64_t)sqlite3_column_int64(st, 2), userdata);
        sqlite3_finalize(st);
        if (r != 0)
                return r;
        return rc == SQLITE_DONE ? 0 : (ix_errno(ix, rc) ?: -EIO);
}

int stamp_index_gc_plan(struct stamp_index *ix, unsigned max_unused_pct)
{
        /* Per object in a pack: its record header and its index entry. */
        char sql[2048];
        int r;

        snprintf(sql, sizeof(sql),
                 "DELETE FROM scratch.cand; DELETE FROM scratch.plan; DELETE FROM scratch.copy;"
                 "INSERT INTO scratch.cand(id, pack, bytes)"
                 " SELECT o.id, o.pack, o.stored_len FROM main.objects o"
                 " WHERE NOT EXISTS (SELECT 1 FROM scratch.seen s WHERE s.id = o.id);"
                 "INSERT INTO scratch.plan(pack, name, size, objects, live_n, live_bytes, action)"
                 " SELECT p.id, p.name, p.size, coalesce(a.n, 0), coalesce(a.live_n, 0),"
                 "  coalesce(a.live_bytes, 0), 0 FROM main.packs p LEFT JOIN"
                 "  (SELECT o.pack AS pack, count(*) AS n, count(s.id) AS live_n,"
                 "    sum(CASE WHEN s.id IS NULL THEN 0 ELSE o.stored_len + %u END) AS live_bytes"
                 "   FROM main.objects o LEFT JOIN scratch.seen s ON s.id = o.id"
                 "   GROUP BY o.pack) a ON a.pack = p.id;"
                 "UPDATE scratch.plan SET action = CASE"
                 " WHEN live_n = 0 THEN %d"
                 " WHEN (size - live_bytes - %u) * 100 > %u * size THEN %d ELSE %d END;"
                 "INSERT INTO scratch.copy(id, pack, offset, raw_len, stored_len, type, comp)"
                 " SELECT o.id, p.name, o.offset, o.raw_len, o.stored_len, o.type, o.comp"
                 " FROM scratch.plan pl JOIN main.objects o ON o.pack = pl.pack"
                 " JOIN main.packs p ON p.id = o.pack"
                 " WHERE pl.action = %d AND EXISTS (SELECT 1 FROM scratch.seen s WHERE s.id = o.id)"
                 " ORDER BY o.pack, o.offset;",
                 STAMP_PACK_RECORD_HEADER_SIZE + STAMP_PACK_INDEX_ENTRY_SIZE, STAMP_GC_DELETE,
                 STAMP_PACK_HEADER_SIZE + STAMP_PACK_TRAILER_SIZE, max_unused_pct,
                 STAMP_GC_REWRITE, STAMP_GC_KEEP, STAMP_GC_REWRITE);
        /* One read snapshot of the index for all of it. */
        r = exec(ix, "BEGIN DEFERRED");
        if (r < 0)
                return r;
        r = exec(ix, sql);
        if (r < 0) {
                (void)exec(ix, "ROLLBACK");
                return r;
        }
        return exec(ix, "COMMIT");
}

int stamp_index_gc_plan_next(struct stamp_index *ix, int64_t after, struct stamp_gc_plan_pack *ret)
{
        sqlite3_stmt *st = ix->s[S_PLAN_NEXT];
        const unsigned char *name;
        int r;

        sqlite3_bind_int64(st, 1, after);
        r = step_row(st);
        if (r == 1) {
                name = sqlite3_column_text(st, 1);
                if (!name || strlen((const char *)name) >= sizeof(ret->name))
                        r = -EBADMSG;
                else {
                        ret->pack = sqlite3_column_int64(st, 0);
                        strcpy(ret->name, (const char *)name);
                        ret->size = (uint64_t)sqlite3_column_int64(st, 2);
                        ret->objects = (uint64_t)sqlite3_column_int64(st, 3);
                        ret->live_objects = (uint64_t)sqlite3_column_int64(st, 4);
                        ret->live_bytes = (uint64_t)sqlite3_column_int64(st, 5);
                        ret->action = sqlite3_column_int(st, 6);
                }
        }
        finish(st);
        return r;
}

int stamp_index_gc_plan_set(struct stamp_index *ix, int64_t pack, int action)
{
        sqlite3_stmt *st = ix->s[S_PLAN_SET];

        sqlite3_bind_int(st, 1, action);
        sqlite3_bind_int64(st, 2, pack);
        return step_done(st);
}

int stamp_index_gc_cand_totals(struct stamp_index *ix, uint64_t *ret_n, uint64_t *ret_bytes)
{
        uint64_t v[2];
        int r;

        r = query_u64s(ix, "SELECT count(*), coalesce(sum(bytes), 0) FROM scratch.cand", v, 2);
        if (r < 0)
                return r;
        *ret_n = v[0];
        *ret_bytes = v[1];
        return 0;
}

int stamp_index_gc_copy_next(struct stamp_index *ix, int64_t after, struct stamp_loc *ret,
                             size_t max, size_t *ret_n, int64_t *ret_next)
{
        sqlite3_stmt *st = ix->s[S_COPY_NEXT];
        size_t n = 0;
        int rc, r = 0;

        sqlite3_bind_int64(st, 1, after);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
        while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                struct stamp_loc *l = &ret[n];
                const unsigned char *name = sqlite3_column_text(st, 2);
                sqlite3_int64 raw = sqlite3_column_int64(st, 4);
                sqlite3_int64 stored = sqlite3_column_int64(st, 5);
                sqlite3_int64 off = sqlite3_column_int64(st, 3);

                if (sqlite3_column_bytes(st, 1) != STAMP_ID_SIZE || !name ||
                    strlen((const char *)name) >= sizeof(l->pack) || off < 0 || raw < 0 ||
                    raw > STAMP_OBJECT_MAX || stored < 0 || stored > STAMP_OBJECT_MAX) {
                        r = -EBADMSG;
                        break;
                }
                memcpy(l->id.b, sqlite3_column_blob(st, 1), STAMP_ID_SIZE);
                strcpy(l->pack, (const char *)name);
                l->offset = (uint64_t)off;
                l->raw_len = (uint32_t)raw;
                l->stored_len = (uint32_t)stored;
                l->type = (uint8_t)sqlite3_column_int(st, 6);
                l->comp = (uint8_t)sqlite3_column_int(st, 7);
                *ret_next = sqlite3_column_int64(st, 0);
                n++;
        }
        if (r == 0 && n < max && rc != SQLITE_DONE)
                r = ix_errno(ix, rc) ?: -EIO;
        finish(st);
        if (r < 0)
                return r;
        *ret_n = n;
        return 0;
}

int stamp_index_relocate(struct stamp_index *ix, const char *name, uint64_t size,
                         const struct stamp_pack_entry *e, size_t n)
{
        sqlite3_stmt *st = ix->q[Q_ADD_PACK];
        int r;

        r = stamp_index_begin(ix);
        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)size);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)n);
        r = step_done(st);
        st = ix->s[S_RELOCATE];
        for (size_t i = 0; i < n && r == 0; i++) {
                sqlite3_bind_blob(st, 1, e[i].id.b, STAMP_ID_SIZE, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 3, (sqlite3_int64)e[i].offset);
                sqlite3_bind_int64(st, 4, e[i].raw_len);
                sqlite3_bind_int64(st, 5, e[i].stored_len);
                sqlite3_bind_int(st, 6, e[i].type);
                sqlite3_bind_int(st, 7, e[i].comp);
                r = step_done(st);
        }
        if (r < 0) {
                stamp_index_rollback(ix);
                return r;
        }
        return stamp_index_commit(ix);
}

int stamp_index_gc_row_live(struct stamp_index *ix, int64_t pack, const struct stamp_id *id)
{
        sqlite3_stmt *st = ix->s[S_ROW_LIVE];
        int r;

        sqlite3_bind_blob(st, 1, id->b, STAMP_ID_SIZE, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, pack);
        r = step_row(st);
        if (r == 1)
                r = sqlite3_column_int(st, 0) != 0;
        finish(st);
        return r;
}

int stamp_index_gc_files_scan(struct stamp_index *ix,
                              int (*fn)(const uint8_t *content, size_t len, void *userdata),
                              void *userdata, uint64_t *ret_listed)
{
        sqlite3_stmt *st;
        uint64_t listed = 0;
        int rc, r;

        r = exec(ix, "DELETE FROM scratch.dropfiles");
        if (r < 0)
                return r;
        rc = sqlite3_prepare_v2(ix->db, "SELECT dev, ino, content FROM main.files", -1, &st, NULL);
        if (rc != SQLITE_OK)
                return ix_errno(ix, rc) ?: -EIO;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const void *p = sqlite3_column_blob(st, 2);
                int n = sqlite3_column_bytes(st, 2);

                r = fn(p, p && n > 0 ? (size_t)n : 0, userdata);
                if (r < 0)
                        break;
                if (r == 1) {
                        sqlite3_stmt *d = ix->s[S_DROPFILE];
                        sqlite3_bind_int64(d, 1, sqlite3_column_int64(st, 0));
                        sqlite3_bind_int64(d, 2, sqlite3_column_int64(st, 1));
                        r = step_done(d);
                        if (r < 0)
                                break;
                        listed++;
                }
                r = 0;
        }
        sqlite3_finalize(st);
        if (r < 0)
                return r;
        if (rc != SQLITE_DONE)
                return ix_errno(ix, rc) ?: -EIO;
        *ret_listed = listed;
        return 0;
}

int stamp_index_gc_commit(struct stamp_index *ix, uint64_t *ret_objects, uint64_t *ret_bytes)
{
        uint64_t v[2], left[2];
        char sql[1024];
        int r;

        r = stamp_index_begin(ix);
        if (r < 0)
                return r;
        /* The dead rows of the packs that go; temp.gone lists those packs. */
        snprintf(sql, sizeof(sql),
                 "DROP TABLE IF EXISTS temp.gone;"
                 "CREATE TEMP TABLE gone(pack INTEGER PRIMARY KEY);"
                 "INSERT INTO temp.gone SELECT pack FROM scratch.plan WHERE action IN (%d, %d);",
                 STAMP_GC_REWRITE, STAMP_GC_DELETE);
        r = exec(ix, sql);
        if (r == 0)
                r = query_u64s(ix,
                               "SELECT count(*), coalesce(sum(o.stored_len), 0) FROM main.objects o"
                               " WHERE o.pack IN temp.gone AND o.id IN (SELECT c.id FROM"
                               " scratch.cand c WHERE NOT EXISTS (SELECT 1 FROM scratch.seen s"
                               " WHERE s.id = c.id))",
                               v, 2);
        if (r == 0)
                r = exec(ix,
                         "DELETE FROM main.objects WHERE pack IN temp.gone AND id IN"
                         " (SELECT c.id FROM scratch.cand c WHERE NOT EXISTS"
                         " (SELECT 1 FROM scratch.seen s WHERE s.id = c.id));"
                         "DELETE FROM main.files WHERE (dev, ino) IN"
                         " (SELECT dev, ino FROM scratch.dropfiles);"
                         "DELETE FROM main.packs WHERE id IN temp.gone;");
        /* gc checked each pack against its trailer; a row left pointing at one is a bug. */
        if (r == 0)
                r = query_u64s(ix,
                               "SELECT EXISTS (SELECT 1 FROM main.objects"
                               " WHERE pack IN temp.gone), 0",
                               left, 2);
        if (r == 0 && left[0])
                r = -EBADMSG;
        if (r == 0)
                r = exec(ix, "DROP TABLE temp.gone");
        if (r < 0) {
                stamp_index_rollback(ix);
                return r;
        }
        r = stamp_index_commit(ix);
        if (r < 0)
                return r;
        *ret_objects = v[0];
        *ret_bytes = v[1];
        return 0;
}

int stamp_index_pack_id(struct stamp_index *ix, const char *name, int64_t *ret_id)
{
        sqlite3_stmt *st = ix->s[S_PACK_ID];
        int r;

        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        r = step_row(st);
        if (r == 1)
                *ret_id = sqlite3_column_int64(st, 0);
        finish(st);
        return r;
}

/* SPDX-License-Identifier: MIT */
/*
 * index.db: the SQLite index of a store. One of the three modules that
 * include <sqlite3.h> (sqlite-capture.c reads the live databases of a
 * snapshot's sources; dbcheck.c checks databases inside snapshots and
 * restored ones). It maps object ids to their place
 * in a pack, lists packs and snapshots, and holds the files cache. It is a
 * cache of what the packs and snapshot records say: `stamp reindex` can
 * rebuild it from them.
 *
 * One connection per thread: a struct stamp_index must never be used by two
 * threads at once. WAL mode, synchronous=FULL, a busy timeout.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hash.h"
#include "pack.h"

/*
 * Schema version in PRAGMA user_version. History: 1 = first; 2 = files.flags
 * (whether a cached file is an SQLite database, and how it was stored).
 */
#define STAMP_INDEX_SCHEMA 2

struct stamp_index;

/* Where an object lives. */
struct stamp_loc {
        struct stamp_id id;
        uint8_t type;
        uint8_t comp;
        uint32_t raw_len;
        uint32_t stored_len;
        uint64_t offset; /* of the record header */
        char pack[64];   /* the pack's object name */
};

enum {
        STAMP_INDEX_CREATE = 1u << 0,
        STAMP_INDEX_READONLY = 1u << 1,
        /*
         * The file cannot change while open and no -shm can be made beside
         * it (a store on a read-only file system): SQLite takes no locks
         * and reads no WAL (the caller checks that there is none). Nothing
         * is written to it; the connection stays writable only so that a
         * scratch database elsewhere can be attached.
         */
        STAMP_INDEX_IMMUTABLE = 1u << 2,
};

/* Opens (and with CREATE, creates) the index at @path. Caller frees. */
int stamp_index_open(const char *path, unsigned flags, struct stamp_index **ret);
void stamp_index_free(struct stamp_index *ix);
/* The last SQLite error message of this connection (for debug output). */
const char *stamp_index_errmsg(struct stamp_index *ix);

int stamp_index_begin(struct stamp_index *ix);
/*
 * A read transaction around many lookups: one snapshot of the index and no
 * per-statement locking. It sees nothing committed after its first query,
 * so keep it short enough (e.g. one snapshot's walk).
 */
int stamp_index_begin_read(struct stamp_index *ix);
void stamp_index_end_read(struct stamp_index *ix);
/* True when no transaction is open on @ix (SQLite's autocommit mode). */
bool stamp_index_autocommit(struct stamp_index *ix);
int stamp_index_commit(struct stamp_index *ix);
void stamp_index_rollback(struct stamp_index *ix);

/* Records a durable pack and its objects. Objects already indexed keep their place. */
int stamp_index_add_pack(struct stamp_index *ix, const char *name, uint64_t size,
                         const struct stamp_pack_entry *e, size_t n);
/* 1 if the pack is indexed, 0 if not. */
int stamp_index_has_pack(struct stamp_index *ix, const char *name);
/* 1 and *ret if @id is indexed, 0 if not. */
int stamp_index_find(struct stamp_index *ix, const struct stamp_id *id, struct stamp_loc *ret);

/*
 * The files cache. A row holds a file's encoded content reference and its
 * encoded xattrs (a change to either bumps ctime, part of the key), and
 * flags saying how the content was made.
 */
struct stamp_files_row {
        uint8_t *content; /* caller frees */
        size_t content_len;
        uint8_t *xattrs;  /* caller frees; NULL if none */
        size_t xattrs_len;
        unsigned flags;   /* STAMP_FILES_* */
};

/* Files-cache row flags. Frozen. */
#define STAMP_FILES_CHECKED (1u << 0)  /* the header was looked at (rows of schema 1 have 0) */
#define STAMP_FILES_SQLITE (1u << 1)   /* the file starts with the SQLite header */
#define STAMP_FILES_CAPTURED (1u << 2) /* the content is a copy made through SQLite's backup API */
/* 1 and *ret on a hit, 0 on a miss. */
int stamp_index_files_get(struct stamp_index *ix, uint64_t dev, uint64_t ino, uint64_t size,
                          int64_t mtime_ns, int64_t ctime_ns, struct stamp_files_row *ret);
int stamp_index_files_put(struct stamp_index *ix, uint64_t dev, uint64_t ino, uint64_t size,
                          int64_t mtime_ns, int64_t ctime_ns, const uint8_t *content,
                          size_t len, const uint8_t *xattrs, size_t xattrs_len, unsigned flags);

int stamp_index_snapshot_put(struct stamp_index *ix, const char *stamp,
                             const struct stamp_id *root);
int stamp_index_snapshot_del(struct stamp_index *ix, const char *stamp);
/* 1 if @stamp is indexed, 0 if not. */
int stamp_index_snapshot_has(struct stamp_index *ix, const char *stamp);

/*
 * Shrinks the connection's memory for a thread that only does point
 * lookups (the mount has one per thread): a 512 KiB page cache, 8 MiB mmap.
 */
int stamp_index_tune_reader(struct stamp_index *ix);

/*
 * Process-wide SQLite settings, before SQLite's first use (every opener
 * of a database in store/ calls it; later calls do nothing).
 */
void stamp_sqlite_setup(void);

/*
 * Calls @fn for every indexed pack: its name, size, the object count its
 * row records, and how many objects the index locates in it. A non-zero
 * return of @fn stops the walk and is returned.
 */
typedef int (*stamp_index_pack_fn)(const char *name, uint64_t size, uint64_t objects,
                                   uint64_t located, void *userdata);
int stamp_index_foreach_pack(struct stamp_index *ix, stamp_index_pack_fn fn, void *userdata);
/* Folds the WAL back into index.db and truncates it (end of a write session). */
int stamp_index_checkpoint(struct stamp_index *ix);

/* Statistics for `stamp show`/tests: counts of packs and objects, and pack bytes. */
int stamp_index_counts(struct stamp_index *ix, uint64_t *ret_packs, uint64_t *ret_objects,
                       uint64_t *ret_pack_bytes);

/*
 * Scratch sets for gc and stats.
 *
 * A private SQLite database (a file in the store's tmp/, owned by one
 * process, never durable) attached to a connection as "scratch". Its page
 * cache is bounded (16 MiB), so marking every object of a store of any size
 * needs bounded memory; joins against the index run inside SQLite.
 *
 * Tables: seen(id, n, last, bytes): objects reached by a walk, with the
 * number of passes (snapshots) that reached each and the stored length the
 * index gives (NULL: missing from the index); stack: trees still to walk;
 * cand, plan, copy, dropfiles: gc's work lists (see gc.c).
 *
 * Scratch writes go in deferred transactions (_scratch_begin/_commit):
 * they never take the index's write lock, so a concurrent snapshot is not
 * blocked.
 */
/* Attaches the empty file @path (it must exist) as the scratch database. */
int stamp_index_scratch_attach(struct stamp_index *ix, const char *path);
int stamp_index_scratch_begin(struct stamp_index *ix);
int stamp_index_scratch_commit(struct stamp_index *ix);

/*
 * Records that pass @pass reached @id. Returns 1 if that is news (the
 * first time in this pass: the caller walks what @id names), 0 if this
 * pass already reached it. *ret_stored_len is the index's stored length, or
 * -1 if the index does not know @id. gc uses a single pass (0) for all
 * snapshots; stats one pass per snapshot, counting per object how many
 * snapshots hold it.
 */
int stamp_index_seen_visit(struct stamp_index *ix, const struct stamp_id *id, int64_t pass,
                           int64_t *ret_stored_len);
/* 1 if @id was reached by any pass, 0 if not. */
int stamp_index_seen_has(struct stamp_index *ix, const struct stamp_id *id);
/* The walk's stack of trees: push, and pop (1 and *ret, or 0 when empty). */
int stamp_index_stack_push(struct stamp_index *ix, const struct stamp_id *id);
int stamp_index_stack_pop(struct stamp_index *ix, struct stamp_id *ret);

/* Store-wide figures after walking every snapshot (stats). */
struct stamp_index_usage {
        uint64_t packs, pack_bytes;
        uint64_t objects, chunks;          /* indexed objects; data chunks among them */
        uint64_t referenced, referenced_bytes; /* reached objects; their stored lengths */
        uint64_t live_packs;               /* packs holding a reached object */
        uint64_t missing;                  /* reached but not indexed */
};
int stamp_index_usage(struct stamp_index *ix, struct stamp_index_usage *ret);
/*
 * Calls @fn for each pass with the objects only that pass reached: their
 * count and stored bytes. Stops at a non-zero return.
 */
int stamp_index_seen_exclusive(struct stamp_index *ix,
                               int (*fn)(int64_t pass, uint64_t objects, uint64_t bytes,
                                         void *userdata),
                               void *userdata);

/* gc's plan: what to do with each pack. */
enum {
        STAMP_GC_KEEP = 0,
        STAMP_GC_REWRITE = 1, /* copy the live objects to new packs, then delete */
        STAMP_GC_DELETE = 2,  /* nothing live: delete */
};

struct stamp_gc_plan_pack {
        int64_t pack; /* the index's pack id */
        char name[64];
        uint64_t size;
        uint64_t objects, live_objects;
        uint64_t live_bytes; /* stored bytes + record headers + index entries of live objects */
        int action;
};

/*
 * From the marks in seen (every object reachable from the snapshots):
 * fills cand with the indexed objects that are not marked, plan with one
 * row per indexed pack, its live share and its action (DELETE if nothing
 * in it is live, REWRITE if more than @max_unused_pct percent of it is not
 * live), and copy with the live objects of REWRITE packs in pack and offset
 * order. One read snapshot of the index, so the three agree.
 */
int stamp_index_gc_plan(struct stamp_index *ix, unsigned max_unused_pct);
/* The plan's rows in pack id order after @after (start with -1): 1 and *ret, or 0 at the end. */
int stamp_index_gc_plan_next(struct stamp_index *ix, int64_t after, struct stamp_gc_plan_pack *ret);
/* Changes a planned pack's action (a pack that must be kept after all). */
int stamp_index_gc_plan_set(struct stamp_index *ix, int64_t pack, int action);
/* Candidates: count and stored bytes. */
int stamp_index_gc_cand_totals(struct stamp_index *ix, uint64_t *ret_n, uint64_t *ret_bytes);
/*
 * The next objects to copy after position @after (start with 0): up to @max
 * locations in *ret (pack = its current pack), their count in *ret_n, and
 * the position to continue from in *ret_next.
 */
int stamp_index_gc_copy_next(struct stamp_index *ix, int64_t after, struct stamp_loc *ret,
                             size_t max, size_t *ret_n, int64_t *ret_next);
/*
 * Points the index rows of @n objects at the new pack @name (added if the
 * index does not list it), in one transaction: the objects were copied
 * there and the pack is durable.
 */
int stamp_index_relocate(struct stamp_index *ix, const char *name, uint64_t size,
                         const struct stamp_pack_entry *e, size_t n);
/*
 * 1 if the index row of @id points at pack @pack and the object is not dead
 * (a candidate that is still not marked), so the pack must not be deleted.
 */
int stamp_index_gc_row_live(struct stamp_index *ix, int64_t pack, const struct stamp_id *id);
/*
 * Calls @fn for every files-cache row; rows for which it returns 1 are
 * listed for deletion by stamp_index_gc_commit(). A negative return stops.
 */
int stamp_index_gc_files_scan(struct stamp_index *ix,
                              int (*fn)(const uint8_t *content, size_t len, void *userdata),
                              void *userdata, uint64_t *ret_listed);
/*
 * The commit of a gc, one transaction: deletes the rows of packs planned
 * REWRITE or DELETE, the rows of the dead objects (candidates still not
 * marked) in them, and the listed files-cache rows. Dead objects in packs
 * that stay keep their rows: the index keeps describing exactly what the
 * indexed packs hold, as a reindex would. Returns the object rows deleted
 * and their stored bytes.
 */
int stamp_index_gc_commit(struct stamp_index *ix, uint64_t *ret_objects, uint64_t *ret_bytes);
/* 1 if pack @name is listed, with *ret_id; 0 if not. */
int stamp_index_pack_id(struct stamp_index *ix, const char *name, int64_t *ret_id);

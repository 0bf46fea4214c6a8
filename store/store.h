/* SPDX-License-Identifier: MIT */
/*
 * A stampfs store: config, backend, index, locks, objects and snapshot
 * records. This is the public entry point of libstampstore; fs/ and tools/
 * use only the store's headers.
 *
 * Layout of a store directory (see FORMAT.md):
 *   config                 the store config (JSON), written once at init
 *   index.db               the SQLite index (a rebuildable cache)
 *   lock                   flock()ed by writers; holds the holder's pid
 *   packs/XX/<sum>.pack    pack files
 *   snapshots/STAMP.json   snapshot records (the commit points)
 *   tmp/                   temporary objects of writers (and drill scratch copies)
 *   drill.log              results of `stamp drill` (drill.h)
 *
 * Errors (negative errno): -ENOENT absent; -EMEDIUMTYPE not a stampfs
 * store; -EBADMSG corrupt (hash mismatch, bad magic, truncation);
 * -EOPNOTSUPP unknown format version; -EBUSY locked by another process;
 * -EUCLEAN index.db is missing or an empty file (stamp_store_recover() rebuilds it);
 * -EINVAL bad argument; -ENOMEM; -EIO; -ENOSPC.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "hash.h"
#include "index.h"
#include "record.h"

struct stamp_store;

struct stamp_init_options {
        struct stamp_chunker_params chunker;
        int zstd_level;
        uint32_t pack_size;
        uint32_t dedup_verify_max;
        /*
         * Use this secret instead of a new random one (a copy destination
         * must share its source's secret: it names every chunk).
         */
        bool have_secret;
        uint8_t secret[STAMP_SECRET_SEED_SIZE];
};

/* The defaults (see FORMAT.md for how they were chosen). */
void stamp_init_options_default(struct stamp_init_options *o);
/*
 * Options for a store that can receive copies of @c's snapshots: the same
 * chunker, secret, pack size and dedup check; the same compression level
 * (change it after the call if the copy should use another).
 */
void stamp_init_options_like(const struct stamp_config *c, struct stamp_init_options *o);
/*
 * 0 if objects of a store configured as @src can be copied verbatim into
 * one configured as @dst (same chunker, chunk-id algorithm and secret),
 * else -EXDEV.
 */
int stamp_config_copy_compatible(const struct stamp_config *src, const struct stamp_config *dst);

/*
 * Creates a store in @dir, which must not exist or be an empty directory;
 * missing parent directories are made (mode 0700). -EEXIST if it holds
 * anything, -EINVAL for bad options.
 */
int stamp_store_init(const char *dir, const struct stamp_init_options *o);

/*
 * Opens the store in @dir. -ENOENT if @dir is missing, -EMEDIUMTYPE if it is
 * not a store, -EROFS if it is on a read-only file system with index.db
 * changes not folded in (a -wal without its -shm: SQLite cannot read that
 * there), -ENOTDIR if its packs/, snapshots/ or tmp/ is not a directory of
 * its own (a symlink: STAMP_STORE_NOTDIR_MESSAGE). Caller frees with
 * stamp_store_free(). Takes no lock.
 */
int stamp_store_open(const char *dir, struct stamp_store **ret);
/* What -EBADMSG from stamp_store_open() means: its config. */
#define STAMP_STORE_CONFIG_MESSAGE                                                               \
        "its config is damaged (not the JSON of a store's config, a field missing or out of "    \
        "range, or a secret that does not match its check); put back your copy of STORE/config"
#define STAMP_STORE_NOTDIR_MESSAGE                                                               \
        "its packs/, snapshots/ or tmp/ is a symlink or not a directory; refusing to use it "     \
        "(they must be the store's own directories)"
/* What -EROFS from stamp_store_open() means, for the front ends to print. */
#define STAMP_STORE_EROFS_MESSAGE                                                                 \
        "on a read-only file system, with index.db changes not folded in (index.db-wal "          \
        "without index.db-shm), which SQLite cannot read there: mount it writable once, or "      \
        "copy the store directory to a writable disk"
void stamp_store_free(struct stamp_store *s);

const struct stamp_config *stamp_store_config(const struct stamp_store *s);
const struct stamp_hasher *stamp_store_hasher(const struct stamp_store *s);
struct stamp_backend *stamp_store_backend(struct stamp_store *s);
/*
 * Whether data chunk @id of @len bytes holds only zero bytes: a hole of a
 * sparse file (a snapshot reads holes as zeros and stores them as such
 * chunks). Only the lengths a run of zeros is cut into are checked: where
 * the store's chunker cuts zeros (its largest size, or earlier, as its
 * secret decides), the largest size, and multiples of 4 KiB. A chunk of
 * zeros of another length (a file's last one, say) counts as data: a
 * sparse copy then writes those few zeros, nothing worse. Thread-safe.
 */
bool stamp_store_zero_chunk(struct stamp_store *s, const struct stamp_id *id, uint64_t len);
/* Whether chunk list @id is known to name only chunks of zeros (or such lists). Thread-safe. */
bool stamp_store_zero_list(struct stamp_store *s, const struct stamp_id *id);
/* Remembers (a bounded number of) chunk lists that name only chunks of zeros. */
void stamp_store_zero_list_add(struct stamp_store *s, const struct stamp_id *id);
const char *stamp_store_path(const struct stamp_store *s);
/* The (dev, ino) of the store directory, so a snapshot can skip it. */
void stamp_store_dev_ino(const struct stamp_store *s, uint64_t *ret_dev, uint64_t *ret_ino);

/*
 * The calling thread's index connection, opened on first use and closed by
 * stamp_store_free(). Never share it with another thread.
 */
int stamp_store_index(struct stamp_store *s, struct stamp_index **ret);
/* A new connection owned by the caller (for a thread that outlives calls). */
int stamp_store_index_open(struct stamp_store *s, struct stamp_index **ret);

/*
 * Takes the store's write lock (flock, exclusive), waiting up to
 * @timeout_s seconds (0: do not wait). -EBUSY if it is held; then @holder
 * (if not NULL) describes the holder ("pid 1234: stamp snapshot").
 * The lock dies with the process.
 */
int stamp_store_lock(struct stamp_store *s, int timeout_s, const char *what, char *holder,
                     size_t holder_size);
void stamp_store_unlock(struct stamp_store *s);
bool stamp_store_locked(const struct stamp_store *s);

/*
 * The gc lock (flock on `gc.lock`), the same way: held by gc for its whole
 * run and by reindex, so that two of them never overlap. gc holds the write
 * lock only for its short commit. Lock order: gc.lock, then lock.
 */
int stamp_store_gc_lock(struct stamp_store *s, int timeout_s, const char *what, char *holder,
                        size_t holder_size);
void stamp_store_gc_unlock(struct stamp_store *s);
bool stamp_store_gc_locked(const struct stamp_store *s);

/*
 * Holds gc.lock shared until stamp_store_free(), waiting up to @timeout_s
 * seconds for a running gc or reindex: for a reader that needs a snapshot
 * whole from start to end (restore, drill). While any reader holds it, gc
 * and reindex cannot start (they say "locked by a restore or drill reading
 * it"); forget still can, and the data stays until the next gc. Several
 * readers may hold it at once. -EBUSY with the holder in @holder on timeout.
 */
int stamp_store_gc_hold(struct stamp_store *s, int timeout_s, char *holder, size_t holder_size);
/* True if gc.lock is held right now, and only by such readers (no gc or reindex). */
bool stamp_store_gc_held_by_readers(struct stamp_store *s);

/*
 * True if the store is on a read-only file system (a backup disk mounted
 * ro): everything that only reads works (the index is opened immutable
 * when no WAL is left in it), every writer fails with -EROFS.
 */
bool stamp_store_readonly(const struct stamp_store *s);

/*
 * Creates a private temporary file in the store's tmp/ whose name ends in
 * @suffix, its path in @ret_path. Returns its fd: while it is open the file
 * holds a flock, so recovery (which removes the files of dead writers)
 * leaves it alone. Close it, then remove it with stamp_store_tmpfile_remove().
 */
int stamp_store_tmpfile(struct stamp_store *s, const char *suffix, char *ret_path, size_t size);
void stamp_store_tmpfile_remove(struct stamp_store *s, const char *path);
/*
 * A private scratch file for a reader's temporary tables, as
 * stamp_store_tmpfile(); on a read-only store (stamp_store_readonly()), or
 * one this process may not write in, or after stamp_store_reserve_release(),
 * in $TMPDIR (default /tmp) instead. Close it, then remove it with
 * stamp_store_scratch_remove().
 */
int stamp_store_scratch(struct stamp_store *s, const char *suffix, char *ret_path, size_t size);

/*
 * The reserve, `STORE/reserve`: up to 8 MiB (1/64 of a small file system)
 * that `stamp init` sets aside and only gc gives back, so that gc can run
 * on a full disk. The caller holds the gc lock.
 *
 * stamp_store_space_low(): less than twice the reserve is free.
 * stamp_store_reserve_release(): deletes the reserve (1; 0 if there was
 * none), *@ret_bytes its size, and from then on puts scratch files in
 * $TMPDIR. stamp_store_reserve_make(): makes it again if it is missing
 * and at least four times its size is free (1; 0 if there is one or the
 * disk is too small; -ENOSPC).
 */
bool stamp_store_space_low(struct stamp_store *s);
int stamp_store_reserve_release(struct stamp_store *s, uint64_t *ret_bytes);
int stamp_store_reserve_make(struct stamp_store *s);
void stamp_store_scratch_remove(struct stamp_store *s, const char *path);

/*
 * Brings the index up to date after a crash: removes the temporary files
 * of dead writers, finishes an interrupted gc's deletions (gc-pending),
 * indexes durable packs the index does not know, indexes snapshot records.
 * A missing index.db is created and so rebuilt from packs and records.
 * Requires the write lock.
 */
int stamp_store_recover(struct stamp_store *s);

struct stamp_reindex_result {
        uint64_t packs, objects, pack_bytes, snapshots;
        uint64_t damaged_packs;      /* checksum mismatch: indexed, reads of bad objects fail */
        uint64_t scanned_packs;      /* of those, trailer damaged: records walked instead */
        uint64_t unreadable_packs;   /* no sound header or first record: not indexed */
        uint64_t unreadable_records; /* malformed snapshot records: not indexed */
        uint64_t pending_removed;    /* packs an interrupted gc had listed, deleted */
};

/*
 * Rebuilds index.db from the packs (each one's checksum verified) and the
 * snapshot records alone: the new index is built as index.db.new, then
 * renamed over index.db. The files cache starts empty (the next snapshot
 * reads every file again). Requires the gc lock and the write lock, and no
 * index connection of @s open. Readers that have the old index open switch
 * to the new one on their next failed lookup.
 */
int stamp_store_reindex(struct stamp_store *s, struct stamp_reindex_result *ret);

/*
 * Reads object @id, checks its type, decompresses it and verifies its id.
 * -ENOENT if the index does not know it, -EBADMSG if the stored bytes are
 * damaged. Caller frees *ret. Thread-safe. If the pack the index named has
 * vanished (gc moved the object and deleted the pack meanwhile), it looks
 * the object up again once.
 */
int stamp_store_get(struct stamp_store *s, const struct stamp_id *id, uint8_t type,
                    uint8_t **ret, size_t *ret_len);
/*
 * Between these two, the calling thread's stamp_store_get() calls share one
 * index read transaction (opened at the first one) instead of one each:
 * SQLite takes its locks and checks the file once, not once per object.
 * The transaction sees nothing committed after it began, so keep a batch
 * short (one read request, a few files); a lookup that fails ends it. They
 * nest; a caller's own transaction on the thread's connection is left alone.
 */
void stamp_store_read_begin(struct stamp_store *s);
void stamp_store_read_end(struct stamp_store *s);

/*
 * @hook (NULL: none) is called on the calling thread before it may wait:
 * before stamp_store_get(), stamp_store_list() and
 * stamp_store_record_load() read from the backend, before a thread's first
 * use of the index opens it, and wherever
 * stamp_store_will_wait() is called (the cache, before it waits for
 * another thread's read). The mount's loop lets another thread take
 * requests meanwhile. Set it before threads share the store.
 */
void stamp_store_set_wait_hook(struct stamp_store *s, void (*hook)(void));
void stamp_store_will_wait(struct stamp_store *s);

/* The sorted list of stamps with a valid record name. */
int stamp_store_list(struct stamp_store *s, struct stamp_strv *ret);
/* Loads a snapshot record: -ENOENT if absent, -EBADMSG if malformed. */
int stamp_store_record_load(struct stamp_store *s, const char *stamp, struct stamp_record *ret);
/* Writes a record durably (the snapshot's commit point). -EEXIST if the stamp is taken. */
int stamp_store_record_write(struct stamp_store *s, const struct stamp_record *r);
/*
 * Writes the record text @text of another store (stamp copy) byte for byte,
 * after checking it parses as the record of @stamp with root @root (the
 * tree the caller validated). -EEXIST if the stamp is taken, -EBADMSG if
 * @text is not such a record.
 */
int stamp_store_record_write_text(struct stamp_store *s, const char *stamp,
                                  const struct stamp_id *root, const char *text, size_t len);
/*
 * Deletes a snapshot's record (its data stays until gc). Requires the write
 * lock. -ENOENT if there is no such snapshot. The store remembers the
 * stamp as forgotten (forgotten/STAMP), so that stamp copy does not bring the
 * snapshot back from a store that still has it; writing a record of that
 * stamp again clears the mark. Returns 1 if the snapshot was deleted but
 * there was no space left for the mark.
 */
int stamp_store_record_delete(struct stamp_store *s, const char *stamp);
/* The sorted stamps this store has forgotten (a record may exist again). */
int stamp_store_forgotten(struct stamp_store *s, struct stamp_strv *ret);
/*
 * 1 if @stamp names a snapshot of this store or one it forgot, 0 if it was
 * never used: a new snapshot never reuses a stamp, so that a copy never
 * takes one snapshot for another.
 */
int stamp_store_stamp_used(struct stamp_store *s, const char *stamp);
/* The tag of the safety snapshot `stamp restore` takes of its target first. */
#define STAMP_TAG_PRE_RESTORE "pre-restore"

/*
 * Resolves "latest" (the newest snapshot not tagged pre-restore; the
 * newest of all if every one is) and checks a stamp exists.
 */
int stamp_store_resolve(struct stamp_store *s, const char *name,
                        char ret[STAMP_STAMP_LEN + 1]);

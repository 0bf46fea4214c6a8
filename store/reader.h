/* SPDX-License-Identifier: MIT */
/*
 * Reading snapshots: loading trees, resolving paths, reading file content
 * at any offset. Every object read is verified against its id
 * (stamp_store_get), so damage gives an error, never wrong bytes.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "store.h"
#include "tree.h"

/* A loaded, validated tree object. */
struct stamp_tree_obj {
        uint8_t *buf;
        size_t len;
        struct stamp_tree t;
};

int stamp_tree_load(struct stamp_store *s, const struct stamp_id *id, struct stamp_tree_obj *ret);
void stamp_tree_obj_release(struct stamp_tree_obj *o);

/*
 * Resolves @path ("a/b/c"; "" or "/" is the root) below tree @root. On
 * success *ret_parent holds the tree containing the entry and *ret the
 * entry (borrowing ret_parent). For the root itself, *ret is a directory
 * entry named "." and ret_parent is empty. -ENOENT if a component is
 * missing, -ENOTDIR if a non-final component is not a directory, -EBADMSG
 * if a directory on the way is damaged or missing from the store.
 */
int stamp_path_resolve(struct stamp_store *s, const struct stamp_id *root, const char *path,
                       struct stamp_tree_obj *ret_parent, struct stamp_entry *ret);

struct stamp_file;

struct stamp_cache;

/*
 * Opens a regular file's content. With @cache (may be NULL), chunks are
 * taken from and kept in that shared cache. Caller frees with stamp_file_free().
 */
int stamp_file_open(struct stamp_store *s, const struct stamp_entry *e, struct stamp_cache *cache,
                    struct stamp_file **ret);
void stamp_file_free(struct stamp_file *f);
uint64_t stamp_file_size(const struct stamp_file *f);
/*
 * The bytes of memory the reader holds (its chunk lists above all), for
 * callers that keep readers around and bound what they keep.
 */
size_t stamp_file_mem(const struct stamp_file *f);
/* Drops the chunk the reader holds (a reader kept idle must not pin memory). */
void stamp_file_drop_chunk(struct stamp_file *f);
/*
 * True when the content is a chunk list: opening it again would load its
 * lists again, so a reader worth keeping. Inline content opens for free.
 */
bool stamp_file_chunked(const struct stamp_file *f);
/*
 * Loads the chunks covering [@off, @off + @len) (clipped to the file) into
 * the reader's cache, without copying them anywhere; a reader opened
 * without a cache only checks them. 0 or a negative errno, as for reads.
 */
int stamp_file_warm(struct stamp_file *f, uint64_t off, uint64_t len);
struct stamp_cache_ref;

/* A piece of a file's content, in the shared cache (stamp_file_spans()). */
struct stamp_span {
        struct stamp_cache_ref *ref; /* dropped with stamp_cache_put() */
        const uint8_t *data;
        size_t len;
};

/*
 * For a reader opened with a cache: the bytes [@off, @off + @len) as they
 * sit in the cache, without copying them, in at most @max spans (fewer
 * bytes if those do not cover @len). Returns the number of spans (0 at or
 * past the end), *ret_bytes their total; the caller drops each span's ref.
 * A negative errno as for reads (then no ref is held), -EINVAL without a
 * cache.
 */
ssize_t stamp_file_spans(struct stamp_file *f, uint64_t off, size_t len, struct stamp_span *spans,
                         size_t max, size_t *ret_bytes);
/*
 * lseek(2)'s SEEK_DATA (@data) and SEEK_HOLE: the first offset at or after
 * @off in data, or in a hole. A hole is a run of chunks of zeros
 * (stamp_store_zero_chunk()), and the end of the file. -ENXIO if @off is
 * at or past the end, or (SEEK_DATA) only holes follow it; another
 * negative errno as for reads.
 */
int64_t stamp_file_seek(struct stamp_file *f, uint64_t off, bool data);
/*
 * The bytes of the file that are not holes (what a sparse copy of it
 * would allocate), in *ret. It loads at most @max_lists chunk lists, and
 * counts what lies beyond them as data. 0 or a negative errno.
 */
int stamp_file_allocated(struct stamp_file *f, unsigned max_lists, uint64_t *ret);
/*
 * Reads up to @len bytes at @off; returns the count (0 at or past the end)
 * or a negative errno (-EBADMSG for damaged or inconsistent content).
 * Not thread-safe: one handle per thread.
 */
ssize_t stamp_file_pread(struct stamp_file *f, void *buf, size_t len, uint64_t off);

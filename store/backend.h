/* SPDX-License-Identifier: MIT */
/*
 * The store's object backend: immutable named objects (packs, snapshot
 * records, the config) with put, ranged get, list and delete. A local
 * directory today; an object store (Ceph RADOS) can implement the same
 * operations later without the rest of the store changing.
 *
 * Object names are relative paths of [A-Za-z0-9._-] components separated
 * by '/', e.g. "packs/3f/3f...a1.pack" or "snapshots/20260407T060000Z.json".
 *
 * Durability contract: when stamp_backend_writer_commit() or
 * stamp_backend_put() returns 0 the object is durable under its name
 * (local: written to a temporary file, fsynced, linked into place without
 * replacing, directory fsynced). An object that exists is never replaced.
 * When stamp_backend_delete() returns 0 the removal is durable.
 *
 * All functions are thread-safe.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct stamp_backend;
struct stamp_backend_writer;

/* Called for each object name under a prefix; a non-zero return stops the walk. */
typedef int (*stamp_backend_list_fn)(const char *name, void *userdata);

struct stamp_backend_ops {
        int (*writer_open)(struct stamp_backend *b, struct stamp_backend_writer **ret);
        int (*writer_write)(struct stamp_backend_writer *w, const void *data, size_t len);
        int (*writer_commit)(struct stamp_backend_writer *w, const char *name);
        void (*writer_abort)(struct stamp_backend_writer *w);
        int (*read)(struct stamp_backend *b, const char *name, uint64_t off, void *buf,
                    size_t len);
        int (*size)(struct stamp_backend *b, const char *name, uint64_t *ret);
        int (*list)(struct stamp_backend *b, const char *prefix, stamp_backend_list_fn fn,
                    void *userdata);
        int (*remove)(struct stamp_backend *b, const char *name);
        int (*cleanup)(struct stamp_backend *b);
        void (*free)(struct stamp_backend *b);
};

struct stamp_backend {
        const struct stamp_backend_ops *ops;
};

/*
 * Opens the local directory backend on @dir (which must exist). Caller frees
 * with stamp_backend_free().
 */
int stamp_backend_local_open(const char *dir, struct stamp_backend **ret);
void stamp_backend_free(struct stamp_backend *b);

/* Returns true if @name is a valid object name. */
bool stamp_backend_name_valid(const char *name);

/* A new temporary object. Caller ends it with _commit() or _abort(). */
int stamp_backend_writer_open(struct stamp_backend *b, struct stamp_backend_writer **ret);
int stamp_backend_writer_write(struct stamp_backend_writer *w, const void *data, size_t len);
/* Makes the object durable as @name; -EEXIST if it exists. Frees @w, even on failure. */
int stamp_backend_writer_commit(struct stamp_backend_writer *w, const char *name);
/* Discards the temporary object and frees @w. NULL is a no-op. */
void stamp_backend_writer_abort(struct stamp_backend_writer *w);

/* Writes a whole object durably; -EEXIST if it already exists. */
int stamp_backend_put(struct stamp_backend *b, const char *name, const void *data, size_t len);
/* Reads exactly @len bytes at @off; -ENOENT if absent, -EBADMSG if the object is shorter. */
int stamp_backend_read(struct stamp_backend *b, const char *name, uint64_t off, void *buf,
                       size_t len);
/* Reads a whole object of at most @max bytes (-EFBIG if larger). Caller frees *ret. */
int stamp_backend_get(struct stamp_backend *b, const char *name, size_t max, uint8_t **ret,
                      size_t *ret_len);
int stamp_backend_size(struct stamp_backend *b, const char *name, uint64_t *ret);
/* Lists objects whose names start with @prefix (a directory such as "packs/"). */
int stamp_backend_list(struct stamp_backend *b, const char *prefix, stamp_backend_list_fn fn,
                       void *userdata);
int stamp_backend_remove(struct stamp_backend *b, const char *name);
/* Removes temporary objects left by dead writers. Call only under the store's write lock. */
int stamp_backend_cleanup(struct stamp_backend *b);

/* SPDX-License-Identifier: MIT */
/*
 * Idle file readers kept for a program that reads the same files again and
 * again (the mount serves a file in many reads). A reader of a chunk-listed
 * file holds its loaded chunk lists (32 bytes a chunk); taking it back saves
 * reading and checking them again. Readers belong to owners (the files the
 * program knows), at most @per_owner each, newest first, and the pool holds
 * at most @budget bytes of them (stamp_file_mem()) in all: beyond it, the
 * least recently put go. Without that bound, the readers of every large
 * file ever read would stay as long as their owners do. Thread-safe.
 *
 * The pool points into each owner's `struct stamp_pooled *`: an owner is
 * dropped (stamp_reader_pool_drop()) before it goes, and no reader is put
 * back for it afterwards, nor may one taken from it be still out.
 */
#pragma once

#include <stddef.h>

struct stamp_file;
struct stamp_reader_pool;

/*
 * An owner's idle readers: the owner keeps one `struct stamp_pooled *`,
 * NULL at first, and passes its address to every call.
 */
struct stamp_pooled;

int stamp_reader_pool_new(size_t budget, unsigned per_owner, struct stamp_reader_pool **ret);
/* Frees the pool and every reader still in it. */
void stamp_reader_pool_free(struct stamp_reader_pool *p);

/* The owner's most recently put reader, out of the pool; NULL if it has none. */
struct stamp_file *stamp_reader_pool_take(struct stamp_reader_pool *p, struct stamp_pooled **owner);

/*
 * Hands reader @f back for @owner: kept (its current chunk dropped; only
 * chunk-listed readers, an inline one reopens for free) or freed. Either
 * way the caller no longer has it.
 */
void stamp_reader_pool_put(struct stamp_reader_pool *p, struct stamp_pooled **owner,
                           struct stamp_file *f);

/* Frees the owner's readers: call it before the owner goes. */
void stamp_reader_pool_drop(struct stamp_reader_pool *p, struct stamp_pooled **owner);

/* The bytes of readers the pool holds now, and how many readers. */
size_t stamp_reader_pool_bytes(struct stamp_reader_pool *p, size_t *ret_count);

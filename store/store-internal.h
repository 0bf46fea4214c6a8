/* SPDX-License-Identifier: MIT */
/*
 * What store modules share that fs/ and tools/ must not use: the store
 * directory itself, for the local files kept beside the backend's objects
 * (drill.log, scratch directories below tmp/), and small directory helpers
 * more than one module needs.
 */
#pragma once

#include <stddef.h>

#include "store.h"

/* The store directory's fd; borrowed, valid until stamp_store_free(). */
int stamp_store_dirfd(const struct stamp_store *s);

/*
 * The names in the directory open at @dirfd, without "." and "..", sorted
 * bytewise (the order of trees). Reads through a duplicate of @dirfd from
 * its start, whatever an earlier listing did to the shared offset; @dirfd
 * itself stays open. On success *ret_names is an array of *ret_n strings;
 * caller frees with stamp_free_dir_names(). On failure returns -errno and
 * writes neither.
 */
int stamp_list_dir_names(int dirfd, char ***ret_names, size_t *ret_n);

/* Frees an array from stamp_list_dir_names(); NULL is a no-op. */
void stamp_free_dir_names(char **names, size_t n);

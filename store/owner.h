/* SPDX-License-Identifier: MIT */
/*
 * A store kept by another user (the account `stamp serve` runs as on a
 * copy's host) must stay usable by that user after root ran gc, prune,
 * reindex or a drill in it: what root creates in a store is given to the
 * store's owner, the owner of its directory. SQLite does the same for the
 * -wal and -shm files of a database. Nothing happens unless the process
 * runs as root and the store's directory belongs to someone else, and a
 * file system without owners (vfat) is left as it is.
 */
#pragma once

/* Gives the open file or directory @fd to the owner of the store at @rootfd. */
void stamp_owner_adopt(int rootfd, int fd);
/* The same for @name relative to @dirfd (not followed if a symlink). */
void stamp_owner_adopt_at(int rootfd, int dirfd, const char *name);

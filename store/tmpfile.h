/* SPDX-License-Identifier: MIT */
/*
 * Temporary files in a store's tmp/ that survive another process's
 * recovery. Recovery removes the temporary files of dead writers; since gc
 * writes packs and keeps a scratch database there while a snapshot (and so
 * its recovery) may run, a live file must be told apart from a dead one.
 * The owner holds an exclusive flock() on its file for as long as it needs
 * it; the kernel drops the lock when the owner dies, so "can be locked"
 * means "abandoned".
 */
#pragma once

/*
 * Creates @path (relative to @dirfd; a missing parent directory is made)
 * with O_CREAT | O_EXCL, mode 0600, opened with @access (O_RDONLY, O_WRONLY
 * or O_RDWR), and takes an exclusive flock on it. Returns the fd; the lock
 * lasts until it is closed. -EEXIST if @path exists. @dirfd is the store's
 * directory: the file and a new parent go to its owner (owner.h).
 */
int stamp_tmpfile_create_locked(int dirfd, const char *path, int access);

/*
 * Unlinks @name in directory @dirfd unless its owner is alive (holds the
 * flock). Returns 1 if removed, 0 if in use or not a regular file.
 */
int stamp_tmpfile_remove_unlocked(int dirfd, const char *name);

/* SPDX-License-Identifier: MIT */
/*
 * The local directory backend.
 *
 * Fsync policy: an object is written to tmp/ under a random name, fsynced,
 * renamed into place with RENAME_NOREPLACE (or linked, where the
 * filesystem lacks it), and the destination directory is fsynced before
 * commit returns. New subdirectories are fsynced into their parent. A failed
 * fsync is never retried: the object is abandoned (unlinked again if the
 * destination directory's fsync failed after the rename) and the error
 * returned.
 * Files are created 0600 and directories 0700 whatever the umask.
 *
 * Read fds are kept in a small cache, because the mount reads many small
 * ranges of the same packs.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "hash.h"
#include "macro.h"
#include "owner.h"
#include "tmpfile.h"

#define FD_CACHE_SIZE 64
#define TMP_DIR "tmp"

struct fd_slot {
        char *name; /* NULL when free */
        int fd;
        unsigned refs;
        uint64_t last_use;
};

struct local {
        struct stamp_backend base;
        int dirfd;
        pthread_mutex_t lock; /* protects slots and tick */
        struct fd_slot slots[FD_CACHE_SIZE];
        uint64_t tick;
};

struct local_writer {
        struct stamp_backend *b; /* must be first: backend.c reads it */
        int fd;
        uint64_t written, synced; /* bytes written; bytes handed to writeback */
        char tmp[64];
};

/*
 * Start writeback of what was written so far, without waiting, so that
 * the fsync at commit finds little left to do: disk writes then overlap
 * the work that produces the next bytes.
 */
#define WRITEBACK_STEP (4u << 20)

static struct local *to_local(struct stamp_backend *b)
{
        return (struct local *)b;
}

static int fsync_dir(int dirfd, const char *path)
{
        _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0)
                return negerrno();
        if (fsync(fd) < 0)
                return negerrno();
        return 0;
}

/* Creates every directory leading to @name, fsyncing each new one into its parent. */
static int make_parents(int dirfd, const char *name)
{
        char buf[600];
        size_t len = strlen(name);

        if (len >= sizeof(buf))
                return -ENAMETOOLONG;
        memcpy(buf, name, len + 1);
        for (char *p = buf; (p = strchr(p, '/')); p++) {
                *p = 0;
                if (mkdirat(dirfd, buf, 0700) == 0) {
                        (void)fchmodat(dirfd, buf, 0700, 0);
                        stamp_owner_adopt_at(dirfd, dirfd, buf);
                        char *slash = strrchr(buf, '/');
                        int r;
                        if (slash) {
                                *slash = 0;
                                r = fsync_dir(dirfd, buf);
                                *slash = '/';
                        } else
                                r = fsync_dir(dirfd, ".");
                        if (r < 0)
                                return r;
                } else if (errno != EEXIST)
                        return negerrno();
                *p = '/';
        }
        return 0;
}

static int local_writer_open(struct stamp_backend *b, struct stamp_backend_writer **ret)
{
        struct local *l = to_local(b);
        struct local_writer *w;
        uint8_t rnd[STAMP_SECRET_SEED_SIZE];
        struct stamp_id id;
        char hex[STAMP_ID_HEX_SIZE];
        int r;

        r = stamp_secret_generate(rnd);
        if (r < 0)
                return r;
        stamp_checksum128(rnd, sizeof(rnd), &id);
        stamp_id_to_hex(&id, hex);
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->b = b;
        snprintf(w->tmp, sizeof(w->tmp), TMP_DIR "/%s.tmp", hex);
        w->fd = stamp_tmpfile_create_locked(l->dirfd, w->tmp, O_WRONLY);
        if (w->fd < 0) {
                r = w->fd;
                free(w);
                return r;
        }
        *ret = (struct stamp_backend_writer *)w;
        return 0;
}

static int local_writer_write(struct stamp_backend_writer *bw, const void *data, size_t len)
{
        struct local_writer *w = (struct local_writer *)bw;
        const uint8_t *p = data;

        while (len > 0) {
                ssize_t n = write(w->fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negerrno();
                }
                p += n;
                len -= (size_t)n;
                w->written += (uint64_t)n;
        }
        if (w->written - w->synced >= WRITEBACK_STEP) {
                (void)sync_file_range(w->fd, (off64_t)w->synced, (off64_t)(w->written - w->synced),
                                      SYNC_FILE_RANGE_WRITE);
                w->synced = w->written;
        }
        return 0;
}

static void local_writer_abort(struct stamp_backend_writer *bw)
{
        struct local_writer *w = (struct local_writer *)bw;
        struct local *l = to_local(w->b);

        if (w->fd >= 0)
                (void)close(w->fd);
        (void)unlinkat(l->dirfd, w->tmp, 0);
        free(w);
}

static int place(struct local *l, const char *tmp, const char *name)
{
        if (renameat2(l->dirfd, tmp, l->dirfd, name, RENAME_NOREPLACE) == 0)
                return 0;
        if (errno != EINVAL && errno != ENOSYS)
                return negerrno();
        /* No RENAME_NOREPLACE here: link(2) refuses to replace, too. */
        if (linkat(l->dirfd, tmp, l->dirfd, name, 0) < 0)
                return negerrno();
        (void)unlinkat(l->dirfd, tmp, 0);
        return 0;
}

static int local_writer_commit(struct stamp_backend_writer *bw, const char *name)
{
        struct local_writer *w = (struct local_writer *)bw;
        struct local *l = to_local(w->b);
        const char *slash;
        int r;

        if (fsync(w->fd) < 0) {
                r = negerrno();
                goto fail;
        }
        r = make_parents(l->dirfd, name);
        if (r < 0)
                goto fail;
        /* The fd stays open (and its flock held) until the file has left tmp/. */
        r = place(l, w->tmp, name);
        if (r < 0)
                goto fail;
        if (close(TAKE_FD(w->fd)) < 0) {
                r = negerrno();
                free(w);
                return r;
        }
        slash = strrchr(name, '/');
        if (slash) {
                char dir[600];
                snprintf(dir, sizeof(dir), "%.*s", (int)(slash - name), name);
                r = fsync_dir(l->dirfd, dir);
        } else
                r = fsync_dir(l->dirfd, ".");
        /*
         * Visible but not durable: take it back, so that a failed put leaves
         * no object (a snapshot record would otherwise be listed by a
         * snapshot that reported failure). The name was new (no replace).
         */
        if (r < 0)
                (void)unlinkat(l->dirfd, name, 0);
        free(w);
        return r;
fail:
        local_writer_abort(bw);
        return r;
}

/*
 * Returns a cached fd for @name with a reference held, or a negative errno.
 * Only packs are cached: their names are their content. A record can be
 * forgotten and written again under its name by another process (a copy
 * of the same stamp), and a cached fd would go on reading the old file.
 */
static int fd_acquire(struct local *l, const char *name, unsigned *ret_slot)
{
        struct fd_slot *victim = NULL;
        unsigned i;
        int fd;

        if (strncmp(name, "packs/", 6) != 0) {
                fd = openat(l->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                *ret_slot = FD_CACHE_SIZE; /* uncached: the caller closes it */
                return fd < 0 ? negerrno() : fd;
        }

        pthread_mutex_lock(&l->lock);
        for (i = 0; i < FD_CACHE_SIZE; i++) {
                struct fd_slot *s = &l->slots[i];
                if (s->name && strcmp(s->name, name) == 0) {
                        s->refs++;
                        s->last_use = ++l->tick;
                        pthread_mutex_unlock(&l->lock);
                        *ret_slot = i;
                        return s->fd;
                }
        }
        pthread_mutex_unlock(&l->lock);

        fd = openat(l->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return negerrno();

        pthread_mutex_lock(&l->lock);
        for (i = 0; i < FD_CACHE_SIZE; i++) {
                struct fd_slot *s = &l->slots[i];
                if (s->refs > 0)
                        continue;
                if (!victim || !s->name || (victim->name && s->last_use < victim->last_use))
                        victim = s;
        }
        if (victim) {
                char *copy = strdup(name);
                if (copy) {
                        if (victim->name) {
                                (void)close(victim->fd);
                                free(victim->name);
                        }
                        victim->name = copy;
                        victim->fd = fd;
                        victim->refs = 1;
                        victim->last_use = ++l->tick;
                        *ret_slot = (unsigned)(victim - l->slots);
                        pthread_mutex_unlock(&l->lock);
                        return fd;
                }
        }
        pthread_mutex_unlock(&l->lock);
        *ret_slot = FD_CACHE_SIZE; /* uncached: the caller closes it */
        return fd;
}

static void fd_release(struct local *l, unsigned slot, int fd)
{
        if (slot >= FD_CACHE_SIZE) {
                (void)close(fd);
                return;
        }
        pthread_mutex_lock(&l->lock);
        l->slots[slot].refs--;
        pthread_mutex_unlock(&l->lock);
}

static void fd_forget(struct local *l, const char *name)
{
        pthread_mutex_lock(&l->lock);
        for (unsigned i = 0; i < FD_CACHE_SIZE; i++) {
                struct fd_slot *s = &l->slots[i];
                if (s->name && s->refs == 0 && strcmp(s->name, name) == 0) {
                        (void)close(s->fd);
                        free(s->name);
                        s->name = NULL;
                }
        }
        pthread_mutex_unlock(&l->lock);
}

static int local_read(struct stamp_backend *b, const char *name, uint64_t off, void *buf,
                      size_t len)
{
        struct local *l = to_local(b);
        uint8_t *p = buf;
        unsigned slot;
        int fd, r = 0;

        fd = fd_acquire(l, name, &slot);
        if (fd < 0)
                return fd;
        while (len > 0) {
                ssize_t n = pread(fd, p, len, (off_t)off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = negerrno();
                        break;
                }
                if (n == 0) {
                        r = -EBADMSG; /* shorter than the caller was told */
                        break;
                }
                p += n;
                off += (uint64_t)n;
                len -= (size_t)n;
        }
        fd_release(l, slot, fd);
        return r;
}

static int local_size(struct stamp_backend *b, const char *name, uint64_t *ret)
{
        struct stat st;

        if (fstatat(to_local(b)->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return negerrno();
        if (!S_ISREG(st.st_mode))
                return -EBADMSG;
        *ret = (uint64_t)st.st_size;
        return 0;
}

static int list_dir(int dirfd, const char *path, stamp_backend_list_fn fn, void *userdata,
                    int depth)
{
        _cleanup_close_ int fd = -1;
        DIR *d;
        struct dirent *de;
        int r = 0;

        if (depth > 4)
                return 0;
        fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return errno == ENOENT ? 0 : negerrno();
        d = fdopendir(fd);
        if (!d)
                return negerrno();
        TAKE_FD(fd);
        while ((errno = 0, de = readdir(d))) {
                char sub[600];
                if (de->d_name[0] == '.')
                        continue;
                if (snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) >= (int)sizeof(sub))
                        continue;
                /*
                 * Subdirectories (packs/ab/) have no dot in their names.
                 * Whatever else bears an object's name (a symlink, a
                 * directory "X.json") is listed too: reading it fails, so
                 * that gc refuses to run rather than miss a snapshot.
                 */
                if (de->d_type == DT_DIR && !strchr(de->d_name, '.'))
                        r = list_dir(dirfd, sub, fn, userdata, depth + 1);
                else {
                        if (strlen(de->d_name) > 4 &&
                            strcmp(de->d_name + strlen(de->d_name) - 4, ".tmp") == 0)
                                continue;
                        r = fn(sub, userdata);
                }
                if (r != 0)
                        break;
        }
        if (r == 0 && errno != 0)
                r = negerrno();
        closedir(d);
        return r;
}

static int local_list(struct stamp_backend *b, const char *prefix, stamp_backend_list_fn fn,
                      void *userdata)
{
        char dir[600];
        size_t len = strlen(prefix);

        if (len == 0 || len >= sizeof(dir))
                return -EINVAL;
        memcpy(dir, prefix, len + 1);
        if (dir[len - 1] == '/')
                dir[len - 1] = 0;
        return list_dir(to_local(b)->dirfd, dir, fn, userdata, 0);
}

static int local_remove(struct stamp_backend *b, const char *name)
{
        struct local *l = to_local(b);
        const char *slash = strrchr(name, '/');
        char dir[600];

        fd_forget(l, name);
        if (unlinkat(l->dirfd, name, 0) < 0)
                return negerrno();
        snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - name) : 1,
                 slash ? name : ".");
        return fsync_dir(l->dirfd, dir);
}

/*
 * Removes the temporary files of dead writers. A live writer holds a flock
 * on its file (tmpfile.h), so a file we can lock has no owner any more: a
 * gc copying packs or a scratch database beside a running snapshot keeps
 * its files even though the snapshot's recovery runs this.
 */
static int local_cleanup(struct stamp_backend *b)
{
        struct local *l = to_local(b);
        /* Never another directory's files, through a symlink. */
        _cleanup_close_ int fd =
                openat(l->dirfd, TMP_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct dirent *de;
        DIR *d;

        if (fd < 0)
                return errno == ENOENT ? 0 : negerrno();
        d = fdopendir(fd);
        if (!d)
                return negerrno();
        TAKE_FD(fd);
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        (void)stamp_tmpfile_remove_unlocked(dirfd(d), de->d_name);
        closedir(d);
        return 0;
}

static void local_free(struct stamp_backend *b)
{
        struct local *l = to_local(b);

        for (unsigned i = 0; i < FD_CACHE_SIZE; i++)
                if (l->slots[i].name) {
                        (void)close(l->slots[i].fd);
                        free(l->slots[i].name);
                }
        if (l->dirfd >= 0)
                (void)close(l->dirfd);
        pthread_mutex_destroy(&l->lock);
        free(l);
}

static const struct stamp_backend_ops local_ops = {
        .writer_open = local_writer_open,
        .writer_write = local_writer_write,
        .writer_commit = local_writer_commit,
        .writer_abort = local_writer_abort,
        .read = local_read,
        .size = local_size,
        .list = local_list,
        .remove = local_remove,
        .cleanup = local_cleanup,
        .free = local_free,
};

int stamp_backend_local_open(const char *dir, struct stamp_backend **ret)
{
        struct local *l = calloc(1, sizeof(*l));

        if (!l)
                return -ENOMEM;
        l->base.ops = &local_ops;
        pthread_mutex_init(&l->lock, NULL);
        l->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (l->dirfd < 0) {
                int r = negerrno();
                local_free(&l->base);
                return r;
        }
        *ret = &l->base;
        return 0;
}

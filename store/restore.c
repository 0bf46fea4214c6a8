/* SPDX-License-Identifier: MIT */
#include "restore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "dbcheck.h"
#include "macro.h"
#include "reader.h"
#include "tree.h"

#define COPY_BUFFER (1u << 20)
#define QUEUE_MAX 256        /* file jobs waiting for a writer */
#define PENDING_DIRS_MAX 512 /* directories whose metadata waits for their files */
#define LINK_BUCKETS 1024

/* Sidecars of an SQLite database, as bits of a keep mask. */
static const char *const sidecars[] = { "-wal", "-shm", "-journal" };

/* A copy of a tree entry that outlives its tree (the name, content and xattrs owned). */
struct entry_copy {
        struct stamp_entry e;
        uint8_t *buf;
};

struct job {
        int dfd;             /* borrowed: stays open until the queue drains */
        char *rel;           /* path relative to TARGET */
        struct entry_copy ec;
        int fd;              /* the file to fill, created by the walker (owned) */
        char tmp[64];        /* its temporary name, or "" if created under its own */
        unsigned sidecar_keep;
        struct job *next;
};

struct pdir {
        int fd;
        char *rel;
        struct entry_copy ec;
        bool is_root;
};

/* The first member restored of each content of a hardlink group. */
struct link {
        uint64_t id;
        uint64_t key; /* its stamp_entry_content_key() */
        char *rel;
        dev_t dev;
        ino_t ino;
        struct link *next;
};

struct dbnote {
        int dfd; /* owned */
        char *name;
        char *rel;
        unsigned sidecar_keep;
        int check;          /* 1 sound, 0 not, -errno, or 2: not checked yet */
        char message[256];
};

struct ctx {
        struct stamp_store *s;
        const struct stamp_restore_options *o;
        struct stamp_restore_stats *st;
        int root_fd;
        uint64_t store_dev, store_ino;
        bool is_root;
        bool dry;
        atomic_uint tmp_counter;

        pthread_mutex_t lock; /* error, stats, dbs, warnings; and the queue */
        pthread_cond_t work, idle, space;
        int error;
        char *err;
        size_t err_size;
        bool warned_owner;
        struct job *head, **tail;
        size_t queued, active;
        bool stop;
        pthread_t threads[8];
        unsigned nthreads;

        struct pdir *pdirs;
        size_t n_pdirs, cap_pdirs;
        struct link *links[LINK_BUCKETS];
        struct dbnote *dbs;
        size_t n_dbs, cap_dbs;
        struct timespec last_progress;
};

/*
 * Records the first error: "path: what: reason", and whether it is the
 * store's (data it could not give) rather than TARGET's. @r > 0: restore's
 * own refusal, which @fmt says all of (recorded as -EIO).
 */
static void vfail(struct ctx *c, bool store, int r, const char *rel, const char *fmt, va_list ap)
{
        char what[256];
        bool reason = r < 0;

        vsnprintf(what, sizeof(what), fmt, ap);
        pthread_mutex_lock(&c->lock);
        if (!c->error) {
                c->error = r < 0 ? r : -EIO;
                c->st->store_error = store;
                if (c->err_size)
                        snprintf(c->err, c->err_size, "%s: %s%s%s", rel && *rel ? rel : ".", what,
                                 reason ? ": " : "", reason ? strerror(-r) : "");
                c->st->error_path = strdup(rel && *rel ? rel : "."); /* NULL: only less detail */
        }
        pthread_mutex_unlock(&c->lock);
}

static void fail(struct ctx *c, int r, const char *rel, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void fail(struct ctx *c, int r, const char *rel, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vfail(c, false, r, rel, fmt, ap);
        va_end(ap);
}

static void fail_store(struct ctx *c, int r, const char *rel, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void fail_store(struct ctx *c, int r, const char *rel, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vfail(c, true, r, rel, fmt, ap);
        va_end(ap);
}

static bool failed(struct ctx *c)
{
        bool f;

        pthread_mutex_lock(&c->lock);
        f = c->error != 0;
        pthread_mutex_unlock(&c->lock);
        return f;
}

static void warn(struct ctx *c, const char *rel, const char *what)
{
        pthread_mutex_lock(&c->lock);
        c->st->warnings++;
        if (c->o->warning)
                c->o->warning(rel && *rel ? rel : ".", what, c->o->userdata);
        pthread_mutex_unlock(&c->lock);
}

static void event(struct ctx *c, enum stamp_restore_action a, const char *rel)
{
        if (!c->o->event)
                return;
        pthread_mutex_lock(&c->lock);
        c->o->event(a, rel && *rel ? rel : ".", c->o->userdata);
        pthread_mutex_unlock(&c->lock);
}

static void count(struct ctx *c, uint64_t *field, uint64_t n)
{
        pthread_mutex_lock(&c->lock);
        *field += n;
        pthread_mutex_unlock(&c->lock);
}

static void progress(struct ctx *c, const char *rel)
{
        struct timespec now;

        if (!c->o->progress)
                return;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - c->last_progress.tv_sec) * 1000000000L +
                    (now.tv_nsec - c->last_progress.tv_nsec) < 100000000L)
                return;
        c->last_progress = now;
        pthread_mutex_lock(&c->lock);
        c->o->progress(c->st, rel, c->o->userdata);
        pthread_mutex_unlock(&c->lock);
}

static char *join(const char *parent, const char *name, size_t len)
{
        size_t p = strlen(parent);
        char *s = malloc(p + 1 + len + 1);

        if (!s)
                return NULL;
        memcpy(s, parent, p);
        if (p)
                s[p++] = '/';
        memcpy(s + p, name, len);
        s[p + len] = 0;
        return s;
}

/* A name from the snapshot that is safe to use in a directory. */
static bool safe_name(const char *name, size_t len)
{
        if (!stamp_name_valid(name, len))
                return false;
        return !(len == 1 && name[0] == '.') && !(len == 2 && name[0] == '.' && name[1] == '.') &&
               !memchr(name, '/', len) && !memchr(name, 0, len);
}

static int entry_copy(struct entry_copy *ec, const struct stamp_entry *e)
{
        size_t n = e->name_len + 1 + e->target_len + 1 + e->xattrs_len + e->content_len;
        uint8_t *p;

        ec->e = *e;
        ec->buf = p = malloc(n ? n : 1);
        if (!p)
                return -ENOMEM;
        memcpy(p, e->name, e->name_len);
        p[e->name_len] = 0;
        ec->e.name = (const char *)p;
        p += e->name_len + 1;
        if (e->target) {
                memcpy(p, e->target, e->target_len);
                ec->e.target = (const char *)p;
        }
        p[e->target_len] = 0;
        p += e->target_len + 1;
        if (e->xattrs_len)
                memcpy(p, e->xattrs, e->xattrs_len);
        ec->e.xattrs = p;
        p += e->xattrs_len;
        if (e->content_len)
                memcpy(p, e->content, e->content_len);
        ec->e.content = p;
        return 0;
}

static void entry_copy_release(struct entry_copy *ec)
{
        free(ec->buf);
        ec->buf = NULL;
}

static void tmp_name(struct ctx *c, char buf[64])
{
        snprintf(buf, 64, ".stamp-restore-%d-%u", (int)getpid(), atomic_fetch_add(&c->tmp_counter, 1));
}

/* Metadata. */

static int64_t stat_mtime_ns(const struct stat *st)
{
        return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static void owner_failed(struct ctx *c, const char *rel, int r)
{
        if (r == -EPERM && !c->is_root) {
                pthread_mutex_lock(&c->lock);
                bool first = !c->warned_owner;
                c->warned_owner = true;
                pthread_mutex_unlock(&c->lock);
                if (first)
                        warn(c, rel, "owners cannot be restored without root; files keep yours");
                return;
        }
        warn(c, rel, "cannot set the owner");
}

/*
 * Makes the xattrs of an inode equal to the entry's. @fd >= 0 works on
 * the fd; otherwise on @path (a /proc/self/fd path, never following the
 * final symlink).
 */
static void sync_xattrs(struct ctx *c, int fd, const char *path, const struct stamp_entry *e,
                        const char *rel)
{
        const uint8_t *p = e->xattrs, *end = e->xattrs + e->xattrs_len;
        char list[65536];
        ssize_t n;

        n = fd >= 0 ? flistxattr(fd, list, sizeof(list)) : llistxattr(path, list, sizeof(list));
        if (n < 0)
                n = 0; /* no xattr support here: nothing to remove */
        for (ssize_t i = 0; i < n;) {
                const char *name = list + i;
                size_t len = strlen(name);
                bool wanted = false;
                const uint8_t *q = e->xattrs;
                const char *xn;
                size_t xnl, xvl;
                const uint8_t *xv;

                i += (ssize_t)len + 1;
                if (strcmp(name, "security.selinux") == 0)
                        continue; /* the system's policy owns this label */
                while (stamp_xattr_next(&q, end, &xn, &xnl, &xv, &xvl) > 0)
                        if (xnl == len && memcmp(xn, name, len) == 0) {
                                wanted = true;
                                break;
                        }
                if (!wanted && (fd >= 0 ? fremovexattr(fd, name) : lremovexattr(path, name)) < 0)
                        warn(c, rel, "cannot remove an extended attribute not in the snapshot");
        }
        for (;;) {
                const char *xn;
                size_t xnl, xvl;
                const uint8_t *xv;
                char name[256];
                int r = stamp_xattr_next(&p, end, &xn, &xnl, &xv, &xvl);
                if (r <= 0)
                        break;
                if (xnl >= sizeof(name))
                        continue;
                memcpy(name, xn, xnl);
                name[xnl] = 0;
                if ((fd >= 0 ? fsetxattr(fd, name, xv, xvl, 0) : lsetxattr(path, name, xv, xvl, 0)) < 0) {
                        char what[300];
                        snprintf(what, sizeof(what), "cannot set extended attribute %s: %s", name,
                                 strerror(errno));
                        warn(c, rel, what);
                }
        }
}

/* Owner, xattrs, mode, mtime of an open regular file or directory. */
static int meta_fd(struct ctx *c, int fd, const struct stamp_entry *e, const char *rel)
{
        struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT },
                                  { .tv_sec = e->mtime_ns / 1000000000,
                                    .tv_nsec = e->mtime_ns % 1000000000 } };

        if (ts[1].tv_nsec < 0) {
                ts[1].tv_sec--;
                ts[1].tv_nsec += 1000000000;
        }
        if (fchown(fd, e->uid, e->gid) < 0)
                owner_failed(c, rel, -errno);
        sync_xattrs(c, fd, NULL, e, rel);
        if (fchmod(fd, e->mode & 07777) < 0) {
                fail(c, -errno, rel, "cannot set the mode");
                return -EIO;
        }
        if (futimens(fd, ts) < 0) {
                fail(c, -errno, rel, "cannot set the modification time");
                return -EIO;
        }
        return 0;
}

/* The same for a symlink or special file, by name in @dfd (never followed). */
static int meta_at(struct ctx *c, int dfd, const char *name, const struct stamp_entry *e,
                   const char *rel)
{
        struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT },
                                  { .tv_sec = e->mtime_ns / 1000000000,
                                    .tv_nsec = e->mtime_ns % 1000000000 } };
        char path[128];

        if (ts[1].tv_nsec < 0) {
                ts[1].tv_sec--;
                ts[1].tv_nsec += 1000000000;
        }
        if (fchownat(dfd, name, e->uid, e->gid, AT_SYMLINK_NOFOLLOW) < 0)
                owner_failed(c, rel, -errno);
        snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", dfd, name);
        if (e->xattr_count && strlen(name) < 100)
                sync_xattrs(c, -1, path, e, rel);
        if (e->type != STAMP_T_LNK && fchmodat(dfd, name, e->mode & 07777, 0) < 0) {
                fail(c, -errno, rel, "cannot set the mode");
                return -EIO;
        }
        if (utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0) {
                fail(c, -errno, rel, "cannot set the modification time");
                return -EIO;
        }
        return 0;
}

/* True if what is on disk already has the entry's metadata (xattrs compared too). */
static bool meta_equal(int fd, const struct stat *st, const struct stamp_entry *e)
{
        char list[4096];
        ssize_t n;

        if (st->st_uid != e->uid || st->st_gid != e->gid ||
            (st->st_mode & 07777) != (e->mode & 07777) || stat_mtime_ns(st) != e->mtime_ns)
                return false;
        n = flistxattr(fd, list, sizeof(list));
        if (n < 0)
                return e->xattr_count == 0;
        /* Any xattr on either side: let sync_xattrs decide (rare). */
        for (ssize_t i = 0; i < n; i += (ssize_t)strlen(list + i) + 1)
                if (strcmp(list + i, "security.selinux") != 0)
                        return false;
        return e->xattr_count == 0;
}

/* Removal. */

static int remove_at(struct ctx *c, int dfd, const char *name, const char *rel, bool top);

static int list_names(int fd, char ***ret, size_t *ret_n)
{
        int dfd = dup(fd);
        DIR *d;
        struct dirent *de;
        char **v = NULL;
        size_t n = 0, cap = 0;

        if (dfd < 0)
                return -errno;
        d = fdopendir(dfd);
        if (!d) {
                int r = -errno;
                close(dfd);
                return r;
        }
        rewinddir(d);
        errno = 0;
        while ((de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (n == cap) {
                        char **nv = realloc(v, (cap = cap ? cap * 2 : 64) * sizeof(char *));
                        if (!nv)
                                goto nomem;
                        v = nv;
                }
                if (!(v[n] = strdup(de->d_name)))
                        goto nomem;
                n++;
        }
        closedir(d);
        *ret = v;
        *ret_n = n;
        return 0;
nomem:
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
        closedir(d);
        return -ENOMEM;
}

static void free_names(char **v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

/* Removes everything inside the directory open at @fd. */
static int empty_dir(struct ctx *c, int fd, const char *rel)
{
        char **names;
        size_t n;
        int r;

        r = list_names(fd, &names, &n);
        if (r < 0) {
                fail(c, r, rel, "cannot list the directory");
                return r;
        }
        for (size_t i = 0; i < n && r == 0; i++) {
                char *sub = join(rel, names[i], strlen(names[i]));
                if (!sub)
                        r = -ENOMEM;
                else
                        r = remove_at(c, fd, names[i], sub, false);
                free(sub);
        }
        free_names(names, n);
        return r;
}

static bool is_store(struct ctx *c, const struct stat *st)
{
        return (uint64_t)st->st_dev == c->store_dev && (uint64_t)st->st_ino == c->store_ino;
}

/*
 * Removes the entry @name (recursively, never following a symlink). A mount
 * point cannot be removed: it is emptied and kept (returns 1 then).
 */
static int remove_at(struct ctx *c, int dfd, const char *name, const char *rel, bool top)
{
        struct stat st;
        int r;

        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT)
                        return 0;
                fail(c, -errno, rel, "cannot inspect");
                return -errno;
        }
        if (S_ISDIR(st.st_mode)) {
                _cleanup_close_ int fd = -1;
                if (is_store(c, &st)) {
                        fail(c, 1, rel, "this is the store itself; refusing to remove it");
                        return -ELOOP;
                }
                fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0) {
                        fail(c, -errno, rel, "cannot open the directory to remove it");
                        return -errno;
                }
                r = empty_dir(c, fd, rel);
                if (r < 0)
                        return r;
                if (c->dry) {
                        if (top)
                                event(c, STAMP_RESTORE_REMOVE, rel);
                        count(c, &c->st->files_removed, 1);
                        return 0;
                }
                if (unlinkat(dfd, name, AT_REMOVEDIR) < 0) {
                        if (errno == EBUSY) {
                                event(c, STAMP_RESTORE_KEEP_MOUNT, rel);
                                warn(c, rel, "a mount point not in the snapshot: emptied, not removed");
                                return 1;
                        }
                        fail(c, -errno, rel, "cannot remove the directory");
                        return -errno;
                }
        } else if (!c->dry && unlinkat(dfd, name, 0) < 0) {
                if (errno == EBUSY) {
                        warn(c, rel, "a mounted file not in the snapshot: kept");
                        return 1;
                }
                fail(c, -errno, rel, "cannot remove");
                return -errno;
        }
        if (top)
                event(c, STAMP_RESTORE_REMOVE, rel);
        count(c, &c->st->files_removed, 1);
        return 0;
}

/* Databases: noted when restored, checked at the end. */

static bool db_name(const char *name)
{
        static const char *const ext[] = { ".db", ".sqlite", ".sqlite3", ".db3" };
        size_t n = strlen(name);

        for (size_t i = 0; i < ARRAY_SIZE(ext); i++) {
                size_t k = strlen(ext[i]);
                if (n > k && strcasecmp(name + n - k, ext[i]) == 0)
                        return true;
        }
        return false;
}

/*
 * Whether a file left in place may be a database worth reading the header
 * of: a database name, captured as one, or with a sidecar beside it (in the
 * snapshot or on disk). Reading the first bytes of every unchanged file
 * would cost a cold read per file.
 */
static bool may_be_db(int dfd, const struct stamp_entry *e, unsigned keep)
{
        char side[STAMP_NAME_MAX + 16];
        struct stat st;

        if ((e->flags & STAMP_EF_SQLITE) || keep || db_name(e->name))
                return true;
        for (size_t i = 0; i < ARRAY_SIZE(sidecars); i++) {
                snprintf(side, sizeof(side), "%s%s", e->name, sidecars[i]);
                if (fstatat(dfd, side, &st, AT_SYMLINK_NOFOLLOW) == 0)
                        return true;
        }
        return false;
}

/* Which sidecars of @name the snapshot's directory @parent itself holds. */
static unsigned sidecar_keep(const struct stamp_tree *parent, const char *name)
{
        unsigned keep = 0;
        char buf[STAMP_NAME_MAX + 16];

        if (!parent)
                return 0;
        for (size_t i = 0; i < ARRAY_SIZE(sidecars); i++) {
                uint32_t idx;
                int n = snprintf(buf, sizeof(buf), "%s%s", name, sidecars[i]);
                if (n > 0 && (size_t)n < sizeof(buf) && stamp_tree_find(parent, buf, (size_t)n, &idx) > 0)
                        keep |= 1u << i;
        }
        return keep;
}

static int db_note(struct ctx *c, int dfd, const char *name, const char *rel, unsigned keep,
                   int check, const char *message)
{
        struct dbnote d = { .dfd = -1, .sidecar_keep = keep, .check = check };

        snprintf(d.message, sizeof(d.message), "%s", message ? message : "");
        int r = -ENOMEM;

        d.dfd = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
        d.name = strdup(name);
        d.rel = strdup(rel);
        pthread_mutex_lock(&c->lock);
        if (d.dfd >= 0 && d.name && d.rel) {
                if (c->n_dbs == c->cap_dbs) {
                        size_t cap = c->cap_dbs ? c->cap_dbs * 2 : 16;
                        struct dbnote *v = realloc(c->dbs, cap * sizeof(*v));
                        if (v) {
                                c->dbs = v;
                                c->cap_dbs = cap;
                        }
                }
                if (c->n_dbs < c->cap_dbs) {
                        c->dbs[c->n_dbs++] = d;
                        r = 0;
                }
        }
        pthread_mutex_unlock(&c->lock);
        if (r < 0) {
                if (d.dfd >= 0)
                        close(d.dfd);
                free(d.name);
                free(d.rel);
                fail(c, r, rel, "cannot note the database");
        }
        return r;
}

/* Notes @name if it is an SQLite database on disk. */
static int sqlite_check_fd(int fd, uint64_t size, char *msg, size_t msg_size);

/*
 * Notes @name if it is an SQLite database on disk. A file just written
 * (@head given) is checked here, on the writer thread, while other files
 * are still being written: PRAGMA integrity_check reads the main file
 * only (immutable), so stale sidecars do not change its verdict. A file
 * left in place is checked at the end.
 */
static int db_maybe(struct ctx *c, int dfd, const char *name, const char *rel,
                    const uint8_t *head, size_t head_len, unsigned keep, int fd)
{
        uint8_t buf[STAMP_SQLITE_MAGIC_LEN];
        char msg[256] = "";
        int check = 2;

        if (!head) {
                _cleanup_close_ int rfd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                ssize_t n;
                if (rfd < 0)
                        return 0;
                n = pread(rfd, buf, sizeof(buf), 0);
                head = buf;
                head_len = n > 0 ? (size_t)n : 0;
        }
        if (!stamp_is_sqlite_header(head, head_len))
                return 0;
        if (fd >= 0 && !c->dry && !c->o->no_db_check) {
                struct stat st;
                check = fstat(fd, &st) < 0 ? -errno
                                           : sqlite_check_fd(fd, (uint64_t)st.st_size, msg, sizeof(msg));
        }
        return db_note(c, dfd, name, rel, keep, check, msg);
}

static ssize_t fd_pread(void *userdata, void *buf, size_t len, uint64_t off)
{
        ssize_t n = pread(*(int *)userdata, buf, len, (off_t)off);
        return n < 0 ? -errno : n;
}

static int sqlite_check_fd(int fd, uint64_t size, char *msg, size_t msg_size)
{
        return stamp_sqlite_check(fd_pread, &fd, size, msg, msg_size);
}

int stamp_sqlite_check_file(int dirfd, const char *name, char *msg, size_t msg_size)
{
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;

        if (fd < 0 || fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        return sqlite_check_fd(fd, (uint64_t)st.st_size, msg, msg_size);
}

static int check_dbs(struct ctx *c)
{
        struct stamp_restore_stats *st = c->st;

        st->dbs_ok = true;
        if (!c->n_dbs)
                return 0;
        st->dbs = calloc(c->n_dbs, sizeof(*st->dbs));
        if (!st->dbs)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_dbs; i++) {
                struct dbnote *d = &c->dbs[i];
                struct stamp_restore_db *out = &st->dbs[st->n_dbs++];
                int r;

                out->path = TAKE_PTR(d->rel);
                for (size_t k = 0; k < ARRAY_SIZE(sidecars); k++) {
                        char side[STAMP_NAME_MAX + 16];
                        if (d->sidecar_keep & (1u << k))
                                continue;
                        snprintf(side, sizeof(side), "%s%s", d->name, sidecars[k]);
                        if (c->dry) {
                                if (faccessat(d->dfd, side, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
                                        out->sidecars_removed++;
                        } else if (unlinkat(d->dfd, side, 0) == 0) {
                                out->sidecars_removed++;
                        } else if (errno != ENOENT) {
                                snprintf(out->message, sizeof(out->message),
                                         "cannot remove its stale %s: %.60s", sidecars[k],
                                         strerror(errno));
                                out->integrity_ok = false;
                                st->dbs_ok = false;
                                continue;
                        }
                }
                if (c->dry || c->o->no_db_check) {
                        out->integrity_ok = true;
                        snprintf(out->message, sizeof(out->message), "%s",
                                 c->dry ? "not checked (dry run)" : "not checked");
                        continue;
                }
                if (d->check != 2) {
                        r = d->check;
                        snprintf(out->message, sizeof(out->message), "%s", d->message);
                } else {
                        r = stamp_sqlite_check_file(d->dfd, d->name, out->message,
                                                    sizeof(out->message));
                }
                if (r < 0)
                        snprintf(out->message, sizeof(out->message), "cannot be read: %s",
                                 strerror(-r));
                out->integrity_ok = r == 1;
                if (!out->integrity_ok)
                        st->dbs_ok = false;
        }
        return 0;
}

/* Writing files. */

static bool all_zero(const uint8_t *p, size_t n)
{
        return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
        while (n > 0) {
                ssize_t w = write(fd, p, n);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

/* Writes the entry's content into @fd; the first bytes go to @head. */
static int copy_content(struct ctx *c, int fd, const struct stamp_entry *e, const char *rel,
                        uint8_t *head, size_t *head_len)
{
        struct stamp_file *f = NULL;
        _cleanup_free_ uint8_t *buf = malloc(COPY_BUFFER);
        uint64_t off = 0;
        bool hole = false;
        int r;

        if (!buf)
                return -ENOMEM;
        if (e->size == 0 || (e->flags & STAMP_EF_UNREADABLE))
                return 0;
        r = stamp_file_open(c->s, e, NULL, &f);
        if (r < 0) {
                fail_store(c, r, rel, "cannot read the file from the store");
                return r;
        }
        while (off < e->size) {
                ssize_t n = stamp_file_pread(f, buf, COPY_BUFFER, off);
                if (n <= 0) {
                        r = n < 0 ? (int)n : -EBADMSG;
                        fail_store(c, r, rel, "cannot read the file from the store at offset %llu",
                             (unsigned long long)off);
                        break;
                }
                if (off == 0) {
                        *head_len = (size_t)n < STAMP_SQLITE_MAGIC_LEN ? (size_t)n
                                                                         : STAMP_SQLITE_MAGIC_LEN;
                        memcpy(head, buf, *head_len);
                }
                /* Leave holes where whole 4 KiB blocks are zero (sparse files stay sparse). */
                for (size_t k = 0; k < (size_t)n;) {
                        size_t m = (size_t)n - k < 4096 ? (size_t)n - k : 4096;
                        size_t run = m;
                        bool z = m == 4096 && all_zero(buf + k, m);
                        if (!z) {
                                while (k + run < (size_t)n && run < (1u << 20)) {
                                        size_t q = (size_t)n - k - run < 4096 ? (size_t)n - k - run : 4096;
                                        if (q == 4096 && all_zero(buf + k + run, q))
                                                break;
                                        run += q;
                                }
                                if (hole && lseek(fd, (off_t)(off + k), SEEK_SET) < 0) {
                                        r = -errno;
                                        break;
                                }
                                hole = false;
                                r = write_all(fd, buf + k, run);
                                if (r < 0)
                                        break;
                        } else {
                                hole = true;
                        }
                        k += run;
                }
                if (r < 0) {
                        fail(c, r, rel, "cannot write");
                        break;
                }
                off += (uint64_t)n;
        }
        stamp_file_free(f);
        if (r == 0 && ftruncate(fd, (off_t)e->size) < 0) {
                r = -errno;
                fail(c, r, rel, "cannot set the size");
        }
        if (r == 0)
                count(c, &c->st->bytes_written, e->size);
        return r;
}

/* Rewrites a mounted file in place (a bind-mounted single file cannot be replaced). */
static int rewrite_in_place(struct ctx *c, int dfd, const char *name, int src, const char *rel,
                            const struct stamp_entry *e)
{
        _cleanup_close_ int fd = openat(dfd, name, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_free_ uint8_t *buf = malloc(COPY_BUFFER);
        off_t off = 0;

        if (fd < 0 || !buf) {
                fail(c, fd < 0 ? -errno : -ENOMEM, rel, "cannot open the mounted file to rewrite it");
                return -EIO;
        }
        for (;;) {
                ssize_t n = pread(src, buf, COPY_BUFFER, off);
                int r;
                if (n < 0) {
                        fail(c, -errno, rel, "cannot read back the temporary copy");
                        return -EIO;
                }
                if (n == 0)
                        break;
                r = write_all(fd, buf, (size_t)n);
                if (r < 0) {
                        fail(c, r, rel, "cannot rewrite the mounted file");
                        return r;
                }
                off += n;
        }
        return meta_fd(c, fd, e, rel);
}

/*
 * Writing a regular file has two halves. create_file() (on the walking
 * thread, so that creations in one directory do not contend for its lock)
 * makes the inode: a file that replaces one is created under a temporary
 * name beside it, to be renamed over it once whole, so the old version
 * survives a crash; a new name is created directly (a crash leaves a file
 * whose time differs from the snapshot's, which the next run rewrites).
 * fill_file() (on a writer thread) writes the content and metadata and
 * renames. @tmp is "" for a direct creation.
 */
static int create_file(struct ctx *c, int dfd, const struct stamp_entry *e, const char *rel,
                       bool exists, char tmp[64])
{
        int fd;

        tmp[0] = 0;
        if (!exists) {
                fd = openat(dfd, e->name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd >= 0)
                        return fd;
                if (errno != EEXIST) {
                        fail(c, -errno, rel, "cannot create");
                        return -errno;
                }
        }
        tmp_name(c, tmp);
        fd = openat(dfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
                fail(c, -errno, rel, "cannot create a temporary file beside it");
                return -errno;
        }
        return fd;
}

/* Takes ownership of @fd. */
static int fill_file(struct ctx *c, int dfd, int fd, const char *tmp, const struct stamp_entry *e,
                     const char *rel, unsigned keep)
{
        uint8_t head[STAMP_SQLITE_MAGIC_LEN];
        size_t head_len = 0;
        int r;

        if (failed(c)) {
                r = -ECANCELED;
        } else {
                /* One index read transaction per file: no locking per chunk lookup. */
                struct stamp_index *ix = NULL;
                bool txn = stamp_store_index(c->s, &ix) == 0 && stamp_index_begin_read(ix) == 0;
                r = copy_content(c, fd, e, rel, head, &head_len);
                if (txn)
                        stamp_index_end_read(ix);
                /* Start writeback now, so the final syncfs() finds little left to do. */
                if (r == 0 && e->size >= 65536)
                        (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        }
        if (r == 0)
                r = meta_fd(c, fd, e, rel);
        if (r == 0 && tmp[0] && renameat(dfd, tmp, dfd, e->name) < 0) {
                if (errno == EBUSY)
                        r = rewrite_in_place(c, dfd, e->name, fd, rel, e);
                else {
                        r = -errno;
                        fail(c, r, rel, "cannot move the new file into place");
                }
                (void)unlinkat(dfd, tmp, 0);
        } else if (r < 0) {
                (void)unlinkat(dfd, tmp[0] ? tmp : e->name, 0);
        }
        if (r < 0) {
                close(fd);
                return r;
        }
        count(c, &c->st->files_restored, 1);
        event(c, STAMP_RESTORE_WRITE, rel);
        r = db_maybe(c, dfd, e->name, rel, head, head_len, keep, fd);
        close(fd);
        return r;
}

static int write_file(struct ctx *c, int dfd, const struct stamp_entry *e, const char *rel,
                      unsigned keep, bool exists)
{
        char tmp[64];
        int fd = create_file(c, dfd, e, rel, exists, tmp);

        return fd < 0 ? fd : fill_file(c, dfd, fd, tmp, e, rel, keep);
}

/* The writer pool. */

static void job_free(struct job *j)
{
        if (!j)
                return;
        if (j->fd >= 0)
                close(j->fd);
        free(j->rel);
        entry_copy_release(&j->ec);
        free(j);
}

static void *writer_main(void *arg)
{
        struct ctx *c = arg;

        pthread_mutex_lock(&c->lock);
        for (;;) {
                struct job *j;
                while (!c->head && !c->stop)
                        pthread_cond_wait(&c->work, &c->lock);
                if (!c->head)
                        break;
                j = c->head;
                c->head = j->next;
                if (!c->head)
                        c->tail = &c->head;
                c->queued--;
                c->active++;
                pthread_cond_signal(&c->space);
                pthread_mutex_unlock(&c->lock);
                (void)fill_file(c, j->dfd, TAKE_FD(j->fd), j->tmp, &j->ec.e, j->rel,
                                j->sidecar_keep);
                job_free(j);
                pthread_mutex_lock(&c->lock);
                c->active--;
                if (!c->head && !c->active)
                        pthread_cond_broadcast(&c->idle);
        }
        pthread_mutex_unlock(&c->lock);
        return NULL;
}

static int enqueue(struct ctx *c, int dfd, const struct stamp_entry *e, const char *rel,
                   unsigned keep, bool exists)
{
        struct job *j;
        int r;

        if (!c->nthreads)
                return write_file(c, dfd, e, rel, keep, exists);
        j = calloc(1, sizeof(*j));
        if (!j)
                return -ENOMEM;
        j->dfd = dfd;
        j->sidecar_keep = keep;
        j->rel = strdup(rel);
        r = entry_copy(&j->ec, e);
        j->fd = -1;
        if (r < 0 || !j->rel) {
                job_free(j);
                return -ENOMEM;
        }
        j->fd = create_file(c, dfd, &j->ec.e, rel, exists, j->tmp);
        if (j->fd < 0) {
                r = j->fd;
                job_free(j);
                return r;
        }
        pthread_mutex_lock(&c->lock);
        while (c->queued >= QUEUE_MAX)
                pthread_cond_wait(&c->space, &c->lock);
        *c->tail = j;
        c->tail = &j->next;
        c->queued++;
        pthread_cond_signal(&c->work);
        pthread_mutex_unlock(&c->lock);
        return 0;
}

static void drain(struct ctx *c)
{
        pthread_mutex_lock(&c->lock);
        while (c->head || c->active)
                pthread_cond_wait(&c->idle, &c->lock);
        pthread_mutex_unlock(&c->lock);
}

/* Directories whose metadata is set once everything inside is written. */

static int apply_pending(struct ctx *c)
{
        int r = 0;

        drain(c);
        for (size_t i = 0; i < c->n_pdirs; i++) {
                struct pdir *p = &c->pdirs[i];
                if (r == 0 && !failed(c) && !c->dry)
                        r = meta_fd(c, p->fd, &p->ec.e, p->rel);
                if (!p->is_root)
                        close(p->fd);
                free(p->rel);
                entry_copy_release(&p->ec);
        }
        c->n_pdirs = 0;
        return r;
}

/* Takes ownership of @fd. */
static int pending_add(struct ctx *c, int fd, const struct stamp_entry *e, const char *rel,
                       bool is_root)
{
        struct pdir p = { .fd = fd, .is_root = is_root };

        if (c->n_pdirs == c->cap_pdirs) {
                size_t cap = c->cap_pdirs ? c->cap_pdirs * 2 : 64;
                struct pdir *v = realloc(c->pdirs, cap * sizeof(*v));
                if (!v)
                        goto nomem;
                c->pdirs = v;
                c->cap_pdirs = cap;
        }
        p.rel = strdup(rel);
        if (!p.rel || entry_copy(&p.ec, e) < 0)
                goto nomem;
        c->pdirs[c->n_pdirs++] = p;
        if (c->n_pdirs >= PENDING_DIRS_MAX)
                return apply_pending(c);
        return 0;
nomem:
        free(p.rel);
        if (!is_root)
                close(fd);
        fail(c, -ENOMEM, rel, "out of memory");
        return -ENOMEM;
}

/* Hardlinks. */

/* The first member of @e's group restored with @e's content, if any. */
static struct link *link_find(struct ctx *c, const struct stamp_entry *e)
{
        uint64_t key = stamp_entry_content_key(e);

        for (struct link *l = c->links[e->link_id % LINK_BUCKETS]; l; l = l->next)
                if (l->id == e->link_id && l->key == key)
                        return l;
        return NULL;
}

/* Whether a member of group @id was restored already (then with other content). */
static bool link_group_seen(struct ctx *c, uint64_t id)
{
        for (struct link *l = c->links[id % LINK_BUCKETS]; l; l = l->next)
                if (l->id == id)
                        return true;
        return false;
}

static int link_add(struct ctx *c, const struct stamp_entry *e, const char *rel, int dfd)
{
        uint64_t id = e->link_id;
        const char *name = e->name;
        struct link *l = calloc(1, sizeof(*l));
        struct stat st;

        if (!l || !(l->rel = strdup(rel))) {
                free(l);
                return -ENOMEM;
        }
        if (!c->dry && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                l->dev = st.st_dev;
                l->ino = st.st_ino;
        }
        l->id = id;
        l->key = stamp_entry_content_key(e);
        l->next = c->links[id % LINK_BUCKETS];
        c->links[id % LINK_BUCKETS] = l;
        return 0;
}

/* Opens the directory holding @rel (relative to TARGET), component by component. */
static int open_parent(struct ctx *c, const char *rel, const char **ret_base)
{
        int fd = fcntl(c->root_fd, F_DUPFD_CLOEXEC, 3);
        const char *p = rel, *slash;

        while (fd >= 0 && (slash = strchr(p, '/'))) {
                char comp[STAMP_NAME_MAX + 1];
                size_t n = (size_t)(slash - p);
                int next;
                if (n == 0 || n > STAMP_NAME_MAX) {
                        close(fd);
                        return -EINVAL;
                }
                memcpy(comp, p, n);
                comp[n] = 0;
                next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                close(fd);
                fd = next;
                p = slash + 1;
        }
        if (fd < 0)
                return -errno;
        *ret_base = p;
        return fd;
}

/* A later member of a hardlink group: link it to the first one restored. */
static int restore_link(struct ctx *c, int dfd, const struct stamp_entry *e, const char *rel,
                        const struct link *l, const struct stat *have)
{
        const char *base = NULL;
        char tmp[64];
        int pfd, r = 0;

        if (have && have->st_dev == l->dev && have->st_ino == l->ino)
                return 0; /* already the same inode */
        count(c, &c->st->others_restored, 1);
        event(c, STAMP_RESTORE_WRITE, rel);
        if (c->dry)
                return 0;
        pfd = open_parent(c, l->rel, &base);
        if (pfd < 0) {
                fail(c, pfd, rel, "cannot open the directory of its hardlink '%s'", l->rel);
                return pfd;
        }
        tmp_name(c, tmp);
        if (linkat(pfd, base, dfd, tmp, 0) < 0) {
                r = -errno;
                fail(c, r, rel, "cannot hardlink to '%s'", l->rel);
        } else if (renameat(dfd, tmp, dfd, e->name) < 0) {
                r = -errno;
                if (r == -EBUSY) {
                        /* A bind-mounted file: it keeps its inode, rewritten in place. */
                        int src = openat(pfd, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                        r = src < 0 ? -errno : rewrite_in_place(c, dfd, e->name, src, rel, e);
                        if (src < 0)
                                fail(c, r, rel, "cannot open its hardlink '%s'", l->rel);
                        else
                                close(src);
                        if (r == 0)
                                warn(c, rel, "a mounted file: rewritten in place, so it is a "
                                             "copy, not a hardlink, of its group's first name");
                } else {
                        fail(c, r, rel, "cannot move the hardlink into place");
                }
                (void)unlinkat(dfd, tmp, 0);
        }
        close(pfd);
        return r;
}

/* Symlinks, devices, fifos, sockets: made under a temporary name, then renamed. */
static int restore_special(struct ctx *c, int dfd, const struct stamp_entry *e, const char *rel)
{
        char tmp[64];
        mode_t type;
        int r = 0;

        count(c, &c->st->others_restored, 1);
        event(c, STAMP_RESTORE_WRITE, rel);
        if (c->dry)
                return 0;
        tmp_name(c, tmp);
        switch (e->type) {
        case STAMP_T_LNK: {
                char target[STAMP_TARGET_MAX + 1];
                if (e->target_len > STAMP_TARGET_MAX) {
                        fail(c, -EBADMSG, rel, "symlink target too long");
                        return -EBADMSG;
                }
                memcpy(target, e->target, e->target_len);
                target[e->target_len] = 0;
                if (symlinkat(target, dfd, tmp) < 0)
                        r = -errno;
                break;
        }
        default:
                type = e->type == STAMP_T_CHR ? S_IFCHR
                       : e->type == STAMP_T_BLK ? S_IFBLK
                       : e->type == STAMP_T_FIFO ? S_IFIFO
                                                 : S_IFSOCK;
                if (mknodat(dfd, tmp, type | 0600, (dev_t)e->rdev) < 0)
                        r = -errno;
                if (r == -EPERM && !c->is_root && (type == S_IFCHR || type == S_IFBLK)) {
                        warn(c, rel, "device nodes can only be created by root: skipped");
                        return 0;
                }
                break;
        }
        if (r < 0) {
                fail(c, r, rel, "cannot create");
                return r;
        }
        r = meta_at(c, dfd, tmp, e, rel);
        if (r == 0 && renameat(dfd, tmp, dfd, e->name) < 0) {
                r = -errno;
                fail(c, r, rel, errno == EBUSY ? "a mount point is in the way" : "cannot move into place");
        }
        if (r < 0)
                (void)unlinkat(dfd, tmp, 0);
        return r;
}

static bool special_equal(int dfd, const struct stamp_entry *e, const struct stat *st)
{
        switch (e->type) {
        case STAMP_T_LNK: {
                char buf[STAMP_TARGET_MAX + 1];
                ssize_t n;
                if (!S_ISLNK(st->st_mode))
                        return false;
                n = readlinkat(dfd, e->name, buf, sizeof(buf));
                return n >= 0 && (size_t)n == e->target_len && memcmp(buf, e->target, (size_t)n) == 0;
        }
        case STAMP_T_CHR:
                return S_ISCHR(st->st_mode) && st->st_rdev == (dev_t)e->rdev;
        case STAMP_T_BLK:
                return S_ISBLK(st->st_mode) && st->st_rdev == (dev_t)e->rdev;
        case STAMP_T_FIFO:
                return S_ISFIFO(st->st_mode);
        case STAMP_T_SOCK:
                return S_ISSOCK(st->st_mode);
        }
        return false;
}

/* The walk. */

static int sync_dir(struct ctx *c, int dfd, const struct stamp_id *id, const char *rel, int depth);

/*
 * Makes the entry @e (of snapshot directory @parent) exist in @dfd, which is
 * -1 in a dry run when the directory does not exist yet.
 */
static int sync_entry(struct ctx *c, int dfd, const struct stamp_entry *e,
                      const struct stamp_tree *parent, const char *parent_rel, int depth)
{
        _cleanup_free_ char *rel = NULL;
        char name[STAMP_NAME_MAX + 1];
        struct stamp_entry le;
        struct stat hs;
        bool have = false, group, split = false;
        int r;

        if (!safe_name(e->name, e->name_len) || e->name_len > STAMP_NAME_MAX) {
                fail(c, -EBADMSG, parent_rel, "the snapshot holds an unsafe name; refusing");
                return -EBADMSG;
        }
        /* Entry names borrow the tree and are not NUL-terminated: use a copy. */
        memcpy(name, e->name, e->name_len);
        name[e->name_len] = 0;
        le = *e;
        le.name = name;
        e = &le;
        rel = join(parent_rel, e->name, e->name_len);
        if (!rel)
                return -ENOMEM;
        progress(c, rel);
        if (dfd >= 0) {
                if (fstatat(dfd, e->name, &hs, AT_SYMLINK_NOFOLLOW) == 0)
                        have = true;
                else if (errno != ENOENT) {
                        fail(c, -errno, rel, "cannot inspect");
                        return -errno;
                }
        }
        /* Something of another kind in the way: remove it first. */
        if (have && (S_ISDIR(hs.st_mode) != (e->type == STAMP_T_DIR))) {
                r = remove_at(c, dfd, e->name, rel, true);
                if (r < 0)
                        return r;
                if (r > 0) {
                        fail(c, -EBUSY, rel, "a mount point in TARGET where the snapshot has a %s",
                             e->type == STAMP_T_DIR ? "directory" : "file");
                        return -EBUSY;
                }
                have = false;
        }
        if (e->type == STAMP_T_DIR) {
                int sub = -1;
                if (have && (e->flags & STAMP_EF_UNREADABLE)) {
                        /* Its listing failed: the snapshot does not know what it held. */
                        warn(c, rel, "could not be listed when the snapshot was taken (stored "
                                     "empty): the directory in TARGET is kept as it is");
                        return 0;
                }
                if (e->flags & STAMP_EF_UNREADABLE)
                        warn(c, rel, "could not be listed when the snapshot was taken: "
                                     "restored empty");
                if (!have) {
                        count(c, &c->st->dirs_created, 1);
                        event(c, STAMP_RESTORE_MKDIR, rel);
                        if (!c->dry && mkdirat(dfd, e->name, 0700) < 0) {
                                fail(c, -errno, rel, "cannot create the directory");
                                return -errno;
                        }
                }
                if (!c->dry || have) {
                        struct stat st;
                        sub = openat(dfd, e->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub < 0) {
                                fail(c, -errno, rel, "cannot open the directory");
                                return -errno;
                        }
                        if (fstat(sub, &st) == 0 && is_store(c, &st)) {
                                close(sub);
                                fail(c, 1, rel, "this is the store itself; refusing to restore over it");
                                return -ELOOP;
                        }
                }
                r = sync_dir(c, sub, &e->subtree, rel, depth + 1);
                if (r < 0) {
                        if (sub >= 0)
                                close(sub);
                        return r;
                }
                if (sub < 0)
                        return 0;
                if (c->dry) {
                        close(sub);
                        return 0;
                }
                return pending_add(c, sub, e, rel, false);
        }
        group = e->link_id && e->nlink > 1;
        if (e->type == STAMP_T_REG && (e->flags & STAMP_EF_UNREADABLE)) {
                /*
                 * Stored empty: the snapshot does not know the content. What
                 * TARGET holds stays, even as a later name of a group (never
                 * replaced by a link to an empty stand-in).
                 */
                if (have && S_ISREG(hs.st_mode)) {
                        warn(c, rel, "could not be read when the snapshot was taken (stored "
                                     "empty): the file in TARGET is kept as it is");
                        count(c, &c->st->files_kept, 1);
                        return group && !link_find(c, e) ? link_add(c, e, rel, dfd) : 0;
                }
                warn(c, rel, "could not be read when the snapshot was taken: restored empty");
        }
        if (group) {
                /*
                 * A later member of a hardlink group (any type): linked to the
                 * first one with the same content. Members with other content
                 * (stamp_entry_content_key) are other files.
                 */
                struct link *l = link_find(c, e);
                if (l)
                        return restore_link(c, dfd, e, rel, l, have ? &hs : NULL);
                /*
                 * The first of other content than a member met before: never
                 * left in place, its name may still be that member's inode
                 * (a target where a restore before linked them all).
                 */
                split = link_group_seen(c, e->link_id);
        }
        if (e->type == STAMP_T_REG) {
                unsigned keep = sidecar_keep(parent, e->name);
                if (have && S_ISREG(hs.st_mode) && !c->o->checksum && !split &&
                    !(e->flags & (STAMP_EF_SQLITE | STAMP_EF_CHANGED)) &&
                    (uint64_t)hs.st_size == e->size && stat_mtime_ns(&hs) == e->mtime_ns &&
                    (hs.st_nlink == 1 || (group && hs.st_nlink == e->nlink))) {
                        /* Same size and time: left in place; metadata made equal. */
                        _cleanup_close_ int fd = openat(dfd, e->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                        if (fd < 0) {
                                fail(c, -errno, rel, "cannot open");
                                return -errno;
                        }
                        count(c, &c->st->files_kept, 1);
                        if (!meta_equal(fd, &hs, e)) {
                                count(c, &c->st->meta_updated, 1);
                                event(c, STAMP_RESTORE_META, rel);
                                if (!c->dry && meta_fd(c, fd, e, rel) < 0)
                                        return -EIO;
                        }
                        r = 0;
                        if (hs.st_size >= 512 && may_be_db(dfd, e, keep))
                                r = db_maybe(c, dfd, e->name, rel, NULL, 0, keep, -1);
                        if (r == 0 && group)
                                r = link_add(c, e, rel, dfd);
                        return r;
                }
                if (c->dry) {
                        count(c, &c->st->files_restored, 1);
                        count(c, &c->st->bytes_written, e->size);
                        event(c, STAMP_RESTORE_WRITE, rel);
                        return group ? link_add(c, e, rel, dfd) : 0;
                }
                if (group) {
                        /* Written here, not by the pool: later members link to it. */
                        r = write_file(c, dfd, e, rel, keep, have);
                        return r < 0 ? r : link_add(c, e, rel, dfd);
                }
                return enqueue(c, dfd, e, rel, keep, have);
        }
        if (have && special_equal(dfd, e, &hs) &&
            (hs.st_nlink == 1 || (group && hs.st_nlink == e->nlink))) {
                r = 0;
                if ((e->type != STAMP_T_LNK && (hs.st_mode & 07777) != (e->mode & 07777)) ||
                    hs.st_uid != e->uid || hs.st_gid != e->gid ||
                    stat_mtime_ns(&hs) != e->mtime_ns) {
                        count(c, &c->st->meta_updated, 1);
                        event(c, STAMP_RESTORE_META, rel);
                        r = c->dry ? 0 : meta_at(c, dfd, e->name, e, rel);
                }
        } else {
                r = restore_special(c, dfd, e, rel);
        }
        if (r == 0 && group)
                r = link_add(c, e, rel, dfd);
        return r;
}

static int sync_dir(struct ctx *c, int dfd, const struct stamp_id *id, const char *rel, int depth)
{
        struct stamp_tree_obj t;
        int r;

        if (depth > 4096) {
                fail(c, 1, rel, "directories nested too deeply");
                return -ELOOP;
        }
        r = stamp_tree_load(c->s, id, &t);
        if (r < 0) {
                fail_store(c, r, rel, "cannot read the directory from the store");
                return r;
        }
        /* Entries TARGET has and the snapshot does not: removed. */
        if (dfd >= 0) {
                char **names;
                size_t n;
                r = list_names(dfd, &names, &n);
                if (r < 0) {
                        fail(c, r, rel, "cannot list the directory");
                        stamp_tree_obj_release(&t);
                        return r;
                }
                for (size_t i = 0; i < n && r >= 0; i++) {
                        uint32_t idx;
                        char *sub;
                        if (stamp_tree_find(&t.t, names[i], strlen(names[i]), &idx) > 0)
                                continue;
                        sub = join(rel, names[i], strlen(names[i]));
                        r = sub ? remove_at(c, dfd, names[i], sub, true) : -ENOMEM;
                        free(sub);
                }
                free_names(names, n);
                if (r < 0) {
                        stamp_tree_obj_release(&t);
                        return r;
                }
        }
        for (uint32_t i = 0; i < t.t.count && r >= 0; i++) {
                struct stamp_entry e;
                r = stamp_tree_entry(&t.t, i, &e);
                if (r < 0) {
                        fail(c, r, rel, "a directory entry in the store does not decode");
                        break;
                }
                r = sync_entry(c, dfd, &e, &t.t, rel, depth);
                if (r >= 0 && failed(c))
                        r = -EIO;
        }
        stamp_tree_obj_release(&t);
        return r;
}

/* The root's own metadata comes from the record. */
static void root_entry(const struct stamp_record *rec, struct stamp_entry *e)
{
        memset(e, 0, sizeof(*e));
        e->name = ".";
        e->name_len = 1;
        e->type = STAMP_T_DIR;
        e->mode = rec->root_mode;
        e->uid = rec->root_uid;
        e->gid = rec->root_gid;
        e->mtime_ns = rec->root_mtime_ns;
        e->xattrs = rec->root_xattrs;
        e->xattrs_len = rec->root_xattrs_len;
        e->xattr_count = 0;
        for (const uint8_t *p = rec->root_xattrs, *end = p + rec->root_xattrs_len;;) {
                const char *n;
                size_t nl, vl;
                const uint8_t *v;
                if (!p || stamp_xattr_next(&p, end, &n, &nl, &v, &vl) <= 0)
                        break;
                e->xattr_count++;
        }
        e->subtree = rec->root;
}

/* Restores SUBPATH: its parents are made directories (as in the snapshot), then the entry. */
static int restore_subpath(struct ctx *c, const struct stamp_record *rec, const char *subpath)
{
        struct stamp_tree_obj parent = { 0 };
        struct stamp_entry e;
        struct stamp_id cur = rec->root;
        _cleanup_free_ char *rel = strdup("");
        int dfd = c->root_fd >= 0 ? fcntl(c->root_fd, F_DUPFD_CLOEXEC, 3) : -1;
        const char *p = subpath;
        int r = 0;

        if (!rel || (dfd < 0 && c->root_fd >= 0)) {
                if (dfd >= 0)
                        close(dfd);
                return -ENOMEM;
        }
        for (;;) {
                const char *comp;
                size_t len;
                struct stamp_tree_obj t;
                uint32_t idx;

                while (*p == '/')
                        p++;
                comp = p;
                len = strcspn(p, "/");
                p += len;
                while (*p == '/')
                        p++;
                if (len == 0)
                        break;
                if (!safe_name(comp, len)) {
                        fail(c, -EINVAL, subpath, "not a valid path in a snapshot");
                        r = -EINVAL;
                        break;
                }
                r = stamp_tree_load(c->s, &cur, &t);
                if (r < 0) {
                        fail_store(c, r, rel, "cannot read the directory from the store");
                        break;
                }
                r = stamp_tree_find(&t.t, comp, len, &idx);
                if (r > 0)
                        r = stamp_tree_entry(&t.t, idx, &e);
                else if (r == 0)
                        r = -ENOENT;
                if (r < 0) {
                        stamp_tree_obj_release(&t);
                        fail(c, r, subpath, r == -ENOENT ? "not in the snapshot" : "cannot resolve");
                        break;
                }
                stamp_tree_obj_release(&parent);
                parent = t;
                if (*p == 0) {
                        /* The last component: restore it with everything below. */
                        r = sync_entry(c, dfd, &e, &parent.t, rel, 0);
                        break;
                }
                if (e.type != STAMP_T_DIR) {
                        fail(c, -ENOTDIR, subpath, "not a directory in the snapshot");
                        r = -ENOTDIR;
                        break;
                }
                /* An intermediate directory: made to exist, its contents left alone. */
                {
                        struct stat st;
                        char *next_rel = join(rel, comp, len);
                        char name[STAMP_NAME_MAX + 1];
                        int sub = -1;
                        if (!next_rel) {
                                r = -ENOMEM;
                                break;
                        }
                        free(rel);
                        rel = next_rel;
                        memcpy(name, comp, len);
                        name[len] = 0;
                        if (dfd >= 0 && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                            !S_ISDIR(st.st_mode)) {
                                r = remove_at(c, dfd, name, rel, true);
                                if (r != 0) {
                                        if (r > 0)
                                                fail(c, -EBUSY, rel, "a mounted file is in the way");
                                        r = r > 0 ? -EBUSY : r;
                                        break;
                                }
                        }
                        if (dfd >= 0 && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                                count(c, &c->st->dirs_created, 1);
                                event(c, STAMP_RESTORE_MKDIR, rel);
                                if (!c->dry && mkdirat(dfd, name, 0700) < 0) {
                                        r = -errno;
                                        fail(c, r, rel, "cannot create the directory");
                                        break;
                                }
                                if (!c->dry)
                                        sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                                if (sub >= 0) {
                                        /* New: give it the snapshot's metadata at the end. */
                                        int keep = fcntl(sub, F_DUPFD_CLOEXEC, 3);
                                        if (keep >= 0 && pending_add(c, keep, &e, rel, false) < 0) {
                                                close(sub);
                                                r = -ENOMEM;
                                                break;
                                        }
                                }
                        } else if (dfd >= 0) {
                                sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                                if (sub < 0) {
                                        r = -errno;
                                        fail(c, r, rel, "cannot open the directory");
                                        break;
                                }
                        }
                        if (dfd >= 0)
                                close(dfd);
                        dfd = sub;
                        cur = e.subtree;
                }
        }
        /* The pool may still write into dfd: wait for it before closing. */
        if (dfd >= 0) {
                drain(c);
                close(dfd);
        }
        stamp_tree_obj_release(&parent);
        return r;
}

int stamp_restore(struct stamp_store *s, int target_fd, const struct stamp_restore_options *o,
                  struct stamp_restore_stats *st, char *err, size_t err_size)
{
        struct ctx c = { .s = s, .o = o, .st = st, .root_fd = target_fd, .dry = o->dry_run,
                         .err = err, .err_size = err_size, .is_root = geteuid() == 0 };
        struct stamp_record rec = { 0 };
        struct stamp_index *main_ix = NULL;
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        int r;

        memset(st, 0, sizeof(*st));
        if (err_size)
                err[0] = 0;
        {
                /* Queued files and pending directories hold descriptors. */
                struct rlimit rl;
                if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096 &&
                    rl.rlim_cur < rl.rlim_max) {
                        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
                        (void)setrlimit(RLIMIT_NOFILE, &rl);
                }
        }
        c.tail = &c.head;
        pthread_mutex_init(&c.lock, NULL);
        pthread_cond_init(&c.work, NULL);
        pthread_cond_init(&c.idle, NULL);
        pthread_cond_init(&c.space, NULL);
        stamp_store_dev_ino(s, &c.store_dev, &c.store_ino);
        clock_gettime(CLOCK_MONOTONIC, &c.last_progress);

        r = stamp_store_record_load(s, o->stamp, &rec);
        if (r < 0) {
                fail(&c, r, o->stamp, "cannot load the snapshot record");
                goto out;
        }
        if (!c.dry) {
                unsigned n = o->threads ? o->threads : (unsigned)(ncpu > 1 ? ncpu * 2 : 2);
                if (n > ARRAY_SIZE(c.threads))
                        n = ARRAY_SIZE(c.threads);
                for (c.nthreads = 0; c.nthreads < n; c.nthreads++)
                        if (pthread_create(&c.threads[c.nthreads], NULL, writer_main, &c) != 0)
                                break;
        }
        /*
         * The walker reads trees in one index read transaction: everything
         * the snapshot needs was committed before its record was.
         */
        {
                struct stamp_index *ix = NULL;
                if (stamp_store_index(s, &ix) == 0 && stamp_index_begin_read(ix) == 0)
                        main_ix = ix;
        }
        if (o->subpath && o->subpath[strspn(o->subpath, "/")]) {
                r = restore_subpath(&c, &rec, o->subpath);
        } else {
                struct stamp_entry root;
                r = sync_dir(&c, target_fd, &rec.root, "", 0);
                root_entry(&rec, &root);
                if (r >= 0 && !c.dry)
                        r = pending_add(&c, target_fd, &root, "", true);
        }
        if (r >= 0)
                r = apply_pending(&c);
        else
                (void)apply_pending(&c);
        if (main_ix)
                stamp_index_end_read(main_ix);
        if (r >= 0 && !failed(&c) && !c.dry && syncfs(target_fd) < 0) {
                r = -errno;
                fail(&c, r, "", "cannot flush the restored files to disk");
        }
        if (r >= 0 && !failed(&c))
                r = check_dbs(&c);
out:
        pthread_mutex_lock(&c.lock);
        c.stop = true;
        pthread_cond_broadcast(&c.work);
        pthread_mutex_unlock(&c.lock);
        for (unsigned i = 0; i < c.nthreads; i++)
                pthread_join(c.threads[i], NULL);
        while (c.head) {
                struct job *j = c.head;
                c.head = j->next;
                job_free(j);
        }
        for (size_t i = 0; i < c.n_pdirs; i++) {
                if (!c.pdirs[i].is_root)
                        close(c.pdirs[i].fd);
                free(c.pdirs[i].rel);
                entry_copy_release(&c.pdirs[i].ec);
        }
        free(c.pdirs);
        for (size_t i = 0; i < LINK_BUCKETS; i++)
                while (c.links[i]) {
                        struct link *l = c.links[i];
                        c.links[i] = l->next;
                        free(l->rel);
                        free(l);
                }
        for (size_t i = 0; i < c.n_dbs; i++) {
                close(c.dbs[i].dfd);
                free(c.dbs[i].name);
                free(c.dbs[i].rel);
        }
        free(c.dbs);
        stamp_record_release(&rec);
        /*
         * The first failure, whose message is in @err: the walk may have
         * stopped with one of its own after a worker failed (a damaged
         * chunk must still exit 5, not "run the same command again").
         */
        if (c.error)
                r = c.error;
        pthread_cond_destroy(&c.work);
        pthread_cond_destroy(&c.idle);
        pthread_cond_destroy(&c.space);
        pthread_mutex_destroy(&c.lock);
        return r < 0 ? r : 0;
}

void stamp_restore_stats_release(struct stamp_restore_stats *st)
{
        for (size_t i = 0; i < st->n_dbs; i++)
                free(st->dbs[i].path);
        free(st->dbs);
        free(st->error_path);
        memset(st, 0, sizeof(*st));
}

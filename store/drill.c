/* SPDX-License-Identifier: MIT */
#include "drill.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "dbcheck.h"
#include "macro.h"
#include "owner.h"
#include "reader.h"
#include "restore.h"
#include "store-internal.h"
#include "tree.h"
#include "verify.h"

#define DRILL_LOG "drill.log"
#define BUF_SIZE (1u << 20)
#define DEPTH_MAX 4096 /* as restore's */
#define LINK_BUCKETS 1024
#define XATTR_LIST_SIZE 65536
#define SCRATCH_PREFIX "drill-"
#define SCRATCH_NAME_LEN 12 /* "drill-XXXXXX" */

static const char *const step_names[_STAMP_DRILL_STEP_MAX] = {
        [STAMP_DRILL_VALIDATE] = "validate",
        [STAMP_DRILL_RESTORE] = "restore",
        [STAMP_DRILL_CHECK] = "check",
        [STAMP_DRILL_COMPARE] = "compare",
};

const char *stamp_drill_step_name(enum stamp_drill_step step)
{
        return (unsigned)step < _STAMP_DRILL_STEP_MAX ? step_names[step] : "unknown";
}

/* The first member of each content of a hardlink group met by the compare step. */
struct link {
        uint64_t id;
        uint64_t key; /* its stamp_entry_content_key() */
        dev_t dev;
        ino_t ino;
        char *rel;
        struct link *next;
};

struct drill {
        struct stamp_store *s;
        const struct stamp_drill_options *o;
        struct stamp_drill_entry *e;
        int error;           /* the first error that stops the drill (-ENOMEM) */
        bool root;           /* owners are compared only when restore could set them */
        enum stamp_drill_step step;
        uint64_t files, bytes; /* of the current step, for progress */
        struct timespec last_progress;
        uint8_t *a, *b;      /* BUF_SIZE each: the snapshot's and the copy's bytes */
        char *xval;          /* STAMP_XATTR_VALUE_MAX + 1 */
        char *xlist;         /* XATTR_LIST_SIZE */
        struct link *links[LINK_BUCKETS];
};

static double since(const struct timespec *t0)
{
        struct timespec t1;

        clock_gettime(CLOCK_MONOTONIC, &t1);
        return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void problem(struct drill *d, const char *kind, const char *path, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static void problem(struct drill *d, const char *kind, const char *path, const char *fmt, ...)
{
        char detail[512];
        va_list ap;
        int r;

        va_start(ap, fmt);
        vsnprintf(detail, sizeof(detail), fmt, ap);
        va_end(ap);
        /* "" is the root of the copy; NULL: the problem is not about one path. */
        r = stamp_drill_entry_add_problem(d->e, kind, path && !*path ? "." : path, detail,
                                          STAMP_DRILL_PROBLEMS_MAX);
        if (r < 0 && !d->error)
                d->error = r;
}

/* Progress, at most ten times a second. */
static void progress(struct drill *d, const char *path)
{
        struct timespec now;

        if (!d->o->progress)
                return;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - d->last_progress.tv_sec) * 1000000000L +
                    (now.tv_nsec - d->last_progress.tv_nsec) < 100000000L)
                return;
        d->last_progress = now;
        d->o->progress(d->step, d->files, d->bytes, path, d->o->userdata);
}

static char *join(const char *parent, const char *name)
{
        char *s;

        if (!*parent)
                return strdup(name);
        return asprintf(&s, "%s/%s", parent, name) < 0 ? NULL : s;
}

static bool ends_with(const char *name, const char *suffix)
{
        size_t n = strlen(name), k = strlen(suffix);

        return n > k && strcasecmp(name + n - k, suffix) == 0;
}

/* Reads up to @len bytes at @off, retrying short reads: the count, or -errno. */
static ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off)
{
        size_t done = 0;

        while (done < len) {
                ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negerrno();
                if (n == 0)
                        break;
                done += (size_t)n;
        }
        return (ssize_t)done;
}

/* Step 1: validate. */

static void on_check_problem(const struct stamp_problem *p, void *userdata)
{
        struct drill *d = userdata;

        if (p->object && (!p->detail || !strstr(p->detail, p->object)))
                problem(d, stamp_problem_name(p->kind), p->path, "%s [%s]",
                        p->detail ? p->detail : "", p->object);
        else
                problem(d, stamp_problem_name(p->kind), p->path, "%s", p->detail ? p->detail : "");
}

static void on_check_progress(const struct stamp_check_stats *st, const char *path, void *userdata)
{
        struct drill *d = userdata;

        d->files = st->files;
        d->bytes = st->bytes_read;
        progress(d, path);
}

static int step_validate(struct drill *d)
{
        struct stamp_check_options co = {
                .flags = d->o->read_data ? STAMP_CHECK_READ_DATA : 0,
                .problem = on_check_problem,
                .progress = on_check_progress,
                .userdata = d,
        };
        struct stamp_check_stats st;
        int r = stamp_check_snapshot(d->s, d->o->stamp, &co, &st);

        if (r < 0)
                problem(d, "read_error", NULL, "the snapshot cannot be validated: %s",
                        strerror(-r));
        return r == -ENOMEM ? r : 0;
}

/* Step 2: restore. */

static void on_restore_warning(const char *path, const char *what, void *userdata)
{
        struct drill *d = userdata;
        char *line;

        d->e->n_warnings++;
        if (d->e->warnings.n >= STAMP_DRILL_PROBLEMS_MAX)
                return;
        if (asprintf(&line, "%s: %s", path, what) < 0) {
                d->error = -ENOMEM;
                return;
        }
        if (stamp_strv_push(&d->e->warnings, line) < 0)
                d->error = -ENOMEM;
        free(line);
}

static void on_restore_progress(const struct stamp_restore_stats *st, const char *path,
                                void *userdata)
{
        struct drill *d = userdata;

        d->files = st->files_restored;
        d->bytes = st->bytes_written;
        progress(d, path);
}

/*
 * Adds to *@sum what the files below tree @id take without their holes
 * (stamp_file_allocated()), as a restore writes them; stops once *@sum
 * passes @limit. 0 or a negative errno (damage: the restore reports it).
 */
static int allocated_below(struct stamp_store *s, const struct stamp_id *id, uint64_t limit,
                           unsigned depth, uint64_t *sum)
{
        struct stamp_tree_obj t;
        int r;

        if (depth > 4096) /* deeper than any snapshot is written */
                return -EBADMSG;
        r = stamp_tree_load(s, id, &t);
        if (r < 0)
                return r;
        for (uint32_t i = 0; i < t.t.count && r == 0 && *sum <= limit; i++) {
                struct stamp_entry e;
                struct stamp_file *f;
                uint64_t a;
                r = stamp_tree_entry(&t.t, i, &e);
                if (r < 0)
                        break;
                if (e.type == STAMP_T_DIR) {
                        r = allocated_below(s, &e.subtree, limit, depth + 1, sum);
                        continue;
                }
                if (e.type != STAMP_T_REG || e.size == 0)
                        continue;
                r = stamp_file_open(s, &e, NULL, &f);
                if (r == 0) {
                        r = stamp_file_allocated(f, UINT_MAX, &a);
                        stamp_file_free(f);
                }
                if (r == 0)
                        *sum += a;
        }
        stamp_tree_obj_release(&t);
        return r;
}

/*
 * A restore that fills the filesystem fails, and meanwhile makes the
 * snapshots written beside it fail too: when the snapshot's files cannot
 * fit, say so instead. A snapshot whose files' sizes do not fit may still:
 * their holes (a disk image's) are not written, so then what they hold
 * without them is added up (every name of a hardlinked file counted,
 * which errs on the side of refusing). 1 if there is room (or it cannot be
 * told), else 0.
 */
static int room_for(struct drill *d, int scratch_fd)
{
        struct stamp_record rec;
        struct statvfs sv;
        uint64_t avail, need = 0;
        int r = stamp_store_record_load(d->s, d->o->stamp, &rec);

        if (r < 0)
                return r == -ENOMEM ? r : 1; /* the restore reports it */
        if (fstatvfs(scratch_fd, &sv) < 0) {
                stamp_record_release(&rec);
                return 1;
        }
        avail = (uint64_t)sv.f_bavail * sv.f_frsize;
        r = rec.logical_bytes <= avail;
        if (!r) {
                int w = allocated_below(d->s, &rec.root, avail, 0, &need);
                if (w == -ENOMEM) {
                        stamp_record_release(&rec);
                        return w;
                }
                r = w < 0 || need <= avail; /* damage: the restore finds and reports it */
        }
        if (!r)
                problem(d, "no_space", NULL,
                        "the snapshot's files take %llu bytes, more than the %llu bytes free "
                        "on the scratch filesystem even without their holes; not restored",
                        (unsigned long long)rec.logical_bytes, (unsigned long long)avail);
        stamp_record_release(&rec);
        return r;
}

/* Returns 1 if the copy is complete, 0 if the restore failed (a problem), or -ENOMEM. */
static int step_restore(struct drill *d, int scratch_fd)
{
        struct stamp_restore_options ro = {
                .stamp = d->o->stamp,
                .no_db_check = true, /* step 3 checks every database */
                .warning = on_restore_warning,
                .progress = on_restore_progress,
                .userdata = d,
        };
        struct stamp_restore_stats st;
        char err[1024];
        int r = stamp_restore(d->s, scratch_fd, &ro, &st, err, sizeof(err));

        d->e->files = st.files_restored;
        d->e->bytes = st.bytes_written;
        if (r < 0) {
                const char *detail = err[0] ? err : strerror(-r);
                size_t n = st.error_path ? strlen(st.error_path) : 0;
                /* err is "path: what: reason"; the problem carries the path apart. */
                if (n && strncmp(detail, st.error_path, n) == 0 && strncmp(detail + n, ": ", 2) == 0)
                        detail += n + 2;
                problem(d, "restore_failed", st.error_path, "%s", detail);
        }
        stamp_restore_stats_release(&st);
        if (d->error)
                return d->error;
        return r < 0 ? 0 : 1;
}

/* Step 3: every database and JSON file of the copy. */

static ssize_t fd_pread(void *userdata, void *buf, size_t len, uint64_t off)
{
        ssize_t n = pread(*(int *)userdata, buf, len, (off_t)off);

        return n < 0 ? negerrno() : n;
}

static void check_db(struct drill *d, int fd, uint64_t size, const char *rel)
{
        char msg[256] = "";
        int r;

        d->e->databases++;
        r = stamp_sqlite_check(fd_pread, &fd, size, msg, sizeof(msg));
        if (r == 0)
                problem(d, "db_integrity_check_failed", rel, "PRAGMA integrity_check: %s", msg);
        else if (r < 0)
                problem(d, "read_error", rel, "the database could not be read to check it: %s",
                        strerror(-r));
}

static void check_json(struct drill *d, int fd, const char *rel)
{
        struct stamp_json_check *jc = stamp_json_check_new();
        char msg[256] = "";
        uint64_t off = 0;

        if (!jc) {
                d->error = -ENOMEM;
                return;
        }
        d->e->json_files++;
        for (;;) {
                ssize_t n = pread_full(fd, d->a, BUF_SIZE, off);
                if (n < 0) {
                        problem(d, "read_error", rel, "the file could not be read to parse it: %s",
                                strerror((int)-n));
                        break;
                }
                if (n == 0) {
                        if (stamp_json_check_end(jc, msg, sizeof(msg)) < 0)
                                problem(d, "json_invalid", rel, "not valid JSON: %s", msg);
                        break;
                }
                if (stamp_json_check_feed(jc, d->a, (size_t)n) < 0) {
                        (void)stamp_json_check_end(jc, msg, sizeof(msg));
                        problem(d, "json_invalid", rel, "not valid JSON: %s", msg);
                        break;
                }
                off += (uint64_t)n;
        }
        stamp_json_check_free(jc);
}

/*
 * A database is recognized by its header, whatever its name (a database
 * needs at least one 512-byte page); a JSON file by its name, as validate
 * does.
 */
static void check_file(struct drill *d, int dfd, const char *name, const char *rel,
                       const struct stat *st)
{
        _cleanup_close_ int fd = -1;
        uint8_t head[STAMP_SQLITE_MAGIC_LEN];
        bool json = ends_with(name, ".json");
        bool maybe_db = st->st_size >= 512;

        d->files++;
        progress(d, rel);
        if (!json && !maybe_db)
                return;
        fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                problem(d, "read_error", rel, "cannot open the restored file: %s", strerror(errno));
                return;
        }
        if (maybe_db && pread_full(fd, head, sizeof(head), 0) == (ssize_t)sizeof(head) &&
            stamp_is_sqlite_header(head, sizeof(head)))
                check_db(d, fd, (uint64_t)st->st_size, rel);
        if (json)
                check_json(d, fd, rel);
        d->bytes += (uint64_t)st->st_size;
}

static int check_dir(struct drill *d, int dfd, const char *rel, int depth)
{
        char **names;
        size_t n;
        int r;

        if (depth > DEPTH_MAX) {
                problem(d, "read_error", rel, "directories nested too deeply");
                return 0;
        }
        r = stamp_list_dir_names(dfd, &names, &n);
        if (r < 0) {
                problem(d, "read_error", rel, "cannot list the restored directory: %s",
                        strerror(-r));
                return r == -ENOMEM ? r : 0;
        }
        for (size_t i = 0; i < n && !d->error; i++) {
                _cleanup_free_ char *sub = join(rel, names[i]);
                struct stat st;
                int fd;
                if (!sub) {
                        d->error = -ENOMEM;
                        break;
                }
                if (fstatat(dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        problem(d, "read_error", sub, "cannot inspect: %s", strerror(errno));
                        continue;
                }
                if (S_ISREG(st.st_mode)) {
                        check_file(d, dfd, names[i], sub, &st);
                        continue;
                }
                if (!S_ISDIR(st.st_mode))
                        continue;
                fd = openat(dfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0) {
                        problem(d, "read_error", sub, "cannot open the restored directory: %s",
                                strerror(errno));
                        continue;
                }
                r = check_dir(d, fd, sub, depth + 1);
                close(fd);
                if (r < 0)
                        break;
        }
        stamp_free_dir_names(names, n);
        return d->error;
}

/* Step 4: compare the snapshot with the copy. */

static const char *type_name(unsigned t)
{
        static const char *const names[] = {
                [STAMP_T_REG] = "regular file", [STAMP_T_DIR] = "directory",
                [STAMP_T_LNK] = "symlink",      [STAMP_T_CHR] = "character device",
                [STAMP_T_BLK] = "block device", [STAMP_T_FIFO] = "FIFO",
                [STAMP_T_SOCK] = "socket",
        };
        return t < ARRAY_SIZE(names) && names[t] ? names[t] : "unknown entry";
}

static unsigned stat_type(const struct stat *st)
{
        switch (st->st_mode & S_IFMT) {
        case S_IFREG:
                return STAMP_T_REG;
        case S_IFDIR:
                return STAMP_T_DIR;
        case S_IFLNK:
                return STAMP_T_LNK;
        case S_IFCHR:
                return STAMP_T_CHR;
        case S_IFBLK:
                return STAMP_T_BLK;
        case S_IFIFO:
                return STAMP_T_FIFO;
        case S_IFSOCK:
                return STAMP_T_SOCK;
        }
        return 0;
}

static int64_t stat_mtime_ns(const struct stat *st)
{
        return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* True if the snapshot entry has xattr @name (NUL-terminated); its value in *ret_v. */
static bool entry_xattr(const struct stamp_entry *e, const char *name, const uint8_t **ret_v,
                        size_t *ret_vl)
{
        const uint8_t *p = e->xattrs, *end = e->xattrs + e->xattrs_len;
        const char *xn;
        size_t xnl, len = strlen(name);

        if (!p)
                return false;
        while (stamp_xattr_next(&p, end, &xn, &xnl, ret_v, ret_vl) > 0)
                if (xnl == len && memcmp(xn, name, len) == 0)
                        return true;
        return false;
}

/*
 * The copy's xattrs against the entry's, by name through /proc/self/fd so
 * that a symlink's own are read. security.selinux is the system's policy,
 * not the snapshot's (restore leaves it alone too).
 */
static void compare_xattrs(struct drill *d, int dfd, const char *name,
                           const struct stamp_entry *e, const char *rel)
{
        const uint8_t *p = e->xattrs, *end = e->xattrs + e->xattrs_len;
        char *list = d->xlist, path[320];
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", dfd, name);
        n = llistxattr(path, list, XATTR_LIST_SIZE);
        if (n < 0 && errno != ENOTSUP) {
                problem(d, "read_error", rel, "cannot list extended attributes: %s",
                        strerror(errno));
                return;
        }
        for (ssize_t i = 0; i < n; i += (ssize_t)strlen(list + i) + 1) {
                const uint8_t *v;
                size_t vl;
                if (strcmp(list + i, "security.selinux") != 0 && !entry_xattr(e, list + i, &v, &vl))
                        problem(d, "xattr_mismatch", rel,
                                "extended attribute %s is not in the snapshot", list + i);
        }
        while (p && p < end) {
                const char *xn;
                const uint8_t *xv;
                size_t xnl, xvl;
                char xname[256];
                ssize_t got;
                if (stamp_xattr_next(&p, end, &xn, &xnl, &xv, &xvl) <= 0 || xnl >= sizeof(xname))
                        break;
                memcpy(xname, xn, xnl);
                xname[xnl] = 0;
                got = lgetxattr(path, xname, d->xval, STAMP_XATTR_VALUE_MAX + 1);
                if (got < 0)
                        problem(d, "xattr_mismatch", rel, "extended attribute %s %s", xname,
                                errno == ENODATA || errno == ENOTSUP ? "was not restored"
                                                                     : strerror(errno));
                else if ((size_t)got != xvl || memcmp(d->xval, xv, xvl) != 0)
                        problem(d, "xattr_mismatch", rel,
                                "extended attribute %s differs from the snapshot's", xname);
        }
}

static void compare_meta(struct drill *d, int dfd, const char *name, const struct stamp_entry *e,
                         const struct stat *st, const char *rel)
{
        if (e->type != STAMP_T_LNK && (st->st_mode & 07777) != (e->mode & 07777))
                problem(d, "mode_mismatch", rel, "mode %04o, the snapshot has %04o",
                        (unsigned)(st->st_mode & 07777), (unsigned)(e->mode & 07777));
        if (d->root && (st->st_uid != e->uid || st->st_gid != e->gid))
                problem(d, "owner_mismatch", rel, "owner %u:%u, the snapshot has %u:%u",
                        (unsigned)st->st_uid, (unsigned)st->st_gid, e->uid, e->gid);
        if (stat_mtime_ns(st) != e->mtime_ns)
                problem(d, "mtime_mismatch", rel,
                        "modification time %lld ns, the snapshot has %lld ns",
                        (long long)stat_mtime_ns(st), (long long)e->mtime_ns);
        compare_xattrs(d, dfd, name, e, rel);
}

static void compare_content(struct drill *d, int dfd, const char *name,
                            const struct stamp_entry *e, const char *rel)
{
        _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        struct stamp_file *f = NULL;
        struct stamp_index *ix = NULL;
        bool txn;
        uint64_t off = 0;
        int r;

        if (fd < 0) {
                problem(d, "read_error", rel, "cannot open the restored file: %s", strerror(errno));
                return;
        }
        r = stamp_file_open(d->s, e, NULL, &f);
        if (r < 0) {
                problem(d, "read_error", rel, "cannot open the file in the store: %s",
                        strerror(-r));
                return;
        }
        /* One index read transaction per file, as restore's writers do. */
        txn = stamp_store_index(d->s, &ix) == 0 && stamp_index_begin_read(ix) == 0;
        while (off < e->size) {
                ssize_t n = stamp_file_pread(f, d->a, BUF_SIZE, off), m;
                if (n <= 0) {
                        problem(d, "read_error", rel,
                                "cannot read the file from the store at byte %llu: %s",
                                (unsigned long long)off, strerror(n < 0 ? (int)-n : EBADMSG));
                        break;
                }
                m = pread_full(fd, d->b, (size_t)n, off);
                if (m < 0) {
                        problem(d, "read_error", rel, "cannot read the restored file: %s",
                                strerror((int)-m));
                        break;
                }
                if (m < n || memcmp(d->a, d->b, (size_t)n) != 0) {
                        size_t i = 0;
                        while (i < (size_t)m && d->a[i] == d->b[i])
                                i++;
                        problem(d, "content_mismatch", rel,
                                "the restored copy differs from the snapshot at byte %llu",
                                (unsigned long long)(off + i));
                        break;
                }
                off += (uint64_t)n;
                d->bytes += (uint64_t)n;
                progress(d, rel);
        }
        if (txn)
                stamp_index_end_read(ix);
        stamp_file_free(f);
}

/*
 * A later member of a hardlink group must be the inode of the first one
 * met with the same content (members with other content are other files).
 */
static void compare_link(struct drill *d, const struct stamp_entry *e, const struct stat *st,
                         const char *rel)
{
        struct link **head = &d->links[e->link_id % LINK_BUCKETS], *l;
        uint64_t key = stamp_entry_content_key(e);

        for (l = *head; l; l = l->next)
                if (l->id == e->link_id && l->key == key)
                        break;
        if (l) {
                if (l->dev != st->st_dev || l->ino != st->st_ino)
                        problem(d, "hardlink_mismatch", rel,
                                "not restored as a hardlink of %s, as in the snapshot", l->rel);
                return;
        }
        l = calloc(1, sizeof(*l));
        if (!l || !(l->rel = strdup(rel))) {
                free(l);
                d->error = -ENOMEM;
                return;
        }
        l->id = e->link_id;
        l->key = key;
        l->dev = st->st_dev;
        l->ino = st->st_ino;
        l->next = *head;
        *head = l;
}

static int compare_dir(struct drill *d, int dfd, const struct stamp_id *tree, const char *rel,
                       int depth);

static void compare_special(struct drill *d, int dfd, const char *name,
                            const struct stamp_entry *e, const struct stat *st, const char *rel)
{
        char target[STAMP_TARGET_MAX + 2];
        ssize_t n;

        if (e->type == STAMP_T_LNK) {
                n = readlinkat(dfd, name, target, sizeof(target));
                if (n < 0)
                        problem(d, "read_error", rel, "cannot read the restored symlink: %s",
                                strerror(errno));
                else if ((size_t)n != e->target_len || memcmp(target, e->target, (size_t)n) != 0)
                        problem(d, "symlink_mismatch", rel,
                                "the restored symlink points elsewhere than the snapshot's");
        } else if ((e->type == STAMP_T_CHR || e->type == STAMP_T_BLK) &&
                   (uint64_t)st->st_rdev != e->rdev) {
                problem(d, "rdev_mismatch", rel, "device number %#llx, the snapshot has %#llx",
                        (unsigned long long)st->st_rdev, (unsigned long long)e->rdev);
        }
}

static void compare_entry(struct drill *d, int dfd, const struct stamp_entry *e, const char *name,
                          const char *rel, int depth)
{
        struct stat st;
        unsigned t;

        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT)
                        problem(d, "missing", rel, "a %s of the snapshot was not restored",
                                type_name(e->type));
                else
                        problem(d, "read_error", rel, "cannot inspect the restored copy: %s",
                                strerror(errno));
                return;
        }
        t = stat_type(&st);
        if (t != e->type) {
                problem(d, "type_mismatch", rel, "restored as a %s, the snapshot has a %s",
                        type_name(t), type_name(e->type));
                return;
        }
        compare_meta(d, dfd, name, e, &st, rel);
        if (e->link_id && e->nlink > 1)
                compare_link(d, e, &st, rel);
        if (e->type == STAMP_T_REG) {
                d->files++;
                progress(d, rel);
                if (e->flags & STAMP_EF_UNREADABLE)
                        return; /* stored empty on purpose; the record lists it */
                if ((uint64_t)st.st_size != e->size)
                        problem(d, "size_mismatch", rel, "%llu bytes, the snapshot has %llu",
                                (unsigned long long)st.st_size, (unsigned long long)e->size);
                else
                        compare_content(d, dfd, name, e, rel);
        } else if (e->type == STAMP_T_DIR) {
                int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0) {
                        problem(d, "read_error", rel, "cannot open the restored directory: %s",
                                strerror(errno));
                        return;
                }
                (void)compare_dir(d, fd, &e->subtree, rel, depth + 1);
                close(fd);
        } else {
                compare_special(d, dfd, name, e, &st, rel);
        }
}

/* Entries of the copy that the snapshot's directory @t lacks. */
static void compare_extra(struct drill *d, int dfd, const struct stamp_tree *t, const char *rel)
{
        char **names;
        size_t n;
        int r = stamp_list_dir_names(dfd, &names, &n);

        if (r < 0) {
                problem(d, "read_error", rel, "cannot list the restored directory: %s",
                        strerror(-r));
                return;
        }
        for (size_t i = 0; i < n; i++) {
                uint32_t idx;
                _cleanup_free_ char *sub = NULL;
                if (stamp_tree_find(t, names[i], strlen(names[i]), &idx) > 0)
                        continue;
                sub = join(rel, names[i]);
                if (!sub) {
                        d->error = -ENOMEM;
                        break;
                }
                problem(d, "unexpected", sub, "in the restored copy, not in the snapshot");
        }
        stamp_free_dir_names(names, n);
}

static int compare_dir(struct drill *d, int dfd, const struct stamp_id *tree, const char *rel,
                       int depth)
{
        struct stamp_tree_obj t;
        int r;

        if (depth > DEPTH_MAX) {
                problem(d, "read_error", rel, "directories nested too deeply");
                return 0;
        }
        r = stamp_tree_load(d->s, tree, &t);
        if (r < 0) {
                problem(d, "read_error", rel, "cannot read the directory from the store: %s",
                        strerror(-r));
                return r == -ENOMEM ? r : 0;
        }
        for (uint32_t i = 0; i < t.t.count && !d->error; i++) {
                _cleanup_free_ char *sub = NULL;
                char name[STAMP_NAME_MAX + 1];
                struct stamp_entry e;
                if (stamp_tree_entry(&t.t, i, &e) < 0 || e.name_len > STAMP_NAME_MAX) {
                        problem(d, "read_error", rel, "a directory entry in the store does not decode");
                        continue;
                }
                /* Entry names borrow the tree and are not NUL-terminated. */
                memcpy(name, e.name, e.name_len);
                name[e.name_len] = 0;
                sub = join(rel, name);
                if (!sub) {
                        d->error = -ENOMEM;
                        break;
                }
                compare_entry(d, dfd, &e, name, sub, depth);
        }
        if (!d->error)
                compare_extra(d, dfd, &t.t, rel);
        stamp_tree_obj_release(&t);
        return d->error;
}

/* The root's own metadata comes from the record (as restore sets it). */
static int step_compare(struct drill *d, int scratch_fd)
{
        struct stamp_record rec;
        struct stamp_entry root = { .name = ".", .name_len = 1, .type = STAMP_T_DIR };
        struct stat st;
        int r;

        r = stamp_store_record_load(d->s, d->o->stamp, &rec);
        if (r < 0) {
                problem(d, "read_error", NULL, "cannot load the snapshot record: %s", strerror(-r));
                return r == -ENOMEM ? r : 0;
        }
        root.mode = rec.root_mode;
        root.uid = rec.root_uid;
        root.gid = rec.root_gid;
        root.mtime_ns = rec.root_mtime_ns;
        root.xattrs = rec.root_xattrs;
        root.xattrs_len = rec.root_xattrs_len;
        if (fstat(scratch_fd, &st) < 0)
                problem(d, "read_error", NULL, "cannot inspect the scratch directory: %s",
                        strerror(errno));
        else
                compare_meta(d, scratch_fd, ".", &root, &st, "");
        r = compare_dir(d, scratch_fd, &rec.root, "", 0);
        stamp_record_release(&rec);
        return r;
}

static void links_free(struct drill *d)
{
        for (size_t i = 0; i < LINK_BUCKETS; i++)
                while (d->links[i]) {
                        struct link *l = d->links[i];
                        d->links[i] = l->next;
                        free(l->rel);
                        free(l);
                }
}

/* Runs @step with its clock; its time is recorded even when it stops the drill. */
static int timed(struct drill *d, enum stamp_drill_step step, int (*fn)(struct drill *, int),
                 int fd)
{
        struct timespec t0;
        int r;

        d->step = step;
        d->files = d->bytes = 0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        r = fn(d, fd);
        d->e->step_s[step] = since(&t0);
        d->e->step_ran[step] = true;
        return r;
}

static int run_validate(struct drill *d, int fd)
{
        (void)fd;
        return step_validate(d);
}

static int run_check(struct drill *d, int fd)
{
        return check_dir(d, fd, "", 0);
}

/* Sets up @d; release it with drill_release() whatever this returns. */
static int drill_init(struct drill *d, struct stamp_store *s, const struct stamp_drill_options *o,
                      struct stamp_drill_entry *e)
{
        *d = (struct drill){ .s = s, .o = o, .e = e, .root = geteuid() == 0 };
        clock_gettime(CLOCK_MONOTONIC, &d->last_progress);
        d->a = malloc(BUF_SIZE);
        d->b = malloc(BUF_SIZE);
        d->xval = malloc(STAMP_XATTR_VALUE_MAX + 1);
        d->xlist = malloc(XATTR_LIST_SIZE);
        return d->a && d->b && d->xval && d->xlist ? 0 : -ENOMEM;
}

static void drill_release(struct drill *d)
{
        links_free(d);
        free(d->a);
        free(d->b);
        free(d->xval);
        free(d->xlist);
}

int stamp_drill_check_tree(int dirfd, struct stamp_drill_entry *e)
{
        static const struct stamp_drill_options none = { 0 };
        struct drill d;
        int r = drill_init(&d, NULL, &none, e);

        if (r == 0)
                r = run_check(&d, dirfd);
        drill_release(&d);
        return r;
}

int stamp_drill_compare_tree(struct stamp_store *s, const char *stamp, int dirfd,
                             struct stamp_drill_entry *e)
{
        struct stamp_drill_options o = { .stamp = stamp };
        struct drill d;
        int r = drill_init(&d, s, &o, e);

        if (r == 0)
                r = step_compare(&d, dirfd);
        drill_release(&d);
        return r;
}

int stamp_drill_run(struct stamp_store *s, int scratch_fd, const struct stamp_drill_options *o,
                    struct stamp_drill_entry *ret)
{
        struct stamp_drill_entry e = { 0 };
        struct timespec t0, now;
        struct drill d;
        int r;

        if (!o->stamp || strlen(o->stamp) != STAMP_STAMP_LEN || scratch_fd < 0)
                return -EINVAL;
        r = drill_init(&d, s, o, &e);
        if (r < 0)
                goto out;
        memcpy(e.stamp, o->stamp, STAMP_STAMP_LEN + 1);
        e.read_data = o->read_data;
        clock_gettime(CLOCK_REALTIME, &now);
        stamp_iso8601(now.tv_sec, now.tv_nsec, e.started);
        clock_gettime(CLOCK_MONOTONIC, &t0);

        r = timed(&d, STAMP_DRILL_VALIDATE, run_validate, -1);
        /* An invalid snapshot is not restored: stamp restore would refuse it. */
        if (r == 0 && e.n_problems == 0)
                r = room_for(&d, scratch_fd);
        if (r == 1)
                r = timed(&d, STAMP_DRILL_RESTORE, step_restore, scratch_fd);
        else if (r == 0)
                r = -ECANCELED;
        if (r == 1) {
                r = timed(&d, STAMP_DRILL_CHECK, run_check, scratch_fd);
                if (r == 0)
                        r = timed(&d, STAMP_DRILL_COMPARE, step_compare, scratch_fd);
        }
        if (r == -ECANCELED || r > 0)
                r = 0;
        if (r == 0 && d.error)
                r = d.error;
        e.duration_s = since(&t0);
        e.pass = e.n_problems == 0;
out:
        drill_release(&d);
        if (r < 0) {
                stamp_drill_entry_release(&e);
                return r;
        }
        *ret = e;
        return 0;
}

/* Scratch directories. */

static int remove_entries(int fd, int depth);

/* Opens directory @name in @dfd for removal, making it usable by its owner if needed. */
static int open_for_removal(int dfd, const char *name)
{
        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;

        if (fd < 0 && errno == EACCES) {
                /* Mode 0000 (say): chmod through an O_PATH fd, which never follows a symlink. */
                _cleanup_close_ int pfd =
                        openat(dfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                char path[64];
                if (pfd < 0)
                        return negerrno();
                snprintf(path, sizeof(path), "/proc/self/fd/%d", pfd);
                if (chmod(path, 0700) < 0)
                        return negerrno();
                fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        }
        if (fd < 0)
                return negerrno();
        /* Entries of a read-only directory cannot be unlinked (but by root). */
        if (fstat(fd, &st) == 0 && (st.st_mode & 0700) != 0700 && geteuid() != 0)
                (void)fchmod(fd, 0700);
        return fd;
}

static int remove_at(int dfd, const char *name, int depth)
{
        int fd, r;

        if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
                return 0;
        if (errno != EISDIR)
                return negerrno();
        if (depth > DEPTH_MAX)
                return -ELOOP;
        fd = open_for_removal(dfd, name);
        if (fd < 0)
                return fd;
        r = remove_entries(fd, depth + 1);
        close(fd);
        if (r < 0)
                return r;
        return unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT ? negerrno() : 0;
}

static int remove_entries(int fd, int depth)
{
        char **names;
        size_t n;
        int r = stamp_list_dir_names(fd, &names, &n);

        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                int k = remove_at(fd, names[i], depth);
                if (k < 0 && r == 0)
                        r = k;
        }
        stamp_free_dir_names(names, n);
        return r;
}

int stamp_drill_remove_tree(int dirfd, const char *name)
{
        return remove_at(dirfd, name, 0);
}

int stamp_drill_empty_dir(int fd)
{
        return remove_entries(fd, 0);
}

/* True for the name of a running (or dead) drill's scratch directory: "drill-XXXXXX". */
static bool scratch_name(const char *name)
{
        return strlen(name) == SCRATCH_NAME_LEN &&
               strncmp(name, SCRATCH_PREFIX, strlen(SCRATCH_PREFIX)) == 0;
}

/* Removes the scratch directories in tmp/ of drills that died (their flock is free). */
static unsigned remove_stale(int tmpfd)
{
        char **names;
        size_t n;
        unsigned removed = 0;

        if (stamp_list_dir_names(tmpfd, &names, &n) < 0)
                return 0;
        for (size_t i = 0; i < n; i++) {
                _cleanup_close_ int fd = -1;
                if (!scratch_name(names[i]))
                        continue;
                fd = openat(tmpfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0)
                        continue; /* in use, or not ours to judge */
                if (stamp_drill_remove_tree(tmpfd, names[i]) == 0)
                        removed++;
        }
        stamp_free_dir_names(names, n);
        return removed;
}

/*
 * Why STORE/tmp/: the drill must show that a restore works where there is
 * room for it, and the store's own filesystem is the one place known to
 * exist (a store at the root of a mounted disk has its parent on another
 * filesystem). tmp/ is writable whenever the store is, private (0700)
 * whatever modes the restored tree has, and safe from the store's own
 * cleanup: recovery and gc remove only regular files there, and no scan of
 * the store (gc, verify, reindex, stats) reads tmp/.
 */
int stamp_drill_scratch_new(struct stamp_store *s, char **ret_path, unsigned *ret_stale)
{
        _cleanup_close_ int tmpfd = -1;
        _cleanup_free_ char *hidden = NULL, *path = NULL;
        unsigned stale;
        int fd, r;

        if (mkdirat(stamp_store_dirfd(s), "tmp", 0700) == 0)
                stamp_owner_adopt_at(stamp_store_dirfd(s), stamp_store_dirfd(s), "tmp");
        else if (errno != EEXIST)
                return negerrno();
        tmpfd = openat(stamp_store_dirfd(s), "tmp", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (tmpfd < 0)
                return negerrno();
        stale = remove_stale(tmpfd);
        /*
         * Made under a name remove_stale() ignores, locked, then renamed:
         * so no other drill ever sees it unlocked. (A crash in between
         * leaves an empty ".drill-XXXXXX", which nothing removes.)
         */
        if (asprintf(&hidden, "%s/tmp/." SCRATCH_PREFIX "XXXXXX", stamp_store_path(s)) < 0) {
                hidden = NULL;
                return -ENOMEM;
        }
        if (!mkdtemp(hidden))
                return negerrno();
        fd = open(hidden, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                goto fail;
        path = strdup(hidden);
        if (!path)
                goto fail;
        {
                char *base = strrchr(path, '/') + 1; /* ".drill-XXXXXX" */
                memmove(base, base + 1, strlen(base)); /* "drill-XXXXXX", with its NUL */
        }
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                goto fail;
        if (renameat2(AT_FDCWD, hidden, AT_FDCWD, path, RENAME_NOREPLACE) < 0 &&
            (errno != EINVAL || rename(hidden, path) < 0))
                goto fail;
        *ret_path = TAKE_PTR(path);
        *ret_stale = stale;
        return fd;
fail:
        r = fd >= 0 && !path ? -ENOMEM : negerrno();
        if (fd >= 0)
                close(fd);
        (void)rmdir(hidden);
        return r;
}

int stamp_drill_scratch_keep(const char *path, char **ret_path)
{
        char *kept;

        if (asprintf(&kept, "%s-kept", path) < 0)
                return -ENOMEM;
        if (rename(path, kept) < 0) {
                int r = negerrno();
                free(kept);
                return r;
        }
        *ret_path = kept;
        return 0;
}

/* The drill log. */

int stamp_drill_log_append(struct stamp_store *s, const struct stamp_drill_entry *e)
{
        int dirfd = stamp_store_dirfd(s);
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *line = NULL, *buf = NULL;
        bool created = false;
        struct stat st;
        size_t len;
        ssize_t n;
        int r;

        r = stamp_drill_entry_encode(e, &line);
        if (r < 0)
                return r;
        fd = openat(dirfd, DRILL_LOG, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    0600);
        if (fd >= 0)
                created = true;
        else if (errno == EEXIST)
                fd = openat(dirfd, DRILL_LOG, O_RDWR | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return negerrno();
        if (created && fchmod(fd, 0600) < 0)
                return negerrno();
        if (created)
                stamp_owner_adopt(dirfd, fd); /* after the chmod, which needs it ours */
        buf = malloc(strlen(line) + 3);
        if (!buf)
                return -ENOMEM;
        len = 0;
        if (st.st_size > 0) {
                char last;
                if (pread(fd, &last, 1, st.st_size - 1) == 1 && last != '\n')
                        buf[len++] = '\n'; /* end a torn line */
        }
        memcpy(buf + len, line, strlen(line));
        len += strlen(line);
        buf[len++] = '\n';
        n = write(fd, buf, len);
        if (n < 0)
                return negerrno();
        if ((size_t)n != len)
                return -ENOSPC; /* a short write to a regular file: the disk is full */
        if (fsync(fd) < 0)
                return negerrno();
        if (created && fsync(dirfd) < 0)
                return negerrno();
        return 0;
}

static int log_line(char *line, size_t len, bool too_long, unsigned long no, stamp_drill_log_fn fn,
                    void *userdata)
{
        struct stamp_drill_entry e;
        int r;

        if (!too_long && (len == 0 || strspn(line, " \t\r") == len))
                return 0; /* blank */
        if (too_long)
                return fn(no, NULL, -E2BIG, userdata);
        r = stamp_drill_entry_parse(line, len, &e);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return fn(no, NULL, r, userdata);
        r = fn(no, &e, 0, userdata);
        stamp_drill_entry_release(&e);
        return r;
}

/*
 * Lines longer than STAMP_JSON_MAX are not kept in memory: such a line is
 * reported as too long and skipped to its end.
 */
int stamp_drill_log_read(struct stamp_store *s, stamp_drill_log_fn fn, void *userdata)
{
        _cleanup_close_ int fd = openat(stamp_store_dirfd(s), DRILL_LOG,
                                        O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_free_ char *line = NULL;
        size_t len = 0, cap = 0;
        bool too_long = false;
        unsigned long no = 1;
        char buf[65536];
        int r = 0;

        if (fd < 0)
                return negerrno();
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negerrno();
                if (n == 0)
                        break;
                for (ssize_t i = 0; i < n && r == 0; i++) {
                        if (buf[i] == '\n') {
                                if (line)
                                        line[len] = 0;
                                r = log_line(line ? line : (char[]){ 0 }, len, too_long, no++, fn,
                                             userdata);
                                len = 0;
                                too_long = false;
                                continue;
                        }
                        if (too_long)
                                continue;
                        if (len + 1 >= STAMP_JSON_MAX) {
                                too_long = true;
                                continue;
                        }
                        if (len + 2 > cap) {
                                size_t ncap = cap ? 2 * cap : 4096;
                                char *nl = realloc(line, ncap);
                                if (!nl)
                                        return -ENOMEM;
                                line = nl;
                                cap = ncap;
                        }
                        line[len++] = buf[i];
                }
                if (r != 0)
                        return r;
        }
        if (line && (len || too_long)) {
                /* The last line has no newline: torn by a crash during its append. */
                line[len] = 0;
                r = log_line(line, len, too_long, no, fn, userdata);
        }
        return r;
}

/* SPDX-License-Identifier: MIT */
/*
 * oplog.so: an LD_PRELOAD recorder of every change a process makes below
 * one directory, for the power-loss test (tests/integration/powerloss.py
 * replays the log into crash states). Only tests use it.
 *
 *   STAMP_OPLOG=FILE        append the records to FILE
 *   STAMP_OPLOG_ROOT=DIR    record only paths below DIR (absolute, no symlinks)
 *   STAMP_OPLOG_NOSYNC=1    the negative control: fsyncs happen but are not
 *                           recorded, as if the program never asked
 *   STAMP_OPLOG_FAIL=N      fault injection (with or without STAMP_OPLOG):
 *                           the Nth change below ROOT (counted as the
 *                           records are, from 1) fails with
 *   STAMP_OPLOG_ERRNO=E     EIO (default), ENOSPC or EDQUOT, without
 *                           happening; with
 *   STAMP_OPLOG_FAIL_ALL=1  every change from the Nth on fails (a disk
 *                           that went bad for good)
 *
 * Records, one text line each (paths are below ROOT, relative, %-escaped):
 *   C INO PATH       a file created (open with O_CREAT of a missing name)
 *   W INO OFF LEN    LEN bytes written at OFF; the bytes follow the line
 *   T INO LEN        ftruncate
 *   F INO            fsync or fdatasync of a file
 *   D PATH           fsync of a directory
 *   R OLD NEW        rename (renameat2 with RENAME_NOREPLACE too)
 *   L OLD NEW        link
 *   U PATH           unlink
 *   X PATH           rmdir
 *   M PATH           mkdir
 *   S                syncfs or sync: everything durable
 * Only calls that succeeded are recorded. A process-wide lock around each
 * call and its record keeps the log in the order the calls took effect.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FDS 65536

struct fdinfo {
        char *path; /* absolute, normalised */
        ino_t ino;
        bool dir, rec; /* rec: below ROOT */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct fdinfo fds[MAX_FDS];
static int log_fd = -1;
static char root[PATH_MAX];
static size_t root_len;
static bool nosync;
static bool ready;
static unsigned long changes, fail_at; /* fault injection */
static bool fail_all;
static int fail_errno = EIO;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_close)(int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_syncfs)(int);
static int (*real_renameat2)(int, const char *, int, const char *, unsigned);
static int (*real_linkat)(int, const char *, int, const char *, int);
static int (*real_unlinkat)(int, const char *, int);
static int (*real_mkdirat)(int, const char *, mode_t);

static void init(void)
{
        const char *file = getenv("STAMP_OPLOG"), *r = getenv("STAMP_OPLOG_ROOT");

        real_open = dlsym(RTLD_NEXT, "open64");
        real_openat = dlsym(RTLD_NEXT, "openat64");
        real_close = dlsym(RTLD_NEXT, "close");
        real_write = dlsym(RTLD_NEXT, "write");
        real_pwrite = dlsym(RTLD_NEXT, "pwrite64");
        real_ftruncate = dlsym(RTLD_NEXT, "ftruncate64");
        real_fsync = dlsym(RTLD_NEXT, "fsync");
        real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
        real_syncfs = dlsym(RTLD_NEXT, "syncfs");
        real_renameat2 = dlsym(RTLD_NEXT, "renameat2");
        real_linkat = dlsym(RTLD_NEXT, "linkat");
        real_unlinkat = dlsym(RTLD_NEXT, "unlinkat");
        real_mkdirat = dlsym(RTLD_NEXT, "mkdirat");
        const char *fail = getenv("STAMP_OPLOG_FAIL"), *e = getenv("STAMP_OPLOG_ERRNO");

        if (!r || strlen(r) >= sizeof(root) || r[0] != '/')
                return;
        if (fail)
                fail_at = strtoul(fail, NULL, 10);
        fail_all = getenv("STAMP_OPLOG_FAIL_ALL") != NULL;
        if (e && strcmp(e, "ENOSPC") == 0)
                fail_errno = ENOSPC;
        else if (e && strcmp(e, "EDQUOT") == 0)
                fail_errno = EDQUOT;
        strcpy(root, r);
        root_len = strlen(root);
        while (root_len > 1 && root[root_len - 1] == '/')
                root[--root_len] = 0;
        nosync = getenv("STAMP_OPLOG_NOSYNC") != NULL;
        log_fd = file ? real_open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600) : -1;
        if (log_fd >= 0) {
                /* Far from the fds the program uses, so that they never collide. */
                int high = fcntl(log_fd, F_DUPFD_CLOEXEC, 1000);
                if (high >= 0) {
                        real_close(log_fd);
                        log_fd = high;
                }
        }
        ready = log_fd >= 0 || fail_at > 0;
}

/* Before anything: another library's constructor may open files before ours runs. */
__attribute__((constructor)) static void ensure(void)
{
        pthread_once(&once, init);
}

/* Joins @base and @name into @out, dropping "." and "" and resolving "..". */
static void join(const char *base, const char *name, char *out, size_t size)
{
        char tmp[2 * PATH_MAX + 2], *save = NULL, *seg;
        size_t n = 0;

        if (name[0] == '/')
                snprintf(tmp, sizeof(tmp), "%s", name);
        else
                snprintf(tmp, sizeof(tmp), "%s/%s", base, name);
        out[0] = 0;
        for (seg = strtok_r(tmp, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
                if (strcmp(seg, ".") == 0)
                        continue;
                if (strcmp(seg, "..") == 0) {
                        char *slash = strrchr(out, '/');
                        n = slash ? (size_t)(slash - out) : 0;
                        out[n] = 0;
                        continue;
                }
                n += (size_t)snprintf(out + n, size - n, "/%s", seg);
                if (n >= size)
                        n = size - 1;
        }
        if (!out[0])
                snprintf(out, size, "/");
}

/* The absolute path of @name relative to @dirfd. */
static void resolve(int dirfd, const char *name, char *out, size_t size)
{
        char cwd[PATH_MAX];
        const char *base = "/";

        if (name[0] != '/') {
                if (dirfd == AT_FDCWD)
                        base = getcwd(cwd, sizeof(cwd)) ? cwd : "/";
                else if (dirfd >= 0 && dirfd < MAX_FDS && fds[dirfd].path)
                        base = fds[dirfd].path;
                else
                        base = "/nonexistent-dirfd";
        }
        join(base, name, out, size);
}

/* The part of @abs below the root ("." for the root itself), or NULL. */
static const char *below_root(const char *abs)
{
        if (strncmp(abs, root, root_len) != 0)
                return NULL;
        if (abs[root_len] == 0)
                return ".";
        if (abs[root_len] != '/')
                return NULL;
        return abs + root_len + 1;
}

/*
 * Counts one change below the root, called with the lock held before it is
 * made: true (errno set) if fault injection says it fails instead.
 */
static bool inject(void)
{
        changes++;
        if (fail_at && (changes == fail_at || (fail_all && changes > fail_at))) {
                errno = fail_errno;
                return true;
        }
        return false;
}

static void emit(const char *line, const void *data, size_t len)
{
        struct iovec v[2] = { { (void *)line, strlen(line) }, { (void *)data, len } };
        size_t want = v[0].iov_len + len;
        ssize_t n;

        if (log_fd < 0)
                return;
        n = writev(log_fd, v, data ? 2 : 1);

        if (n != (ssize_t)want) {
                /* A torn log would give wrong crash states: stop the test. */
                static const char msg[] = "oplog: cannot write the log\n";
                (void)!real_write(2, msg, sizeof(msg) - 1);
                abort();
        }
}

/* %-escapes @path (spaces, '%', control bytes) into @out. */
static void escape(const char *path, char *out, size_t size)
{
        size_t n = 0;

        for (const unsigned char *p = (const unsigned char *)path; *p && n + 4 < size; p++) {
                if (*p <= ' ' || *p == '%' || *p >= 0x7f)
                        n += (size_t)snprintf(out + n, size - n, "%%%02X", *p);
                else
                        out[n++] = (char)*p;
        }
        out[n] = 0;
}

static void emitf(const void *data, size_t len, const char *fmt, ...)
{
        char line[3 * 3 * PATH_MAX + 64];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        emit(line, data, len);
}

static void track(int fd, const char *abs)
{
        struct stat st;

        if (fd < 0 || fd >= MAX_FDS)
                return;
        free(fds[fd].path);
        fds[fd].path = strdup(abs);
        fds[fd].rec = below_root(abs) != NULL;
        fds[fd].dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
        fds[fd].ino = st.st_ino;
}

static int do_openat(int dirfd, const char *name, int flags, mode_t mode)
{
        char abs[PATH_MAX], esc[3 * PATH_MAX];
        bool existed = true;
        const char *rel;
        int fd;

        if (!ready)
                return real_openat(dirfd, name, flags, mode);
        pthread_mutex_lock(&lock);
        resolve(dirfd, name, abs, sizeof(abs));
        rel = below_root(abs);
        if (rel && (flags & O_CREAT))
                existed = faccessat(AT_FDCWD, abs, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
        if (!existed && inject()) {
                pthread_mutex_unlock(&lock);
                return -1;
        }
        fd = real_openat(dirfd, name, flags, mode);
        if (fd >= 0) {
                track(fd, abs);
                if (rel && !existed && fd < MAX_FDS) {
                        escape(rel, esc, sizeof(esc));
                        emitf(NULL, 0, "C %llu %s\n", (unsigned long long)fds[fd].ino, esc);
                }
        }
        pthread_mutex_unlock(&lock);
        return fd;
}

static mode_t mode_arg(int flags, va_list ap)
{
        return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...)
{
        va_list ap;
        mode_t m;

        ensure();
        va_start(ap, flags);
        m = mode_arg(flags, ap);
        va_end(ap);
        return do_openat(AT_FDCWD, path, flags, m);
}

int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int openat(int dirfd, const char *path, int flags, ...)
{
        va_list ap;
        mode_t m;

        ensure();
        va_start(ap, flags);
        m = mode_arg(flags, ap);
        va_end(ap);
        return do_openat(dirfd, path, flags, m);
}

int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

int close(int fd)
{
        ensure();
        if (fd == log_fd && ready) {
                errno = EBADF; /* ours */
                return -1;
        }
        if (ready && fd >= 0 && fd < MAX_FDS) {
                pthread_mutex_lock(&lock);
                free(fds[fd].path);
                fds[fd].path = NULL;
                fds[fd].rec = false;
                pthread_mutex_unlock(&lock);
        }
        return real_close(fd);
}

/* Whether writes to @fd are recorded; if so, returns with the lock held. */
static bool recorded(int fd)
{
        if (!ready || fd < 0 || fd >= MAX_FDS)
                return false;
        pthread_mutex_lock(&lock);
        if (fds[fd].rec && !fds[fd].dir)
                return true;
        pthread_mutex_unlock(&lock);
        return false;
}

ssize_t write(int fd, const void *buf, size_t len)
{
        ssize_t n;
        off_t off;

        ensure();
        if (!recorded(fd))
                return real_write(fd, buf, len);
        if (inject()) {
                pthread_mutex_unlock(&lock);
                return -1;
        }
        off = lseek(fd, 0, SEEK_CUR);
        n = real_write(fd, buf, len);
        if (n > 0 && off >= 0)
                emitf(buf, (size_t)n, "W %llu %lld %zd\n", (unsigned long long)fds[fd].ino,
                      (long long)off, n);
        pthread_mutex_unlock(&lock);
        return n;
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
        ssize_t n;

        ensure();
        if (!recorded(fd))
                return real_pwrite(fd, buf, len, off);
        if (inject()) {
                pthread_mutex_unlock(&lock);
                return -1;
        }
        n = real_pwrite(fd, buf, len, off);
        if (n > 0)
                emitf(buf, (size_t)n, "W %llu %lld %zd\n", (unsigned long long)fds[fd].ino,
                      (long long)off, n);
        pthread_mutex_unlock(&lock);
        return n;
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off) __attribute__((alias("pwrite")));

int ftruncate(int fd, off_t len)
{
        int r;

        ensure();
        if (!recorded(fd))
                return real_ftruncate(fd, len);
        if (inject()) {
                pthread_mutex_unlock(&lock);
                return -1;
        }
        r = real_ftruncate(fd, len);
        if (r == 0)
                emitf(NULL, 0, "T %llu %lld\n", (unsigned long long)fds[fd].ino, (long long)len);
        pthread_mutex_unlock(&lock);
        return r;
}

int ftruncate64(int fd, off_t len) __attribute__((alias("ftruncate")));

static int do_sync(int fd, int (*fn)(int))
{
        char esc[3 * PATH_MAX];
        int r;

        ensure();
        if (!ready || fd < 0 || fd >= MAX_FDS || !fds[fd].rec)
                return fn(fd);
        pthread_mutex_lock(&lock);
        r = inject() ? -1 : fn(fd);
        if (r == 0 && !nosync) {
                if (fds[fd].dir) {
                        escape(below_root(fds[fd].path), esc, sizeof(esc));
                        emitf(NULL, 0, "D %s\n", esc);
                } else
                        emitf(NULL, 0, "F %llu\n", (unsigned long long)fds[fd].ino);
        }
        pthread_mutex_unlock(&lock);
        return r;
}

int fsync(int fd)
{
        return do_sync(fd, real_fsync);
}

int fdatasync(int fd)
{
        return do_sync(fd, real_fdatasync);
}

int syncfs(int fd)
{
        int r;

        ensure();
        if (!ready)
                return real_syncfs(fd);
        pthread_mutex_lock(&lock);
        r = inject() ? -1 : real_syncfs(fd);
        if (r == 0 && !nosync)
                emitf(NULL, 0, "S\n");
        pthread_mutex_unlock(&lock);
        return r;
}

/* Records a two-path operation @op if both paths are below the root. */
static void emit2(char op, const char *a, const char *b)
{
        char ea[3 * PATH_MAX], eb[3 * PATH_MAX];
        const char *ra = below_root(a), *rb = below_root(b);

        if (!ra || !rb)
                return;
        escape(ra, ea, sizeof(ea));
        escape(rb, eb, sizeof(eb));
        emitf(NULL, 0, "%c %s %s\n", op, ea, eb);
}

static void emit1(char op, const char *a)
{
        char ea[3 * PATH_MAX];
        const char *ra = below_root(a);

        if (!ra)
                return;
        escape(ra, ea, sizeof(ea));
        emitf(NULL, 0, "%c %s\n", op, ea);
}

static int call_renameat2(int od, const char *o, int nd, const char *n, int flags)
{
        return real_renameat2(od, o, nd, n, (unsigned)flags);
}

/* A rename ('R') or link ('L') through @call: recorded and counted like the others. */
static int two_paths(char op, int (*call)(int, const char *, int, const char *, int), int od,
                     const char *o, int nd, const char *n, int flags)
{
        char a[PATH_MAX], b[PATH_MAX];
        int r;

        ensure();
        if (!ready)
                return call(od, o, nd, n, flags);
        pthread_mutex_lock(&lock);
        resolve(od, o, a, sizeof(a));
        resolve(nd, n, b, sizeof(b));
        if (below_root(a) && below_root(b) && inject())
                r = -1;
        else
                r = call(od, o, nd, n, flags);
        if (r == 0)
                emit2(op, a, b);
        pthread_mutex_unlock(&lock);
        return r;
}

int renameat2(int od, const char *o, int nd, const char *n, unsigned flags)
{
        return two_paths('R', call_renameat2, od, o, nd, n, (int)flags);
}

int renameat(int od, const char *o, int nd, const char *n)
{
        return renameat2(od, o, nd, n, 0);
}

int rename(const char *o, const char *n)
{
        return renameat2(AT_FDCWD, o, AT_FDCWD, n, 0);
}

int linkat(int od, const char *o, int nd, const char *n, int flags)
{
        ensure(); /* real_linkat is set by it */
        return two_paths('L', real_linkat, od, o, nd, n, flags);
}

int link(const char *o, const char *n)
{
        return linkat(AT_FDCWD, o, AT_FDCWD, n, 0);
}

static int call_unlinkat(int dirfd, const char *name, int flags)
{
        return real_unlinkat(dirfd, name, flags);
}

static int call_mkdirat(int dirfd, const char *name, int mode)
{
        return real_mkdirat(dirfd, name, (mode_t)mode);
}

/* An unlink, rmdir or mkdir (@op) through @call: recorded and counted like the others. */
static int one_path(char op, int (*call)(int, const char *, int), int dirfd, const char *name,
                    int arg)
{
        char a[PATH_MAX];
        int r;

        ensure();
        if (!ready)
                return call(dirfd, name, arg);
        pthread_mutex_lock(&lock);
        resolve(dirfd, name, a, sizeof(a));
        if (below_root(a) && inject())
                r = -1;
        else
                r = call(dirfd, name, arg);
        if (r == 0)
                emit1(op, a);
        pthread_mutex_unlock(&lock);
        return r;
}

int unlinkat(int dirfd, const char *name, int flags)
{
        return one_path(flags & AT_REMOVEDIR ? 'X' : 'U', call_unlinkat, dirfd, name, flags);
}

int unlink(const char *name)
{
        return unlinkat(AT_FDCWD, name, 0);
}

int rmdir(const char *name)
{
        return unlinkat(AT_FDCWD, name, AT_REMOVEDIR);
}

int mkdirat(int dirfd, const char *name, mode_t mode)
{
        return one_path('M', call_mkdirat, dirfd, name, (int)mode);
}

int mkdir(const char *name, mode_t mode)
{
        return mkdirat(AT_FDCWD, name, mode);
}

/* SPDX-License-Identifier: MIT */
/*
 * Restore drills through the library: the compare step finds each kind of
 * difference between a restored copy and its snapshot (and none in an
 * exact copy), the check step finds invalid JSON and databases, a whole
 * drill passes, the drill log survives damaged and torn lines, and scratch
 * directories of dead drills are removed while live and kept ones stay.
 */
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "drill.h"
#include "restore.h"
#include "snapshot.h"
#include "store.h"
#include "tests.h"

static char *tmp;
static char stamp[STAMP_STAMP_LEN + 1];
static bool have_xattrs;

static char *at(const char *rel)
{
        static char bufs[4][1024];
        static int i;
        char *b = bufs[i++ % 4];

        snprintf(b, sizeof(bufs[0]), "%s/%s", tmp, rel);
        return b;
}

static void put(const char *rel, const void *data, size_t len, mode_t mode)
{
        int fd = open(at(rel), O_WRONLY | O_CREAT | O_TRUNC, mode);

        CHECK(fd >= 0);
        CHECK(write(fd, data, len) == (ssize_t)len);
        close(fd);
}

static void make_source(void)
{
        static unsigned char data[300000];
        unsigned char db[4096] = "SQLite format 3";

        fill_random(data, sizeof(data), 7);
        CHECK(mkdir(at("src"), 0755) == 0);
        CHECK(mkdir(at("src/sub"), 0750) == 0);
        put("src/data", data, sizeof(data), 0644);
        put("src/small.txt", "small\n", 6, 0640);
        put("src/sub/f", "f\n", 2, 0600);
        put("src/sub/hl1", "linked\n", 7, 0644);
        CHECK(link(at("src/sub/hl1"), at("src/hl2")) == 0);
        CHECK(symlink("data", at("src/link")) == 0);
        put("src/good.json", "{\"a\": [1, 2]}", 13, 0644);
        /* A database header over garbage: a "database" that cannot pass. */
        fill_random(db + 16, sizeof(db) - 16, 3);
        put("src/fake.db", db, sizeof(db), 0644);
        have_xattrs = setxattr(at("src/data"), "user.k", "v", 1, 0) == 0;
}

/* Makes r/ an exact copy again (--checksum: a same-size, same-time edit is found too). */
static void restore(struct stamp_store *s)
{
        struct stamp_restore_options o = { .stamp = stamp, .checksum = true, .no_db_check = true };
        struct stamp_restore_stats st;
        char err[256];
        int fd;

        (void)mkdir(at("r"), 0700);
        fd = open(at("r"), O_RDONLY | O_DIRECTORY);
        CHECK(fd >= 0);
        CHECK_OK(stamp_restore(s, fd, &o, &st, err, sizeof(err)));
        stamp_restore_stats_release(&st);
        close(fd);
}

static bool has_problem(const struct stamp_drill_entry *e, const char *kind, const char *path)
{
        for (size_t i = 0; i < e->problems_len; i++)
                if (strcmp(e->problems[i].kind, kind) == 0 && e->problems[i].path &&
                    strcmp(e->problems[i].path, path) == 0)
                        return true;
        return false;
}

static void dump(const struct stamp_drill_entry *e)
{
        for (size_t i = 0; i < e->problems_len; i++)
                fprintf(stderr, "  %s %s: %s\n", e->problems[i].kind,
                        e->problems[i].path ? e->problems[i].path : "-", e->problems[i].detail);
}

/* Compares r/ with the snapshot: @kind at @path must be among the problems (none if NULL). */
static void expect(struct stamp_store *s, const char *kind, const char *path)
{
        struct stamp_drill_entry e = { 0 };
        int fd = open(at("r"), O_RDONLY | O_DIRECTORY);

        CHECK(fd >= 0);
        CHECK_OK(stamp_drill_compare_tree(s, stamp, fd, &e));
        close(fd);
        if (kind ? !has_problem(&e, kind, path) : e.n_problems != 0) {
                fprintf(stderr, "expected %s at %s, got:\n", kind ? kind : "nothing",
                        path ? path : "-");
                dump(&e);
                CHECK(false);
        }
        stamp_drill_entry_release(&e);
}

/* Keeps the modification time of @rel across a change, so only the change shows. */
static void keep_mtime(const char *rel, struct timespec *saved, bool restore_it)
{
        struct stat st;

        if (!restore_it) {
                CHECK(lstat(at(rel), &st) == 0);
                saved[0] = st.st_atim;
                saved[1] = st.st_mtim;
        } else {
                CHECK(utimensat(AT_FDCWD, at(rel), saved, AT_SYMLINK_NOFOLLOW) == 0);
        }
}

static void test_compare(struct stamp_store *s)
{
        struct timespec t[2], td[2];
        int fd;

        restore(s);
        expect(s, NULL, NULL);

        /* One byte, same size and time. */
        keep_mtime("r/data", t, false);
        fd = open(at("r/data"), O_WRONLY);
        CHECK(fd >= 0 && pwrite(fd, "X", 1, 123456) == 1);
        close(fd);
        keep_mtime("r/data", t, true);
        expect(s, "content_mismatch", "data");
        restore(s);

        CHECK(chmod(at("r/small.txt"), 0600) == 0);
        expect(s, "mode_mismatch", "small.txt");
        restore(s);

        t[0].tv_nsec = t[1].tv_nsec = UTIME_NOW;
        CHECK(utimensat(AT_FDCWD, at("r/sub/f"), t, 0) == 0);
        expect(s, "mtime_mismatch", "sub/f");
        restore(s);

        keep_mtime("r/small.txt", t, false);
        CHECK(truncate(at("r/small.txt"), 2) == 0);
        keep_mtime("r/small.txt", t, true);
        expect(s, "size_mismatch", "small.txt");
        restore(s);

        keep_mtime("r/sub", td, false);
        CHECK(unlink(at("r/sub/f")) == 0);
        keep_mtime("r/sub", td, true);
        expect(s, "missing", "sub/f");
        restore(s);

        put("r/sub/extra", "x", 1, 0644);
        expect(s, "unexpected", "sub/extra");
        restore(s);

        CHECK(unlink(at("r/link")) == 0 && symlink("small.txt", at("r/link")) == 0);
        expect(s, "symlink_mismatch", "link");
        restore(s);

        /* hl2 becomes a file of its own with the same content and metadata. */
        keep_mtime("r/hl2", t, false);
        CHECK(unlink(at("r/hl2")) == 0);
        put("r/hl2", "linked\n", 7, 0644);
        keep_mtime("r/hl2", t, true);
        expect(s, "hardlink_mismatch", "sub/hl1");
        restore(s);

        CHECK(unlink(at("r/small.txt")) == 0 && mkdir(at("r/small.txt"), 0640) == 0);
        expect(s, "type_mismatch", "small.txt");
        restore(s);

        if (have_xattrs) {
                CHECK(setxattr(at("r/small.txt"), "user.extra", "1", 1, 0) == 0);
                expect(s, "xattr_mismatch", "small.txt");
                restore(s);
                CHECK(setxattr(at("r/data"), "user.k", "w", 1, 0) == 0);
                expect(s, "xattr_mismatch", "data");
                restore(s);
        }
        if (geteuid() == 0) {
                CHECK(lchown(at("r/link"), 1, 1) == 0);
                expect(s, "owner_mismatch", "link");
                restore(s);
        }
        /* The root's own metadata comes from the record. */
        CHECK(chmod(at("r"), 0701) == 0);
        expect(s, "mode_mismatch", ".");
        restore(s);
        expect(s, NULL, NULL);
}

static void test_check(void)
{
        struct stamp_drill_entry e = { 0 };
        int fd;

        CHECK(mkdir(at("chk"), 0700) == 0 && mkdir(at("chk/d"), 0700) == 0);
        put("chk/d/bad.JSON", "{\"a\": 1,}", 9, 0644);
        put("chk/good.json", " [true, null] ", 14, 0644);
        put("chk/notjson.txt", "{", 1, 0644);
        fd = open(at("chk"), O_RDONLY | O_DIRECTORY);
        CHECK(fd >= 0);
        CHECK_OK(stamp_drill_check_tree(fd, &e));
        close(fd);
        CHECK(e.json_files == 2 && e.databases == 0);
        CHECK(e.n_problems == 1 && has_problem(&e, "json_invalid", "d/bad.JSON"));
        stamp_drill_entry_release(&e);
}

static void test_run(struct stamp_store *s)
{
        struct stamp_drill_options o = { .stamp = stamp, .read_data = true };
        struct stamp_drill_entry e;
        int fd;

        CHECK(mkdir(at("scratch"), 0700) == 0);
        fd = open(at("scratch"), O_RDONLY | O_DIRECTORY);
        CHECK(fd >= 0);
        CHECK_OK(stamp_drill_run(s, fd, &o, &e));
        close(fd);
        /* Only the fake database fails: restored exactly, and checked from disk. */
        if (e.n_problems != 1)
                dump(&e);
        CHECK(!e.pass && e.n_problems == 1 && e.databases == 1 && e.json_files == 1);
        CHECK(strcmp(e.problems[0].path, "fake.db") == 0);
        CHECK(e.files == 6 && e.bytes == 300000 + 6 + 2 + 7 + 13 + 4096);
        for (int i = 0; i < _STAMP_DRILL_STEP_MAX; i++)
                CHECK(e.step_ran[i]);
        CHECK(e.read_data && strlen(e.started) == 30);
        stamp_drill_entry_release(&e);
}

struct seen {
        unsigned long lines[16];
        int errors[16];
        char stamps[16][STAMP_STAMP_LEN + 1];
        size_t n;
};

static int on_line(unsigned long line, const struct stamp_drill_entry *e, int error,
                   void *userdata)
{
        struct seen *v = userdata;

        CHECK(v->n < 16);
        v->lines[v->n] = line;
        v->errors[v->n] = error;
        strcpy(v->stamps[v->n], e ? e->stamp : "");
        v->n++;
        return 0;
}

static void append_raw(const char *text)
{
        int fd = open(at("store/drill.log"), O_WRONLY | O_APPEND);

        CHECK(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text));
        close(fd);
}

static void test_log(struct stamp_store *s)
{
        struct stamp_drill_entry e = { .pass = true, .scratch = (char *)"/x" };
        struct seen v = { 0 };
        struct stat st;

        CHECK_RC(stamp_drill_log_read(s, on_line, &v), -ENOENT);
        strcpy(e.stamp, "20260407T060000Z");
        strcpy(e.started, "2026-04-12T05:00:00.000000000Z");
        CHECK_OK(stamp_drill_log_append(s, &e));
        CHECK(stat(at("store/drill.log"), &st) == 0 && (st.st_mode & 0777) == 0600);
        strcpy(e.stamp, "20260408T060000Z");
        CHECK_OK(stamp_drill_log_append(s, &e));
        append_raw("\n{\"v\": 1, \"garbage\": true}\n{\"v\": 9}\n{\"v\":1,\"stamp\":\"2026");
        strcpy(e.stamp, "20260409T060000Z");
        CHECK_OK(stamp_drill_log_append(s, &e)); /* ends the torn line first */
        CHECK_OK(stamp_drill_log_read(s, on_line, &v));
        CHECK(v.n == 6);
        CHECK(v.lines[0] == 1 && v.errors[0] == 0 && strcmp(v.stamps[0], "20260407T060000Z") == 0);
        CHECK(v.lines[1] == 2 && v.errors[1] == 0 && strcmp(v.stamps[1], "20260408T060000Z") == 0);
        /* line 3 is blank: skipped */
        CHECK(v.lines[2] == 4 && v.errors[2] == -EBADMSG);
        CHECK(v.lines[3] == 5 && v.errors[3] == -EOPNOTSUPP);
        CHECK(v.lines[4] == 6 && v.errors[4] == -EBADMSG);
        CHECK(v.lines[5] == 7 && v.errors[5] == 0 && strcmp(v.stamps[5], "20260409T060000Z") == 0);
        /* A last line without its newline is read (and here, damaged). */
        append_raw("{\"v\":");
        v.n = 0;
        CHECK_OK(stamp_drill_log_read(s, on_line, &v));
        CHECK(v.n == 7 && v.lines[6] == 8 && v.errors[6] == -EBADMSG);
        e.scratch = NULL;
}

static void test_scratch(struct stamp_store *s)
{
        char *p1, *p2, *p3, *kept;
        unsigned stale;
        int fd1, fd2, fd3, sub;

        fd1 = stamp_drill_scratch_new(s, &p1, &stale);
        CHECK(fd1 >= 0 && stale == 0);
        CHECK(strncmp(p1, at("store/tmp/drill-"), strlen(at("store/tmp/drill-"))) == 0);
        /* A copy with read-only and unsearchable directories and a symlink out. */
        CHECK(mkdirat(fd1, "ro", 0700) == 0 && mkdirat(fd1, "ro/inner", 0700) == 0);
        sub = openat(fd1, "ro/inner", O_RDONLY | O_DIRECTORY);
        CHECK(sub >= 0);
        CHECK(close(openat(sub, "f", O_WRONLY | O_CREAT, 0400)) == 0);
        close(sub);
        CHECK(fchmodat(fd1, "ro/inner", 0000, 0) == 0 && fchmodat(fd1, "ro", 0555, 0) == 0);
        CHECK(symlinkat(at("src"), fd1, "out") == 0);

        /* A live drill's scratch is left alone... */
        fd2 = stamp_drill_scratch_new(s, &p2, &stale);
        CHECK(fd2 >= 0 && stale == 0 && strcmp(p1, p2) != 0);
        CHECK(access(p1, F_OK) == 0);
        /* ... a dead one's is removed, without following its symlink. */
        close(fd1);
        fd3 = stamp_drill_scratch_new(s, &p3, &stale);
        CHECK(fd3 >= 0 && stale == 1 && access(p1, F_OK) < 0 && errno == ENOENT);
        CHECK(access(at("src/data"), F_OK) == 0);
        /* A kept one is renamed out of the way of later drills. */
        CHECK_OK(stamp_drill_scratch_keep(p2, &kept));
        close(fd2);
        close(fd3);
        free(p3);
        fd3 = stamp_drill_scratch_new(s, &p3, &stale);
        CHECK(fd3 >= 0 && stale == 1 && access(kept, F_OK) == 0);
        CHECK_OK(stamp_drill_remove_tree(AT_FDCWD, kept));
        CHECK(access(kept, F_OK) < 0);
        /* Emptying keeps the directory itself. */
        CHECK(mkdirat(fd3, "d", 0500) == 0);
        CHECK_OK(stamp_drill_empty_dir(fd3));
        CHECK(access(p3, F_OK) == 0 && rmdir(p3) == 0);
        close(fd3);
        free(p1);
        free(p2);
        free(p3);
        free(kept);
}

int main(void)
{
        struct stamp_init_options io;
        struct stamp_store *s;

        tmp = make_tmpdir();
        make_source();
        stamp_init_options_default(&io);
        CHECK_OK(stamp_store_init(at("store"), &io));
        CHECK_OK(stamp_store_open(at("store"), &s));
        take_snapshot(s, at("src"), stamp);
        test_compare(s);
        test_check();
        test_run(s);
        test_log(s);
        test_scratch(s);
        stamp_store_free(s);
        rm_rf(tmp);
        free(tmp);
        printf("test-drill: ok\n");
        return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * sqlite-capture: consistent copies of databases, including commits that
 * live only in the -wal file; plain files and bad databases are refused with
 * a reason; the temporary file never stays behind. The databases are made
 * and checked with python3's sqlite3 module (tests do not include sqlite3.h:
 * only store/ does).
 */
#include <dirent.h>
#include <stdarg.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sqlite-capture.h"
#include "tests.h"

static char *dir, tmp[512];

static void run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void run(const char *fmt, ...)
{
        char cmd[4096];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(cmd, sizeof(cmd), fmt, ap);
        va_end(ap);
        if (system(cmd) != 0) {
                fprintf(stderr, "command failed: %s\n", cmd);
                abort();
        }
}

static int count_entries(const char *path)
{
        DIR *d = opendir(path);
        struct dirent *de;
        int n = 0;

        CHECK(d);
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

/* The capture's receiver: appends to the fd in *userdata. */
static int save(void *userdata, const void *buf, size_t len)
{
        int fd = *(int *)userdata;

        CHECK(len > 0);
        CHECK(write(fd, buf, len) == (ssize_t)len);
        return 0;
}

static int fail_write(void *userdata, const void *buf, size_t len)
{
        (void)userdata;
        (void)buf;
        (void)len;
        return -ENOSPC;
}

/* Captures @db into the file @out. */
static int capture_to(const char *db, const char *out, struct stamp_capture_info *info,
                      char *reason, size_t size)
{
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), r;

        CHECK(fd >= 0);
        r = stamp_sqlite_capture(db, tmp, save, &fd, info, reason, size);
        close(fd);
        return r;
}

static void test_header(void)
{
        uint8_t head[STAMP_SQLITE_HEADER_SIZE] = "SQLite format 3";

        CHECK(stamp_capture_is_sqlite(head, sizeof(head)));
        CHECK(!stamp_capture_is_sqlite(head, 16)); /* too short for a database */
        head[3] = 'L';
        CHECK(!stamp_capture_is_sqlite(head, sizeof(head)));
}

/* Commits that are only in the -wal (the writer died without a checkpoint) are in the copy. */
static void test_wal(void)
{
        struct stamp_capture_info info;
        char db[600], out[600], reason[256];

        snprintf(db, sizeof(db), "%s/wal.db", dir);
        snprintf(out, sizeof(out), "%s/wal-copy.db", dir);
        run("python3 -c \"\nimport sqlite3, os\n"
            "c = sqlite3.connect('%s', isolation_level=None)\n"
            "c.execute('PRAGMA journal_mode=WAL'); c.execute('PRAGMA wal_autocheckpoint=0')\n"
            "c.execute('CREATE TABLE t(x)')\n"
            "for i in range(500): c.execute('INSERT INTO t VALUES(?)', (os.urandom(300),))\n"
            "os._exit(0)\"",
            db);
        CHECK(access(db, F_OK) == 0);
        run("test -s '%s-wal'", db);
        CHECK_RC(capture_to(db, out, &info, reason, sizeof(reason)), 0);
        CHECK(info.wal && !info.direct && info.pinned && info.restarts == 0);
        CHECK(info.size > 0 && info.size % 4096 == 0);
        CHECK(count_entries(tmp) == 0); /* removed */
        run("python3 -c \"\nimport sqlite3\nc = sqlite3.connect('file:%s?mode=ro', uri=True)\n"
            "assert c.execute('PRAGMA integrity_check').fetchone()[0] == 'ok'\n"
            "assert c.execute('SELECT count(*) FROM t').fetchone()[0] == 500\"",
            out);
}

/* A WAL database with an empty -wal: the file itself, streamed as it is. */
static void test_wal_empty(void)
{
        struct stamp_capture_info info;
        char db[600], out[600], reason[256];

        snprintf(db, sizeof(db), "%s/rest.db", dir);
        snprintf(out, sizeof(out), "%s/rest-copy.db", dir);
        run("python3 -c \"\nimport sqlite3, os\n"
            "c = sqlite3.connect('%s', isolation_level=None)\n"
            "c.execute('PRAGMA journal_mode=WAL')\n"
            "c.execute('CREATE TABLE t(x)')\n"
            "c.executemany('INSERT INTO t VALUES(?)', [(os.urandom(700),) for i in range(300)])\n"
            "c.close()\"",
            db);
        CHECK_RC(capture_to(db, out, &info, reason, sizeof(reason)), 0);
        CHECK(info.wal && info.direct && info.pinned);
        run("cmp -s '%s' '%s'", db, out);
        /* The receiver's error stops it and is returned. */
        CHECK_RC(stamp_sqlite_capture(db, tmp, fail_write, NULL, &info, reason, sizeof(reason)),
                 -ENOSPC);
}

/* A rollback-journal database, copied page for page apart from the header's counters. */
static void test_rollback(void)
{
        struct stamp_capture_info info;
        char db[600], out[600], reason[256];

        snprintf(db, sizeof(db), "%s/plain.db", dir);
        snprintf(out, sizeof(out), "%s/plain-copy.db", dir);
        run("python3 -c \"\nimport sqlite3, os\n"
            "c = sqlite3.connect('%s', isolation_level=None)\n"
            "c.execute('CREATE TABLE t(x)')\n"
            "c.executemany('INSERT INTO t VALUES(?)', [(os.urandom(3000),) for i in range(300)])\n"
            "c.close()\"",
            db);
        CHECK_RC(capture_to(db, out, &info, reason, sizeof(reason)), 0);
        CHECK(!info.wal && !info.direct && !info.pinned);
        /* The receiver's error stops it, and the temporary copy goes. */
        CHECK_RC(stamp_sqlite_capture(db, tmp, fail_write, NULL, &info, reason, sizeof(reason)),
                 -ENOSPC);
        CHECK(count_entries(tmp) == 0);
        /* Everything after the first page is identical. */
        run("cmp -s -i 4096 '%s' '%s'", db, out);
        run("python3 -c \"\nimport sqlite3\nc = sqlite3.connect('%s')\n"
            "assert c.execute('SELECT count(*) FROM t').fetchone()[0] == 300\"",
            out);
}

static void test_refused(void)
{
        char db[600], out[600], reason[256] = "";

        snprintf(out, sizeof(out), "%s/refused-copy.db", dir);
        /* The magic, then garbage. */
        snprintf(db, sizeof(db), "%s/bad.db", dir);
        run("printf 'SQLite format 3\\000' > '%s' && head -c 8192 /dev/zero | tr '\\000' x >> '%s'",
            db, db);
        CHECK_RC(capture_to(db, out, NULL, reason, sizeof(reason)), 1);
        CHECK(reason[0]);
        CHECK(count_entries(tmp) == 0);

        /* A hot journal: a writer killed mid-transaction. Read-only cannot roll it back. */
        snprintf(db, sizeof(db), "%s/hot.db", dir);
        run("python3 -c \"\nimport sqlite3, os\n"
            "c = sqlite3.connect('%s', isolation_level=None)\n"
            "c.execute('CREATE TABLE t(x)')\n"
            "c.executemany('INSERT INTO t VALUES(?)', [(os.urandom(1000),) for i in range(2000)])\n"
            "c.execute('PRAGMA cache_size=5'); c.execute('BEGIN')\n"
            "c.execute('UPDATE t SET x = randomblob(1000)')\n"
            "os._exit(0)\"",
            db);
        run("test -s '%s-journal'", db);
        CHECK_RC(capture_to(db, out, NULL, reason, sizeof(reason)), 1);
        CHECK(strstr(reason, "hot journal"));
        CHECK(count_entries(tmp) == 0);

        /* No such file: SQLite will not create it read-only. */
        snprintf(db, sizeof(db), "%s/missing.db", dir);
        CHECK_RC(capture_to(db, out, NULL, reason, sizeof(reason)), 1);
        CHECK(access(db, F_OK) < 0);

        /* The store's side failing is an error, not a refusal. */
        snprintf(db, sizeof(db), "%s/plain.db", dir);
        {
                int fd = open(out, O_WRONLY | O_TRUNC | O_CLOEXEC);
                CHECK(fd >= 0);
                CHECK_RC(stamp_sqlite_capture(db, "/nonexistent-dir", save, &fd, NULL, reason,
                                              sizeof(reason)),
                         -ENOENT);
                close(fd);
        }
}

int main(void)
{
        dir = make_tmpdir();
        snprintf(tmp, sizeof(tmp), "%s/tmp", dir);
        CHECK(mkdir(tmp, 0700) == 0);
        test_header();
        test_wal();
        test_wal_empty();
        test_rollback();
        test_refused();
        rm_rf(dir);
        free(dir);
        return 0;
}

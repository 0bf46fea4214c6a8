/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "tmpfile.h"
#include "tests.h"

static int count(const char *name, void *userdata)
{
        (*(int *)userdata)++;
        CHECK(strncmp(name, "snapshots/", 10) == 0);
        return 0;
}

/* A live writer's temporary file survives cleanup; a dead one's does not. */
static void test_cleanup(const char *dir)
{
        struct stamp_backend *b;
        struct stamp_backend_writer *w;
        char path[600];
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), fd, n;

        CHECK(dfd >= 0);
        CHECK_OK(stamp_backend_local_open(dir, &b));
        CHECK_OK(stamp_backend_writer_open(b, &w));
        CHECK_OK(stamp_backend_writer_write(w, "abc", 3));
        fd = stamp_tmpfile_create_locked(dfd, "tmp/live.scratch", O_RDWR);
        CHECK(fd >= 0);
        CHECK_RC(stamp_tmpfile_create_locked(dfd, "tmp/live.scratch", O_RDWR), -EEXIST);
        CHECK(close(openat(dfd, "tmp/dead.tmp", O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) == 0);
        CHECK_OK(stamp_backend_cleanup(b));
        snprintf(path, sizeof(path), "%s/tmp/dead.tmp", dir);
        CHECK(access(path, F_OK) < 0 && errno == ENOENT);
        snprintf(path, sizeof(path), "%s/tmp/live.scratch", dir);
        CHECK(access(path, F_OK) == 0);
        /* The writer whose file survived can still commit it. */
        CHECK_OK(stamp_backend_writer_commit(w, "snapshots/cleanup.json"));
        close(fd);
        CHECK_OK(stamp_backend_cleanup(b));
        CHECK(access(path, F_OK) < 0 && errno == ENOENT);
        n = 0;
        snprintf(path, sizeof(path), "%s/tmp", dir);
        {
                DIR *d = opendir(path);
                struct dirent *de;
                CHECK(d);
                while ((de = readdir(d)))
                        n += de->d_name[0] != '.';
                closedir(d);
        }
        CHECK(n == 0);
        CHECK_OK(stamp_backend_remove(b, "snapshots/cleanup.json"));
        stamp_backend_free(b);
        close(dfd);
}

int main(void)
{
        char *dir = make_tmpdir(), path[600];
        struct stamp_backend *b;
        uint8_t *buf;
        size_t len;
        uint64_t size;
        int n = 0;
        struct stat st;

        CHECK(stamp_backend_name_valid("packs/ab/ab.pack"));
        CHECK(!stamp_backend_name_valid("../x"));
        CHECK(!stamp_backend_name_valid("/etc/passwd"));
        CHECK(!stamp_backend_name_valid("a//b"));
        CHECK(!stamp_backend_name_valid("a/./b"));
        CHECK(!stamp_backend_name_valid("a b"));
        CHECK(!stamp_backend_name_valid(""));

        CHECK_OK(stamp_backend_local_open(dir, &b));
        CHECK_OK(stamp_backend_put(b, "snapshots/one.json", "{}", 2));
        CHECK_OK(stamp_backend_put(b, "snapshots/two.json", "[]", 2));
        /* Objects are immutable: a second put of the same name is refused. */
        CHECK_RC(stamp_backend_put(b, "snapshots/one.json", "xx", 2), -EEXIST);
        CHECK_RC(stamp_backend_put(b, "../escape", "xx", 2), -EINVAL);
        CHECK_OK(stamp_backend_get(b, "snapshots/one.json", 100, &buf, &len));
        CHECK(len == 2 && memcmp(buf, "{}", 2) == 0 && buf[2] == 0);
        free(buf);
        CHECK_RC(stamp_backend_get(b, "snapshots/one.json", 1, &buf, &len), -EFBIG);
        CHECK_RC(stamp_backend_get(b, "snapshots/none.json", 100, &buf, &len), -ENOENT);
        CHECK_OK(stamp_backend_size(b, "snapshots/two.json", &size));
        CHECK(size == 2);
        {
                char c[4];
                CHECK_RC(stamp_backend_read(b, "snapshots/two.json", 0, c, 4), -EBADMSG);
        }
        CHECK_OK(stamp_backend_list(b, "snapshots/", count, &n));
        CHECK(n == 2);
        /* Files are private whatever the umask. */
        snprintf(path, sizeof(path), "%s/snapshots/one.json", dir);
        CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
        snprintf(path, sizeof(path), "%s/snapshots", dir);
        CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0700);
        CHECK_OK(stamp_backend_remove(b, "snapshots/one.json"));
        CHECK_RC(stamp_backend_remove(b, "snapshots/one.json"), -ENOENT);
        n = 0;
        CHECK_OK(stamp_backend_list(b, "snapshots/", count, &n));
        CHECK(n == 1);
        stamp_backend_free(b);
        test_cleanup(dir);
        rm_rf(dir);
        free(dir);
        printf("test-backend: ok\n");
        return 0;
}

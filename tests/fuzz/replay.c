/* SPDX-License-Identifier: MIT */
/*
 * Runs inputs through a fuzz target without libFuzzer: each argument is a
 * file, or a directory whose regular files are run in name order. Each
 * input is passed in a buffer of exactly its size, so a sanitizer build
 * catches reads past the end. A failed check aborts, like under libFuzzer.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

static size_t n_ok;

static int run_file(int dirfd, const char *name, const char *shown)
{
        struct stat st;
        uint8_t *buf;
        size_t off = 0;
        int fd;

        fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0) {
                fprintf(stderr, "%s: %s\n", shown, strerror(errno));
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        /* An exact-size allocation (malloc(0) may return NULL: use 1 then). */
        buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
        if (!buf) {
                fprintf(stderr, "%s: out of memory\n", shown);
                close(fd);
                return -1;
        }
        while (off < (size_t)st.st_size) {
                ssize_t n = read(fd, buf + off, (size_t)st.st_size - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        fprintf(stderr, "%s: %s\n", shown, n < 0 ? strerror(errno) : "short read");
                        free(buf);
                        close(fd);
                        return -1;
                }
                off += (size_t)n;
        }
        close(fd);
        fprintf(stderr, "running %s (%zu bytes)\n", shown, off);
        LLVMFuzzerTestOneInput(buf, off);
        free(buf);
        n_ok++;
        return 0;
}

static int cmp_names(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *path)
{
        char **names = NULL;
        size_t n = 0;
        struct dirent *de;
        int r = 0, dfd;
        DIR *d = opendir(path);

        if (!d) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -1;
        }
        dfd = dirfd(d);
        while ((de = readdir(d))) {
                struct stat st;
                char **v;
                if (de->d_name[0] == '.')
                        continue;
                if (fstatat(dfd, de->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
                        continue;
                v = realloc(names, (n + 1) * sizeof(*names));
                if (!v || !(v[n] = strdup(de->d_name))) {
                        fprintf(stderr, "out of memory\n");
                        names = v ? v : names;
                        r = -1;
                        break;
                }
                names = v;
                n++;
        }
        if (r == 0) {
                qsort(names, n, sizeof(*names), cmp_names);
                for (size_t i = 0; i < n && r == 0; i++) {
                        char shown[4096];
                        snprintf(shown, sizeof(shown), "%s/%s", path, names[i]);
                        r = run_file(dfd, names[i], shown);
                }
        }
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
        closedir(d);
        return r;
}

int main(int argc, char **argv)
{
        for (int i = 1; i < argc; i++) {
                struct stat st;
                int r;

                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        return 1;
                }
                r = S_ISDIR(st.st_mode) ? run_dir(argv[i]) : run_file(AT_FDCWD, argv[i], argv[i]);
                if (r < 0)
                        return 1;
        }
        printf("%zu inputs ok\n", n_ok);
        return 0;
}

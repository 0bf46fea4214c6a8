/* SPDX-License-Identifier: MIT */
/* Fixtures shared by the unit tests; declared in tests.h. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot.h"
#include "store.h"
#include "tests.h"

void write_random_file(const char *dir, const char *name, size_t size, unsigned long long seed)
{
        unsigned char *data = malloc(size);
        char path[700];
        int fd;

        CHECK(data);
        fill_random(data, size, seed);
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        CHECK(fd >= 0);
        CHECK(write(fd, data, size) == (ssize_t)size);
        close(fd);
        free(data);
}

void take_snapshot(struct stamp_store *s, const char *src, char *ret)
{
        const char *sources[1] = { src };
        struct stamp_snapshot_options o = { .sources = sources, .n_sources = 1, .threads = 2 };
        struct stamp_record rec;
        const char *bad = NULL;

        CHECK_OK(stamp_store_lock(s, 0, "test", NULL, 0));
        CHECK_OK(stamp_store_recover(s));
        CHECK_OK(stamp_snapshot_create(s, &o, &rec, &bad));
        strcpy(ret, rec.stamp);
        stamp_record_release(&rec);
        stamp_store_unlock(s);
}

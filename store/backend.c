/* SPDX-License-Identifier: MIT */
/* Dispatch to a backend's operations, with argument checks in one place. */
#include "backend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool stamp_backend_name_valid(const char *name)
{
        const char *comp = name;

        if (!name || !*name || strlen(name) > 512)
                return false;
        for (const char *p = name;; p++) {
                if (*p == '/' || *p == 0) {
                        size_t len = (size_t)(p - comp);
                        if (len == 0 || (len == 1 && comp[0] == '.') ||
                            (len == 2 && comp[0] == '.' && comp[1] == '.'))
                                return false;
                        if (*p == 0)
                                return true;
                        comp = p + 1;
                        continue;
                }
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
                        return false;
        }
}

void stamp_backend_free(struct stamp_backend *b)
{
        if (b)
                b->ops->free(b);
}

int stamp_backend_writer_open(struct stamp_backend *b, struct stamp_backend_writer **ret)
{
        return b->ops->writer_open(b, ret);
}

int stamp_backend_writer_write(struct stamp_backend_writer *w, const void *data, size_t len)
{
        struct stamp_backend *const *b = (struct stamp_backend *const *)w;

        return (*b)->ops->writer_write(w, data, len);
}

int stamp_backend_writer_commit(struct stamp_backend_writer *w, const char *name)
{
        struct stamp_backend *const *b = (struct stamp_backend *const *)w;

        if (!stamp_backend_name_valid(name)) {
                (*b)->ops->writer_abort(w);
                return -EINVAL;
        }
        return (*b)->ops->writer_commit(w, name);
}

void stamp_backend_writer_abort(struct stamp_backend_writer *w)
{
        struct stamp_backend *const *b = (struct stamp_backend *const *)w;

        if (w)
                (*b)->ops->writer_abort(w);
}

int stamp_backend_put(struct stamp_backend *b, const char *name, const void *data, size_t len)
{
        struct stamp_backend_writer *w;
        int r;

        r = stamp_backend_writer_open(b, &w);
        if (r < 0)
                return r;
        r = stamp_backend_writer_write(w, data, len);
        if (r < 0) {
                stamp_backend_writer_abort(w);
                return r;
        }
        return stamp_backend_writer_commit(w, name);
}

int stamp_backend_read(struct stamp_backend *b, const char *name, uint64_t off, void *buf,
                       size_t len)
{
        if (!stamp_backend_name_valid(name))
                return -EINVAL;
        return b->ops->read(b, name, off, buf, len);
}

int stamp_backend_size(struct stamp_backend *b, const char *name, uint64_t *ret)
{
        if (!stamp_backend_name_valid(name))
                return -EINVAL;
        return b->ops->size(b, name, ret);
}

int stamp_backend_get(struct stamp_backend *b, const char *name, size_t max, uint8_t **ret,
                      size_t *ret_len)
{
        uint64_t size;
        uint8_t *buf;
        int r;

        r = stamp_backend_size(b, name, &size);
        if (r < 0)
                return r;
        if (size > max)
                return -EFBIG;
        buf = malloc(size + 1);
        if (!buf)
                return -ENOMEM;
        r = stamp_backend_read(b, name, 0, buf, (size_t)size);
        if (r < 0) {
                free(buf);
                return r;
        }
        buf[size] = 0; /* callers parsing text get a terminated string */
        *ret = buf;
        *ret_len = (size_t)size;
        return 0;
}

int stamp_backend_list(struct stamp_backend *b, const char *prefix, stamp_backend_list_fn fn,
                       void *userdata)
{
        return b->ops->list(b, prefix, fn, userdata);
}

int stamp_backend_remove(struct stamp_backend *b, const char *name)
{
        if (!stamp_backend_name_valid(name))
                return -EINVAL;
        return b->ops->remove(b, name);
}

int stamp_backend_cleanup(struct stamp_backend *b)
{
        return b->ops->cleanup(b);
}

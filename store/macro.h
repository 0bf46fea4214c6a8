/* SPDX-License-Identifier: MIT */
/*
 * Small helpers shared by every stampfs module: cleanup attributes,
 * ownership transfer, little-endian codecs for on-disk integers.
 *
 * On-disk integers are always little-endian and always read through the
 * helpers below, never by casting a pointer into a buffer.
 */
#pragma once

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static inline void freep(void *p)
{
        free(*(void **)p);
}

static inline void closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                (void)close(*fd);
                errno = saved;
        }
}

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

/* Hands the value of a cleanup variable to someone else. */
#define TAKE_PTR(p)                                                            \
        ({                                                                     \
                __typeof__(p) _tp = (p);                                       \
                (p) = NULL;                                                    \
                _tp;                                                           \
        })
#define TAKE_FD(fd)                                                            \
        ({                                                                     \
                int _tfd = (fd);                                               \
                (fd) = -1;                                                     \
                _tfd;                                                          \
        })

/* A function that converts a -1/errno result to a negative errno. */
static inline int negerrno(void)
{
        return errno > 0 ? -errno : -EIO;
}

/*
 * A whole number 0..@max from a command line: digits only (no sign, no
 * space, no suffix), no wrap. 0, or -1 (and *@ret untouched).
 */
static inline int parse_count_max(const char *s, unsigned long max, unsigned long *ret)
{
        unsigned long v;
        char *end;

        if (*s < '0' || *s > '9')
                return -1;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (*end || errno || v > max)
                return -1;
        *ret = v;
        return 0;
}

static inline uint16_t le16_read(const uint8_t *p)
{
        return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t le32_read(const uint8_t *p)
{
        return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
               ((uint32_t)p[3] << 24);
}

static inline uint64_t le64_read(const uint8_t *p)
{
        return (uint64_t)le32_read(p) | ((uint64_t)le32_read(p + 4) << 32);
}

static inline void le16_write(uint8_t *p, uint16_t v)
{
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
}

static inline void le32_write(uint8_t *p, uint32_t v)
{
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static inline void le64_write(uint8_t *p, uint64_t v)
{
        le32_write(p, (uint32_t)v);
        le32_write(p + 4, (uint32_t)(v >> 32));
}

/* SPDX-License-Identifier: MIT */
#include "compress.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include <zstd.h>
#include <zstd_errors.h>

struct stamp_zctx {
        ZSTD_CCtx *cctx;
        int level;
};

struct stamp_zctx *stamp_zctx_new(int level)
{
        struct stamp_zctx *z = calloc(1, sizeof(*z));

        if (!z)
                return NULL;
        z->cctx = ZSTD_createCCtx();
        if (!z->cctx) {
                free(z);
                return NULL;
        }
        /*
         * Parameters set once and kept: ZSTD_compress2() then reuses the
         * context as is, which is ~3x faster on incompressible chunks than
         * ZSTD_compressCCtx() re-deriving them for every call.
         */
        if (ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_compressionLevel, level)) ||
            ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_checksumFlag, 0)) ||
            ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_contentSizeFlag, 0))) {
                ZSTD_freeCCtx(z->cctx);
                free(z);
                return NULL;
        }
        z->level = level;
        return z;
}

void stamp_zctx_free(struct stamp_zctx *z)
{
        if (!z)
                return;
        ZSTD_freeCCtx(z->cctx);
        free(z);
}

size_t stamp_compress_bound(size_t len)
{
        return ZSTD_compressBound(len);
}

int stamp_compress(struct stamp_zctx *z, const void *src, size_t len, void *dst,
                   size_t cap, size_t *ret_len)
{
        size_t r;

        if (len < 64)
                return 0;
        r = ZSTD_compress2(z->cctx, dst, cap, src, len);
        if (ZSTD_isError(r))
                return ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation ? -ENOMEM : -EIO;
        if (r >= len - len / 32)
                return 0;
        *ret_len = r;
        return 1;
}

/*
 * A decompression context per thread (creating one per call is slow),
 * freed by the key's destructor when the thread exits.
 */
static pthread_key_t dctx_key;
static pthread_once_t dctx_once = PTHREAD_ONCE_INIT;

static void dctx_destroy(void *p)
{
        ZSTD_freeDCtx(p);
}

static void dctx_key_init(void)
{
        (void)pthread_key_create(&dctx_key, dctx_destroy);
}

int stamp_decompress(const void *src, size_t len, void *dst, size_t raw_len)
{
        ZSTD_DCtx *d;
        size_t r;

        (void)pthread_once(&dctx_once, dctx_key_init);
        d = pthread_getspecific(dctx_key);
        if (!d) {
                d = ZSTD_createDCtx();
                if (!d)
                        return -ENOMEM;
                if (pthread_setspecific(dctx_key, d) != 0) {
                        ZSTD_freeDCtx(d);
                        return -ENOMEM;
                }
        }
        r = ZSTD_decompressDCtx(d, dst, raw_len, src, len);
        if (ZSTD_isError(r) || r != raw_len)
                return -EBADMSG;
        return 0;
}

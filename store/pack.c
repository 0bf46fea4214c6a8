/* SPDX-License-Identifier: MIT */
/*
 * Pack file layout, format version 1. All integers little-endian.
 *
 *   header, 32 bytes:
 *      0  8  magic "STAMPPAK"
 *      8  4  version (1)
 *     12 20  zero
 *   records, back to back from offset 32, each:
 *      0  4  magic "CHNK"
 *      4  1  object type (1 data, 2 tree, 3 chunk list)
 *      5  1  compression (0 none, 1 zstd)
 *      6  2  zero
 *      8  4  raw length
 *     12  4  stored length
 *     16 16  object id (keyed XXH3-128 of the raw bytes)
 *     32  4  checksum of bytes 0..31 (low 32 bits of XXH3-64)
 *     36     stored bytes
 *   index, at index_offset, count entries of 40 bytes:
 *      0 16  object id
 *     16  1  type
 *     17  1  compression
 *     18  2  zero
 *     20  4  raw length
 *     24  4  stored length
 *     28  4  zero
 *     32  8  offset of the record header
 *   trailer, the last 40 bytes:
 *      0  8  index_offset
 *      8  4  count
 *     12  4  version (1)
 *     16 16  XXH3-128 of every byte of the file before this field
 *     32  8  magic "STAMPEND"
 *
 * The index must list the records in file order and they must be
 * contiguous: a reader checks this, so an index that disagrees with the
 * records is caught without reading the data. A pack is named after its
 * checksum, so a pack's name also verifies its content.
 */
#include "pack.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

static const char pack_magic[8] = "STAMPPAK";
static const char end_magic[8] = "STAMPEND";
static const char rec_magic[4] = "CHNK";

#define WRITE_BUFFER (1u << 20)

struct stamp_pack_writer {
        struct stamp_backend_writer *bw;
        struct stamp_csum *csum;
        uint64_t size;
        struct stamp_pack_entry *entries;
        size_t n, cap;
        uint8_t *buf;
        size_t buf_len;
        int error; /* a write failed: the pack lacks bytes its index counts */
};

void stamp_pack_name(const struct stamp_id *sum, char ret[64])
{
        char hex[STAMP_ID_HEX_SIZE];

        stamp_id_to_hex(sum, hex);
        snprintf(ret, 64, "packs/%.2s/%s.pack", hex, hex);
}

int stamp_pack_header_check(const uint8_t buf[STAMP_PACK_HEADER_SIZE])
{
        if (memcmp(buf, pack_magic, 8) != 0)
                return -EBADMSG;
        if (le32_read(buf + 8) != STAMP_PACK_VERSION)
                return -EOPNOTSUPP;
        for (int i = 12; i < STAMP_PACK_HEADER_SIZE; i++)
                if (buf[i])
                        return -EBADMSG;
        return 0;
}

int stamp_pack_trailer_parse(const uint8_t *buf, uint64_t file_size,
                             struct stamp_pack_trailer *ret)
{
        struct stamp_pack_trailer t;
        uint64_t index_len;

        if (file_size < STAMP_PACK_HEADER_SIZE + STAMP_PACK_TRAILER_SIZE)
                return -EBADMSG;
        if (memcmp(buf + 32, end_magic, 8) != 0)
                return -EBADMSG;
        if (le32_read(buf + 12) != STAMP_PACK_VERSION)
                return -EOPNOTSUPP;
        t.index_offset = le64_read(buf);
        t.count = le32_read(buf + 8);
        memcpy(t.checksum.b, buf + 16, STAMP_ID_SIZE);
        index_len = (uint64_t)t.count * STAMP_PACK_INDEX_ENTRY_SIZE;
        if (t.index_offset < STAMP_PACK_HEADER_SIZE ||
            t.index_offset > file_size - STAMP_PACK_TRAILER_SIZE ||
            file_size - STAMP_PACK_TRAILER_SIZE - t.index_offset != index_len)
                return -EBADMSG;
        *ret = t;
        return 0;
}

static int entry_check(const struct stamp_pack_entry *e)
{
        if (e->type < STAMP_OBJ_DATA || e->type > STAMP_OBJ_CHUNKLIST)
                return -EBADMSG;
        if (e->comp > 1)
                return -EBADMSG;
        if (e->raw_len > STAMP_OBJECT_MAX || e->stored_len > STAMP_OBJECT_MAX)
                return -EBADMSG;
        if (e->comp == 0 && e->raw_len != e->stored_len)
                return -EBADMSG;
        return 0;
}

int stamp_pack_index_parse(const uint8_t *buf, size_t len,
                           const struct stamp_pack_trailer *t,
                           struct stamp_pack_entry **ret, size_t *ret_n)
{
        _cleanup_free_ struct stamp_pack_entry *v = NULL;
        uint64_t expect = STAMP_PACK_HEADER_SIZE;

        if ((uint64_t)t->count * STAMP_PACK_INDEX_ENTRY_SIZE != len)
                return -EBADMSG;
        v = calloc(t->count ? t->count : 1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (uint32_t i = 0; i < t->count; i++) {
                const uint8_t *p = buf + (size_t)i * STAMP_PACK_INDEX_ENTRY_SIZE;
                struct stamp_pack_entry *e = &v[i];
                int r;

                if (p[18] || p[19] || le32_read(p + 28))
                        return -EBADMSG; /* zero fields */
                memcpy(e->id.b, p, STAMP_ID_SIZE);
                e->type = p[16];
                e->comp = p[17];
                e->raw_len = le32_read(p + 20);
                e->stored_len = le32_read(p + 24);
                e->offset = le64_read(p + 32);
                r = entry_check(e);
                if (r < 0)
                        return r;
                if (e->offset != expect)
                        return -EBADMSG;
                expect += STAMP_PACK_RECORD_HEADER_SIZE + (uint64_t)e->stored_len;
        }
        if (expect != t->index_offset)
                return -EBADMSG;
        *ret = TAKE_PTR(v);
        *ret_n = t->count;
        return 0;
}

int stamp_pack_record_parse(const uint8_t buf[STAMP_PACK_RECORD_HEADER_SIZE], uint64_t offset,
                            struct stamp_pack_entry *ret)
{
        struct stamp_pack_entry e;

        if (memcmp(buf, rec_magic, 4) != 0)
                return -EBADMSG;
        if (le32_read(buf + 32) != stamp_checksum32(buf, 32))
                return -EBADMSG;
        if (buf[6] || buf[7])
                return -EBADMSG;
        e.type = buf[4];
        e.comp = buf[5];
        e.raw_len = le32_read(buf + 8);
        e.stored_len = le32_read(buf + 12);
        memcpy(e.id.b, buf + 16, STAMP_ID_SIZE);
        e.offset = offset;
        if (entry_check(&e) < 0)
                return -EBADMSG;
        *ret = e;
        return 0;
}

/* The size of pack @name, after checking it holds @min bytes and a sound header. */
static int pack_size_checked(struct stamp_backend *b, const char *name, uint64_t min,
                             uint64_t *ret_size)
{
        uint8_t head[STAMP_PACK_HEADER_SIZE];
        int r;

        r = stamp_backend_size(b, name, ret_size);
        if (r < 0)
                return r;
        if (*ret_size < min)
                return -EBADMSG;
        r = stamp_backend_read(b, name, 0, head, sizeof(head));
        if (r < 0)
                return r;
        return stamp_pack_header_check(head);
}

int stamp_pack_load_index(struct stamp_backend *b, const char *name,
                          struct stamp_pack_entry **ret, size_t *ret_n, uint64_t *ret_size)
{
        uint8_t tail[STAMP_PACK_TRAILER_SIZE];
        _cleanup_free_ uint8_t *buf = NULL;
        struct stamp_pack_trailer t;
        uint64_t size;
        size_t len;
        int r;

        r = pack_size_checked(b, name, STAMP_PACK_HEADER_SIZE + STAMP_PACK_TRAILER_SIZE, &size);
        if (r < 0)
                return r;
        r = stamp_backend_read(b, name, size - sizeof(tail), tail, sizeof(tail));
        if (r < 0)
                return r;
        r = stamp_pack_trailer_parse(tail, size, &t);
        if (r < 0)
                return r;
        len = (size_t)t.count * STAMP_PACK_INDEX_ENTRY_SIZE;
        buf = malloc(len ? len : 1);
        if (!buf)
                return -ENOMEM;
        r = stamp_backend_read(b, name, t.index_offset, buf, len);
        if (r < 0)
                return r;
        r = stamp_pack_index_parse(buf, len, &t, ret, ret_n);
        if (r < 0)
                return r;
        *ret_size = size;
        return 0;
}

int stamp_pack_scan_records(struct stamp_backend *b, const char *name,
                            struct stamp_pack_entry **ret, size_t *ret_n, uint64_t *ret_size)
{
        uint8_t h[STAMP_PACK_RECORD_HEADER_SIZE];
        struct stamp_pack_entry *v = NULL;
        size_t n = 0, cap = 0;
        uint64_t size, off = STAMP_PACK_HEADER_SIZE;
        int r;

        r = pack_size_checked(b, name, STAMP_PACK_HEADER_SIZE, &size);
        if (r < 0)
                return r;
        while (off + sizeof(h) <= size) {
                struct stamp_pack_entry e;
                r = stamp_backend_read(b, name, off, h, sizeof(h));
                if (r < 0) {
                        free(v);
                        return r;
                }
                if (stamp_pack_record_parse(h, off, &e) < 0 ||
                    e.stored_len > size - off - sizeof(h))
                        break; /* the index (or the damage) begins here */
                if (n == cap) {
                        struct stamp_pack_entry *nv = realloc(v, (cap = cap ? 2 * cap : 256) * sizeof(*v));
                        if (!nv) {
                                free(v);
                                return -ENOMEM;
                        }
                        v = nv;
                }
                v[n++] = e;
                off += sizeof(h) + e.stored_len;
        }
        if (n == 0) {
                free(v);
                return -EBADMSG;
        }
        *ret = v;
        *ret_n = n;
        *ret_size = size;
        return 0;
}

int stamp_pack_verify(struct stamp_backend *b, const char *name)
{
        uint8_t tail[STAMP_PACK_TRAILER_SIZE];
        _cleanup_free_ uint8_t *buf = malloc(WRITE_BUFFER);
        struct stamp_csum *c;
        struct stamp_pack_trailer t;
        struct stamp_id sum;
        uint64_t size, off = 0, end;
        int r;

        if (!buf)
                return -ENOMEM;
        r = stamp_backend_size(b, name, &size);
        if (r < 0)
                return r;
        if (size < STAMP_PACK_HEADER_SIZE + STAMP_PACK_TRAILER_SIZE)
                return -EBADMSG;
        r = stamp_backend_read(b, name, size - sizeof(tail), tail, sizeof(tail));
        if (r < 0)
                return r;
        r = stamp_pack_trailer_parse(tail, size, &t);
        if (r < 0)
                return r;
        c = stamp_csum_new();
        if (!c)
                return -ENOMEM;
        end = size - 24; /* everything before the checksum field */
        while (off < end) {
                size_t n = end - off < WRITE_BUFFER ? (size_t)(end - off) : WRITE_BUFFER;
                r = stamp_backend_read(b, name, off, buf, n);
                if (r < 0) {
                        stamp_csum_free(c);
                        return r;
                }
                stamp_csum_update(c, buf, n);
                off += n;
        }
        stamp_csum_final(c, &sum);
        stamp_csum_free(c);
        return stamp_id_cmp(&sum, &t.checksum) == 0 ? 0 : -EBADMSG;
}

static int flush(struct stamp_pack_writer *w)
{
        int r;

        if (w->buf_len == 0)
                return 0;
        r = stamp_backend_writer_write(w->bw, w->buf, w->buf_len);
        w->buf_len = 0;
        return r;
}

static int emit_stream(struct stamp_pack_writer *w, const void *data, size_t len)
{
        int r;

        stamp_csum_update(w->csum, data, len);
        w->size += len;
        if (w->buf_len + len > WRITE_BUFFER) {
                r = flush(w);
                if (r < 0)
                        return r;
                if (len >= WRITE_BUFFER)
                        return stamp_backend_writer_write(w->bw, data, len);
        }
        memcpy(w->buf + w->buf_len, data, len);
        w->buf_len += len;
        return 0;
}

/*
 * Appends to the pack. After a failed write the size, checksum and entries
 * already count bytes the file lacks: the writer is poisoned, and every
 * later add and finish fails, so that such a pack is never committed.
 */
static int emit(struct stamp_pack_writer *w, const void *data, size_t len)
{
        int r;

        if (w->error)
                return w->error;
        r = emit_stream(w, data, len);
        if (r < 0)
                w->error = r;
        return r;
}

int stamp_pack_writer_new(struct stamp_backend *b, struct stamp_pack_writer **ret)
{
        struct stamp_pack_writer *w = calloc(1, sizeof(*w));
        uint8_t head[STAMP_PACK_HEADER_SIZE] = { 0 };
        int r;

        if (!w)
                return -ENOMEM;
        w->csum = stamp_csum_new();
        w->buf = malloc(WRITE_BUFFER);
        if (!w->csum || !w->buf) {
                stamp_pack_writer_free(w);
                return -ENOMEM;
        }
        r = stamp_backend_writer_open(b, &w->bw);
        if (r < 0) {
                stamp_pack_writer_free(w);
                return r;
        }
        memcpy(head, pack_magic, 8);
        le32_write(head + 8, STAMP_PACK_VERSION);
        r = emit(w, head, sizeof(head));
        if (r < 0) {
                stamp_pack_writer_free(w);
                return r;
        }
        *ret = w;
        return 0;
}

int stamp_pack_writer_add(struct stamp_pack_writer *w, const struct stamp_id *id, uint8_t type,
                          uint8_t comp, uint32_t raw_len, const void *payload,
                          uint32_t stored_len)
{
        uint8_t h[STAMP_PACK_RECORD_HEADER_SIZE] = { 0 };
        struct stamp_pack_entry *e;
        int r;

        if (raw_len > STAMP_OBJECT_MAX || stored_len > STAMP_OBJECT_MAX)
                return -EINVAL;
        if (w->error)
                return w->error;
        if (w->n == w->cap) {
                size_t cap = w->cap ? 2 * w->cap : 256;
                struct stamp_pack_entry *v = realloc(w->entries, cap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                w->entries = v;
                w->cap = cap;
        }
        e = &w->entries[w->n];
        e->id = *id;
        e->type = type;
        e->comp = comp;
        e->raw_len = raw_len;
        e->stored_len = stored_len;
        e->offset = w->size;

        memcpy(h, rec_magic, 4);
        h[4] = type;
        h[5] = comp;
        le32_write(h + 8, raw_len);
        le32_write(h + 12, stored_len);
        memcpy(h + 16, id->b, STAMP_ID_SIZE);
        le32_write(h + 32, stamp_checksum32(h, 32));
        r = emit(w, h, sizeof(h));
        if (r < 0)
                return r;
        r = emit(w, payload, stored_len);
        if (r < 0)
                return r;
        w->n++;
        return 0;
}

uint64_t stamp_pack_writer_size(const struct stamp_pack_writer *w)
{
        return w->size;
}

size_t stamp_pack_writer_count(const struct stamp_pack_writer *w)
{
        return w->n;
}

const struct stamp_pack_entry *stamp_pack_writer_entries(const struct stamp_pack_writer *w)
{
        return w->entries;
}

int stamp_pack_writer_finish(struct stamp_pack_writer *w, char ret_name[64])
{
        uint8_t ent[STAMP_PACK_INDEX_ENTRY_SIZE], tail[STAMP_PACK_TRAILER_SIZE] = { 0 };
        uint64_t index_offset = w->size;
        struct stamp_id sum;
        int r;

        if (w->error)
                return w->error;
        for (size_t i = 0; i < w->n; i++) {
                const struct stamp_pack_entry *e = &w->entries[i];
                memset(ent, 0, sizeof(ent));
                memcpy(ent, e->id.b, STAMP_ID_SIZE);
                ent[16] = e->type;
                ent[17] = e->comp;
                le32_write(ent + 20, e->raw_len);
                le32_write(ent + 24, e->stored_len);
                le64_write(ent + 32, e->offset);
                r = emit(w, ent, sizeof(ent));
                if (r < 0)
                        return r;
        }
        le64_write(tail, index_offset);
        le32_write(tail + 8, (uint32_t)w->n);
        le32_write(tail + 12, STAMP_PACK_VERSION);
        stamp_csum_update(w->csum, tail, 16);
        stamp_csum_final(w->csum, &sum);
        memcpy(tail + 16, sum.b, STAMP_ID_SIZE);
        memcpy(tail + 32, end_magic, 8);
        /* Not emit(): the checksum must not cover itself. */
        if (w->buf_len + sizeof(tail) > WRITE_BUFFER) {
                r = flush(w);
                if (r < 0)
                        return w->error = r;
        }
        memcpy(w->buf + w->buf_len, tail, sizeof(tail));
        w->buf_len += sizeof(tail);
        w->size += sizeof(tail);
        r = flush(w);
        if (r < 0)
                return w->error = r;
        stamp_pack_name(&sum, ret_name);
        r = stamp_backend_writer_commit(TAKE_PTR(w->bw), ret_name);
        /* The same bytes under the same name: another writer made it durable. */
        if (r == -EEXIST)
                r = 0;
        return r;
}

void stamp_pack_writer_free(struct stamp_pack_writer *w)
{
        if (!w)
                return;
        stamp_backend_writer_abort(w->bw);
        stamp_csum_free(w->csum);
        free(w->entries);
        free(w->buf);
        free(w);
}

/* SPDX-License-Identifier: MIT */
#include <sys/stat.h>

#include "tree.h"
#include "tests.h"

static struct stamp_entry file_entry(const char *name, const uint8_t *content, size_t clen,
                                     uint64_t size)
{
        struct stamp_entry e = { 0 };

        e.name = name;
        e.name_len = strlen(name);
        e.type = STAMP_T_REG;
        e.mode = S_IFREG | 0644;
        e.uid = 1000;
        e.gid = 1000;
        e.nlink = 1;
        e.mtime_ns = 1712469600123456789;
        e.ctime_ns = -5;
        e.size = size;
        e.content = content;
        e.content_len = clen;
        return e;
}

int main(void)
{
        struct stamp_tree_builder *b = stamp_tree_builder_new();
        uint8_t chunks[2 * STAMP_CHUNKREF_SIZE] = { 0 }, *content, *obj, *list, *empty;
        size_t clen, olen, llen, elen;
        struct stamp_tree t;
        struct stamp_entry e, got;
        uint32_t idx;
        static const char *const names[] = { "b", "a", "with space", "\n", "日本", "zz" };
        uint8_t xattrs[] = { 6, 'u', 's', 'e', 'r', '.', 'x', 3, 0, 0, 0, 1, 0, 2 };

        CHECK(b);
        chunks[STAMP_ID_SIZE] = 10;                          /* length 10 */
        chunks[STAMP_CHUNKREF_SIZE + STAMP_ID_SIZE] = 5;     /* length 5 */
        CHECK_OK(stamp_content_encode_inline(chunks, 2, &content, &clen));
        CHECK_OK(stamp_content_encode_inline(NULL, 0, &empty, &elen));
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                e = file_entry(names[i], content, clen, 15);
                if (i == 2) {
                        e.xattrs = xattrs;
                        e.xattrs_len = sizeof(xattrs);
                        e.xattr_count = 1;
                }
                CHECK_OK(stamp_tree_builder_add(b, &e));
        }
        e = (struct stamp_entry){ .name = "link", .name_len = 4, .type = STAMP_T_LNK,
                                  .mode = S_IFLNK | 0777, .target = "../t", .target_len = 4 };
        CHECK_OK(stamp_tree_builder_add(b, &e));
        e = (struct stamp_entry){ .name = "dir", .name_len = 3, .type = STAMP_T_DIR,
                                  .mode = S_IFDIR | 0755 };
        memset(e.subtree.b, 0xab, STAMP_ID_SIZE);
        CHECK_OK(stamp_tree_builder_add(b, &e));
        e = (struct stamp_entry){ .name = "dev", .name_len = 3, .type = STAMP_T_CHR,
                                  .mode = S_IFCHR | 0600, .rdev = 0x103 };
        CHECK_OK(stamp_tree_builder_add(b, &e));
        e = file_entry("empty", empty, elen, 0);
        e.link_id = 77;
        e.nlink = 2;
        CHECK_OK(stamp_tree_builder_add(b, &e));

        /* Invalid entries are refused before encoding. */
        e = file_entry("a/b", content, clen, 15);
        CHECK_RC(stamp_tree_builder_add(b, &e), -EINVAL);
        e = file_entry("..", content, clen, 15);
        CHECK_RC(stamp_tree_builder_add(b, &e), -EINVAL);
        e = file_entry("", content, clen, 15);
        CHECK_RC(stamp_tree_builder_add(b, &e), -EINVAL);

        CHECK_OK(stamp_tree_builder_encode(b, &obj, &olen));
        CHECK_OK(stamp_tree_parse(obj, olen, &t));
        CHECK(t.count == 10);
        /* Sorted bytewise, and each name found by binary search at its index. */
        for (uint32_t i = 0; i < t.count; i++) {
                struct stamp_entry prev;
                CHECK_OK(stamp_tree_entry(&t, i, &got));
                CHECK(stamp_tree_find(&t, got.name, got.name_len, &idx) == 1 && idx == i);
                if (i > 0) {
                        CHECK_OK(stamp_tree_entry(&t, i - 1, &prev));
                        CHECK(memcmp(prev.name, got.name,
                                     prev.name_len < got.name_len ? prev.name_len : got.name_len) <= 0);
                }
        }
        CHECK(stamp_tree_find(&t, "nope", 4, &idx) == 0);
        CHECK(stamp_tree_find(&t, "with space", 10, &idx) == 1);
        CHECK_OK(stamp_tree_entry(&t, idx, &got));
        CHECK(got.type == STAMP_T_REG && got.size == 15 && got.uid == 1000 &&
              got.mtime_ns == 1712469600123456789 && got.ctime_ns == -5);
        CHECK(got.xattr_count == 1 && got.xattrs_len == sizeof(xattrs));
        {
                const uint8_t *p = got.xattrs;
                const char *n;
                const uint8_t *v;
                size_t nl, vl;
                CHECK(stamp_xattr_next(&p, got.xattrs + got.xattrs_len, &n, &nl, &v, &vl) == 1);
                CHECK(nl == 6 && memcmp(n, "user.x", 6) == 0 && vl == 3 && v[2] == 2);
                CHECK(stamp_xattr_next(&p, got.xattrs + got.xattrs_len, &n, &nl, &v, &vl) == 0);
        }
        {
                struct stamp_content c;
                struct stamp_id id;
                uint32_t len;
                CHECK_OK(stamp_content_parse(got.content, got.content_len, &c));
                CHECK(c.kind == STAMP_CONTENT_INLINE && c.n == 2);
                stamp_content_chunk(&c, 1, &id, &len);
                CHECK(len == 5);
        }
        CHECK(stamp_tree_find(&t, "link", 4, &idx) == 1);
        CHECK_OK(stamp_tree_entry(&t, idx, &got));
        CHECK(got.target_len == 4 && memcmp(got.target, "../t", 4) == 0);
        CHECK(stamp_tree_find(&t, "dev", 3, &idx) == 1);
        CHECK_OK(stamp_tree_entry(&t, idx, &got));
        CHECK(got.rdev == 0x103);
        CHECK(stamp_tree_find(&t, "empty", 5, &idx) == 1);
        CHECK_OK(stamp_tree_entry(&t, idx, &got));
        CHECK(got.link_id == 77 && got.nlink == 2 && got.size == 0);

        /* Re-encoding the parsed entries gives the same bytes (canonical form). */
        {
                struct stamp_tree_builder *b2 = stamp_tree_builder_new();
                uint8_t *obj2;
                size_t olen2;
                for (uint32_t i = t.count; i-- > 0;) {
                        CHECK_OK(stamp_tree_entry(&t, i, &got));
                        CHECK_OK(stamp_tree_builder_add(b2, &got));
                }
                CHECK_OK(stamp_tree_builder_encode(b2, &obj2, &olen2));
                CHECK(olen2 == olen && memcmp(obj, obj2, olen) == 0);
                /* A duplicate name is refused at encode time. */
                CHECK_OK(stamp_tree_entry(&t, 0, &got));
                CHECK_OK(stamp_tree_builder_add(b2, &got));
                free(obj2);
                CHECK_RC(stamp_tree_builder_encode(b2, &obj2, &olen2), -EEXIST);
                stamp_tree_builder_free(b2);
        }

        /* Every single-byte corruption is either rejected or still a valid tree;
         * every truncation is rejected. */
        for (size_t i = 0; i < olen; i++) {
                uint8_t *bad = malloc(olen);
                struct stamp_tree t2;
                memcpy(bad, obj, olen);
                bad[i] ^= 0xff;
                if (stamp_tree_parse(bad, olen, &t2) == 0)
                        for (uint32_t k = 0; k < t2.count; k++)
                                CHECK_OK(stamp_tree_entry(&t2, k, &got));
                free(bad);
        }
        for (size_t i = 0; i < olen; i++) {
                struct stamp_tree t2;
                CHECK(stamp_tree_parse(obj, i, &t2) < 0);
        }

        /* Chunk lists. */
        {
                uint8_t items[3 * STAMP_LISTREF_SIZE] = { 0 };
                struct stamp_chunklist l;
                struct stamp_id id;
                uint64_t n;
                for (int i = 0; i < 3; i++)
                        items[i * STAMP_LISTREF_SIZE + STAMP_ID_SIZE] = (uint8_t)(i + 1);
                CHECK_OK(stamp_chunklist_encode(0, items, 3, &list, &llen));
                CHECK_OK(stamp_chunklist_parse(list, llen, &l));
                CHECK(l.count == 3 && l.level == 0);
                stamp_chunklist_item(&l, 2, &id, &n);
                CHECK(n == 3);
                CHECK_RC(stamp_chunklist_parse(list, llen - 1, &l), -EBADMSG);
                CHECK_RC(stamp_chunklist_encode(0, items, 0, &list, &llen), -EINVAL);
        }
        CHECK(stamp_name_valid("ok", 2));
        CHECK(!stamp_name_valid("a\0b", 3));
        CHECK(!stamp_name_valid(".", 1));
        {
                char longname[300];
                memset(longname, 'x', sizeof(longname));
                CHECK(stamp_name_valid(longname, 255));
                CHECK(!stamp_name_valid(longname, 256));
        }
        free(obj);
        free(list);
        /* Hardlink group members: one key for one content reference, whatever else differs. */
        {
                struct stamp_entry x = file_entry("x", content, clen, 15);
                struct stamp_entry y = file_entry("y", content, clen, 15);
                struct stamp_entry z = file_entry("z", empty, elen, 0);
                struct stamp_entry l = { .type = STAMP_T_LNK, .target = "t", .target_len = 1 };
                y.mtime_ns = 7;
                y.mode = S_IFREG | 0600;
                CHECK(stamp_entry_content_key(&x) != 0);
                CHECK(stamp_entry_content_key(&x) == stamp_entry_content_key(&y));
                CHECK(stamp_entry_content_key(&x) != stamp_entry_content_key(&z));
                CHECK(stamp_entry_content_key(&z) != 0);
                CHECK(stamp_entry_content_key(&l) == 0);
        }
        free(content);
        free(empty);
        stamp_tree_builder_free(b);
        printf("test-tree: ok\n");
        return 0;
}

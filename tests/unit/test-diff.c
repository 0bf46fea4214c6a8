/* SPDX-License-Identifier: MIT */
/*
 * Tree comparison on hand-built trees: every kind of change, the order of
 * paths, no descent into shared subtrees (one of them names a tree the
 * store does not have, so descending would fail), damaged trees, and a
 * callback that stops the walk.
 */
#include <sys/stat.h>

#include "compress.h"
#include "diff.h"
#include "pack.h"
#include "store.h"
#include "writer.h"
#include "tests.h"

struct ctx {
        struct stamp_store *s;
        struct stamp_writer *w;
        struct stamp_zctx *z;
};

static void add_file(struct stamp_tree_builder *b, const char *name, uint8_t fill,
                     uint32_t size, uint32_t perm)
{
        uint8_t chunk[STAMP_CHUNKREF_SIZE], *content;
        size_t clen;
        struct stamp_entry e = { 0 };

        /* A made-up chunk: the comparison never reads data. */
        memset(chunk, fill, STAMP_ID_SIZE);
        for (int i = 0; i < 4; i++)
                chunk[STAMP_ID_SIZE + i] = (uint8_t)(size >> (8 * i));
        CHECK_OK(stamp_content_encode_inline(chunk, 1, &content, &clen));
        e.name = name;
        e.name_len = strlen(name);
        e.type = STAMP_T_REG;
        e.mode = S_IFREG | perm;
        e.nlink = 1;
        e.mtime_ns = 1000;
        e.size = size;
        e.content = content;
        e.content_len = clen;
        CHECK_OK(stamp_tree_builder_add(b, &e));
        free(content);
}

static void add_dir(struct stamp_tree_builder *b, const char *name, const struct stamp_id *sub)
{
        struct stamp_entry e = { .name = name, .name_len = strlen(name), .type = STAMP_T_DIR,
                                 .mode = S_IFDIR | 0755, .nlink = 2, .mtime_ns = 1000,
                                 .subtree = *sub };

        CHECK_OK(stamp_tree_builder_add(b, &e));
}

static void add_link(struct stamp_tree_builder *b, const char *name, const char *target)
{
        struct stamp_entry e = { .name = name, .name_len = strlen(name), .type = STAMP_T_LNK,
                                 .mode = S_IFLNK | 0777, .nlink = 1, .mtime_ns = 1000,
                                 .target = target, .target_len = strlen(target),
                                 .size = strlen(target) };

        CHECK_OK(stamp_tree_builder_add(b, &e));
}

/* Stores the tree and frees the builder. */
static struct stamp_id finish(struct ctx *c, struct stamp_tree_builder *b)
{
        uint8_t *buf;
        size_t len;
        struct stamp_id id;

        CHECK_OK(stamp_tree_builder_encode(b, &buf, &len));
        CHECK_OK(stamp_writer_put(c->w, c->z, STAMP_OBJ_TREE, buf, len, &id));
        free(buf);
        stamp_tree_builder_free(b);
        return id;
}

/* The callback writes "K path changes" lines into a buffer. */
struct out {
        char buf[4096];
        size_t len;
        int stop_after; /* 0: never */
        int calls;
};

static int collect(const struct stamp_diff_item *it, void *userdata)
{
        struct out *o = userdata;
        static const char kinds[] = { '+', '-', 'M' };

        CHECK(strlen(it->path) == it->path_len);
        CHECK((it->a != NULL) == (it->kind != STAMP_DIFF_ADDED));
        CHECK((it->b != NULL) == (it->kind != STAMP_DIFF_REMOVED));
        o->len += (size_t)snprintf(o->buf + o->len, sizeof(o->buf) - o->len, "%c %s",
                                   kinds[it->kind], it->path);
        for (unsigned i = 0; i < STAMP_CHANGE_MAX; i++)
                if (it->changes & (1u << i))
                        o->len += (size_t)snprintf(o->buf + o->len, sizeof(o->buf) - o->len,
                                                   " %s", stamp_diff_change_name(i));
        o->len += (size_t)snprintf(o->buf + o->len, sizeof(o->buf) - o->len, "\n");
        CHECK(o->len < sizeof(o->buf));
        if (++o->calls == o->stop_after)
                return -ECANCELED;
        return 0;
}

static void expect(struct ctx *c, const struct stamp_id *a, const struct stamp_id *b,
                   const char *want)
{
        struct out o = { 0 };
        char *bad = NULL;

        CHECK_OK(stamp_diff_trees(c->s, a, b, collect, &o, &bad));
        CHECK(bad == NULL);
        if (strcmp(o.buf, want) != 0) {
                fprintf(stderr, "diff:\n%s\nexpected:\n%s\n", o.buf, want);
                abort();
        }
}

static void test_changes(struct ctx *c)
{
        struct stamp_tree_builder *b;
        struct stamp_id s1a, s1b, deep, gone, newdir, tdir, nowhere, a, bb, broken;

        memset(nowhere.b, 0xee, STAMP_ID_SIZE); /* no such tree in the store */

        b = stamp_tree_builder_new();
        add_file(b, "x", 1, 10, 0644);
        add_file(b, "y", 2, 10, 0644);
        s1a = finish(c, b);
        b = stamp_tree_builder_new();
        add_file(b, "x", 3, 10, 0644);
        add_file(b, "y", 2, 10, 0644);
        s1b = finish(c, b);
        b = stamp_tree_builder_new();
        add_file(b, "deep", 4, 1, 0644);
        deep = finish(c, b);
        b = stamp_tree_builder_new();
        add_file(b, "g1", 5, 1, 0644);
        add_dir(b, "sub", &deep);
        gone = finish(c, b);
        b = stamp_tree_builder_new();
        add_file(b, "n1", 6, 1, 0644);
        newdir = finish(c, b);
        b = stamp_tree_builder_new();
        add_file(b, "inner", 7, 1, 0644);
        tdir = finish(c, b);

        b = stamp_tree_builder_new();
        add_file(b, "a", 10, 100, 0644);
        add_file(b, "c", 11, 100, 0644);
        add_dir(b, "d", &s1a);
        add_dir(b, "gone", &gone);
        add_dir(b, "keep", &nowhere);
        add_link(b, "link", "t1");
        add_file(b, "short", 12, 100, 0644);
        add_file(b, "t", 13, 100, 0755);
        add_dir(b, "u", &tdir);
        a = finish(c, b);

        b = stamp_tree_builder_new();
        add_file(b, "a", 20, 100, 0644);  /* content only */
        add_file(b, "c", 11, 100, 0600);  /* mode only */
        add_dir(b, "d", &s1b);            /* d/x changed */
        add_file(b, "d-e", 21, 1, 0644);  /* sorts after d/x, though '-' < '/' */
        add_dir(b, "keep", &nowhere);     /* shared: must not be loaded */
        add_link(b, "link", "t2");
        add_dir(b, "new", &newdir);
        add_file(b, "short", 12, 50, 0644); /* size (and so content) */
        add_dir(b, "t", &tdir);           /* file -> directory */
        add_file(b, "u", 14, 1, 0755);    /* directory -> file */
        bb = finish(c, b);

        b = stamp_tree_builder_new();
        add_dir(b, "keep", &deep); /* now differs from "nowhere": loading it fails */
        broken = finish(c, b);
        CHECK_OK(stamp_writer_flush(c->w));

        expect(c, &a, &bb,
               "M a content\n"
               "M c mode\n"
               "M d/x content\n"
               "+ d-e\n"
               "- gone\n"
               "- gone/g1\n"
               "- gone/sub\n"
               "- gone/sub/deep\n"
               "M link target\n"
               "+ new\n"
               "+ new/n1\n"
               "M short content size\n"
               "M t type\n"
               "+ t/inner\n"
               "M u type\n"
               "- u/inner\n");
        expect(c, &bb, &a,
               "M a content\n"
               "M c mode\n"
               "M d/x content\n"
               "- d-e\n"
               "+ gone\n"
               "+ gone/g1\n"
               "+ gone/sub\n"
               "+ gone/sub/deep\n"
               "M link target\n"
               "- new\n"
               "- new/n1\n"
               "M short content size\n"
               "M t type\n"
               "- t/inner\n"
               "M u type\n"
               "+ u/inner\n");
        expect(c, &a, &a, "");
        expect(c, &s1a, &s1a, "");

        /* A tree the store lacks is damage, and its path is named. */
        {
                struct out o = { 0 };
                char *bad = NULL;
                CHECK_RC(stamp_diff_trees(c->s, &a, &broken, collect, &o, &bad), -EBADMSG);
                CHECK(bad && strcmp(bad, "keep") == 0);
                free(bad);
                CHECK_RC(stamp_diff_trees(c->s, &nowhere, &a, collect, &o, &bad), -EBADMSG);
                CHECK(bad && strcmp(bad, "") == 0);
                free(bad);
        }
        /* The callback stops the walk. */
        {
                struct out o = { .stop_after = 3 };
                CHECK_RC(stamp_diff_trees(c->s, &a, &bb, collect, &o, NULL), -ECANCELED);
                CHECK(o.calls == 3);
        }
}

static void test_entry_changes(void)
{
        uint8_t x1[] = { 6, 'u', 's', 'e', 'r', '.', 'x', 1, 0, 0, 0, 'a' };
        uint8_t x2[] = { 6, 'u', 's', 'e', 'r', '.', 'x', 1, 0, 0, 0, 'b' };
        struct stamp_entry e = { .name = "n", .name_len = 1, .type = STAMP_T_CHR,
                                 .mode = S_IFCHR | 0600, .rdev = 0x101, .mtime_ns = 5 };
        struct stamp_entry f = e;

        CHECK(stamp_entry_changes(&e, &f) == 0);
        f.rdev = 0x102;
        f.uid = 1;
        CHECK(stamp_entry_changes(&e, &f) == (STAMP_CHANGE_DEVICE | STAMP_CHANGE_OWNER));
        f = e;
        f.gid = 7;
        f.mtime_ns = 6;
        f.ctime_ns = 99; /* not compared */
        f.nlink = 3;     /* not compared */
        CHECK(stamp_entry_changes(&e, &f) == (STAMP_CHANGE_OWNER | STAMP_CHANGE_MTIME));
        e.xattrs = x1;
        e.xattrs_len = sizeof(x1);
        e.xattr_count = 1;
        f = e;
        CHECK(stamp_entry_changes(&e, &f) == 0);
        f.xattrs = x2;
        CHECK(stamp_entry_changes(&e, &f) == STAMP_CHANGE_XATTRS);
        f.xattrs_len = 0;
        f.xattr_count = 0;
        CHECK(stamp_entry_changes(&e, &f) == STAMP_CHANGE_XATTRS);
        f = e;
        f.type = STAMP_T_BLK;
        f.mode = S_IFBLK | 0600;
        f.rdev = 0x999; /* a type change says only "type" about content-like fields */
        CHECK(stamp_entry_changes(&e, &f) == STAMP_CHANGE_TYPE);
        CHECK(strcmp(stamp_diff_change_name(0), "type") == 0);
        CHECK(strcmp(stamp_diff_change_name(STAMP_CHANGE_MAX - 1), "device") == 0);
        CHECK(stamp_diff_change_name(STAMP_CHANGE_MAX) == NULL);
}

int main(void)
{
        char *tmp = make_tmpdir(), dir[600];
        struct stamp_init_options o;
        struct ctx c = { 0 };

        snprintf(dir, sizeof(dir), "%s/store", tmp);
        stamp_init_options_default(&o);
        CHECK_OK(stamp_store_init(dir, &o));
        CHECK_OK(stamp_store_open(dir, &c.s));
        CHECK_OK(stamp_store_lock(c.s, 0, "test", NULL, 0));
        CHECK_OK(stamp_store_recover(c.s));
        CHECK_OK(stamp_writer_new(c.s, &c.w));
        c.z = stamp_zctx_new(1);
        CHECK(c.z);

        test_entry_changes();
        test_changes(&c);

        stamp_writer_free(c.w);
        stamp_zctx_free(c.z);
        stamp_store_free(c.s);
        rm_rf(tmp);
        free(tmp);
        printf("diff ok\n");
        return 0;
}

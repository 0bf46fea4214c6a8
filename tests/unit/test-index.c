/* SPDX-License-Identifier: MIT */
#include "index.h"
#include "tests.h"

int main(void)
{
        char *dir = make_tmpdir(), path[600];
        struct stamp_index *ix, *ix2;
        struct stamp_pack_entry e[3];
        struct stamp_loc loc;
        struct stamp_id missing = { { 9 } };
        struct stamp_files_row row;
        uint64_t packs, objects, bytes;

        snprintf(path, sizeof(path), "%s/index.db", dir);
        CHECK_RC(stamp_index_open(path, 0, &ix), -ENOENT);
        CHECK_OK(stamp_index_open(path, STAMP_INDEX_CREATE, &ix));
        memset(e, 0, sizeof(e));
        for (int i = 0; i < 3; i++) {
                e[i].id.b[0] = (uint8_t)(i + 1);
                e[i].type = STAMP_OBJ_DATA;
                e[i].raw_len = 100u * (unsigned)(i + 1);
                e[i].stored_len = e[i].raw_len;
                e[i].offset = 32 + 1000u * (unsigned)i;
        }
        CHECK_OK(stamp_index_begin(ix));
        CHECK_OK(stamp_index_add_pack(ix, "packs/aa/aa.pack", 5000, e, 3));
        CHECK_OK(stamp_index_commit(ix));
        CHECK(stamp_index_has_pack(ix, "packs/aa/aa.pack") == 1);
        CHECK(stamp_index_has_pack(ix, "packs/bb/bb.pack") == 0);
        CHECK(stamp_index_find(ix, &e[1].id, &loc) == 1);
        CHECK(loc.raw_len == 200 && loc.offset == 1032 && strcmp(loc.pack, "packs/aa/aa.pack") == 0);
        CHECK(stamp_index_find(ix, &missing, &loc) == 0);
        /* An object seen again in a second pack keeps its first place. */
        e[1].offset = 7;
        CHECK_OK(stamp_index_add_pack(ix, "packs/bb/bb.pack", 100, &e[1], 1));
        CHECK(stamp_index_find(ix, &e[1].id, &loc) == 1 && loc.offset == 1032);
        CHECK_OK(stamp_index_counts(ix, &packs, &objects, &bytes));
        CHECK(packs == 2 && objects == 3 && bytes == 5100);

        /* Files cache: a hit needs every key field to match. */
        CHECK_OK(stamp_index_files_put(ix, 1, 2, 3, 4, 5, (const uint8_t *)"abc", 3, NULL, 0, 0));
        CHECK(stamp_index_files_get(ix, 1, 2, 3, 4, 5, &row) == 1);
        CHECK(row.content_len == 3 && memcmp(row.content, "abc", 3) == 0 && !row.xattrs);
        CHECK(row.flags == 0);
        free(row.content);
        CHECK(stamp_index_files_get(ix, 1, 2, 3, 4, 6, &row) == 0);
        CHECK(stamp_index_files_get(ix, 1, 2, 4, 4, 5, &row) == 0);
        CHECK_OK(stamp_index_files_put(ix, 1, 2, 3, 4, 5, (const uint8_t *)"abc", 3,
                                       (const uint8_t *)"xy", 2,
                                       STAMP_FILES_CHECKED | STAMP_FILES_CAPTURED));
        CHECK(stamp_index_files_get(ix, 1, 2, 3, 4, 5, &row) == 1);
        CHECK(row.xattrs_len == 2 && memcmp(row.xattrs, "xy", 2) == 0);
        CHECK(row.flags == (STAMP_FILES_CHECKED | STAMP_FILES_CAPTURED));
        free(row.content);
        free(row.xattrs);

        /* A second connection sees committed rows (one connection per thread). */
        CHECK_OK(stamp_index_open(path, 0, &ix2));
        CHECK(stamp_index_find(ix2, &e[0].id, &loc) == 1);
        CHECK_OK(stamp_index_snapshot_put(ix, "20260407T060000Z", &e[0].id));
        CHECK(stamp_index_snapshot_has(ix2, "20260407T060000Z") == 1);
        stamp_index_free(ix2);
        stamp_index_free(ix);

        /* Scratch sets: a pass reaches an object once; another pass counts it again. */
        {
                struct stamp_id x = { { 1 } }, y = { { 2 } }, got;
                int64_t stored;

                CHECK_OK(stamp_index_open(path, 0, &ix));
                snprintf(path, sizeof(path), "%s/scratch", dir);
                fclose(fopen(path, "w")); /* the caller makes the file (gc: in tmp/, locked) */
                CHECK_OK(stamp_index_scratch_attach(ix, path));
                CHECK_OK(stamp_index_scratch_begin(ix));
                CHECK(stamp_index_seen_visit(ix, &e[0].id, 1, &stored) == 1);
                CHECK(stored == 100); /* the index's stored length */
                CHECK(stamp_index_seen_visit(ix, &e[0].id, 1, &stored) == 0);
                CHECK(stamp_index_seen_visit(ix, &e[0].id, 2, &stored) == 1);
                CHECK(stamp_index_seen_visit(ix, &missing, 2, &stored) == 1 && stored == -1);
                CHECK(stamp_index_seen_has(ix, &e[0].id) == 1);
                CHECK(stamp_index_seen_has(ix, &e[1].id) == 0);
                /* The stack is last in, first out. */
                CHECK_OK(stamp_index_stack_push(ix, &x));
                CHECK_OK(stamp_index_stack_push(ix, &y));
                CHECK(stamp_index_stack_pop(ix, &got) == 1 && stamp_id_cmp(&got, &y) == 0);
                CHECK(stamp_index_stack_pop(ix, &got) == 1 && stamp_id_cmp(&got, &x) == 0);
                CHECK(stamp_index_stack_pop(ix, &got) == 0);
                CHECK_OK(stamp_index_scratch_commit(ix));
                stamp_index_free(ix);
        }
        /* A schema-1 index is upgraded in place; its cache rows get flags 0. */
        {
                char cmd[2048];
                snprintf(path, sizeof(path), "%s/v1.db", dir);
                CHECK_OK(stamp_index_open(path, STAMP_INDEX_CREATE, &ix));
                stamp_index_free(ix);
                snprintf(cmd, sizeof(cmd),
                         "python3 -c \"\nimport sqlite3\nc = sqlite3.connect('%s')\n"
                         "c.execute('ALTER TABLE files DROP COLUMN flags')\n"
                         "c.execute('INSERT INTO files VALUES(1, 2, 3, 4, 5, x\\'616263\\', NULL)')\n"
                         "c.execute('PRAGMA user_version = 1'); c.commit()\"",
                         path);
                CHECK(system(cmd) == 0);
                CHECK_OK(stamp_index_open(path, 0, &ix));
                CHECK(stamp_index_files_get(ix, 1, 2, 3, 4, 5, &row) == 1);
                CHECK(row.content_len == 3 && row.flags == 0);
                free(row.content);
                stamp_index_free(ix);
        }

        /* Not an index: a clear error. */
        {
                FILE *f;
                snprintf(path, sizeof(path), "%s/garbage.db", dir);
                f = fopen(path, "w");
                fputs("this is not a database, just text padded out to look like one.......", f);
                fclose(f);
                CHECK(stamp_index_open(path, 0, &ix) < 0);
        }
        rm_rf(dir);
        free(dir);
        printf("test-index: ok\n");
        return 0;
}

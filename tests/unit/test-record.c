/* SPDX-License-Identifier: MIT */
#include "record.h"
#include "tests.h"

static void test_stamps(void)
{
        char s[STAMP_STAMP_LEN + 1];

        CHECK(stamp_stamp_valid("20260407T060000Z"));
        CHECK(!stamp_stamp_valid("20260231T060000Z")); /* no Feb 31 */
        CHECK(!stamp_stamp_valid("20260407T240000Z"));
        CHECK(!stamp_stamp_valid("20260407T060000"));
        CHECK(!stamp_stamp_valid("2026-04-07T06:00:00Z"));
        CHECK(!stamp_stamp_valid("../../etc/passwd"));
        CHECK(!stamp_stamp_valid("-0260407T060000Z"));
        CHECK(!stamp_stamp_valid(""));
        CHECK(!stamp_stamp_valid(NULL));
        stamp_stamp_from_time(1775541600, s);
        CHECK(strcmp(s, "20260407T060000Z") == 0);
}

static void test_record(void)
{
        struct stamp_record r = { 0 }, back;
        char *text, *text2;

        strcpy(r.stamp, "20260407T060000Z");
        strcpy(r.created, "2026-04-07T06:00:00.000000001Z");
        r.host = strdup("host \"quoted\"");
        r.tool_version = strdup("stamp 0.1");
        CHECK_OK(stamp_strv_push(&r.sources, "/srv/data"));
        CHECK_OK(stamp_strv_push(&r.tags, "daily"));
        CHECK_OK(stamp_strv_push(&r.tags, "pre-restore"));
        CHECK_OK(stamp_strv_push(&r.errors, "a/b: Permission denied"));
        r.n_errors = 1;
        memset(r.root.b, 0x5a, STAMP_ID_SIZE);
        r.files = 30000;
        r.logical_bytes = 1ull << 40;
        r.new_bytes = 12345;
        r.duration_s = 1.5;
        r.root_mode = 040755;
        r.root_mtime_ns = 1775541600123456789;
        r.chunker = (struct stamp_chunker_params){ 4096, 16384, 131072 };
        r.zstd_level = 3;
        r.one_file_system = true;
        CHECK_OK(stamp_record_encode(&r, &text));
        CHECK_OK(stamp_record_parse(text, strlen(text), &back));
        CHECK(strcmp(back.stamp, r.stamp) == 0);
        CHECK(strcmp(back.host, r.host) == 0);
        CHECK(back.tags.n == 2 && strcmp(back.tags.v[1], "pre-restore") == 0);
        CHECK(back.logical_bytes == 1ull << 40 && back.files == 30000);
        CHECK(back.root_mtime_ns == 1775541600123456789);
        CHECK(stamp_id_cmp(&back.root, &r.root) == 0);
        CHECK(back.one_file_system && back.n_errors == 1);
        CHECK_OK(stamp_record_encode(&back, &text2));
        CHECK(strcmp(text, text2) == 0);
        free(text2);

        /* A length that does not match the text, i.e. an embedded NUL. */
        CHECK_RC(stamp_record_parse(text, strlen(text) + 1, &back), -EBADMSG);
        /* Truncated text. */
        {
                char *cut = strndup(text, strlen(text) / 2);
                struct stamp_record x;
                CHECK_RC(stamp_record_parse(cut, strlen(cut), &x), -EBADMSG);
                free(cut);
        }
        stamp_record_release(&back);
        stamp_record_release(&r);
        free(text);
}

/* Replaces the first @from in @text by @to (a fresh string). */
static char *edit(const char *text, const char *from, const char *to)
{
        const char *p = strstr(text, from);
        char *out;

        CHECK(p);
        CHECK(asprintf(&out, "%.*s%s%s", (int)(p - text), text, to, p + strlen(from)) > 0);
        return out;
}

/* The fields of live snapshots: optional, so records without them still parse. */
static void test_record_live(void)
{
        struct stamp_record r = { 0 }, back;
        char *text, *text2, *bad;

        strcpy(r.stamp, "20260407T060000Z");
        strcpy(r.created, "2026-04-07T06:00:00.000000001Z");
        r.host = strdup("h");
        r.tool_version = strdup("stamp 0.1");
        r.chunker = (struct stamp_chunker_params){ 4096, 16384, 131072 };
        CHECK_OK(stamp_strv_push(&r.sqlite, "db/app.db"));
        r.n_sqlite = 1;
        CHECK_OK(stamp_strv_push(&r.warnings, "db/old.db: database is locked"));
        r.n_warnings = 1;
        CHECK_OK(stamp_strv_push(&r.changed, "log/app.log"));
        r.n_changed = 1;
        CHECK_OK(stamp_record_add_hook(&r, "pre", "docker compose stop app", 0, 1.25));
        CHECK_OK(stamp_record_add_hook(&r, "post", "docker compose start app", 143, 0.5));
        r.stdin_path = strdup("exports/app.sql");
        r.stdin_command = strdup("sqlite3 app.db .dump");
        r.stdin_bytes = 12345;
        r.lock_path = strdup("/run/app/ingest.lock");
        r.lock_wait_s = 2.5;
        strcpy(r.sqlite_mode, "auto");
        r.xattr_names_known = true;
        CHECK_OK(stamp_strv_push(&r.xattr_names, "security.capability"));
        CHECK_OK(stamp_strv_push(&r.xattr_names, "user.a"));
        CHECK_OK(stamp_record_encode(&r, &text));
        CHECK(strstr(text, "\"changed_during_snapshot\""));
        CHECK_OK(stamp_record_parse(text, strlen(text), &back));
        CHECK(back.n_sqlite == 1 && strcmp(back.sqlite.v[0], "db/app.db") == 0);
        CHECK(back.n_warnings == 1 && back.warnings.n == 1);
        CHECK(back.n_hooks == 2 && strcmp(back.hooks[1].stage, "post") == 0);
        CHECK(back.hooks[1].exit_status == 143 && back.hooks[0].duration_s == 1.25);
        CHECK(strcmp(back.stdin_path, "exports/app.sql") == 0 && back.stdin_bytes == 12345);
        CHECK(!back.lock_shared && back.lock_wait_s == 2.5);
        CHECK(strcmp(back.sqlite_mode, "auto") == 0);
        CHECK(back.xattr_names_known && back.xattr_names.n == 2 &&
              strcmp(back.xattr_names.v[1], "user.a") == 0);
        CHECK_OK(stamp_record_encode(&back, &text2));
        CHECK(strcmp(text, text2) == 0);
        free(text2);
        stamp_record_release(&back);

        /* Checked when present. */
        bad = edit(text, "\"pre\"", "\"during\"");
        CHECK_RC(stamp_record_parse(bad, strlen(bad), &back), -EBADMSG);
        free(bad);
        bad = edit(text, "\"exclusive\"", "\"sometimes\"");
        CHECK_RC(stamp_record_parse(bad, strlen(bad), &back), -EBADMSG);
        free(bad);
        bad = edit(text, "\"sqlite\":\t\"auto\"", "\"sqlite\":\t\"maybe\"");
        CHECK_RC(stamp_record_parse(bad, strlen(bad), &back), -EBADMSG);
        free(bad);
        /* xattr_names: strictly sorted, no empty name, at most 255 bytes each. */
        {
                char long_name[300];
                const char *const edits[][2] = {
                        { "\"user.a\"", "\"security.capability\"" }, /* twice */
                        { "\"user.a\"", "\"a\"" },                   /* out of order */
                        { "\"security.capability\"", "\"\"" },       /* empty */
                        { "\"user.a\"", long_name },                  /* 256 bytes */
                };
                memset(long_name, 'x', 258);
                memcpy(long_name, "\"user.", 6);
                strcpy(long_name + 257, "\"");
                for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
                        bad = edit(text, edits[i][0], edits[i][1]);
                        CHECK_RC(stamp_record_parse(bad, strlen(bad), &back), -EBADMSG);
                        free(bad);
                }
        }
        free(text);
        /* Not known (too many names): no field, and nothing known after parsing. */
        r.xattr_names_known = false;
        CHECK_OK(stamp_record_encode(&r, &text));
        CHECK(!strstr(text, "xattr_names"));
        CHECK_OK(stamp_record_parse(text, strlen(text), &back));
        CHECK(!back.xattr_names_known && back.xattr_names.n == 0);
        stamp_record_release(&back);
        free(text);

        /* A record from before these fields existed. */
        stamp_record_release(&r);
        strcpy(r.stamp, "20260407T060000Z");
        r.chunker = (struct stamp_chunker_params){ 4096, 16384, 131072 };
        CHECK_OK(stamp_record_encode(&r, &text));
        text2 = edit(text, "\"sqlite_count\":\t0,", "");
        free(text);
        text = edit(text2, "\"sqlite\":\t[],", "");
        free(text2);
        text2 = edit(text, "\"warning_count\":\t0,", "");
        free(text);
        text = edit(text2, "\"warnings\":\t[],", "");
        free(text2);
        CHECK(!strstr(text, "sqlite") && !strstr(text, "warning"));
        CHECK_OK(stamp_record_parse(text, strlen(text), &back));
        CHECK(back.n_sqlite == 0 && back.n_hooks == 0 && !back.stdin_path && !back.sqlite_mode[0]);
        stamp_record_release(&back);
        free(text);
        stamp_record_release(&r);
}

static void expect_bad(const char *json)
{
        struct stamp_config c;

        CHECK(stamp_config_parse(json, strlen(json), &c) < 0);
}

static void test_config(void)
{
        struct stamp_config c = { 0 }, back;
        char *text;
        char buf[2048];

        c.version = 1;
        strcpy(c.chunker_alg, "fastcdc-gear-nc2");
        strcpy(c.chunk_id_alg, "xxh3-128-keyed");
        c.chunker = (struct stamp_chunker_params){ 4096, 16384, 131072 };
        c.zstd_level = -3;
        c.pack_size = 16u << 20;
        c.dedup_verify_max = 4096;
        strcpy(c.created, "2026-04-07T06:00:00.000000001Z");
        memset(c.secret, 0xa5, sizeof(c.secret));
        CHECK_OK(stamp_config_encode(&c, &text));
        CHECK_OK(stamp_config_parse(text, strlen(text), &back));
        CHECK(memcmp(back.secret, c.secret, sizeof(c.secret)) == 0);
        CHECK(back.zstd_level == -3 && back.chunker.avg == 16384);

        /* Unknown algorithm or version: unsupported, not corrupt. */
        {
                char *p = strstr(text, "xxh3-128-keyed");
                CHECK(p);
                snprintf(buf, sizeof(buf), "%.*ssha2-256-keyed%s", (int)(p - text), text, p + 14);
                CHECK_RC(stamp_config_parse(buf, strlen(buf), &back), -EOPNOTSUPP);
        }
        free(text);
        expect_bad("");
        expect_bad("[]");
        expect_bad("{\"format\":\"stampfs\"}");
        expect_bad("{\"format\":\"stampfs\",\"format\":\"stampfs\",\"version\":1}");
        expect_bad("{\"FORMAT\":\"stampfs\",\"version\":1}");
        expect_bad("{\"format\":\"stampfs\",\"version\":1e300}");
        expect_bad("{\"format\":\"stampfs\",\"version\":-1}");
}

/* drill.log lines: round trip, skipped steps, capped lists, damage refused. */
static void test_drill_entry(void)
{
        struct stamp_drill_entry e = { 0 }, back;
        char *text = NULL, detail[32];

        strcpy(e.stamp, "20260407T060000Z");
        strcpy(e.started, "2026-04-12T05:00:01.123456789Z");
        e.duration_s = 12.5;
        e.step_ran[STAMP_DRILL_VALIDATE] = e.step_ran[STAMP_DRILL_RESTORE] = true;
        e.step_s[STAMP_DRILL_VALIDATE] = 0.25;
        e.step_s[STAMP_DRILL_RESTORE] = 3;
        e.files = 1000;
        e.bytes = 1ull << 40;
        e.databases = 2;
        e.json_files = 3;
        e.host = strdup("backup-1");
        e.scratch = strdup("/srv/store/tmp/drill-ab12cd");
        CHECK_OK(stamp_drill_entry_add_problem(&e, "restore_failed", "db/a\"b\n.db", "Bad message", 100));
        CHECK_OK(stamp_drill_entry_add_problem(&e, "read_error", NULL, "x", 100));
        for (int i = 0; i < 30; i++) {
                snprintf(detail, sizeof(detail), "more %d", i);
                CHECK_OK(stamp_drill_entry_add_problem(&e, "content_mismatch", "f", detail, 25));
        }
        CHECK(e.n_problems == 32 && e.problems_len == 25);
        CHECK_OK(stamp_strv_push(&e.warnings, "a: cannot set the owner"));
        e.n_warnings = 1;

        CHECK_OK(stamp_drill_entry_encode(&e, &text));
        CHECK(!strchr(text, '\n'));
        CHECK_OK(stamp_drill_entry_parse(text, strlen(text), &back));
        CHECK(back.version == STAMP_DRILL_LOG_VERSION && strcmp(back.stamp, e.stamp) == 0);
        CHECK(!back.pass && strcmp(back.started, e.started) == 0 && back.duration_s == 12.5);
        CHECK(back.step_ran[STAMP_DRILL_VALIDATE] && back.step_s[STAMP_DRILL_VALIDATE] == 0.25);
        CHECK(back.step_ran[STAMP_DRILL_RESTORE] && back.step_s[STAMP_DRILL_RESTORE] == 3);
        CHECK(!back.step_ran[STAMP_DRILL_CHECK] && !back.step_ran[STAMP_DRILL_COMPARE]);
        CHECK(back.files == 1000 && back.bytes == 1ull << 40);
        CHECK(back.databases == 2 && back.json_files == 3);
        /* The line keeps the first problems; the count stays the true one. */
        CHECK(back.n_problems == 32 && back.problems_len == STAMP_DRILL_LOG_LIST_MAX);
        CHECK(strcmp(back.problems[0].path, "db/a\"b\n.db") == 0);
        CHECK(back.problems[1].path == NULL && strcmp(back.problems[1].kind, "read_error") == 0);
        CHECK(back.n_warnings == 1 && back.warnings.n == 1);
        CHECK(strcmp(back.host, "backup-1") == 0 && strcmp(back.scratch, e.scratch) == 0);
        CHECK(!back.kept && !back.read_data);
        stamp_drill_entry_release(&back);
        free(text);

        /* A pass without a host. */
        e.pass = true;
        free(e.host);
        e.host = NULL;
        CHECK_OK(stamp_drill_entry_encode(&e, &text));
        CHECK_OK(stamp_drill_entry_parse(text, strlen(text), &back));
        CHECK(back.pass && back.host == NULL);
        stamp_drill_entry_release(&back);
        /* Damage: cut short, a newer version, a wrong type, a bad stamp. */
        CHECK_RC(stamp_drill_entry_parse(text, strlen(text) / 2, &back), -EBADMSG);
        text[strlen(text) / 2] = 0;
        CHECK_RC(stamp_drill_entry_parse(text, strlen(text), &back), -EBADMSG);
        {
                static const char *const bad[] = { "[1]", "{\"v\": 1, \"stamp\": \"x\"}",
                                                   "{\"v\": \"1\"}", "" };
                CHECK_RC(stamp_drill_entry_parse("{\"v\": 2}", 8, &back), -EOPNOTSUPP);
                for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                        CHECK_RC(stamp_drill_entry_parse(bad[i], strlen(bad[i]), &back), -EBADMSG);
        }
        free(text);
        stamp_drill_entry_release(&e);
}

int main(void)
{
        test_stamps();
        test_record();
        test_record_live();
        test_config();
        test_drill_entry();
        printf("test-record: ok\n");
        return 0;
}

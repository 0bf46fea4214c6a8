/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the JSON parsers of store/record.c (snapshot records, the store
 * config and drill.log lines). The input is the JSON text; it is copied into a
 * NUL-terminated buffer (texts with a NUL inside are rejected by the
 * parsers, as they must be). Whatever parses must re-encode to a text the
 * parser accepts again, and the two encodings must be identical (round
 * trip stability); the values must survive the trip too.
 */
#include <string.h>

#include "fuzz.h"
#include "record.h"

static void check_strv_eq(const struct stamp_strv *a, const struct stamp_strv *b)
{
        FUZZ_CHECK(a->n == b->n);
        for (size_t i = 0; i < a->n; i++)
                FUZZ_CHECK(strcmp(a->v[i], b->v[i]) == 0);
}

static void check_record_eq(const struct stamp_record *a, const struct stamp_record *b)
{
        FUZZ_CHECK(a->version == b->version);
        FUZZ_CHECK(strcmp(a->stamp, b->stamp) == 0);
        FUZZ_CHECK(strcmp(a->created, b->created) == 0);
        FUZZ_CHECK(strcmp(a->host, b->host) == 0);
        check_strv_eq(&a->sources, &b->sources);
        check_strv_eq(&a->tags, &b->tags);
        check_strv_eq(&a->excludes, &b->excludes);
        FUZZ_CHECK(a->one_file_system == b->one_file_system);
        FUZZ_CHECK(stamp_id_cmp(&a->root, &b->root) == 0);
        FUZZ_CHECK(a->root_mode == b->root_mode && a->root_uid == b->root_uid &&
                   a->root_gid == b->root_gid && a->root_mtime_ns == b->root_mtime_ns);
        FUZZ_CHECK(a->files == b->files && a->dirs == b->dirs && a->symlinks == b->symlinks &&
                   a->specials == b->specials);
        FUZZ_CHECK(a->logical_bytes == b->logical_bytes && a->new_bytes == b->new_bytes &&
                   a->stored_new_bytes == b->stored_new_bytes &&
                   a->new_chunks == b->new_chunks && a->new_objects == b->new_objects);
        /* duration_s is a double printed with 15 significant digits: not compared exactly. */
        FUZZ_CHECK(strcmp(a->tool_version, b->tool_version) == 0);
        FUZZ_CHECK(a->chunker.min == b->chunker.min && a->chunker.avg == b->chunker.avg &&
                   a->chunker.max == b->chunker.max);
        FUZZ_CHECK(a->zstd_level == b->zstd_level);
        FUZZ_CHECK(a->n_errors == b->n_errors && a->n_changed == b->n_changed);
        FUZZ_CHECK(strcmp(a->validation, b->validation) == 0);
        FUZZ_CHECK(a->validated_objects == b->validated_objects &&
                   a->validated_bytes == b->validated_bytes);
        check_strv_eq(&a->errors, &b->errors);
        check_strv_eq(&a->changed, &b->changed);
}

static void fuzz_record(const char *text, size_t len)
{
        struct stamp_record r1 = { 0 }, r2 = { 0 };
        char *enc1 = NULL, *enc2 = NULL;

        if (stamp_record_parse(text, len, &r1) < 0)
                return;
        FUZZ_CHECK(stamp_stamp_valid(r1.stamp));
        FUZZ_CHECK(r1.host && r1.tool_version);
        FUZZ_CHECK(stamp_record_encode(&r1, &enc1) == 0);
        /* What the encoder writes, the parser must read. */
        FUZZ_CHECK(stamp_record_parse(enc1, strlen(enc1), &r2) == 0);
        FUZZ_CHECK(stamp_record_encode(&r2, &enc2) == 0);
        FUZZ_CHECK(strcmp(enc1, enc2) == 0);
        check_record_eq(&r1, &r2);
        free(enc1);
        free(enc2);
        stamp_record_release(&r1);
        stamp_record_release(&r2);
        FUZZ_CHECK(r1.host == NULL && r1.sources.v == NULL && r1.sources.n == 0);
}

static void check_config_eq(const struct stamp_config *a, const struct stamp_config *b)
{
        FUZZ_CHECK(a->version == b->version);
        FUZZ_CHECK(strcmp(a->chunker_alg, b->chunker_alg) == 0);
        FUZZ_CHECK(a->chunker.min == b->chunker.min && a->chunker.avg == b->chunker.avg &&
                   a->chunker.max == b->chunker.max);
        FUZZ_CHECK(strcmp(a->chunk_id_alg, b->chunk_id_alg) == 0);
        FUZZ_CHECK(memcmp(a->secret, b->secret, sizeof(a->secret)) == 0);
        FUZZ_CHECK(a->zstd_level == b->zstd_level);
        FUZZ_CHECK(a->pack_size == b->pack_size);
        FUZZ_CHECK(a->dedup_verify_max == b->dedup_verify_max);
        FUZZ_CHECK(strcmp(a->created, b->created) == 0);
}

static void fuzz_config(const char *text, size_t len)
{
        struct stamp_config c1, c2;
        char *enc1 = NULL, *enc2 = NULL;

        if (stamp_config_parse(text, len, &c1) < 0)
                return;
        FUZZ_CHECK(stamp_chunker_params_check(&c1.chunker) == 0);
        FUZZ_CHECK(stamp_config_encode(&c1, &enc1) == 0);
        FUZZ_CHECK(stamp_config_parse(enc1, strlen(enc1), &c2) == 0);
        FUZZ_CHECK(stamp_config_encode(&c2, &enc2) == 0);
        FUZZ_CHECK(strcmp(enc1, enc2) == 0);
        check_config_eq(&c1, &c2);
        free(enc1);
        free(enc2);
}

static void check_drill_eq(const struct stamp_drill_entry *a, const struct stamp_drill_entry *b)
{
        FUZZ_CHECK(a->version == b->version && a->pass == b->pass);
        FUZZ_CHECK(strcmp(a->stamp, b->stamp) == 0 && strcmp(a->started, b->started) == 0);
        FUZZ_CHECK(a->files == b->files && a->bytes == b->bytes);
        FUZZ_CHECK(a->databases == b->databases && a->json_files == b->json_files);
        FUZZ_CHECK(a->n_problems == b->n_problems && a->problems_len == b->problems_len);
        for (size_t i = 0; i < a->problems_len; i++) {
                FUZZ_CHECK(strcmp(a->problems[i].kind, b->problems[i].kind) == 0);
                FUZZ_CHECK(!a->problems[i].path == !b->problems[i].path);
                FUZZ_CHECK(!a->problems[i].path ||
                           strcmp(a->problems[i].path, b->problems[i].path) == 0);
                FUZZ_CHECK(strcmp(a->problems[i].detail, b->problems[i].detail) == 0);
        }
        FUZZ_CHECK(a->n_warnings == b->n_warnings);
        check_strv_eq(&a->warnings, &b->warnings);
        FUZZ_CHECK(strcmp(a->scratch, b->scratch) == 0 && a->kept == b->kept);
        FUZZ_CHECK(!a->host == !b->host && (!a->host || strcmp(a->host, b->host) == 0));
        for (int i = 0; i < _STAMP_DRILL_STEP_MAX; i++)
                FUZZ_CHECK(a->step_ran[i] == b->step_ran[i]);
}

/*
 * The encoder keeps the first STAMP_DRILL_LOG_LIST_MAX problems and
 * warnings and rounds times to milliseconds: the first encoding may lose
 * those, every later trip must be exact.
 */
static void fuzz_drill(const char *text, size_t len)
{
        struct stamp_drill_entry e1 = { 0 }, e2 = { 0 };
        char *enc1 = NULL, *enc2 = NULL;

        if (stamp_drill_entry_parse(text, len, &e1) < 0)
                return;
        FUZZ_CHECK(stamp_stamp_valid(e1.stamp) && e1.scratch);
        FUZZ_CHECK(e1.problems_len <= e1.n_problems);
        FUZZ_CHECK(stamp_drill_entry_encode(&e1, &enc1) == 0);
        FUZZ_CHECK(!strchr(enc1, '\n'));
        stamp_drill_entry_release(&e1);
        FUZZ_CHECK(stamp_drill_entry_parse(enc1, strlen(enc1), &e1) == 0);
        FUZZ_CHECK(stamp_drill_entry_encode(&e1, &enc2) == 0);
        FUZZ_CHECK(strcmp(enc1, enc2) == 0);
        FUZZ_CHECK(stamp_drill_entry_parse(enc2, strlen(enc2), &e2) == 0);
        check_drill_eq(&e1, &e2);
        free(enc1);
        free(enc2);
        stamp_drill_entry_release(&e1);
        stamp_drill_entry_release(&e2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *text;

        /* Bigger than any parser accepts (STAMP_JSON_MAX): nothing to learn. */
        if (size > STAMP_JSON_MAX)
                return 0;
        text = malloc(size + 1);
        if (!text)
                return 0;
        if (size)
                memcpy(text, data, size);
        text[size] = 0;
        fuzz_record(text, size);
        fuzz_config(text, size);
        fuzz_drill(text, size);
        free(text);
        return 0;
}

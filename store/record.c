/* SPDX-License-Identifier: MIT */
#include "record.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "macro.h"

#define STRING_MAX 65536
#define LIST_MAX 100000

static void json_freep(cJSON **j)
{
        cJSON_Delete(*j);
}
#define _cleanup_json_ _cleanup_(json_freep)

int stamp_strv_push(struct stamp_strv *v, const char *s)
{
        char **n = realloc(v->v, (v->n + 1) * sizeof(char *));
        char *copy;

        if (!n)
                return -ENOMEM;
        v->v = n;
        copy = strdup(s);
        if (!copy)
                return -ENOMEM;
        v->v[v->n++] = copy;
        return 0;
}

int stamp_strv_add_sorted(struct stamp_strv *v, const char *s, size_t len)
{
        size_t lo = 0, hi = v->n;
        char *copy, **n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int cmp = strncmp(v->v[mid], s, len);
                if (cmp == 0 && v->v[mid][len] == 0)
                        return 0;
                if (cmp < 0) /* equal up to @len and longer: after @s */
                        lo = mid + 1;
                else
                        hi = mid;
        }
        n = realloc(v->v, (v->n + 1) * sizeof(char *));
        if (!n)
                return -ENOMEM;
        v->v = n;
        copy = strndup(s, len);
        if (!copy)
                return -ENOMEM;
        memmove(&v->v[lo + 1], &v->v[lo], (v->n - lo) * sizeof(char *));
        v->v[lo] = copy;
        v->n++;
        return 1;
}

void stamp_strv_release(struct stamp_strv *v)
{
        for (size_t i = 0; i < v->n; i++)
                free(v->v[i]);
        free(v->v);
        v->v = NULL;
        v->n = 0;
}

bool stamp_stamp_valid(const char *s)
{
        struct tm tm = { 0 };
        const char *end;
        char back[STAMP_STAMP_LEN + 1];
        time_t t;

        if (!s || strlen(s) != STAMP_STAMP_LEN)
                return false;
        for (int i = 0; i < STAMP_STAMP_LEN; i++) {
                bool digit = s[i] >= '0' && s[i] <= '9';
                if (i == 8 ? s[i] != 'T' : i == 15 ? s[i] != 'Z' : !digit)
                        return false;
        }
        end = strptime(s, "%Y%m%dT%H%M%SZ", &tm);
        if (!end || *end)
                return false;
        /* Round trip: rejects 20260231 and 24:00:00. */
        t = timegm(&tm);
        stamp_stamp_from_time(t, back);
        return strcmp(back, s) == 0;
}

void stamp_stamp_from_time(int64_t t, char ret[STAMP_STAMP_LEN + 1])
{
        time_t tt = (time_t)t;
        struct tm tm;

        gmtime_r(&tt, &tm);
        strftime(ret, STAMP_STAMP_LEN + 1, "%Y%m%dT%H%M%SZ", &tm);
}

void stamp_iso8601(int64_t sec, long nsec, char ret[40])
{
        time_t tt = (time_t)sec;
        struct tm tm;
        char base[32];

        gmtime_r(&tt, &tm);
        strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(ret, 40, "%.24s.%09dZ", base, (int)(nsec % 1000000000));
}

/* Parsing helpers. Every getter fails with -EBADMSG on a wrong type. */

/*
 * Rejects duplicate keys. Our objects have a few dozen keys; more than
 * OBJECT_KEYS_MAX is malformed, which also keeps this check linear in the
 * input instead of quadratic.
 */
#define OBJECT_KEYS_MAX 256

static int no_duplicates(const cJSON *obj)
{
        unsigned n = 0;

        for (const cJSON *a = obj->child; a; a = a->next)
                if (++n > OBJECT_KEYS_MAX)
                        return -EBADMSG;
        for (const cJSON *a = obj->child; a; a = a->next)
                for (const cJSON *b = a->next; b; b = b->next)
                        if (a->string && b->string && strcmp(a->string, b->string) == 0)
                                return -EBADMSG;
        return 0;
}

static int get_u64(const cJSON *obj, const char *key, uint64_t *ret)
{
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
        double d;

        if (!cJSON_IsNumber(j))
                return -EBADMSG;
        d = j->valuedouble;
        if (!(d >= 0 && d < 9007199254740992.0) || floor(d) != d)
                return -EBADMSG;
        *ret = (uint64_t)d;
        return 0;
}

static int get_u32(const cJSON *obj, const char *key, uint32_t *ret)
{
        uint64_t v;
        int r = get_u64(obj, key, &v);

        if (r < 0)
                return r;
        if (v > UINT32_MAX)
                return -EBADMSG;
        *ret = (uint32_t)v;
        return 0;
}

static int get_int(const cJSON *obj, const char *key, int *ret)
{
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);

        if (!cJSON_IsNumber(j) || !(j->valuedouble >= -1000 && j->valuedouble <= 1000) ||
            floor(j->valuedouble) != j->valuedouble)
                return -EBADMSG;
        *ret = (int)j->valuedouble;
        return 0;
}

static const char *get_str(const cJSON *obj, const char *key);

/* Nanosecond times exceed 2^53, so they travel as decimal strings. */
static int get_i64_str(const cJSON *obj, const char *key, int64_t *ret)
{
        const char *s = get_str(obj, key);
        char *end;
        long long v;

        if (!s || !*s || strlen(s) > 20)
                return -EBADMSG;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno || *end)
                return -EBADMSG;
        *ret = v;
        return 0;
}

static const char *get_str(const cJSON *obj, const char *key)
{
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);

        if (!cJSON_IsString(j) || !j->valuestring || strlen(j->valuestring) > STRING_MAX)
                return NULL;
        return j->valuestring;
}

static int get_strcpy(const cJSON *obj, const char *key, char *buf, size_t size)
{
        const char *s = get_str(obj, key);

        if (!s || strlen(s) >= size)
                return -EBADMSG;
        strcpy(buf, s);
        return 0;
}

static int get_strdup(const cJSON *obj, const char *key, char **ret)
{
        const char *s = get_str(obj, key);

        if (!s)
                return -EBADMSG;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static int get_strv(const cJSON *obj, const char *key, struct stamp_strv *ret)
{
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, key), *j;
        size_t n = 0;
        int r;

        if (!cJSON_IsArray(arr))
                return -EBADMSG;
        cJSON_ArrayForEach(j, arr)
        {
                if (!cJSON_IsString(j) || strlen(j->valuestring) > STRING_MAX || ++n > LIST_MAX)
                        return -EBADMSG;
                r = stamp_strv_push(ret, j->valuestring);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int get_id(const cJSON *obj, const char *key, struct stamp_id *ret)
{
        const char *s = get_str(obj, key);

        if (!s)
                return -EBADMSG;
        return stamp_id_from_hex(s, ret) < 0 ? -EBADMSG : 0;
}

static int parse_text(const char *text, size_t len, cJSON **ret)
{
        cJSON *j;

        /* Parse only NUL-terminated text, with the NUL where the length says. */
        if (len > STAMP_JSON_MAX || strlen(text) != len)
                return -EBADMSG;
        j = cJSON_ParseWithOpts(text, NULL, 1);
        if (!j)
                return -EBADMSG;
        if (!cJSON_IsObject(j)) {
                cJSON_Delete(j);
                return -EBADMSG;
        }
        *ret = j;
        return 0;
}

/* Encoding helpers: each returns 0 or -ENOMEM. */

/*
 * Integers are printed exactly (cJSON's doubles print 15 digits, which
 * changes values above 2^52); the parser accepts up to 2^53 - 1.
 */
static int put_u64(cJSON *obj, const char *key, uint64_t v)
{
        char buf[32];

        if (v >= (1ull << 53))
                v = (1ull << 53) - 1; /* not reached by real counts; keeps the record parseable */
        snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
        return cJSON_AddRawToObject(obj, key, buf) ? 0 : -ENOMEM;
}

static int put_str(cJSON *obj, const char *key, const char *s)
{
        return cJSON_AddStringToObject(obj, key, s ? s : "") ? 0 : -ENOMEM;
}

/* Milliseconds, printed with a fixed format so that they parse back as they were. */
static int put_duration_key(cJSON *obj, const char *key, double d)
{
        char buf[32];

        if (!(d >= 0))
                d = 0;
        if (d > 1e8)
                d = 1e8;
        snprintf(buf, sizeof(buf), "%.3f", d);
        return cJSON_AddRawToObject(obj, key, buf) ? 0 : -ENOMEM;
}

static int put_duration(cJSON *obj, double d)
{
        return put_duration_key(obj, "duration_s", d);
}

/* Seconds with a fixed format, like duration_s. */
static int put_seconds(cJSON *obj, const char *key, double d)
{
        char buf[32];

        if (!(d >= 0))
                d = 0;
        if (d > 1e8)
                d = 1e8;
        snprintf(buf, sizeof(buf), "%.3f", d);
        return cJSON_AddRawToObject(obj, key, buf) ? 0 : -ENOMEM;
}

static int get_seconds(const cJSON *obj, const char *key, double *ret)
{
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);

        if (!cJSON_IsNumber(j) || !(j->valuedouble >= 0 && j->valuedouble < 1e9))
                return -EBADMSG;
        *ret = j->valuedouble;
        return 0;
}

static int put_i64_str(cJSON *obj, const char *key, int64_t v)
{
        char buf[32];

        snprintf(buf, sizeof(buf), "%lld", (long long)v);
        return put_str(obj, key, buf);
}

static int put_strv(cJSON *obj, const char *key, const struct stamp_strv *v)
{
        cJSON *arr = cJSON_AddArrayToObject(obj, key);

        if (!arr)
                return -ENOMEM;
        for (size_t i = 0; i < v->n; i++) {
                cJSON *s = cJSON_CreateString(v->v[i]);
                if (!s || !cJSON_AddItemToArray(arr, s)) {
                        cJSON_Delete(s);
                        return -ENOMEM;
                }
        }
        return 0;
}

static int put_id(cJSON *obj, const char *key, const struct stamp_id *id)
{
        char hex[STAMP_ID_HEX_SIZE];

        stamp_id_to_hex(id, hex);
        return put_str(obj, key, hex);
}

static int put_chunker(cJSON *obj, const char *alg, const struct stamp_chunker_params *p)
{
        cJSON *c = cJSON_AddObjectToObject(obj, "chunker");

        if (!c)
                return -ENOMEM;
        if (put_str(c, "algorithm", alg) < 0 || put_u64(c, "min", p->min) < 0 ||
            put_u64(c, "avg", p->avg) < 0 || put_u64(c, "max", p->max) < 0)
                return -ENOMEM;
        return 0;
}

static int get_chunker(const cJSON *obj, char *alg, size_t alg_size,
                       struct stamp_chunker_params *p)
{
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(obj, "chunker");

        if (!cJSON_IsObject(c) || no_duplicates(c) < 0)
                return -EBADMSG;
        if (alg && get_strcpy(c, "algorithm", alg, alg_size) < 0)
                return -EBADMSG;
        if (get_u32(c, "min", &p->min) < 0 || get_u32(c, "avg", &p->avg) < 0 ||
            get_u32(c, "max", &p->max) < 0)
                return -EBADMSG;
        return stamp_chunker_params_check(p) < 0 ? -EBADMSG : 0;
}

static int print(cJSON *j, char **ret)
{
        char *s = cJSON_Print(j);

        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static void hex_encode(const uint8_t *p, size_t n, char *out)
{
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[p[i] >> 4];
                out[2 * i + 1] = digits[p[i] & 15];
        }
        out[2 * n] = 0;
}

static int hex_decode(const char *s, uint8_t *out, size_t n)
{
        if (strlen(s) != 2 * n)
                return -EBADMSG;
        for (size_t i = 0; i < 2 * n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return -EBADMSG;
        for (size_t i = 0; i < n; i++) {
                unsigned v;
                sscanf(s + 2 * i, "%2x", &v);
                out[i] = (uint8_t)v;
        }
        return 0;
}

int stamp_config_encode(const struct stamp_config *c, char **ret)
{
        _cleanup_json_ cJSON *j = cJSON_CreateObject();
        cJSON *comp;
        char secret[2 * STAMP_SECRET_SEED_SIZE + 1], check[2 * STAMP_ID_SIZE + 1];
        struct stamp_id sum;

        if (!j)
                return -ENOMEM;
        hex_encode(c->secret, sizeof(c->secret), secret);
        stamp_checksum128(c->secret, sizeof(c->secret), &sum);
        hex_encode(sum.b, sizeof(sum.b), check);
        if (put_str(j, "format", "stampfs") < 0 || put_u64(j, "version", c->version) < 0 ||
            put_str(j, "created", c->created) < 0 ||
            put_chunker(j, c->chunker_alg, &c->chunker) < 0 ||
            put_str(j, "chunk_id", c->chunk_id_alg) < 0 || put_str(j, "secret", secret) < 0 ||
            put_str(j, "secret_check", check) < 0 ||
            put_u64(j, "pack_size", c->pack_size) < 0 ||
            put_u64(j, "dedup_verify_max", c->dedup_verify_max) < 0)
                return -ENOMEM;
        comp = cJSON_AddObjectToObject(j, "compression");
        if (!comp || put_str(comp, "algorithm", "zstd") < 0 ||
            !cJSON_AddNumberToObject(comp, "level", c->zstd_level))
                return -ENOMEM;
        return print(j, ret);
}

int stamp_config_parse(const char *text, size_t len, struct stamp_config *ret)
{
        _cleanup_json_ cJSON *j = NULL;
        struct stamp_config c = { 0 };
        const cJSON *comp;
        const char *s;
        uint64_t version;
        int r;

        r = parse_text(text, len, &j);
        if (r < 0)
                return r;
        if (no_duplicates(j) < 0)
                return -EBADMSG;
        s = get_str(j, "format");
        if (!s || strcmp(s, "stampfs") != 0)
                return -EBADMSG;
        if (get_u64(j, "version", &version) < 0)
                return -EBADMSG;
        if (version != STAMP_CONFIG_VERSION)
                return -EOPNOTSUPP;
        c.version = (unsigned)version;
        if (get_strcpy(j, "created", c.created, sizeof(c.created)) < 0 ||
            get_chunker(j, c.chunker_alg, sizeof(c.chunker_alg), &c.chunker) < 0 ||
            get_strcpy(j, "chunk_id", c.chunk_id_alg, sizeof(c.chunk_id_alg)) < 0 ||
            get_u32(j, "pack_size", &c.pack_size) < 0 ||
            get_u32(j, "dedup_verify_max", &c.dedup_verify_max) < 0)
                return -EBADMSG;
        s = get_str(j, "secret");
        if (!s || hex_decode(s, c.secret, sizeof(c.secret)) < 0)
                return -EBADMSG;
        /* Since 2026-12-07: a damaged secret would name every new chunk wrongly. */
        if (cJSON_GetObjectItemCaseSensitive(j, "secret_check")) {
                struct stamp_id want, sum;
                s = get_str(j, "secret_check");
                if (!s || hex_decode(s, want.b, sizeof(want.b)) < 0)
                        return -EBADMSG;
                stamp_checksum128(c.secret, sizeof(c.secret), &sum);
                if (stamp_id_cmp(&sum, &want) != 0)
                        return -EBADMSG;
        }
        comp = cJSON_GetObjectItemCaseSensitive(j, "compression");
        if (!cJSON_IsObject(comp) || get_int(comp, "level", &c.zstd_level) < 0)
                return -EBADMSG;
        s = get_str(comp, "algorithm");
        if (!s || strcmp(s, "zstd") != 0)
                return -EOPNOTSUPP;
        if (strcmp(c.chunker_alg, "fastcdc-gear-nc2") != 0 ||
            strcmp(c.chunk_id_alg, "xxh3-128-keyed") != 0)
                return -EOPNOTSUPP;
        if (c.pack_size < (1u << 20) || c.pack_size > (1u << 30) ||
            c.zstd_level < -7 || c.zstd_level > 19 || c.dedup_verify_max > (1u << 20))
                return -EBADMSG;
        *ret = c;
        return 0;
}

void stamp_record_release(struct stamp_record *r)
{
        free(r->host);
        free(r->tool_version);
        free(r->root_xattrs);
        stamp_strv_release(&r->sources);
        stamp_strv_release(&r->tags);
        stamp_strv_release(&r->excludes);
        stamp_strv_release(&r->errors);
        stamp_strv_release(&r->changed);
        stamp_strv_release(&r->sqlite);
        stamp_strv_release(&r->warnings);
        stamp_strv_release(&r->xattr_names);
        for (size_t i = 0; i < r->n_hooks; i++) {
                free(r->hooks[i].stage);
                free(r->hooks[i].command);
        }
        free(r->hooks);
        free(r->stdin_path);
        free(r->stdin_command);
        free(r->lock_path);
        memset(r, 0, sizeof(*r));
}

int stamp_record_add_hook(struct stamp_record *r, const char *stage, const char *command,
                          int exit_status, double duration_s)
{
        struct stamp_hook_run *v, *h;

        if (r->n_hooks >= LIST_MAX)
                return -E2BIG;
        v = realloc(r->hooks, (r->n_hooks + 1) * sizeof(*v));
        if (!v)
                return -ENOMEM;
        r->hooks = v;
        h = &v[r->n_hooks];
        h->stage = strdup(stage);
        h->command = strdup(command);
        if (!h->stage || !h->command) {
                free(h->stage);
                free(h->command);
                return -ENOMEM;
        }
        h->exit_status = exit_status;
        h->duration_s = duration_s;
        r->n_hooks++;
        return 0;
}

/* The optional fields of a record (see record.h). */
static int encode_live(cJSON *j, const struct stamp_record *r)
{
        if (put_u64(j, "sqlite_count", r->n_sqlite) < 0 || put_strv(j, "sqlite", &r->sqlite) < 0 ||
            put_u64(j, "warning_count", r->n_warnings) < 0 ||
            put_strv(j, "warnings", &r->warnings) < 0)
                return -ENOMEM;
        if (r->n_hooks) {
                cJSON *arr = cJSON_AddArrayToObject(j, "hooks");
                if (!arr)
                        return -ENOMEM;
                for (size_t i = 0; i < r->n_hooks; i++) {
                        const struct stamp_hook_run *h = &r->hooks[i];
                        cJSON *o = cJSON_CreateObject();
                        if (!o || !cJSON_AddItemToArray(arr, o)) {
                                cJSON_Delete(o);
                                return -ENOMEM;
                        }
                        if (put_str(o, "stage", h->stage) < 0 ||
                            put_str(o, "command", h->command) < 0 ||
                            !cJSON_AddNumberToObject(o, "exit_status", h->exit_status) ||
                            put_seconds(o, "duration_s", h->duration_s) < 0)
                                return -ENOMEM;
                }
        }
        if (r->stdin_path) {
                cJSON *o = cJSON_AddObjectToObject(j, "stdin");
                if (!o || put_str(o, "path", r->stdin_path) < 0 ||
                    put_str(o, "command", r->stdin_command) < 0 ||
                    put_u64(o, "bytes", r->stdin_bytes) < 0)
                        return -ENOMEM;
        }
        if (r->xattr_names_known && put_strv(j, "xattr_names", &r->xattr_names) < 0)
                return -ENOMEM;
        if (r->lock_path) {
                cJSON *o = cJSON_AddObjectToObject(j, "lock");
                if (!o || put_str(o, "path", r->lock_path) < 0 ||
                    put_str(o, "mode", r->lock_shared ? "shared" : "exclusive") < 0 ||
                    put_seconds(o, "waited_s", r->lock_wait_s) < 0)
                        return -ENOMEM;
        }
        return 0;
}

int stamp_record_encode(const struct stamp_record *r, char **ret)
{
        _cleanup_json_ cJSON *j = cJSON_CreateObject();
        cJSON *opt;

        if (!j)
                return -ENOMEM;
        if (put_u64(j, "version", STAMP_RECORD_VERSION) < 0 || put_str(j, "stamp", r->stamp) < 0 ||
            put_str(j, "created", r->created) < 0 || put_str(j, "host", r->host) < 0 ||
            put_strv(j, "sources", &r->sources) < 0 || put_strv(j, "tags", &r->tags) < 0 ||
            put_id(j, "root", &r->root) < 0 || put_u64(j, "files", r->files) < 0 ||
            put_u64(j, "directories", r->dirs) < 0 || put_u64(j, "symlinks", r->symlinks) < 0 ||
            put_u64(j, "specials", r->specials) < 0 ||
            put_u64(j, "logical_bytes", r->logical_bytes) < 0 ||
            put_u64(j, "new_bytes", r->new_bytes) < 0 ||
            put_u64(j, "stored_new_bytes", r->stored_new_bytes) < 0 ||
            put_u64(j, "new_chunks", r->new_chunks) < 0 ||
            put_u64(j, "new_objects", r->new_objects) < 0 ||
            put_duration(j, r->duration_s) < 0 ||
            put_str(j, "tool_version", r->tool_version) < 0 ||
            put_u64(j, "error_count", r->n_errors) < 0 || put_strv(j, "errors", &r->errors) < 0 ||
            put_u64(j, "changed_count", r->n_changed) < 0 ||
            put_strv(j, "changed_during_snapshot", &r->changed) < 0 || encode_live(j, r) < 0)
                return -ENOMEM;
        {
                cJSON *m = cJSON_AddObjectToObject(j, "root_meta");
                if (!m || put_u64(m, "mode", r->root_mode) < 0 || put_u64(m, "uid", r->root_uid) < 0 ||
                    put_u64(m, "gid", r->root_gid) < 0 ||
                    put_i64_str(m, "mtime_ns", r->root_mtime_ns) < 0)
                        return -ENOMEM;
                if (r->root_xattrs_len) {
                        char *hex = malloc(2 * r->root_xattrs_len + 1);
                        int e;
                        if (!hex)
                                return -ENOMEM;
                        hex_encode(r->root_xattrs, r->root_xattrs_len, hex);
                        e = put_str(m, "xattrs", hex);
                        free(hex);
                        if (e < 0)
                                return e;
                }
        }
        if (r->validation[0]) {
                cJSON *v = cJSON_AddObjectToObject(j, "validation");
                if (!v || put_str(v, "status", r->validation) < 0 ||
                    put_u64(v, "objects", r->validated_objects) < 0 ||
                    put_u64(v, "bytes", r->validated_bytes) < 0 ||
                    put_duration_key(v, "duration_s", r->validation_s) < 0)
                        return -ENOMEM;
        }
        opt = cJSON_AddObjectToObject(j, "options");
        if (!opt || put_strv(opt, "excludes", &r->excludes) < 0 ||
            !cJSON_AddBoolToObject(opt, "one_file_system", r->one_file_system) ||
            put_chunker(opt, "fastcdc-gear-nc2", &r->chunker) < 0 ||
            !cJSON_AddNumberToObject(opt, "zstd_level", r->zstd_level) ||
            (r->sqlite_mode[0] && put_str(opt, "sqlite", r->sqlite_mode) < 0))
                return -ENOMEM;
        return print(j, ret);
}

static bool has(const cJSON *obj, const char *key)
{
        return cJSON_GetObjectItemCaseSensitive(obj, key) != NULL;
}

static int parse_hook(const cJSON *o, struct stamp_record *r)
{
        const char *stage, *command;
        double d;
        int status;

        if (!cJSON_IsObject(o) || no_duplicates(o) < 0)
                return -EBADMSG;
        stage = get_str(o, "stage");
        command = get_str(o, "command");
        if (!stage || (strcmp(stage, "pre") != 0 && strcmp(stage, "post") != 0) || !command ||
            get_int(o, "exit_status", &status) < 0 || status < -1 || status > 255 ||
            get_seconds(o, "duration_s", &d) < 0)
                return -EBADMSG;
        return stamp_record_add_hook(r, stage, command, status, d);
}

/*
 * "xattr_names": names as a tree entry holds them (1-255 bytes), strictly
 * sorted bytewise (so each list has one encoding), at most
 * STAMP_RECORD_XATTR_NAMES_MAX.
 */
static int parse_xattr_names(const cJSON *j, struct stamp_record *r)
{
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "xattr_names"), *e;
        const char *prev = NULL;
        int err;

        if (!cJSON_IsArray(arr))
                return -EBADMSG;
        cJSON_ArrayForEach(e, arr)
        {
                size_t len;
                if (!cJSON_IsString(e) || r->xattr_names.n >= STAMP_RECORD_XATTR_NAMES_MAX)
                        return -EBADMSG;
                len = strlen(e->valuestring);
                if (len == 0 || len > 255 || (prev && strcmp(prev, e->valuestring) >= 0))
                        return -EBADMSG;
                err = stamp_strv_push(&r->xattr_names, e->valuestring);
                if (err < 0)
                        return err;
                prev = e->valuestring;
        }
        r->xattr_names_known = true;
        return 0;
}

/* The optional fields: each is checked when present. */
static int parse_live(const cJSON *j, struct stamp_record *r)
{
        const cJSON *o;
        int e;

        if ((has(j, "sqlite_count") || has(j, "sqlite")) &&
            (get_u64(j, "sqlite_count", &r->n_sqlite) < 0 || get_strv(j, "sqlite", &r->sqlite) < 0))
                return -EBADMSG;
        if ((has(j, "warning_count") || has(j, "warnings")) &&
            (get_u64(j, "warning_count", &r->n_warnings) < 0 ||
             get_strv(j, "warnings", &r->warnings) < 0))
                return -EBADMSG;
        if (has(j, "hooks")) {
                const cJSON *h, *arr = cJSON_GetObjectItemCaseSensitive(j, "hooks");
                if (!cJSON_IsArray(arr))
                        return -EBADMSG;
                cJSON_ArrayForEach(h, arr)
                {
                        e = parse_hook(h, r);
                        if (e < 0)
                                return e == -E2BIG ? -EBADMSG : e;
                }
        }
        if (has(j, "xattr_names")) {
                e = parse_xattr_names(j, r);
                if (e < 0)
                        return e;
        }
        o = cJSON_GetObjectItemCaseSensitive(j, "stdin");
        if (o && (!cJSON_IsObject(o) || no_duplicates(o) < 0 ||
                  get_strdup(o, "path", &r->stdin_path) < 0 ||
                  get_strdup(o, "command", &r->stdin_command) < 0 ||
                  get_u64(o, "bytes", &r->stdin_bytes) < 0))
                return -EBADMSG;
        o = cJSON_GetObjectItemCaseSensitive(j, "lock");
        if (o) {
                const char *mode;
                if (!cJSON_IsObject(o) || no_duplicates(o) < 0 ||
                    get_strdup(o, "path", &r->lock_path) < 0 ||
                    get_seconds(o, "waited_s", &r->lock_wait_s) < 0)
                        return -EBADMSG;
                mode = get_str(o, "mode");
                if (!mode || (strcmp(mode, "shared") != 0 && strcmp(mode, "exclusive") != 0))
                        return -EBADMSG;
                r->lock_shared = strcmp(mode, "shared") == 0;
        }
        return 0;
}

static int record_parse(const cJSON *j, struct stamp_record *r)
{
        const cJSON *opt, *ofs;
        uint64_t version;

        if (no_duplicates(j) < 0 || get_u64(j, "version", &version) < 0)
                return -EBADMSG;
        if (version != STAMP_RECORD_VERSION)
                return -EOPNOTSUPP;
        r->version = (unsigned)version;
        if (get_strcpy(j, "stamp", r->stamp, sizeof(r->stamp)) < 0 ||
            !stamp_stamp_valid(r->stamp) ||
            get_strcpy(j, "created", r->created, sizeof(r->created)) < 0 ||
            get_strdup(j, "host", &r->host) < 0 || get_strv(j, "sources", &r->sources) < 0 ||
            get_strv(j, "tags", &r->tags) < 0 || get_id(j, "root", &r->root) < 0 ||
            get_u64(j, "files", &r->files) < 0 || get_u64(j, "directories", &r->dirs) < 0 ||
            get_u64(j, "symlinks", &r->symlinks) < 0 || get_u64(j, "specials", &r->specials) < 0 ||
            get_u64(j, "logical_bytes", &r->logical_bytes) < 0 ||
            get_u64(j, "new_bytes", &r->new_bytes) < 0 ||
            get_u64(j, "stored_new_bytes", &r->stored_new_bytes) < 0 ||
            get_u64(j, "new_chunks", &r->new_chunks) < 0 ||
            get_u64(j, "new_objects", &r->new_objects) < 0 ||
            get_strdup(j, "tool_version", &r->tool_version) < 0 ||
            get_u64(j, "error_count", &r->n_errors) < 0 || get_strv(j, "errors", &r->errors) < 0 ||
            get_u64(j, "changed_count", &r->n_changed) < 0 ||
            get_strv(j, "changed_during_snapshot", &r->changed) < 0)
                return -EBADMSG;
        {
                int e = parse_live(j, r);
                if (e < 0)
                        return e;
        }
        {
                const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "duration_s");
                if (!cJSON_IsNumber(d) || !(d->valuedouble >= 0 && d->valuedouble < 1e9))
                        return -EBADMSG;
                r->duration_s = d->valuedouble;
        }
        {
                const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "root_meta");
                if (!cJSON_IsObject(m) || no_duplicates(m) < 0 ||
                    get_u32(m, "mode", &r->root_mode) < 0 || get_u32(m, "uid", &r->root_uid) < 0 ||
                    get_u32(m, "gid", &r->root_gid) < 0 ||
                    get_i64_str(m, "mtime_ns", &r->root_mtime_ns) < 0)
                        return -EBADMSG;
                if (cJSON_GetObjectItemCaseSensitive(m, "xattrs")) {
                        const char *hex = get_str(m, "xattrs");
                        size_t n = hex ? strlen(hex) / 2 : 0;
                        if (!hex || n == 0 || strlen(hex) % 2)
                                return -EBADMSG;
                        r->root_xattrs = malloc(n);
                        if (!r->root_xattrs)
                                return -ENOMEM;
                        if (hex_decode(hex, r->root_xattrs, n) < 0)
                                return -EBADMSG;
                        r->root_xattrs_len = n;
                }
        }
        if (cJSON_GetObjectItemCaseSensitive(j, "validation")) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "validation");
                const cJSON *d = cJSON_GetObjectItemCaseSensitive(v, "duration_s");
                if (!cJSON_IsObject(v) || no_duplicates(v) < 0 ||
                    get_strcpy(v, "status", r->validation, sizeof(r->validation)) < 0 ||
                    (strcmp(r->validation, "ok") != 0 && strcmp(r->validation, "skipped") != 0) ||
                    get_u64(v, "objects", &r->validated_objects) < 0 ||
                    get_u64(v, "bytes", &r->validated_bytes) < 0 || !cJSON_IsNumber(d) ||
                    !(d->valuedouble >= 0 && d->valuedouble < 1e9))
                        return -EBADMSG;
                r->validation_s = d->valuedouble;
        }
        opt = cJSON_GetObjectItemCaseSensitive(j, "options");
        if (!cJSON_IsObject(opt) || no_duplicates(opt) < 0 ||
            get_strv(opt, "excludes", &r->excludes) < 0 ||
            get_chunker(opt, NULL, 0, &r->chunker) < 0 ||
            get_int(opt, "zstd_level", &r->zstd_level) < 0)
                return -EBADMSG;
        ofs = cJSON_GetObjectItemCaseSensitive(opt, "one_file_system");
        if (!cJSON_IsBool(ofs))
                return -EBADMSG;
        r->one_file_system = cJSON_IsTrue(ofs);
        if (has(opt, "sqlite")) {
                const char *mode = get_str(opt, "sqlite");
                if (!mode || (strcmp(mode, "auto") != 0 && strcmp(mode, "copy") != 0))
                        return -EBADMSG;
                strcpy(r->sqlite_mode, mode);
        }
        return 0;
}

int stamp_record_parse(const char *text, size_t len, struct stamp_record *ret)
{
        _cleanup_json_ cJSON *j = NULL;
        struct stamp_record r = { 0 };
        int e;

        e = parse_text(text, len, &j);
        if (e < 0)
                return e;
        e = record_parse(j, &r);
        if (e < 0) {
                stamp_record_release(&r);
                return e;
        }
        *ret = r;
        return 0;
}

/* drill.log lines. */

static const char *const drill_step_keys[_STAMP_DRILL_STEP_MAX] = {
        [STAMP_DRILL_VALIDATE] = "validate_s",
        [STAMP_DRILL_RESTORE] = "restore_s",
        [STAMP_DRILL_CHECK] = "check_s",
        [STAMP_DRILL_COMPARE] = "compare_s",
};

void stamp_drill_entry_release(struct stamp_drill_entry *e)
{
        for (size_t i = 0; i < e->problems_len; i++) {
                free(e->problems[i].kind);
                free(e->problems[i].path);
                free(e->problems[i].detail);
        }
        free(e->problems);
        stamp_strv_release(&e->warnings);
        free(e->scratch);
        free(e->host);
        memset(e, 0, sizeof(*e));
}

int stamp_drill_entry_add_problem(struct stamp_drill_entry *e, const char *kind, const char *path,
                                  const char *detail, size_t max)
{
        struct stamp_drill_problem *v, *p;

        e->n_problems++;
        if (e->problems_len >= max)
                return 0;
        v = realloc(e->problems, (e->problems_len + 1) * sizeof(*v));
        if (!v)
                return -ENOMEM;
        e->problems = v;
        p = &v[e->problems_len];
        p->kind = strdup(kind);
        p->path = path ? strdup(path) : NULL;
        p->detail = strdup(detail ? detail : "");
        if (!p->kind || (path && !p->path) || !p->detail) {
                free(p->kind);
                free(p->path);
                free(p->detail);
                return -ENOMEM;
        }
        e->problems_len++;
        return 0;
}

static int put_drill_steps(cJSON *j, const struct stamp_drill_entry *e)
{
        cJSON *steps = cJSON_AddObjectToObject(j, "steps");

        if (!steps)
                return -ENOMEM;
        for (int i = 0; i < _STAMP_DRILL_STEP_MAX; i++) {
                if (!e->step_ran[i]) {
                        if (!cJSON_AddNullToObject(steps, drill_step_keys[i]))
                                return -ENOMEM;
                } else if (put_seconds(steps, drill_step_keys[i], e->step_s[i]) < 0) {
                        return -ENOMEM;
                }
        }
        return 0;
}

static int put_drill_problems(cJSON *j, const struct stamp_drill_entry *e)
{
        cJSON *arr = cJSON_AddArrayToObject(j, "problems");

        if (!arr)
                return -ENOMEM;
        for (size_t i = 0; i < e->problems_len && i < STAMP_DRILL_LOG_LIST_MAX; i++) {
                const struct stamp_drill_problem *p = &e->problems[i];
                cJSON *o = cJSON_CreateObject();
                if (!o || !cJSON_AddItemToArray(arr, o)) {
                        cJSON_Delete(o);
                        return -ENOMEM;
                }
                if (put_str(o, "kind", p->kind) < 0 ||
                    (p->path ? put_str(o, "path", p->path) < 0
                             : !cJSON_AddNullToObject(o, "path")) ||
                    put_str(o, "detail", p->detail) < 0)
                        return -ENOMEM;
        }
        return 0;
}

int stamp_drill_entry_encode(const struct stamp_drill_entry *e, char **ret)
{
        _cleanup_json_ cJSON *j = cJSON_CreateObject();
        struct stamp_strv first = { .v = e->warnings.v, .n = e->warnings.n };
        char *s;

        if (!j)
                return -ENOMEM;
        if (first.n > STAMP_DRILL_LOG_LIST_MAX)
                first.n = STAMP_DRILL_LOG_LIST_MAX;
        if (put_u64(j, "v", STAMP_DRILL_LOG_VERSION) < 0 ||
            (e->host && put_str(j, "host", e->host) < 0) || put_str(j, "stamp", e->stamp) < 0 ||
            put_str(j, "result", e->pass ? "pass" : "fail") < 0 ||
            put_str(j, "started", e->started) < 0 || put_duration(j, e->duration_s) < 0 ||
            put_drill_steps(j, e) < 0 || !cJSON_AddBoolToObject(j, "read_data", e->read_data) ||
            put_u64(j, "files", e->files) < 0 || put_u64(j, "bytes", e->bytes) < 0 ||
            put_u64(j, "databases", e->databases) < 0 ||
            put_u64(j, "json_files", e->json_files) < 0 ||
            put_u64(j, "problem_count", e->n_problems) < 0 || put_drill_problems(j, e) < 0 ||
            put_u64(j, "warning_count", e->n_warnings) < 0 || put_strv(j, "warnings", &first) < 0 ||
            put_str(j, "scratch", e->scratch) < 0 || !cJSON_AddBoolToObject(j, "kept", e->kept))
                return -ENOMEM;
        /* One line: drill.log is read line by line. cJSON escapes control characters. */
        s = cJSON_PrintUnformatted(j);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int get_bool(const cJSON *obj, const char *key, bool *ret)
{
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);

        if (!cJSON_IsBool(j))
                return -EBADMSG;
        *ret = cJSON_IsTrue(j);
        return 0;
}

static int parse_drill_steps(const cJSON *j, struct stamp_drill_entry *e)
{
        const cJSON *steps = cJSON_GetObjectItemCaseSensitive(j, "steps");

        if (!cJSON_IsObject(steps) || no_duplicates(steps) < 0)
                return -EBADMSG;
        for (int i = 0; i < _STAMP_DRILL_STEP_MAX; i++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(steps, drill_step_keys[i]);
                if (cJSON_IsNull(v))
                        continue;
                if (get_seconds(steps, drill_step_keys[i], &e->step_s[i]) < 0)
                        return -EBADMSG;
                e->step_ran[i] = true;
        }
        return 0;
}

static int parse_drill_problems(const cJSON *j, struct stamp_drill_entry *e)
{
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "problems"), *o;
        uint64_t total = e->n_problems;

        if (!cJSON_IsArray(arr))
                return -EBADMSG;
        cJSON_ArrayForEach(o, arr)
        {
                const cJSON *path;
                const char *kind, *detail;
                int r;
                if (!cJSON_IsObject(o) || no_duplicates(o) < 0)
                        return -EBADMSG;
                kind = get_str(o, "kind");
                detail = get_str(o, "detail");
                path = cJSON_GetObjectItemCaseSensitive(o, "path");
                if (!kind || !detail || !(cJSON_IsNull(path) || get_str(o, "path")) ||
                    e->problems_len >= LIST_MAX)
                        return -EBADMSG;
                r = stamp_drill_entry_add_problem(e, kind, cJSON_IsNull(path) ? NULL : get_str(o, "path"),
                                                  detail, LIST_MAX);
                if (r < 0)
                        return r;
        }
        /* add_problem counted them again: the line's own count stands. */
        e->n_problems = total;
        return e->problems_len <= total ? 0 : -EBADMSG;
}

static int drill_parse(const cJSON *j, struct stamp_drill_entry *e)
{
        uint64_t version;
        const char *result;
        int r;

        if (no_duplicates(j) < 0 || get_u64(j, "v", &version) < 0)
                return -EBADMSG;
        if (version != STAMP_DRILL_LOG_VERSION)
                return -EOPNOTSUPP;
        e->version = (unsigned)version;
        result = get_str(j, "result");
        if (get_strcpy(j, "stamp", e->stamp, sizeof(e->stamp)) < 0 ||
            !stamp_stamp_valid(e->stamp) || !result ||
            (strcmp(result, "pass") != 0 && strcmp(result, "fail") != 0) ||
            get_strcpy(j, "started", e->started, sizeof(e->started)) < 0 ||
            get_seconds(j, "duration_s", &e->duration_s) < 0 || parse_drill_steps(j, e) < 0 ||
            get_bool(j, "read_data", &e->read_data) < 0 || get_u64(j, "files", &e->files) < 0 ||
            get_u64(j, "bytes", &e->bytes) < 0 || get_u64(j, "databases", &e->databases) < 0 ||
            get_u64(j, "json_files", &e->json_files) < 0 ||
            get_u64(j, "problem_count", &e->n_problems) < 0 ||
            get_u64(j, "warning_count", &e->n_warnings) < 0 ||
            get_bool(j, "kept", &e->kept) < 0)
                return -EBADMSG;
        e->pass = strcmp(result, "pass") == 0;
        r = parse_drill_problems(j, e);
        if (r < 0)
                return r;
        r = get_strv(j, "warnings", &e->warnings);
        if (r < 0)
                return r;
        r = get_strdup(j, "scratch", &e->scratch);
        if (r < 0)
                return r;
        if (has(j, "host"))
                return get_strdup(j, "host", &e->host);
        return 0;
}

int stamp_drill_entry_parse(const char *text, size_t len, struct stamp_drill_entry *ret)
{
        _cleanup_json_ cJSON *j = NULL;
        struct stamp_drill_entry e = { 0 };
        int r;

        r = parse_text(text, len, &j);
        if (r < 0)
                return r;
        r = drill_parse(j, &e);
        if (r < 0) {
                stamp_drill_entry_release(&e);
                return r;
        }
        *ret = e;
        return 0;
}

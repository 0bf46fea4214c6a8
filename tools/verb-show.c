/* SPDX-License-Identifier: MIT */
/* stamp show: one snapshot's record. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static void help(void)
{
        printf("Usage: stamp [--store DIR] show [--json] STAMP\n"
               "\n"
               "Show the record of snapshot STAMP ('latest' for the newest): when and where\n"
               "it was taken, what it holds, what it added to the store, the databases\n"
               "captured through SQLite, the --pre/--post hooks, --stdin-from and --lock\n"
               "it ran with, and any entries that could not be read, changed while read\n"
               "or were stored with a warning. --json prints the record as stored.\n");
}

static void print_list(const char *title, const struct stamp_strv *v, uint64_t total)
{
        if (total == 0)
                return;
        printf("%s (%llu):\n", title, (unsigned long long)total);
        for (size_t i = 0; i < v->n; i++)
                printf("  %s\n", v->v[i]);
        if (total > v->n)
                printf("  ... and %llu more\n", (unsigned long long)(total - v->n));
}

static void print_human(const struct stamp_record *r)
{
        char b1[32], b2[32], b3[32], hex[STAMP_ID_HEX_SIZE];

        stamp_id_to_hex(&r->root, hex);
        printf("stamp:       %s\n", r->stamp);
        printf("created:     %s\n", r->created);
        printf("host:        %s\n", r->host);
        for (size_t i = 0; i < r->sources.n; i++)
                printf("source:      %s\n", r->sources.v[i]);
        for (size_t i = 0; i < r->tags.n; i++)
                printf("tag:         %s\n", r->tags.v[i]);
        printf("root tree:   %s\n", hex);
        printf("contents:    %llu files, %llu directories, %llu symlinks, %llu other\n",
               (unsigned long long)r->files, (unsigned long long)r->dirs,
               (unsigned long long)r->symlinks, (unsigned long long)r->specials);
        printf("size:        %s\n", fmt_bytes(r->logical_bytes, b1));
        printf("added:       %s new (%llu chunks), %s stored\n", fmt_bytes(r->new_bytes, b2),
               (unsigned long long)r->new_chunks, fmt_bytes(r->stored_new_bytes, b3));
        printf("duration:    %.2f s\n", r->duration_s);
        printf("tool:        %s\n", r->tool_version);
        if (r->validation[0] && strcmp(r->validation, "ok") == 0)
                printf("validated:   ok, %llu new objects (%s) re-read and re-hashed in %.2f s\n",
                       (unsigned long long)r->validated_objects,
                       fmt_bytes(r->validated_bytes, b1), r->validation_s);
        else if (r->validation[0])
                printf("validated:   %s\n", r->validation);
        if (r->sqlite_mode[0])
                printf("sqlite:      %s\n", r->sqlite_mode);
        if (r->lock_path)
                printf("lock:        %s (%s, waited %.2f s)\n", r->lock_path,
                       r->lock_shared ? "shared" : "exclusive", r->lock_wait_s);
        for (size_t i = 0; i < r->n_hooks; i++)
                printf("%-4s hook:   %s: exit status %d, %.2f s\n", r->hooks[i].stage,
                       r->hooks[i].command, r->hooks[i].exit_status, r->hooks[i].duration_s);
        if (r->xattr_names_known) {
                fputs("xattrs:      ", stdout);
                for (size_t i = 0; i < r->xattr_names.n; i++) {
                        fputs(i ? ", " : "", stdout);
                        fput_escaped(stdout, r->xattr_names.v[i]);
                }
                puts(r->xattr_names.n ? "" : "none");
        }
        if (r->stdin_path)
                printf("stdin:       %s, %s from %s\n", r->stdin_path, fmt_bytes(r->stdin_bytes, b1),
                       r->stdin_command);
        print_list("databases captured through SQLite", &r->sqlite, r->n_sqlite);
        print_list("unreadable entries", &r->errors, r->n_errors);
        print_list("changed while read", &r->changed, r->n_changed);
        print_list("warnings", &r->warnings, r->n_warnings);
}

int verb_show(int argc, char **argv)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS, {} };
        struct stamp_store *s = NULL;
        struct stamp_record rec;
        struct verb_options vo = { 0 };
        char stamp[STAMP_STAMP_LEN + 1];
        int r;

        r = parse_options(argc, argv, opts, "show", help, &vo);
        if (r >= 0)
                return r;
        if (optind + 1 != argc)
                return usage_error("show", "expected exactly one STAMP");
        r = open_store_stamp(argv[optind], &s, stamp);
        if (r != EXIT_OK)
                return r;
        r = stamp_store_record_load(s, stamp, &rec);
        if (r < 0) {
                log_error("snapshot '%s': record unreadable: %s", stamp, describe(r));
                r = exit_code(r);
                goto out;
        }
        if (arg_json) {
                char *text = NULL;
                if (stamp_record_encode(&rec, &text) == 0)
                        printf("%s\n", text);
                free(text);
        } else
                print_human(&rec);
        stamp_record_release(&rec);
        r = EXIT_OK;
out:
        stamp_store_free(s);
        return r;
}

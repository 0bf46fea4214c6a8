/* SPDX-License-Identifier: MIT */
/* stamp list: the snapshots of a store. */
#include <getopt.h>
#include <string.h>

#include "common.h"

static void help(void)
{
        printf("Usage: stamp [--store DIR] list [--short] [--json] [-q]\n"
               "\n"
               "List the snapshots of the store, oldest first: stamp, files, logical size,\n"
               "bytes new in that snapshot, and tags.\n"
               "\n"
               "Options:\n"
               "  -s, --short   stamps only, one per line\n"
               "  --json        a JSON array of {stamp, created, files, logical_bytes,\n"
               "                new_bytes, stored_new_bytes, error_count, tags}\n"
               "  -q, --quiet   no header line\n");
}

static void print_json(const struct stamp_record *rec, bool first)
{
        printf("%s\n  {\"stamp\": \"%s\", \"created\": \"%s\", \"files\": %llu, "
               "\"logical_bytes\": %llu, \"new_bytes\": %llu, \"stored_new_bytes\": %llu, "
               "\"error_count\": %llu, \"tags\": [",
               first ? "" : ",", rec->stamp, rec->created, (unsigned long long)rec->files,
               (unsigned long long)rec->logical_bytes, (unsigned long long)rec->new_bytes,
               (unsigned long long)rec->stored_new_bytes, (unsigned long long)rec->n_errors);
        for (size_t i = 0; i < rec->tags.n; i++) {
                if (i)
                        printf(", ");
                json_string(stdout, rec->tags.v[i]);
        }
        printf("]}");
}

static void print_row(const struct stamp_record *rec)
{
        char b1[32], b2[32];

        printf("%-17s %9llu %11s %11s", rec->stamp, (unsigned long long)rec->files,
               fmt_bytes(rec->logical_bytes, b1), fmt_bytes(rec->new_bytes, b2));
        for (size_t i = 0; i < rec->tags.n; i++)
                printf("%s%s", i ? "," : "  ", rec->tags.v[i]);
        putchar('\n');
}

int verb_list(int argc, char **argv)
{
        static const struct option opts[] = {
                COMMON_LONG_OPTIONS,
                { "short", no_argument, NULL, 's' },
                {}
        };
        struct stamp_store *s = NULL;
        struct stamp_strv stamps = { 0 };
        bool shrt = false;
        int c, r, ret = EXIT_OK;

        while ((c = getopt_long(argc, argv, "hsq", opts, NULL)) >= 0) {
                if (common_option(c, optarg))
                        continue;
                if (c == 'h') {
                        help();
                        return EXIT_OK;
                }
                if (c == 's')
                        shrt = true;
                else
                        return option_error("list", "hsq", opts, argv);
        }
        if (optind < argc)
                return usage_error("list", "unexpected argument '%s'", argv[optind]);
        ret = open_store(&s);
        if (ret != EXIT_OK)
                return ret;
        r = stamp_store_list(s, &stamps);
        if (r < 0) {
                log_error("cannot list snapshots of '%s': %s", stamp_store_path(s), describe(r));
                stamp_store_free(s);
                return exit_code(r);
        }
        if (arg_json)
                printf("[");
        else if (!shrt && !arg_quiet && stamps.n > 0)
                printf("%-17s %9s %11s %11s  %s\n", "STAMP", "FILES", "SIZE", "NEW", "TAGS");
        for (size_t i = 0; i < stamps.n; i++) {
                struct stamp_record rec;
                if (shrt && !arg_json) {
                        printf("%s\n", stamps.v[i]);
                        continue;
                }
                r = stamp_store_record_load(s, stamps.v[i], &rec);
                if (r < 0) {
                        log_error("snapshot '%s': record unreadable: %s", stamps.v[i], describe(r));
                        ret = exit_code(r);
                        /* In the document too, so that a script sees the stamp and why. */
                        if (arg_json) {
                                printf("%s\n  {\"stamp\": ", i == 0 ? "" : ",");
                                json_string(stdout, stamps.v[i]);
                                printf(", \"error\": ");
                                json_string(stdout, describe(r));
                                printf("}");
                        }
                        continue;
                }
                if (arg_json)
                        print_json(&rec, i == 0);
                else
                        print_row(&rec);
                stamp_record_release(&rec);
        }
        if (arg_json)
                printf("\n]\n");
        stamp_strv_release(&stamps);
        stamp_store_free(s);
        return ret;
}

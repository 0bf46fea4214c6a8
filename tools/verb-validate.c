/* SPDX-License-Identifier: MIT */
/* stamp validate: is one snapshot restorable? */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check-report.h"
#include "common.h"

static void help(void)
{
        printf("Usage: stamp [--store DIR] validate [--read-data] [--json] STAMP\n"
               "\n"
               "Check that snapshot STAMP ('latest' for the newest) can be restored:\n"
               "  - its record parses, and every directory tree and chunk list exists,\n"
               "    decodes and matches its id;\n"
               "  - every data chunk is indexed in a pack that exists and is long enough\n"
               "    (with --read-data: every chunk is read back and re-hashed);\n"
               "  - every SQLite database in it (found by name: *.db, *.sqlite, *.sqlite3,\n"
               "    *.db3, or captured as a database; with --read-data also by header)\n"
               "    passes PRAGMA integrity_check, read straight from the store;\n"
               "  - every *.json file parses as JSON.\n"
               "\n"
               "Each problem is printed with its kind and the affected path:\n"
               "  record_corrupt, tree_missing, tree_corrupt, chunklist_missing,\n"
               "  chunklist_corrupt, chunk_missing, chunk_hash_mismatch, content_corrupt,\n"
               "  db_integrity_check_failed, json_invalid, read_error.\n"
               "\n"
               "Options:\n"
               "  --read-data   read and re-hash every data chunk (slower, catches bit rot)\n"
               "  --json        a JSON report on stdout: stamp, valid, read_data, errors\n"
               "                (kind, paths, object, detail), checked, duration_s\n"
               "\n"
               "Exit status: 0 valid; 7 invalid; 3 no such snapshot; see 'stamp --help'.\n");
}

int verb_validate(int argc, char **argv)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS,
                                               { "read-data", no_argument, NULL, 'R' },
                                               {} };
        struct stamp_store *s = NULL;
        struct check_report rep;
        struct stamp_check_stats st;
        struct stamp_check_options o = { .flags = STAMP_CHECK_CONTENT };
        char stamp[STAMP_STAMP_LEN + 1];
        struct timespec t0, t1;
        struct verb_options vo = { 0 };
        double secs;
        int r;

        r = parse_options(argc, argv, opts, "validate", help, &vo);
        if (r >= 0)
                return r;
        if (vo.read_data)
                o.flags |= STAMP_CHECK_READ_DATA;
        if (optind + 1 != argc)
                return usage_error("validate", "expected one STAMP");
        r = open_store_stamp(argv[optind], &s, stamp);
        if (r != EXIT_OK)
                return r;
        check_report_init(&rep, "validate");
        o.problem = check_report_problem;
        o.progress = check_report_progress;
        o.userdata = &rep;
        if (rep.json) {
                printf("{\"stamp\": \"%s\", \"read_data\": %s, \"errors\": [", stamp,
                       (o.flags & STAMP_CHECK_READ_DATA) ? "true" : "false");
                fflush(stdout);
        }
        clock_gettime(CLOCK_MONOTONIC, &t0);
        r = stamp_check_snapshot(s, stamp, &o, &st);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        check_report_clear(&rep);
        secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (r < 0) {
                if (rep.json)
                        printf("]}\n");
                log_error("snapshot %s: cannot validate: %s", stamp, describe(r));
                r = exit_code(r);
                goto out;
        }
        if (rep.json) {
                printf("%s], \"valid\": %s, ", st.problems ? "\n  " : "",
                       st.problems ? "false" : "true");
                check_report_stats_json(stdout, &st);
                printf(", \"duration_s\": %.3f}\n", secs);
        } else if (!rep.quiet || st.problems) {
                if (st.problems)
                        printf("snapshot %s is INVALID: %llu problem%s\n", stamp,
                               (unsigned long long)st.problems, st.problems == 1 ? "" : "s");
                else
                        printf("snapshot %s is valid\n", stamp);
                if (!rep.quiet)
                        check_report_stats_human(stdout, &st, secs);
        }
        r = st.problems ? EXIT_INVALID : EXIT_OK;
out:
        stamp_store_free(s);
        return r;
}

/* SPDX-License-Identifier: MIT */
/* stamp verify: is the whole store sound? */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check-report.h"
#include "common.h"

static void help(void)
{
        printf("Usage: stamp [--store DIR] verify [--read-data] [--json]\n"
               "\n"
               "Check the whole store:\n"
               "  - every pack's header, trailer, object index and checksum (with\n"
               "    --read-data also every object decompressed and re-hashed);\n"
               "  - the index against the packs: every pack it names exists with the size\n"
               "    it records, and every object it places in a pack is listed there at the\n"
               "    same offset;\n"
               "  - every snapshot: its record, trees and chunk lists decode and every chunk\n"
               "    it uses is present (damage found in packs is traced to the snapshots\n"
               "    and files that use it).\n"
               "\n"
               "Problems are printed with their kind, the snapshot and path they affect,\n"
               "and a list of damaged snapshots ends the report. Run it from a timer with\n"
               "--read-data now and then: it is the check that finds bit rot.\n"
               "\n"
               "Options:\n"
               "  --read-data   decompress and re-hash every object (slower)\n"
               "  --json        a JSON report: ok, read_data, errors, damaged_snapshots,\n"
               "                checked, duration_s\n"
               "\n"
               "Exit status: 0 sound; 7 damage found; see 'stamp --help'.\n");
}

struct damaged {
        struct check_report rep;
        struct stamp_strv stamps; /* snapshots with a problem, in order found */
};

static void on_problem(const struct stamp_problem *p, void *userdata)
{
        struct damaged *d = userdata;

        check_report_problem(p, &d->rep);
        if (p->stamp && (d->stamps.n == 0 || strcmp(d->stamps.v[d->stamps.n - 1], p->stamp) != 0))
                (void)stamp_strv_push(&d->stamps, p->stamp);
}

static void on_progress(const struct stamp_check_stats *st, const char *path, void *userdata)
{
        struct damaged *d = userdata;
        check_report_progress(st, path, &d->rep);
}

int verb_verify(int argc, char **argv)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS,
                                               { "read-data", no_argument, NULL, 'R' },
                                               {} };
        struct stamp_store *s = NULL;
        struct damaged d = { 0 };
        struct stamp_check_stats st;
        struct stamp_check_options o = { 0 };
        struct timespec t0, t1;
        struct verb_options vo = { 0 };
        double secs;
        int r;

        r = parse_options(argc, argv, opts, "verify", help, &vo);
        if (r >= 0)
                return r;
        if (vo.read_data)
                o.flags |= STAMP_CHECK_READ_DATA;
        if (optind != argc)
                return usage_error("verify", "unexpected argument '%s'", argv[optind]);
        r = open_store(&s);
        if (r != EXIT_OK)
                return r;
        check_report_init(&d.rep, "verify");
        o.problem = on_problem;
        o.progress = on_progress;
        o.userdata = &d;
        if (d.rep.json) {
                printf("{\"read_data\": %s, \"errors\": [",
                       (o.flags & STAMP_CHECK_READ_DATA) ? "true" : "false");
                fflush(stdout);
        }
        clock_gettime(CLOCK_MONOTONIC, &t0);
        r = stamp_check_store(s, &o, &st);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        check_report_clear(&d.rep);
        secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (r < 0) {
                if (d.rep.json)
                        printf("]}\n");
                log_error("store '%s': cannot verify: %s", stamp_store_path(s), describe(r));
                r = exit_code(r);
                goto out;
        }
        if (d.rep.json) {
                printf("%s], \"ok\": %s, \"damaged_snapshots\": [", st.problems ? "\n  " : "",
                       st.problems ? "false" : "true");
                for (size_t i = 0; i < d.stamps.n; i++)
                        printf("%s\"%s\"", i ? ", " : "", d.stamps.v[i]);
                printf("], ");
                check_report_stats_json(stdout, &st);
                printf(", \"duration_s\": %.3f}\n", secs);
        } else {
                if (st.problems) {
                        printf("store %s has DAMAGE: %llu problem%s\n", stamp_store_path(s),
                               (unsigned long long)st.problems, st.problems == 1 ? "" : "s");
                        if (d.stamps.n) {
                                printf("damaged snapshots:");
                                for (size_t i = 0; i < d.stamps.n; i++)
                                        printf(" %s", d.stamps.v[i]);
                                printf("\n");
                        }
                } else if (!d.rep.quiet) {
                        printf("store %s is sound\n", stamp_store_path(s));
                }
                if (!d.rep.quiet)
                        check_report_stats_human(stdout, &st, secs);
        }
        r = st.problems ? EXIT_INVALID : EXIT_OK;
out:
        stamp_strv_release(&d.stamps);
        stamp_store_free(s);
        return r;
}

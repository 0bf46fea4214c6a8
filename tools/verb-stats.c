/* SPDX-License-Identifier: MIT */
/* stamp stats: sizes, dedup, and what each snapshot alone holds. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "stats.h"

static void help(void)
{
        printf("Usage: stamp [--store DIR] stats [--json] [STAMP]\n"
               "\n"
               "Show the store's size: logical bytes (file sizes summed over snapshots),\n"
               "stored bytes (packs), the dedup ratio, object and pack counts, and the\n"
               "bytes in packs no snapshot needs (what 'stamp gc --max-unused 0' would\n"
               "free). For each snapshot, or only STAMP: its logical bytes, the stored\n"
               "bytes it references, and the bytes only it holds (what forgetting it\n"
               "alone, then gc, would free). Stored bytes of an object include its record\n"
               "header and index entry in the pack.\n");
}

static void show_progress(uint64_t done, uint64_t total, void *userdata)
{
        (void)userdata;
        fprintf(stderr, "\r\033[Kwalking snapshots: %llu/%llu", (unsigned long long)done,
                (unsigned long long)total);
        fflush(stderr);
}

static double ratio(uint64_t a, uint64_t b)
{
        return b ? (double)a / (double)b : 0.0;
}

static void print_json(const struct stamp_stats *st, const char *only)
{
        printf("{\"snapshots\": %llu, \"logical_bytes\": %llu, \"stored_bytes\": %llu, "
               "\"dedup_ratio\": %.4f, \"packs\": %llu, \"objects\": %llu, \"chunks\": %llu, "
               "\"referenced_objects\": %llu, \"referenced_bytes\": %llu, \"unused_bytes\": %llu, "
               "\"unreferenced_packs\": %llu, \"unindexed_packs\": %llu, \"not_file_packs\": %llu, "
               "\"missing_objects\": %llu, \"per_snapshot\": [",
               (unsigned long long)st->snapshots, (unsigned long long)st->logical_bytes,
               (unsigned long long)st->pack_bytes, ratio(st->logical_bytes, st->pack_bytes),
               (unsigned long long)st->packs, (unsigned long long)st->objects,
               (unsigned long long)st->chunks, (unsigned long long)st->referenced_objects,
               (unsigned long long)st->referenced_bytes, (unsigned long long)st->unused_bytes,
               (unsigned long long)st->unreferenced_packs, (unsigned long long)st->unindexed_packs,
               (unsigned long long)st->not_file_packs, (unsigned long long)st->missing_objects);
        for (size_t i = 0, n = 0; i < st->n_snap; i++) {
                const struct stamp_stats_snapshot *sn = &st->snap[i];
                if (only && strcmp(only, sn->stamp) != 0)
                        continue;
                printf("%s{\"stamp\": \"%s\", \"logical_bytes\": %llu, \"objects\": %llu, "
                       "\"stored_bytes\": %llu, \"exclusive_objects\": %llu, "
                       "\"exclusive_bytes\": %llu}",
                       n++ ? ", " : "", sn->stamp, (unsigned long long)sn->logical_bytes,
                       (unsigned long long)sn->objects, (unsigned long long)sn->stored_bytes,
                       (unsigned long long)sn->exclusive_objects,
                       (unsigned long long)sn->exclusive_bytes);
        }
        printf("]}\n");
}

static void print_human(struct stamp_store *s, const struct stamp_stats *st, const char *only)
{
        char b1[32], b2[32], b3[32];

        printf("store:        %s\n", stamp_store_path(s));
        printf("snapshots:    %llu, %s logical\n", (unsigned long long)st->snapshots,
               fmt_bytes(st->logical_bytes, b1));
        printf("stored:       %s in %llu packs (dedup ratio %.2f)\n",
               fmt_bytes(st->pack_bytes, b2), (unsigned long long)st->packs,
               ratio(st->logical_bytes, st->pack_bytes));
        printf("objects:      %llu (%llu data chunks), %llu referenced\n",
               (unsigned long long)st->objects, (unsigned long long)st->chunks,
               (unsigned long long)st->referenced_objects);
        printf("unused:       %s in packs", fmt_bytes(st->unused_bytes, b3));
        if (st->unreferenced_packs)
                printf(", %llu packs with nothing live",
                       (unsigned long long)st->unreferenced_packs);
        printf(" ('stamp gc --max-unused 0' frees all of it; a plain gc leaves packs "
               "at most 10%% unused)\n");
        if (st->unindexed_packs)
                printf("unindexed:    %llu pack files the index does not list (the next snapshot "
                       "or gc indexes them)\n", (unsigned long long)st->unindexed_packs);
        if (st->not_file_packs)
                printf("NOT FILES:    %llu entries under packs/ with a pack's name are not files "
                       "(symlinks or directories, put there by hand): move them out of the "
                       "store\n", (unsigned long long)st->not_file_packs);
        if (st->missing_objects)
                printf("MISSING:      %llu referenced objects are not in the index\n",
                       (unsigned long long)st->missing_objects);
        printf("\n%-18s %12s %12s %12s\n", "snapshot", "logical", "referenced", "only here");
        for (size_t i = 0; i < st->n_snap; i++) {
                const struct stamp_stats_snapshot *sn = &st->snap[i];
                if (only && strcmp(only, sn->stamp) != 0)
                        continue;
                printf("%-18s %12s %12s %12s\n", sn->stamp, fmt_bytes(sn->logical_bytes, b1),
                       fmt_bytes(sn->stored_bytes, b2), fmt_bytes(sn->exclusive_bytes, b3));
        }
}

int verb_stats(int argc, char **argv)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS, {} };
        struct stamp_store *s = NULL;
        struct stamp_stats st;
        char stamp[STAMP_STAMP_LEN + 1], bad[STAMP_STAMP_LEN + 1];
        const char *only = NULL;
        struct verb_options vo = { 0 };
        bool progress;
        int r;

        r = parse_options(argc, argv, opts, "stats", help, &vo);
        if (r >= 0)
                return r;
        if (argc - optind > 1)
                return usage_error("stats", "expected at most one STAMP");
        r = open_store(&s);
        if (r != EXIT_OK)
                return r;
        if (optind < argc) {
                r = resolve_stamp(s, argv[optind], stamp);
                if (r != EXIT_OK)
                        goto out;
                only = stamp;
        }
        progress = progress_enabled();
        r = stamp_stats_compute(s, progress ? show_progress : NULL, NULL, &st, bad);
        if (progress)
                fputs("\r\033[K", stderr);
        if (r < 0) {
                if (bad[0] && r == -EBADMSG)
                        log_error("snapshot '%s' is damaged (its record, or a directory or "
                                  "chunk list it names, is missing or unreadable), so nothing "
                                  "was counted; 'stamp verify' lists the damage", bad);
                else if (bad[0])
                        log_error("snapshot '%s': cannot walk it: %s", bad, describe(r));
                else
                        log_error("store '%s': %s", stamp_store_path(s), describe(r));
                r = exit_code(r);
                goto out;
        }
        if (arg_json)
                print_json(&st, only);
        else
                print_human(s, &st, only);
        stamp_stats_release(&st);
        r = EXIT_OK;
out:
        stamp_store_free(s);
        return r;
}

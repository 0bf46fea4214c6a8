/* SPDX-License-Identifier: MIT */
/* stamp reindex: rebuild index.db from the packs and snapshot records. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>

#include "common.h"

static void help(void)
{
        printf("Usage: stamp [--store DIR] reindex [--json] [--lock-timeout SECONDS]\n"
               "\n"
               "Rebuild the store's index (index.db) from the packs and snapshot records\n"
               "alone: after the index is lost or damaged, every snapshot is readable\n"
               "again. Every pack's checksum is verified on the way. The new index is\n"
               "built beside the old one and replaces it in one rename. The files cache\n"
               "starts empty, so the next snapshot reads every file again (and stores\n"
               "nothing new for unchanged files). Waits up to --lock-timeout (default 60)\n"
               "for running snapshots or gc to finish.\n");
}

static void print_json(const struct stamp_reindex_result *r)
{
        printf("{\"packs\": %llu, \"objects\": %llu, \"pack_bytes\": %llu, \"snapshots\": %llu, "
               "\"damaged_packs\": %llu, \"scanned_packs\": %llu, \"unreadable_packs\": %llu, "
               "\"unreadable_records\": %llu, \"pending_removed\": %llu}\n",
               (unsigned long long)r->packs, (unsigned long long)r->objects,
               (unsigned long long)r->pack_bytes, (unsigned long long)r->snapshots,
               (unsigned long long)r->damaged_packs, (unsigned long long)r->scanned_packs,
               (unsigned long long)r->unreadable_packs,
               (unsigned long long)r->unreadable_records, (unsigned long long)r->pending_removed);
}

static int take_locks(struct stamp_store *s, int timeout)
{
        char holder[256] = "";
        int r;

        /* Lock order: gc.lock, then lock (store.h). */
        r = stamp_store_gc_lock(s, timeout, "stamp reindex", holder, sizeof(holder));
        if (r == 0)
                r = stamp_store_lock(s, timeout, "stamp reindex", holder, sizeof(holder));
        if (r == -EBUSY) {
                log_error("store '%s' is locked by %s (waited %d s)", stamp_store_path(s), holder,
                          timeout);
                return EXIT_BUSY;
        }
        if (r < 0) {
                log_error("cannot lock store '%s': %s", stamp_store_path(s), describe(r));
                return exit_code(r);
        }
        return EXIT_OK;
}

int verb_reindex(int argc, char **argv)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS,
                                               { "lock-timeout", required_argument, NULL, 'L' },
                                               {} };
        struct stamp_reindex_result res;
        struct stamp_store *s = NULL;
        struct verb_options vo = { .lock_timeout = 60 };
        int r;

        r = parse_options(argc, argv, opts, "reindex", help, &vo);
        if (r >= 0)
                return r;
        if (optind != argc)
                return usage_error("reindex", "unexpected argument '%s'", argv[optind]);
        r = open_store(&s);
        if (r != EXIT_OK)
                return r;
        r = take_locks(s, vo.lock_timeout);
        if (r != EXIT_OK)
                goto out;
        if (!arg_quiet && !arg_json)
                fprintf(stderr, "reindexing '%s': reading every pack...\n", stamp_store_path(s));
        r = stamp_store_reindex(s, &res);
        if (r < 0) {
                log_error("reindex of store '%s' failed: %s; the old index.db is unchanged",
                          stamp_store_path(s), describe(r));
                r = exit_code(r);
                goto out;
        }
        if (res.damaged_packs)
                log_warning("%llu packs fail their checksum: indexed anyway, reads of their "
                            "damaged objects fail", (unsigned long long)res.damaged_packs);
        if (res.scanned_packs)
                log_warning("%llu of them have a damaged trailer: their objects were found by "
                            "walking their records", (unsigned long long)res.scanned_packs);
        if (res.unreadable_packs)
                log_warning("%llu pack files are unreadable (no sound header or first record): "
                            "not indexed",
                            (unsigned long long)res.unreadable_packs);
        if (res.unreadable_records)
                log_warning("%llu snapshot records are malformed: not indexed",
                            (unsigned long long)res.unreadable_records);
        if (arg_json)
                print_json(&res);
        else if (!arg_quiet) {
                char b[32];
                printf("indexed %llu packs (%s, %llu objects) and %llu snapshots; the files "
                       "cache is empty\n",
                       (unsigned long long)res.packs, fmt_bytes(res.pack_bytes, b),
                       (unsigned long long)res.objects, (unsigned long long)res.snapshots);
        }
        r = res.damaged_packs || res.unreadable_packs || res.unreadable_records ? EXIT_WARNINGS
                                                                                : EXIT_OK;
out:
        stamp_store_free(s);
        return r;
}

/* SPDX-License-Identifier: MIT */
/* stamp forget: delete snapshot records. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static void help(void)
{
        printf("Usage: stamp [--store DIR] forget [--lock-timeout S] [--json] STAMP...\n"
               "\n"
               "Delete the named snapshots. Their records are removed at once, so they\n"
               "vanish from `stamp list` and from a running mount; the chunks only they\n"
               "used stay in the store until garbage collection reclaims them.\n"
               "'latest' names the newest snapshot. Every stamp is checked before any is\n"
               "deleted.\n"
               "\n"
               "Options:\n"
               "  --lock-timeout S   wait up to S seconds for the store lock (default 60)\n"
               "  --json             the deleted stamps as JSON\n"
               "\n"
               "Exit status: 0 deleted; 3 no such snapshot (nothing deleted); 4 store\n"
               "locked; see 'stamp --help'.\n");
}

int verb_forget(int argc, char **argv)
{
        static const struct option opts[] = { COMMON_LONG_OPTIONS,
                                               { "lock-timeout", required_argument, NULL, 'L' },
                                               {} };
        struct stamp_store *s = NULL;
        char stamps[64][STAMP_STAMP_LEN + 1];
        struct verb_options vo = { .lock_timeout = 60 };
        int r, n;

        r = parse_options(argc, argv, opts, "forget", help, &vo);
        if (r >= 0)
                return r;
        n = argc - optind;
        if (n < 1)
                return usage_error("forget", "expected at least one STAMP");
        if (n > 64)
                return usage_error("forget", "at most 64 stamps at a time");
        r = open_store(&s);
        if (r != EXIT_OK)
                return r;
        for (int i = 0; i < n && r == EXIT_OK; i++)
                r = resolve_stamp(s, argv[optind + i], stamps[i]);
        if (r != EXIT_OK)
                goto out;
        r = lock_store(s, vo.lock_timeout, "stamp forget");
        if (r != EXIT_OK)
                goto out;
        if (arg_json)
                printf("{\"forgotten\": [");
        for (int i = 0; i < n; i++) {
                int e = stamp_store_record_delete(s, stamps[i]);
                if (e == -ENOENT)
                        continue; /* named twice */
                if (e < 0) {
                        log_error("snapshot '%s': cannot delete: %s", stamps[i], describe(e));
                        r = exit_code(e);
                        break;
                }
                if (e == 1)
                        warn_unmarked(stamps[i]);
                if (arg_json)
                        printf("%s\"%s\"", i ? ", " : "", stamps[i]);
                else if (!arg_quiet)
                        printf("forgot %s\n", stamps[i]);
        }
        if (arg_json)
                printf("]}\n");
out:
        stamp_store_free(s);
        return r;
}

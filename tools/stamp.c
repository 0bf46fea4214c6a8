/* SPDX-License-Identifier: MIT */
/* stamp: the command-line front end of a stampfs store. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"

struct verb {
        const char *name;
        int (*run)(int argc, char **argv);
        const char *help;
};

static const struct verb verbs[] = {
        { "init", verb_init, "create a new store" },
        { "snapshot", verb_snapshot, "take a snapshot of one or more directories" },
        { "list", verb_list, "list the snapshots of a store" },
        { "show", verb_show, "show one snapshot's record" },
        { "cat", verb_cat, "write a file of a snapshot to standard output" },
        { "forget", verb_forget, "delete snapshots (their data is reclaimed by gc)" },
        { "validate", verb_validate, "check that a snapshot can be restored" },
        { "verify", verb_verify, "check the whole store: packs, index, snapshots" },
        { "restore", verb_restore, "make a directory equal to a snapshot, safely" },
        { "drill", verb_drill, "rehearse a restore into scratch space and check it (weekly)" },
        { "prune", verb_prune, "delete the snapshots no keep rule keeps (--keep-daily ...)" },
        { "diff", verb_diff, "show the paths added, removed and modified between two snapshots" },
        { "gc", verb_gc, "reclaim the space of data no snapshot references" },
        { "reindex", verb_reindex, "rebuild the index from the packs and snapshot records" },
        { "stats", verb_stats, "sizes, dedup, and what each snapshot alone holds" },
        { "copy", verb_copy, "copy snapshots to another store (a path or ssh://), incrementally" },
        { "serve", verb_serve, "the far end of 'stamp copy ssh://...' (run through ssh)" },
};

static void help(void)
{
        printf("Usage: stamp [--store DIR] [--json] [--quiet] COMMAND [ARGS...]\n"
               "\n"
               "A deduplicating snapshot store. Every command takes --help.\n"
               "\n"
               "Commands:\n");
        for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
                printf("  %-10s %s\n", verbs[i].name, verbs[i].help);
        printf("\n"
               "Options:\n"
               "  --store DIR   the store (default: $STAMP_STORE)\n"
               "  --json        machine-readable output on stdout\n"
               "  -q, --quiet   no progress display or summaries\n"
               "  --version     print the version\n"
               "\n"
               "Exit codes: 0 ok; 1 done with warnings; 2 usage error; 3 store, snapshot\n"
               "or path not found; 4 store locked; 5 corrupt or unsupported data;\n"
               "6 other failure (I/O error, disk full, permission denied); 7 checked and\n"
               "found invalid (a snapshot failing its own check, validate, verify,\n"
               "restore, copy, drill).\n");
}

static int run(int argc, char **argv)
{
        int i = 1;

        /* Global options come before the command; verbs accept them too. */
        while (i < argc && argv[i][0] == '-') {
                const char *a = argv[i];
                if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
                        help();
                        return EXIT_OK;
                } else if (strcmp(a, "--version") == 0) {
                        printf("stamp %s\n", STAMP_VERSION);
                        return EXIT_OK;
                } else if (strcmp(a, "--json") == 0) {
                        arg_json = true;
                        json_stdout_count();
                }
                else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0)
                        arg_quiet = true;
                else if (strcmp(a, "--store") == 0 && i + 1 < argc)
                        arg_store = argv[++i];
                else if (strncmp(a, "--store=", 8) == 0)
                        arg_store = a + 8;
                else if (strcmp(a, "--store") == 0)
                        return usage_error(NULL, "option '--store' needs a value");
                else {
                        static const struct option global[] = {
                                { "store", required_argument, NULL, 'S' },
                                {},
                        };
                        int v = i + 1;
                        /* cat and serve write raw bytes: never a JSON document */
                        while (v < argc && argv[v][0] == '-')
                                v += strcmp(argv[v], "--store") == 0 ? 2 : 1;
                        if (v >= argc || (strcmp(argv[v], "cat") != 0 && strcmp(argv[v], "serve") != 0))
                                json_scan_unparsed(argv + i + 1, "", global, true);
                        return usage_error(NULL, "unknown option '%s'", a);
                }
                i++;
        }
        if (i >= argc) {
                return usage_error(NULL, "no command given");
        }
        for (size_t v = 0; v < sizeof(verbs) / sizeof(verbs[0]); v++)
                if (strcmp(argv[i], verbs[v].name) == 0)
                        return verbs[v].run(argc - i, argv + i);
        return usage_error(NULL, "unknown command '%s'", argv[i]);
}

int main(int argc, char **argv)
{
        int code;

        opterr = 0; /* option_error() says what getopt_long() refused, on one line */
        code = run(argc, argv);

        /* --json as parsed (a prefix such as --js too), before the failure or anywhere. */
        if (arg_json)
                return json_failure(code);
        /*
         * An option refused before --json was reached (stamp list --bogus
         * --json): the error document all the same. Nothing went to
         * standard output before that.
         */
        if (json_unparsed) {
                json_stdout_count();
                return json_failure(code);
        }
        return code;
}

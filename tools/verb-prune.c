/* SPDX-License-Identifier: MIT */
/* stamp prune: delete the snapshots that no keep rule keeps. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "retention.h"

/* Counts above this are surely typos; they would keep everything anyway. */
#define COUNT_MAX 1000000000u

static void help(void)
{
        printf("Usage: stamp [--store DIR] prune [OPTIONS]\n"
               "\n"
               "Delete every snapshot that no keep rule keeps. A snapshot is kept if any\n"
               "rule keeps it. The others are deleted as by `stamp forget`: their records\n"
               "go at once; the data only they used stays in the store until `stamp gc`\n"
               "reclaims it.\n"
               "\n"
               "Keep rules (at least one is required):\n"
               "  --keep-last N           the N newest snapshots\n"
               "  --keep-hourly N         the newest snapshot of each of the last N hours\n"
               "                          that have one\n"
               "  --keep-daily N          the same for days\n"
               "  --keep-weekly N         the same for ISO 8601 weeks (Monday to Sunday;\n"
               "                          a week spanning New Year is one week)\n"
               "  --keep-monthly N        the same for calendar months\n"
               "  --keep-yearly N         the same for calendar years\n"
               "  --keep-within DURATION  every snapshot at most DURATION older than the\n"
               "                          newest: numbers with units y (years), m (months),\n"
               "                          w (weeks), d (days), h (hours), e.g. 36h, 2w, 1y6m;\n"
               "                          months step through the calendar (31 March minus\n"
               "                          1m is the last day of February)\n"
               "  --keep-tag TAG          every snapshot tagged TAG (repeatable)\n"
               "\n"
               "Pre-restore snapshots (tagged 'pre-restore', the safety snapshots of\n"
               "`stamp restore`) follow their own rule only:\n"
               "  --keep-pre-restore N    keep the N newest of them for each directory\n"
               "                          restored into (default 3)\n"
               "They are invisible to the rules above (they never use up a day's or a\n"
               "week's slot, and are never the newest snapshot for --keep-within or\n"
               "--keep-last); only this rule and --keep-tag keep them.\n"
               "\n"
               "Periods are counted back from the newest snapshot, and a period without a\n"
               "snapshot does not count: --keep-daily 7 keeps the newest snapshot of each\n"
               "of the 7 most recent days that have one, however far apart they are.\n"
               "Times are the stamps' own UTC times.\n"
               "\n"
               "Other options:\n"
               "  -n, --dry-run           print the decisions and delete nothing (takes no\n"
               "                          lock)\n"
               "  --allow-empty           allow removing every snapshot, or every snapshot\n"
               "                          except pre-restore ones; refused without it\n"
               "  --lock-timeout SECONDS  wait this long for the store lock (default 60)\n"
               "  --json                  {\"dry_run\", \"snapshots\": [{\"stamp\",\n"
               "                          \"action\": \"keep\"|\"remove\", \"reasons\"}],\n"
               "                          \"kept\", \"removed\"}\n"
               "  -q, --quiet             no summary line\n"
               "\n"
               "Output: one line per snapshot, oldest first, 'keep   STAMP  RULES' with the\n"
               "rules that keep it (last, hourly, daily, weekly, monthly, yearly, within,\n"
               "tag, pre-restore), or 'remove STAMP'; then a summary.\n"
               "\n"
               "Examples:\n"
               "  stamp prune --dry-run --keep-daily 7 --keep-weekly 4 --keep-monthly 6\n"
               "  stamp prune --keep-daily 7 --keep-weekly 4 --keep-monthly 6\n"
               "  stamp prune --keep-within 30d --keep-tag release --keep-pre-restore 1\n"
               "  stamp gc        # then reclaim the space of the deleted snapshots\n"
               "\n"
               "Exit status: 0 done; 2 usage error, or a prune refused for removing\n"
               "everything; 3 no such store; 4 store locked; 5 a damaged snapshot record\n"
               "(prune needs every record's tags: delete it with `stamp forget`).\n");
}

enum {
        OPT_LAST = 0x100,
        OPT_HOURLY,
        OPT_DAILY,
        OPT_WEEKLY,
        OPT_MONTHLY,
        OPT_YEARLY,
        OPT_WITHIN,
        OPT_TAG,
        OPT_PRE_RESTORE,
        OPT_ALLOW_EMPTY,
        OPT_LOCK_TIMEOUT,
};

struct prune_args {
        struct stamp_retention policy;
        char **tags; /* borrowed from argv */
        bool dry_run, allow_empty;
        int lock_timeout;
};

/* The snapshots of the store and the decision for each. */
struct plan {
        struct stamp_strv stamps;
        struct stamp_strv *tags; /* the record's tags, one per loaded stamp */
        struct stamp_strv *sources; /* and its sources (a pre-restore one's target) */
        struct stamp_retention_item *items;
        size_t n;
        size_t kept, kept_regular, regular;
};

static void plan_release(struct plan *p)
{
        for (size_t i = 0; i < p->n; i++) {
                stamp_strv_release(&p->tags[i]);
                stamp_strv_release(&p->sources[i]);
        }
        free(p->tags);
        free(p->sources);
        free(p->items);
        stamp_strv_release(&p->stamps);
        memset(p, 0, sizeof(*p));
}

static int parse_count(const char *opt, const char *s, unsigned *ret)
{
        unsigned long v;
        char *end;

        if (*s < '0' || *s > '9')
                return usage_error("prune", "%s: '%s' is not a count (0 or more)", opt, s);
        errno = 0;
        v = strtoul(s, &end, 10);
        if (*end || errno || v > COUNT_MAX)
                return usage_error("prune", "%s: '%s' is not a count (0 or more)", opt, s);
        *ret = (unsigned)v;
        return EXIT_OK;
}

static int add_tag(struct prune_args *a, char *tag)
{
        char **n;

        if (!*tag)
                return usage_error("prune", "--keep-tag: a tag cannot be empty");
        n = realloc(a->tags, (a->policy.n_keep_tags + 1) * sizeof(char *));
        if (!n) {
                log_error("out of memory");
                return EXIT_FAILED;
        }
        a->tags = n;
        a->tags[a->policy.n_keep_tags++] = tag;
        a->policy.keep_tags = a->tags;
        return EXIT_OK;
}

/* Handles one option of prune's own; returns an exit code. */
static int prune_option(int c, struct prune_args *a, const struct option *opts, char **argv)
{
        struct stamp_retention *p = &a->policy;

        switch (c) {
        case OPT_LAST:
                return parse_count("--keep-last", optarg, &p->keep_last);
        case OPT_HOURLY:
                return parse_count("--keep-hourly", optarg, &p->keep_hourly);
        case OPT_DAILY:
                return parse_count("--keep-daily", optarg, &p->keep_daily);
        case OPT_WEEKLY:
                return parse_count("--keep-weekly", optarg, &p->keep_weekly);
        case OPT_MONTHLY:
                return parse_count("--keep-monthly", optarg, &p->keep_monthly);
        case OPT_YEARLY:
                return parse_count("--keep-yearly", optarg, &p->keep_yearly);
        case OPT_PRE_RESTORE:
                return parse_count("--keep-pre-restore", optarg, &p->keep_pre_restore);
        case OPT_WITHIN:
                if (stamp_duration_parse(optarg, &p->keep_within) < 0)
                        return usage_error("prune",
                                           "--keep-within: '%s' is not a duration (e.g. 2d, 36h, "
                                           "1w, 3m, 1y, 1y2m3d)",
                                           optarg);
                p->keep_within_set = true;
                return EXIT_OK;
        case OPT_TAG:
                return add_tag(a, optarg);
        case 'n':
                a->dry_run = true;
                return EXIT_OK;
        case OPT_ALLOW_EMPTY:
                a->allow_empty = true;
                return EXIT_OK;
        case OPT_LOCK_TIMEOUT:
                a->lock_timeout = parse_seconds(optarg);
                if (a->lock_timeout < 0)
                        return seconds_error("prune", "--lock-timeout", optarg);
                return EXIT_OK;
        default:
                return option_error("prune", "hnq", opts, argv);
        }
}

/* Loads every snapshot's tags; a record that vanished meanwhile is skipped. */
static int plan_load(struct stamp_store *s, struct plan *p)
{
        int r = stamp_store_list(s, &p->stamps);

        if (r < 0) {
                log_error("cannot list snapshots of '%s': %s", stamp_store_path(s), describe(r));
                return exit_code(r);
        }
        p->tags = calloc(p->stamps.n + 1, sizeof(*p->tags));
        p->sources = calloc(p->stamps.n + 1, sizeof(*p->sources));
        p->items = calloc(p->stamps.n + 1, sizeof(*p->items));
        if (!p->tags || !p->sources || !p->items) {
                log_error("out of memory");
                return EXIT_FAILED;
        }
        for (size_t i = 0; i < p->stamps.n; i++) {
                struct stamp_record rec;
                r = stamp_store_record_load(s, p->stamps.v[i], &rec);
                if (r == -ENOENT)
                        continue;
                if (r < 0) {
                        log_error("snapshot '%s': record unreadable (%s); prune needs every "
                                  "record's tags: delete it with 'stamp forget' first",
                                  p->stamps.v[i], describe(r));
                        return exit_code(r);
                }
                p->tags[p->n] = rec.tags;
                p->sources[p->n] = rec.sources;
                rec.tags = (struct stamp_strv){ 0 };
                rec.sources = (struct stamp_strv){ 0 };
                stamp_record_release(&rec);
                p->items[p->n] = (struct stamp_retention_item){
                        .stamp = p->stamps.v[i],
                        .tags = p->tags[p->n].v,
                        .n_tags = p->tags[p->n].n,
                        .target = p->sources[p->n].n ? p->sources[p->n].v[0] : NULL,
                };
                p->n++;
        }
        return EXIT_OK;
}

static int plan_decide(struct plan *p, const struct prune_args *a)
{
        int r = stamp_retention_apply(&a->policy, p->items, p->n);

        if (r < 0) {
                log_error("cannot apply the keep rules: %s", describe(r));
                return EXIT_FAILED;
        }
        for (size_t i = 0; i < p->n; i++) {
                bool regular = !stamp_retention_is_pre_restore(p->items[i].tags,
                                                               p->items[i].n_tags);
                p->regular += regular;
                p->kept += p->items[i].keep != 0;
                p->kept_regular += regular && p->items[i].keep != 0;
        }
        if (a->allow_empty)
                return EXIT_OK;
        /* Like restic: an empty result is far more often a mistake than a wish. */
        if (p->n > 0 && p->kept == 0) {
                log_error("these rules would remove all %zu snapshots; nothing was deleted "
                          "(--allow-empty permits it)",
                          p->n);
                return EXIT_USAGE;
        }
        if (p->regular > 0 && p->kept_regular == 0) {
                log_error("these rules would remove all %zu snapshots but the pre-restore ones; "
                          "nothing was deleted (--allow-empty permits it)",
                          p->regular);
                return EXIT_USAGE;
        }
        return EXIT_OK;
}

static int plan_execute(struct stamp_store *s, const struct plan *p)
{
        size_t done = 0;

        for (size_t i = 0; i < p->n; i++) {
                int r;
                if (p->items[i].keep)
                        continue;
                r = stamp_store_record_delete(s, p->items[i].stamp);
                if (r < 0 && r != -ENOENT) {
                        log_error("snapshot '%s': cannot delete: %s (%zu snapshots were "
                                  "deleted before it)",
                                  p->items[i].stamp, describe(r), done);
                        return exit_code(r);
                }
                if (r == 1)
                        warn_unmarked(p->items[i].stamp);
                done++;
        }
        return EXIT_OK;
}

static void print_human(const struct plan *p, bool dry_run)
{
        size_t removed = p->n - p->kept;

        for (size_t i = 0; i < p->n; i++) {
                unsigned keep = p->items[i].keep;
                bool first = true;
                if (!keep) {
                        printf("remove %s\n", p->items[i].stamp);
                        continue;
                }
                printf("keep   %s  ", p->items[i].stamp);
                for (unsigned b = 0; b < STAMP_KEEP_REASON_MAX; b++)
                        if (keep & (1u << b)) {
                                printf("%s%s", first ? "" : ",", stamp_keep_reason_name(b));
                                first = false;
                        }
                putchar('\n');
        }
        if (arg_quiet)
                return;
        if (p->n == 0)
                printf("no snapshots: nothing to do\n");
        else if (dry_run)
                printf("would keep %zu and remove %zu of %zu snapshots (dry run: nothing was "
                       "deleted)\n",
                       p->kept, removed, p->n);
        else if (removed == 0)
                printf("kept all %zu snapshots: nothing to remove\n", p->n);
        else
                printf("kept %zu, removed %zu of %zu snapshots; 'stamp gc' reclaims their "
                       "space\n",
                       p->kept, removed, p->n);
}

static void print_json(const struct plan *p, bool dry_run)
{
        printf("{\"dry_run\": %s, \"snapshots\": [", dry_run ? "true" : "false");
        for (size_t i = 0; i < p->n; i++) {
                unsigned keep = p->items[i].keep;
                bool first = true;
                printf("%s\n  {\"stamp\": \"%s\", \"action\": \"%s\", \"reasons\": [",
                       i ? "," : "", p->items[i].stamp, keep ? "keep" : "remove");
                for (unsigned b = 0; b < STAMP_KEEP_REASON_MAX; b++)
                        if (keep & (1u << b)) {
                                printf("%s\"%s\"", first ? "" : ", ", stamp_keep_reason_name(b));
                                first = false;
                        }
                printf("]}");
        }
        printf("%s], \"kept\": %zu, \"removed\": %zu}\n", p->n ? "\n" : "", p->kept,
               p->n - p->kept);
}

static int prune(const struct prune_args *a)
{
        struct stamp_store *s = NULL;
        struct plan p = { 0 };
        int r;

        r = open_store(&s);
        if (r != EXIT_OK)
                return r;
        /* The list is read under the lock, so no writer changes it in between. */
        if (!a->dry_run)
                r = lock_store(s, a->lock_timeout, "stamp prune");
        if (r == EXIT_OK)
                r = plan_load(s, &p);
        if (r == EXIT_OK)
                r = plan_decide(&p, a);
        if (r == EXIT_OK && !a->dry_run)
                r = plan_execute(s, &p);
        if (r == EXIT_OK) {
                if (arg_json)
                        print_json(&p, a->dry_run);
                else
                        print_human(&p, a->dry_run);
        }
        plan_release(&p);
        stamp_store_free(s);
        return r;
}

int verb_prune(int argc, char **argv)
{
        static const struct option opts[] = {
                COMMON_LONG_OPTIONS,
                { "keep-last", required_argument, NULL, OPT_LAST },
                { "keep-hourly", required_argument, NULL, OPT_HOURLY },
                { "keep-daily", required_argument, NULL, OPT_DAILY },
                { "keep-weekly", required_argument, NULL, OPT_WEEKLY },
                { "keep-monthly", required_argument, NULL, OPT_MONTHLY },
                { "keep-yearly", required_argument, NULL, OPT_YEARLY },
                { "keep-within", required_argument, NULL, OPT_WITHIN },
                { "keep-tag", required_argument, NULL, OPT_TAG },
                { "keep-pre-restore", required_argument, NULL, OPT_PRE_RESTORE },
                { "dry-run", no_argument, NULL, 'n' },
                { "allow-empty", no_argument, NULL, OPT_ALLOW_EMPTY },
                { "lock-timeout", required_argument, NULL, OPT_LOCK_TIMEOUT },
                {}
        };
        struct prune_args a = { .policy.keep_pre_restore = 3, .lock_timeout = 60 };
        int c, r = EXIT_OK;

        while (r == EXIT_OK && (c = getopt_long(argc, argv, "hnq", opts, NULL)) >= 0) {
                if (common_option(c, optarg))
                        continue;
                if (c == 'h') {
                        help();
                        free(a.tags);
                        return EXIT_OK;
                }
                r = prune_option(c, &a, opts, argv);
        }
        if (r == EXIT_OK && optind < argc)
                r = usage_error("prune", "unexpected argument '%s'", argv[optind]);
        /* --keep-pre-restore alone would delete every regular snapshot. */
        if (r == EXIT_OK && !stamp_retention_has_rule(&a.policy))
                r = usage_error("prune", "no keep rule given: use --keep-last, --keep-hourly, "
                                         "--keep-daily, --keep-weekly, --keep-monthly or "
                                         "--keep-yearly with N > 0, --keep-within or --keep-tag");
        if (r == EXIT_OK)
                r = prune(&a);
        free(a.tags);
        return r;
}

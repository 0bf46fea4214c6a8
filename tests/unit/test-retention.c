/* SPDX-License-Identifier: MIT */
/*
 * Retention rules on hand-picked stamps: ISO week and year boundaries,
 * empty periods, pre-restore snapshots kept apart, "within" with calendar
 * months, durations. (tests/integration/test-prune.sh checks thousands of
 * generated stamps against an independent oracle.)
 */
#include "retention.h"
#include "tests.h"

#define MAX_SNAPS 32

/*
 * Applies @p to @specs (oldest first; "STAMP" or "STAMP TAG", at most one
 * tag) and stores each keep mask in @ret.
 */
static int run(const struct stamp_retention *p, const char *const *specs, size_t n, unsigned *ret)
{
        struct stamp_retention_item items[MAX_SNAPS];
        char stamps[MAX_SNAPS][17];
        char *tags[MAX_SNAPS];
        int r;

        CHECK(n <= MAX_SNAPS);
        for (size_t i = 0; i < n; i++) {
                snprintf(stamps[i], sizeof(stamps[i]), "%.16s", specs[i]);
                tags[i] = strlen(specs[i]) > 17 ? (char *)specs[i] + 17 : NULL;
                items[i] = (struct stamp_retention_item){ .stamp = stamps[i], .tags = &tags[i],
                                                          .n_tags = tags[i] ? 1 : 0,
                                                          .keep = 12345 };
        }
        r = stamp_retention_apply(p, items, n);
        for (size_t i = 0; i < n; i++)
                ret[i] = items[i].keep;
        return r;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void check_week(const char *stamp, int year, int week)
{
        int y = 0, w = 0;

        CHECK_OK(stamp_stamp_iso_week(stamp, &y, &w));
        if (y != year || w != week) {
                fprintf(stderr, "%s: ISO week %d-W%02d, expected %d-W%02d\n", stamp, y, w, year,
                        week);
                abort();
        }
}

static void test_iso_weeks(void)
{
        int y, w;

        check_week("20260101T000000Z", 2026, 1);  /* a Thursday: week 1 of its own year */
        check_week("20270101T120000Z", 2026, 53); /* a Friday: the last week of 2026 */
        check_week("20270103T235959Z", 2026, 53); /* Sunday, the week's last second */
        check_week("20270104T000000Z", 2027, 1);  /* Monday: a new week */
        check_week("20251229T000000Z", 2026, 1);  /* Monday of 2026-W01, still in 2025 */
        check_week("20251228T235959Z", 2025, 52);
        check_week("20210103T000000Z", 2020, 53);
        check_week("20080101T000000Z", 2008, 1);
        check_week("20091231T000000Z", 2009, 53);
        check_week("20100103T000000Z", 2009, 53);
        check_week("19700101T000000Z", 1970, 1);
        check_week("19691231T000000Z", 1970, 1); /* before the epoch */
        check_week("19691228T000000Z", 1969, 52);
        CHECK_RC(stamp_stamp_iso_week("20260230T000000Z", &y, &w), -EINVAL);
}

static void check_duration(const char *s, unsigned y, unsigned m, unsigned d, unsigned h)
{
        struct stamp_duration got;

        CHECK_OK(stamp_duration_parse(s, &got));
        CHECK(got.years == y && got.months == m && got.days == d && got.hours == h);
}

static void test_durations(void)
{
        static const char *const bad[] = { "", "d", "5", "5x", "-1d", "1d1d", "1D", "1y 2m",
                                           "100001d", "99999999999999999999d", "1.5d" };
        struct stamp_duration d;

        check_duration("2d", 0, 0, 2, 0);
        check_duration("36h", 0, 0, 0, 36);
        check_duration("1w", 0, 0, 7, 0);
        check_duration("3m", 0, 3, 0, 0);
        check_duration("1y", 1, 0, 0, 0);
        check_duration("1y2m3d", 1, 2, 3, 0);
        check_duration("2w3d", 0, 0, 17, 0);
        check_duration("12h1y", 1, 0, 0, 12);
        check_duration("0d", 0, 0, 0, 0);
        for (size_t i = 0; i < N(bad); i++)
                CHECK_RC(stamp_duration_parse(bad[i], &d), -EINVAL);
}

static void test_names(void)
{
        CHECK(strcmp(stamp_keep_reason_name(0), "last") == 0);
        CHECK(strcmp(stamp_keep_reason_name(3), "weekly") == 0);
        CHECK(strcmp(stamp_keep_reason_name(STAMP_KEEP_REASON_MAX - 1), "pre-restore") == 0);
        CHECK(stamp_keep_reason_name(STAMP_KEEP_REASON_MAX) == NULL);
}

/* Day, month and year boundaries: the last second of a period is its newest. */
static void test_boundaries(void)
{
        static const char *const s[] = { "20251231T120000Z", "20251231T235959Z",
                                         "20260101T000000Z", "20260101T080000Z" };
        struct stamp_retention p = { .keep_daily = 2 };
        unsigned k[N(s)];

        CHECK_OK(run(&p, s, N(s), k));
        CHECK(k[0] == 0 && k[1] == STAMP_KEEP_DAILY && k[2] == 0 && k[3] == STAMP_KEEP_DAILY);
        p = (struct stamp_retention){ .keep_monthly = 5, .keep_yearly = 5 };
        CHECK_OK(run(&p, s, N(s), k));
        CHECK(k[0] == 0 && k[2] == 0);
        CHECK(k[1] == (STAMP_KEEP_MONTHLY | STAMP_KEEP_YEARLY) && k[3] == k[1]);
        p = (struct stamp_retention){ .keep_hourly = 3 };
        CHECK_OK(run(&p, s, N(s), k));
        CHECK(k[0] == 0 && k[1] && k[2] && k[3]);
}

/* An ISO week that spans two calendar years is one week. */
static void test_weeks_across_years(void)
{
        static const char *const s[] = { "20261227T235959Z", "20261228T000000Z",
                                         "20261230T100000Z", "20270101T100000Z",
                                         "20270103T235959Z", "20270104T000000Z" };
        struct stamp_retention p = { .keep_weekly = 2 };
        unsigned k[N(s)];

        CHECK_OK(run(&p, s, N(s), k));
        CHECK(k[5] == STAMP_KEEP_WEEKLY && k[4] == STAMP_KEEP_WEEKLY);
        CHECK(k[0] == 0 && k[1] == 0 && k[2] == 0 && k[3] == 0);
        p.keep_weekly = 3;
        CHECK_OK(run(&p, s, N(s), k));
        CHECK(k[0] == STAMP_KEEP_WEEKLY && k[1] == 0);
}

/* Periods without a snapshot do not count. */
static void test_empty_periods(void)
{
        static const char *const s[] = { "20250601T000000Z", "20260101T000000Z",
                                         "20260115T000000Z", "20260301T000000Z" };
        struct stamp_retention p = { .keep_daily = 2, .keep_yearly = 2 };
        unsigned k[N(s)];

        CHECK_OK(run(&p, s, N(s), k));
        CHECK(k[3] == (STAMP_KEEP_DAILY | STAMP_KEEP_YEARLY));
        CHECK(k[2] == STAMP_KEEP_DAILY && k[1] == 0 && k[0] == STAMP_KEEP_YEARLY);
}

/* Pre-restore snapshots have their own rule and use up nothing of the others. */
static void test_pre_restore(void)
{
        static const char *const s[] = {
                "20260101T100000Z",             "20260101T110000Z pre-restore",
                "20260102T010000Z",             "20260102T020000Z pre-restore",
                "20260102T030000Z manual",      "20260102T040000Z pre-restore",
        };
        struct stamp_retention p = { .keep_last = 2, .keep_daily = 2, .keep_pre_restore = 1 };
        char *manual[] = { "manual" }, *pre[] = { "pre-restore" };
        unsigned k[N(s)];

        CHECK_OK(run(&p, s, N(s), k));
        CHECK(k[5] == STAMP_KEEP_PRE_RESTORE && k[3] == 0 && k[1] == 0);
        CHECK(k[4] == (STAMP_KEEP_LAST | STAMP_KEEP_DAILY));
        CHECK(k[2] == STAMP_KEEP_LAST);
        CHECK(k[0] == STAMP_KEEP_DAILY);
        /* A tag rule keeps any snapshot with the tag, pre-restore ones too. */
        p = (struct stamp_retention){ .keep_tags = manual, .n_keep_tags = 1 };
        CHECK_OK(run(&p, s, N(s), k));
        CHECK(k[4] == STAMP_KEEP_TAG && k[0] == 0 && k[5] == 0);
        p = (struct stamp_retention){ .keep_tags = pre, .n_keep_tags = 1, .keep_pre_restore = 1 };
        CHECK_OK(run(&p, s, N(s), k));
        CHECK(k[1] == STAMP_KEEP_TAG && k[3] == STAMP_KEEP_TAG);
        CHECK(k[5] == (STAMP_KEEP_TAG | STAMP_KEEP_PRE_RESTORE));
        CHECK(k[0] == 0 && k[2] == 0 && k[4] == 0);
        CHECK(!stamp_retention_has_rule(&(struct stamp_retention){ .keep_pre_restore = 3 }));
        CHECK(stamp_retention_has_rule(&p));
}

/* --keep-pre-restore N keeps N of each target: scratch restores push nothing out. */
static void test_pre_restore_targets(void)
{
        static const char *const stamps[] = {
                "20260101T100000Z", "20260102T100000Z", "20260103T100000Z", "20260104T100000Z",
                "20260105T100000Z", "20260106T100000Z", "20260107T100000Z",
        };
        static const char *const targets[] = {
                "/srv/app/data", "/srv/app/data", "/tmp/x", NULL, "/tmp/x", "/tmp/y", NULL,
        };
        char *pre[] = { "pre-restore" };
        struct stamp_retention_item items[N(stamps)];
        struct stamp_retention p = { .keep_last = 1, .keep_pre_restore = 1 };

        for (size_t i = 0; i < N(stamps); i++)
                items[i] = (struct stamp_retention_item){ .stamp = stamps[i], .tags = pre,
                                                          .n_tags = 1, .target = targets[i] };
        CHECK_OK(stamp_retention_apply(&p, items, N(items)));
        /* The newest of each target (NULL is one target of its own). */
        CHECK(items[6].keep == STAMP_KEEP_PRE_RESTORE && items[5].keep == STAMP_KEEP_PRE_RESTORE);
        CHECK(items[4].keep == STAMP_KEEP_PRE_RESTORE && items[1].keep == STAMP_KEEP_PRE_RESTORE);
        CHECK(items[3].keep == 0 && items[2].keep == 0 && items[0].keep == 0);
        p.keep_pre_restore = 2;
        CHECK_OK(stamp_retention_apply(&p, items, N(items)));
        for (size_t i = 0; i < N(items); i++)
                CHECK(items[i].keep == STAMP_KEEP_PRE_RESTORE);
        p.keep_pre_restore = 0;
        CHECK_OK(stamp_retention_apply(&p, items, N(items)));
        for (size_t i = 0; i < N(items); i++)
                CHECK(items[i].keep == 0);
}

/* "within" counts back from the newest regular snapshot, by calendar months. */
static void test_within(void)
{
        static const char *const s[] = {
                "20260227T120000Z", "20260228T115959Z", "20260228T120000Z",
                "20260330T115959Z", "20260330T120000Z", "20260331T120000Z",
                "20260401T000000Z pre-restore",
        };
        static const char *const leap[] = { "20230227T235959Z", "20230228T000000Z",
                                            "20240229T000000Z" };
        struct stamp_retention p = { .keep_within_set = true };
        unsigned k[N(s)];

        CHECK_OK(stamp_duration_parse("1m", &p.keep_within));
        CHECK_OK(run(&p, s, N(s), k));
        /* 31 March minus a month is 28 February (there is no 31 February). */
        CHECK(k[0] == 0 && k[1] == 0 && k[2] == STAMP_KEEP_WITHIN);
        CHECK(k[3] == STAMP_KEEP_WITHIN && k[5] == STAMP_KEEP_WITHIN && k[6] == 0);
        CHECK_OK(stamp_duration_parse("1d", &p.keep_within));
        CHECK_OK(run(&p, s, N(s), k));
        CHECK(k[2] == 0 && k[3] == 0 && k[4] == STAMP_KEEP_WITHIN);
        CHECK_OK(stamp_duration_parse("24h", &p.keep_within));
        CHECK_OK(run(&p, s, N(s), k));
        CHECK(k[3] == 0 && k[4] == STAMP_KEEP_WITHIN);
        CHECK_OK(stamp_duration_parse("1y", &p.keep_within));
        CHECK_OK(run(&p, leap, N(leap), k));
        CHECK(k[0] == 0 && k[1] == STAMP_KEEP_WITHIN && k[2] == STAMP_KEEP_WITHIN);
}

static void test_bad_input(void)
{
        static const char *const unsorted[] = { "20260102T000000Z", "20260101T000000Z" };
        static const char *const dup[] = { "20260101T000000Z", "20260101T000000Z" };
        static const char *const invalid[] = { "20260101T000000Z", "20261301T000000Z" };
        struct stamp_retention p = { .keep_last = 1 };
        unsigned k[2];

        CHECK_RC(run(&p, unsorted, 2, k), -EINVAL);
        CHECK(k[0] == 12345 && k[1] == 12345); /* nothing decided */
        CHECK_RC(run(&p, dup, 2, k), -EINVAL);
        CHECK_RC(run(&p, invalid, 2, k), -EINVAL);
        CHECK_OK(run(&p, unsorted, 0, k));
}

int main(void)
{
        test_names();
        test_iso_weeks();
        test_durations();
        test_boundaries();
        test_weeks_across_years();
        test_empty_periods();
        test_pre_restore();
        test_pre_restore_targets();
        test_within();
        test_bad_input();
        printf("retention ok\n");
        return 0;
}

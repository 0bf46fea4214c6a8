/* SPDX-License-Identifier: MIT */
/*
 * Retention rules (see retention.h for their meaning).
 *
 * One pass from the newest snapshot to the oldest decides everything: the
 * first snapshot met in a period is that period's newest, and period keys
 * never increase along the pass, so "a new period" is "a key different
 * from the previous snapshot's". Times come from the stamps alone, as
 * UTC calendar fields; timegm() and gmtime_r() do the calendar arithmetic.
 */
#include "retention.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "macro.h"
#include "record.h"

#define DURATION_NUMBER_MAX 100000

static const char *const reason_names[STAMP_KEEP_REASON_MAX] = {
        "last", "hourly", "daily", "weekly", "monthly", "yearly", "within", "tag", "pre-restore",
};

const char *stamp_keep_reason_name(unsigned i)
{
        return i < STAMP_KEEP_REASON_MAX ? reason_names[i] : NULL;
}

static int64_t floor_div(int64_t a, int64_t b)
{
        return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static int64_t floor_mod(int64_t a, int64_t b)
{
        return a - floor_div(a, b) * b;
}

/* A stamp's time: seconds since the epoch and its UTC calendar fields. */
struct when {
        int64_t t;
        struct tm tm;
};

static unsigned digits(const char *s, unsigned n)
{
        unsigned v = 0;

        for (unsigned i = 0; i < n; i++)
                v = v * 10 + (unsigned)(s[i] - '0');
        return v;
}

static int when_parse(const char *stamp, struct when *ret)
{
        struct when w = { 0 };

        if (!stamp_stamp_valid(stamp))
                return -EINVAL;
        /* YYYYMMDDTHHMMSSZ; stamp_stamp_valid() checked digits and ranges. */
        w.tm.tm_year = (int)digits(stamp, 4) - 1900;
        w.tm.tm_mon = (int)digits(stamp + 4, 2) - 1;
        w.tm.tm_mday = (int)digits(stamp + 6, 2);
        w.tm.tm_hour = (int)digits(stamp + 9, 2);
        w.tm.tm_min = (int)digits(stamp + 11, 2);
        w.tm.tm_sec = (int)digits(stamp + 13, 2);
        w.t = (int64_t)timegm(&w.tm); /* also fills tm_wday and tm_yday */
        *ret = w;
        return 0;
}

static void iso_week(int64_t t, int *ret_year, int *ret_week)
{
        int64_t days = floor_div(t, 86400);
        int64_t weekday = floor_mod(days + 3, 7); /* Monday 0: 1970-01-01 was a Thursday */
        /* An ISO week belongs to the year that holds its Thursday. */
        time_t thursday = (time_t)((days - weekday + 3) * 86400);
        struct tm tm;

        gmtime_r(&thursday, &tm);
        *ret_year = tm.tm_year + 1900;
        *ret_week = tm.tm_yday / 7 + 1;
}

int stamp_stamp_iso_week(const char *stamp, int *ret_year, int *ret_week)
{
        struct when w;
        int r = when_parse(stamp, &w);

        if (r < 0)
                return r;
        iso_week(w.t, ret_year, ret_week);
        return 0;
}

int stamp_duration_parse(const char *s, struct stamp_duration *ret)
{
        struct stamp_duration d = { 0 };
        unsigned seen = 0;

        if (!s || !*s)
                return -EINVAL;
        while (*s) {
                unsigned long v = 0;
                const char *start = s;
                const char *units = "ymwdh", *u;

                while (*s >= '0' && *s <= '9') {
                        v = v * 10 + (unsigned long)(*s - '0');
                        if (v > DURATION_NUMBER_MAX)
                                return -EINVAL;
                        s++;
                }
                if (s == start || !*s)
                        return -EINVAL;
                u = strchr(units, *s);
                if (!u || (seen & (1u << (u - units))))
                        return -EINVAL;
                seen |= 1u << (u - units);
                switch (*s) {
                case 'y':
                        d.years = (unsigned)v;
                        break;
                case 'm':
                        d.months = (unsigned)v;
                        break;
                case 'w':
                        d.days += 7 * (unsigned)v;
                        break;
                case 'd':
                        d.days += (unsigned)v;
                        break;
                case 'h':
                        d.hours = (unsigned)v;
                        break;
                }
                s++;
        }
        *ret = d;
        return 0;
}

static int days_in_month(int year, int month)
{
        static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

        return month == 2 && leap ? 29 : days[month - 1];
}

/* The oldest time @d keeps, counted back from @newest. */
static int64_t within_cutoff(const struct when *newest, const struct stamp_duration *d)
{
        int64_t months = (int64_t)(newest->tm.tm_year + 1900) * 12 + newest->tm.tm_mon -
                         (int64_t)d->years * 12 - d->months;
        struct tm tm = newest->tm;
        int year = (int)floor_div(months, 12), month = (int)floor_mod(months, 12) + 1;
        int last = days_in_month(year, month);

        tm.tm_year = year - 1900;
        tm.tm_mon = month - 1;
        if (tm.tm_mday > last)
                tm.tm_mday = last;
        return (int64_t)timegm(&tm) - (int64_t)d->days * 86400 - (int64_t)d->hours * 3600;
}

bool stamp_retention_has_rule(const struct stamp_retention *p)
{
        return p->keep_last || p->keep_hourly || p->keep_daily || p->keep_weekly ||
               p->keep_monthly || p->keep_yearly || p->keep_within_set || p->n_keep_tags > 0;
}

static bool has_tag(char *const *tags, size_t n, const char *tag)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(tags[i], tag) == 0)
                        return true;
        return false;
}

bool stamp_retention_is_pre_restore(char *const *tags, size_t n_tags)
{
        return has_tag(tags, n_tags, STAMP_PRE_RESTORE_TAG);
}

enum { PERIOD_HOURLY, PERIOD_DAILY, PERIOD_WEEKLY, PERIOD_MONTHLY, PERIOD_YEARLY, PERIOD_MAX };

static const unsigned period_reasons[PERIOD_MAX] = {
        STAMP_KEEP_HOURLY,  STAMP_KEEP_DAILY,  STAMP_KEEP_WEEKLY,
        STAMP_KEEP_MONTHLY, STAMP_KEEP_YEARLY,
};

/* Keys grow with time, so the pass from the newest sees them never increase. */
static int64_t period_key(unsigned period, const struct when *w)
{
        int64_t y = w->tm.tm_year + 1900, m = w->tm.tm_mon + 1, d = w->tm.tm_mday;
        int iy, iw;

        switch (period) {
        case PERIOD_HOURLY:
                return ((y * 100 + m) * 100 + d) * 100 + w->tm.tm_hour;
        case PERIOD_DAILY:
                return (y * 100 + m) * 100 + d;
        case PERIOD_WEEKLY:
                iso_week(w->t, &iy, &iw);
                return (int64_t)iy * 100 + iw;
        case PERIOD_MONTHLY:
                return y * 100 + m;
        default:
                return y;
        }
}

struct period_rule {
        unsigned want, kept;
        bool seen;
        int64_t last_key;
};

struct pass {
        const struct stamp_retention *p;
        const struct stamp_retention_item *items;
        size_t n;
        unsigned last_kept;
        struct period_rule periods[PERIOD_MAX];
        bool within;
        int64_t cutoff;
};

static unsigned decide_regular(struct pass *ps, const struct when *w)
{
        unsigned keep = 0;

        if (ps->last_kept < ps->p->keep_last) {
                ps->last_kept++;
                keep |= STAMP_KEEP_LAST;
        }
        for (unsigned i = 0; i < PERIOD_MAX; i++) {
                struct period_rule *pr = &ps->periods[i];
                int64_t key = period_key(i, w);
                if (pr->kept < pr->want && (!pr->seen || key != pr->last_key)) {
                        pr->kept++;
                        keep |= period_reasons[i];
                }
                pr->seen = true;
                pr->last_key = key;
        }
        if (ps->within && w->t >= ps->cutoff)
                keep |= STAMP_KEEP_WITHIN;
        return keep;
}

static bool same_target(const char *a, const char *b)
{
        return a == b || (a && b && strcmp(a, b) == 0);
}

/* Items after @i (newer, decided already) keeping a rollback of @i's target. */
static unsigned pre_kept(const struct pass *ps, size_t i)
{
        unsigned n = 0;

        for (size_t j = i + 1; j < ps->n; j++)
                if ((ps->items[j].keep & STAMP_KEEP_PRE_RESTORE) &&
                    same_target(ps->items[j].target, ps->items[i].target))
                        n++;
        return n;
}

static unsigned decide(struct pass *ps, size_t i, const struct when *w)
{
        const struct stamp_retention_item *it = &ps->items[i];
        unsigned keep = 0;

        for (size_t t = 0; t < ps->p->n_keep_tags; t++)
                if (has_tag(it->tags, it->n_tags, ps->p->keep_tags[t]))
                        keep |= STAMP_KEEP_TAG;
        if (!stamp_retention_is_pre_restore(it->tags, it->n_tags))
                return keep | decide_regular(ps, w);
        if (pre_kept(ps, i) < ps->p->keep_pre_restore)
                keep |= STAMP_KEEP_PRE_RESTORE;
        return keep;
}

int stamp_retention_apply(const struct stamp_retention *p, struct stamp_retention_item *items,
                          size_t n)
{
        _cleanup_free_ struct when *w = NULL;
        struct pass ps = { .p = p, .items = items, .n = n };
        unsigned wants[PERIOD_MAX] = { p->keep_hourly, p->keep_daily, p->keep_weekly,
                                       p->keep_monthly, p->keep_yearly };

        if (n == 0)
                return 0;
        w = calloc(n, sizeof(*w));
        if (!w)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (when_parse(items[i].stamp, &w[i]) < 0)
                        return -EINVAL;
                if (i > 0 && strcmp(items[i - 1].stamp, items[i].stamp) >= 0)
                        return -EINVAL;
        }
        for (unsigned i = 0; i < PERIOD_MAX; i++)
                ps.periods[i].want = wants[i];
        /* "within" counts back from the newest regular snapshot. */
        for (size_t i = n; p->keep_within_set && i-- > 0;)
                if (!stamp_retention_is_pre_restore(items[i].tags, items[i].n_tags)) {
                        ps.within = true;
                        ps.cutoff = within_cutoff(&w[i], &p->keep_within);
                        break;
                }
        for (size_t i = 0; i < n; i++)
                items[i].keep = 0;
        for (size_t i = n; i-- > 0;)
                items[i].keep = decide(&ps, i, &w[i]);
        return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * Retention: which snapshots a set of keep rules keeps, and why. A pure
 * function of the stamps and their tags (no store, no clock, no I/O), so
 * that every rule can be tested on synthetic stamps.
 *
 * Rules (a snapshot is kept if any rule keeps it):
 *   last N      the N newest snapshots;
 *   hourly N, daily N, weekly N, monthly N, yearly N
 *               the newest snapshot of each of the last N hours (days,
 *               ISO 8601 weeks, months, years) that hold a snapshot,
 *               counted back from the newest; empty periods do not count;
 *   within D    every snapshot at most D older than the newest one;
 *   tag T       every snapshot carrying tag T;
 *   pre-restore N
 *               the N newest pre-restore snapshots of each target (the
 *               directory restored into): restores elsewhere never push
 *               a target's rollback out.
 * Pre-restore snapshots (tag STAMP_PRE_RESTORE_TAG), taken by restore as
 * a safety net, are invisible to last, the period rules and within: they
 * neither use up a period's slot nor take "newest" from the regular
 * snapshots. Only their own rule and tag rules keep them.
 *
 * Times are the stamps' UTC times; weeks start on Monday and belong to
 * their ISO week-year (2027-01-01 is in 2026-W53).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define STAMP_PRE_RESTORE_TAG "pre-restore"

/* Why a snapshot is kept, as bits; index i is named by stamp_keep_reason_name(i). */
enum {
        STAMP_KEEP_LAST = 1u << 0,
        STAMP_KEEP_HOURLY = 1u << 1,
        STAMP_KEEP_DAILY = 1u << 2,
        STAMP_KEEP_WEEKLY = 1u << 3,
        STAMP_KEEP_MONTHLY = 1u << 4,
        STAMP_KEEP_YEARLY = 1u << 5,
        STAMP_KEEP_WITHIN = 1u << 6,
        STAMP_KEEP_TAG = 1u << 7,
        STAMP_KEEP_PRE_RESTORE = 1u << 8,
        STAMP_KEEP_REASON_MAX = 9,
};

/* "last", "hourly", ..., "pre-restore"; NULL for i >= STAMP_KEEP_REASON_MAX. */
const char *stamp_keep_reason_name(unsigned i);

/*
 * A calendar duration. Years and months step through the calendar (a day
 * that the target month lacks becomes its last day: 31 March minus one
 * month is 28 or 29 February); days and hours are 86400 and 3600 seconds.
 */
struct stamp_duration {
        unsigned years, months, days, hours;
};

/*
 * Parses "2d", "36h", "1w", "3m", "1y" and combinations such as "1y2m3d"
 * (units y, m, w, d, h, each at most once, any order; a week is 7 days).
 * -EINVAL if malformed or a number exceeds 100000.
 */
int stamp_duration_parse(const char *s, struct stamp_duration *ret);

struct stamp_retention {
        unsigned keep_last;
        unsigned keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly;
        bool keep_within_set;
        struct stamp_duration keep_within;
        char *const *keep_tags; /* borrowed */
        size_t n_keep_tags;
        unsigned keep_pre_restore;
};

/* True if any rule but pre-restore can keep a snapshot. */
bool stamp_retention_has_rule(const struct stamp_retention *p);

struct stamp_retention_item {
        const char *stamp;     /* in: borrowed */
        char *const *tags;     /* in: the record's tags, borrowed */
        size_t n_tags;
        const char *target;    /* in: what a pre-restore snapshot was taken of (its
                                * record's first source), borrowed; NULL: unknown,
                                * all such ones count as one target */
        unsigned keep;         /* out: STAMP_KEEP_* bits; 0 means remove */
};

/*
 * Decides every item: sets items[i].keep. @items must be sorted by stamp,
 * oldest first, without duplicates; -EINVAL otherwise or for an invalid
 * stamp (then no item is changed).
 */
int stamp_retention_apply(const struct stamp_retention *p, struct stamp_retention_item *items,
                          size_t n);

/* True if @tags holds STAMP_PRE_RESTORE_TAG. */
bool stamp_retention_is_pre_restore(char *const *tags, size_t n_tags);

/* The ISO 8601 week-year and week (1..53) of a valid stamp's UTC date. -EINVAL if invalid. */
int stamp_stamp_iso_week(const char *stamp, int *ret_year, int *ret_week);

#!/usr/bin/env python3
# Checks every keep/remove decision of `stamp prune` against an oracle
# written here from the rules' definitions, independently of the C code:
# it groups stamps by period with datetime and isocalendar() instead of
# making one pass, and does calendar arithmetic with calendar.monthrange.
#
# usage: prune_oracle.py STAMP STORE SEED
# STORE holds one real snapshot; its record is the template of a few
# thousand synthetic records (all naming the same root tree) spread over
# two years at irregular times, with gaps of weeks, stamps on the exact
# boundaries of hours, days, ISO weeks, months and years, tags and
# pre-restore snapshots of three targets (--keep-pre-restore N keeps N of
# each). Then many rule combinations are compared with
# `prune --dry-run --json`, and one real prune is checked with `list`
# and `cat`.
import calendar
import datetime as dt
import json
import os
import random
import re
import subprocess
import sys

PRE = "pre-restore"
FMT = "%Y%m%dT%H%M%SZ"

# Boundaries: last second of a period and first second of the next.
BOUNDARIES = [
    "20241231T235959Z", "20250101T000000Z",   # year
    "20251231T235959Z", "20260101T000000Z",   # year, and 2026-W01 begins on 2025-12-29
    "20251228T235959Z", "20251229T000000Z",   # ISO week (Sunday / Monday)
    "20260104T235959Z", "20260105T000000Z",   # ISO week
    "20260131T235959Z", "20260201T000000Z",   # month
    "20260315T105959Z", "20260315T110000Z",   # hour
    "20260228T115959Z", "20260228T120000Z",   # "11m" before 20270131T120000Z, clamped
    "20260303T120000Z",                       # where an unclamped 31 February would land
    "20261231T235959Z", "20270101T000000Z",   # year, but both in 2026-W53
    "20270103T235959Z", "20270104T000000Z",   # 2026-W53 / 2027-W01
    "20270131T120000Z",                       # the newest regular snapshot
]
# Newer than every regular snapshot: must not move "newest" for within/last.
PRE_RESTORES = ["20270131T130000Z", "20270201T000000Z", "20260101T000001Z"]
# The directories restored into; a pre-restore record's first source.
TARGETS = ["/srv/app/data", "/tmp/scratch", "/srv/other data"]


def parse(stamp):
    return dt.datetime.strptime(stamp, FMT)


def generate(rng):
    """{stamp: [tags]}"""
    snaps = {}
    day = dt.datetime(2024, 12, 20)
    end = dt.datetime(2027, 1, 31)
    while day < end:
        if rng.random() < 0.03:          # a gap of one to five weeks
            day += dt.timedelta(days=rng.randint(7, 35))
            continue
        for _ in range(rng.choice([0, 1, 1, 2, 3, 5, 8])):
            t = day + dt.timedelta(seconds=rng.randrange(86400))
            if t >= end:
                continue
            x = rng.random()
            tags = ([PRE] if x < 0.04 else ["manual"] if x < 0.08 else
                    ["release", "manual"] if x < 0.1 else [PRE, "manual"] if x < 0.11 else [])
            snaps[t.strftime(FMT)] = tags
        day += dt.timedelta(days=1)
    for s in BOUNDARIES:
        snaps[s] = []
    for s in PRE_RESTORES:
        snaps[s] = [PRE]
    return snaps


def assign_targets(snaps, seed):
    """{stamp: target} for the pre-restore snapshots, from their own generator."""
    rng = random.Random(seed + 1)
    return {s: rng.choice(TARGETS) for s in sorted(snaps) if PRE in snaps[s]}


def write_records(store, snaps, targets):
    d = os.path.join(store, "snapshots")
    (template_name,) = os.listdir(d)
    template = json.load(open(os.path.join(d, template_name)))
    os.unlink(os.path.join(d, template_name))
    for stamp, tags in snaps.items():
        rec = dict(template)
        rec["stamp"] = stamp
        rec["created"] = parse(stamp).strftime("%Y-%m-%dT%H:%M:%S") + ".000000000Z"
        rec["tags"] = tags
        if stamp in targets:
            rec["sources"] = [targets[stamp]]
        p = os.path.join(d, stamp + ".json")
        with open(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            json.dump(rec, f, indent=1)


def parse_duration(s):
    """(years, months, days, hours)"""
    parts = re.findall(r"(\d+)([ymwdh])", s)
    assert "".join(n + u for n, u in parts) == s, s
    v = {u: int(n) for n, u in parts}
    return v.get("y", 0), v.get("m", 0), v.get("d", 0) + 7 * v.get("w", 0), v.get("h", 0)


def months_before(t, years, months):
    m = t.year * 12 + (t.month - 1) - 12 * years - months
    y, mon = divmod(m, 12)
    mon += 1
    return t.replace(year=y, month=mon, day=min(t.day, calendar.monthrange(y, mon)[1]))


PERIODS = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: t.date(),
    "weekly": lambda t: tuple(t.isocalendar())[:2],
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: t.year,
}


def oracle(snaps, targets, rules):
    """{stamp: set of reasons}; rules as in args_of()."""
    why = {s: set() for s in snaps}
    regular = sorted((s for s, tags in snaps.items() if PRE not in tags), reverse=True)
    pre = sorted((s for s, tags in snaps.items() if PRE in tags), reverse=True)
    for s in regular[:rules.get("last", 0)]:
        why[s].add("last")
    for name, key in PERIODS.items():
        groups = {}
        for s in regular:
            groups.setdefault(key(parse(s)), []).append(s)
        for k in sorted(groups, reverse=True)[:rules.get(name, 0)]:
            why[max(groups[k])].add(name)
    if "within" in rules and regular:
        y, m, d, h = parse_duration(rules["within"])
        cutoff = months_before(parse(regular[0]), y, m) - dt.timedelta(days=d, hours=h)
        for s in regular:
            if parse(s) >= cutoff:
                why[s].add("within")
    for s, tags in snaps.items():
        if set(tags) & set(rules.get("tags", [])):
            why[s].add("tag")
    for t in TARGETS:
        for s in [s for s in pre if targets[s] == t][:rules.get("pre", 3)]:
            why[s].add("pre-restore")
    return why


def args_of(rules):
    a = []
    for name in ["last", "hourly", "daily", "weekly", "monthly", "yearly"]:
        if name in rules:
            a += ["--keep-" + name, str(rules[name])]
    if "within" in rules:
        a += ["--keep-within", rules["within"]]
    for t in rules.get("tags", []):
        a += ["--keep-tag", t]
    if "pre" in rules:
        a += ["--keep-pre-restore", str(rules["pre"])]
    return a


def run(stamp, store, args, check=True):
    r = subprocess.run([stamp, "--store", store, "prune"] + args, capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit("FAIL: stamp prune %s exited %d: %s" % (" ".join(args), r.returncode, r.stderr))
    return r


def compare(stamp, store, snaps, targets, rules):
    args = args_of(rules)
    out = json.loads(run(stamp, store, ["--dry-run", "--json", "--allow-empty"] + args).stdout)
    want = oracle(snaps, targets, rules)
    got = {x["stamp"]: x for x in out["snapshots"]}
    if list(got) != sorted(snaps):
        sys.exit("FAIL: %s: prune lists %d stamps, the store has %d" % (args, len(got), len(snaps)))
    bad = []
    for s in sorted(snaps):
        g = got[s]
        if set(g["reasons"]) != want[s] or g["action"] != ("keep" if want[s] else "remove"):
            bad.append("%s %s: stamp says %s %s, oracle %s" % (s, snaps[s], g["action"],
                                                             g["reasons"], sorted(want[s])))
    if bad:
        sys.exit("FAIL: prune %s: %d wrong decisions:\n  %s" % (" ".join(args), len(bad),
                                                                "\n  ".join(bad[:20])))
    kept = sum(1 for s in want if want[s])
    if out["kept"] != kept or out["removed"] != len(snaps) - kept or out["dry_run"] is not True:
        sys.exit("FAIL: prune %s: counts %r" % (args, out))
    return kept


FIXED = [
    {"daily": 7, "weekly": 4, "monthly": 6},
    {"daily": 7, "weekly": 4, "monthly": 6, "yearly": 3, "pre": 0},
    {"last": 1},
    {"last": 5, "pre": 0},
    {"last": 100000},
    {"hourly": 30},
    {"hourly": 2000},
    {"daily": 400},
    {"weekly": 60},
    {"weekly": 200},
    {"monthly": 30},
    {"yearly": 5},
    {"yearly": 1, "pre": 1},
    {"within": "2d"},
    {"within": "36h"},
    {"within": "1w"},
    {"within": "3m"},
    {"within": "11m"},
    {"within": "1y"},
    {"within": "1y2m3d"},
    {"within": "2w12h"},
    {"within": "0d"},
    {"tags": ["manual"]},
    {"tags": ["release"], "pre": 0},
    {"tags": [PRE], "pre": 1},
    {"tags": [PRE, "release"], "daily": 3},
    {"tags": ["no-such-tag"], "pre": 10},
    {"last": 3, "hourly": 24, "daily": 7, "weekly": 4, "monthly": 12, "yearly": 10,
     "within": "10d", "tags": ["release"], "pre": 2},
]


def random_rules(rng):
    rules = {}
    for name in ["last", "hourly", "daily", "weekly", "monthly", "yearly"]:
        if rng.random() < 0.35:
            rules[name] = rng.choice([0, 1, 2, 3, 4, 6, 7, 12, 30, 52, 500])
    if rng.random() < 0.3:
        rules["within"] = rng.choice(["1d", "3d", "12h", "2w", "1m", "6m", "1y1m", "5w2d"])
    if rng.random() < 0.2:
        rules["tags"] = rng.sample(["manual", "release", PRE], rng.randint(1, 2))
    if rng.random() < 0.5:
        rules["pre"] = rng.choice([0, 1, 3, 50])
    if not any(rules.get(k) for k in ["last", "hourly", "daily", "weekly", "monthly", "yearly",
                                      "within", "tags"]):
        rules["daily"] = 3
    return rules


def check_real_prune(stamp, store, snaps, targets):
    rules = {"daily": 7, "weekly": 4, "monthly": 6}
    want = oracle(snaps, targets, rules)
    r = run(stamp, store, args_of(rules))
    lines = r.stdout.splitlines()
    if len(lines) != len(snaps) + 1 or not lines[-1].startswith("kept "):
        sys.exit("FAIL: real prune printed:\n" + r.stdout)
    listed = subprocess.run([stamp, "--store", store, "list", "--short"], capture_output=True,
                            text=True, check=True).stdout.split()
    kept = sorted(s for s in snaps if want[s])
    if listed != kept:
        sys.exit("FAIL: after prune, list shows %d stamps, expected %d: extra %s missing %s" % (
            len(listed), len(kept), sorted(set(listed) - set(kept))[:5],
            sorted(set(kept) - set(listed))[:5]))
    for s in [kept[0], kept[len(kept) // 2], kept[-1]]:
        c = subprocess.run([stamp, "--store", store, "cat", s, "f"], capture_output=True)
        if c.returncode != 0 or c.stdout != b"hello\n":
            sys.exit("FAIL: stamp cat %s f after prune: %r" % (s, c))
    # A second run with the same rules has nothing left to remove.
    again = json.loads(run(stamp, store, ["--json"] + args_of(rules)).stdout)
    if again["removed"] != 0 or again["kept"] != len(kept):
        sys.exit("FAIL: a second prune still removes: %r" % again)
    print("real prune: kept %d of %d" % (len(kept), len(snaps)))


def main():
    stamp, store, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    snaps = generate(rng)
    targets = assign_targets(snaps, seed)
    write_records(store, snaps, targets)
    print("%d synthetic snapshots (%d pre-restore, of %d targets), seed %d" % (
        len(snaps), len(targets), len(set(targets.values())), seed))
    combos = FIXED + [random_rules(rng) for _ in range(40)]
    for rules in combos:
        kept = compare(stamp, store, snaps, targets, rules)
        print("ok %-60s kept %d" % (" ".join(args_of(rules)), kept))
    check_real_prune(stamp, store, snaps, targets)


if __name__ == "__main__":
    main()

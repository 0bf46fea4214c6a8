#!/usr/bin/env bash
# copy benchmark: a source store with three snapshots of the benchmark
# dataset (day 0, 1, 2) copied into a new store, then copied again (nothing
# new), then again after a fourth snapshot (day 3): stamp copy (to a path,
# and over --rsh with a local stand-in for ssh) and restic copy. See README.md.
#
#   bench-copy.sh [--workdir DIR] [--tools stamp,restic] [--scale F] [--keep]
#
# Results: a table on stdout and WORKDIR/results-copy.md; raw figures in
# WORKDIR/results/copy-TOOL.txt, tool output in WORKDIR/logs/copy-*.
set -euo pipefail

. "$(dirname "$0")/lib.sh"
workdir=/tmp/stampfs-bench-copy
tools=stamp,restic
scale=1
keep=0

parse_options "workdir tools scale keep" "$@"
# borg 1.2 has no copy between repositories (borg 2 has "transfer").
parse_tools stamp restic

mkdir -p "$workdir/logs" "$workdir/results"
workdir=$(cd "$workdir" && pwd)

# The dataset and the tools, exactly as bench-snapshot.sh prepares them (it
# installs what is missing and caches the day-0 dataset in the workdir).
build_dataset --tools "$tools" >&2
if has_tool stamp && [ -z "${STAMP_BIN:-}" ]; then
    "$repo_root/contrib/install-deps.sh" >&2
    build_stamp
fi
if has_tool restic; then need restic restic; fi
install_missing

data="$workdir/data"
export_tool_secrets
export RESTIC_FROM_PASSWORD=bench
export RESTIC_CACHE_DIR="$workdir/cache-restic"

# Every first copy starts with a cold page cache (source store included),
# as the first snapshot does in bench-snapshot.sh (drop_caches, lib.sh).

# run TOOL KEY CMD...: runs CMD under /usr/bin/time, records KEY_time and
# KEY_rss (KiB) in the tool's result file, then KEY_sync: how long a sync
# right after it takes (writeback the tool left to the kernel; not part of
# KEY_time). Stops the benchmark on failure.
run() {
    local key=$2 t0 t1
    run_timed "$@"
    t0=$EPOCHREALTIME
    sync
    t1=$EPOCHREALTIME
    printf '%s_time=%s\n%s_rss=%s\n%s_sync=%s\n' "$key" "$run_time" "$key" "$run_rss" \
        "$key" "$(elapsed "$t0" "$t1" 2)" >>"$res"
    log "$1 $key: $run_time s, peak RSS $run_rss KiB"
}

snapshot() { # TOOL DAY
    case "$1" in
        stamp) run stamp "snap$2" "$stamp_bin" --store "$src" -q snapshot "$data" ;;
        restic) run restic "snap$2" restic -r "$src" backup --quiet "$data" ;;
    esac
}

next_day() { # TOOL DAY
    python3 "$here/make-dataset.py" --scale "$scale" --next-day "$data" \
        >"$workdir/logs/copy-$1-next-day$2.log"
}

# A stand-in for ssh, as in tests/integration/test-copy.sh: it drops
# "-p PORT" and the host and runs the command here, so that `stamp copy
# ssh://...` runs its protocol with `stamp serve` over two pipes.
rsh="$workdir/rsh"
cat >"$rsh" <<'EOF'
#!/bin/sh
[ "$1" = -p ] && shift 2
shift
exec sh -c "$1"
EOF
chmod +x "$rsh"

# stamp_copy KEY DEST [OPTIONS...]: one `stamp copy --json`, its report kept.
stamp_copy() {
    local key=$1 dest=$2
    shift 2
    run stamp "$key" "$stamp_bin" --store "$src" copy --json "$@" "$dest"
    cp "$workdir/logs/copy-stamp-$key.out" "$workdir/results/copy-stamp-$key.json"
}

for tool in "${tool_list[@]}"; do
    src="$workdir/src-$tool"
    dest="$workdir/dest-$tool"
    dest_rsh="$workdir/dest-$tool-rsh"
    res="$workdir/results/copy-$tool.txt"
    log "[$tool] source: three snapshots, day 0, 1, 2"
    rm -rf "$data" "$src" "$dest" "$dest_rsh" "$workdir/cache-$tool"
    cp -a "$day0" "$data"
    : >"$res"
    case "$tool" in
        stamp) "$stamp_bin" --store "$src" init >/dev/null
               echo "version=git:$(cd "$repo_root" && git rev-parse --short HEAD)${STAMP_BIN:+ (STAMP_BIN=$STAMP_BIN)}" >>"$res" ;;
        restic) restic -r "$src" init >/dev/null 2>&1
                echo "version=$(restic version | cut -d' ' -f2)" >>"$res" ;;
    esac
    for day in 0 1 2; do
        [ "$day" = 0 ] || next_day "$tool" "$day"
        snapshot "$tool" "$day"
    done
    echo "src_bytes=$(store_bytes "$src")" >>"$res"

    log "[$tool] first copy (cold), second copy (nothing new)"
    case "$tool" in
        stamp)
            drop_caches "first copies"
            stamp_copy first "$dest" --init
            echo "first_bytes=$(store_bytes "$dest")" >>"$res"
            stamp_copy second "$dest"
            echo "second_bytes=$(store_bytes "$dest")" >>"$res"
            # The same two copies through the protocol (stamp serve at the far end).
            drop_caches "first copies"
            stamp_copy rsh_first "ssh://bench@localhost/$dest_rsh" --init \
                --rsh "$rsh" --remote-stamp "$stamp_bin"
            echo "rsh_first_bytes=$(store_bytes "$dest_rsh")" >>"$res"
            stamp_copy rsh_second "ssh://bench@localhost/$dest_rsh" \
                --rsh "$rsh" --remote-stamp "$stamp_bin"
            echo "rsh_second_bytes=$(store_bytes "$dest_rsh")" >>"$res" ;;
        restic)
            # restic has no "copy --init": its init is timed on its own.
            run restic init restic -r "$dest" init --from-repo "$src" --copy-chunker-params
            echo "init_bytes=$(store_bytes "$dest")" >>"$res"
            drop_caches "first copies"
            run restic first restic -r "$dest" copy --from-repo "$src"
            echo "first_bytes=$(store_bytes "$dest")" >>"$res"
            run restic second restic -r "$dest" copy --from-repo "$src"
            echo "second_bytes=$(store_bytes "$dest")" >>"$res" ;;
    esac

    # The daily case: the source gets day 3, and the copy follows (warm
    # cache: the snapshot has just read and written it all).
    log "[$tool] day 3, then the daily copy"
    next_day "$tool" 3
    snapshot "$tool" 3
    echo "src_day3_bytes=$(store_bytes "$src")" >>"$res"
    case "$tool" in
        stamp)
            stamp_copy daily "$dest"
            echo "daily_bytes=$(store_bytes "$dest")" >>"$res"
            stamp_copy rsh_daily "ssh://bench@localhost/$dest_rsh" \
                --rsh "$rsh" --remote-stamp "$stamp_bin"
            echo "rsh_daily_bytes=$(store_bytes "$dest_rsh")" >>"$res"
            # Not timed: both copies hold the four snapshots, and the newest
            # reads back whole.
            for d in "$dest" "$dest_rsh"; do
                cmp -s <("$stamp_bin" --store "$src" list --short) \
                       <("$stamp_bin" --store "$d" list --short) ||
                    { echo "bench-copy: $d does not list the source's snapshots" >&2; exit 1; }
                vlog="$workdir/logs/copy-stamp-validate-${d##*/}.out"
                "$stamp_bin" --store "$d" validate --read-data latest >"$vlog" 2>&1 ||
                    { echo "bench-copy: stamp validate --read-data latest failed in $d:" >&2
                      tail -n 20 "$vlog" >&2; exit 1; }
            done
            echo "validated=yes" >>"$res" ;;
        restic)
            run restic daily restic -r "$dest" copy --from-repo "$src"
            echo "daily_bytes=$(store_bytes "$dest")" >>"$res"
            n=$(restic -r "$dest" snapshots --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
            [ "$n" = 4 ] || { echo "bench-copy: restic's copy has $n snapshots, not 4" >&2; exit 1; }
            # Not timed: the structure only (check --read-data would take a minute).
            restic -r "$dest" check >"$workdir/logs/copy-restic-check.out" 2>&1 ||
                { echo "bench-copy: restic check failed in $dest" >&2; exit 1; }
            echo "validated=yes (restic check, without --read-data)" >>"$res" ;;
    esac
    [ "$keep" = 1 ] || rm -rf "$src" "$dest" "$dest_rsh" "$workdir/cache-$tool"
done
[ "$keep" = 1 ] || rm -rf "$data"

PYTHONPATH="$here" python3 - "$workdir" "$tools" "$cold" <<'EOF'
import json, os, platform, sys, time

import benchreport

workdir, tools, cold = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
R = benchreport.load(workdir, "copy-%s", tools)
J = {}
if "stamp" in R:
    for k in ("first", "second", "daily", "rsh_first", "rsh_second", "rsh_daily"):
        J[k] = json.load(open(os.path.join(workdir, "results", "copy-stamp-%s.json" % k)))

def num(t, k):
    return benchreport.number(R, t, k)

def mb(n):
    return "-" if n is None else "%.1f MB" % (n / 1e6)

def secs(n):
    return "-" if n is None else "%.2f" % n

def rss(n):
    return "-" if n is None else "%.0f" % (n / 1024)

def ratio(a, b):
    return None if a is None or not b else a / b

# Columns: (title, tool, key prefix).  stamp over --rsh is its own column.
cols = []
if "stamp" in R:
    cols += [("stamp", "stamp", ""), ("stamp --rsh", "stamp", "rsh_")]
if "restic" in R:
    cols += [("restic", "restic", "")]

def sent(p, step):
    if "stamp" not in R:
        return "-"
    j = J[p + step]
    return "%s (%d objects)" % (mb(j["bytes_sent"]), j["objects_sent"])

rows = [
    ("source: snapshots day 0 / 1 / 2 (s)", lambda t, p: " / ".join(secs(num(t, "snap%d_time" % d)) for d in range(3)) if not p else ""),
    ("source store (3 snapshots)", lambda t, p: mb(num(t, "src_bytes")) if not p else ""),
    ("init DEST (s)", lambda t, p: secs(num(t, "init_time")) if t == "restic" else "in first"),
    ("first copy, cold (s)", lambda t, p: secs(num(t, p + "first_time"))),
    ("  sync after it (s)", lambda t, p: secs(num(t, p + "first_sync"))),
    ("  peak RSS (MiB)", lambda t, p: rss(num(t, p + "first_rss"))),
    ("  DEST after", lambda t, p: mb(num(t, p + "first_bytes"))),
    ("  sent", lambda t, p: sent(p, "first") if t == "stamp" else "-"),
    ("second copy, nothing new (s)", lambda t, p: secs(num(t, p + "second_time"))),
    ("  peak RSS (MiB)", lambda t, p: rss(num(t, p + "second_rss"))),
    ("  DEST after", lambda t, p: mb(num(t, p + "second_bytes"))),
    ("source: day-3 snapshot (s)", lambda t, p: secs(num(t, "snap3_time")) if not p else ""),
    ("daily copy, after day 3 (s)", lambda t, p: secs(num(t, p + "daily_time"))),
    ("  peak RSS (MiB)", lambda t, p: rss(num(t, p + "daily_rss"))),
    ("  DEST after", lambda t, p: mb(num(t, p + "daily_bytes"))),
    ("  added by the daily copy", lambda t, p: mb(num(t, p + "daily_bytes") - num(t, p + "second_bytes"))),
    ("  sent", lambda t, p: sent(p, "daily") if t == "stamp" else "-"),
]
out = ["| | " + " | ".join(c[0] for c in cols) + " |", "|---|" + "---:|" * len(cols)]
for label, get in rows:
    out.append("| %s | %s |" % (label, " | ".join(get(t, p) for _, t, p in cols)))

targets = ["", "| target | measured | |", "|---|---|---|"]
def target(name, r, want, what):
    if r is None:
        return
    targets.append("| %s | %.1fx (%s) | %s |" % (name, r, what, "met" if r >= want else "MISSED"))
if "stamp" in R and "restic" in R:
    target("restic/stamp, first copy >= 3x", ratio(num("restic", "first_time"), num("stamp", "first_time")), 3,
           "%s s vs %s s" % (secs(num("restic", "first_time")), secs(num("stamp", "first_time"))))
for t, p, name in (("stamp", "", "stamp"), ("stamp", "rsh_", "stamp --rsh"), ("restic", "", "restic")):
    if t in R:
        target("%s first/second copy >= 10x" % name, ratio(num(t, p + "first_time"), num(t, p + "second_time")), 10,
               "%s s vs %s s" % (secs(num(t, p + "first_time")), secs(num(t, p + "second_time"))))

notes = []
if "stamp" in R:
    for k, what in (("first", "first copy"), ("rsh_first", "first copy over --rsh"), ("daily", "daily copy")):
        j = J[k]
        done = [s for s in j["snapshots"] if s["result"] == "copied"]
        v = sum(s.get("validate_s", 0) for s in done)
        notes.append("stamp %s: %.2f s in the verb (its --json duration), of which %.2f s validating "
                     "in DEST before each commit (new packs read back and re-hashed, then the "
                     "snapshot's trees and chunk index checked) and %.2f s walking, reading and "
                     "sending; %d snapshot(s) copied" % (what, j["duration_s"], v, j["duration_s"] - v, len(done)))
    notes.append("stamp --rsh/stamp: first copy %.2fx, second %.2fx, daily %.2fx (the protocol's "
                 "cost: both ends in one machine, a stand-in for ssh that only runs the command)"
                 % tuple(ratio(num("stamp", "rsh_" + k + "_time"), num("stamp", k + "_time")) or 0
                         for k in ("first", "second", "daily")))
if "stamp" in R and "restic" in R:
    notes.append("daily copy: restic/stamp = %.1fx; DEST after it: stamp/restic = %.2f"
                 % (ratio(num("restic", "daily_time"), num("stamp", "daily_time")),
                    ratio(num("stamp", "daily_bytes"), num("restic", "daily_bytes"))))
notes.append("page cache dropped before each first copy: %s" %
             ("yes" if cold == "yes" else "NO (not root?): first copies are NOT cold"))
checks = []
if "stamp" in R:
    checks.append("stamp: both copies list the source's 4 snapshots and `stamp validate "
                  "--read-data latest` exits 0 in each")
if "restic" in R:
    checks.append("restic: the copy lists 4 snapshots and `restic check` (without --read-data) "
                  "exits 0")
notes.append("checks, not timed: " + "; ".join(checks))
text = "\n".join(out + targets + [""] + ["- " + n for n in notes])
head = "Measured %s on %s (%d CPUs), %s\n\n" % (
    time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), platform.node(), os.cpu_count(),
    ", ".join("%s %s" % (t, R[t].get("version", "?")) for t in R))
open(os.path.join(workdir, "results-copy.md"), "w").write(head + text + "\n")
print(head + text)
EOF

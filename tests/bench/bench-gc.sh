#!/usr/bin/env bash
# gc benchmark: three snapshots of the benchmark dataset (day 0, 1, 2),
# then the oldest is dropped and its space reclaimed, with stamp (forget +
# gc), restic (forget --prune) and borg (prune + compact). See README.md.
#
#   bench-gc.sh [--workdir DIR] [--tools stamp,restic,borg] [--scale F]
#               [--keep]
#
# Results: a table on stdout and WORKDIR/results-gc.md; raw figures in
# WORKDIR/results/gc-TOOL.txt, tool output in WORKDIR/logs/gc-*.
set -euo pipefail

. "$(dirname "$0")/lib.sh"
workdir=/tmp/stampfs-bench-gc
tools=stamp,restic,borg
scale=1
keep=0

parse_options "workdir tools scale keep" "$@"
parse_tools stamp restic borg

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
if has_tool borg; then need borg borgbackup; fi
install_missing

data="$workdir/data"
export_tool_secrets
export RESTIC_CACHE_DIR="$workdir/cache-restic"
export BORG_BASE_DIR="$workdir/cache-borg"

# run TOOL KEY CMD...: runs CMD under /usr/bin/time, records KEY_time and
# KEY_rss (KiB) in the tool's result file; stops the benchmark on failure.
run() {
    run_timed "$@"
    printf '%s_time=%s\n%s_rss=%s\n' "$2" "$run_time" "$2" "$run_rss" >>"$res"
    log "$1 $2: $run_time s, peak RSS $run_rss KiB"
}

snapshot() { # TOOL DAY
    case "$1" in
        stamp) run stamp "snap$2" "$stamp_bin" --store "$store" -q snapshot "$data" ;;
        restic) run restic "snap$2" restic -r "$store" backup --quiet "$data" ;;
        borg) run borg "snap$2" borg create --compression zstd,3 "$store::day$2" "$data" ;;
    esac
}

for tool in "${tool_list[@]}"; do
    store="$workdir/store-$tool"
    res="$workdir/results/gc-$tool.txt"
    log "[$tool] three snapshots: day 0, 1, 2"
    rm -rf "$data" "$store" "$workdir/cache-$tool"
    cp -a "$day0" "$data"
    : >"$res"
    case "$tool" in
        stamp) "$stamp_bin" --store "$store" init >/dev/null
               echo "version=git:$(cd "$repo_root" && git rev-parse --short HEAD)" >>"$res" ;;
        restic) restic -r "$store" init >/dev/null 2>&1
                echo "version=$(restic version | cut -d' ' -f2)" >>"$res" ;;
        borg) borg init -e none "$store" >/dev/null 2>&1
              echo "version=$(borg --version | cut -d' ' -f2)" >>"$res" ;;
    esac
    for day in 0 1 2; do
        if [ "$day" != 0 ]; then
            python3 "$here/make-dataset.py" --scale "$scale" --next-day "$data" \
                >"$workdir/logs/gc-$tool-next-day$day.log"
        fi
        snapshot "$tool" "$day"
    done
    echo "before_bytes=$(store_bytes "$store")" >>"$res"
    if [ "$tool" = stamp ]; then
        run stamp stats "$stamp_bin" --store "$store" stats --json
        cp "$workdir/logs/gc-stamp-stats.out" "$workdir/results/gc-stamp-stats.json"
    fi
    # The changes between the two newest snapshots (day 1 -> day 2), each tool's diff.
    case "$tool" in
        stamp) mapfile -t two < <("$stamp_bin" --store "$store" list --short | tail -n 2)
               run stamp diff "$stamp_bin" --store "$store" diff "${two[0]}" "${two[1]}" ;;
        restic) mapfile -t two < <(restic -r "$store" snapshots --json |
                    python3 -c 'import json,sys; [print(s["short_id"]) for s in json.load(sys.stdin)[-2:]]')
                run restic diff restic -r "$store" diff "${two[0]}" "${two[1]}" ;;
        borg) run borg diff borg diff "$store::day1" day2 ;;
    esac
    echo "diff_lines=$(wc -l <"$workdir/logs/gc-$tool-diff.out")" >>"$res"

    # Drop the oldest snapshot and reclaim its space, each tool's own way.
    sync
    case "$tool" in
        stamp)
            oldest=$("$stamp_bin" --store "$store" list --short | head -n 1)
            t0=$EPOCHREALTIME
            run stamp forget "$stamp_bin" --store "$store" -q forget "$oldest"
            run stamp gc "$stamp_bin" --store "$store" --json gc
            t1=$EPOCHREALTIME ;;
        restic)
            t0=$EPOCHREALTIME
            run restic prune restic -r "$store" forget --keep-last 2 --prune
            t1=$EPOCHREALTIME ;;
        borg)
            t0=$EPOCHREALTIME
            run borg prune borg prune --keep-last 2 "$store"
            run borg compact borg compact "$store"
            t1=$EPOCHREALTIME ;;
    esac
    python3 -c 'import sys; print("reclaim_time=%.2f" % (float(sys.argv[2]) - float(sys.argv[1])))' \
        "$t0" "$t1" >>"$res"
    echo "after_bytes=$(store_bytes "$store")" >>"$res"
    if [ "$tool" = stamp ]; then
        cp "$workdir/logs/gc-stamp-gc.out" "$workdir/results/gc-stamp-gc.json"
        run stamp stats-after "$stamp_bin" --store "$store" stats --json
        # The two snapshots left must be intact: every object they reach is
        # indexed, and the newest reads back equal to the data it was taken of.
        python3 - "$workdir/logs/gc-stamp-stats-after.out" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
if s["snapshots"] != 2 or s["missing_objects"] != 0:
    sys.exit("bench-gc: stamp store damaged after gc: %r" % s)
EOF
        newest=$("$stamp_bin" --store "$store" list --short | tail -n 1)
        "$stamp_bin" --store "$store" cat "$newest" db/app.db | cmp - "$data/db/app.db" ||
            { echo "bench-gc: db/app.db of the newest snapshot differs" >&2; exit 1; }
    fi
    [ "$keep" = 1 ] || rm -rf "$store" "$workdir/cache-$tool"
done
[ "$keep" = 1 ] || rm -rf "$data"

PYTHONPATH="$here" python3 - "$workdir" "$tools" <<'EOF'
import json, os, platform, sys, time

import benchreport

workdir, tools = sys.argv[1], sys.argv[2].split(",")
R = benchreport.load(workdir, "gc-%s", tools)

def num(t, k):
    return benchreport.number(R, t, k)

def mb(n):
    return "-" if n is None else "%.1f MB" % (n / 1e6)

def secs(n):
    return "-" if n is None else "%.2f" % n

cols = [t for t in ("stamp", "restic", "borg") if t in R]
rows = [
    ("snapshots day 0 / 1 / 2 (s)", lambda t: " / ".join(secs(num(t, "snap%d_time" % d)) for d in range(3))),
    ("store before (3 snapshots)", lambda t: mb(num(t, "before_bytes"))),
    ("drop the oldest and reclaim (s)", lambda t: secs(num(t, "reclaim_time"))),
    ("  of which gc / prune / compact (s)", lambda t: secs(num(t, {"stamp": "gc_time", "restic": "prune_time", "borg": "compact_time"}[t]))),
    ("peak RSS of reclaiming (MiB)", lambda t: "%.0f" % (max(num(t, k) or 0 for k in ("gc_rss", "prune_rss", "compact_rss")) / 1024)),
    ("diff of the two newest (s)", lambda t: secs(num(t, "diff_time"))),
    ("  lines it printed", lambda t: "%d" % (num(t, "diff_lines") or 0)),
    ("store after", lambda t: mb(num(t, "after_bytes"))),
    ("freed", lambda t: mb(num(t, "before_bytes") - num(t, "after_bytes"))),
]
out = ["| | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
for label, get in rows:
    out.append("| %s | %s |" % (label, " | ".join(get(t) for t in cols)))
notes = []
if "stamp" in R:
    st = json.load(open(os.path.join(workdir, "results", "gc-stamp-stats.json")))
    gc = json.load(open(os.path.join(workdir, "results", "gc-stamp-gc.json")))
    oldest = st["per_snapshot"][0]
    notes.append("stamp stats on 3 snapshots: %s s (peak RSS %.0f MiB); it said the oldest alone "
                 "held %s; gc freed %s (%d packs deleted, %d rewritten into %d, %d objects "
                 "copied; %d unreferenced objects left in packs under 10%% unused)"
                 % (secs(num("stamp", "stats_time")), num("stamp", "stats_rss") / 1024,
                    mb(oldest["exclusive_bytes"]), mb(gc["bytes_freed"]), gc["packs_deleted"],
                    gc["packs_rewritten"], gc["packs_written"], gc["objects_copied"],
                    gc["candidates"] - gc["dead_objects"]))
if "stamp" in R and "restic" in R:
    notes.append("reclaim: restic/stamp = %.1fx; store after: stamp/restic = %.2f"
                 % (num("restic", "reclaim_time") / num("stamp", "reclaim_time"),
                    num("stamp", "after_bytes") / num("restic", "after_bytes")))
text = "\n".join(out + [""] + ["- " + n for n in notes])
head = "Measured %s on %s (%d CPUs), %s\n\n" % (
    time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), platform.node(), os.cpu_count(),
    ", ".join("%s %s" % (t, R[t].get("version", "?")) for t in cols))
open(os.path.join(workdir, "results-gc.md"), "w").write(head + text + "\n")
print(head + text)
EOF

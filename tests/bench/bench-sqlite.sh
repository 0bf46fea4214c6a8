#!/usr/bin/env bash
# SQLite capture benchmark: the next-day snapshot with --sqlite=auto (read
# through SQLite's backup API) against --sqlite=copy (plain bytes), on the
# benchmark dataset of bench-snapshot.sh (see README.md in this directory).
#
#   bench-sqlite.sh [--workdir DIR] [--repeat N] [--scale F]
#
# Each run: a fresh copy of day 0, one store per scope and mode, a day-0
# snapshot, make-dataset.py --next-day, then the timed day-1 snapshot.
# Scopes: "database" snapshots db/ (app.db, 253 MB, WAL mode, checkpointed
# as make-dataset.py leaves it: auto mode streams the file as it is),
# "database-live" the same after one more commit left in app.db-wal (as a
# running service leaves it: auto mode copies through the backup API; copy
# mode stores app.db and its -wal), "dataset" the whole ~1 GB tree (app.db
# and the rollback-journal chroma.sqlite3 among 32,000 files). Results: a
# table on stdout and WORKDIR/results-sqlite.md; raw figures in
# WORKDIR/results/sqlite.txt.
set -euo pipefail

. "$(dirname "$0")/lib.sh"
workdir=/tmp/stampfs-bench-live
repeat=3
scale=1

parse_options "workdir repeat scale" "$@"

mkdir -p "$workdir/logs" "$workdir/results"
workdir=$(cd "$workdir" && pwd)

# The dataset, built (or reused) by bench-snapshot.sh in the same workdir.
build_dataset
[ -x /usr/bin/time ] || missing+=(time)
install_missing

if [ -z "${STAMP_BIN:-}" ]; then
    log "building stamp"
    "$repo_root/contrib/install-deps.sh"
    build_stamp
fi

data="$workdir/data"
res="$workdir/results/sqlite.txt"
{
    echo "version=git:$(cd "$repo_root" && git rev-parse --short HEAD 2>/dev/null || echo none)"
    echo "repeat=$repeat"
} >"$res"

src_of() { if [ "$1" = dataset ]; then echo "$data"; else echo "$data/db"; fi; }
scopes="database database-live dataset"
store_of() { echo "$workdir/store-sqlite-$1-$2"; }

# snap SCOPE MODE KEY: one snapshot; figures appended to the result file.
snap() {
    local scope=$1 mode=$2 key=$3 store tf line rc=0
    store=$(store_of "$scope" "$mode")
    tf="$workdir/logs/sqlite-$scope-$mode-$key.time"
    /usr/bin/time -f '%e %M' -o "$tf" "$stamp_bin" --store "$store" --json -q snapshot \
        --sqlite="$mode" "$(src_of "$scope")" >"$workdir/logs/sqlite-$scope-$mode-$key.json" \
        2>"$workdir/logs/sqlite-$scope-$mode-$key.err" || rc=$?
    if [ "$rc" != 0 ]; then
        echo "bench-sqlite: $scope/$mode snapshot '$key' exited $rc:" >&2
        tail -n 20 "$workdir/logs/sqlite-$scope-$mode-$key.err" >&2
        exit 1
    fi
    # The database is at rest here (no process has it open): drop the empty
    # -wal and -shm that auto mode's read-only open created, so that a copy
    # snapshot after it does not store them (a live service's would exist
    # for both modes).
    if [ "$mode" = auto ] && [ ! -s "$data/db/app.db-wal" ]; then
        rm -f "$data/db/app.db-wal" "$data/db/app.db-shm"
    fi
    line=$(tail -n 1 "$tf")
    python3 - "$workdir/logs/sqlite-$scope-$mode-$key.json" "$scope" "$mode" "$key" "$line" \
        >>"$res" <<'EOF'
import json, sys
path, scope, mode, key, line = sys.argv[1:]
r = json.load(open(path))
t, rss = line.split()
print("%s %s %s time=%s rss=%s new_bytes=%d stored_new_bytes=%d captured=%d" % (
    scope, mode, key, t, rss, r["new_bytes"], r["stored_new_bytes"], r.get("sqlite_count", 0)))
EOF
    log "$scope/$mode $key: $(tail -n 1 "$res" | cut -d' ' -f4-)"
}

for run in $(seq "$repeat"); do
    # Alternate which mode goes first, so neither always gets the warmer cache.
    if [ $((run % 2)) = 1 ]; then modes="copy auto"; else modes="auto copy"; fi
    log "run $run of $repeat: resetting the data to day 0"
    rm -rf "$data"
    cp -a "$day0" "$data"
    # One secret for all stores (copies of one empty store): the gear table,
    # and so every chunk boundary, is keyed by it, and two secrets would make
    # the modes' figures differ by chance by a few chunks.
    rm -rf "$workdir/store-sqlite-empty"
    "$stamp_bin" --store "$workdir/store-sqlite-empty" init >/dev/null
    for scope in $scopes; do
        for mode in $modes; do
            rm -rf "$(store_of $scope $mode)"
            cp -a "$workdir/store-sqlite-empty" "$(store_of $scope $mode)"
        done
    done
    # Past the files cache's two "racy" seconds after the copy.
    sleep 3
    for scope in $scopes; do
        for mode in $modes; do snap "$scope" "$mode" "day0-$run"; done
    done
    python3 "$here/make-dataset.py" --scale "$scale" --next-day "$data" \
        >"$workdir/logs/sqlite-next-day-$run.log"
    for scope in database dataset; do
        for mode in $modes; do snap "$scope" "$mode" "day1-$run"; done
    done
    # One commit more, left in the -wal as by a service that is running.
    python3 -c 'import os, sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA wal_autocheckpoint=0")
c.execute("UPDATE documents SET updated_at = updated_at + 1 WHERE id = 1")
os._exit(0)' "$data/db/app.db"
    for mode in $modes; do snap database-live "$mode" "day1-$run"; done
done
rm -rf "$data" "$workdir/store-sqlite-empty"
for scope in $scopes; do
    for mode in copy auto; do rm -rf "$(store_of $scope $mode)"; done
done

python3 - "$res" "$workdir/results-sqlite.md" <<'EOF'
import platform, os, statistics, sys, time
res, md_path = sys.argv[1:]
rows = {}
version = "?"
for line in open(res):
    line = line.strip()
    if line.startswith("version="):
        version = line.split("=", 1)[1]
    if "=" not in line.split()[0]:
        scope, mode, key, *kv = line.split()
        rows.setdefault((scope, mode, key.split("-")[0]), []).append(
            dict(x.split("=") for x in kv))


def fig(scope, mode, field, day="day1"):
    return [float(r[field]) for r in rows[(scope, mode, day)]]


out = ["| scope | mode | next-day time, median (min-max) s | new bytes | stored bytes | peak RSS MiB | databases captured |",
       "|---|---|---:|---:|---:|---:|---:|"]
ratios = []
for scope in ("database", "database-live", "dataset"):
    med = {}
    for mode in ("copy", "auto"):
        t = fig(scope, mode, "time")
        nb, sb = fig(scope, mode, "new_bytes"), fig(scope, mode, "stored_new_bytes")
        rss = fig(scope, mode, "rss")
        med[mode] = (statistics.median(t), statistics.median(nb), statistics.median(sb))
        out.append("| %s | %s | %.2f (%.2f-%.2f) | %.1f MB | %.1f MB | %.0f | %d |" % (
            scope, mode, statistics.median(t), min(t), max(t), statistics.median(nb) / 1e6,
            statistics.median(sb) / 1e6, max(rss) / 1024, int(fig(scope, mode, "captured")[0])))
    ratios.append("%s: auto/copy time %.2fx (target <= 1.5x), new bytes %.3fx, stored bytes %.3fx (target <= 1.2x)" % (
        scope, med["auto"][0] / med["copy"][0], med["auto"][1] / med["copy"][1],
        med["auto"][2] / med["copy"][2]))
text = "\n".join(out + [""] + ratios)
print()
print(text)
with open(md_path, "w") as f:
    f.write("# stampfs SQLite capture benchmark\n\n- date: %s\n- machine: %s, %d CPUs\n- stamp %s\n\n%s\n" % (
        time.strftime("%Y-%m-%d %H:%M:%S %Z"), platform.platform(), os.cpu_count(), version, text))
print("\nwritten to %s" % md_path)
EOF

#!/usr/bin/env bash
# Restore benchmark: `stamp restore` and `stamp verify --read-data` against
# restic and borg, on the same three snapshots (day 0, day 0 again, day 1)
# of the bench dataset (see README.md here).
#
#   bench-restore.sh [--keep] [--workdir DIR] [--tools stamp,restic,borg]
#                    [--scale F]
#
# Restores day 1 into an empty directory and into a copy of day 0's data,
# checks every restored tree against DIR/data, then checks each whole store
# reading all its data.  Stores: DIR/store-TOOL, reused when bench-snapshot.sh
# --keep, bench-mount.sh --keep or this script with --keep left a complete
# one, else built the way bench-snapshot.sh builds them.  Results: a table on
# stdout and DIR/results-restore.md; raw figures in DIR/results/restore-*.txt,
# logs in DIR/logs/restore-*.
set -euo pipefail
export LC_ALL=C   # decimal points in $EPOCHREALTIME, sort order of manifests

. "$(dirname "$0")/lib.sh"
manifest_py="$repo_root/tests/integration/lib/manifest.py"
workdir=/tmp/stampfs-bench
tools=stamp,restic,borg
keep=0
# Smaller datasets (--scale) are for checking the script, not for figures.
scale=1

parse_options "keep workdir tools scale" "$@"
parse_tools stamp restic borg

mkdir -p "$workdir"
workdir=$(cd "$workdir" && pwd)

# --- dependencies ------------------------------------------------------------
need python3 python3
[ -x /usr/bin/time ] || missing+=(time)
if has_tool restic; then need restic restic; fi
if has_tool borg; then need borg borgbackup; fi
install_missing
if has_tool stamp && [ -z "${STAMP_BIN:-}" ]; then
    "$repo_root/contrib/install-deps.sh"
fi

# --- dataset (built once, cached, by bench-snapshot.sh) ----------------------
build_dataset

# --- stamp build -------------------------------------------------------------
# STAMP_BIN picks a ready binary and skips the build.
if has_tool stamp; then
    if [ -z "${STAMP_BIN:-}" ]; then
        log "building stamp"
        build_stamp
    fi
    [ -x "$stamp_bin" ] || die "$stamp_bin not built"
fi

# --- common ------------------------------------------------------------------
data="$workdir/data"        # the path every store was snapshotted from
mkdir -p "$workdir/logs" "$workdir/results"

export_tool_secrets

# Where each tool restores to: emptied or refilled before every step.
target_of() { echo "$workdir/restore-$1"; }
# The stamp store the pre-restore snapshot is written to: a copy, so that
# the real store keeps exactly its three snapshots (see below).
prestore_of() { echo "$workdir/store-stamp.prerestore"; }
# Written next to a store this script used, when --keep; see store_reusable.
marker_of() { echo "$workdir/store-$1.restore-ok"; }
# manifest.py of DIR/data right after the store's day-1 snapshot, written
# when this script builds the store: the exact tree that snapshot holds.
# DIR/data alone is not: --next-day gives the files it changes the current
# time as mtime, so each build's day 1 has its own mtimes, and DIR/data is
# the day 1 of whichever store was built last.  Every manifest here is taken
# with --sqlite-masked: `stamp snapshot` copies a rollback-journal database
# through SQLite's backup API, which rewrites three header counters and
# nothing else.  (The name changed with that, so that a kept store's older,
# unmasked manifest is not taken for one.)
refman_of() { echo "$workdir/store-$1.day1.masked.manifest"; }

# Exit codes that still mean "restored": stamp 1 and borg 1 are warnings.
# restic restore has no such code.
ok_restore_rc() {
    case "$1:$2" in
        *:0|stamp:1|borg:1) return 0 ;;
        *) return 1 ;;
    esac
}

# --- stores ------------------------------------------------------------------
# A store is reused (store_reusable, lib.sh) when a record of a complete
# run sits next to it: this script's marker, bench-mount.sh's marker, or
# bench-snapshot.sh's results/TOOL.txt.
store_records() {  # tool
    printf '%s\n' "$(marker_of "$1")" "$workdir/store-$1.mount-ok" "$workdir/results/$1.txt"
}

# The same three snapshots as bench-snapshot.sh (build_store, lib.sh), and
# the manifest of the day-1 data they leave.
make_store() {  # tool
    local tool=$1
    build_store "$tool" "$(marker_of "$tool")" "$(refman_of "$tool")"
    python3 "$manifest_py" --ignore-root-times --sqlite-masked "$data" >"$(refman_of "$tool").tmp" ||
        die "manifest.py failed on $data"
    mv "$(refman_of "$tool").tmp" "$(refman_of "$tool")"
}

built=()            # stores this run built (removed at exit unless --keep)
keep_evidence=0     # set when stamp restored a wrong tree: keep everything

# borg check rewrites the repository's config file with the same bytes.
# Put its mtime back, so the records of bench-snapshot.sh and bench-mount.sh
# (and this script's) still cover the store.
borg_config_saved="$workdir/logs/restore-borg-config.saved"
rm -f "$borg_config_saved"
borg_config_mtime() {
    local conf
    conf="$(store_of borg)/config"
    if [ -f "$borg_config_saved" ] && [ -f "$conf" ] &&
       cmp -s "$conf" "$borg_config_saved"; then
        touch -r "$borg_config_saved" "$conf"
    fi
}

cleanup() {
    local rc=$? t
    trap - EXIT INT TERM
    borg_config_mtime
    if [ "$keep_evidence" = 1 ]; then
        warn "left the stores, $data and the restore targets in $workdir for inspection"
        exit "$rc"
    fi
    for t in stamp restic borg; do
        rm -rf "$(target_of "$t")"
    done
    rm -rf "$(prestore_of)"
    if [ "$keep" = 0 ]; then
        for t in ${built[@]+"${built[@]}"}; do
            rm -rf "$(store_of "$t")" "$(cache_of "$t")" "$(refman_of "$t")"
        done
        # DIR/data is this run's own only when no store was reused.
        if [ "${#built[@]}" = "${#tool_list[@]}" ]; then
            rm -rf "$data"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

reuse_or_build_stores
data_at_day1
day1_bytes=$(du -sb "$data" | cut -f1)
day1_files=$(find "$data" -type f | wc -l)
day0_bytes=$(du -sb "$day0" | cut -f1)
day0_files=$(find "$day0" -type f | wc -l)
log "day-1 data: $day1_files files, $day1_bytes bytes (day 0: $day0_files files, $day0_bytes bytes)"

# The reference each restored tree is compared with.  Exact: the store's
# own day-1 manifest (see refman_of), valid while no file of the store is
# newer.  Otherwise (a store built by bench-snapshot.sh or bench-mount.sh)
# DIR/data's manifest, and the mtimes of the paths day 1 changed can only
# be checked to differ from day 0's (check_tree).
declare -A ref_of=() ref_kind=()
rm -f "$workdir/logs/restore-data.manifest"   # from an earlier run
for tool in "${tool_list[@]}"; do
    rm_ref=$(refman_of "$tool")
    if [ -f "$rm_ref" ] &&
       [ -z "$(find "$(store_of "$tool")" -type f -newer "$rm_ref" -print -quit)" ]; then
        ref_of[$tool]=$rm_ref
        ref_kind[$tool]=exact
    else
        ref_of[$tool]="$workdir/logs/restore-data.manifest"
        ref_kind[$tool]=data
        if [ ! -f "$workdir/logs/restore-data.manifest" ]; then
            log "manifest of $data (the reference for stores built elsewhere)"
            python3 "$manifest_py" --ignore-root-times --sqlite-masked "$data" \
                >"$workdir/logs/restore-data.manifest" ||
                die "manifest.py failed on $data"
        fi
        warn "$tool: no day-1 manifest of its own for $(store_of "$tool") (built by" \
             "another script): the mtimes of the paths day 1 changed are only checked" \
             "to differ from day 0's"
    fi
done

# The day-1 snapshot in each store, and where the restored copy of DIR/data
# lands inside the target.  stamp's snapshot root is the source directory
# itself; restic and borg keep the full source path (borg without its
# leading slash, relative to the directory it extracts in).
day1_stamp=""
if has_tool stamp; then
    mapfile -t stamps < <("$stamp_bin" --store "$(store_of stamp)" list --short)
    [ "${#stamps[@]}" = 3 ] ||
        die "stamp: expected 3 snapshots (day 0, day 0 again, day 1) in $(store_of stamp), found ${#stamps[@]}: ${stamps[*]}"
    day1_stamp=${stamps[2]}
fi
restored_root() {  # tool
    case "$1" in
        stamp) target_of stamp ;;
        restic|borg) echo "$(target_of "$1")$data" ;;
    esac
}

# --- measuring ---------------------------------------------------------------
# Runs "$@" in directory CWD under /usr/bin/time (peak RSS of the tool's
# process) and $EPOCHREALTIME (wall time); sets run_s, run_rss, run_rc.
timed() {  # tool key cwd cmd...
    local tool=$1 key=$2 cwd=$3 t0 t1 line
    shift 3
    local base="$workdir/logs/restore-$tool-$key"
    run_rc=0
    t0=$EPOCHREALTIME
    (cd "$cwd" && exec /usr/bin/time -f '%e %M' -o "$base.time" "$@") \
        >"$base.out" 2>"$base.err" || run_rc=$?
    t1=$EPOCHREALTIME
    run_s=$(elapsed "$t0" "$t1")
    # /usr/bin/time prefixes a line when the command exits non-zero.
    line=$(tail -n 1 "$base.time")
    run_rss=${line#* }
}

# Seconds that a `sync` right after a restore takes: the writeback the tool
# left to the kernel (stamp calls syncfs before it exits; restic and borg
# do not).  Reported beside the times, not added to them.
time_sync() {
    local t0 t1
    t0=$EPOCHREALTIME
    sync
    t1=$EPOCHREALTIME
    sync_s=$(elapsed "$t0" "$t1")
}

# Compares a restored tree with the tool's reference (ref_of).  Sets
# check_summary (one line for the table), check_ok (identical: yes/no),
# check_content_ok (every day-1 file there with the same type, size,
# content and link target; entries in excess do not count) and check_extra
# (entries the tree has that day 1 has not); writes the tree's manifest and
# a diff to logs/.  With a "data" reference, an mtime that differs from
# DIR/data's on a path day 1 changed counts as long as it differs from
# day 0's too (it is another build's day 1).
check_tree() {  # tool key dir
    local tool=$1 key=$2 dir=$3 base rc=0 out
    base="$workdir/logs/restore-$tool-$key"
    python3 "$manifest_py" --ignore-root-times --sqlite-masked "$dir" >"$base.manifest" || rc=$?
    [ "$rc" = 0 ] || warn "$tool $key: manifest.py exited $rc on $dir (error= fields in $base.manifest)"
    out=$(python3 - "${ref_of[$tool]}" "$base.manifest" "$base.diff" \
              "${ref_kind[$tool]}" "$day0" <<'EOF'
import os
import re
import sys

ref_path, got_path, diff_path, kind, day0 = sys.argv[1:]
CONTENT = ("type", "size", "sha256", "target", "error")


def load(path):
    m = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split(" ")
            d = {"type": parts[1]}
            xattrs = []
            for p in parts[2:]:
                k, _, v = p.partition("=")
                if k == "xattr":
                    xattrs.append(v)
                else:
                    d[k] = v
            d["xattr"] = " ".join(xattrs)
            m[parts[0]] = (d, line)
    return m


def unesc(p):
    """manifest.py's escaped path -> bytes."""
    return re.sub(rb"\\(\\|x[0-9a-f]{2})",
                  lambda m: b"\\" if m.group(1) == b"\\" else bytes([int(m.group(1)[1:], 16)]),
                  p.encode("ascii"))


def day0_mtime(p):
    if p == ".":
        return None
    try:
        return str(os.lstat(os.path.join(os.fsencode(day0), unesc(p))).st_mtime_ns)
    except FileNotFoundError:
        return None


ref, got = load(ref_path), load(got_path)
missing = sorted(set(ref) - set(got))
extra = sorted(set(got) - set(ref))
content, meta_fields, meta_n, loose_n = [], {}, 0, 0
for p in sorted(set(ref) & set(got)):
    a, b = ref[p][0], got[p][0]
    if any(a.get(k) != b.get(k) for k in CONTENT):
        content.append(p)
        continue
    fields = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if kind == "data" and "mtime" in fields:
        m0 = day0_mtime(p)
        if m0 != a.get("mtime"):            # a path day 1 changed
            if b.get("mtime") != m0:        # restored: not day 0's mtime
                fields.remove("mtime")
                loose_n += 1
            else:
                fields[fields.index("mtime")] = "mtime (day 0's)"
    if fields:
        meta_n += 1
        for k in fields:
            meta_fields[k] = meta_fields.get(k, 0) + 1

with open(diff_path, "w") as f:
    for p in missing:
        f.write("missing: " + ref[p][1])
    for p in extra:
        f.write("extra:   " + got[p][1])
    for p in sorted(set(ref) & set(got)):
        if ref[p][1] != got[p][1]:
            f.write("want:    " + ref[p][1])
            f.write("got:     " + got[p][1])

parts = []
if missing:
    parts.append("%d missing" % len(missing))
if content:
    parts.append("%d differ in content" % len(content))
if extra:
    parts.append("%d extra" % len(extra))
if meta_n:
    parts.append("metadata differs on %d (%s)" % (
        meta_n, ", ".join("%s %d" % kv for kv in sorted(meta_fields.items()))))
ok = not (missing or extra or content or meta_n)
if ok:
    summary = "identical"
elif not (missing or content):
    summary = "content identical; " + "; ".join(parts)
else:
    summary = "CONTENT DIFFERS: " + "; ".join(parts)
if loose_n:
    summary += " (%d day-1 mtimes from another build)" % loose_n
print("check_ok=%s" % ("yes" if ok else "no"))
print("check_content_ok=%s" % ("no" if missing or content else "yes"))
print("check_extra=%d" % len(extra))
print("check_loose=%d" % loose_n)
print("check_summary=%s" % summary)
EOF
)
    check_ok=$(sed -n 's/^check_ok=//p' <<<"$out")
    check_content_ok=$(sed -n 's/^check_content_ok=//p' <<<"$out")
    check_extra=$(sed -n 's/^check_extra=//p' <<<"$out")
    check_loose=$(sed -n 's/^check_loose=//p' <<<"$out")
    check_summary=$(sed -n 's/^check_summary=//p' <<<"$out")
    [ -n "$check_ok" ] || die "$tool $key: comparing manifests failed"
    [ "$rc" = 0 ] || { check_ok=no; check_summary="$check_summary; manifest.py exit $rc"; }
}

# stamp must restore day 1 exactly.  Anything else stops the run, keeps the
# evidence and says how to see it again.
stamp_wrong() {  # key how-the-target-was-prepared command...
    local key=$1 prep=$2 base
    shift 2
    base="$workdir/logs/restore-stamp-$key"
    keep_evidence=1
    {
        echo
        echo "bench-restore: ********************************************************"
        echo "bench-restore: stamp restore ($key) did NOT give day 1's tree: $check_summary"
        echo "bench-restore: first differences (all: $base.diff):"
        head -n 20 "$base.diff" | sed 's/^/    /'
        echo "bench-restore: to reproduce:"
        echo "    $prep"
        echo "    $*"
        echo "    python3 $manifest_py --ignore-root-times --sqlite-masked $(target_of stamp) | diff ${ref_of[stamp]} -"
        echo "bench-restore: ********************************************************"
    } >&2
    exit 1
}

# Regular files with their inode and ctime: a file the restore neither
# replaced nor wrote to, nor changed the metadata of, keeps both.
file_ids() {  # dir
    (cd "$1" && find . -type f -printf '%P %i %C@\n' | sort)
}

# Store files whose size or mtime changed while the tool only read: other
# scripts' records would no longer cover the store.
store_listing() {  # store out
    (cd "$1" && find . -type f -printf '%P %s %T@\n' | sort) >"$2"
}

# The steps below work on the current tool: $tool, $store, $target, $root
# and $res are set by the loop.

# Sets cmd=(...) and cwd for restoring day 1 into the target.
restore_cmd() {  # [pre]
    cwd=$workdir
    case "$tool" in
        stamp)
            if [ "${1:-}" = pre ]; then
                cmd=("$stamp_bin" --store "$(prestore_of)" restore "$day1_stamp" "$target"
                     --confirm-service-stopped -q)
            else
                cmd=("$stamp_bin" --store "$store" restore "$day1_stamp" "$target"
                     --confirm-service-stopped --no-pre-snapshot -q)
            fi ;;
        restic) cmd=(restic -r "$store" restore latest --target "$target") ;;
        borg) cmd=(borg extract "$store::day1"); cwd=$target ;;
    esac
}

# One timed restore and its check.  prep: "empty" or "prevday".
restore_step() {  # key prep [pre]
    local key=$1 prep=$2 prep_txt
    rm -rf "$target"
    if [ "$prep" = empty ]; then
        mkdir -p "$target"
        prep_txt="rm -rf $target && mkdir $target"
    else
        mkdir -p "$(dirname "$root")"
        cp -a "$day0" "$root"
        prep_txt="rm -rf $target && mkdir -p $(dirname "$root") && cp -a $day0 $root"
    fi
    [ "${3:-}" != pre ] || prep_txt="cp -a $store $(prestore_of) && $prep_txt"
    restore_cmd "${3:-}"
    [ "$prep" = empty ] || file_ids "$root" >"$workdir/logs/restore-$tool-$key.ids-before"
    drop_caches "cold figures"
    timed "$tool" "$key" "$cwd" "${cmd[@]}"
    time_sync
    if ! ok_restore_rc "$tool" "$run_rc"; then
        [ "$tool" != stamp ] || keep_evidence=1
        echo "bench-restore: $tool restore '$key' failed (exit $run_rc); last lines of" \
             "$workdir/logs/restore-$tool-$key.err:" >&2
        tail -n 20 "$workdir/logs/restore-$tool-$key.err" >&2
        [ "$tool" != stamp ] ||
            printf 'bench-restore: to reproduce:\n    %s\n    (cd %s && %s)\n' \
                "$prep_txt" "$cwd" "${cmd[*]}" >&2
        exit 1
    fi
    [ "$run_rc" = 0 ] || warn "$tool restore $key exited $run_rc (warnings)"
    log "$tool $key: $run_s s, peak RSS $run_rss KiB; sync after it $sync_s s"
    {
        echo "${key}_time=$run_s"
        echo "${key}_rss=$run_rss"
        echo "${key}_rc=$run_rc"
        echo "${key}_sync_time=$sync_s"
    } >>"$res"
    [ -d "$root" ] || die "$tool $key: $root does not exist after the restore"
    if [ "$prep" != empty ]; then
        file_ids "$root" >"$workdir/logs/restore-$tool-$key.ids-after"
        untouched=$(comm -12 "$workdir/logs/restore-$tool-$key.ids-before" \
                        "$workdir/logs/restore-$tool-$key.ids-after" | wc -l)
        echo "${key}_untouched=$untouched" >>"$res"
        log "$tool $key: $untouched of the $day0_files day-0 files left untouched"
    fi
    check_tree "$tool" "$key" "$root"
    log "$tool $key: restored tree vs day 1: $check_summary"
    {
        echo "${key}_check=$check_summary"
        echo "${key}_check_ok=$check_ok"
        echo "${key}_check_content_ok=$check_content_ok"
        echo "${key}_check_extra=$check_extra"
        echo "${key}_check_loose_mtimes=$check_loose"
        echo "${key}_check_ref=${ref_kind[$tool]}"
    } >>"$res"
    if [ "$tool" = stamp ] && [ "$check_ok" != yes ]; then
        stamp_wrong "$key" "$prep_txt" "(cd $cwd && ${cmd[*]})"
    fi
    if [ "$check_content_ok" != yes ]; then
        warn "$tool $key: the restored tree's CONTENT differs from day 1 (see $workdir/logs/restore-$tool-$key.diff)"
    fi
}

# --- the runs ----------------------------------------------------------------
for tool in "${tool_list[@]}"; do
    tool_env "$tool"
    store=$(store_of "$tool")
    target=$(target_of "$tool")
    root=$(restored_root "$tool")
    res="$workdir/results/restore-$tool.txt"
    {
        echo "version=$(tool_version "$tool")"
        echo "store=${store_origin[$tool]}"
        if [ "$tool" = stamp ]; then
            echo "init_opts=${store_init_opts:-}"
            echo "day1_stamp=$day1_stamp"
        fi
    } >"$res"
    store_listing "$store" "$workdir/logs/restore-$tool-store-before.lst"
    # borg check rewrites config (same bytes, new mtime); see borg_config_mtime.
    [ "$tool" != borg ] || cp -p "$store/config" "$borg_config_saved"

    log "[$tool] restore day 1 into an empty directory (page cache dropped first)"
    restore_step empty empty
    log "[$tool] restore day 1 over a copy of day 0 (page cache dropped after copying)"
    restore_step prevday prevday

    if [ "$tool" = stamp ]; then
        # The pre-restore snapshot is committed to the store.  It goes to a
        # copy, so the real store keeps its three snapshots, stays covered
        # by its records, and 'latest' stays day 1 for bench-mount.sh.
        log "[stamp] restore day 1 over a copy of day 0, with the pre-restore snapshot (into a copy of the store)"
        rm -rf "$(prestore_of)"
        cp -a --reflink=auto "$store" "$(prestore_of)"
        restore_step prevday_pre prevday pre
        mapfile -t after < <("$stamp_bin" --store "$(prestore_of)" list --short)
        pre_n=$(( ${#after[@]} - 3 ))
        echo "prevday_pre_snapshots_added=$pre_n" >>"$res"
        [ "$pre_n" = 1 ] ||
            warn "stamp: the restore with pre-snapshot added $pre_n snapshots, not 1 (${after[*]})"
        rm -rf "$(prestore_of)"
    fi
    rm -rf "$target"

    log "[$tool] verify the whole store, reading all data (page cache dropped first)"
    case "$tool" in
        stamp) cmd=("$stamp_bin" --store "$store" verify --read-data) ;;
        restic) cmd=(restic -r "$store" check --read-data) ;;
        borg) cmd=(borg check --verify-data "$store") ;;
    esac
    drop_caches "cold figures"
    timed "$tool" verify "$workdir" "${cmd[@]}"
    if [ "$run_rc" != 0 ]; then
        echo "bench-restore: $tool verify failed (exit $run_rc); last lines of" \
             "$workdir/logs/restore-$tool-verify.{out,err}:" >&2
        tail -n 10 "$workdir/logs/restore-$tool-verify.out" >&2
        tail -n 10 "$workdir/logs/restore-$tool-verify.err" >&2
        exit 1
    fi
    log "$tool verify: $run_s s, peak RSS $run_rss KiB"
    {
        echo "verify_time=$run_s"
        echo "verify_rss=$run_rss"
        echo "verify_rc=$run_rc"
    } >>"$res"

    [ "$tool" != borg ] || borg_config_mtime
    store_listing "$store" "$workdir/logs/restore-$tool-store-after.lst"
    # diff exits 1 when the listings differ: not a failure here (pipefail).
    nchanged=$({ diff "$workdir/logs/restore-$tool-store-before.lst" \
                      "$workdir/logs/restore-$tool-store-after.lst" || true; } |
                   sed -n 's/^[<>] \([^ ]*\) .*/\1/p' | sort -u | wc -l)
    echo "store_files_changed=$nchanged" >>"$res"
    [ "$nchanged" = 0 ] ||
        warn "$tool changed $nchanged files in its store while restoring and verifying" \
             "(see logs/restore-$tool-store-{before,after}.lst)"

    if [ "$keep" = 1 ]; then
        printf 'day1_bytes=%s\ninit_opts=%s\n' "$day1_bytes" \
            "$( [ "$tool" = stamp ] && echo "${store_init_opts:-}" )" >"$(marker_of "$tool")"
    fi
done
{
    echo "cold=$cold"
    echo "day0_files=$day0_files"
    echo "day0_bytes=$day0_bytes"
    echo "day1_files=$day1_files"
    echo "day1_bytes=$day1_bytes"
} >"$workdir/results/restore-dataset.txt"

# --- report ------------------------------------------------------------------
PYTHONPATH="$here" python3 - "$workdir" "$tools" "$scale" <<'EOF'
import os, platform, sys, time

import benchreport

workdir, tools, scale, R = benchreport.start("restore-%s", ["dataset"])
D = R.pop("dataset")
secs, mib = benchreport.secs, benchreport.mib


def num(t, k):
    return benchreport.number(R, t, k)


cols = [t for t in ("stamp", "restic", "borg") if t in R]
peers = [t for t in ("restic", "borg") if t in R]
with_ratios = "stamp" in R and peers
ratio_names = ["%s/stamp" % t for t in peers] + (["best peer/stamp"] if peers else [])

# (label, stamp key, peer key, formatter, target).  The pre-snapshot row
# compares stamp's default restore with the peers' plain restore over the
# previous day: they have no pre-restore snapshot.
# target: (kind, threshold, label) with kind "best" (best peer/stamp) or
# "restic" (restic/stamp).
rows = [
    ("restore-empty (s)", "empty_time", "empty_time", secs, ("best", 3, "")),
    ("restore-over-previous-day (s)", "prevday_time", "prevday_time", secs, ("best", 6, "")),
    ("restore-over-previous-day, with pre-snapshot (s)", "prevday_pre_time",
     "prevday_time", secs, ("best", 6, " (info: default restore)")),
    ("verify-read-data (s)", "verify_time", "verify_time", secs, ("restic", 3, "")),
    ("peak RSS restore-empty (MiB)", "empty_rss", "empty_rss", mib, None),
    ("peak RSS restore-over-previous-day (MiB)", "prevday_rss", "prevday_rss", mib, None),
    ("peak RSS verify-read-data (MiB)", "verify_rss", "verify_rss", mib, None),
]

header = [""] + cols
if with_ratios:
    header += ratio_names + ["target"]
table = []
for label, skey, pkey, fmt, target in rows:
    if skey == "prevday_pre_time" and "stamp" not in R:
        continue
    vals = {t: num(t, skey if t == "stamp" else pkey) for t in cols}
    cells = [label]
    for t in cols:
        v = vals[t]
        if t != "stamp" and skey != pkey:
            cells.append("(%s)" % fmt(v) if v is not None else "-")
        else:
            cells.append("-" if v is None else fmt(v))
    if with_ratios:
        s = vals["stamp"]
        ratios = {}
        for t in peers:
            ratios[t] = vals[t] / s if vals[t] is not None and s else None
        pv = [vals[t] for t in peers if vals[t] is not None]
        ratios["best"] = min(pv) / s if pv and s else None
        for t in peers + ["best"]:
            cells.append("" if ratios[t] is None else "%.1f" % ratios[t])
        if target is None:
            cells.append("")
        else:
            kind, thr, extra = target
            name = "best peer/stamp" if kind == "best" else "restic/stamp"
            r = ratios.get(kind)
            if r is None:
                cells.append("%s >= %d: n/a%s" % (name, thr, extra))
            else:
                cells.append("%s >= %d: %.2f %s%s" % (name, thr, r,
                                                      "met" if r >= thr else "MISSED", extra))
    table.append(cells)

# Files of the day-0 copy that the restore over it did not touch.
cells = ["day-0 files left untouched (of %s)" % D.get("day0_files", "?")]
for t in cols:
    v = R[t].get("prevday_untouched", "-")
    if "prevday_pre_untouched" in R[t]:
        v += " (with pre-snapshot: %s)" % R[t]["prevday_pre_untouched"]
    cells.append(v)
cells += [""] * (len(header) - len(cells))
table.append(cells)

# Checks of the restored trees against day 1.
for label, key in (("check restore-empty", "empty"),
                   ("check restore-over-previous-day", "prevday"),
                   ("check with pre-snapshot", "prevday_pre")):
    if key == "prevday_pre" and "stamp" not in R:
        continue
    cells = [label] + [R[t].get(key + "_check", "-") for t in cols]
    cells += [""] * (len(header) - len(cells))
    table.append(cells)

left = {0} | ({len(header) - 1} if with_ratios else set())
md_table = benchreport.md_table(header, table, left)
print()
print("\n".join(md_table))

notes = []
if with_ratios:
    notes.append("TOOL/stamp: the tool's figure divided by stamp's; best peer/stamp uses the "
                 "faster (or leaner) of %s. Above 1, stamp is faster or leaner."
                 % " and ".join(peers))
notes.append("restore-empty: day 1 restored into an empty directory, page cache dropped "
             "first. restore-over-previous-day: into a copy of day 0's data (stamp: the "
             "target itself; restic, borg: the source path below the target), page cache "
             "dropped after copying; stamp with --no-pre-snapshot. with pre-snapshot: stamp's "
             "default restore, which first commits a snapshot of the target (to a copy of "
             "the store); its peer columns, in parentheses, repeat their plain restore.")
notes.append("verify-read-data: stamp verify --read-data, restic check --read-data, "
             "borg check --verify-data; page cache dropped first.")
notes.append("day-0 files left untouched: files of the day-0 copy with the same inode and "
             "ctime after the restore over it (neither replaced, written nor chmod'ed).")
syncs = []
for t in cols:
    e, p = num(t, "empty_sync_time"), num(t, "prevday_sync_time")
    if e is not None:
        syncs.append("%s %s / %s s" % (t, secs(e), "-" if p is None else secs(p)))
if syncs:
    notes.append("stamp calls syncfs before it exits, restic and borg leave writeback to "
                 "the kernel: a sync right after each restore took (empty / previous day) "
                 + ", ".join(syncs) + "; not included in the times.")
if peers:
    pc = [t for t in peers if R[t].get("prevday_check_extra", "0") not in ("0", "")]
    if pc:
        notes.append("%s cannot delete: files removed on day 1 stay in the target after a "
                     "restore over day 0 (\"extra\"). That is what their users get; the "
                     "content of every day-1 file is still compared." % " and ".join(pc))
    bad = [t for t in peers for k in ("empty", "prevday")
           if R[t].get(k + "_check_ok") == "no" and R[t].get(k + "_check_content_ok") == "yes"
           and "metadata" in R[t].get(k + "_check", "")]
    if bad:
        notes.append("metadata differences of %s are reported, not held against them: "
                     "their content is what is compared." % ", ".join(sorted(set(bad))))
    badc = [t for t in peers for k in ("empty", "prevday")
            if R[t].get(k + "_check_content_ok") == "no"]
    if badc:
        notes.append("WARNING: %s restored content that differs from day 1 (see "
                     "logs/restore-TOOL-KEY.diff)." % ", ".join(sorted(set(badc))))
if "stamp" in R:
    notes.append("stamp's checks compare everything manifest.py prints (content, modes, "
                 "owners, ns mtimes, xattrs, links); any difference stops the run. "
                 "SQLite files compared with the backup's header counters masked.")
loose = [t for t in cols if any(R[t].get(k + "_check_ref") == "data"
                                for k in ("empty", "prevday", "prevday_pre"))]
if loose:
    notes.append("%s: store built by another script, so the reference is DIR/data, which "
                 "is the day 1 of the store built last; on the paths day 1 changed, "
                 "mtimes were only checked to differ from day 0's (\"day-1 mtimes from "
                 "another build\")." % ", ".join(loose))
if D.get("cold") != "yes":
    notes.append("page cache could NOT be dropped: cold figures are not cold.")
for n in notes:
    print(n)

md = ["# stampfs restore benchmark", "",
      "- date: %s" % time.strftime("%Y-%m-%d %H:%M:%S %Z"),
      "- machine: %s, %d CPUs, %.1f GiB RAM" % (
          platform.platform(), os.cpu_count(),
          os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
      "- dataset (scale %s): restored day 1 %s files, %s bytes; previous day (day 0) "
      "%s files, %s bytes" % (scale, D.get("day1_files", "?"), D.get("day1_bytes", "?"),
                              D.get("day0_files", "?"), D.get("day0_bytes", "?")),
      ]
for t in cols:
    extra = ""
    if t == "stamp":
        extra = " (STAMP_INIT_OPTS=%r, day-1 stamp %s)" % (
            R[t].get("init_opts", ""), R[t].get("day1_stamp", "?"))
    md.append("- %s %s%s; store %s" % (t, R[t].get("version", "?"), extra,
                                       R[t].get("store", "?")))
md += [""] + md_table
md += [""] + notes
with open(os.path.join(workdir, "results-restore.md"), "w") as f:
    f.write("\n".join(md) + "\n")
print("\nwritten to %s" % os.path.join(workdir, "results-restore.md"))
EOF

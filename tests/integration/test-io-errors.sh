#!/bin/bash
# I/O errors on the store, SQLite's files included: tests/helpers/oplog.so
# (LD_PRELOAD) makes the Nth change below the store fail -- a create, a
# write, a truncate, an fsync, a rename, a link, an unlink or a mkdir --
# with EIO, ENOSPC or EDQUOT, once, or from then on for good. For N spread
# over all the changes of a snapshot and of a gc (IO_ERROR_TRIALS of each,
# default 20; 80 run by hand cover every change of the snapshot), and of a
# prune, a reindex and a drill (half as many), on a fresh copy of the
# store:
#   - the command exits 0, or 6 with one line naming the error (a drill:
#     or 7, failed, its report naming the error);
#   - a snapshot that failed committed nothing, one that succeeded is
#     there; gc, reindex and drill change no list of snapshots, prune
#     removes only what it may;
#   - afterwards, without faults, a snapshot succeeds and `stamp verify
#     --read-data` finds every snapshot whole (a failed gc or reindex lost
#     nothing), a drill passes and leaves no scratch copy, its log reads,
#     and a gc then leaves the store clean.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$LIB/gc.sh"
: "${OPLOG:?OPLOG must point at tests/helpers/oplog.so}"
TRIALS=${IO_ERROR_TRIALS:-20}
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"

S="$WORK/store"
"$STAMP" init --pack-size 1 "$S" >/dev/null
make_tree "$WORK/data" 1 8
A=$(snap "$S" "$WORK/data")
sleep 1
mutate_tree "$WORK/data" 2
B=$(snap "$S" "$WORK/data")
sleep 1
mutate_tree "$WORK/data" 3
cp -a "$S" "$WORK/base-snapshot"          # the snapshot workload: C of data
"$STAMP" --store "$S" -q forget "$A" >/dev/null
cp -a "$S" "$WORK/base-gc"                # the gc workload: A's data to delete

# cmd_of WHAT STORE: sets cmd to the command of workload WHAT on STORE.
cmd_of() {
        case $1 in
        snapshot) cmd=("$STAMP" --store "$2" -q snapshot "$WORK/data") ;;
        gc) cmd=("$STAMP" --store "$2" -q gc) ;;
        prune) cmd=("$STAMP" --store "$2" -q prune --keep-last 1) ;;
        reindex) cmd=("$STAMP" --store "$2" -q reindex) ;;
        drill) cmd=("$STAMP" --store "$2" -q drill) ;;
        *) fail "no workload $1" ;;
        esac
}
# faulty STORE N ERRNO ALL CMD...: CMD with the Nth change below STORE failing.
faulty() {
        local store=$1 n=$2 e=$3 all=$4
        shift 4
        env STAMP_OPLOG_ROOT="$store" STAMP_OPLOG_FAIL="$n" STAMP_OPLOG_ERRNO="$e" \
                ${all:+STAMP_OPLOG_FAIL_ALL=1} \
                LD_PRELOAD="$OPLOG${LD_PRELOAD:+:$LD_PRELOAD}" "$@"
}
# changes BASE CMD...: how many changes CMD makes below a copy of BASE.
changes() {
        local base=$1 c="$WORK/count"
        shift
        rm -rf "$c" "$WORK/count.log"
        cp -a "$base" "$c"
        STAMP_OPLOG_ROOT="$c" STAMP_OPLOG="$WORK/count.log" \
                LD_PRELOAD="$OPLOG${LD_PRELOAD:+:$LD_PRELOAD}" "${@//@STORE@/$c}" >/dev/null
        python3 - "$WORK/count.log" <<'PY'
import sys
d, i, n = open(sys.argv[1], "rb").read(), 0, 0
while i < len(d):
    j = d.index(b"\n", i)
    f = d[i:j].split(b" ")
    i = j + 1 + (int(f[3]) if f[0] == b"W" else 0)
    n += 1
print(n)
PY
}
# picks N TOTAL: N numbers from 1..TOTAL, spread evenly (all if N >= TOTAL).
picks() {
        python3 -c 'import sys; n, t = int(sys.argv[1]), int(sys.argv[2]); print(*sorted({1 + i * t // min(n, t) for i in range(min(n, t))}))' "$1" "$2"
}

# check_after STORE WHAT: without faults, a snapshot works, everything verifies.
check_after() {
        "$STAMP" --store "$1" -q snapshot "$WORK/data" >"$WORK/after.out" 2>&1 ||
                { cat "$WORK/after.out" >&2; fail "$2: the next snapshot fails"; }
        "$STAMP" --store "$1" -q verify --read-data >"$WORK/after.out" 2>&1 ||
                { cat "$WORK/after.out" >&2; fail "$2: verify --read-data finds damage"; }
}
# check_drill STORE WHAT: without faults, a drill passes, leaves no scratch
# copy behind (nor one a failed drill left), and its log reads.
check_drill() {
        "$STAMP" --store "$1" -q drill >"$WORK/after.out" 2>&1 ||
                { cat "$WORK/after.out" >&2; fail "$2: the next drill fails"; }
        ! ls "$1/tmp" | grep -q '^drill-' || fail "$2: a drill's scratch copy is left in tmp/"
        "$STAMP" --store "$1" drill --history >"$WORK/after.out" 2>&1 ||
                { cat "$WORK/after.out" >&2; fail "$2: the drill log does not read"; }
        grep -q "pass" "$WORK/after.out" || fail "$2: the drill log lacks the passed drill"
}
# check_rc WHAT WORKLOAD: the last command exited 0, or 6 with one line naming
# the error (a drill: or 7, its report naming it).
check_rc() {
        [ "$rc" = 0 ] && return 0
        if [ "$rc" = 7 ] && [ "$2" = drill ]; then # a failed drill: its report says why
                grep -Eq "Input/output error|[Nn]o space left|Disk quota" "$WORK/out" "$WORK/err" ||
                        { cat "$WORK/out" "$WORK/err" >&2; fail "$1: the drill failed without naming the error"; }
                return 0
        fi
        [ "$rc" = 6 ] || { cat "$WORK/out" "$WORK/err" >&2; fail "$1: exit $rc, expected 0 or 6"; }
        # One line (besides warnings about something else it could not tidy up).
        [ "$(grep -vc "^stamp: warning: " "$WORK/err")" = 1 ] || { cat "$WORK/err" >&2; fail "$1: not one line"; }
        grep -Eq "Input/output error|no space left|No space left|Disk quota" "$WORK/err" ||
                { cat "$WORK/err" >&2; fail "$1: the error is not named"; }
}

errnos=(EIO ENOSPC EIO EDQUOT)
run_trials() { # WORKLOAD BASE TRIALS
        local what=$1 base=$2 trials=$3 total i k=0 e all c="$WORK/c" failed=0 cmd
        cmd_of "$what" @STORE@
        total=$(changes "$base" "${cmd[@]}")
        cmd_of "$what" "$c"
        for i in $(picks "$trials" "$total"); do
                e=${errnos[$((k % 4))]}
                all=
                [ $((k % 5)) = 4 ] && all=1
                k=$((k + 1))
                rm -rf "$c"
                cp -a "$base" "$c"
                before=$("$STAMP" --store "$c" list --short)
                rc=0
                faulty "$c" "$i" "$e" "$all" "${cmd[@]}" >"$WORK/out" 2>"$WORK/err" || rc=$?
                check_rc "$what, change $i of $total failing with $e${all:+ for good}" "$what"
                after=$("$STAMP" --store "$c" list --short)
                case $what/$rc in
                snapshot/0)
                        grep -qx "$(cat "$WORK/out")" <<<"$after" || fail "$what, change $i: exit 0 but no snapshot" ;;
                prune/*) # what prune removed it had to; the newest stays
                        [ -z "$(comm -13 <(echo "$before") <(echo "$after"))" ] &&
                                grep -qx "$(tail -n 1 <<<"$before")" <<<"$after" ||
                                fail "$what, change $i: the list went from $before to $after" ;;
                *)
                        [ "$before" = "$after" ] || fail "$what, change $i: the list of snapshots changed" ;;
                esac
                [ "$rc" = 0 ] || failed=$((failed + 1))
                [ "$what" != drill ] || check_drill "$c" "$what, change $i of $total failing with $e${all:+ for good}"
                check_after "$c" "$what, change $i of $total failing with $e${all:+ for good}"
        done
        echo "$what: $k trials over $total changes, $failed failed cleanly, the rest succeeded"
        # Nearly every change of these can fail them. A prune fails only on the
        # few before its record is gone (with EIO: ENOSPC there deletes
        # anyway), a drill only where the restore cannot go on: even picks
        # may miss those.
        case $what in snapshot | gc | reindex)
                [ "$failed" -gt 0 ] || fail "$what: no injected fault made it fail: the injection is not working" ;;
        esac
}

run_trials snapshot "$WORK/base-snapshot" "$TRIALS"
run_trials gc "$WORK/base-gc" "$TRIALS"
for w in prune reindex drill; do
        run_trials "$w" "$WORK/base-snapshot" $(((TRIALS + 1) / 2))
done

# After every kind of failure, a last gc without faults leaves the store
# clean and every snapshot whole.
"$STAMP" --store "$WORK/c" -q gc >/dev/null
check_clean "$WORK/c" "after the faults"
restore_compare "$WORK/c" "$B" "$WORK/copies/$B" || fail "snapshot $B does not read back"

# forget on a disk with no space for the forgotten mark (an empty file
# created in tmp/ first): freeing space comes first, so the snapshot goes
# anyway, with one warning; any other failure there deletes nothing.
F="$WORK/forget"
cp -a "$WORK/base-snapshot" "$F"
faulty "$F/tmp" 1 EIO "" "$STAMP" --store "$F" forget "$B" >"$WORK/out" 2>"$WORK/err" && rc=0 || rc=$?
[ "$rc" = 6 ] && [ -e "$F/snapshots/$B.json" ] ||
        { cat "$WORK/err" >&2; fail "forget with EIO on its mark: exit $rc, or the snapshot went"; }
faulty "$F/tmp" 1 ENOSPC "" "$STAMP" --store "$F" forget "$B" >"$WORK/out" 2>"$WORK/err" ||
        { cat "$WORK/err" >&2; fail "forget with no space for its mark failed"; }
grep -q "^stamp: warning: snapshot $B was deleted, but with no space left it is not remembered" \
        "$WORK/err" || { cat "$WORK/err" >&2; fail "no warning for a forget without its mark"; }
[ ! -e "$F/snapshots/$B.json" ] && [ ! -e "$F/forgotten/$B" ] ||
        fail "forget with no space for its mark: the record or a mark is there"
"$STAMP" --store "$F" forget "$A" >/dev/null
[ -e "$F/forgotten/$A" ] || fail "forget left no mark"
echo "I/O errors: OK"

#!/bin/bash
# Power loss: every change stamp makes to a store is recorded (LD_PRELOAD
# of tests/helpers/oplog.so) while it takes snapshots, forgets one, runs
# gc and restores with its pre-restore snapshot; lib/powerloss.py then
# builds crash states from the log -- writes not yet fsynced kept, lost or
# torn, directory entries not yet fsynced kept or lost -- and checks each
# as a user would after the reboot: the newest committed snapshot
# validates, a new snapshot of the same tree succeeds (its files cache must
# not name data the cut lost), no committed snapshot is missing and
# `stamp verify --read-data` finds the store sound.
# Then a reindex and a drill of that store, and a copy into a second store,
# forgetting there and copying again.
# The negative control records no fsync at all: the checker must then find
# a loss, or it proves nothing.
# POWERLOSS_STATES (default 60) crash states a run.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$LIB/gc.sh"
: "${OPLOG:?OPLOG must point at tests/helpers/oplog.so}"
STATES=${POWERLOSS_STATES:-60}
# An ASan build's stamp must not insist on being first in the preload list.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"

S="$WORK/store"
"$STAMP" init --pack-size 1 "$S" >/dev/null
make_tree "$WORK/data" 1 10
A=$("$STAMP" --store "$S" -q snapshot "$WORK/data")
cp -a "$S" "$WORK/base"
(cd "$S" && find . -mindepth 1 -printf '%i %y %P\n') >"$WORK/inodes"

LOG="$WORK/oplog"
ROOT="$S"
# rec CMD...: runs CMD with every change below the store ROOT recorded.
rec() {
        STAMP_OPLOG="$LOG" STAMP_OPLOG_ROOT="$ROOT" LD_PRELOAD="$OPLOG${LD_PRELOAD:+:$LD_PRELOAD}" "$@"
}
marker() { echo "E $1 $2" >>"$LOG"; }
: >"$LOG"
marker snap "$A"
mutate_tree "$WORK/data" 2
B=$(rec "$STAMP" --store "$S" -q snapshot "$WORK/data")
marker snap "$B"
sleep 1
mutate_tree "$WORK/data" 3
C=$(rec "$STAMP" --store "$S" -q snapshot "$WORK/data")
marker snap "$C"
marker forget "$A"
rec "$STAMP" --store "$S" -q forget "$A" >/dev/null
rec "$STAMP" --store "$S" -q gc >/dev/null
# A restore over a target: its pre-restore snapshot goes into the store.
cp -a "$WORK/data" "$WORK/target"
echo "changed since" >"$WORK/target/note1-1.txt"
P=$(rec "$STAMP" --store "$S" -q restore --confirm-service-stopped "$B" "$WORK/target" |
        awk '{ print $NF }' | tail -1)
"$STAMP" --store "$S" list --short | grep -qx "$P" || fail "the restore printed '$P', not its pre-restore stamp"
marker snap "$P"
ops=$(grep -ac "" "$LOG" || true)
echo "recorded: snapshots $B $C, forget $A, gc, restore (pre-restore $P); $ops log lines"

python3 "$LIB/powerloss.py" --log "$LOG" --base "$WORK/base" --inodes "$WORK/inodes" \
        --stamp "$STAMP" --src "$WORK/data" --work "$WORK" --states "$STATES" --seed "${POWERLOSS_SEED:-1}" ||
        fail "a crash state lost or damaged data (see above)"

# Maintenance of the same store: the index rebuilt beside the old one and
# renamed over it, then a drill (a scratch restore in tmp/, a line in
# drill.log). The same checks, with a third of the states.
rm -rf "$WORK/base-maint"
cp -a "$S" "$WORK/base-maint"
(cd "$S" && find . -mindepth 1 -printf '%i %y %P\n') >"$WORK/inodes"
: >"$LOG"
for st in $("$STAMP" --store "$S" list --short); do marker snap "$st"; done
rec "$STAMP" --store "$S" -q reindex >/dev/null
rec "$STAMP" --store "$S" -q drill >/dev/null
echo "recorded: reindex, drill; $(grep -ac "" "$LOG" || true) log lines"
python3 "$LIB/powerloss.py" --log "$LOG" --base "$WORK/base-maint" --inodes "$WORK/inodes" \
        --stamp "$STAMP" --src "$WORK/data" --work "$WORK" --states $(((STATES + 2) / 3)) \
        --seed "${POWERLOSS_SEED:-1}" || fail "a crash state of reindex or drill lost or damaged data (see above)"

# A copy's destination: every change below it recorded while stamp copy
# brings B, C and P in, then it forgets B and is copied into again (B stays
# forgotten). The same checks, with a third of the states.
DEST="$WORK/dest"
"$STAMP" init --like "$S" "$DEST" >/dev/null
cp -a "$DEST" "$WORK/base-dest"
(cd "$DEST" && find . -mindepth 1 -printf '%i %y %P\n') >"$WORK/inodes"
ROOT="$DEST"
: >"$LOG"
rec "$STAMP" --store "$S" -q copy "$DEST"
for st in $("$STAMP" --store "$DEST" list --short); do marker snap "$st"; done
marker forget "$B"
rec "$STAMP" --store "$DEST" -q forget "$B"
rec "$STAMP" --store "$S" -q copy "$DEST"
"$STAMP" --store "$DEST" list --short | grep -qx "$B" && fail "the copy brought back $B"
echo "recorded: copy of $B $C $P, forget $B there, copy again; $(grep -ac "" "$LOG" || true) log lines"
python3 "$LIB/powerloss.py" --log "$LOG" --base "$WORK/base-dest" --inodes "$WORK/inodes" \
        --stamp "$STAMP" --src "$WORK/data" --work "$WORK" --states $(((STATES + 2) / 3)) \
        --seed "${POWERLOSS_SEED:-1}" || fail "a crash state of the copy's destination lost data (see above)"

# The negative control: the same snapshot, its fsyncs unrecorded.
rm -rf "$S" "$WORK/base2"
ROOT="$S"
"$STAMP" init --pack-size 1 "$S" >/dev/null
A=$("$STAMP" --store "$S" -q snapshot "$WORK/data")
cp -a "$S" "$WORK/base2"
(cd "$S" && find . -mindepth 1 -printf '%i %y %P\n') >"$WORK/inodes"
: >"$LOG"
marker snap "$A"
mutate_tree "$WORK/data" 4
B=$(STAMP_OPLOG_NOSYNC=1 rec "$STAMP" --store "$S" -q snapshot "$WORK/data")
marker snap "$B"
python3 "$LIB/powerloss.py" --log "$LOG" --base "$WORK/base2" --inodes "$WORK/inodes" \
        --stamp "$STAMP" --src "$WORK/data" --work "$WORK" --states 20 --seed 1 --expect-loss ||
        fail "the negative control found nothing: the power-loss check is blind"
echo "power loss: OK"

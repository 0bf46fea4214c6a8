#!/bin/bash
# A full store disk (a small tmpfs, filled up with a filler file):
#   - snapshots with the free space swept from none to enough, so that the
#     disk fills at every stage (recovery, pack, index, record): each one
#     either commits a whole snapshot or exits 6 with one line saying the
#     store's disk is full, committing nothing; the store verifies after
#     each, and tmp/ is empty;
#   - with the disk 100 % full, everything that only reads still works
#     (list, cat, validate, verify, restore --no-pre-snapshot, the mount
#     with cp -a), and a restore's pre-restore snapshot is refused before
#     the target is touched, naming --no-pre-snapshot;
#   - forget and gc on the full disk work (gc through the store's reserve)
#     and free space; a reindex says the disk is full and keeps the old
#     index; once space is freed, gc and the
#     next snapshot succeed, a mount started while the disk was full shows
#     the new snapshot, and every snapshot restores byte for byte.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$LIB/gc.sh"

if [ "$(id -u)" != 0 ]; then
        echo "not root (mounting a tmpfs needs it): skipped"
        exit 77
fi

D="$WORK/disk"
S="$D/store"
mkdir "$D"
mount -t tmpfs -o size=16m tmpfs "$D"
at_exit "umount -l '$D'"
"$STAMP" init --json "$S" >"$WORK/init.json"
# A 16 MiB disk: a reserve of 1/64 of it.
[ "$(json_field "$WORK/init.json" reserve_bytes)" = 262144 ] && [ "$(stat -c %s "$S/reserve")" = 262144 ] ||
        fail "init did not set aside 256 KiB: $(cat "$WORK/init.json")"
make_tree "$WORK/data" 1 12
snap "$S" "$WORK/data" >/dev/null

avail() { df -B1 --output=avail "$D" | tail -1 | tr -d " "; }
# fill LEAVE: leaves LEAVE bytes free on the store's disk.
fill() {
        local n
        rm -f "$D/filler"
        n=$(($(avail) - $1))
        if [ "$n" -gt 0 ]; then head -c "$n" /dev/zero >"$D/filler" 2>/dev/null || true; fi
}
count() { "$STAMP" --store "$S" list --short | wc -l; }

# --- The sweep: 200 KB of new data a snapshot, free space from 0 up.
failed=0 committed=0
for step in $(seq 0 "${FULL_DISK_STEP:-3}" 60); do
        rm -f "$WORK"/data/fresh-*
        head -c 200000 /dev/urandom >"$WORK/data/fresh-$step"
        before=$(count)
        fill $((step * 8192))
        rc=0
        "$STAMP" --store "$S" -q snapshot "$WORK/data" >"$WORK/out" 2>"$WORK/err" || rc=$?
        rm -f "$D/filler"
        after=$(count)
        if [ $rc = 0 ]; then
                [ "$after" = $((before + 1)) ] || fail "step $step: exit 0 but $before -> $after snapshots"
                st=$(cat "$WORK/out")
                mkdir -p "$WORK/copies"
                cp -a "$WORK/data" "$WORK/copies/$st"
                committed=$((committed + 1))
        else
                [ $rc = 6 ] || { cat "$WORK/err" >&2; fail "step $step: exit $rc on a full disk, expected 6"; }
                [ "$(wc -l <"$WORK/err")" = 1 ] || { cat "$WORK/err" >&2; fail "step $step: not one line"; }
                grep -q "no space left on the store's device" "$WORK/err" ||
                        { cat "$WORK/err" >&2; fail "step $step: the full disk is not named"; }
                [ "$after" = "$before" ] || fail "step $step: a failed snapshot changed the list"
                failed=$((failed + 1))
        fi
        "$STAMP" --store "$S" -q verify >"$WORK/verify.out" 2>&1 ||
                { cat "$WORK/verify.out" >&2; fail "step $step: the store does not verify"; }
        [ -z "$(ls -A "$S/tmp")" ] || fail "step $step: left in tmp/: $(ls "$S/tmp")"
done
echo "sweep: $failed snapshots refused, $committed committed"
[ $failed -ge 3 ] && [ $committed -ge 3 ] ||
        fail "the sweep did not cross from a full disk to enough space ($failed failed, $committed committed)"

# --- 100 % full: readers work.
B=$("$STAMP" --store "$S" list --short | tail -1)
fill 0
[ "$(avail)" = 0 ] || fail "could not fill the store's disk ($(avail) bytes left)"
expect_rc 0 "$STAMP" --store "$S" list
expect_rc 0 "$STAMP" --store "$S" cat "$B" "big-1"
cmp -s "$WORK/out" "$WORK/copies/$B/big-1" || fail "cat on a full disk gives other bytes"
expect_rc 0 "$STAMP" --store "$S" validate "$B"
expect_rc 0 "$STAMP" --store "$S" verify --read-data
restore_compare "$S" "$B" "$WORK/copies/$B" || fail "restore from a store on a full disk"
mkdir "$WORK/target"
echo "mine" >"$WORK/target/keep"
expect_rc 6 "$STAMP" --store "$S" restore --confirm-service-stopped "$B" "$WORK/target"
expect_err "nothing was changed: no space left on the store's device (free space there, or restore with --no-pre-snapshot)"
[ "$(ls -A "$WORK/target")" = keep ] && [ "$(cat "$WORK/target/keep")" = mine ] ||
        fail "a refused restore touched its target"
# Retention and gc still work, and free space: forget leaves an empty mark,
# and gc gives back the store's reserve (set aside by init) for its own
# bookkeeping, then deletes the packs with nothing live.
[ -f "$S/reserve" ] || fail "init set no reserve aside"
OLD=$("$STAMP" --store "$S" list --short | sed -n '2,4p' | tr '\n' ' ')
expect_rc 0 "$STAMP" --store "$S" forget $OLD
for st in $OLD; do
        "$STAMP" --store "$S" list --short | grep -qx "$st" && fail "forget on a full disk kept $st"
        rm -rf "$WORK/copies/$st"
done
[ "$(avail)" = 0 ] || fail "the forget made room by itself"
expect_rc 0 "$STAMP" --store "$S" gc
grep -q "the store's disk was full: gave back its reserve of" "$WORK/out" ||
        { cat "$WORK/out" >&2; fail "gc on a full disk did not say it used the reserve"; }
[ "$(avail)" -gt 200000 ] || fail "gc on a full disk freed only $(avail) bytes"
"$STAMP" --store "$S" -q verify >/dev/null || fail "the store does not verify after gc on a full disk"
fill 0
# A reindex needs room for a whole new index: it says there is none, and
# keeps the old one.
expect_rc 6 "$STAMP" --store "$S" -q reindex
expect_err "reindex of store '$S' failed: no space left on the store's device; the old index.db is unchanged"
[ ! -e "$S/index.db.new" ] || fail "a failed reindex left index.db.new"
"$STAMP" --store "$S" -q verify >/dev/null || fail "the store does not verify after a failed reindex"

MNT="$WORK/mnt"
if [ -c /dev/fuse ] && [ -n "${STAMPFS:-}" ]; then
        mkdir "$MNT"
        "$STAMPFS" "$S" "$MNT"
        at_exit "fusermount3 -u '$MNT'"
        cp -a "$MNT/$B" "$WORK/from-mount"
        diff -r "$WORK/from-mount" "$WORK/copies/$B" >&2 || fail "the mount of a full store differs"
else
        echo "no /dev/fuse or no STAMPFS: the mount part was not run"
fi

# --- Space freed: gc and a new snapshot work, the mount shows it.
rm -f "$D/filler"
expect_rc 0 "$STAMP" --store "$S" gc
echo "new after the disk was full" >"$WORK/data/later.txt"
C=$(snap "$S" "$WORK/data")
if [ -d "$MNT/$B" ]; then
        for _ in $(seq 50); do [ -d "$MNT/$C" ] && break; sleep 0.1; done
        diff -r "$MNT/$C" "$WORK/copies/$C" >&2 || fail "the mount does not read the snapshot taken after space was freed"
        fusermount3 -u "$MNT"
fi
check_all "$S" "after the disk was full"
check_clean "$S" "after the disk was full"
[ -f "$S/reserve" ] || fail "gc did not set the reserve aside again once there was room"
echo "full disk: OK"

#!/bin/bash
# A store on a read-only file system (a backup disk mounted ro, here a
# read-only bind mount): everything that only reads works -- list, show,
# cat, diff, stats, validate and verify with --read-data, restore with
# --no-pre-snapshot, drill with --scratch (passes, unlogged), copy to another store, the
# mount -- and every writer
# fails with one line naming the store and the reason, changing nothing.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$LIB/gc.sh"

if [ "$(id -u)" != 0 ]; then
        echo "not root (mount --bind needs it): skipped"
        exit 77
fi

S="$WORK/store"
RO="$WORK/ro ?#%20"   # SQLite opens it by URI: escaped
"$STAMP" init --pack-size 1 "$S" >/dev/null
make_tree "$WORK/data" 1 30
A=$(snap "$S" "$WORK/data")
sleep 1
mutate_tree "$WORK/data" 2
B=$(snap "$S" "$WORK/data")
mkdir "$RO"
mount --bind "$S" "$RO"
mount -o remount,bind,ro "$RO"
at_exit "umount -l '$RO'"
touch "$RO/x" 2>/dev/null && fail "the bind mount is writable"
before=$(cd "$S" && find . -printf '%p %s %T@\n' | sort)

expect_rc 0 "$STAMP" --store "$RO" list
grep -q "$B" "$WORK/out" || fail "list does not show $B"
expect_rc 0 "$STAMP" --store "$RO" show "$A"
expect_rc 0 "$STAMP" --store "$RO" stats --json
[ "$(json_field "$WORK/out" snapshots)" = 2 ] || fail "stats does not count 2 snapshots"
expect_rc 0 "$STAMP" --store "$RO" diff "$A" "$B"
expect_rc 0 "$STAMP" --store "$RO" validate --read-data "$A"
expect_rc 0 "$STAMP" --store "$RO" validate --read-data "$B"
expect_rc 0 "$STAMP" --store "$RO" cat "$B" big-1
cmp -s "$WORK/out" "$WORK/copies/$B/big-1" || fail "stamp cat of a read-only store differs"
# The same store named by a relative path and by one starting with "//".
(cd "$WORK" && expect_rc 0 "$STAMP" --store "${RO#"$WORK"/}" cat "$B" big-1)
expect_rc 0 "$STAMP" --store "/$RO" cat "$B" big-1
expect_rc 0 "$STAMP" --store "$RO" verify --read-data
restore_compare "$RO" "$A" "$WORK/copies/$A"
restore_compare "$RO" "$B" "$WORK/copies/$B"
mkdir "$WORK/scratch"
# A drill passes (exit 0: a timer's drill of a backup disk mounted ro does
# not alarm), and says that it could not be logged there.
expect_rc 0 "$STAMP" --store "$RO" drill --scratch "$WORK/scratch" "$B"
grep -q "PASS" "$WORK/out" || fail "the drill of a read-only store did not pass"
expect_err "drill not logged: '$RO' is on a read-only file system"

# A copy out of it, to a new disk: the copy restores.
expect_rc 0 "$STAMP" --store "$RO" copy --init "$WORK/copy"
restore_compare "$WORK/copy" "$B" "$WORK/copies/$B"

# Writers: one line each, exit non-zero, nothing created.
mkdir "$WORK/target"
expect_rc 6 "$STAMP" --store "$RO" restore --confirm-service-stopped "$B" "$WORK/target"
expect_err "store '$RO' is on a read-only file system: it cannot take the pre-restore snapshot (restore with --no-pre-snapshot)"
[ -z "$(ls -A "$WORK/target")" ] || fail "a refused restore wrote into its target"
expect_rc 6 "$STAMP" --store "$RO" snapshot "$WORK/data"
expect_err "cannot lock store '$RO': Read-only file system"
expect_rc 6 "$STAMP" --store "$RO" forget "$A"
expect_err "Read-only file system"
expect_rc 6 "$STAMP" --store "$RO" gc
expect_err "Read-only file system"

# The mount: every file of B, copied out with cp -a, equals the source.
if [ -c /dev/fuse ] && [ -n "${STAMPFS:-}" ]; then
        MNT="$WORK/mnt"
        mkdir "$MNT"
        "$STAMPFS" "$RO" "$MNT"
        at_exit "fusermount3 -u '$MNT'"
        cp -a "$MNT/$B" "$WORK/from-mount"
        diff -r "$WORK/from-mount" "$WORK/copies/$B" >&2 || fail "the mount of a read-only store differs"
        fusermount3 -u "$MNT"
else
        echo "no /dev/fuse or no STAMPFS: the mount part was not run"
fi

# A copy of the store taken while index.db had a WAL not yet folded in,
# without its -shm: SQLite cannot read that on a read-only disk. Both
# front ends refuse it with one line that says so and what to do.
W="$WORK/walstore"
python3 - "$S" "$W" <<'PY'
import os, shutil, sqlite3, sys
src, dst = sys.argv[1:]
shutil.copytree(src, dst)                # a plain copy: index.db, no WAL
db = sqlite3.connect(os.path.join(dst, "index.db"))
db.execute("PRAGMA wal_autocheckpoint=0")
db.execute("CREATE TABLE scratch_x(a)")  # a commit that stays in the WAL
db.commit()
keep = os.path.join(dst, "..", "wal-kept")
shutil.copy(os.path.join(dst, "index.db-wal"), keep)
db.close()                               # folds the WAL in and removes it...
shutil.copy(keep, os.path.join(dst, "index.db-wal"))   # ...so put it back
for f in ("index.db-shm",):
    if os.path.exists(os.path.join(dst, f)):
        os.unlink(os.path.join(dst, f))
PY
[ -s "$W/index.db-wal" ] && [ ! -e "$W/index.db-shm" ] || fail "could not make a store with a WAL and no -shm"
WRO="$WORK/walro"
mkdir "$WRO"
mount --bind "$W" "$WRO"
mount -o remount,bind,ro "$WRO"
at_exit "umount -l '$WRO'"
expect_rc 6 "$STAMP" --store "$WRO" list
expect_err "store '$WRO': on a read-only file system, with index.db changes not folded in"
if [ -c /dev/fuse ] && [ -n "${STAMPFS:-}" ]; then
        mkdir "$WORK/mnt2"
        rc=0
        "$STAMPFS" "$WRO" "$WORK/mnt2" 2>"$WORK/err" || rc=$?
        [ $rc != 0 ] || { fusermount3 -u "$WORK/mnt2"; fail "stampfs mounted a store it cannot read"; }
        [ $rc = 3 ] || fail "stampfs exited $rc for a store it cannot read, expected 3"
        expect_err "stampfs: store '$WRO': on a read-only file system, with index.db changes"
fi

# A damaged read-only store: the drill still fails (exit 7), unlogged.
D="$WORK/damaged"
DRO="$WORK/damaged-ro"
cp -a "$S" "$D"
for p in "$D"/packs/*/*.pack; do flip_byte "$p" 0.5; done
mkdir "$DRO" "$WORK/scratch2"
mount --bind "$D" "$DRO"
mount -o remount,bind,ro "$DRO"
at_exit "umount -l '$DRO'"
expect_rc 7 "$STAMP" --store "$DRO" drill --read-data --scratch "$WORK/scratch2" "$B"
grep -q "FAIL" "$WORK/out" || fail "the drill of a damaged read-only store did not fail"
expect_err "drill not logged: '$DRO' is on a read-only file system"
[ ! -e "$D/drill.log" ] || fail "a drill wrote drill.log under a read-only mount"

after=$(cd "$S" && find . -printf '%p %s %T@\n' | sort)
[ "$before" = "$after" ] || fail "the store changed under a read-only mount"

# A read-only view of a store written elsewhere (the ro bind mount of a
# live store): a mount of the view started before a snapshot is taken
# through the writable path serves that snapshot too.
if [ -c /dev/fuse ] && [ -n "${STAMPFS:-}" ]; then
        "$STAMPFS" "$RO" "$MNT"
        cp -a "$MNT/$B" "$WORK/warm-up"  # the mount's connections open on the old index
        mutate_tree "$WORK/data" 3
        echo "written after the read-only mount" >"$WORK/data/late.txt"
        C=$(snap "$S" "$WORK/data")
        for _ in $(seq 50); do [ -d "$MNT/$C" ] && break; sleep 0.1; done
        diff -r "$MNT/$C" "$WORK/copies/$C" >&2 ||
                fail "a mount of a read-only view does not serve a snapshot taken since"
        fusermount3 -u "$MNT"
fi
echo "read-only store: OK"

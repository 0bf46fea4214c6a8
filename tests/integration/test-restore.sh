#!/bin/bash
# stamp restore into live targets: the drill, bind mounts (the target, one
# nested, one single file), stale SQLite sidecars, hostile trees and
# symlinks, refusals, rollback, and kill -9 halfway.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

if [ "$(id -u)" != 0 ]; then
        echo "restore tests need root (mount --bind, chown)"
        exit 77
fi

S="$WORK/store"
"$STAMP" init "$S" >/dev/null
M() { python3 "$LIB/manifest.py" "$@"; }
restore() { "$STAMP" --store "$S" restore "$@" --confirm-service-stopped; }

# --- 1. Every file type, hostile names, hardlinks, xattrs, sparse files: exact.
python3 "$LIB/gentree.py" "$WORK/gen" --seed 11 >/dev/null 2>&1
GEN=$("$STAMP" --store "$S" -q snapshot "$WORK/gen")
expect_rc 0 restore "$GEN" "$WORK/r1" --no-pre-snapshot
diff <(M "$WORK/gen") <(M "$WORK/r1") >"$WORK/d" || { head -20 "$WORK/d"; fail "round trip differs"; }
# Restoring again over an exact copy writes nothing.
expect_rc 0 "$STAMP" --store "$S" --json restore "$GEN" "$WORK/r1" --confirm-service-stopped --no-pre-snapshot
[ "$(json_field "$WORK/out" files_restored)" = 0 ] || fail "second restore rewrote files"
diff <(M "$WORK/gen") <(M "$WORK/r1") >/dev/null || fail "second restore changed the tree"
# Scrambled: content changed with the same size and time, modes, an extra
# file, a file turned into a directory; --checksum finds the content change.
f=$(cd "$WORK/r1" && find . -type f -size +10k -links 1 -print -quit)
t=$(stat -c %y "$WORK/r1/$f")
printf 'X' | dd of="$WORK/r1/$f" bs=1 seek=100 conv=notrunc 2>/dev/null
touch -d "$t" "$WORK/r1/$f"
g=$(cd "$WORK/r1" && find . -type f -size -2k -links 1 -print -quit)
chmod 0600 "$WORK/r1/$g"
echo extra >"$WORK/r1/extra-file"
h=$(cd "$WORK/r1" && find . -type f -links 1 -size -100k | sed -n '$p')
rm "$WORK/r1/$h" && mkdir -p "$WORK/r1/$h/inner"
expect_rc 0 restore "$GEN" "$WORK/r1" --no-pre-snapshot --checksum
diff <(M "$WORK/gen") <(M "$WORK/r1") >"$WORK/d" || { head -20 "$WORK/d"; fail "repair differs"; }

# --- 2. The drill: SQLite in WAL mode, snapshot, mutate, restore.
mkdir -p "$WORK/svc/db" "$WORK/svc/chroma"
python3 - "$WORK/svc" <<'PY'
import json, os, sqlite3, sys
d = sys.argv[1]
c = sqlite3.connect(os.path.join(d, "db/app.db"))
c.execute("PRAGMA journal_mode=WAL")
c.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
c.executemany("INSERT INTO notes(body) VALUES(?)", [("baseline %d" % i,) for i in range(500)])
c.commit()
c.close()
json.dump({"projects": ["a", "b"]}, open(os.path.join(d, "registry.json"), "w"))
for i in range(20):
    open(os.path.join(d, "chroma", "seg%02d.bin" % i), "wb").write(os.urandom(50000))
PY
BASE=$("$STAMP" --store "$S" -q snapshot "$WORK/svc")
python3 - "$WORK/svc" <<'PY'
import os, sqlite3, sys
c = sqlite3.connect(os.path.join(sys.argv[1], "db/app.db"))
c.execute("PRAGMA wal_autocheckpoint=0")
c.execute("INSERT INTO notes(body) VALUES('DRILL MARKER')")
c.commit()
# Leave the marker in the WAL: the connection is not closed cleanly.
os._exit(0)
PY
echo marker >"$WORK/svc/chroma/MARKER"
[ -s "$WORK/svc/db/app.db-wal" ] || fail "the drill needs a live WAL"
ino=$(stat -c %i "$WORK/svc")
expect_rc 0 "$STAMP" --store "$S" --json restore "$BASE" "$WORK/svc" --confirm-service-stopped
cp "$WORK/out" "$WORK/drill.json"
python3 - "$WORK/drill.json" "$WORK/svc" <<'PY'
import json, os, sqlite3, sys
r = json.load(open(sys.argv[1]))
assert r["restored_integrity_ok"] is True, r
assert r["pre_restore_snapshot"], r
assert [d["path"] for d in r["databases"]] == ["db/app.db"], r["databases"]
assert all(d["integrity_ok"] for d in r["databases"])
for k in ("stamp", "target", "files_restored", "files_removed", "bytes_written", "duration_s"):
    assert k in r, k
d = sys.argv[2]
assert not os.path.exists(os.path.join(d, "chroma/MARKER")), "marker file survived"
assert not os.path.exists(os.path.join(d, "db/app.db-wal")), "stale WAL survived"
assert not os.path.exists(os.path.join(d, "db/app.db-shm")), "stale SHM survived"
c = sqlite3.connect(os.path.join(d, "db/app.db"))
assert c.execute("SELECT count(*) FROM notes WHERE body = 'DRILL MARKER'").fetchone()[0] == 0
assert c.execute("SELECT count(*) FROM notes").fetchone()[0] == 500, "baseline lost"
assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
PY
[ "$(stat -c %i "$WORK/svc")" = "$ino" ] || fail "TARGET lost its inode"
PRE=$(json_field "$WORK/drill.json" pre_restore_snapshot)
# The pre-restore snapshot holds the mutation (file and WAL).
"$STAMP" --store "$S" cat "$PRE" chroma/MARKER | grep >/dev/null marker || fail "pre-restore lacks the marker"
"$STAMP" --store "$S" show "$PRE" | grep >/dev/null "pre-restore" || fail "pre-restore tag"
# 'latest' is the regular snapshot, never the safety one.
[ "$("$STAMP" --store "$S" show latest | awk '/^stamp:/ {print $2}')" = "$BASE" ] ||
        fail "latest resolved to a pre-restore snapshot"
# Rollback: restoring the pre-restore snapshot brings the marker back.
expect_rc 0 restore "$PRE" "$WORK/svc" --no-pre-snapshot
[ -f "$WORK/svc/chroma/MARKER" ] || fail "rollback did not restore the marker"
expect_rc 0 restore "$BASE" "$WORK/svc" --no-pre-snapshot
# The pre-restore record names its target: prune keeps N of each target.
"$STAMP" --store "$S" --json show "$PRE" >"$WORK/pre.json"
python3 -c 'import json,os,sys; s=json.load(open(sys.argv[1]))["sources"]
assert s == [os.path.realpath(sys.argv[2])], s' "$WORK/pre.json" "$WORK/svc" ||
        fail "the pre-restore record does not name its target"
# Three restores into another directory do not push that rollback out.
mkdir "$WORK/scratch"
for i in 1 2 3; do expect_rc 0 restore "$BASE" "$WORK/scratch"; done
"$STAMP" --store "$S" prune --dry-run --keep-last 1 --keep-pre-restore 1 >"$WORK/out"
grep -q "^keep   $PRE  pre-restore" "$WORK/out" || { cat "$WORK/out"; fail "prune drops the rollback of svc"; }
[ "$(grep -c "  pre-restore" "$WORK/out")" = 2 ] || { cat "$WORK/out"; fail "prune keeps 1 of each target"; }
# A TARGET that does not exist is created; there is nothing to roll back to.
N=$("$STAMP" --store "$S" list --short | wc -l)
expect_rc 0 "$STAMP" --store "$S" --json restore "$BASE" "$WORK/new" --confirm-service-stopped
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["pre_restore_snapshot"] is None, r' \
        "$WORK/out" || fail "a created TARGET got a pre-restore snapshot"
[ "$("$STAMP" --store "$S" list --short | wc -l)" = "$N" ] || fail "a created TARGET got a snapshot"

# --- 3. Bind mounts: TARGET itself, a nested directory, a single file.
mkdir -p "$WORK/vol/real" "$WORK/vol/target" "$WORK/vol/nested-src" "$WORK/vol/file-src"
mkdir -p "$WORK/vsrc/data/cache"
echo '{"k": 1}' >"$WORK/vsrc/config.json"
head -c 200000 /dev/urandom >"$WORK/vsrc/data/cache/blob"
echo hello >"$WORK/vsrc/data/cache/small"
echo top >"$WORK/vsrc/top"
VS=$("$STAMP" --store "$S" -q snapshot "$WORK/vsrc")
mount --bind "$WORK/vol/real" "$WORK/vol/target"
mkdir -p "$WORK/vol/target/data/cache"
mount --bind "$WORK/vol/nested-src" "$WORK/vol/target/data/cache"
echo stale >"$WORK/vol/target/data/cache/old"
echo '{"old": true}' >"$WORK/vol/file-src/config.json"
touch "$WORK/vol/target/config.json"
mount --bind "$WORK/vol/file-src/config.json" "$WORK/vol/target/config.json"
tino=$(stat -c %i "$WORK/vol/target")
expect_rc 0 restore "$VS" "$WORK/vol/target" --no-pre-snapshot
[ "$(stat -c %i "$WORK/vol/target")" = "$tino" ] || fail "bind-mounted TARGET lost its inode"
mountpoint -q "$WORK/vol/target" || fail "TARGET is no longer a mount point"
mountpoint -q "$WORK/vol/target/data/cache" || fail "nested bind mount was removed"
[ ! -e "$WORK/vol/nested-src/old" ] || fail "nested mount not emptied"
cmp -s "$WORK/vsrc/data/cache/blob" "$WORK/vol/nested-src/blob" || fail "nested mount not refilled"
grep -q '"k": 1' "$WORK/vol/file-src/config.json" || fail "single-file bind mount not rewritten in place"
diff <(M "$WORK/vsrc" --ignore-root-times) <(M "$WORK/vol/target" --ignore-root-times) >"$WORK/d" ||
        { cat "$WORK/d"; fail "bind-mounted target differs from the snapshot"; }
umount "$WORK/vol/target/config.json" "$WORK/vol/target/data/cache" "$WORK/vol/target"

# A bind-mounted file that is a later name of a hardlink group: it cannot
# become a link; it is rewritten in place, with a warning (exit 1).
mkdir -p "$WORK/hsrc" "$WORK/hb/t"
echo linked >"$WORK/hsrc/h1" && ln "$WORK/hsrc/h1" "$WORK/hsrc/h2"
HS=$("$STAMP" --store "$S" -q snapshot "$WORK/hsrc")
echo B >"$WORK/hb/src" && touch "$WORK/hb/t/h2"
mount --bind "$WORK/hb/src" "$WORK/hb/t/h2"
expect_rc 1 restore "$HS" "$WORK/hb/t" --no-pre-snapshot
grep -q "h2: a mounted file: rewritten in place" "$WORK/err" || { cat "$WORK/err"; fail "mounted link member"; }
[ "$(cat "$WORK/hb/src")" = linked ] || fail "the mounted link member was not rewritten in place"
[ "$(cat "$WORK/hb/t/h1")" = linked ] || fail "the first link member"
umount "$WORK/hb/t/h2"
# A mount point where the snapshot has a directory: exit 6 (not 4, "locked"),
# and the advice names the mount point.
mkdir -p "$WORK/hsrc/d" "$WORK/hb/t2"
echo in >"$WORK/hsrc/d/f"
HD=$("$STAMP" --store "$S" -q snapshot "$WORK/hsrc")
touch "$WORK/hb/t2/d"
mount --bind "$WORK/hb/src" "$WORK/hb/t2/d"
expect_rc 6 restore "$HD" "$WORK/hb/t2" --no-pre-snapshot
grep -q "move the mount point out of the way" "$WORK/err" || { cat "$WORK/err"; fail "mount point advice"; }
umount "$WORK/hb/t2/d"

# --- 4. A stale -wal beside a database restored by --path.
mkdir -p "$WORK/p"
expect_rc 0 restore "$BASE" "$WORK/p" --no-pre-snapshot
head -c 8192 /dev/urandom >"$WORK/p/db/app.db-wal"
: >"$WORK/p/db/app.db-shm"
echo keep >"$WORK/p/db/unrelated"
expect_rc 0 "$STAMP" --store "$S" --json restore "$BASE" "$WORK/p" --path db/app.db \
        --confirm-service-stopped --no-pre-snapshot
[ ! -e "$WORK/p/db/app.db-wal" ] && [ ! -e "$WORK/p/db/app.db-shm" ] || fail "stale sidecars kept"
[ -f "$WORK/p/db/unrelated" ] || fail "--path touched a file outside it"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["databases"][0]["sidecars_removed"] == 2 and d["restored_integrity_ok"], d' "$WORK/out"

# --- 5. Hostile targets: symlinks pointing outside are replaced, never followed.
mkdir -p "$WORK/outside" "$WORK/h"
echo precious >"$WORK/outside/app.db"
echo precious >"$WORK/outside/notes-victim"
before=$(M "$WORK/outside")
ln -s "$WORK/outside" "$WORK/h/db"
ln -s "$WORK/outside/notes-victim" "$WORK/h/registry.json"
mkdir -p "$WORK/h/chroma"
ln -s "$WORK/outside" "$WORK/h/chroma/seg00.bin"
expect_rc 0 restore "$BASE" "$WORK/h" --no-pre-snapshot
[ "$(M "$WORK/outside")" = "$before" ] || fail "restore wrote outside TARGET"
[ -d "$WORK/h/db" ] && [ ! -L "$WORK/h/db" ] || fail "symlink db was not replaced by a directory"
[ -f "$WORK/h/registry.json" ] && [ ! -L "$WORK/h/registry.json" ] || fail "symlink file not replaced"
# A forged snapshot with '..' or '/' in a name is refused before anything changes.
for forged in "bb:.." "top:t/p"; do
        mkdir -p "$WORK/fsrc" && head -c 1000 /dev/urandom >"$WORK/fsrc/bb" && echo t >"$WORK/fsrc/top"
        "$STAMP" --store "$S" -q snapshot "$WORK/fsrc" >/dev/null
        F=$("$CRAFT" "$S" "${forged%%:*}" "${forged#*:}")
        mkdir -p "$WORK/ft" && echo mine >"$WORK/ft/keep"
        expect_rc 7 restore "$F" "$WORK/ft" --no-pre-snapshot
        grep -q "tree_corrupt" "$WORK/err" || fail "forged name not reported"
        [ "$(cat "$WORK/ft/keep")" = mine ] || fail "TARGET changed by a refused restore"
        rm -rf "$WORK/fsrc"
done

# --- 6. Refusals.
expect_rc 2 "$STAMP" --store "$S" restore "$BASE" "$WORK/svc"
expect_err "refusing to restore without --confirm-service-stopped"
expect_rc 2 restore "$BASE" "$S/snapshots" --no-pre-snapshot
expect_err "inside the store"
expect_rc 2 restore "$BASE" "$WORK" --no-pre-snapshot
expect_err "contains the store"
# An invalid snapshot: a pack missing. Nothing in TARGET changes.
cp -a "$S" "$WORK/s2"
mkdir -p "$WORK/inv" && echo mine >"$WORK/inv/keep"
rm "$(ls -S "$WORK"/s2/packs/*/*.pack | sed -n 1p)"
expect_rc 7 "$STAMP" --store "$WORK/s2" restore "$GEN" "$WORK/inv" --confirm-service-stopped
grep -q "is invalid" "$WORK/err" || fail "invalid snapshot not explained"
[ "$(ls "$WORK/inv")" = keep ] || fail "TARGET changed by a refused restore"
# --dry-run changes nothing and reports what it would do.
expect_rc 0 "$STAMP" --store "$S" --json restore "$GEN" "$WORK/inv" --dry-run
[ "$(ls "$WORK/inv")" = keep ] || fail "dry run changed TARGET"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["dry_run"] and d["files_restored"] > 10 and d["files_removed"] == 1, d' "$WORK/out"

# --- 7. kill -9 halfway, then the same command completes the restore.
mkdir -p "$WORK/big"
for i in $(seq 1 60); do head -c 600000 /dev/urandom >"$WORK/big/f$i"; done
BIG=$("$STAMP" --store "$S" -q snapshot "$WORK/big")
for delay in 0.05 0.15 0.3; do
        rm -rf "$WORK/k" && mkdir "$WORK/k"
        echo old >"$WORK/k/f1"
        "$STAMP" --store "$S" -q restore "$BIG" "$WORK/k" --confirm-service-stopped --no-pre-snapshot \
                >/dev/null 2>&1 &
        pid=$!
        sleep "$delay"
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        expect_rc 0 restore "$BIG" "$WORK/k" --no-pre-snapshot
        diff <(M "$WORK/big" --ignore-root-times) <(M "$WORK/k" --ignore-root-times) >/dev/null ||
                fail "restore after kill -9 (at ${delay}s) differs from the snapshot"
        [ -z "$(find "$WORK/k" -name '.stamp-restore-*')" ] || fail "temporary files left behind"
done
# --- 8. A full disk: a clear error naming the file, exit 6, and after space
# is freed the same command completes. (A tmpfs as TARGET, grown later.)
mkdir -p "$WORK/full"
mount -t tmpfs -o size=8m tmpfs "$WORK/full"
expect_rc 6 restore "$BIG" "$WORK/full" --no-pre-snapshot
grep "No space left on device" "$WORK/err" >/dev/null || { cat "$WORK/err"; fail "full disk not explained"; }
grep "run the same command again" "$WORK/err" >/dev/null || fail "no advice after a full disk"
mount -o remount,size=64m "$WORK/full"
expect_rc 0 restore "$BIG" "$WORK/full" --no-pre-snapshot
diff <(M "$WORK/big" --ignore-root-times) <(M "$WORK/full" --ignore-root-times) >/dev/null ||
        fail "restore after a full disk differs from the snapshot"
umount "$WORK/full"
echo "restore ok"

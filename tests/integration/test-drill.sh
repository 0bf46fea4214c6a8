#!/bin/bash
# stamp drill: passes on a good snapshot of a hostile tree with databases and
# JSON files, logs every drill (--history, damaged lines named), removes its
# scratch copy (and dead drills' ones), refuses a non-empty --scratch, and
# fails naming the file when a chunk is corrupted or a JSON file is invalid.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

S="$WORK/store"
"$STAMP" init "$S" >/dev/null
drill() { "$STAMP" --store "$S" drill "$@"; }
log_lines() { if [ -e "$S/drill.log" ]; then wc -l <"$S/drill.log"; else echo 0; fi; }
no_scratch_left() { # STORE WHAT
        [ -z "$(find "$1/tmp" -maxdepth 1 -name 'drill-*')" ] ||
                { ls -la "$1/tmp" >&2; fail "$2: a scratch copy is left in $1/tmp"; }
}

# An absent log: nothing, exit 0.
expect_rc 0 drill --history
[ ! -s "$WORK/out" ] && [ ! -s "$WORK/err" ] || fail "--history of no drills printed something"

# --- A good snapshot: every file type, odd names, hardlinks, symlinks, xattrs,
# plus SQLite databases (one in WAL mode) and JSON files.
python3 "$LIB/gentree.py" "$WORK/src" --seed 21 >/dev/null 2>&1
mkdir -p "$WORK/src/app/db" "$WORK/src/app/cfg"
python3 - "$WORK/src/app" <<'PY'
import json, os, sqlite3, sys
d = sys.argv[1]
for name, wal in (("db/main.db", True), ("db/cache.sqlite3", False)):
    c = sqlite3.connect(os.path.join(d, name))
    if wal:
        c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT)")
    c.executemany("INSERT INTO t(body) VALUES(?)", [("row %d " % i * 10,) for i in range(3000)])
    c.commit()
    c.close()
json.dump({"projects": ["a", "b"], "n\u00e9": [1, 2.5, None]}, open(os.path.join(d, "cfg/registry.json"), "w"))
open(os.path.join(d, "cfg/empty-ish.json"), "w").write(" {} \n")
PY
GOOD=$("$STAMP" --store "$S" -q snapshot "$WORK/src")

expect_rc 0 drill
grep -q "drill of snapshot $GOOD: PASS" "$WORK/out" || { cat "$WORK/out"; fail "no PASS line"; }
grep -q "2 SQLite databases, 2 JSON files" "$WORK/out" || { cat "$WORK/out"; fail "databases or JSON files not checked"; }
no_scratch_left "$S" "a passing drill"
[ "$(log_lines)" = 1 ] || fail "the first drill did not log one line"

expect_rc 0 drill --json "$GOOD"
python3 - "$WORK/out" "$S/drill.log" "$GOOD" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["stamp"] == sys.argv[3] and d["result"] == "pass", d
assert d["problems"] == [] and d["problem_count"] == 0, d["problems"]
assert set(d["steps"]) == {"validate_s", "restore_s", "check_s", "compare_s"}, d["steps"]
assert all(isinstance(v, float) and v >= 0 for v in d["steps"].values()), d["steps"]
assert d["databases"] == 2 and d["json_files"] == 2, d
assert d["files"] > 50 and d["bytes"] > 100000, d
assert "/tmp/drill-" in d["scratch"] and d["kept"] is False, d
assert d["duration_s"] >= d["steps"]["restore_s"]
# The log line is the same object, plus "v" and "host".
lines = open(sys.argv[2], "rb").read().splitlines()
assert len(lines) == 2, lines
last = json.loads(lines[-1])
assert last["v"] == 1 and last["host"], last
assert {k: v for k, v in last.items() if k not in ("v", "host")} == d, (last, d)
PY
no_scratch_left "$S" "drill --json"

# --history: both drills, as a table and as JSON.
expect_rc 0 drill --history
[ "$(grep -c " $GOOD  pass " "$WORK/out")" = 2 ] || { cat "$WORK/out"; fail "--history does not show both drills"; }
head -1 "$WORK/out" | grep -q "STARTED.*STAMP.*RESULT.*DURATION.*PROBLEMS" || fail "--history has no header"
expect_rc 0 drill --history --json
python3 -c '
import json, sys
h = json.load(open(sys.argv[1]))
assert len(h) == 2 and all(e["result"] == "pass" and e["v"] == 1 for e in h), h
' "$WORK/out"

# A drill that died leaves its scratch directory unlocked: the next one removes it.
mkdir -p "$S/tmp/drill-dead01/sub"
echo x >"$S/tmp/drill-dead01/sub/f"
ln -s "$WORK/src" "$S/tmp/drill-dead01/out"
chmod 0500 "$S/tmp/drill-dead01/sub"
expect_rc 0 drill
grep -q "removed 1 scratch directory of interrupted drills" "$WORK/err" ||
        { cat "$WORK/err"; fail "the dead drill's scratch was not reported"; }
[ ! -e "$S/tmp/drill-dead01" ] || fail "the dead drill's scratch is still there"
[ -e "$WORK/src/app/cfg/registry.json" ] || fail "removing a scratch followed a symlink"
expect_rc 0 drill -q
[ ! -s "$WORK/out" ] && [ ! -s "$WORK/err" ] || fail "a quiet passing drill printed something"

# --keep: the copy stays (renamed out of later drills' way) and is an exact copy.
expect_rc 0 drill --keep -q
KEPT=$(cat "$WORK/out")
case "$KEPT" in "$S"/tmp/drill-*-kept) ;; *) fail "--keep -q printed '$KEPT'" ;; esac
[ -f "$KEPT/app/db/main.db" ] || fail "the kept copy lacks app/db/main.db"
# (app/db aside: its databases were captured through SQLite, without the
# empty -wal and -shm that reading them left in the source.)
python3 "$LIB/manifest.py" "$WORK/src" | grep -v '^app/db' >"$WORK/m.src"
python3 "$LIB/manifest.py" "$KEPT" | grep -v '^app/db' >"$WORK/m.kept"
diff "$WORK/m.src" "$WORK/m.kept" >"$WORK/d" || { head "$WORK/d"; fail "the kept copy differs from the source"; }
expect_rc 0 drill -q
[ -d "$KEPT" ] || fail "a later drill removed the kept copy"

# --scratch: a non-empty one is refused, a new one is made and removed, an
# empty one is emptied and kept, one inside the store is refused.
mkdir -p "$WORK/full" && echo data >"$WORK/full/keepme"
expect_rc 2 drill --scratch "$WORK/full"
expect_err "scratch directory '$WORK/full' is not empty"
[ -f "$WORK/full/keepme" ] || fail "a refused --scratch was touched"
expect_rc 0 drill --scratch "$WORK/new" -q
[ ! -e "$WORK/new" ] || fail "the --scratch it created was not removed"
mkdir "$WORK/empty"
expect_rc 0 drill --scratch "$WORK/empty" -q
[ -d "$WORK/empty" ] && [ -z "$(ls -A "$WORK/empty")" ] || fail "an empty --scratch was not emptied and kept"
expect_rc 2 drill --scratch "$S/tmp/mine"
expect_err "inside the store"
[ ! -e "$S/tmp/mine" ] || fail "the refused --scratch inside the store was left behind"
# On another filesystem: a warning, and the drill runs.
if [ -d /dev/shm ] && [ "$(stat -c %d /dev/shm)" != "$(stat -c %d "$S")" ]; then
        expect_rc 0 drill --scratch /dev/shm/stamp-drill-test.$$ -q
        grep -q "warning: scratch directory .* another filesystem" "$WORK/err" ||
                { cat "$WORK/err"; fail "no warning for a scratch on another filesystem"; }
        [ ! -e /dev/shm/stamp-drill-test.$$ ] || fail "the scratch in /dev/shm was left"
fi

# No room for the snapshot's files: not restored, the drill fails saying so.
if [ "$(id -u)" = 0 ]; then
        mkdir "$WORK/tiny"
        mount -t tmpfs -o size=256k tmpfs "$WORK/tiny"
        expect_rc 7 drill --scratch "$WORK/tiny/s" --json
        python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert [p["kind"] for p in d["problems"]] == ["no_space"] and d["problems"][0]["path"] is None, d
assert d["steps"]["restore_s"] is None, d["steps"]
' "$WORK/out"
        [ ! -e "$WORK/tiny/s" ] || fail "the scratch on the full filesystem was left"
        # A snapshot whose size does not fit but whose data does (a sparse
        # disk image): restored and checked, its holes left as holes.
        mkdir "$WORK/sparse-src"
        truncate -s 64M "$WORK/sparse-src/disk.img"
        head -c 20000 /dev/urandom | dd of="$WORK/sparse-src/disk.img" bs=4096 seek=1000 conv=notrunc status=none
        "$STAMP" init "$WORK/sparse-store" >/dev/null
        SPST=$("$STAMP" --store "$WORK/sparse-store" -q snapshot "$WORK/sparse-src")
        umount "$WORK/tiny" && mount -t tmpfs -o size=2m tmpfs "$WORK/tiny"
        expect_rc 0 "$STAMP" --store "$WORK/sparse-store" drill "$SPST" --scratch "$WORK/tiny/s" -q
        umount "$WORK/tiny"
fi

# The store's own tools ignore drill.log and the kept copy.
before=$(log_lines)
expect_rc 0 "$STAMP" --store "$S" verify
expect_rc 0 "$STAMP" --store "$S" gc
expect_rc 0 "$STAMP" --store "$S" reindex
expect_rc 0 "$STAMP" --store "$S" stats
expect_rc 0 "$STAMP" --store "$S" validate --read-data "$GOOD"
[ "$(log_lines)" = "$before" ] && [ -d "$KEPT" ] || fail "gc, verify or reindex touched drill.log or the kept copy"
rm -rf "$KEPT"

# --- An invalid JSON file in the snapshot: restored, then named.
mkdir -p "$WORK/src2/cfg"
echo '{"a": [1, 2,]}' >"$WORK/src2/cfg/broken.json"
echo '{"ok": true}' >"$WORK/src2/cfg/fine.json"
BADJSON=$("$STAMP" --store "$S" -q snapshot "$WORK/src2")
expect_rc 7 drill "$BADJSON"
grep -q "FAIL (1 problem)" "$WORK/out" || { cat "$WORK/out"; fail "no FAIL line"; }
grep -Eq "^  json_invalid +cfg/broken.json: not valid JSON" "$WORK/out" ||
        { cat "$WORK/out"; fail "the invalid JSON file is not named"; }
no_scratch_left "$S" "a failed drill"

# --- A corrupted chunk: metadata-level validation cannot see it, the restore
# stops at the file and the drill names it; --read-data names it first.
S2="$WORK/store2"
"$STAMP" init "$S2" >/dev/null
mkdir -p "$WORK/src3"
head -c 3000000 /dev/urandom >"$WORK/src3/blob"
echo small >"$WORK/src3/small"
BLOB=$("$STAMP" --store "$S2" -q snapshot "$WORK/src3")
flip_byte "$(ls -S "$S2"/packs/*/*.pack | head -1)" 0.5
expect_rc 0 "$STAMP" --store "$S2" validate "$BLOB"
expect_rc 7 "$STAMP" --store "$S2" drill --json
python3 - "$WORK/out" "$S2/drill.log" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["result"] == "fail" and d["problem_count"] == 1, d
p = d["problems"][0]
assert p["kind"] == "restore_failed" and p["path"] == "blob", p
assert "Bad message" in p["detail"], p
assert d["steps"]["restore_s"] is not None and d["steps"]["check_s"] is None, d["steps"]
# A failed drill is logged too.
last = json.loads(open(sys.argv[2], "rb").read().splitlines()[-1])
assert last["result"] == "fail" and last["problems"][0]["path"] == "blob", last
PY
expect_rc 7 "$STAMP" --store "$S2" drill
grep -Eq "^  restore_failed +blob: " "$WORK/out" || { cat "$WORK/out"; fail "the damaged file is not named"; }
grep -q "hint: 'stamp validate --read-data" "$WORK/out" || fail "no hint to list every damaged file"
expect_rc 7 "$STAMP" --store "$S2" drill --read-data --json
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert ("chunk_hash_mismatch", "blob") in {(p["kind"], p["path"]) for p in d["problems"]}, d
assert d["steps"]["restore_s"] is None, d["steps"]  # an invalid snapshot is not restored
' "$WORK/out"
no_scratch_left "$S2" "a drill stopped by a damaged chunk"

# --history: the failures show, and a damaged line is named, not fatal.
expect_rc 0 "$STAMP" --store "$S2" drill --history
[ "$(grep -c " FAIL " "$WORK/out")" = 3 ] || { cat "$WORK/out"; fail "--history does not show 3 failures"; }
printf '{"v": 1, "stamp": "garbage"}\n' >>"$S2/drill.log"
printf 'not json at all\n' >>"$S2/drill.log"
expect_rc 1 "$STAMP" --store "$S2" drill --history
[ "$(wc -l <"$WORK/err")" = 2 ] || { cat "$WORK/err"; fail "expected two warnings"; }
grep -q "drill.log line 4: damaged" "$WORK/err" || { cat "$WORK/err"; fail "line 4 not named"; }
grep -q "drill.log line 5: damaged" "$WORK/err" || { cat "$WORK/err"; fail "line 5 not named"; }
[ "$(grep -c " FAIL " "$WORK/out")" = 3 ] || fail "a damaged line hid the others"
expect_rc 1 "$STAMP" --store "$S2" drill --history --json
python3 -c 'import json,sys; assert len(json.load(open(sys.argv[1]))) == 3' "$WORK/out"
# The next drill still appends a readable line after them.
expect_rc 7 "$STAMP" --store "$S2" drill -q
expect_rc 1 "$STAMP" --store "$S2" drill --history --json
python3 -c 'import json,sys; assert len(json.load(open(sys.argv[1]))) == 4' "$WORK/out"

# Usage and lookups.
expect_rc 3 "$STAMP" --store "$WORK/nowhere" drill
expect_err "store '$WORK/nowhere': no such directory"
expect_rc 3 drill 20200101T000000Z
expect_err "does not exist"
expect_rc 2 drill a b
expect_rc 2 drill --history "$GOOD"
expect_rc 2 drill --bogus
"$STAMP" init "$WORK/empty-store" >/dev/null
expect_rc 3 "$STAMP" --store "$WORK/empty-store" drill
expect_err "has no snapshots yet"
expect_rc 0 drill --help
grep -q "^Usage: stamp \[--store DIR\] drill" "$WORK/out" || fail "--help"
echo "drill ok"

#!/bin/bash
# Databases that SQLite cannot capture are copied as plain bytes with a
# warning (corrupt, hot journal, locked, read-only directory); sidecars of
# captured databases are left out, others kept; the files cache never
# hides commits that live only in a -wal, and never mixes --sqlite modes.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

S="$WORK/store"
SRC="$WORK/src"
mkdir "$SRC"
"$STAMP" init "$S" >/dev/null

# sql DB STATEMENTS...: runs statements in python's sqlite3 (autocommit).
sql() {
        python3 - "$@" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
for s in sys.argv[2:]:
    c.execute(s)
c.close()
PY
}
# sql_leave_wal DB STATEMENTS...: like sql, then dies without a checkpoint,
# so what it committed stays in DB-wal (as when a service is killed).
sql_leave_wal() {
        python3 - "$@" <<'PY'
import os, sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("PRAGMA wal_autocheckpoint=0")
for s in sys.argv[2:]:
    c.execute(s)
os._exit(0)
PY
}
# query DB SQL: prints the first column of the first row.
query() {
        python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])' "$1" "$2"
}
snap() { # snap MODE REC.json SRC...: a snapshot; its exit code in $rc
        local mode=$1 out=$2
        shift 2
        rc=0
        "$STAMP" --store "$S" --json -q snapshot --sqlite="$mode" "$@" >"$out" 2>"$WORK/err" || rc=$?
        ST=$(json_field "$out" stamp)
}
rec() { # rec FILE EXPR: a python expression over the record r
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}
extract() { # extract STAMP PATH OUT ('-': stdout)
        if [ "$3" = - ]; then
                "$STAMP" --store "$S" cat "$1" "$2"
        else
                "$STAMP" --store "$S" cat "$1" "$2" >"$3"
        fi
}

# A small WAL database whose last commits are only in its -wal, a
# rollback-journal one, a file that only starts like a database, a -wal
# without a database, and a plain file.
sql "$SRC/plain.db" "CREATE TABLE t(x)" "INSERT INTO t VALUES (1)" "INSERT INTO t VALUES (2)" \
        "INSERT INTO t SELECT x + 2 FROM t" "INSERT INTO t SELECT x + 4 FROM t"
sql_leave_wal "$SRC/small.db" "CREATE TABLE t(x)" "INSERT INTO t VALUES (1)" "INSERT INTO t VALUES (2)"
[ -s "$SRC/small.db-wal" ] || fail "setup: small.db-wal is empty"
{ printf 'SQLite format 3\0'; head -c 5000 /dev/zero | tr '\0' 'x'; } >"$SRC/fake.db"
echo "not a wal" >"$SRC/orphan.db-wal"
echo notes >"$SRC/notes.txt"

snap auto "$WORK/a.json" "$SRC"
[ "$rc" = 1 ] || { cat "$WORK/err" >&2; fail "auto snapshot exited $rc, expected 1 (fake.db warning)"; }
grep -q "warning: fake.db: not captured through SQLite (file is not a database); stored as plain bytes" \
        "$WORK/err" || { cat "$WORK/err" >&2; fail "no warning for fake.db"; }
[ "$(rec "$WORK/a.json" 'r["sqlite"]')" = "['plain.db', 'small.db']" ] || fail "sqlite list: $(rec "$WORK/a.json" 'r["sqlite"]')"
[ "$(rec "$WORK/a.json" 'r["warning_count"]')" = 1 ] || fail "warning_count"
extract "$ST" small.db "$WORK/small.db"
[ "$(query "$WORK/small.db" "SELECT count(*) FROM t")" = 2 ] || fail "small.db lost the commits in its -wal"
extract "$ST" fake.db - | cmp -s - "$SRC/fake.db" || fail "fake.db not stored as its bytes"
extract "$ST" orphan.db-wal - | cmp -s - "$SRC/orphan.db-wal" || fail "a -wal without a database was not stored"
for f in small.db-wal small.db-shm; do
        expect_rc 3 "$STAMP" --store "$S" cat "$ST" "$f"
done
"$STAMP" --store "$S" show "$ST" >"$WORK/show"
grep -q "^databases captured through SQLite (2):" "$WORK/show" || { cat "$WORK/show"; fail "stamp show: databases"; }
grep -q "^  small.db$" "$WORK/show" || fail "stamp show: small.db"
grep -q "^warnings (1):" "$WORK/show" || fail "stamp show: warnings"
grep -q "^sqlite:  *auto" "$WORK/show" || fail "stamp show: mode"

# --sqlite=copy stores every file as its bytes, sidecars included.
snap copy "$WORK/c.json" "$SRC"
[ "$rc" = 0 ] || { cat "$WORK/err" >&2; fail "copy snapshot exited $rc"; }
[ "$(rec "$WORK/c.json" 'r["sqlite"]')" = "[]" ] || fail "copy mode captured databases"
extract "$ST" small.db-wal - | cmp -s - "$SRC/small.db-wal" || fail "copy mode: -wal not stored"
extract "$ST" plain.db - | cmp -s - "$SRC/plain.db" || fail "copy mode: plain.db not its bytes"

# A database given as a source itself.
snap auto "$WORK/s.json" "$SRC/plain.db" "$SRC/notes.txt"
[ "$(rec "$WORK/s.json" 'r["sqlite"]')" = "['plain.db']" ] || fail "a database source was not captured"

# The files cache. Both databases must be older than the two "racy" seconds.
rm "$SRC/fake.db" "$SRC/small.db"*
sql "$SRC/cached.db" "PRAGMA journal_mode=WAL" "CREATE TABLE t(x)" "INSERT INTO t VALUES (1)"
sleep 3 # whole seconds: cached.db must be 2 s older than the snapshot's start
snap auto "$WORK/1.json" "$SRC"
before=$(stat -c '%s %Y.%y %Z' "$SRC/cached.db")
# A commit that lives only in the -wal: the database file is not touched.
sql_leave_wal "$SRC/cached.db" "INSERT INTO t VALUES (2)"
[ "$(stat -c '%s %Y.%y %Z' "$SRC/cached.db")" = "$before" ] || fail "setup: cached.db itself changed"
snap auto "$WORK/2.json" "$SRC"
extract "$ST" cached.db "$WORK/cached.db"
[ "$(query "$WORK/cached.db" "SELECT count(*) FROM t")" = 2 ] ||
        fail "the files cache hid a commit that is only in the -wal"
# plain.db, unchanged: a copy-mode snapshot must store its bytes, not the
# captured copy the cache holds, and the next auto one capture it again.
extract "$ST" plain.db - | cmp -s - "$SRC/plain.db" && fail "setup: a captured copy equals the file"
snap copy "$WORK/3.json" "$SRC"
extract "$ST" plain.db - | cmp -s - "$SRC/plain.db" || fail "copy mode reused a captured copy from the cache"
snap auto "$WORK/4.json" "$SRC"
rec "$WORK/4.json" '"plain.db" in r["sqlite"]' | grep -q True || fail "auto mode reused a plain copy"
snap auto "$WORK/5.json" "$SRC"
rec "$WORK/5.json" '"plain.db" in r["sqlite"]' | grep -q True || fail "a cached capture is not listed"

# A hot journal (a writer killed mid-transaction): read-only SQLite cannot
# roll it back, so the database and its journal are stored as bytes.
mkdir "$WORK/hot"
python3 - "$WORK/hot/hot.db" <<'PY'
import os, sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("CREATE TABLE t(x)")
c.executemany("INSERT INTO t VALUES (?)", [(os.urandom(500),) for _ in range(400)])
c.execute("PRAGMA cache_size=2")
c.execute("BEGIN")
c.execute("UPDATE t SET x = randomblob(500)")
os._exit(0)
PY
[ -s "$WORK/hot/hot.db-journal" ] || fail "setup: no hot journal"
snap auto "$WORK/h.json" "$WORK/hot"
[ "$rc" = 1 ] || fail "hot journal: exit $rc"
grep -q "hot.db: not captured through SQLite (a hot journal must be rolled back first" "$WORK/err" ||
        { cat "$WORK/err"; fail "hot journal: no warning"; }
extract "$ST" hot.db-journal - | cmp -s - "$WORK/hot/hot.db-journal" || fail "the hot journal was not stored"
extract "$ST" hot.db - | cmp -s - "$WORK/hot/hot.db" || fail "hot.db not stored as bytes"

# A database another process holds in exclusive locking mode.
mkdir "$WORK/lk"
python3 - "$WORK/lk/locked.db" "$WORK/lk.ready" <<'PY' &
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA locking_mode=EXCLUSIVE")
c.execute("CREATE TABLE t(x)")
c.execute("INSERT INTO t VALUES (1)")  # takes the lock and keeps it
open(sys.argv[2], "w").close()
time.sleep(30)
PY
HOLDER=$!
at_exit "kill $HOLDER"
for _ in $(seq 100); do [ -e "$WORK/lk.ready" ] && break; sleep 0.1; done
snap auto "$WORK/l.json" "$WORK/lk"
kill "$HOLDER"
[ "$rc" = 1 ] || fail "locked database: exit $rc"
grep -q "locked.db: not captured through SQLite (database is locked" "$WORK/err" ||
        { cat "$WORK/err"; fail "locked database: no warning"; }

# A read-only directory: a WAL database nobody has open has no -wal and
# -shm, and read-only SQLite cannot create them.
mkdir "$WORK/rw" "$WORK/ro"
sql "$WORK/rw/ro.db" "PRAGMA journal_mode=WAL" "CREATE TABLE t(x)" "INSERT INTO t VALUES (1)"
if mount --bind "$WORK/rw" "$WORK/ro" 2>/dev/null && mount -o remount,ro,bind "$WORK/ro" 2>/dev/null; then
        snap auto "$WORK/r.json" "$WORK/ro"
        umount "$WORK/ro"
        [ "$rc" = 1 ] || fail "read-only directory: exit $rc"
        grep -q "ro.db: not captured through SQLite (cannot open it read-only" "$WORK/err" ||
                { cat "$WORK/err"; fail "read-only directory: no warning"; }
        extract "$ST" ro.db - | cmp -s - "$WORK/rw/ro.db" || fail "ro.db not stored as bytes"
else
        echo "skipped: read-only bind mount (needs root)"
fi
# A database with three names: the first one met (a/db) has no -wal beside
# it, a later one (c/db) has commits only in its -wal. Each name is
# captured with its own -wal: the later one must not take the first one's
# capture (nor, next time, its files-cache row) and lose those commits. A
# third name beside c/db (c/db2, held back until c/db is finished, then
# read itself) has no -wal of its own: only what the file holds.
mkdir -p "$WORK/hl/a" "$WORK/hl/c"
sql "$WORK/hl/c/db" "PRAGMA journal_mode=WAL" "CREATE TABLE t(x)" "INSERT INTO t VALUES (1)"
sql_leave_wal "$WORK/hl/c/db" "INSERT INTO t VALUES (2)" "INSERT INTO t VALUES (3)"
ln "$WORK/hl/c/db" "$WORK/hl/a/db"
ln "$WORK/hl/c/db" "$WORK/hl/c/db2"
[ -s "$WORK/hl/c/db-wal" ] || fail "setup: no commits in c/db-wal"
sleep 3 # not "racy" (whole seconds): the first snapshot puts a/db in the files cache
for n in 1 2; do
        [ "$n" = 2 ] && sql_leave_wal "$WORK/hl/c/db" "INSERT INTO t VALUES (4)"
        snap auto "$WORK/hl$n.json" "$WORK/hl"
        [ "$rc" = 0 ] || { cat "$WORK/err"; fail "hardlinked database, snapshot $n: exit $rc"; }
        extract "$ST" c/db "$WORK/hl-c$n.db"
        want=$((n + 2))
        [ "$(query "$WORK/hl-c$n.db" "SELECT count(*) FROM t")" = "$want" ] ||
                fail "hardlinked database, snapshot $n: c/db lost the commits in its -wal"
        extract "$ST" c/db2 "$WORK/hl-c2$n.db"
        [ "$(query "$WORK/hl-c2$n.db" "SELECT count(*) FROM t")" = 1 ] ||
                fail "hardlinked database, snapshot $n: c/db2 is not its file alone"
        [ "$(rec "$WORK/hl$n.json" 'sorted(r["sqlite"])')" = "['a/db', 'c/db', 'c/db2']" ] ||
                fail "hardlinked database, snapshot $n: sqlite = $(rec "$WORK/hl$n.json" 'r["sqlite"]')"
done
# A restore keeps what each name stored: c/db, of other content than a/db,
# is not made a link to it.
"$STAMP" --store "$S" -q restore --confirm-service-stopped --no-pre-snapshot "$ST" "$WORK/hl-r"
[ "$(query "$WORK/hl-r/c/db" "SELECT count(*) FROM t")" = 4 ] ||
        fail "hardlinked database: the restored c/db lost the commits of its -wal"
[ "$(query "$WORK/hl-r/a/db" "SELECT count(*) FROM t")" = 1 ] ||
        fail "hardlinked database: the restored a/db is not what a/db stored"
[ "$(query "$WORK/hl-r/c/db2" "SELECT count(*) FROM t")" = 1 ] ||
        fail "hardlinked database: the restored c/db2 is not what c/db2 stored"
# a/db and c/db2, both captured without a -wal, hold the same bytes: they
# are linked again, as one inode apart from c/db's (so, too, in drill).
ino() { stat -c %i "$WORK/hl-r/$1"; }
[ "$(ino a/db)" = "$(ino c/db2)" ] && [ "$(ino a/db)" != "$(ino c/db)" ] ||
        fail "hardlinked database: a/db, c/db2, c/db restored as inodes $(ino a/db) $(ino c/db2) $(ino c/db)"
"$STAMP" --store "$S" -q drill "$ST" || fail "hardlinked database: drill"
# The same when the first name met is the odd one out: a/db has commits in
# its -wal, c/db and c/db2 (none beside them) agree with each other.
mkdir -p "$WORK/hl2/a" "$WORK/hl2/c"
sql "$WORK/hl2/a/db" "PRAGMA journal_mode=WAL" "CREATE TABLE t(x)" "INSERT INTO t VALUES (1)"
sql_leave_wal "$WORK/hl2/a/db" "INSERT INTO t VALUES (2)"
ln "$WORK/hl2/a/db" "$WORK/hl2/c/db"
ln "$WORK/hl2/a/db" "$WORK/hl2/c/db2"
snap auto "$WORK/hl2.json" "$WORK/hl2"
"$STAMP" --store "$S" -q restore --confirm-service-stopped --no-pre-snapshot "$ST" "$WORK/hl2-r"
ino() { stat -c %i "$WORK/hl2-r/$1"; }
[ "$(query "$WORK/hl2-r/a/db" "SELECT count(*) FROM t")" = 2 ] &&
        [ "$(query "$WORK/hl2-r/c/db" "SELECT count(*) FROM t")" = 1 ] &&
        [ "$(ino c/db)" = "$(ino c/db2)" ] && [ "$(ino a/db)" != "$(ino c/db)" ] ||
        fail "hardlinked database, first name odd: a/db, c/db, c/db2 restored as inodes $(ino a/db) $(ino c/db) $(ino c/db2)"
"$STAMP" --store "$S" -q drill "$ST" || fail "hardlinked database, first name odd: drill"
[ -z "$(ls -A "$S/tmp")" ] || fail "temporary copies left in the store: $(ls "$S/tmp")"
echo "sqlite corners ok"

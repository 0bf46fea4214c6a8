#!/bin/bash
# --lock holds a service off (and times out with one clear error), --pre
# and --post run around the snapshot (--post always, --pre failing means
# no snapshot), --stdin-from stores a command's output or, if the command
# fails, no snapshot at all.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

S="$WORK/store"
SRC="$WORK/src"
mkdir -p "$SRC/db"
echo '{"projects": []}' >"$SRC/config.json"
echo "rows" >"$SRC/db/table.txt"
"$STAMP" init "$S" >/dev/null
count() { "$STAMP" --store "$S" list --short | wc -l; }
rec() { # rec FILE EXPR: a python expression over the record r
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}
held() { # held MODE SECONDS: holds flock on $WORK/ingest.lock in the background
        rm -f "$WORK/held"
        # One process (flock(1) would leave the lock with its child when killed).
        python3 -c 'import fcntl, sys, time
f = open(sys.argv[1], "a")
fcntl.flock(f, fcntl.LOCK_EX if sys.argv[2] == "x" else fcntl.LOCK_SH)
open(sys.argv[3], "w").close()
time.sleep(float(sys.argv[4]))' "$WORK/ingest.lock" "$1" "$WORK/held" "$2" &
        HOLDER=$!
        at_exit "kill $HOLDER"
        for _ in $(seq 100); do [ -e "$WORK/held" ] && break; sleep 0.05; done
        [ -e "$WORK/held" ] || fail "lock holder did not start"
}

# --lock: a holder delays the snapshot until it lets go.
held x 2
start=$(date +%s.%N)
"$STAMP" --store "$S" --json -q snapshot --lock "$WORK/ingest.lock" --lock-wait 30 "$SRC" >"$WORK/r.json"
waited=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$start" "$(date +%s.%N)")
wait "$HOLDER"
python3 -c "import sys; sys.exit(not float(sys.argv[1]) >= 1.0)" "$waited" ||
        fail "the snapshot did not wait for the lock ($waited s)"
[ "$(rec "$WORK/r.json" 'r["lock"]["mode"]')" = exclusive ] || fail "lock not recorded"
rec "$WORK/r.json" 'r["lock"]["waited_s"] >= 1.0' | grep -q True || fail "lock wait not recorded"
# ... gives one clear error when it does not, and no snapshot.
held x 10
n=$(count)
expect_rc 4 "$STAMP" --store "$S" snapshot --lock "$WORK/ingest.lock" --lock-wait 1 "$SRC"
expect_err "lock file '$WORK/ingest.lock' is still held by another process after 1 s (--lock-wait); no snapshot taken"
[ "$(count)" = "$n" ] || fail "a snapshot was taken without the lock"
kill "$HOLDER"
wait "$HOLDER" 2>/dev/null || true
# ... and shares a shared lock.
held s 10
"$STAMP" --store "$S" --json -q snapshot --lock "$WORK/ingest.lock" --lock-mode shared --lock-wait 0 \
        "$SRC" >"$WORK/r.json"
[ "$(rec "$WORK/r.json" 'r["lock"]["mode"]')" = shared ] || fail "shared lock not recorded"
kill "$HOLDER"
wait "$HOLDER" 2>/dev/null || true
expect_rc 2 "$STAMP" --store "$S" snapshot --lock-mode sometimes "$SRC"

# --pre and --post around a good snapshot; their stdout goes to stderr.
ST=$("$STAMP" --store "$S" -q snapshot --pre "echo pre-ran; echo pre >>'$WORK/log'" \
        --post "echo \"post \$STAMP_STATUS \$STAMP_STAMP \$STAMP_STORE\" >>'$WORK/log'" "$SRC" 2>"$WORK/err")
grep -q pre-ran "$WORK/err" || fail "--pre output not on stderr"
[ "$(cat "$WORK/log")" = "pre
post ok $ST $S" ] || { cat "$WORK/log"; fail "--pre/--post did not run in order with their environment"; }
"$STAMP" --store "$S" --json show "$ST" >"$WORK/r.json"
[ "$(rec "$WORK/r.json" '[(h["stage"], h["exit_status"]) for h in r["hooks"]]')" = "[('pre', 0), ('post', 0)]" ] ||
        fail "hooks not recorded: $(rec "$WORK/r.json" 'r.get("hooks")')"
"$STAMP" --store "$S" show "$ST" | grep -q "^post hook:   echo" || fail "stamp show: hooks"

# A failing --pre: no snapshot, and --post still runs (to restart the service).
rm -f "$WORK/log"
n=$(count)
expect_rc 6 "$STAMP" --store "$S" snapshot --pre "exit 3" --post "echo \"post \$STAMP_STATUS\" >>'$WORK/log'" "$SRC"
expect_err "--pre command failed (exit status 3); no snapshot taken"
[ "$(count)" = "$n" ] || fail "a snapshot was taken although --pre failed"
[ "$(cat "$WORK/log")" = "post failed" ] || fail "--post did not run after a failed --pre"
# --post runs after a failed snapshot too.
rm -f "$WORK/log"
expect_rc 3 "$STAMP" --store "$S" snapshot --post "echo \"post \$STAMP_STATUS\" >>'$WORK/log'" "$WORK/missing"
[ "$(cat "$WORK/log")" = "post failed" ] || fail "--post did not run after a failed snapshot"
# A failing --post leaves the snapshot, with a warning (exit 1) and its status recorded.
rc=0
"$STAMP" --store "$S" --json -q snapshot --post "exit 5" "$SRC" >"$WORK/r.json" 2>"$WORK/err" || rc=$?
[ "$rc" = 1 ] || fail "failing --post: exit $rc"
grep -q "warning: --post command failed (exit status 5)" "$WORK/err" || fail "failing --post: no warning"
[ "$(rec "$WORK/r.json" 'r["hooks"][0]["exit_status"]')" = 5 ] || fail "failing --post: not recorded"

# --stdin-from: a command that fails, or dies, leaves no snapshot.
n=$(count)
expect_rc 6 "$STAMP" --store "$S" snapshot --stdin-from "echo partial; exit 2" --stdin-name dump.sql "$SRC"
expect_err "--stdin-from command failed (exit status 2); no snapshot taken"
expect_rc 6 "$STAMP" --store "$S" snapshot --stdin-from 'echo partial; kill -9 $$' --stdin-name dump.sql "$SRC"
expect_err "--stdin-from command failed (exit status 137); no snapshot taken"
[ "$(count)" = "$n" ] || fail "a failed export left a snapshot"
# Bad names, and names taken by the sources, are refused before the command runs.
for bad in ../dump.sql /dump.sql a//b a/./b a/ ""; do
        expect_rc 2 "$STAMP" --store "$S" snapshot --stdin-from "touch '$WORK/ran'" --stdin-name "$bad" "$SRC"
done
expect_rc 2 "$STAMP" --store "$S" snapshot --stdin-from "touch '$WORK/ran'" --stdin-name config.json "$SRC"
expect_err "--stdin-name 'config.json': exists in the sources"
expect_rc 2 "$STAMP" --store "$S" snapshot --stdin-from "touch '$WORK/ran'" --stdin-name config.json/x "$SRC"
expect_rc 2 "$STAMP" --store "$S" snapshot --stdin-from "touch '$WORK/ran'" "$SRC"
[ ! -e "$WORK/ran" ] || fail "the command ran although its name was refused"
# A large export streams into the snapshot, in a new directory or an existing one.
head -c 30000000 /dev/urandom >"$WORK/export"
"$STAMP" --store "$S" --json -q snapshot --stdin-from "cat '$WORK/export'" --stdin-name exports/day/app.sql \
        "$SRC" >"$WORK/r.json"
ST=$(json_field "$WORK/r.json" stamp)
"$STAMP" --store "$S" cat "$ST" exports/day/app.sql | cmp -s - "$WORK/export" || fail "the export differs"
[ "$(rec "$WORK/r.json" '(r["stdin"]["path"], r["stdin"]["bytes"])')" = "('exports/day/app.sql', 30000000)" ] ||
        fail "stdin not recorded"
ST=$("$STAMP" --store "$S" -q snapshot --stdin-from "echo dump" --stdin-name db/dump.sql "$SRC")
[ "$("$STAMP" --store "$S" cat "$ST" db/dump.sql)" = dump ] || fail "export into an existing directory"
[ "$("$STAMP" --store "$S" cat "$ST" db/table.txt)" = rows ] || fail "the directory lost its files"
# With several sources, into one of them.
mkdir "$WORK/other"
ST=$("$STAMP" --store "$S" -q snapshot --stdin-from "echo two" --stdin-name src/db/two.sql "$SRC" "$WORK/other")
[ "$("$STAMP" --store "$S" cat "$ST" src/db/two.sql)" = two ] || fail "export into a source"
[ "$("$STAMP" --store "$S" cat "$ST" src/db/table.txt)" = rows ] || fail "the source lost its files"
if command -v sqlite3 >/dev/null; then
        python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("CREATE TABLE t(x)"); c.execute("INSERT INTO t VALUES (42)"); c.commit()' "$WORK/app.db"
        ST=$("$STAMP" --store "$S" -q snapshot --stdin-from "sqlite3 '$WORK/app.db' .dump" --stdin-name app.sql "$SRC")
        "$STAMP" --store "$S" cat "$ST" app.sql | grep -q "INSERT INTO t VALUES(42);" || fail "sqlite3 .dump export"
fi
echo "hooks ok"

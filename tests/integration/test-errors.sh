#!/bin/bash
# Bad input gets one clear line naming the thing and the reason, and a
# documented non-zero exit code.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

S="$WORK/store"
mkdir "$WORK/src"
echo data >"$WORK/src/file"

# --help for the tool and every verb; unknown options and verbs.
"$STAMP" --help | grep -q "Exit codes" || fail "stamp --help"
for v in init snapshot list show cat forget gc stats reindex; do
        "$STAMP" "$v" --help | grep -q "^Usage: stamp" || fail "stamp $v --help"
        expect_rc 2 "$STAMP" "$v" --no-such-option
done
# Refused options are named, with the reason, on one line and a hint (not
# getopt's own line as well).
usage_says() { # LINE ARGS...
        local line=$1
        shift
        expect_rc 2 "$STAMP" "$@"
        [ "$(head -n 1 "$WORK/err")" = "stamp: $line" ] && [ "$(wc -l <"$WORK/err")" = 2 ] &&
                grep -qx "Try 'stamp $1 --help'." "$WORK/err" || { cat "$WORK/err" >&2; fail "stamp $*"; }
}
usage_says "unknown option '--no-such-option'" list --no-such-option=3
usage_says "unknown option '-z'" snapshot -qz "$WORK/src"
usage_says "option '--store' needs a value" list --store
usage_says "option '-t' needs a value" snapshot "$WORK/src" -t
usage_says "option '--help' takes no value" gc --help=yes
usage_says "option '--s' is ambiguous" list --s x
usage_says "unknown option '--bogus'" prune --bogus
# An unknown short option inside a cluster, after a long one: named itself.
usage_says "unknown option '-z'" list --quiet -zq
usage_says "unknown option '-z'" prune --keep-daily=3 -zq
expect_rc 2 "$STAMP" --store
[ "$(cat "$WORK/err")" = "stamp: option '--store' needs a value
Try 'stamp --help'." ] || { cat "$WORK/err" >&2; fail "stamp --store"; }
expect_rc 2 "$STAMP" frobnicate
expect_rc 2 "$STAMP"

# No store given, a missing store, a directory that is not a store.
expect_rc 2 env -u STAMP_STORE "$STAMP" list
expect_err "no store given"
expect_rc 3 "$STAMP" --store "$WORK/nope" list
expect_err "store '$WORK/nope': no such directory"
mkdir "$WORK/plain"
expect_rc 3 "$STAMP" --store "$WORK/plain" list
expect_err "not a stampfs store"
STAMP_STORE="$WORK/plain" expect_rc 3 "$STAMP" list

# With --json, a failure before the command's document is one JSON document
# too: the error line and the exit status, on stdout; stderr is unchanged.
json_fails() { # CODE MESSAGE-PART ARGS...: the document names both
        local code=$1 part=$2 rc=0
        shift 2
        "$@" >"$WORK/out.json" 2>"$WORK/err" || rc=$?
        [ "$rc" = "$code" ] || fail "$*: exit $rc, expected $code"
        python3 - "$WORK/out.json" "$code" "$part" <<'EOF2' || fail "$*: $(cat "$WORK/out.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d == {"error": d["error"], "exit_status": int(sys.argv[2])}, d
assert sys.argv[3] in d["error"], d
EOF2
        grep -q "^stamp: .*$part" "$WORK/err" || fail "$*: stderr lost its line"
}
json_fails 3 "no such directory" "$STAMP" --store "$WORK/nope" --json list
json_fails 3 "not a stampfs store" "$STAMP" --json --store "$WORK/plain" verify
json_fails 2 "no store given" env -u STAMP_STORE "$STAMP" stats --json
json_fails 2 "unknown command 'frobnicate'" "$STAMP" --json frobnicate
json_fails 2 "unknown option" "$STAMP" list --json --no-such-option
json_fails 2 "unknown option" "$STAMP" list --no-such-option --json # before getopt reached --json
json_fails 2 "unknown option" "$STAMP" --no-such-option --json list
json_fails 2 "unknown option" "$STAMP" --no-such-option list --json # a global option refused
# "--json" as an option's value is no --json; cat never writes a document.
for args in "--store --json list --bogus" "snapshot -t --json --bogus $WORK/src" \
            "--store $WORK/nope --bogus cat latest f --json" "cat --bogus --json"; do
        # shellcheck disable=SC2086 # word splitting wanted
        [ -z "$("$STAMP" $args 2>/dev/null)" ] || fail "stamp $args: an error document"
done
json_fails 3 "no such directory" "$STAMP" --store "$WORK/nope" list --js # a prefix getopt takes
# Not a failure, or not --json: nothing more on stdout. "--json" as the
# value of --store is no --json; cat writes the file's bytes, never JSON.
[ -z "$("$STAMP" --store "$WORK/nope" list 2>/dev/null)" ] || fail "an error document without --json"
[ -z "$("$STAMP" --store --json list 2>/dev/null)" ] || fail "an error document for --store --json"
[ -z "$("$STAMP" --json --store "$WORK/nope" cat latest f 2>/dev/null)" ] ||
        fail "an error document from stamp cat --json"

# init refuses a non-empty directory and bad options.
expect_rc 6 "$STAMP" init "$WORK/src"
expect_err "not empty"
expect_rc 2 "$STAMP" init --chunk-avg 1000 "$WORK/bad"
"$STAMP" init "$S" >/dev/null
# Missing parents are made (0700), as for `copy --init ssh://host/new/dir`;
# a parent that is a file is exit 6, the code for "cannot be created".
expect_rc 0 "$STAMP" init "$WORK/new/parents/store"
[ "$(stat -c %a "$WORK/new/parents")" = 700 ] || fail "a made parent is not 0700"
expect_rc 0 "$STAMP" --store "$WORK/new/parents/store" list
touch "$WORK/afile"
expect_rc 6 "$STAMP" init "$WORK/afile/store"
expect_err "Not a directory"

# A corrupt or unsupported config.
cp -a "$S" "$WORK/s2"
echo '{"format":"stampfs"' >"$WORK/s2/config"
expect_rc 5 "$STAMP" --store "$WORK/s2" list
expect_err "its config is damaged"
# One hex digit of the secret changed: caught by secret_check, before any
# snapshot names chunks with it. A config from before secret_check opens.
for what in flip drop; do
        rm -rf "$WORK/s4" && cp -a "$S" "$WORK/s4"
        python3 - "$WORK/s4/config" $what <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
assert len(c["secret_check"]) == 32, c
if sys.argv[2] == "flip":
    c["secret"] = ("1" if c["secret"][0] != "1" else "2") + c["secret"][1:]
else:
    del c["secret_check"]
open(sys.argv[1], "w").write(json.dumps(c))
PY
        if [ $what = flip ]; then
                expect_rc 5 "$STAMP" --store "$WORK/s4" snapshot "$WORK/src"
                expect_err "a secret that does not match its check"
        else
                expect_rc 0 "$STAMP" --store "$WORK/s4" list
        fi
done
sed -i 's/"version": *1/"version":\t99/' "$S/config.orig" 2>/dev/null || true
python3 - "$S/config" "$WORK/s3" <<'PY'
import json, sys, shutil, os
shutil.copytree(os.path.dirname(sys.argv[1]), sys.argv[2])
c = json.load(open(sys.argv[1])); c["version"] = 99
open(os.path.join(sys.argv[2], "config"), "w").write(json.dumps(c))
PY
expect_rc 5 "$STAMP" --store "$WORK/s3" list
expect_err "unsupported format version"

# Sources: missing, duplicate basenames.
expect_rc 3 "$STAMP" --store "$S" snapshot "$WORK/missing"
expect_err "source '$WORK/missing': No such file or directory"
mkdir -p "$WORK/x/data" "$WORK/y/data"
expect_rc 2 "$STAMP" --store "$S" snapshot "$WORK/x/data" "$WORK/y/data"
expect_err "same name"
expect_rc 2 "$STAMP" --store "$S" snapshot
[ -z "$("$STAMP" --store "$S" list --short)" ] || fail "a failed snapshot left a record"

# Stamps and paths that do not exist.
ST=$("$STAMP" --store "$S" -q snapshot "$WORK/src")
expect_rc 3 "$STAMP" --store "$S" show 20200101T000000Z
expect_err "snapshot '20200101T000000Z' does not exist"
expect_rc 2 "$STAMP" --store "$S" show ../../etc/passwd
expect_err "is not a stamp"
expect_rc 3 "$STAMP" --store "$S" cat "$ST" no/such/file
expect_err "does not exist in snapshot"
expect_rc 3 "$STAMP" --store "$S" cat "$ST" file/below
# Several sources are each stored under their name: "/" has none.
expect_rc 2 "$STAMP" --store "$S" snapshot / "$WORK/src"
expect_err "source '/': with several sources each is stored under its own name, and this one has none"
# Numbers are whole and in range: no atoi() turning 'abc' into 0, no wrap.
for bad in abc -5 4294967296 1x ""; do
        expect_rc 2 "$STAMP" --store "$S" gc --dry-run --lock-timeout "$bad"
        expect_rc 2 "$STAMP" --store "$S" forget --lock-timeout "$bad" "$ST"
        expect_rc 2 "$STAMP" --store "$S" snapshot --lock-timeout "$bad" "$WORK/src"
done
grep -q "is not a number of seconds (0 to 10000000)" "$WORK/err" || fail "--lock-timeout message"
expect_rc 2 "$STAMP" --store "$S" snapshot --threads 4294967297 "$WORK/src"
# A name with a newline and a terminal escape: one line, escaped; no forged
# line, no raw escape reaching the terminal.
expect_rc 3 "$STAMP" --store "$S" cat "$ST" $'evil\nstamp: all is well\e[31m'
expect_err "'evil\\\\nstamp: all is well\\\\x1b\\[31m' does not exist in snapshot"
expect_rc 2 "$STAMP" --store "$S" cat "$ST" /
expect_err "not a regular file"

# Two snapshots in the same second still get distinct stamps.
A=$("$STAMP" --store "$S" -q snapshot "$WORK/src")
B=$("$STAMP" --store "$S" -q snapshot "$WORK/src")
[ "$A" != "$B" ] || fail "same stamp twice"

# An unreadable file and directory inside the source: reported, recorded,
# exit 1 (setpriv is util-linux, always there).
chmod 755 "$WORK"
U="$WORK/user"
mkdir -p "$U/src/sub" "$U/src/closed"
echo secret >"$U/src/sub/secret"
echo open >"$U/src/open"
echo inside >"$U/src/closed/inside"
mkdir "$U/src/ha" "$U/src/hb" && echo linked >"$U/src/ha/x" && ln "$U/src/ha/x" "$U/src/hb/x"
chown -R nobody "$U"
chmod 000 "$U/src/sub/secret" "$U/src/closed" "$U/src/ha/x"
setpriv --reuid=nobody --regid=nogroup --clear-groups "$STAMP" init "$U/store" >/dev/null
rc=0
setpriv --reuid=nobody --regid=nogroup --clear-groups \
        "$STAMP" --store "$U/store" --json snapshot "$U/src" >"$WORK/rec.json" 2>"$WORK/err" || rc=$?
[ "$rc" = 1 ] || fail "unreadable file: exit $rc, expected 1"
grep -q "warning: sub/secret: Permission denied" "$WORK/err" || fail "unreadable file not reported"
grep -q "warning: closed: Permission denied" "$WORK/err" || fail "unreadable directory not reported"
[ "$(json_field "$WORK/rec.json" error_count)" = 4 ] || fail "record error_count"  # ha/x, hb/x too
ST=$(json_field "$WORK/rec.json" stamp)
[ "$(setpriv --reuid=nobody --regid=nogroup --clear-groups "$STAMP" --store "$U/store" cat "$ST" open)" = open ] ||
        fail "the readable file was not stored"
# Restored over the live data, what could not be read is kept as it is,
# with a warning each (exit 1), never replaced by the empty stand-in.
mkdir -p "$U/t/sub" "$U/t/closed" "$U/t/hb"
echo IMPORTANT >"$U/t/sub/secret"
echo IMPORTANT >"$U/t/closed/inside"
echo IMPORTANT >"$U/t/hb/x" # ha/x is not there: restored empty, and hb/x no link to it
expect_rc 1 "$STAMP" --store "$U/store" restore "$ST" "$U/t" --confirm-service-stopped --no-pre-snapshot
grep -q "sub/secret: could not be read when the snapshot was taken (stored empty): the file in TARGET is kept" \
        "$WORK/err" || { cat "$WORK/err"; fail "restore: unreadable file not warned about"; }
grep -q "closed: could not be listed when the snapshot was taken" "$WORK/err" || fail "restore: unreadable dir"
[ "$(cat "$U/t/sub/secret")" = IMPORTANT ] || fail "restore emptied a file the snapshot could not read"
[ "$(cat "$U/t/closed/inside")" = IMPORTANT ] || fail "restore emptied a directory the snapshot could not list"
[ "$(cat "$U/t/hb/x")" = IMPORTANT ] || fail "restore linked live data over with an unreadable hardlink's stand-in"
[ "$(cat "$U/t/open")" = open ] || fail "restore: the readable file"
# Into an empty target they come back empty, said so.
expect_rc 1 "$STAMP" --store "$U/store" restore "$ST" "$U/t2" --confirm-service-stopped
grep -q "sub/secret: could not be read when the snapshot was taken: restored empty" "$WORK/err" ||
        fail "restore: an unreadable file restored empty without a warning"
[ -f "$U/t2/sub/secret" ] && [ ! -s "$U/t2/sub/secret" ] || fail "restore: the empty stand-in"

# Metadata the format cannot hold is said, never dropped or wrapped in
# silence: more than 256 extended attributes on one file (all kept), times
# after 2262 or before 1677 (the nearest held, a warning). On tmpfs, which
# takes all of these.
mkdir "$WORK/big"
mount -t tmpfs -o size=16m none "$WORK/big"
echo m >"$WORK/big/many"
for i in $(seq 1 300); do setfattr -n "trusted.n$i" -v "v$i" "$WORK/big/many"; done
echo t >"$WORK/big/t2400" && touch -d '2400-01-01 00:00:00 UTC' "$WORK/big/t2400"
echo t >"$WORK/big/t1600" && touch -d '1600-01-01 00:00:00 UTC' "$WORK/big/t1600"
expect_rc 1 "$STAMP" --store "$S" --json snapshot "$WORK/big"
cp "$WORK/out" "$WORK/big.json"
BT=$(json_field "$WORK/big.json" stamp)
python3 - "$WORK/big.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
warns = r["warnings"]
assert r["errors"] == [], r["errors"]
assert sum("modification time outside 1677-2262" in w for w in warns) == 2, warns
PY
# Restored on tmpfs too: ext4 holds neither 300 attributes nor 1677.
expect_rc 0 "$STAMP" --store "$S" restore "$BT" "$WORK/big/back" --confirm-service-stopped --path many
expect_rc 0 "$STAMP" --store "$S" restore "$BT" "$WORK/big/back" --confirm-service-stopped --no-pre-snapshot --path t2400
expect_rc 0 "$STAMP" --store "$S" restore "$BT" "$WORK/big/back" --confirm-service-stopped --no-pre-snapshot --path t1600
[ "$(getfattr -m - --absolute-names "$WORK/big/back/many" 2>/dev/null | grep -c '^trusted\.n')" = 300 ] ||
        fail "xattrs past 256 were dropped"
[ "$(stat -c %Y "$WORK/big/back/t2400")" -gt "$(date -d '2262-01-01' +%s)" ] ||
        fail "a time after 2262 wrapped to $(stat -c %y "$WORK/big/back/t2400")"
[ "$(stat -c %Y "$WORK/big/back/t1600")" -lt "$(date -d '1678-01-01' +%s)" ] ||
        fail "a time before 1677 wrapped to $(stat -c %y "$WORK/big/back/t1600")"
umount "$WORK/big"

# The lock: a second writer waits, then says who holds it.
python3 - "$S/lock" "$WORK/locked" <<'PY' &
import fcntl, sys, time
f = open(sys.argv[1], "r+")
fcntl.flock(f, fcntl.LOCK_EX)
f.write("pid 4242: test holder\n"); f.flush()
open(sys.argv[2], "w").close()
time.sleep(4)
PY
holder=$!
for _ in $(seq 100); do [ -e "$WORK/locked" ] && break; sleep 0.1; done
[ -e "$WORK/locked" ] || fail "lock holder did not start"
expect_rc 4 "$STAMP" --store "$S" snapshot --lock-timeout 1 "$WORK/src"
expect_err "locked by pid 4242: test holder"
wait "$holder"
"$STAMP" --store "$S" -q snapshot --lock-timeout 0 "$WORK/src" >/dev/null
# A missing index.db: readers say so; the next snapshot rebuilds it from packs and records.
rm "$S/index.db"
expect_rc 5 "$STAMP" --store "$S" cat "$A" file
expect_err "index.db is missing or empty"
"$STAMP" --store "$S" -q snapshot "$WORK/src" >/dev/null
[ "$("$STAMP" --store "$S" cat "$A" file)" = data ] || fail "index not rebuilt"
# An empty index.db (a truncated copy) is a missing one, not an index that
# knows no object ("file does not exist", "tree_missing").
: >"$S/index.db" && rm -f "$S/index.db-wal" "$S/index.db-shm"
expect_rc 5 "$STAMP" --store "$S" cat "$A" file
expect_err "index.db is missing or empty"
expect_rc 5 "$STAMP" --store "$S" validate "$A"
"$STAMP" --store "$S" -q snapshot "$WORK/src" >/dev/null
[ "$("$STAMP" --store "$S" cat "$A" file)" = data ] || fail "empty index not rebuilt"

# A store whose tmp/ is a symlink: refused (5), and the files it points at
# stay (recovery used to delete them); so for snapshots/ and packs/.
for sub in tmp snapshots packs; do
        rm -rf "$WORK/lay" "$WORK/elsewhere" && cp -a "$S" "$WORK/lay" && mkdir "$WORK/elsewhere"
        echo keep >"$WORK/elsewhere/notes.txt"
        cp -a "$WORK/lay/$sub/." "$WORK/elsewhere/" && rm -rf "$WORK/lay/$sub"
        ln -s "$WORK/elsewhere" "$WORK/lay/$sub"
        expect_rc 5 "$STAMP" --store "$WORK/lay" snapshot "$WORK/src"
        expect_err "its packs/, snapshots/ or tmp/ is a symlink or not a directory; refusing"
        expect_rc 5 "$STAMP" --store "$WORK/lay" list
        rm -rf "$WORK/like"
        expect_rc 5 "$STAMP" init --like "$WORK/lay" "$WORK/like"
        expect_err "store '$WORK/lay': its packs/, snapshots/ or tmp/ is a symlink"
        [ -f "$WORK/elsewhere/notes.txt" ] || fail "a symlinked $sub/: a file outside the store was deleted"
done
# A record that is a symlink or a directory is not skipped: gc refuses
# (it used to skip that snapshot and delete its data), verify names it.
for kind in symlink dir; do
        rm -rf "$WORK/lay" && cp -a "$S" "$WORK/lay"
        mv "$WORK/lay/snapshots/$A.json" "$WORK/rec-$kind.json"
        if [ $kind = symlink ]; then
                ln -s "$WORK/rec-$kind.json" "$WORK/lay/snapshots/$A.json"
        else
                mkdir "$WORK/lay/snapshots/$A.json"
        fi
        before=$(du -sb "$WORK/lay/packs" | cut -f1)
        expect_rc 5 "$STAMP" --store "$WORK/lay" gc --max-unused 0
        expect_err "refusing to collect garbage: snapshot '$A': record unreadable"
        [ "$(du -sb "$WORK/lay/packs" | cut -f1)" = "$before" ] || fail "gc deleted data of a $kind record"
        expect_rc 7 "$STAMP" --store "$WORK/lay" verify
        grep -q "^damaged snapshots: $A" "$WORK/out" || fail "verify does not name a $kind record"
done
# A symlink with a pack's name under packs/ is not a pack "the next
# snapshot indexes": stats says what it is and what to do.
rm -rf "$WORK/lay" && cp -a "$S" "$WORK/lay"
pk=$(cd "$WORK/lay" && ls packs/*/*.pack | head -1)
cp "$WORK/lay/$pk" "$WORK/outside.pack"
ln -s "$WORK/outside.pack" "$WORK/lay/$(dirname "$pk")/0000000000000000000000000000000a.pack"
"$STAMP" --store "$WORK/lay" stats >"$WORK/out"
grep -q "^NOT FILES: *1 entries under packs/.*move them out of the store" "$WORK/out" ||
        fail "stats: a symlinked pack"
! grep -q "^unindexed" "$WORK/out" || fail "stats: a symlinked pack counted as unindexed"
"$STAMP" --store "$WORK/lay" --json stats | grep -q '"unindexed_packs": 0, "not_file_packs": 1,' ||
        fail "stats --json: a symlinked pack"
echo "errors ok"

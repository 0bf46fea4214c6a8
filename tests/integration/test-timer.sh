#!/bin/bash
# contrib/systemd: what stamp-snapshot@.timer starts, end to end, without
# systemd. lib/unit_exec.py reads the built stamp-snapshot@.service and runs
# its ExecStart= lines as systemd would (%i, EnvironmentFile=, $VAR and
# ${VAR}, SuccessExitStatus=, and the unit's CapabilityBoundingSet= and
# NoNewPrivileges= through setpriv) with the installed stamp's path mapped
# to the built one. The configuration names two sources owned by another
# user: a service directory with a database written without pause by that
# user, a database at rest, excluded entries and an ingestion lock; hooks;
# retention; and a copy to a second store. Before the first run the store
# gets a history of older snapshots (real snapshots whose records are moved
# back in time) so that retention has something to do. Then the sequence
# runs twice, and after each run:
#   - exactly one new snapshot, with the hooks run around it;
#   - every snapshot left validates with --read-data, and the new record
#     says its own check passed;
#   - the snapshots left are exactly those lib/prune_oracle.py keeps;
#   - the newest copy of the live database passes integrity_check, is one
#     consistent state and holds every commit made before the run began;
#   - the database at rest was captured through SQLite and its new -wal and
#     -shm belong to its owner, who can still write to it;
#   - excluded entries are not in the snapshot;
#   - nothing is left for gc, and the store verifies;
#   - the second store has every snapshot of the first, each validating
#     with --read-data there, with the same bytes.
# A third run with COPY_DEST empty skips the copy step and still succeeds; a
# fourth copies to an ssh:// destination (through a stand-in for ssh).
# Then stamp-prune@.service prunes the first copy by rules of its own, and
# a fifth run copies only its new snapshot there.
# `systemd-analyze verify` checks every unit first, where it is installed.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
: "${UNITDIR:?UNITDIR must point at the configured units (build/contrib/systemd)}"
: "${STAMP_BINDIR:?STAMP_BINDIR must be the bindir the units name}"

UNIT="$UNITDIR/stamp-snapshot@.service"
SVC=65534 # the service's user and group (nobody, nogroup)
chmod 755 "$WORK"

# --- The units pass systemd's own checks (with the built binaries in place
# of the installed ones, which verify requires to exist).
if command -v systemd-analyze >/dev/null; then
        mkdir "$WORK/units"
        for f in "$UNITDIR"/*.service "$UNITDIR"/*.timer; do
                sed -e "s|$STAMP_BINDIR/stamp |$STAMP |; s|$STAMP_BINDIR/stamp\$|$STAMP|" \
                        -e "s|$STAMP_BINDIR/stampfs |$STAMP |" "$f" >"$WORK/units/$(basename "$f")"
        done
        for u in stamp-snapshot@test.service stamp-snapshot@test.timer stamp-drill@test.service \
                stamp-drill@test.timer stamp-prune@test.service stamp-prune@test.timer \
                stampfs@test.service; do
                systemd-analyze verify --man=no "$WORK/units/$u" >"$WORK/verify" 2>&1 ||
                        { cat "$WORK/verify" >&2; fail "systemd-analyze verify $u"; }
                [ ! -s "$WORK/verify" ] || { cat "$WORK/verify" >&2; fail "systemd-analyze verify $u warns"; }
                case $u in
                *.service)
                        systemd-analyze security --offline=yes "$WORK/units/$u" 2>/dev/null |
                                grep "Overall exposure" || true ;;
                esac
        done
else
        echo "systemd-analyze not installed: units not verified"
fi

# --- The service's data, owned by the service's user.
APP="$WORK/srv/app"
REG="$WORK/srv/registry"
mkdir -p "$APP/db" "$APP/notes" "$APP/vectors" "$APP/cache" "$REG" "$WORK/run" "$WORK/offsite"
echo '{"name": "app", "port": 8100}' >"$APP/config.json"
echo '{"projects": ["p01", "p05"]}' >"$REG/registry.json"
for i in 1 2 3; do
        head -c 300000 /dev/urandom >"$APP/vectors/seg-$i.bin"
        echo "note $i" >"$APP/notes/note-$i.md"
done
echo "rebuildable" >"$APP/cache/embeddings.bin"
echo "scratch" >"$APP/upload.tmp"
python3 - "$APP/db/rest.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("PRAGMA journal_mode=wal")
c.execute("CREATE TABLE t(x)")
c.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
c.commit()
c.close()  # the last connection: the -wal is checkpointed and removed
PY
[ ! -e "$APP/db/rest.db-wal" ] || fail "rest.db still has a -wal"
touch "$APP/ingest.lock"
chown -R "$SVC:$SVC" "$WORK/srv/app" "$WORK/run"
chmod -R go-rwx "$APP"

# The service runs the system's python3: another user's (pyenv's) may be out of its reach.
as_service() {
        setpriv --reuid "$SVC" --regid "$SVC" --clear-groups "$@"
}
as_service /usr/bin/python3 "$LIB/sqlite-writer.py" "$APP/db/app.db" "$WORK/run/ready" --rows 5000 \
        --rate 60 --seconds 900 >"$WORK/writer.log" 2>&1 &
WRITER=$!
at_exit "kill $WRITER"
for _ in $(seq 600); do [ -e "$WORK/run/ready" ] && break; sleep 0.1; done
[ -e "$WORK/run/ready" ] || { cat "$WORK/writer.log" >&2; fail "the writer did not start"; }

# --- The store, and a history of older snapshots (2 on one day).
S="$WORK/store"
D="$WORK/offsite/store"
"$STAMP" init "$S" >/dev/null
for i in 1 2 3 4 5 6; do
        echo "history $i" >"$APP/notes/history.md"
        head -c 100000 /dev/urandom >"$APP/vectors/seg-$i.bin"
        "$STAMP" --store "$S" -q snapshot "$APP" "$REG" >/dev/null
        sleep 1.1 # stamps have one-second resolution
done
python3 - "$S" <<'PY'
import datetime as dt, json, os, sys
d = os.path.join(sys.argv[1], "snapshots")
today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0,
                                                 tzinfo=None)
back = [today - dt.timedelta(days=30, hours=-12), today - dt.timedelta(days=15, hours=-12),
        today - dt.timedelta(days=9, hours=-12), today - dt.timedelta(days=8, hours=-1),
        today - dt.timedelta(days=8, hours=-2), today - dt.timedelta(days=2, hours=-12)]
for name, t in zip(sorted(os.listdir(d)), back):
    rec = json.load(open(os.path.join(d, name)))
    rec["stamp"] = t.strftime("%Y%m%dT%H%M%SZ")
    rec["created"] = t.strftime("%Y-%m-%dT%H:%M:%S") + ".000000000Z"
    fd = os.open(os.path.join(d, rec["stamp"] + ".json"), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                 0o600)
    with open(fd, "w") as f:
        json.dump(rec, f)
    os.unlink(os.path.join(d, name))
PY
"$STAMP" --store "$S" -q reindex >/dev/null
"$STAMP" --store "$S" verify >/dev/null || fail "the store with its history does not verify"

# --- /etc/stampfs/test.conf
CONF="$WORK/test.conf"
write_conf() { # COPY_DEST COPY_OPTIONS
        cat >"$CONF" <<EOF
# stamp-snapshot@test
STORE=$S
SOURCES=$APP $REG
SNAPSHOT_OPTIONS=--tag daily --exclude cache --exclude "*.tmp" --lock $APP/ingest.lock --pre "echo pre \$STAMP_STORE >>$WORK/hooks.log" --post 'echo "post \$STAMP_STATUS \$STAMP_STAMP" >>$WORK/hooks.log'
VALIDATE_OPTIONS=--read-data
PRUNE_OPTIONS=--keep-daily 3 --keep-weekly 2
GC_OPTIONS=--max-unused 0
COPY_DEST=$1
COPY_OPTIONS=$2
EOF
}

# run_unit N: one run of the service, as the timer would start it.
run_unit() {
        python3 "$LIB/unit_exec.py" --map "$STAMP_BINDIR/stamp=$STAMP" --env-file "$CONF" \
                "$UNIT" test start >"$WORK/run$1.out" 2>"$WORK/run$1.log" || {
                cat "$WORK/run$1.log" >&2
                fail "run $1 of stamp-snapshot@test.service failed"
        }
}

committed() {
        python3 -c 'import sqlite3, sys
c = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True, timeout=10)
print(c.execute("SELECT last_txn FROM totals").fetchone()[0])' "$APP/db/app.db"
}

# check_run N [DEST]: the checks listed at the top, after run N; DEST: the
# copy's directory, if the copy step ran.
check_run() {
        python3 - "$STAMP" "$S" "${2:-}" "$WORK" "$1" "$LIB" <<'PY'
import json, os, sqlite3, subprocess, sys
stamp, store, dest, work, n, lib = sys.argv[1:]
sys.path.insert(0, lib)
import prune_oracle

def st(*args, store=store, check=True):
    r = subprocess.run([stamp, "--store", store] + list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit("FAIL: stamp %s exited %d: %s" % (" ".join(args), r.returncode, r.stderr))
    return r

def stamps(s):
    return st("list", "--short", store=s).stdout.split()

before = open(os.path.join(work, "before%s" % n)).read().split()
n0 = int(open(os.path.join(work, "n0-%s" % n)).read())
after = stamps(store)

# One new snapshot, the newest; `stamp snapshot` printed its stamp first.
new = sorted(set(after) - set(before))
made = open(os.path.join(work, "run%s.out" % n)).read().split()[0]
if new != [made] or made <= max(before):
    sys.exit("FAIL: run %s: new snapshots %s, printed %s, newest before %s" % (
        n, new, made, max(before)))

# The hooks ran around it.
hooks = open(os.path.join(work, "hooks.log")).read().splitlines()[-2:]
if hooks != ["pre " + store, "post ok " + made]:
    sys.exit("FAIL: run %s: hooks logged %r" % (n, hooks))

# Retention: exactly what the oracle keeps of before + the new one.
rules = {"daily": 3, "weekly": 2}
why = prune_oracle.oracle({s: [] for s in before + [made]}, {}, rules)
keep = sorted(s for s, r in why.items() if r)
if after != keep:
    sys.exit("FAIL: run %s: after prune %s, the oracle keeps %s" % (n, after, keep))
removed = len(before) + 1 - len(after)

# Every snapshot left validates, re-reading every chunk.
for s in after:
    st("validate", "--read-data", s)
rec = json.loads(st("show", "--json", made).stdout)
if rec["validation"]["status"] != "ok" or rec["tags"] != ["daily"]:
    sys.exit("FAIL: run %s: record of %s: validation %r, tags %r" % (
        n, made, rec["validation"], rec["tags"]))
if rec["sources"] != [os.path.join(work, "srv/app"), os.path.join(work, "srv/registry")]:
    sys.exit("FAIL: run %s: sources %r" % (n, rec["sources"]))
if rec["options"]["excludes"] != ["cache", "*.tmp"]:
    sys.exit("FAIL: run %s: excludes %r" % (n, rec["options"]["excludes"]))
captured = json.dumps(rec["sqlite"])
if "app/db/app.db" not in captured or "app/db/rest.db" not in captured or rec["warnings"]:
    sys.exit("FAIL: run %s: databases captured %s, warnings %r" % (n, captured, rec["warnings"]))

# Excluded entries are not there; the rest is.
for path, rc in [("app/cache", 3), ("app/upload.tmp", 3), ("app/config.json", 0),
                 ("registry/registry.json", 0)]:
    r = st("cat", made, path, check=False)
    if r.returncode != rc:
        sys.exit("FAIL: run %s: stamp cat %s exited %d, expected %d" % (n, path, r.returncode, rc))

# The live database: sound, consistent, and holding commit n0.
db = os.path.join(work, "latest%s.db" % n)
with open(db, "wb") as f:
    subprocess.run([stamp, "--store", store, "cat", made, "app/db/app.db"], stdout=f, check=True)
c = sqlite3.connect(db)
ok = c.execute("PRAGMA integrity_check").fetchall()
n_rows, total, last = c.execute("SELECT n_rows, sum_amount, last_txn FROM totals").fetchone()
cnt, s, top = c.execute("SELECT count(*), coalesce(sum(amount), 0), max(txn) FROM items").fetchone()
c.close()
if ok != [("ok",)] or (cnt, s, top) != (n_rows, total, last) or last < n0:
    sys.exit("FAIL: run %s: app.db: integrity %r, totals %r, rows %r, commit %d before the run" % (
        n, ok, (n_rows, total, last), (cnt, s, top), n0))

# The database at rest: SQLite made its -wal and -shm, and gave them to its owner.
for side in ("-wal", "-shm"):
    p = os.path.join(work, "srv/app/db/rest.db" + side)
    if not os.path.exists(p):
        sys.exit("FAIL: run %s: no %s" % (n, p))
    if (os.stat(p).st_uid, os.stat(p).st_gid) != (65534, 65534):
        sys.exit("FAIL: run %s: %s belongs to %d:%d" % (n, p, os.stat(p).st_uid, os.stat(p).st_gid))

# gc left nothing to reclaim, and the store is sound.
gc = json.loads(st("gc", "--dry-run", "--max-unused", "0", "--json").stdout)
if gc["dead_objects"] or gc["plan_free_bytes"]:
    sys.exit("FAIL: run %s: gc left %r" % (n, gc))
st("verify")

# The copy: every snapshot of the store, valid there, the same bytes.
if dest:
    there = stamps(dest)
    if not set(after) <= set(there):
        sys.exit("FAIL: run %s: the copy lacks %s" % (n, sorted(set(after) - set(there))))
    for s in after:
        st("validate", "--read-data", s, store=dest)
    r = subprocess.run([stamp, "--store", dest, "cat", made, "app/db/app.db"],
                       capture_output=True)
    if r.returncode != 0 or r.stdout != open(db, "rb").read():
        sys.exit("FAIL: run %s: app.db differs in the copy" % n)
    print("run %s: %s; %d removed, %d kept; the copy holds %d" % (
        n, made, removed, len(after), len(there)))
else:
    print("run %s: %s; %d removed, %d kept; no copy" % (n, made, removed, len(after)))
open(os.path.join(work, "removed%s" % n), "w").write(str(removed))
PY
}

write_conf "$D" --read-data
# The history's snapshots (run as root, unconfined) made rest.db's -wal and
# -shm: without them the unit's snapshot makes them again.
rm "$APP/db/rest.db-wal" "$APP/db/rest.db-shm"
for n in 1 2; do
        "$STAMP" --store "$S" list --short >"$WORK/before$n"
        committed >"$WORK/n0-$n"
        run_unit $n
        check_run $n "$D"
done
# The history guarantees removals on the first run (two snapshots on one day).
[ "$(cat "$WORK/removed1")" -ge 1 ] || fail "the first run pruned nothing"
# The service can still write to the database at rest.
as_service /usr/bin/python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); c.execute("INSERT INTO t VALUES (1)"); c.commit()' \
        "$APP/db/rest.db" || fail "the service cannot write rest.db after the snapshots"
"$STAMP" --store "$D" verify --read-data >/dev/null || fail "the copy does not verify"

# Without COPY_DEST the copy step is skipped, and the run still succeeds.
"$STAMP" --store "$D" list --short >"$WORK/dest-before"
write_conf "" --read-data
"$STAMP" --store "$S" list --short >"$WORK/before3"
committed >"$WORK/n0-3"
run_unit 3
check_run 3
"$STAMP" --store "$D" list --short | cmp -s - "$WORK/dest-before" || fail "the copy changed"

# An ssh:// COPY_DEST, with COPY_OPTIONS holding a quoted --rsh command: a
# stand-in for ssh that checks its arguments and runs the remote command
# here. The new store gets every snapshot.
R="$WORK/remote/store"
mkdir "$WORK/remote"
cat >"$WORK/fake-ssh" <<'EOF'
#!/bin/sh
# fake-ssh -o BatchMode=yes -p PORT USER@HOST COMMAND: as sshd, the words
# of COMMAND are joined and run by a shell.
[ "$1 $2 $3 $4 $5" = "-o BatchMode=yes -p 2222 backup@backup.example" ] || {
        echo "fake-ssh: unexpected arguments: $*" >&2; exit 255; }
shift 5
exec sh -c "$*"
EOF
chmod +x "$WORK/fake-ssh"
write_conf "ssh://backup@backup.example:2222$R" \
        "--rsh \"$WORK/fake-ssh -o BatchMode=yes\" --remote-stamp $STAMP --read-data"
"$STAMP" --store "$S" list --short >"$WORK/before4"
committed >"$WORK/n0-4"
run_unit 4
check_run 4 "$R"

# stamp-prune@.service on the first copy, a store of another user's (as on
# a host receiving copies over ssh), with rules of its own: it keeps fewer
# snapshots than the source; the next copy sends only the new snapshot and
# brings none of the pruned ones back; the store stays its owner's.
chown -R $SVC:$SVC "$D"
printf 'STORE=%s\nPRUNE_OPTIONS=--keep-last 1\nGC_OPTIONS=--max-unused 0\n' "$D" >"$WORK/copy.conf"
python3 "$LIB/unit_exec.py" --map "$STAMP_BINDIR/stamp=$STAMP" --env-file "$WORK/copy.conf" \
        "$UNITDIR/stamp-prune@.service" copy start >"$WORK/prune.out" 2>"$WORK/prune.log" ||
        { cat "$WORK/prune.log" >&2; fail "stamp-prune@copy.service failed"; }
kept=$("$STAMP" --store "$D" list --short)
[ "$(echo "$kept" | wc -l)" = 1 ] || fail "stamp-prune@copy kept: $kept"
[ -n "$(ls "$D/forgotten")" ] || fail "stamp-prune@copy pruned nothing"
write_conf "$D" --read-data
"$STAMP" --store "$S" list --short >"$WORK/before5"
committed >"$WORK/n0-5"
run_unit 5
check_run 5
new=$(head -1 "$WORK/run5.out" | cut -d' ' -f1)
[ "$("$STAMP" --store "$D" list --short | tr '\n' ' ')" = "$kept $new " ] ||
        fail "after a copy into the pruned store it lists $("$STAMP" --store "$D" list --short | tr '\n' ' ')"
bad=$(find "$D" ! -uid $SVC -printf '%u %p\n')
[ -z "$bad" ] || { echo "$bad" >&2; fail "root's prune, gc or copy left files the store's owner does not own"; }
"$STAMP" --store "$D" verify --read-data >/dev/null || fail "the pruned copy does not verify"

kill "$WRITER"
wait "$WRITER" 2>/dev/null || true
echo "ok: five runs of stamp-snapshot@test.service, one of stamp-prune@copy.service"

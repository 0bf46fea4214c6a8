#!/bin/bash
# A database written without pause while it is snapshotted: every copy made
# with --sqlite=auto is sound and holds every commit made before the
# snapshot started; plain copies (--sqlite=copy) are shown to lose commits
# (they live in the -wal, which a copy of app.db alone does not have).
# The test fails if no plain copy was broken: then it would test nothing.
# Then the same for a rollback-journal database, whose commits rewrite the
# database file under the copy, and for a WAL database checkpointed after
# every commit, so that its -wal is mostly empty and the database file is
# often streamed as it is while commits go on (auto mode only).
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

AUTO_TRIALS=${AUTO_TRIALS:-20}
COPY_TRIALS=${COPY_TRIALS:-8}
ROLLBACK_TRIALS=${ROLLBACK_TRIALS:-6}
CHECKPOINT_TRIALS=${CHECKPOINT_TRIALS:-6}
S="$WORK/store"
mkdir "$WORK/src"
echo "service config" >"$WORK/src/config.json"
"$STAMP" init "$S" >/dev/null

python3 "$LIB/sqlite-writer.py" "$WORK/src/app.db" "$WORK/ready" --rows 15000 --rate 150 \
        --seconds 150 --stats "$WORK/writer.stats" >"$WORK/writer.log" 2>&1 &
WRITER=$!
at_exit "kill $WRITER"
for _ in $(seq 600); do [ -e "$WORK/ready" ] && break; sleep 0.1; done
[ -e "$WORK/ready" ] || { cat "$WORK/writer.log" >&2; fail "the writer did not start"; }
sleep 0.5 # some commits in the -wal before the first snapshot

cat >"$WORK/trials.py" <<'PY'
import json, os, sqlite3, subprocess, sys
stamp, store, work, src, auto_trials, copy_trials = sys.argv[1:]
db = os.path.join(work, src, "app.db")


def committed():
    """The last transaction committed now (a reader never blocks the writer)."""
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=10)
    n = c.execute("SELECT last_txn FROM totals").fetchone()[0]
    c.close()
    return n


def problem(path, n0):
    """None if the database at path is sound, consistent and holds commit n0."""
    try:
        c = sqlite3.connect(path)
        res = c.execute("PRAGMA integrity_check").fetchall()
        if res != [("ok",)]:
            return "integrity_check: %s" % res[0][0]
        n_rows, total, last = c.execute(
            "SELECT n_rows, sum_amount, last_txn FROM totals").fetchone()
        cnt, s, top = c.execute(
            "SELECT count(*), coalesce(sum(amount), 0), coalesce(max(txn), 0) FROM items").fetchone()
        c.close()
    except sqlite3.DatabaseError as e:
        return "unreadable: %s" % e
    if (cnt, s) != (n_rows, total):
        return "totals say %d rows summing to %d, the table has %d summing to %d" % (
            n_rows, total, cnt, s)
    if top != last:
        return "totals say transaction %d, the rows say %d" % (last, top)
    if last < n0:
        return "lost commits: holds transaction %d, but %d had committed before" % (last, n0)
    return None


def snapshot(mode, trial):
    n0 = committed()
    r = subprocess.run([stamp, "--store", store, "--json", "-q", "snapshot", "--sqlite=" + mode,
                        os.path.join(work, src)], capture_output=True, text=True)
    if r.returncode not in (0, 1):
        sys.exit("FAIL: %s snapshot %d exited %d: %s" % (mode, trial, r.returncode, r.stderr))
    rec = json.loads(r.stdout)
    out = os.path.join(work, "%s-%s-%d.db" % (src, mode, trial))
    with open(out, "wb") as f:
        subprocess.run([stamp, "--store", store, "cat", rec["stamp"], "app.db"], stdout=f,
                       check=True)
    return n0, r, rec, out


lost = 0
for t in range(int(auto_trials)):
    n0, r, rec, out = snapshot("auto", t)
    if r.returncode != 0:
        sys.exit("FAIL: auto snapshot %d exited %d: %s" % (t, r.returncode, r.stderr))
    if rec.get("sqlite") != ["app.db"] or rec["options"].get("sqlite") != "auto":
        sys.exit("FAIL: the record does not list app.db as captured: %r" % rec.get("sqlite"))
    for side in ("app.db-wal", "app.db-shm"):
        c = subprocess.run([stamp, "--store", store, "cat", rec["stamp"], side],
                           capture_output=True)
        if c.returncode != 3:
            sys.exit("FAIL: %s was stored (stamp cat exited %d)" % (side, c.returncode))
    p = problem(out, n0)
    if p:
        sys.exit("FAIL: auto snapshot %d: %s" % (t, p))
    print("auto %2d: ok, committed before: %d, captured: %d" % (
        t, n0, sqlite3.connect(out).execute("SELECT last_txn FROM totals").fetchone()[0]))
    for f in (out, out + "-wal", out + "-shm"):
        if os.path.exists(f):
            os.unlink(f)

broken = []
for t in range(int(copy_trials)):
    n0, r, rec, out = snapshot("copy", t)
    if rec.get("sqlite") or rec["options"].get("sqlite") != "copy":
        sys.exit("FAIL: copy mode captured something: %r" % rec.get("sqlite"))
    p = problem(out, n0)
    print("copy %2d: %s" % (t, p or "ok (this time)"))
    if p:
        broken.append(p)
if int(copy_trials):
    print("copy mode: %d of %s plain copies of app.db were broken" % (len(broken), copy_trials))
    if not broken:
        sys.exit("FAIL: no plain copy was broken, so this test shows nothing")
PY
python3 "$WORK/trials.py" "$STAMP" "$S" "$WORK" src "$AUTO_TRIALS" "$COPY_TRIALS"

kill "$WRITER"
wait "$WRITER" || true
cat "$WORK/writer.stats"
max_ms=$(sed -n 's/.*max_ms=\([0-9.]*\).*/\1/p' "$WORK/writer.stats")
# WAL readers never block the writer; 2 s leaves room for a loaded machine.
python3 -c "import sys; sys.exit(float(sys.argv[1]) > 2000)" "$max_ms" ||
        fail "the writer waited $max_ms ms for a commit"

# Rollback-journal mode: commits rewrite app.db itself between (and, for a
# reader without the shared lock, during) the copy's steps.
mkdir "$WORK/src2"
python3 "$LIB/sqlite-writer.py" "$WORK/src2/app.db" "$WORK/ready2" --rows 8000 --rate 100 \
        --seconds 150 --journal delete --stats "$WORK/writer2.stats" >"$WORK/writer2.log" 2>&1 &
WRITER=$!
at_exit "kill $WRITER"
for _ in $(seq 600); do [ -e "$WORK/ready2" ] && break; sleep 0.1; done
[ -e "$WORK/ready2" ] || { cat "$WORK/writer2.log" >&2; fail "the rollback writer did not start"; }
python3 "$WORK/trials.py" "$STAMP" "$S" "$WORK" src2 "$ROLLBACK_TRIALS" 0
kill "$WRITER"
wait "$WRITER" || true
cat "$WORK/writer2.stats"

mkdir "$WORK/src3"
python3 "$LIB/sqlite-writer.py" "$WORK/src3/app.db" "$WORK/ready3" --rows 8000 --rate 100 \
        --seconds 150 --checkpoint-every 1 --stats "$WORK/writer3.stats" >"$WORK/writer3.log" 2>&1 &
WRITER=$!
at_exit "kill $WRITER"
for _ in $(seq 600); do [ -e "$WORK/ready3" ] && break; sleep 0.1; done
[ -e "$WORK/ready3" ] || { cat "$WORK/writer3.log" >&2; fail "the checkpointing writer did not start"; }
python3 "$WORK/trials.py" "$STAMP" "$S" "$WORK" src3 "$CHECKPOINT_TRIALS" 0
kill "$WRITER"
wait "$WRITER" || true
cat "$WORK/writer3.stats"
echo "sqlite live ok"

#!/bin/bash
# stamp copy: to a local path and over the --rsh transport (stamp serve at
# the far end); every copied snapshot reads back byte-exact and validates
# with --read-data; a second copy sends nothing; a copy killed -9 halfway
# resumes without sending again what arrived; damage in the source or the
# destination is reported, never copied or committed; a destination with
# another secret, a missing one, a locked one each get one clear line.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$LIB/gc.sh"

S="$WORK/src-store"
"$STAMP" init --pack-size 1 "$S" >/dev/null
export STAMP_STORE="$S"
make_tree "$WORK/data" 1 40
A=$(snap "$S" "$WORK/data")
sleep 1
mutate_tree "$WORK/data" 2
B=$(snap "$S" "$WORK/data")
sleep 1
mutate_tree "$WORK/data" 3
C=$(snap "$S" "$WORK/data")

# sent_field KEY: a number of the last `copy --json` report.
sent_field() {
        json_field "$WORK/out" "$1"
}

# same_records DEST: the copied records are the source's, byte for byte.
same_records() {
        local st
        for st in $("$STAMP" --store "$1" list --short); do
                cmp -s "$S/snapshots/$st.json" "$1/snapshots/$st.json" ||
                        fail "record $st differs in $1"
        done
}

# A missing destination without --init, a bad DEST, --rsh without ssh://.
expect_rc 3 "$STAMP" copy "$WORK/nowhere"
expect_err "no such store (use --init"
[ ! -e "$WORK/nowhere" ] || fail "copy without --init created the destination"
expect_rc 2 "$STAMP" copy "ftp://host/x"
expect_rc 2 "$STAMP" copy --rsh true "$WORK/d1"
expect_rc 2 "$STAMP" copy "ssh://host"
for bad in "ssh://user@/x" "ssh://[::1/x" "ssh://::1]/x" "ssh://[]/x" "ssh://host:/x" \
        "ssh://host:22a/x" "ssh://-oProxyCommand=x/x"; do
        expect_rc 2 "$STAMP" copy "$bad"
done
expect_rc 2 "$STAMP" copy "$S"
expect_err "the source store itself"

# A store with its own secret cannot receive objects named with ours.
"$STAMP" init "$WORK/other" >/dev/null
expect_rc 6 "$STAMP" copy "$WORK/other"
expect_err "another chunker or secret"

# A dry run creates nothing and says what it would send.
expect_rc 0 "$STAMP" copy --init --dry-run --json "$WORK/d1"
[ ! -e "$WORK/d1" ] || fail "a dry run created the destination"
[ "$(sent_field copied)" = 3 ] || fail "dry run would not copy 3 snapshots"
[ "$(sent_field objects_sent)" -gt 100 ] || fail "dry run would send nothing"

# Local copy: all three arrive, read back, validate.
expect_rc 0 "$STAMP" copy --init --json "$WORK/d1"
[ "$(sent_field copied)" = 3 ] || fail "not 3 snapshots copied"
first_bytes=$(sent_field bytes_sent)
[ "$first_bytes" -gt 5000000 ] || fail "only $first_bytes bytes sent"
[ "$("$STAMP" --store "$WORK/d1" list --short | tr '\n' ' ')" = "$A $B $C " ] ||
        fail "the destination does not list A B C"
same_records "$WORK/d1"
check_all "$WORK/d1" "local copy"
cmp -s <(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(c["secret"], c["chunker"])' "$S/config") \
       <(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(c["secret"], c["chunker"])' "$WORK/d1/config") ||
        fail "the destination does not share the source's secret and chunker"

# A second copy sends nothing; a new snapshot sends only what it adds.
expect_rc 0 "$STAMP" copy --json "$WORK/d1"
[ "$(sent_field bytes_sent)" = 0 ] && [ "$(sent_field skipped)" = 3 ] ||
        fail "a second copy sent $(sent_field bytes_sent) bytes"
sleep 1
mutate_tree "$WORK/data" 4
D=$(snap "$S" "$WORK/data")
expect_rc 0 "$STAMP" copy --json "$WORK/d1" "$D"
inc=$(sent_field bytes_sent)
new=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stored_new_bytes"])' "$S/snapshots/$D.json")
echo "incremental copy of $D sent $inc bytes; the snapshot added $new"
[ "$inc" -le $((new + 100000)) ] || fail "incremental copy sent $inc bytes for $new new"
check_all "$WORK/d1" "after the incremental copy"

# A daily copy walks only what changed: the directories it shares with the
# destination's newest snapshot are not walked again. When the destination
# has lost data below one of them since (its packs gone, then `stamp
# reindex`), its validation says so, and the copy walks the snapshot whole
# and sends what is missing.
T="$WORK/skip-src"
TD="$WORK/skip-dest"
"$STAMP" init --pack-size 1 "$T" >/dev/null
mkdir -p "$WORK/skip/keep" "$WORK/skip/other"
for d in $(seq 1 8); do
        mkdir "$WORK/skip/keep/d$d"
        for i in 1 2 3 4; do head -c 20000 /dev/urandom >"$WORK/skip/keep/d$d/f$i"; done
done
echo one >"$WORK/skip/other/o1"
"$STAMP" --store "$T" -q snapshot "$WORK/skip" >/dev/null
expect_rc 0 "$STAMP" --store "$T" copy --init --json "$TD"
full=$(sent_field objects_reached)
first_packs=$(find "$TD/packs" -name '*.pack')
sleep 1
echo two >"$WORK/skip/other/o2"
"$STAMP" --store "$T" -q snapshot "$WORK/skip" >/dev/null
expect_rc 0 "$STAMP" --store "$T" copy --json "$TD"
daily=$(sent_field objects_reached)
echo "daily copy: $daily objects reached (the first copy: $full)"
[ "$full" -ge 40 ] && [ "$daily" -le 6 ] ||
        fail "the daily copy reached $daily objects (the first $full): it walked what did not change"
rm -f $first_packs
"$STAMP" --store "$TD" -q reindex >/dev/null
sleep 1
echo three >"$WORK/skip/other/o3"
S3=$("$STAMP" --store "$T" -q snapshot "$WORK/skip")
expect_rc 0 "$STAMP" --store "$T" copy --json "$TD"
[ "$(sent_field copied)" = 1 ] && [ "$(sent_field invalid)" = 0 ] ||
        fail "a copy into a destination that lost data below an unchanged directory failed"
[ "$(sent_field objects_reached)" -ge "$full" ] || fail "the copy did not walk the snapshot again"
expect_rc 0 "$STAMP" --store "$TD" validate --read-data "$S3"

# A destination pruned by its own rules (README: keep fewer there) stays
# pruned: the next daily copy sends nothing and brings nothing back.
expect_rc 0 "$STAMP" copy --init "$WORK/pruned"
"$STAMP" --store "$WORK/pruned" prune --keep-last 1 >/dev/null
"$STAMP" --store "$WORK/pruned" gc >/dev/null
expect_rc 0 "$STAMP" copy --json "$WORK/pruned"
[ "$(sent_field copied)" = 0 ] && [ "$(sent_field forgotten)" = 3 ] &&
        [ "$(sent_field bytes_sent)" = 0 ] ||
        fail "a copy brought back what the destination pruned ($(sent_field copied) copied)"
[ "$("$STAMP" --store "$WORK/pruned" list --short)" = "$D" ] || fail "pruned does not list only $D"
expect_rc 0 "$STAMP" copy --dry-run "$WORK/pruned"
grep -q "1 already there, 3 forgotten there" "$WORK/out" ||
        { cat "$WORK/out" >&2; fail "the dry run does not count the forgotten snapshots"; }
check_all "$WORK/pruned" "a pruned destination after the next copy"

# Over the transport: a stand-in for ssh that runs the command here.
cat >"$WORK/rsh" <<'EOF'
#!/bin/sh
# Stands in for ssh: drops "-p PORT" and the host, runs the command locally.
[ "$1" = -p ] && shift 2
echo "$1" >>"${0%/*}/rsh.log"
shift
exec sh -c "$1"
EOF
chmod +x "$WORK/rsh"
R=(--rsh "$WORK/rsh" --remote-stamp "$STAMP")
expect_rc 3 "$STAMP" copy "${R[@]}" "ssh://backup@host/$WORK/d2"
grep -q "no such store" "$WORK/err" || fail "the remote refusal is not shown"
expect_rc 0 "$STAMP" copy "${R[@]}" --init --compression-level 3 --json "ssh://backup@host:2222/$WORK/d2"
[ "$(sent_field copied)" = 4 ] || fail "not 4 snapshots copied over the transport"
grep -q "^backup@host$" "$WORK/rsh.log" || fail "the host was not passed to --rsh"
python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["compression"]["level"] == 3' \
        "$WORK/d2/config" || fail "the destination's own level was not used"
same_records "$WORK/d2"
check_all "$WORK/d2" "copy over --rsh"
expect_rc 0 "$STAMP" copy "${R[@]}" --json "ssh://backup@host/$WORK/d2"
[ "$(sent_field bytes_sent)" = 0 ] || fail "a second remote copy sent bytes"

# kill -9 halfway through the second snapshot, then resume: locally and
# over the transport. The first snapshot's commit made its objects durable
# whatever the timing; what of the second arrived depends on how far the
# pack writer got, so only the first is counted on.
for how in local remote; do
        dest="$WORK/k-$how"
        url=("$dest")
        [ $how = remote ] && url=("${R[@]}" "ssh://host/$dest")
        STAMP_TEST_COPY_KILL_AT= "$STAMP" copy --init --dry-run --json "$dest" >"$WORK/out"
        read -r total first second < <(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
print(j["objects_sent"], j["snapshots"][0]["objects"], j["snapshots"][1]["objects"])' "$WORK/out")
        [ "$second" -ge 2 ] || fail "$how: the second snapshot has $second objects to send"
        kill_at=$((first + second / 2))
        rc=0
        STAMP_TEST_COPY_KILL_AT=$kill_at "$STAMP" copy --init "${url[@]}" \
                >/dev/null 2>"$WORK/err" || rc=$?
        [ $rc = 137 ] || { cat "$WORK/err" >&2; fail "$how: the copy was not killed ($rc)"; }
        sleep 0.2 # the far end notices its client is gone
        expect_rc 0 "$STAMP" copy --json "${url[@]}"
        resent=$(sent_field objects_sent)
        echo "$how: $total objects in all, $first in the first snapshot; after a kill at $kill_at, the resume sent $resent"
        [ "$resent" -le $((total - first)) ] || fail "$how: the resume sent again what the first commit made durable"
        [ "$(sent_field skipped)" = 1 ] || fail "$how: the first snapshot was not found committed"
        [ "$(sent_field copied)" = 3 ] || fail "$how: not all snapshots after the resume"
        check_all "$dest" "$how copy after kill -9 and resume"
        [ -z "$(ls -A "$dest/tmp")" ] || fail "$how: temporary files left in $dest/tmp"
done

# A locked destination.
flock "$WORK/d1/lock" sleep 30 &
LOCKER=$!
at_exit "kill $LOCKER"
sleep 0.3
sleep 1
mutate_tree "$WORK/data" 5
E=$(snap "$S" "$WORK/data")
expect_rc 4 "$STAMP" copy "$WORK/d1"
expect_err "is locked by"
kill $LOCKER
wait $LOCKER 2>/dev/null || true

# Damage in the destination: a chunk B shares with A rots there, so B is not
# sent again; the validation before the commit catches it and B's record is
# not written (exit 7). The source is untouched.
"$STAMP" init --like "$S" "$WORK/d3" >/dev/null
expect_rc 0 "$STAMP" copy "$WORK/d3" "$A"
for p in "$WORK"/d3/packs/*/*.pack; do flip_byte "$p" 0.5; done
expect_rc 7 "$STAMP" copy --read-data --json "$WORK/d3" "$B"
python3 - "$WORK/out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["invalid"] == 1 and d["copied"] == 0, d
s = d["snapshots"][0]
assert s["result"] == "invalid" and s["problems"], s
PY
[ ! -e "$WORK/d3/snapshots/$B.json" ] || fail "an invalid copy was committed"
expect_rc 7 "$STAMP" copy --read-data "$WORK/d3" "$B"
grep -q "is not valid in" "$WORK/err" || fail "the invalid copy is not explained"

# Damage in the source: the damaged object is named with its pack, nothing
# is committed for that snapshot, exit 5.
cp -a "$S" "$WORK/bad-src"
for p in "$WORK"/bad-src/packs/*/*.pack; do flip_byte "$p" 0.5; done
expect_rc 5 "$STAMP" --store "$WORK/bad-src" copy --init "$WORK/d4"
expect_err "is damaged"
grep -q "(packs/[0-9a-f]*/[0-9a-f]*\.pack)" "$WORK/err" || fail "the damaged pack is not named"
[ -z "$(ls "$WORK/d4/snapshots")" ] || fail "a snapshot with damaged data was committed"

# init --like makes a compatible store with its own level.
"$STAMP" init --like "$S" --compression-level 6 "$WORK/d5" >/dev/null
expect_rc 0 "$STAMP" copy "$WORK/d5" "$A"
check_all "$WORK/d5" "init --like"
# stamp serve on garbage: random bytes, then well-framed messages with random
# payloads after a valid hello. It ends with an error, never a crash, and
# commits nothing.
"$STAMP" init --like "$S" "$WORK/g" >/dev/null
head -c 100000 /dev/urandom >"$WORK/garbage"
expect_rc 6 "$STAMP" serve "$WORK/g" <"$WORK/garbage"
python3 - "$S/config" "$WORK/streams" <<'PY'
import os, random, struct, sys
cfg = open(sys.argv[1], "rb").read()
os.makedirs(sys.argv[2])
rnd = random.Random(7)
def msg(t, payload):
    return struct.pack("<B3xI", t, len(payload)) + payload
hello = msg(1, struct.pack("<IIi", 1, 0, 0) + cfg)
for i in range(40):
    out = hello
    for _ in range(rnd.randrange(1, 6)):
        t = rnd.choice([2, 3, 4, 4, 4, 5, 9])
        n = rnd.choice([0, 3, 16, 28, 29, 44, 200, 5000])
        body = bytearray(rnd.randbytes(n))
        if t == 4 and n >= 28:   # a plausible PUT: small lengths, known type
            body[16] = rnd.choice([1, 2, 3, 7]); body[17] = rnd.choice([0, 1, 5])
            body[18:20] = b"\0\0"
            body[20:24] = struct.pack("<I", rnd.randrange(0, 100))
            body[24:28] = struct.pack("<I", n - 28)
        out += msg(t, bytes(body))
    if rnd.random() < 0.5:
        out = out[:rnd.randrange(len(hello), len(out) + 1)]   # cut anywhere
    open(os.path.join(sys.argv[2], "%02d" % i), "wb").write(out)
PY
for f in "$WORK"/streams/*; do
        rc=0
        "$STAMP" serve "$WORK/g" <"$f" >/dev/null 2>"$WORK/err" || rc=$?
        [ $rc = 0 ] || [ $rc = 6 ] || { cat "$WORK/err"; fail "serve exited $rc on $f"; }
done
[ -z "$(ls "$WORK/g/snapshots")" ] || fail "serve committed a snapshot from garbage"
"$STAMP" --store "$WORK/g" verify >/dev/null || fail "garbage left the store unsound"
# A destination record that is not a file (a symlink, a directory) is no
# snapshot there: the copy does not count it as present, and stops with
# the reason (exit 5) instead of reporting it "already there".
mkdir -p "$WORK/ns/src" && echo x >"$WORK/ns/src/f"
"$STAMP" init "$WORK/ns/a" >/dev/null
NST=$("$STAMP" --store "$WORK/ns/a" snapshot --quiet "$WORK/ns/src")
"$STAMP" --store "$WORK/ns/a" copy --quiet --init "$WORK/ns/b" >/dev/null
mv "$WORK/ns/b/snapshots/$NST.json" "$WORK/ns/rec.json"
for kind in symlink dir; do
        if [ $kind = symlink ]; then ln -s ../../rec.json "$WORK/ns/b/snapshots/$NST.json"
        else mkdir "$WORK/ns/b/snapshots/$NST.json"; fi
        expect_rc 5 "$STAMP" --store "$WORK/ns/a" copy "$WORK/ns/b"
        expect_err "snapshots/$NST.json is not a file .*move it out of the store"
        rm -r "$WORK/ns/b/snapshots/$NST.json"
done
expect_rc 0 "$STAMP" --store "$WORK/ns/a" copy --quiet "$WORK/ns/b"
"$STAMP" --store "$WORK/ns/b" verify --quiet >/dev/null || fail "the copy after the fix"
echo "ok"

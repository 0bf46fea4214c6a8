# Helpers of the gc tests, sourced after lib/common.sh.

# make_tree DIR SEED [NFILES]: a reproducible tree of random (incompressible)
# files from 1 KB to 600 KB in a few directories, plus one of 1.5 MB whose
# content needs a chunk-list object, and a few small text files.
make_tree() {
        python3 - "$1" "$2" "${3:-24}" <<'PY'
import os, random, sys
d, seed, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
for i in range(n):
    sub = os.path.join(d, "dir%d" % (i % 4), "sub%d" % (i % 3))
    os.makedirs(sub, exist_ok=True)
    size = rnd.choice([1000, 20000, 90000, 250000, 600000])
    with open(os.path.join(sub, "f%d-%d" % (seed, i)), "wb") as f:
        f.write(rnd.randbytes(size))
with open(os.path.join(d, "big-%d" % seed), "wb") as f:
    f.write(rnd.randbytes(1500000))
for i in range(5):
    with open(os.path.join(d, "note%d-%d.txt" % (seed, i)), "w") as f:
        f.write(("note %d of seed %d\n" % (i, seed)) * (50 + i))
PY
}

# mutate_tree DIR SEED: deletes about a third of the files, changes a few
# in place and adds new ones, so a new snapshot shares most of its data.
mutate_tree() {
        python3 - "$1" "$2" <<'PY'
import os, random, sys
d, seed = sys.argv[1], int(sys.argv[2])
rnd = random.Random(seed)
files = sorted(os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs)
for p in files:
    x = rnd.random()
    if x < 0.3:
        os.unlink(p)
    elif x < 0.4:
        with open(p, "r+b") as f:
            f.seek(rnd.randrange(max(1, os.path.getsize(p))))
            f.write(rnd.randbytes(3000))
for i in range(6):
    sub = os.path.join(d, "new%d" % (seed % 5))
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, "n%d-%d" % (seed, i)), "wb") as f:
        f.write(rnd.randbytes(rnd.choice([5000, 100000, 400000])))
PY
}

# snap STORE SRC: takes a snapshot, keeps a copy of SRC in $WORK/copies/STAMP
# (to compare against later) and prints the stamp.
snap() {
        local st
        st=$("$STAMP" --store "$1" -q snapshot "$2")
        mkdir -p "$WORK/copies"
        cp -a "$2" "$WORK/copies/$st"
        echo "$st"
}

# stats_field STORE KEY: a top-level number of `stamp stats --json`.
stats_field() {
        "$STAMP" --store "$1" stats --json >"$WORK/stats.json" || fail "stamp stats failed"
        json_field "$WORK/stats.json" "$2"
}

# restore_compare STORE STAMP SRC: the snapshot restored into a scratch
# directory equals SRC: the same names and types, every byte (diff -r).
# One process for the whole tree: `stamp cat` per file took a second a
# snapshot, most of the gc tests' time.
restore_compare() {
        local rt="$WORK/restored"
        rm -rf "$rt"
        "$STAMP" --store "$1" -q restore --no-pre-snapshot --confirm-service-stopped \
                "$2" "$rt" >"$WORK/restore.out" 2>&1 || { cat "$WORK/restore.out" >&2; return 1; }
        diff -r --no-dereference "$rt" "$3" >&2 || return 1
        rm -rf "$rt"
}

# check_all STORE [WHAT]: every snapshot reads back byte-exact against its
# copy, and every object reachable from every record is in the index.
check_all() {
        local st missing
        for st in $("$STAMP" --store "$1" list --short); do
                [ -d "$WORK/copies/$st" ] || fail "${2:-}: no copy of snapshot $st"
                restore_compare "$1" "$st" "$WORK/copies/$st" ||
                        fail "${2:-}: snapshot $st does not read back"
                "$STAMP" --store "$1" -q validate --read-data "$st" >"$WORK/validate.out" ||
                        { cat "$WORK/validate.out"; fail "${2:-}: snapshot $st does not validate"; }
        done
        "$STAMP" --store "$1" -q verify --read-data >"$WORK/verify.out" ||
                { cat "$WORK/verify.out"; fail "${2:-}: stamp verify --read-data finds damage"; }
        missing=$(stats_field "$1" missing_objects)
        [ "$missing" = 0 ] || fail "${2:-}: $missing reachable objects missing from the index"
}

# check_clean STORE [WHAT]: after a completed gc: no pack with nothing live,
# no pack file the index does not know, no gc-pending, nothing in tmp/.
check_clean() {
        local n
        n=$(stats_field "$1" unreferenced_packs)
        [ "$n" = 0 ] || fail "${2:-}: $n packs with nothing live left behind"
        n=$(json_field "$WORK/stats.json" unindexed_packs)
        [ "$n" = 0 ] || fail "${2:-}: $n pack files the index does not list"
        [ ! -e "$1/gc-pending" ] || fail "${2:-}: gc-pending left behind"
        [ -z "$(ls -A "$1/tmp")" ] || fail "${2:-}: files left in tmp/: $(ls "$1/tmp")"
}

# pack_bytes STORE: the sizes of the pack files on disk, summed.
pack_bytes() {
        find "$1/packs" -type f -name '*.pack' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'
}

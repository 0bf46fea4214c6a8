#!/bin/bash
# Self-check for gentree.py and manifest.py.
#
#   tests/integration/lib/selfcheck.sh [-v] [--large]
#
# 1. gentree is reproducible: same seed -> identical manifest; other seed -> different.
# 2. cp -a (and rsync -aHAX, if installed) round-trips the tree: identical manifests.
# 3. manifest is sensitive: each single mutation of a fresh cp -a copy
#    (touch, one xattr, 1 ns of mtime, mode, owner, one content byte, hardlink
#    broken/added, symlink target, rename, type, rdev, root mtime ...) changes it.
# Exit status 0 iff every check passed.  -v prints the manifest diff of each mutation.
set -u
LIB=$(cd "$(dirname "$0")" && pwd)
GEN="python3 $LIB/gentree.py"
MAN="python3 $LIB/manifest.py"
VERBOSE=0; SIZE=small
for a in "$@"; do
    case $a in -v) VERBOSE=1 ;; --large) SIZE=large ;; *) echo "usage: $0 [-v] [--large]" >&2; exit 2 ;; esac
done
T=$(mktemp -d /tmp/stampfs-selfcheck.XXXXXX)
trap 'rm -rf "$T"' EXIT
FAILS=0
pass() { echo "PASS  $*"; }
fail() { echo "FAIL  $*"; FAILS=$((FAILS + 1)); }
ISROOT=0; [ "$(id -u)" = 0 ] && ISROOT=1

$GEN "$T/src" --seed 1 --size $SIZE 2>"$T/notes" || { cat "$T/notes"; echo "gentree failed"; exit 1; }
[ -s "$T/notes" ] && sed 's/^/      /' "$T/notes"
$MAN "$T/src" > "$T/src.m" || fail "manifest of source tree exited non-zero"
echo "      source tree: $(wc -l < "$T/src.m") entries"

# --- 1. reproducibility --------------------------------------------------
$GEN "$T/again" --seed 1 --size $SIZE 2>/dev/null
if cmp -s "$T/src.m" <($MAN "$T/again"); then pass "same seed gives identical tree"
else fail "same seed gives identical tree"; fi
rm -rf "$T/again"
$GEN "$T/other" --seed 2 --size $SIZE 2>/dev/null
if ! cmp -s "$T/src.m" <($MAN "$T/other"); then pass "different seed gives different tree"
else fail "different seed gives different tree"; fi
rm -rf "$T/other"

# --- 2. reference copiers ------------------------------------------------
cp -a "$T/src" "$T/cp"
if diff "$T/src.m" <($MAN "$T/cp") > "$T/d"; then pass "cp -a round trip is identical"
else fail "cp -a round trip is identical"; head -20 "$T/d"; fi
if command -v rsync >/dev/null; then
    rsync -aHAX --numeric-ids "$T/src/" "$T/rs/"
    if diff "$T/src.m" <($MAN "$T/rs") > "$T/d"; then pass "rsync -aHAX --numeric-ids round trip is identical"
    else fail "rsync -aHAX --numeric-ids round trip is identical"; head -20 "$T/d"; fi
    rm -rf "$T/rs"
    rsync -a "$T/src/" "$T/rs/"
    if ! cmp -s "$T/src.m" <($MAN "$T/rs"); then pass "rsync -a (no -H/-X) is detected as different"
    else fail "rsync -a (no -H/-X) is detected as different"; fi
    rm -rf "$T/rs"
fi
$MAN --ignore-root-times "$T/src" > "$T/src.nr.m"

# --- 3. sensitivity ------------------------------------------------------
# mutate NAME [--ignore-root-times] -- COMMAND...   (COMMAND runs inside a fresh copy)
mutate() {
    local name=$1; shift
    local ref="$T/src.m" opt=
    if [ "$1" = --ignore-root-times ]; then ref="$T/src.nr.m"; opt=$1; shift; fi
    shift  # --
    rm -rf "$T/mut"; cp -a "$T/src" "$T/mut"
    if ! (cd "$T/mut" && "$@") >"$T/mut.log" 2>&1; then
        fail "$name (mutation command failed)"; sed 's/^/      /' "$T/mut.log"; return
    fi
    if diff "$ref" <($MAN $opt "$T/mut") > "$T/d"; then fail "$name is detected"
    else
        pass "$name is detected ($(grep -c '^[<>]' "$T/d") diff lines)"
        [ $VERBOSE = 1 ] && grep '^[<>]' "$T/d" | cut -c1-200 | head -6 | sed 's/^/      /'
    fi
    chmod -R u+rwx "$T/mut" 2>/dev/null; rm -rf "$T/mut"
}
py() { python3 -c "$@"; }

mutate "touch of a file"               -- touch files/size_1
mutate "mtime +1 ns on a file"         -- py 'import os; s=os.lstat("files/size_1"); os.utime("files/size_1", ns=(s.st_atime_ns, s.st_mtime_ns+1))'
mutate "mtime +1 ns on a symlink"      -- py 'import os; p="symlinks/dangling"; s=os.lstat(p); os.utime(p, ns=(s.st_atime_ns, s.st_mtime_ns+1), follow_symlinks=False)'
mutate "mtime +1 ns on a directory"    -- py 'import os; p="deep/l1/l2/l3"; s=os.lstat(p); os.utime(p, ns=(s.st_atime_ns, s.st_mtime_ns+1))'
mutate "one xattr value changed"       -- py 'import os; os.setxattr("xattrs/many", "user.k07", b"50")'
mutate "one xattr removed"             -- py 'import os; os.removexattr("xattrs/binary_values", "user.empty")'
mutate "xattr added to a directory"    -- py 'import os; os.setxattr("deep", "user.new", b"")'
mutate "root xattr changed"            -- py 'import os; os.setxattr(".", "user.root", b"x")'
mutate "content byte flipped (same size and mtime)" -- py '
import os
p = "files/random_100k"; s = os.lstat(p)
with open(p, "r+b") as f:
    f.seek(5000); b = f.read(1); f.seek(5000); f.write(bytes([b[0] ^ 1]))
os.utime(p, ns=(s.st_atime_ns, s.st_mtime_ns))'
mutate "file truncated by one byte"    -- py 'import os; s=os.lstat("files/size_4097"); os.truncate("files/size_4097", 4096); os.utime("files/size_4097", ns=(s.st_atime_ns, s.st_mtime_ns))'
mutate "mode change"                   -- chmod 0645 modes/f0644
mutate "setgid bit dropped on dir"     -- chmod g-s modes/d2775_setgid
if [ $ISROOT = 1 ]; then
mutate "owner change"                  -- chown -h 1001 owners/u1000_g1000
mutate "group change on a symlink"     -- chown -h :1000 symlinks/dangling
mutate "device rdev change"            -- bash -c 'rm devices/null_chr && mknod -m 0666 devices/null_chr c 1 5 && touch -d @1007425778.335602179 devices/null_chr'
fi
mutate "hardlink broken (same content/attrs)" -- bash -c 'cp -a hardlinks/pair_b hardlinks/tmp && mv -f hardlinks/tmp hardlinks/pair_b'
mutate "hardlink added between identical files" -- bash -c 'ln -f files/dup_a files/sub/dup_b'
mutate "hardlinked FIFO split"         -- bash -c 'rm hardlinks/fifo_b && mkfifo -m 0620 hardlinks/fifo_b'
mutate "symlink target changed"        -- ln -sfn does/not/exist2 symlinks/dangling
mutate "file renamed (odd name)"       -- py 'import os; os.rename(b"names/new\nline", b"names/new\rline")'
mutate "NFC name replaced by NFD"      -- py 'import os; os.rename(b"names/\xc3\xa9", b"names/e\xcc\x81\xcc\x81")'
mutate "FIFO replaced by empty file"   -- bash -c 'rm special/fifo && touch special/fifo'
mutate "socket removed"                -- rm special/socket
mutate "empty file added"              -- touch empty/dir1/new
mutate "empty dir removed"             -- rmdir empty/dir2/nested_empty
mutate "root dir mtime"                -- touch .

# --ignore-root-times ignores exactly the root mtime
rm -rf "$T/mut"; cp -a "$T/src" "$T/mut"; touch "$T/mut"
if cmp -s "$T/src.nr.m" <($MAN --ignore-root-times "$T/mut"); then pass "--ignore-root-times ignores a touched root"
else fail "--ignore-root-times ignores a touched root"; fi
rm -rf "$T/mut"
mutate "root mode change under --ignore-root-times" --ignore-root-times -- chmod 0700 .

echo
if [ $FAILS = 0 ]; then echo "selfcheck: all checks passed"; exit 0
else echo "selfcheck: $FAILS check(s) FAILED"; exit 1; fi

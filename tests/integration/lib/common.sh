# Shared by the integration tests: sourced after `set -euo pipefail`.
# STAMP (the binary) comes from meson's test environment.
: "${STAMP:?STAMP must point at the stamp binary}"
LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Debian's python3, which contrib/install-deps.sh installs, even when
# another comes first on PATH: a pyenv shim takes half a second to start,
# and the tests start python3 hundreds of times (test-copy: 38 s -> 13 s).
if [ -x /usr/bin/python3 ] && [ "$(command -v python3)" != /usr/bin/python3 ]; then
        PATH="/usr/bin:$PATH"
fi
WORK=$(mktemp -d /tmp/stamp-test.XXXXXX)
# Commands run before WORK is removed (e.g. stopping a background writer):
# at_exit 'kill $PID'.
EXIT_HOOKS=()
at_exit() {
        EXIT_HOOKS+=("$1")
}
cleanup() {
        local rc=$? h
        for h in ${EXIT_HOOKS[@]+"${EXIT_HOOKS[@]}"}; do
                eval "$h" >/dev/null 2>&1 || true
        done
        # Unmount anything a test mounted below WORK before removing it.
        # (/proc/mounts writes a space in a path as \040: printf %b undoes it)
        { grep -o " $WORK[^ ]*" /proc/mounts 2>/dev/null || true; } | sort -r | while read -r m; do
                m=$(printf '%b' "${m# }")
                umount -l "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || true
        done
        chmod -R u+rwX "$WORK" 2>/dev/null || true
        rm -rf "$WORK"
        exit $rc
}
trap cleanup EXIT

# need_fuse: a test of the mount needs the stampfs binary and /dev/fuse;
# without /dev/fuse it is skipped (exit 77).
need_fuse() {
        : "${STAMPFS:?STAMPFS must point at the stampfs binary}"
        if [ ! -c /dev/fuse ]; then
                echo "no /dev/fuse: skipped"
                exit 77
        fi
}

fail() {
        echo "FAIL: $*" >&2
        exit 1
}

# running PID: the process exists and has not exited. A daemon that exited
# stays a zombie until PID 1 reaps it, which kill -0 cannot tell apart.
running() {
        local stat
        stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
        stat=${stat##*) }
        [ "${stat%% *}" != Z ]
}

# expect_rc CODE CMD...: runs CMD, fails unless it exits with CODE.
# Its stderr is kept in $WORK/err for message checks.
expect_rc() {
        local want=$1 got=0
        shift
        "$@" >"$WORK/out" 2>"$WORK/err" || got=$?
        if [ "$got" != "$want" ]; then
                echo "--- stderr:" >&2
                cat "$WORK/err" >&2
                fail "'$*' exited $got, expected $want"
        fi
}

# expect_err PATTERN: the last expect_rc's stderr has exactly one line, matching PATTERN.
expect_err() {
        local lines
        lines=$(wc -l <"$WORK/err")
        grep -q -- "$1" "$WORK/err" || { cat "$WORK/err" >&2; fail "stderr does not match '$1'"; }
        [ "$lines" -eq 1 ] || { cat "$WORK/err" >&2; fail "expected one error line, got $lines"; }
}

# json_field FILE KEY: a top-level number or string of a JSON document.
json_field() {
        python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# cat_compare STORE STAMP SRC: every regular file of SRC read back with
# `stamp cat` equals the source, byte for byte. (Python walks the tree:
# shell loops mangle names such as a lone newline.)
cat_compare() {
        python3 - "$STAMP" "$1" "$2" "$3" <<'PY'
import os, stat, subprocess, sys
stamp, store, st, src = (os.fsencode(a) for a in sys.argv[1:])
n = 0
for root, dirs, files in os.walk(src):
    for name in files + dirs:
        p = os.path.join(root, name)
        if not stat.S_ISREG(os.lstat(p).st_mode):
            continue
        rel = os.path.relpath(p, src)
        r = subprocess.run([stamp, b"--store", store, b"cat", st, rel], capture_output=True)
        if r.returncode != 0:
            sys.exit("FAIL: stamp cat %r: %s" % (rel, r.stderr.decode(errors="replace")))
        if r.stdout != open(p, "rb").read():
            sys.exit("FAIL: stamp cat %r differs from the source" % rel)
        n += 1
print("%d files compared" % n)
PY
}

# flip_byte FILE FRACTION: inverts the byte at FRACTION (0..1) of FILE's
# length, in place (the same inode, as bit rot would).
flip_byte() {
        python3 - "$1" "$2" <<'PY'
import sys
p, frac = sys.argv[1], float(sys.argv[2])
with open(p, "r+b") as f:
    d = f.read()
    i = min(int(len(d) * frac), len(d) - 1)
    f.seek(i)
    f.write(bytes([d[i] ^ 0xff]))
PY
}

#!/bin/bash
# The mount: a generated hostile tree read back through stampfs is identical
# to the source (manifest, cp -a, rsync -aHAX); every write is EROFS;
# parallel readers get exact bytes; stamps appear and vanish while mounted;
# damaged data is EIO; other users see only what permissions allow.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
need_fuse

S="$WORK/store"
MNT="$WORK/mnt"
mkdir "$MNT"
chmod 755 "$WORK"
python3 "$LIB/gentree.py" "$WORK/src" --seed 11 --size large >/dev/null 2>&1
"$STAMP" init "$S" >/dev/null
ST=$("$STAMP" --store "$S" -q snapshot "$WORK/src")

# Errors first, before anything is mounted.
expect_rc 3 "$STAMPFS" "$WORK/nostore" "$MNT"
expect_err "store '$WORK/nostore': no such directory"
expect_rc 3 "$STAMPFS" "$S" "$WORK/nomnt"
expect_err "mountpoint '$WORK/nomnt': No such file or directory"
expect_rc 2 "$STAMPFS" "$S"
expect_rc 2 "$STAMPFS" "$S" "$MNT" -o prefetch=5000
expect_err "prefetch must be 0..4096 files"
expect_rc 2 "$STAMPFS" "$S" "$MNT" -o cache_size=4294967297 # not 1 MiB, wrapped
expect_err "cache_size must be 1..65536 MiB"
expect_rc 2 "$STAMPFS" "$S" "$MNT" -o spin=100001
expect_err "spin must be 0..100000 microseconds"
# /dev/fuse that is not the FUSE device (bound over, in a mount namespace
# of its own): one line naming it, exit 3, as for a missing one.
rc=0
unshare -m --propagation private sh -c 'mount --bind /dev/null /dev/fuse && exec "$@"' sh \
        "$STAMPFS" "$S" "$MNT" 2>"$WORK/err" || rc=$?
[ $rc = 3 ] || fail "/dev/fuse not the FUSE device: exit $rc, expected 3"
[ "$(wc -l <"$WORK/err")" = 1 ] && grep -q "^stampfs: /dev/fuse: not the FUSE device" "$WORK/err" ||
        { cat "$WORK/err" >&2; fail "/dev/fuse not the FUSE device: not one clear line"; }
# Unknown options are usage errors too, told on one line, before the store is opened.
for bad in "-o bogusopt" --bogus; do
        # shellcheck disable=SC2086 # "-o bogusopt" is two words
        expect_rc 2 "$STAMPFS" "$S" "$MNT" $bad
        grep -qx "stampfs: fuse: unknown option(s): \`$bad'" "$WORK/err" ||
                { cat "$WORK/err" >&2; fail "stampfs $bad: no clear usage error"; }
done
# A message too long for one log line is cut, and still ends its line.
expect_rc 2 "$STAMPFS" "$S" "$MNT" -o "$(printf 'x%.0s' $(seq 1100))"
[ "$(wc -l <"$WORK/err")" = 2 ] && grep -q '^stampfs: fuse: unknown option(s): .*\.\.\.$' "$WORK/err" &&
        grep -qx "Try 'stampfs --help'." "$WORK/err" || { cat "$WORK/err" >&2; fail "a long log line"; }
"$STAMPFS" --help | grep -q "^Usage: " || fail "stampfs --help"

# A store whose path has a comma and a backslash (the fsname option
# carries it: libfuse splits options at commas).
mv "$S" "$WORK/st,o\\re"
"$STAMPFS" "$WORK/st,o\\re" "$MNT" || fail "a store path with a comma cannot be mounted"
[ -e "$MNT/$ST" ] || fail "a store path with a comma: $ST is not listed"
grep -qF " stampfs:$WORK/st,o\\134re " /proc/self/mountinfo ||
        fail "the mount's source is not the store's path"
fusermount3 -u "$MNT"
mv "$WORK/st,o\\re" "$S"

"$STAMPFS" "$S" "$MNT" # returns once the mount is usable
grep -q " $MNT ro,nosuid,nodev[^ ]* .*- fuse.stampfs " /proc/self/mountinfo || fail "not mounted ro,nosuid,nodev"
expect_rc 3 "$STAMPFS" "$S" "$MNT"
expect_err "already in use"

# A relative STORE works too: the daemon leaves the caller's directory.
mkdir "$WORK/mnt-rel"
(cd "$(dirname "$S")" && "$STAMPFS" "$(basename "$S")" "$WORK/mnt-rel")
ls "$WORK/mnt-rel/latest/" >/dev/null || fail "a mount of a relative store path cannot read"
fusermount3 -u "$WORK/mnt-rel"
# The kernel may read ahead 1 MiB on the mount (128 KiB for FUSE by
# default), also at a mountpoint whose name mountinfo escapes.
if [ "$(id -u)" = 0 ]; then
        SP="$WORK/mnt with space"
        mkdir "$SP"
        "$STAMPFS" "$S" "$SP"
        for m in "$MNT" "$SP"; do
                dev=$(python3 - "$m" <<'PY'
import re, sys
for line in open("/proc/self/mountinfo"):
    f = line.split()
    mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), f[4])
    if mp == sys.argv[1]:
        print(f[2])
PY
)
                [ -n "$dev" ] || fail "'$m' is not in mountinfo"
                ra=$(cat "/sys/class/bdi/$dev/read_ahead_kb")
                [ "$ra" = 1024 ] || fail "read-ahead of the mount at '$m' is $ra KiB, expected 1024"
        done
        fusermount3 -u "$SP"
fi
# An explicit dev,suid (as mount.fuse passes from an fstab line) does not
# open the mount to setuid files or device nodes: nosuid,nodev always win.
"$STAMPFS" -o dev,suid "$S" "$WORK/mnt-rel"
grep -q " $WORK/mnt-rel ro,nosuid,nodev[^ ]* " /proc/self/mountinfo ||
        fail "-o dev,suid dropped nosuid,nodev"
fusermount3 -u "$WORK/mnt-rel"

# The stamp directory is the source, exactly.
[ "$(readlink "$MNT/latest")" = "$ST" ] || fail "latest does not point at $ST"
python3 "$LIB/manifest.py" "$WORK/src" >"$WORK/m.src"
python3 "$LIB/manifest.py" "$MNT/$ST" >"$WORK/m.mnt"
diff "$WORK/m.src" "$WORK/m.mnt" >&2 || fail "mounted snapshot differs from the source"
cp -a "$MNT/$ST" "$WORK/copy"
python3 "$LIB/manifest.py" "$WORK/copy" >"$WORK/m.copy"
diff "$WORK/m.src" "$WORK/m.copy" >&2 || fail "cp -a from the mount differs from the source"
# Sparse files stay sparse: st_blocks shows the holes, SEEK_DATA and
# SEEK_HOLE find them, so cp -a and tar -S copy them as holes. (A hole is
# found in whole chunks of zeros: up to two chunks around each run of data,
# 128 KiB each by default, are copied as zeros.)
kib() { du -k "$1" | cut -f1; }
for f in sparse/holes sparse/data_then_hole sparse/all_hole; do
        size=$(stat -c %s "$MNT/$ST/$f") blocks=$(stat -c %b "$MNT/$ST/$f")
        [ "$blocks" -lt $((size / 512 / 2)) ] ||
                fail "$f: st_blocks $blocks through the mount for $size bytes: holes not shown"
        [ "$(kib "$WORK/copy/$f")" -le $(($(kib "$WORK/src/$f") + 4 * 128)) ] ||
                fail "$f: cp -a from the mount wrote its holes ($(kib "$WORK/copy/$f") KiB)"
done
python3 - "$MNT/$ST/sparse/holes" <<'EOF' || fail "SEEK_DATA/SEEK_HOLE through the mount"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
MiB = 1 << 20
# gentree: 10 MiB + 123 bytes, data at 1 MiB + 7 (5000 bytes), 5 MiB (4096), 8 MiB - 1 (1)
for at in (MiB + 7, 5 * MiB, 8 * MiB - 1):
    d = os.lseek(fd, at, os.SEEK_DATA)
    assert d == at, ("SEEK_DATA", at, d)
    assert os.lseek(fd, at, os.SEEK_HOLE) > at
assert os.lseek(fd, 0, os.SEEK_HOLE) == 0, "no hole at the start"
assert os.lseek(fd, 0, os.SEEK_DATA) >= MiB - 128 * 1024, "the first hole not skipped"
try:
    os.lseek(fd, 10 * MiB + 123, os.SEEK_DATA)
    raise AssertionError("SEEK_DATA at the end did not fail")
except OSError as e:
    assert e.errno == 6, e  # ENXIO
EOF
rm -rf "$WORK/tar-sparse" && mkdir "$WORK/tar-sparse"
(cd "$MNT/$ST" && tar -cSf - sparse) | (cd "$WORK/tar-sparse" && tar -xf -) ||
        fail "tar -S from the mount"
[ "$(kib "$WORK/tar-sparse/sparse/holes")" -le $(($(kib "$WORK/src/sparse/holes") + 4 * 128)) ] ||
        fail "tar -S from the mount wrote the holes of sparse/holes"
cmp "$WORK/tar-sparse/sparse/holes" "$WORK/src/sparse/holes" || fail "tar -S: sparse/holes differs"
if command -v rsync >/dev/null; then
        out=$(rsync -aHAX --numeric-ids --dry-run --itemize-changes "$MNT/$ST/" "$WORK/src/" |
                grep -v '^\.d\.\.t\.\.\.\.\.\. \./$' || true)
        [ -z "$out" ] || { echo "$out" | head >&2; fail "rsync -aHAX sees differences"; }
fi

# Every kind of write fails with EROFS.
F="$MNT/$ST/files/size_1"
python3 - "$MNT/$ST" "$F" <<'PY'
import errno, os, sys
d, f = sys.argv[1], sys.argv[2]
tries = {
    "create": lambda: os.open(os.path.join(d, "new"), os.O_CREAT | os.O_WRONLY, 0o644),
    "open O_WRONLY": lambda: os.open(f, os.O_WRONLY),
    "open O_RDWR": lambda: os.open(f, os.O_RDWR),
    "unlink": lambda: os.unlink(f),
    "rename": lambda: os.rename(f, f + ".x"),
    "mkdir": lambda: os.mkdir(os.path.join(d, "newdir")),
    "rmdir": lambda: os.rmdir(os.path.join(d, "empty")),
    "chmod": lambda: os.chmod(f, 0o777),
    "chown": lambda: os.chown(f, 1, 1),
    "utime": lambda: os.utime(f, (1, 1)),
    "truncate": lambda: os.truncate(f, 0),
    "setxattr": lambda: os.setxattr(f, "user.x", b"1"),
    "removexattr": lambda: os.removexattr(os.path.join(d, "xattrs"), "user.dir"),
    "symlink": lambda: os.symlink("x", os.path.join(d, "sl")),
    "link": lambda: os.link(f, os.path.join(d, "hl")),
    "mknod": lambda: os.mkfifo(os.path.join(d, "fifo")),
}
for what, fn in tries.items():
    try:
        fn()
    except OSError as e:
        if e.errno != errno.EROFS:
            sys.exit("%s: %s, expected EROFS" % (what, e))
    else:
        sys.exit("%s succeeded on a read-only mount" % what)
PY

# 16 readers of random ranges of the large file, byte-exact (run again
# below with a loop that never polls).
cat >"$WORK/parallel.py" <<'PY'
import os, random, sys
from multiprocessing import Pool
src, mnt = sys.argv[1], sys.argv[2]
size = os.path.getsize(src)
def reader(seed):
    rnd = random.Random(seed)
    a, b = os.open(src, os.O_RDONLY), os.open(mnt, os.O_RDONLY)
    for _ in range(300):
        off = rnd.randrange(size)
        n = rnd.choice([1, 100, 4096, 65536, 1 << 20])
        if os.pread(a, n, off) != os.pread(b, n, off):
            return "mismatch at %d+%d" % (off, n)
    return None
with Pool(16) as p:
    bad = [r for r in p.map(reader, range(16)) if r]
if bad:
    sys.exit("parallel readers: " + bad[0])
PY
python3 "$WORK/parallel.py" "$WORK/src/large/big_100m.bin" "$MNT/$ST/large/big_100m.bin"

# Between requests the loop's leader polls for at most -o spin's 50 us,
# then sleeps: a mount left alone after a burst of requests uses no CPU.
pid=$(pgrep -f "stampfs $S $MNT\$" | head -1)
[ -n "$pid" ] || fail "no stampfs process for $MNT"
find "$MNT/$ST" >/dev/null
cpu() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; } # clock ticks
# Context switches of all its threads: the leader, and the watchdog, which
# looks every 10 ms while requests come and sleeps half a second after.
wakeups() { cat /proc/"$pid"/task/*/status | awk '/^voluntary_ctxt_switches/ { n += $2 } END { print n }'; }
sleep 0.8
before=$(cpu)
woken=$(wakeups)
sleep 2
idle=$(($(cpu) - before))
woken=$(($(wakeups) - woken))
[ "$idle" -le 10 ] || fail "an idle mount used $idle ticks of CPU in 2 s"
[ "$woken" -le 20 ] || fail "an idle mount's threads woke $woken times in 2 s"

# A snapshot taken while mounted shows up; a forgotten one disappears.
echo new >"$WORK/src/new-file"
ST2=$("$STAMP" --store "$S" -q snapshot "$WORK/src")
for _ in $(seq 30); do [ -e "$MNT/$ST2/new-file" ] && break; sleep 0.1; done
[ "$(cat "$MNT/$ST2/new-file")" = new ] || fail "new snapshot not visible"
ls "$MNT" | grep -qx "$ST2" || fail "new snapshot not listed"
"$STAMP" --store "$S" -q forget "$ST2"
for _ in $(seq 30); do [ -e "$MNT/$ST2" ] || break; sleep 0.1; done
[ ! -e "$MNT/$ST2" ] || fail "forgotten snapshot still visible"
# The listing follows once the root's attributes expire (a second after
# the last ls), which may be after its entry has: wait for it as well.
for _ in $(seq 30); do ls "$MNT" | grep -qx "$ST2" || break; sleep 0.1; done
ls "$MNT" | grep -qx "$ST2" && fail "forgotten snapshot still listed"
[ "$(readlink "$MNT/latest")" = "$ST" ] || fail "latest not back to $ST"
# The same seen by a program that only lists the root (no stat, so no
# getattr of its own): the kernel keeps listings, and the root's must not
# outlive a change of the stamps.
ST2=$("$STAMP" --store "$S" -q snapshot "$WORK/src")
python3 - "$MNT" "$ST2" "$STAMP" "$S" <<'PY' || fail "a listing of the root missed a change"
import os, subprocess, sys, time
mnt, stamp, tool, store = sys.argv[1:]
def wait(present):
    t = time.time()
    while (stamp in os.listdir(mnt)) != present:
        if time.time() - t > 5:
            sys.exit("%s %s after 5 s" % (stamp, "missing" if present else "still listed"))
        time.sleep(0.05)
wait(True)
subprocess.run([tool, "--store", store, "-q", "forget", stamp], check=True)
wait(False)
PY

# Another user through allow_other: permissions hold, POSIX ACLs included
# (a named user or the owning group denied by an ACL, a user allowed by one).
mkdir "$WORK/acl" && chmod 755 "$WORK/acl"
echo secret >"$WORK/acl/deny_nobody" && chmod 644 "$WORK/acl/deny_nobody"
setfacl -m u:nobody:--- "$WORK/acl/deny_nobody"
echo secret >"$WORK/acl/grp_denied" && chgrp nogroup "$WORK/acl/grp_denied"
chmod 640 "$WORK/acl/grp_denied" && setfacl -m g::---,u:daemon:r "$WORK/acl/grp_denied"
echo shared >"$WORK/acl/acl_allowed" && chmod 640 "$WORK/acl/acl_allowed"
setfacl -m u:nobody:r "$WORK/acl/acl_allowed"
setfattr -n trusted.t -v 1 "$WORK/acl/acl_allowed" && setfattr -n user.u -v 2 "$WORK/acl/acl_allowed"
AST=$("$STAMP" --store "$S" -q snapshot "$WORK/acl")
MNT2="$WORK/mnt2"
mkdir "$MNT2"
"$STAMPFS" "$S" "$MNT2" -o allow_other
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
as_nobody cat "$MNT2/$ST/modes/f0644" >/dev/null || fail "nobody cannot read a 0644 file"
if as_nobody cat "$MNT2/$ST/modes/f0600" >/dev/null 2>&1; then
        fail "nobody read a 0600 root file"
fi
for f in deny_nobody grp_denied; do
        ! as_nobody cat "$WORK/acl/$f" >/dev/null 2>&1 || fail "the source lets nobody read $f"
        if as_nobody cat "$MNT2/$AST/$f" >/dev/null 2>&1; then
                fail "nobody read $f, which an ACL denies"
        fi
done
[ "$(as_nobody cat "$MNT2/$AST/acl_allowed")" = shared ] || fail "nobody denied a file an ACL allows"
# trusted.* names are listed to CAP_SYS_ADMIN only, as on the source (so
# that rsync -aX as a user does not fail on a name it cannot read).
xnames() { "$@" getfattr -m - --absolute-names "$f" 2>/dev/null | grep -v '^#' | sort | xargs; }
for f in "$WORK/acl/acl_allowed" "$MNT2/$AST/acl_allowed"; do
        [ "$(xnames as_nobody)" = "system.posix_acl_access user.u" ] ||
                fail "listxattr as nobody of $f: $(xnames as_nobody)"
        [ "$(xnames env)" = "system.posix_acl_access trusted.t user.u" ] ||
                fail "listxattr as root of $f: $(xnames env)"
done
"$STAMP" --store "$S" -q forget "$AST"
if as_nobody ls "$MNT/$ST" >/dev/null 2>&1; then
        fail "nobody got into a mount without allow_other"
fi
fusermount3 -u "$MNT2"

# mount(8) syntax through contrib/mount.stampfs.
MNT3="$WORK/mnt3"
mkdir "$MNT3"
PATH="$(dirname "$STAMPFS"):$PATH" "$LIB/../../../contrib/mount.stampfs" "$S" "$MNT3" \
        -o defaults,nodev,cache_size=32,x-systemd.automount
grep -q " $MNT3 .*- fuse.stampfs " /proc/self/mountinfo || fail "mount.stampfs did not mount"
[ -e "$MNT3/latest/files" ] || fail "mount.stampfs mount unusable"
fusermount3 -u "$MNT3"
# noexec reaches the mount (user implies it); atime options are dropped.
for o in noexec,relatime user,nodiratime,lazytime; do
        PATH="$(dirname "$STAMPFS"):$PATH" "$LIB/../../../contrib/mount.stampfs" "$S" "$MNT3" -o "$o" ||
                fail "mount.stampfs -o $o"
        grep " $MNT3 " /proc/self/mountinfo | grep -q "noexec" || fail "mount.stampfs -o $o: exec allowed"
        fusermount3 -u "$MNT3"
done

# A stamp forgotten and written again with other content (a copy from a
# store that snapshotted in the same second): the mount serves the new one
# within a second, not what it had cached of the old (the record's file
# descriptor, the kernel's inode).
mkdir -p "$WORK/re/src" "$WORK/re/mnt"
echo "old content" >"$WORK/re/src/file"
"$STAMP" init -q "$WORK/re/st"
T1=$("$STAMP" --store "$WORK/re/st" -q snapshot "$WORK/re/src")
sleep 1
echo "new content, longer" >"$WORK/re/src/file"
T2=$("$STAMP" --store "$WORK/re/st" -q snapshot "$WORK/re/src")
"$STAMPFS" "$WORK/re/st" "$WORK/re/mnt"
[ "$(cat "$WORK/re/mnt/$T1/file")" = "old content" ] || fail "replaced stamp: the first read"
python3 - "$WORK/re/st/snapshots" "$T1" "$T2" <<'PY'
import json, os, sys
d, t1, t2 = sys.argv[1:]
r1 = json.load(open(os.path.join(d, t1 + ".json")))
r1["root"] = json.load(open(os.path.join(d, t2 + ".json")))["root"]
with open(os.path.join(d, t1 + ".json.new"), "w") as f:
    json.dump(r1, f)
os.rename(os.path.join(d, t1 + ".json.new"), os.path.join(d, t1 + ".json"))
PY
sleep 1.5
[ "$(cat "$WORK/re/mnt/$T1/file")" = "new content, longer" ] ||
        fail "a replaced stamp still serves its old content: $(cat "$WORK/re/mnt/$T1/file")"
fusermount3 -u "$WORK/re/mnt"

# Damaged data: the file whose chunks are in a damaged pack is EIO, others read.
head -c 3000000 /dev/urandom >"$WORK/src/fresh"
ST3=$("$STAMP" --store "$S" -q snapshot "$WORK/src")
newest=$(ls -t "$S"/packs/*/*.pack | head -1)
flip_byte "$newest" 0.33
sync
echo 3 >/proc/sys/vm/drop_caches
err=$(cat "$MNT/$ST3/fresh" 2>&1 >/dev/null) && fail "damaged file read without error"
echo "$err" | grep -q "Input/output error" || fail "damaged file: '$err', expected EIO"
cmp -s "$MNT/$ST3/files/size_1" "$WORK/src/files/size_1" || fail "undamaged file unreadable"
# ... and the mount says why, on stderr in the foreground (syslog otherwise).
MNT5="$WORK/mnt5"
mkdir "$MNT5"
"$STAMPFS" -f "$S" "$MNT5" 2>"$WORK/fg.log" &
fgpid=$!
for _ in $(seq 50); do [ -e "$MNT5/latest" ] && break; sleep 0.1; done
cat "$MNT5/$ST3/fresh" >/dev/null 2>&1 && fail "damaged file read without error (foreground)"
fusermount3 -u "$MNT5"
# Its exit status also carries the sanitizers' verdict (leaks, races on exit).
rc=0
wait "$fgpid" || rc=$?
[ "$rc" = 0 ] || { cat "$WORK/fg.log" >&2; fail "stampfs -f exited with status $rc"; }
grep -q "^stampfs: snapshot $ST3: file (inode [0-9]*) cannot be read: " "$WORK/fg.log" ||
        { cat "$WORK/fg.log" >&2; fail "no log line for the damaged file"; }

# Other ways of serving the same bytes: open and opendir answered (kernels
# without FUSE_CAP_NO_OPEN(DIR)_SUPPORT), no read-ahead, a loop whose
# threads sleep at once (spin=0), one thread only (-s), and chunks so small
# that a 1 MiB read covers more of them than one reply can point at.
for how in "STAMPFS_OPEN=1 -o cache_size=8" "X=1 -o prefetch=0" "X=1 -o spin=0" "X=1 -s -o spin=50"; do
        opts=${how#X=1 }
        opts=${opts#STAMPFS_OPEN=1 }
        # shellcheck disable=SC2086 # the options are words
        env ${how%% -*} "$STAMPFS" "$S" "$MNT5" $opts
        python3 "$LIB/manifest.py" "$MNT5/$ST" >"$WORK/m.alt"
        diff "$WORK/m.src" "$WORK/m.alt" >&2 || fail "mount ($how) differs from the source"
        case $how in
        *spin=0 | *-s*)
                python3 "$WORK/parallel.py" "$WORK/src/large/big_100m.bin" "$MNT5/$ST/large/big_100m.bin"
                ;;
        esac
        if [ "$how" = "X=1 -s -o spin=50" ]; then
                # One thread: SIGTERM during a read still ends the daemon and
                # leaves no mount (at a signal it answers what the read-ahead's
                # notifications wait for, as the many-threaded loop does).
                sync
                echo 3 >/proc/sys/vm/drop_caches
                pid=$(pgrep -f -- "$S $MNT5" | head -1)
                [ -n "$pid" ] || fail "no daemon for the -s mount"
                (cd "$MNT5/$ST" && tar -cf - . 2>/dev/null | wc -c >/dev/null) &
                tarpid=$!
                sleep 0.3
                kill -TERM "$pid"
                for _ in $(seq 100); do running "$pid" || break; sleep 0.1; done
                ! running "$pid" || fail "the -s daemon did not stop within 10 s of SIGTERM"
                wait "$tarpid" || true
                ! grep -q " $MNT5 " /proc/mounts || fail "SIGTERM left the -s mount behind"
                continue
        fi
        fusermount3 -u "$MNT5"
done
# A handler that waits where it did not say it may (here a getxattr made to
# sleep 3 s by a test hook) holds up no one else: the loop's watchdog hands
# the device to another thread within 10-20 ms.
STAMPFS_TEST_STALL_MS=3000 "$STAMPFS" "$S" "$MNT5"
python3 -c 'import os, sys
try:
    os.getxattr(sys.argv[1], "user.stampfs.test-stall")
except OSError:
    pass' "$MNT5/$ST/files/size_1" &
stallpid=$!
sleep 0.3
t0=$EPOCHREALTIME
ls -lR "$MNT5/$ST" >/dev/null
cmp -n 4194304 "$MNT5/$ST/large/big_100m.bin" "$WORK/src/large/big_100m.bin" || fail "read beside a stalled request differs"
took=$(python3 -c "print(int(($EPOCHREALTIME - $t0) * 1000))")
[ "$took" -lt 2000 ] || fail "requests beside a stalled one took $took ms: the watchdog did not hand over"
kill -0 "$stallpid" 2>/dev/null || fail "the stalled getxattr ended early: the test hook did not stall"
wait "$stallpid"
fusermount3 -u "$MNT5"

# SIGTERM, then a READ of a file whose read-ahead push has not happened yet
# (delayed 1.5 s by a test hook): the loop no longer reads the device, so
# the READ stays queued with the file's pages locked, and a push of them
# would wait for good, and the daemon with it as it joins the read-ahead
# threads. No push starts after a signal: the daemon ends. Before baf5f56
# this hung 3 times in 3 (the many-threaded loop). Checked with -s too.
mkdir "$WORK/race"
head -c 5000 /dev/urandom >"$WORK/race/a"
head -c 7777 /dev/urandom >"$WORK/race/b"
STR=$("$STAMP" --store "$S" -q snapshot "$WORK/race")
for how in "" "-s"; do
        # shellcheck disable=SC2086 # $how is an option or nothing
        STAMPFS_TEST_STALL_MS=1500 STAMPFS_TEST_STALL_SIZE=7777 "$STAMPFS" "$S" "$MNT5" $how
        pid=$(pgrep -f -- "$S $MNT5" | head -1)
        [ -n "$pid" ] || fail "no daemon for $MNT5"
        ls -l "$MNT5/$STR" >/dev/null # the kernel knows b: its pages may be pushed
        cat "$MNT5/$STR/a" >/dev/null # queues b's read-ahead: loaded, then the push waits
        sleep 0.3
        kill -TERM "$pid"
        sleep 0.2
        (cat "$MNT5/$STR/b" >/dev/null 2>&1 || true) &
        catpid=$!
        for _ in $(seq 100); do running "$pid" || break; sleep 0.1; done
        if running "$pid"; then
                # Free it, so that the cleanup can unmount: abort the connection.
                grep -q " /sys/fs/fuse/connections " /proc/mounts ||
                        mount -t fusectl none /sys/fs/fuse/connections || true
                dev=$(awk -v m="$MNT5" '$5 == m { split($3, d, ":"); print d[2] }' /proc/self/mountinfo)
                [ -z "$dev" ] || echo 1 >"/sys/fs/fuse/connections/$dev/abort" || true
                kill -9 "$pid" 2>/dev/null || true
                fail "stampfs $how hung after SIGTERM with a read-ahead push due"
        fi
        wait "$catpid"
        ! grep -q " $MNT5 " /proc/mounts || fail "SIGTERM left $MNT5 mounted ($how)"
done

"$STAMP" init --chunk-min 64 --chunk-avg 256 --chunk-max 1024 "$WORK/tiny" >/dev/null
head -c 3000000 /dev/urandom >"$WORK/tiny-src"
mkdir "$WORK/tiny-dir" && cp "$WORK/tiny-src" "$WORK/tiny-dir/f"
STT=$("$STAMP" --store "$WORK/tiny" -q snapshot "$WORK/tiny-dir")
"$STAMPFS" "$WORK/tiny" "$MNT5"
dd if="$MNT5/$STT/f" bs=1M 2>/dev/null | cmp -s - "$WORK/tiny-src" || fail "tiny chunks read wrong"
fusermount3 -u "$MNT5"

# Read-ahead hands the files that follow to the kernel: once a directory
# is listed, its first file read and the workers done, the next 32 files
# read without a single request (all 32 ask without it); a cp -a through
# it is exact.
mkdir "$WORK/many"
for i in $(seq -w 1 200); do head -c $((3000 + 10#$i * 37)) /dev/urandom >"$WORK/many/f$i"; done
STM=$("$STAMP" --store "$S" -q snapshot "$WORK/many")
reads() { grep -c "opcode: READ " "$1" || true; }
for opt in prefetch=0 prefetch=32; do
        log="$WORK/reads-$opt.log"
        "$STAMPFS" -d "$S" "$MNT5" -o "$opt" 2>"$log" &
        for _ in $(seq 50); do [ -e "$MNT5/latest" ] && break; sleep 0.1; done
        ls -l "$MNT5/$STM" >/dev/null # stats as cp -a, tar, rsync do: the kernel knows the files
        cat "$MNT5/$STM/f001" >/dev/null
        sleep 2
        before=$(reads "$log")
        cat "$MNT5/$STM"/f0{02..33} >/dev/null
        asked=$(($(reads "$log") - before))
        echo "$opt: reading the 32 files after the first sent $asked reads"
        if [ "$opt" = prefetch=0 ]; then
                [ "$asked" -ge 32 ] || fail "without read-ahead, $asked reads for 32 files"
        else
                [ "$asked" -le 2 ] || fail "read-ahead did not reach the page cache ($asked reads for 32 files)"
        fi
        cp -a "$MNT5/$STM" "$WORK/many-$opt"
        diff -r "$WORK/many" "$WORK/many-$opt" >&2 || fail "cp -a with $opt differs"
        fusermount3 -u "$MNT5"
        wait
done

# Two names of one hardlink group whose contents differ (a database
# captured under each name, a store from before snapshots read a file once,
# or a forged tree) are two inodes, each with its own bytes, in the mount
# as in a restore; drill expects that. And read-ahead fills only the pages
# of the file it read: the kernel must not get b's bytes pushed into c's.
mkdir "$WORK/linked"
head -c 10000 /dev/urandom >"$WORK/linked/a0"
head -c 1048576 /dev/zero | tr '\0' Y >"$WORK/linked/b"
head -c 1048576 /dev/zero | tr '\0' X >"$WORK/linked/c"
touch -d @1700000000 "$WORK/linked/b" "$WORK/linked/c" # same size, same time
"$STAMP" --store "$S" -q snapshot "$WORK/linked" >/dev/null
STL=$("$CRAFT" "$S" --link b c) || fail "craft-tree --link failed"
"$STAMPFS" "$S" "$MNT5" -o cache_size=1
stat "$MNT5/$STL/c" "$MNT5/$STL/b" >/dev/null # the kernel knows both names, as c's inode
cat "$MNT5/$STL/a0" >/dev/null               # reads b and c ahead
sleep 1
cmp -s "$MNT5/$STL/c" "$WORK/linked/c" || fail "read-ahead of b wrote into c's pages"
cmp -s "$MNT5/$STL/b" "$WORK/linked/b" || fail "b of a group that disagrees reads other bytes"
[ "$(stat -c %i "$MNT5/$STL/b")" != "$(stat -c %i "$MNT5/$STL/c")" ] ||
        fail "b and c, of other content, are one inode"
fusermount3 -u "$MNT5"
"$STAMP" --store "$S" -q restore --confirm-service-stopped --no-pre-snapshot "$STL" "$WORK/linked-r"
for n in b c; do
        cmp -s "$WORK/linked-r/$n" "$WORK/linked/$n" || fail "restore: $n holds other bytes"
done
[ "$(stat -c %i "$WORK/linked-r/b")" != "$(stat -c %i "$WORK/linked-r/c")" ] ||
        fail "restore: b and c, of other content, are one inode"
"$STAMP" --store "$S" -q drill "$STL" || fail "drill of a group that disagrees"
# A target where an older restore made c a link of b: b (same size and
# time) is left in place, c must not be, though its name is b's inode.
ln -f "$WORK/linked-r/b" "$WORK/linked-r/c"
"$STAMP" --store "$S" -q restore --confirm-service-stopped --no-pre-snapshot "$STL" "$WORK/linked-r"
cmp -s "$WORK/linked-r/c" "$WORK/linked/c" || fail "restore over a linked target: c kept b's bytes"
"$STAMP" --store "$S" -q forget "$STL"

# Listings are lean until programs stat what they list: a walk that only
# reads directories (find) makes no lookup, and the d_ino and d_type it
# gets match what lstat says, hardlinks included. After 32 lookups of
# entries a listing left out, listings carry every entry, also those of
# directories the kernel had cached lean (a new listing, then lstat of
# each entry: no lookup); with -o full_listings from the start.
mkdir "$WORK/lean"
for d in a b c d e f g h i j k l; do
        mkdir "$WORK/lean/$d"
        for i in $(seq -w 1 50); do echo "$d$i" >"$WORK/lean/$d/f$i"; done
done
STL=$("$STAMP" --store "$S" -q snapshot "$WORK/lean")
lookups() { # in LOG, inside stamps (the root's entries time out after a second)
        grep "opcode: LOOKUP " "$1" | grep -vc "nodeid: 1," || true
}
scan() { # DIR: every entry below DIR as listed (no stat): path (hex), d_ino, d_type
        python3 - "$1" <<'PY'
import os, sys
def walk(d):
    with os.scandir(d) as it:
        for e in it:
            kind = "d" if e.is_dir(follow_symlinks=False) else \
                   "l" if e.is_symlink() else "f" if e.is_file(follow_symlinks=False) else "o"
            print(os.fsencode(os.path.relpath(e.path, sys.argv[1])).hex(), e.inode(), kind)
            if kind == "d":
                walk(e.path)
walk(sys.argv[1])
PY
}
stats() { # DIR SCAN: the entries of SCAN, from lstat
        python3 - "$1" "$2" <<'PY'
import os, stat, sys
for line in open(sys.argv[2]):
    path = line.split()[0]  # hex: names may hold spaces and newlines
    st = os.lstat(os.path.join(os.fsencode(sys.argv[1]), bytes.fromhex(path)))
    m = st.st_mode
    kind = "d" if stat.S_ISDIR(m) else "l" if stat.S_ISLNK(m) else "f" if stat.S_ISREG(m) else "o"
    print(path, st.st_ino, kind)
PY
}
log="$WORK/lean.log"
"$STAMPFS" -d "$S" "$MNT5" 2>"$log" &
for _ in $(seq 50); do [ -e "$MNT5/latest" ] && break; sleep 0.1; done
before=$(lookups "$log")
scan "$MNT5/$ST" >"$WORK/lean.scan"
find "$MNT5/$STL" >/dev/null
[ "$(lookups "$log")" = "$before" ] ||
        fail "listing without stat made $(($(lookups "$log") - before)) lookups"
before=$(lookups "$log")
stat "$MNT5/$STL/a"/* >/dev/null
[ $(($(lookups "$log") - before)) -ge 50 ] || fail "lean listing: files of a looked up $(($(lookups "$log") - before)) times"
sleep 1 # the cached lean listings are dropped meanwhile
before=$(lookups "$log")
ls "$MNT5/$STL/b" >/dev/null
stat "$MNT5/$STL/b"/* >/dev/null
[ "$(lookups "$log")" = "$before" ] ||
        fail "after 32 misses, a listing cached lean still left files out ($(($(lookups "$log") - before)) lookups)"
stats "$MNT5/$ST" "$WORK/lean.scan" >"$WORK/lean.stat"
diff "$WORK/lean.scan" "$WORK/lean.stat" >&2 || fail "lean listing: d_ino or d_type differ from lstat"
fusermount3 -u "$MNT5"
wait
# Readers that only list and readers that stat everything, at once on a
# fresh mount: the switch to full listings and the dropping of cached lean
# ones happen under them, and each sees the source.
"$STAMPFS" "$S" "$MNT5"
(cd "$WORK/lean" && find . -printf '%P %y\n' | sort) >"$WORK/lean.names"
(cd "$WORK/lean" && find . -printf '%P %y %s %m %U %T@\n' | sort) >"$WORK/lean.attrs"
for k in 1 2 3 4; do
        (cd "$MNT5/$STL" && find . -printf '%P %y\n' | sort) >"$WORK/lean.names.$k" &
        (cd "$MNT5/$STL" && find . -printf '%P %y %s %m %U %T@\n' | sort) >"$WORK/lean.attrs.$k" &
done
wait
for k in 1 2 3 4; do
        cmp -s "$WORK/lean.names" "$WORK/lean.names.$k" || fail "concurrent listing $k differs from the source"
        cmp -s "$WORK/lean.attrs" "$WORK/lean.attrs.$k" || fail "concurrent stat walk $k differs from the source"
done
fusermount3 -u "$MNT5"
"$STAMPFS" -d -o full_listings "$S" "$MNT5" 2>"$log" &
for _ in $(seq 50); do [ -e "$MNT5/latest" ] && break; sleep 0.1; done
before=$(lookups "$log")
find "$MNT5/$STL" >/dev/null
stat "$MNT5/$STL"/*/* >/dev/null
[ "$(lookups "$log")" = "$before" ] ||
        fail "-o full_listings: $(($(lookups "$log") - before)) lookups after a listing"
fusermount3 -u "$MNT5"
wait

# A directory of 100k entries: listing and lookups stay fast (binary search in a cached tree).
mkdir "$WORK/big"
python3 -c 'import os, sys
d = sys.argv[1]
for i in range(100000):
    open(os.path.join(d, "f%06d" % i), "w").close()' "$WORK/big"
ST4=$("$STAMP" --store "$S" -q snapshot "$WORK/big")
start=$(date +%s%N)
n=$(ls -f "$MNT/$ST4" | wc -l)
[ "$n" = 100002 ] || fail "100k directory lists $n entries"
for i in 000000 031337 099999; do stat "$MNT/$ST4/f$i" >/dev/null || fail "lookup f$i"; done
ms=$((($(date +%s%N) - start) / 1000000))
echo "100k-entry directory: listed and looked up in $ms ms"
[ "$ms" -lt 20000 ] || fail "100k-entry directory took $ms ms"

# "." and ".." in a listing carry the inode numbers stat gives (find and
# pwd-like walkers match them), at every depth.
python3 - "$MNT" "$ST" <<'PY' || fail "the d_ino of . or .. differs from its st_ino"
import ctypes, os, struct, sys
mnt, stamp = sys.argv[1:]
libc = ctypes.CDLL(None, use_errno=True)
nr = {"x86_64": 217, "aarch64": 61}[os.uname().machine]
def dots(d):
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    buf, found = ctypes.create_string_buffer(65536), {}
    while True:
        n = libc.syscall(nr, fd, buf, len(buf))
        if n <= 0:
            break
        raw, p = buf.raw[:n], 0
        while p < n:
            ino, _, reclen = struct.unpack_from("<QqH", raw, p)
            name = raw[p + 19:p + reclen].split(b"\0")[0]
            if name in (b".", b".."):
                found[name] = ino
            p += reclen
    os.close(fd)
    return found
deep = max((r for r, _, _ in os.walk(os.path.join(mnt, stamp))), key=lambda r: r.count("/"))
checked = 0
for d in (mnt, os.path.join(mnt, stamp), os.path.dirname(deep), deep):
    got = dots(d)
    want = {b".": os.stat(d).st_ino, b"..": os.stat(os.path.join(d, "..")).st_ino}
    if d == mnt:  # its ".." is outside the mount
        del got[b".."], want[b".."]
    if got != want:
        sys.exit("%s: getdents gives %s, stat %s" % (d, got, want))
    checked += 1
print("dots checked in %d directories, down to depth %d" % (checked, deep.count("/") - mnt.count("/")))
PY

# The root while stamps come and go: a listing read in small pieces,
# with a stamp forgotten between two of them, shows every other stamp
# once (the offsets are the stamps', not positions in a list that moved).
# A record that cannot be read is listed all the same, along with the
# stamps after it; its lookup fails with EIO and the mount says why.
"$STAMP" init "$WORK/stamps" >/dev/null
mkdir "$WORK/one" && echo one >"$WORK/one/f"
STR=$("$STAMP" --store "$WORK/stamps" -q snapshot "$WORK/one")
python3 - "$WORK/stamps/snapshots" "$STR" <<'PY'
import datetime, sys
d, stamp = sys.argv[1:]
text = open("%s/%s.json" % (d, stamp)).read()
t = datetime.datetime(2025, 1, 1)
for i in range(200):
    s = (t + datetime.timedelta(minutes=i)).strftime("%Y%m%dT%H%M%SZ")
    open("%s/%s.json" % (d, s), "w").write(text.replace(stamp, s))
PY
"$STAMPFS" -f "$WORK/stamps" "$MNT5" 2>"$WORK/stamps.log" &
for _ in $(seq 50); do [ -e "$MNT5/latest" ] && break; sleep 0.1; done
python3 - "$MNT5" "$STAMP" "$WORK/stamps" <<'PY' || fail "a listing of the root lost a stamp that stayed"
import ctypes, os, struct, subprocess, sys
mnt, tool, store = sys.argv[1:]
libc = ctypes.CDLL(None, use_errno=True)
nr = {"x86_64": 217, "aarch64": 61}[os.uname().machine]
# From the store: a listing of the mount now would be what the kernel caches.
before = sorted(x[:-5] for x in os.listdir(store + "/snapshots")) + ["latest"]
fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
buf = ctypes.create_string_buffer(1024)
seen, calls = [], 0
while True:
    n = libc.syscall(nr, fd, buf, len(buf))
    if n < 0:
        sys.exit("getdents: %s" % os.strerror(ctypes.get_errno()))
    if n == 0:
        break
    calls += 1
    raw, p = buf.raw[:n], 0
    while p < n:
        reclen = struct.unpack_from("<H", raw, p + 16)[0]
        seen.append(raw[p + 19:p + reclen].split(b"\0")[0].decode())
        p += reclen
    if calls == 1:  # the first stamp goes, the others stay
        subprocess.run([tool, "--store", store, "-q", "forget", before[0]], check=True)
os.close(fd)
seen = [x for x in seen if x not in (".", "..")]
want = [x for x in before if x != before[0]]
missing = sorted(set(want) - set(seen))
twice = sorted({x for x in seen if seen.count(x) > 1})
print("root listed in %d pieces, %d entries" % (calls, len(seen)))
if calls < 3 or missing or twice:
    sys.exit("%d pieces; missing %s; listed twice %s" % (calls, missing, twice))
PY
fusermount3 -u "$MNT5"
wait
bad=$(ls "$WORK/stamps/snapshots" | sed -n 100p)
bad=${bad%.json}
printf '{"broken' >"$WORK/stamps/snapshots/$bad.json"
"$STAMPFS" -f "$WORK/stamps" "$MNT5" 2>"$WORK/stamps.log" &
for _ in $(seq 50); do [ -e "$MNT5/latest" ] && break; sleep 0.1; done
ls "$MNT5" >"$WORK/root.ls" || fail "ls of the root failed with a damaged record in the store"
[ "$(wc -l <"$WORK/root.ls")" = 201 ] || fail "the root lists $(wc -l <"$WORK/root.ls") entries, not 201"
grep -qx "$bad" "$WORK/root.ls" || fail "the stamp with a damaged record is not listed"
grep -qx latest "$WORK/root.ls" || fail "latest is not listed after a damaged record"
ls -l "$MNT5" >/dev/null 2>"$WORK/err" && fail "ls -l of the root hides the damaged record"
grep -q "cannot access.*$bad.*Input/output error" "$WORK/err" || { cat "$WORK/err" >&2; fail "the damaged record is not EIO"; }
[ "$(cat "$MNT5/$STR/f")" = one ] || fail "a stamp after the damaged record does not read"
fusermount3 -u "$MNT5"
wait
grep -q "snapshot $bad: its record cannot be read: damaged (not a valid snapshot record)" "$WORK/stamps.log" ||
        { cat "$WORK/stamps.log" >&2; fail "the mount does not say why $bad cannot be read"; }

# SIGTERM to the daemon unmounts cleanly.
MNT4="$WORK/mnt4"
mkdir "$MNT4"
"$STAMPFS" "$S" "$MNT4"
pid=$(pgrep -f "stampfs $S $MNT4" | head -1)
kill -TERM "$pid"
for _ in $(seq 50); do running "$pid" || break; sleep 0.1; done
running "$pid" && fail "stampfs ignored SIGTERM"
grep -q " $MNT4 " /proc/self/mountinfo && fail "SIGTERM left the mount behind"
# A server killed with -9 leaves a dead mount: mounting again says what to do.
"$STAMPFS" "$S" "$MNT4"
kill -9 "$(pgrep -f "stampfs $S $MNT4" | head -1)"
for _ in $(seq 50); do pgrep -f "stampfs $S $MNT4" >/dev/null || break; sleep 0.1; done
expect_rc 3 "$STAMPFS" "$S" "$MNT4"
expect_err "Transport endpoint is not connected (a mount whose server died is still there: fusermount3 -u it first)"
fusermount3 -u "$MNT4"
# In the foreground (systemd Type=simple), SIGTERM is a clean stop: exit 0.
"$STAMPFS" -f "$S" "$MNT4" &
fpid=$!
for _ in $(seq 50); do grep -q " $MNT4 " /proc/self/mountinfo && break; sleep 0.1; done
kill -TERM "$fpid"
rc=0
wait "$fpid" || rc=$?
[ "$rc" = 0 ] || fail "stampfs -f stopped by SIGTERM exited $rc"
grep -q " $MNT4 " /proc/self/mountinfo && fail "SIGTERM left the foreground mount behind"

# Clean unmount: the daemon exits.
pid=$(pgrep -f "stampfs $S $MNT" | head -1)
fusermount3 -u "$MNT"
for _ in $(seq 50); do running "$pid" || break; sleep 0.1; done
running "$pid" && fail "stampfs still running after unmount"
echo "mount ok"

#!/bin/bash
# The two ways to keep a store mounted, as installed:
#   - mount(8) with type fuse.stampfs, from an fstab line (mount -T) and
#     from the command line, through contrib/mount.stampfs installed as
#     /sbin/mount.fuse.stampfs; and through fuse3's generic /sbin/mount.fuse
#     when that helper is missing (a /usr/local install), which passes
#     "dev,suid" on unless the line says nosuid,nodev. Each in a private
#     mount namespace whose /sbin (or /usr/local/bin) is overlaid with the
#     helper and the built stampfs, so nothing is installed on the host.
#   - stampfs@.service's command lines, run by lib/unit_exec.py with the
#     unit's capabilities: mounted as soon as ExecStart= returns
#     (Type=forking, no waiting), unmounted by ExecStop= with the daemon
#     gone; a second stop is harmless; after the daemon is killed, the next
#     start clears the dead mount and mounts again.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
: "${STAMPFS:?STAMPFS must point at the stampfs binary}"
: "${UNITDIR:?UNITDIR must point at the configured units (build/contrib/systemd)}"
: "${STAMP_BINDIR:?STAMP_BINDIR must be the bindir the units name}"
[ -c /dev/fuse ] || { echo "no /dev/fuse"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "needs root (mount namespaces, mount(8))"; exit 77; }
HELPER="$LIB/../../../contrib/mount.stampfs"

mkdir -p "$WORK/src/sub" "$WORK/mnt" "$WORK/extra" "$WORK/localbin"
echo "hello from the store" >"$WORK/src/sub/file"
S="$WORK/store"
"$STAMP" init "$S" >/dev/null
"$STAMP" --store "$S" -q snapshot "$WORK/src" >/dev/null

# check_mounted MNT: a stampfs mount there, serving the snapshot.
check_mounted() {
        grep -q " $1 ro,nosuid,nodev[^ ]* .*- fuse.stampfs stampfs:$S " /proc/self/mountinfo ||
                { grep " $1 " /proc/self/mountinfo >&2 || true; fail "no stampfs mount at $1"; }
        [ "$(cat "$1/latest/sub/file")" = "hello from the store" ] || fail "$1 does not serve the snapshot"
}
not_mounted() {
        ! grep -q " $1 " /proc/self/mountinfo || fail "$1 is still mounted"
}

# --- mount(8), in a private mount namespace.
cp "$HELPER" "$WORK/extra/mount.fuse.stampfs"
ln -s "$STAMPFS" "$WORK/extra/stampfs" # the helper looks beside itself first
ln -s "$STAMPFS" "$WORK/localbin/stampfs"
printf '%s %s fuse.stampfs ro,allow_other,_netdev,nofail,cache_size=32 0 0\n' "$S" "$WORK/mnt" \
        >"$WORK/fstab"
printf '%s %s fuse.stampfs ro,nosuid,nodev,allow_other,_netdev,nofail 0 0\n' "$S" "$WORK/mnt" \
        >"$WORK/fstab-generic"
sbin=$(readlink -f /sbin)
export S WORK sbin
export -f check_mounted not_mounted fail
unshare -m --propagation private bash -euo pipefail -c '
        mount -t overlay overlay -o "lowerdir=$WORK/extra:$sbin" "$sbin"
        mount -T "$WORK/fstab" "$WORK/mnt"
        check_mounted "$WORK/mnt"
        grep -q " $WORK/mnt .*allow_other" /proc/self/mountinfo || fail "allow_other was lost"
        umount "$WORK/mnt"
        not_mounted "$WORK/mnt"
        mount -t fuse.stampfs -o cache_size=16 "$S" "$WORK/mnt"
        check_mounted "$WORK/mnt"
        umount "$WORK/mnt"
' || fail "mount(8) through mount.fuse.stampfs"
echo "ok: mount -T fstab and mount -t fuse.stampfs through mount.fuse.stampfs"
if [ -x /sbin/mount.fuse ]; then
        unshare -m --propagation private bash -euo pipefail -c '
                [ ! -e /sbin/mount.fuse.stampfs ] || exit 0 # installed here: not the generic path
                mount -t overlay overlay -o "lowerdir=$WORK/localbin:/usr/local/bin" /usr/local/bin
                mount -T "$WORK/fstab-generic" "$WORK/mnt"
                check_mounted "$WORK/mnt"
                umount "$WORK/mnt"
        ' || fail "mount(8) through fuse3's mount.fuse"
        echo "ok: mount -T fstab through fuse3's mount.fuse and /usr/local/bin/stampfs"
fi
not_mounted "$WORK/mnt"

# A helper that finds no stampfs says so in one line.
if [ ! -e /usr/local/bin/stampfs ] && [ ! -e /usr/bin/stampfs ]; then
        mkdir "$WORK/lonely"
        cp "$HELPER" "$WORK/lonely/mount.fuse.stampfs"
        expect_rc 1 env PATH=/usr/sbin:/usr/bin:/sbin:/bin /bin/sh "$WORK/lonely/mount.fuse.stampfs" "$S" "$WORK/mnt"
        expect_err "mount.stampfs: no stampfs binary beside $WORK/lonely/mount.fuse.stampfs, in PATH"
fi

# --- stampfs@.service
UNIT="$UNITDIR/stampfs@.service"
MNT="$WORK/mnt-unit/snapshots" # made by ExecStartPre=
cat >"$WORK/test.conf" <<EOF
STORE=$S
MOUNTPOINT=$MNT
MOUNT_OPTIONS=-o allow_other,cache_size=32
EOF
unit() { # start|stop
        python3 "$LIB/unit_exec.py" --map "$STAMP_BINDIR/stampfs=$STAMPFS" \
                --env-file "$WORK/test.conf" "$UNIT" test "$1" 2>"$WORK/unit.log" ||
                { cat "$WORK/unit.log" >&2; fail "stampfs@test.service: $1 failed"; }
}
# daemon_pid: the stampfs serving MNT (its command line names MNT).
daemon_pid() {
        local p
        for p in /proc/[0-9]*; do
                { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q "^$STAMPFS $S $MNT " &&
                        { echo "${p#/proc/}"; return 0; }
        done
        return 1
}
gone() { # PID: waits up to 10 s for it to exit
        for _ in $(seq 100); do [ -e "/proc/$1" ] || return 0; sleep 0.1; done
        fail "stampfs $1 did not exit"
}

unit start
check_mounted "$MNT"
pid=$(daemon_pid) || fail "no stampfs process for $MNT"
unit stop
not_mounted "$MNT"
gone "$pid"
unit stop # nothing mounted: ExecStop= may fail, the stop succeeds

unit start
pid=$(daemon_pid) || fail "no stampfs process for $MNT"
kill -9 "$pid"
gone "$pid"
if ls "$MNT" >/dev/null 2>&1; then fail "a killed stampfs left a working mount"; fi
unit start # ExecStartPre= detaches the dead mount
check_mounted "$MNT"
pid=$(daemon_pid) || fail "no stampfs process for $MNT"
unit stop
not_mounted "$MNT"
gone "$pid"
echo "ok: stampfs@test.service start, stop, stop again, restart after a crash"

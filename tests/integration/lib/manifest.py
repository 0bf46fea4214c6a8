#!/usr/bin/env python3
"""Print a canonical manifest of a directory tree, one line per entry.

Usage:
    manifest.py DIR [--ignore-root-times] [--sqlite-masked] [--no-ctime] [--no-atime]

Two trees are identical (for everything a snapshot/restore must preserve)
iff their manifests are byte-identical:

    diff <(manifest.py A) <(manifest.py B)

Line format (fields separated by single spaces, all ASCII):

    PATH TYPE mode=NNNN uid=N gid=N [size=N] mtime=NS [rdev=MAJ,MIN]
         [target=ESC] [sha256=HEX] [nlink=N] [link=PATH] [xattr=NAME=HEX ...]

  PATH    path relative to DIR, "." for DIR itself, escaped (see esc()).
          Lines are sorted by the raw path bytes ("." first), i.e. a plain
          bytewise sort of full relative paths, NOT a per-directory walk
          order: "d-x" < "d.x" < "d/x" < "d0".
  TYPE    dir reg lnk fifo sock chr blk
  mode    permission bits incl. setuid/setgid/sticky, 4 octal digits
          (always 0777 for symlinks on Linux).
  size    regular files only.
  mtime   nanoseconds since the epoch (may be negative); every type,
          including symlinks.  Omitted for "." with --ignore-root-times.
  rdev    chr/blk only.
  target  symlinks only, escaped like PATH.
  sha256  regular files only.  With --sqlite-masked, a file that starts
          with "SQLite format 3\\0" is hashed with the three header fields
          zeroed that SQLite's backup API rewrites in its copy: the file
          change counter (bytes 24..27), the schema cookie (40..43) and
          the version-valid-for number (92..95).  `stamp snapshot` copies
          rollback-journal databases that way, equal in every other byte.
  nlink   every non-directory (directory link counts are fs-specific).
  link    non-directories with st_nlink > 1: the first path, in sorted order,
          that has the same (st_dev, st_ino); identical for every member of a
          hardlink group (the first member names itself).
  xattr   all extended attributes (any namespace), sorted by name bytes; the
          value is lowercase hex (empty value -> "user.x=").  POSIX ACLs and
          file capabilities show up here as system.posix_acl_* and
          security.capability.

Not compared: ctime and atime (they cannot be restored; --no-ctime and
--no-atime are accepted for compatibility and do nothing), inode numbers,
st_dev, directory sizes/link counts, allocated blocks (so a sparse file and
its fully allocated copy look the same), btime, chattr flags (lsattr).
nlink is the raw st_nlink, so it also counts links from outside DIR.

Symlinks below DIR are never followed (DIR itself may be a symlink);
FIFOs, sockets and devices are never opened.

Exit status: 0 on success, 2 if some entry could not be read (the line then
carries an "error=..." field instead of the missing data).
"""

import argparse
import errno
import hashlib
import os
import stat
import sys

TYPES = (
    (stat.S_ISDIR, "dir"), (stat.S_ISREG, "reg"), (stat.S_ISLNK, "lnk"),
    (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "sock"), (stat.S_ISCHR, "chr"),
    (stat.S_ISBLK, "blk"),
)

_ESC = []
for _b in range(256):
    if _b == 0x5C:
        _ESC.append("\\\\")
    elif 0x21 <= _b <= 0x7E:
        _ESC.append(chr(_b))
    else:                       # controls, space, DEL, non-ASCII
        _ESC.append("\\x%02x" % _b)


def esc(b):
    """Bytes -> printable ASCII without spaces: printable ASCII other than
    backslash stays, backslash becomes \\\\, everything else (including
    space) becomes \\xNN.  Injective, so distinct names stay distinct."""
    return "".join(_ESC[c] for c in b)


def ftype(mode):
    for pred, name in TYPES:
        if pred(mode):
            return name
    return "unknown%o" % stat.S_IFMT(mode)


SQLITE_MAGIC = b"SQLite format 3\0"
# (offset, length) of the header fields SQLite's backup API rewrites.
SQLITE_BACKUP_FIELDS = ((24, 4), (40, 4), (92, 4))


def mask_sqlite_header(buf):
    """buf (a file's first bytes) with SQLITE_BACKUP_FIELDS zeroed, if it
    is a SQLite database; else buf as it is."""
    if not buf.startswith(SQLITE_MAGIC):
        return buf
    b = bytearray(buf)
    for off, n in SQLITE_BACKUP_FIELDS:
        b[off:off + n] = bytes(len(b[off:off + n]))
    return bytes(b)


def sha256_file(path, sqlite_masked=False):
    h = hashlib.sha256()
    # O_NOFOLLOW/O_NONBLOCK: never follow or block if the entry was swapped
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        first = sqlite_masked
        while True:
            buf = os.read(fd, 1 << 20)
            if not buf:
                break
            if first:
                buf = mask_sqlite_header(buf)
                first = False
            h.update(buf)
    finally:
        os.close(fd)
    return h.hexdigest()


def walk(root, errors):
    """Yield (relpath_bytes, stat_result) for root and everything below it,
    without following symlinks or crossing into symlinked directories.
    Directories that cannot be listed are recorded in errors[relpath]."""
    yield b"", os.stat(root)          # DIR itself may be given as a symlink
    stack = [b""]
    while stack:
        rel = stack.pop()
        try:
            it = os.scandir(os.path.join(root, rel) if rel else root)
        except OSError as e:
            errors[rel] = "scandir:" + esc(os.fsencode(e.strerror or str(e)))
            continue
        with it:
            for e in it:
                r = os.path.join(rel, e.name) if rel else e.name
                st = e.stat(follow_symlinks=False)
                yield r, st
                if stat.S_ISDIR(st.st_mode):
                    stack.append(r)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--ignore-root-times", action="store_true",
                    help="omit the mtime of the root directory '.'")
    ap.add_argument("--sqlite-masked", action="store_true",
                    help="hash SQLite files with the header fields SQLite's backup API "
                         "rewrites zeroed")
    ap.add_argument("--no-ctime", action="store_true", help="no-op: ctime is never printed")
    ap.add_argument("--no-atime", action="store_true", help="no-op: atime is never printed")
    a = ap.parse_args()

    root = os.fsencode(a.dir)
    st0 = os.stat(root)
    if not stat.S_ISDIR(st0.st_mode):
        sys.stderr.write("manifest: %s: not a directory\n" % a.dir)
        return 2

    errors = {}
    entries = sorted(walk(root, errors), key=lambda e: (e[0] != b"", e[0]))

    first_of_inode = {}
    for rel, st in entries:
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            first_of_inode.setdefault((st.st_dev, st.st_ino), rel)

    failed = bool(errors)
    out = sys.stdout.buffer
    for rel, st in entries:
        path = os.path.join(root, rel) if rel else root
        m = st.st_mode
        t = ftype(m)
        f = [esc(rel) if rel else ".", t, "mode=%04o" % stat.S_IMODE(m),
             "uid=%d" % st.st_uid, "gid=%d" % st.st_gid]
        if t == "reg":
            f.append("size=%d" % st.st_size)
        if not (rel == b"" and a.ignore_root_times):
            f.append("mtime=%d" % st.st_mtime_ns)
        if t in ("chr", "blk"):
            f.append("rdev=%d,%d" % (os.major(st.st_rdev), os.minor(st.st_rdev)))
        try:
            if t == "lnk":
                f.append("target=" + esc(os.readlink(path)))
            elif t == "reg":
                f.append("sha256=" + sha256_file(path, a.sqlite_masked))
        except OSError as e:
            f.append("error=" + esc(os.fsencode(e.strerror or str(e))))
            failed = True
        if t != "dir":
            f.append("nlink=%d" % st.st_nlink)
            if st.st_nlink > 1:
                f.append("link=" + esc(first_of_inode[(st.st_dev, st.st_ino)]))
        try:
            nofollow = rel != b""          # root: describe the directory, not a symlink to it
            names = sorted(os.fsencode(n) for n in os.listxattr(path, follow_symlinks=not nofollow))
            for n in names:
                v = os.getxattr(path, n, follow_symlinks=not nofollow)
                f.append("xattr=%s=%s" % (esc(n), v.hex()))
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):   # no xattr support: none
                f.append("error=xattr:" + esc(os.fsencode(e.strerror or str(e))))
                failed = True
        if rel in errors:
            f.append("error=" + errors[rel])
        out.write((" ".join(f) + "\n").encode("ascii"))
    out.flush()
    if failed:
        sys.stderr.write("manifest: some entries could not be read (see error= fields)\n")
    return 2 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:          # e.g. `manifest.py X | head`, `cmp -s`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)

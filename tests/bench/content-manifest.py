#!/usr/bin/env python3
"""The sha256 of every regular file below DIR, for bench-mount.sh's content check.

Usage:
    content-manifest.py DIR

Prints what `cd DIR && find . -type f -print0 | sort -z | xargs -0 sha256sum`
prints (LC_ALL=C): one line "HASH  ./PATH" per regular file, sorted by the
path's bytes, symlinks not followed; a path with a backslash or newline is
escaped the way sha256sum does it (a leading backslash, then \\\\ and \\n).

One difference: a SQLite database (a file that starts with "SQLite format
3\\0") is hashed with the three header fields zeroed that SQLite's backup
API rewrites when `stamp snapshot` copies a rollback-journal database: the
file change counter (bytes 24..27), the schema cookie (40..43) and the
version-valid-for number (92..95) (manifest.py --sqlite-masked). The copy
equals the source in every other byte, and the check should say so.

Exit status: 0, or 1 if a file could not be read (named on stderr).
"""

import os
import stat
import sys

# The masked hash is manifest.py's, the one bench-restore.sh compares with.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "integration", "lib"))
from manifest import sha256_file  # noqa: E402


def regular_files(top):
    """Paths ("./a/b", as bytes) of the regular files below top (find -type f)."""
    for root, dirs, files in os.walk(top):
        rel = os.path.relpath(root, top)
        base = b"." if rel == b"." else b"./" + rel
        for name in files:
            if stat.S_ISREG(os.lstat(os.path.join(root, name)).st_mode):
                yield base + b"/" + name


def main():
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        sys.stdout.write(__doc__)
        return 0 if len(sys.argv) == 2 else 2
    top = os.fsencode(sys.argv[1])
    out = sys.stdout.buffer
    rc = 0
    for path in sorted(regular_files(top)):
        try:
            digest = sha256_file(os.path.join(top, path), sqlite_masked=True)
        except OSError as e:
            sys.stderr.write("content-manifest.py: %s: %s\n" % (os.fsdecode(path), e.strerror))
            rc = 1
            continue
        if b"\\" in path or b"\n" in path:
            path = path.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
            out.write(b"\\")
        out.write(digest.encode() + b"  " + path + b"\n")
    return rc


if __name__ == "__main__":
    sys.exit(main())

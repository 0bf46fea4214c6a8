#!/usr/bin/env python3
"""Generate a reproducible, hostile-but-legitimate source tree for round-trip tests.

Usage:
    gentree.py DIR [--seed N] [--size small|large] [--skip GROUP[,GROUP...]]
    gentree.py --list-groups

DIR must not exist or must be empty.  With the same --seed (and the same
--skip, size and privileges) the generated tree is identical, as checked by
manifest.py: same names, contents, modes, owners, xattrs, nanosecond mtimes
and hardlink structure.  The layout is fixed; the seed changes file contents
and most timestamps.

Every feature lives in its own top-level directory (see GROUPS below), so a
test that is not ready for one of them can leave it out with --skip.  'owners'
and 'xattrs' are cross-cutting: skipping them turns off chown/setxattr
everywhere.

Things that need privileges (device nodes, chown) or filesystem support
(user xattrs, very long symlink targets) are skipped with a "gentree: note:"
line on stderr if they fail; the exit status stays 0.

Stdlib only.  All paths are handled as bytes, so non-UTF-8 names work.
"""

import argparse
import errno
import os
import random
import socket
import stat
import struct
import sys

GROUPS = {
    "files":     "regular files of boundary sizes, random/text content, duplicates",
    "deep":      "directories nested 6 levels deep",
    "longpath":  "a path of ~2 KB made of 8 directories with 250-byte names",
    "empty":     "empty directories",
    "sparse":    "sparse files (holes at start/middle/end, an all-hole file)",
    "symlinks":  "relative, absolute, dangling, to-dir, loops, long and odd targets",
    "hardlinks": "3-link group across dirs, same-dir pair, empty-file pair, "
                 "hardlinked symlink and FIFO",
    "special":   "FIFO and unix socket",
    "devices":   "char (1,3), block (7,0) and large-number char device nodes (root)",
    "xattrs":    "user.* xattrs with binary/empty/large values on files, dirs, root",
    "names":     "hostile names: whitespace, newline, quotes, dash, UTF-8, non-UTF-8, 255 bytes",
    "sort":      "names whose byte order differs from locale/component order",
    "modes":     "0000/0444/0600/0755, setuid/setgid files, setgid/sticky/read-only dirs",
    "owners":    "uid/gid 1000, 65534, mixed, 3000000000 (root only)",
    "acls":      "POSIX ACLs (system.posix_acl_access/default), incl. a default-ACL dir "
                 "whose children did not inherit it",
    "privxattrs": "security.capability (cleared by chown/write: restore order matters) "
                  "and trusted.* xattrs (root only)",
    "times":     "extreme mtimes: 0, pre-1970 with ns, >2038, year 2100, ns=0/999999999",
}

MiB = 1024 * 1024


def note(msg):
    sys.stderr.write("gentree: note: %s\n" % msg)


class Gen:
    def __init__(self, root, seed, size, skip):
        self.root = root                      # bytes
        self.seed = seed
        self.size = size
        self.skip = skip
        self.rng = random.Random(seed)
        self.is_root = (os.geteuid() == 0)
        self.owners = {}                      # relpath -> (uid, gid)
        self.modes = {}                       # relpath -> mode
        self.xattrs = []                      # (relpath, name, value)
        self.late_xattrs = []                 # set after chown+chmod: ACLs, capabilities
        self.mtimes = {}                      # relpath -> mtime ns (overrides)
        self.notes_done = set()

    # ---------- helpers ----------
    def on(self, group):
        return group not in self.skip

    def p(self, rel):
        return os.path.join(self.root, rel) if rel else self.root

    def mkdir(self, rel, mode=0o755):
        os.makedirs(self.p(rel), exist_ok=True)
        self.modes.setdefault(rel, mode)

    def write(self, rel, data, mode=0o644):
        d = os.path.dirname(rel)
        if d:
            self.mkdir(d)
        with open(self.p(rel), "wb") as f:
            f.write(data)
        self.modes[rel] = mode

    def symlink(self, target, rel):
        d = os.path.dirname(rel)
        if d:
            self.mkdir(d)
        os.symlink(target, self.p(rel))

    def link(self, src, dst):
        d = os.path.dirname(dst)
        if d:
            self.mkdir(d)
        os.link(self.p(src), self.p(dst), follow_symlinks=False)
        if src in self.modes:                 # same inode: keep the chmod pass consistent
            self.modes[dst] = self.modes[src]

    def chown(self, rel, uid, gid):
        if self.on("owners"):
            self.owners[rel] = (uid, gid)

    def setx(self, rel, name, value):
        if self.on("xattrs"):
            self.xattrs.append((rel, name, value))

    def randbytes(self, n):
        return self.rng.randbytes(n)

    def text(self, n):
        words = [b"stamp", b"snapshot", b"chunk", b"dedup", b"inode", b"the", b"a",
                 b"of", b"block", b"hash", b"tree", b"store", b"restore", b"xattr",
                 b"\xc3\xa9t\xc3\xa9", b"\xe6\x97\xa5\xe6\x9c\xac", b"0x1f", b"42",
                 b"lorem", b"ipsum", b"\t", b"{", b"}", b";", b"return", b"int"]
        out = bytearray()
        while len(out) < n:
            line = b" ".join(self.rng.choices(words, k=self.rng.randint(1, 16)))
            out += line + b"\n"
        return bytes(out[:n])

    # ---------- groups ----------
    def g_files(self):
        for n in (0, 1, 2, 511, 512, 513, 4095, 4096, 4097, 8191, 8192, 8193,
                  65535, 65536, 65537, MiB - 1, MiB, MiB + 1):
            self.write(b"files/size_%d" % n, self.randbytes(n))
        rnd = self.randbytes(100 * 1000 + 3)
        self.write(b"files/random_100k", rnd)
        # identical content in separate inodes: a dedup store must NOT hardlink these
        self.write(b"files/dup_a", rnd)
        self.write(b"files/sub/dup_b", rnd)
        almost = bytearray(rnd)
        almost[len(almost) // 2] ^= 0x01
        self.write(b"files/almost_dup", bytes(almost))
        self.write(b"files/text_1m", self.text(1000 * 1000 + 17))
        self.write(b"files/zeros_64k_not_sparse", bytes(65536))
        self.write(b"files/empty2", b"")          # second empty file, not a hardlink
        self.write(b"files/no_newline_at_end", b"last line without newline")
        self.write(b"files/crlf.txt", b"dos\r\nline\r\n")

    def g_deep(self):
        rel = b"deep"
        for i in range(1, 7):
            rel = os.path.join(rel, b"l%d" % i)
            self.mkdir(rel)
            self.write(os.path.join(rel, b"file_at_depth_%d" % i), self.text(100 + i))
        self.mkdir(os.path.join(rel, b"empty_leaf_dir"))

    def g_longpath(self):
        rel = b"longpath"
        for i in range(8):
            rel = os.path.join(rel, (b"%d" % i) * 250)
        self.mkdir(rel)
        self.write(os.path.join(rel, b"f" * 200), b"deep and long\n")

    def g_empty(self):
        self.mkdir(b"empty/dir1")
        self.mkdir(b"empty/dir2/nested_empty")

    def g_sparse(self):
        self.mkdir(b"sparse")
        # holes at the start, in the middle (unaligned data) and at the end
        rel = b"sparse/holes"
        with open(self.p(rel), "wb") as f:
            f.truncate(10 * MiB + 123)
            f.seek(1 * MiB + 7)
            f.write(self.randbytes(5000))
            f.seek(5 * MiB)
            f.write(self.randbytes(4096))
            f.seek(8 * MiB - 1)
            f.write(b"X")
        self.modes[rel] = 0o644
        # data at the start, hole after it
        rel = b"sparse/data_then_hole"
        with open(self.p(rel), "wb") as f:
            f.write(self.randbytes(4096))
            f.truncate(3 * MiB)
        self.modes[rel] = 0o644
        # nothing but a hole
        rel = b"sparse/all_hole"
        with open(self.p(rel), "wb") as f:
            f.truncate(2 * MiB + 1)
        self.modes[rel] = 0o644

    def g_symlinks(self):
        self.mkdir(b"symlinks")
        self.write(b"symlinks/target_file", b"i am a symlink target\n")
        self.mkdir(b"symlinks/target_dir")
        self.write(b"symlinks/target_dir/inside", b"inside\n")
        self.symlink(b"target_file", b"symlinks/rel_same_dir")
        self.symlink(b"../symlinks/target_dir/inside", b"symlinks/rel_updown")
        self.symlink(b"/etc/hostname", b"symlinks/absolute")
        self.symlink(b"/nonexistent/stampfs/dangling", b"symlinks/absolute_dangling")
        self.symlink(b"does/not/exist", b"symlinks/dangling")
        self.symlink(b"target_dir", b"symlinks/to_dir")
        self.symlink(b"target_dir/", b"symlinks/to_dir_trailing_slash")
        self.symlink(b"/", b"symlinks/to_fs_root")
        self.symlink(b".", b"symlinks/to_dot")
        self.symlink(b"..", b"symlinks/to_dotdot")
        self.symlink(b"loop_b", b"symlinks/loop_a")
        self.symlink(b"loop_a", b"symlinks/loop_b")
        self.symlink(b"self", b"symlinks/self")
        self.symlink(b"odd \n\t\xff\xfe target\\", b"symlinks/odd_target_bytes")
        self.symlink(b"sym with space\nand newline", b"symlinks/sym with space\nand newline")
        self.symlink(b"symlink_to_symlink_chain_end", b"symlinks/chain_1")
        self.symlink(b"chain_1", b"symlinks/chain_2")
        # long target: 4095 bytes is the ext4 maximum (PATH_MAX - 1)
        for n in (4095, 1023):
            tgt = (b"long/" * 1000)[:n - 1] + b"x"
            try:
                self.symlink(tgt, b"symlinks/long_target")
                break
            except OSError as e:
                note("symlink target of %d bytes refused (%s), trying shorter" % (n, e.strerror))
        self.chown(b"symlinks/rel_same_dir", 1000, 1000)     # lchown
        self.chown(b"symlinks/dangling", 65534, 65534)
        self.chown(b"symlinks/target_dir", 1000, 1000)

    def g_hardlinks(self):
        self.mkdir(b"hardlinks")
        # group of 3 in different directories (created in non-sorted order)
        self.write(b"hardlinks/z/g3 third\nwith newline", self.text(3000), 0o640)
        self.link(b"hardlinks/z/g3 third\nwith newline", b"hardlinks/a/g3_first")
        self.link(b"hardlinks/a/g3_first", b"hardlinks/m/deeper/g3_second")
        self.chown(b"hardlinks/a/g3_first", 1000, 65534)
        self.setx(b"hardlinks/a/g3_first", "user.linked", b"shared by 3 names\x00")
        # a pair in the same directory
        self.write(b"hardlinks/pair_a", self.randbytes(10000), 0o444)
        self.link(b"hardlinks/pair_a", b"hardlinks/pair_b")
        # hardlinked empty files (dedup stores like to special-case empty files)
        self.write(b"hardlinks/empty_a", b"", 0o600)
        self.link(b"hardlinks/empty_a", b"hardlinks/empty_b")
        # a hardlinked symlink and a hardlinked FIFO (legal on Linux)
        self.symlink(b"pair_a", b"hardlinks/sym_a")
        self.link(b"hardlinks/sym_a", b"hardlinks/sym_b")
        os.mkfifo(self.p(b"hardlinks/fifo_a"))
        self.modes[b"hardlinks/fifo_a"] = 0o620
        self.link(b"hardlinks/fifo_a", b"hardlinks/fifo_b")
        # a separate file with the same content as pair_a but NOT linked
        with open(self.p(b"hardlinks/pair_a"), "rb") as f:
            self.write(b"hardlinks/same_content_as_pair_not_linked", f.read(), 0o444)

    def g_special(self):
        self.mkdir(b"special")
        os.mkfifo(self.p(b"special/fifo"))
        self.modes[b"special/fifo"] = 0o644
        os.mkfifo(self.p(b"special/fifo with space"))
        self.modes[b"special/fifo with space"] = 0o600
        self.chown(b"special/fifo", 1000, 1000)
        # sun_path is limited to 108 bytes: bind a relative name from inside the dir
        old = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.chdir(self.p(b"special"))
            for name in (b"socket", b"socket\nodd"):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.bind(name)
                finally:
                    s.close()
                self.modes[b"special/" + name] = 0o755
        finally:
            os.fchdir(old)
            os.close(old)

    def g_devices(self):
        if not self.is_root:
            note("not root: skipping device nodes")
            return
        self.mkdir(b"devices")
        for rel, kind, dev, mode in ((b"devices/null_chr", stat.S_IFCHR, os.makedev(1, 3), 0o666),
                                     (b"devices/loop0_blk", stat.S_IFBLK, os.makedev(7, 0), 0o660),
                                     (b"devices/big_numbers_chr", stat.S_IFCHR,
                                      os.makedev(511, 70000), 0o600)):
            try:
                os.mknod(self.p(rel), kind | 0o600, dev)
                self.modes[rel] = mode
            except OSError as e:
                note("mknod %s failed (%s); skipped" % (rel.decode(), e.strerror))
        if os.path.lexists(self.p(b"devices/loop0_blk")):
            self.chown(b"devices/loop0_blk", 0, 6)

    def g_xattrs(self):
        self.mkdir(b"xattrs")
        self.write(b"xattrs/binary_values", b"has xattrs\n")
        self.setx(b"xattrs/binary_values", "user.all_bytes", bytes(range(256)))
        self.setx(b"xattrs/binary_values", "user.empty", b"")
        self.setx(b"xattrs/binary_values", "user.nuls", b"\x00\x00\x00")
        self.setx(b"xattrs/binary_values", "user.text", b"hello world")
        self.setx(b"xattrs/binary_values", b"user.\xe5\x90\x8d\xe5\x89\x8d utf8 name", b"v")
        self.write(b"xattrs/big_value", b"big xattr\n")
        self.setx(b"xattrs/big_value", "user.big", self.randbytes(3000))
        self.write(b"xattrs/many", b"many xattrs\n")
        for i in range(24, 0, -1):  # created in reverse order on purpose
            self.setx(b"xattrs/many", "user.k%02d" % i, b"%d" % (i * i))
        self.write(b"xattrs/readonly_file_with_xattr", b"ro\n", 0o444)
        self.setx(b"xattrs/readonly_file_with_xattr", "user.ro", b"\xff\xfe\xfd")
        self.mkdir(b"xattrs/dir_with_xattr")
        self.write(b"xattrs/dir_with_xattr/child", b"child\n")
        self.setx(b"xattrs/dir_with_xattr", "user.dir", b"\x00\x01\x02\xff")
        self.setx(b"xattrs/dir_with_xattr", "user.dir2", b"second")
        self.mkdir(b"xattrs/empty_dir_with_xattr", 0o700)
        self.setx(b"xattrs/empty_dir_with_xattr", "user.e", b"\n")
        self.setx(b"", "user.root", b"on the root dir")

    def g_names(self):
        names = [
            b"with space", b" leading space", b"trailing space ", b"  ",
            b"new\nline", b"\n", b"tab\there", b"cr\rhere",
            b"single'quote", b'double"quote', b"back\\slash", b"ends with backslash\\",
            b"-leading-dash", b"--help", b"-",
            b"caf\xc3\xa9 NFC", b"cafe\xcc\x81 NFD",          # same glyphs, different bytes
            b"\xc3\xa9", b"e\xcc\x81",
            b"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",           # 日本語
            b"\xf0\x9f\xa6\x80 crab", b"\xf0\x9f\x93\x81",     # emoji
            b"\xff\xfe", b"latin1 caf\xe9", b"\xc3\x28 invalid utf8 seq",
            b"\x01ctrl\x1b[31mred", b"del\x7f",
            b"*?[a-z]{x,y}", b"$(echo pwned)", b"`backtick`", b"%s%n%x", b";|&<>",
            b"...", b".hidden", b"..hidden", b"=equals=", b"#hash", b"~tilde", b"colon:name",
            b"x" * 255,
            b"\xe6\x97\xa5" * 85,                              # 255 bytes of UTF-8
            b"a" * 254 + b"\xff",
        ]
        self.mkdir(b"names")
        for i, n in enumerate(names):
            self.write(b"names/" + n, b"name #%d\n" % i)
        # a directory with a hostile name containing hostile names
        d = b"names/dir\nwith newline and \xff"
        self.mkdir(d)
        self.write(d + b"/file\twith tab", b"x")
        self.write(d + b"/-n", b"y")
        self.mkdir(b"names/\xe6\x97\xa5\xe6\x9c\xac dir/\xf0\x9f\x93\x81 sub")
        self.write(b"names/\xe6\x97\xa5\xe6\x9c\xac dir/\xf0\x9f\x93\x81 sub/\xc3\xa9", b"z")

    def g_sort(self):
        # bytewise: "D" < "Zeta" < "_under" < "a" < "d" < "d-x" < "d.x" < "d/x" < "d0" < "\xc3\xa4"
        # full-path byte order puts d-x and d.x BEFORE d/x, unlike a depth-first
        # component-wise walk; locale collation interleaves case and ignores punctuation.
        self.mkdir(b"sort/d")
        self.write(b"sort/d/x", b"1")
        for n in (b"d-x", b"d.x", b"d0", b"D", b"a", b"B", b"_under", b"Zeta",
                  b"\xc3\xa4", b"z", b"1", b"10", b"9", b"d x", b"d!"):
            self.write(b"sort/" + n, n)
        self.mkdir(b"sort/d.d")
        self.write(b"sort/d.d/inner", b"2")

    def g_modes(self):
        self.mkdir(b"modes")
        if not self.is_root:
            note("not root: skipping unreadable/unsearchable modes "
                 "(f0000, d0000, d0311_writeonly): a non-root tool cannot back them up")
        for m in (0o000, 0o400, 0o444, 0o600, 0o640, 0o644, 0o664, 0o700, 0o755,
                  0o777, 0o4755, 0o2755, 0o6711, 0o1755):
            if m == 0 and not self.is_root:
                continue
            self.write(b"modes/f%04o" % m, b"mode %o\n" % m, m)
        self.mkdir(b"modes/d2775_setgid", 0o2775)
        self.write(b"modes/d2775_setgid/child", b"c\n")
        self.mkdir(b"modes/d1777_sticky", 0o1777)
        self.write(b"modes/d1777_sticky/child", b"c\n", 0o600)
        self.mkdir(b"modes/d0555_readonly", 0o555)
        self.write(b"modes/d0555_readonly/child", b"must be restored before chmod\n")
        self.mkdir(b"modes/d0555_readonly/subdir", 0o555)
        self.mkdir(b"modes/d0700", 0o700)
        if self.is_root:
            self.mkdir(b"modes/d0000", 0o000)
            self.write(b"modes/d0000/child_in_unsearchable_dir", b"c\n")
            self.mkdir(b"modes/d0311_writeonly", 0o311)

    def g_owners(self):
        if not self.is_root:
            note("not root: skipping chown (everything owned by the caller)")
            return
        self.mkdir(b"owners")
        for rel, (u, g) in ((b"owners/u1000_g1000", (1000, 1000)),
                            (b"owners/u65534_g65534", (65534, 65534)),
                            (b"owners/u1000_g65534", (1000, 65534)),
                            (b"owners/u0_g1000", (0, 1000)),
                            (b"owners/u3000000000_big", (3000000000, 3000000000))):
            self.write(rel, b"owned\n", 0o644)
            self.chown(rel, u, g)
        self.write(b"owners/setuid_u1000", b"suid\n", 0o4755)  # chown clears suid: chmod after
        self.chown(b"owners/setuid_u1000", 1000, 1000)
        self.mkdir(b"owners/dir_u1000_setgid", 0o2775)
        self.chown(b"owners/dir_u1000_setgid", 1000, 1000)
        self.write(b"owners/dir_u1000_setgid/root_owned_child", b"c\n")
        self.mkdir(b"owners/dir_nobody", 0o750)
        self.chown(b"owners/dir_nobody", 65534, 65534)
        self.symlink(b"../owners/u1000_g1000", b"owners/symlink_u65534")
        self.chown(b"owners/symlink_u65534", 65534, 65534)

    def g_times(self):
        self.mkdir(b"times")
        t = {
            b"times/epoch0": 0,
            b"times/pre1970_ns": -1_500_000_001,                 # -1.500000001 s
            # one second above the 32-bit minimum: the kernel zeroes tv_nsec for a
            # time that hits the filesystem's exact min/max, so avoid those.
            b"times/year1901": (-2**31 + 1) * 10**9 + 1,
            b"times/just_below_2038": (2**31 - 1) * 10**9 + 999_999_999,
            b"times/after_2038": 2**31 * 10**9 + 7,
            b"times/year2100": 4_102_444_800 * 10**9 + 123_456_789,
            b"times/ns_zero": 1_600_000_000 * 10**9,
            b"times/ns_max": 1_600_000_000 * 10**9 + 999_999_999,
            b"times/ns_one": 1_600_000_000 * 10**9 + 1,
        }
        for rel, ns in t.items():
            self.write(rel, b"t\n")
            self.mtimes[rel] = ns
        self.symlink(b"epoch0", b"times/symlink_ns")
        self.mtimes[b"times/symlink_ns"] = 1_234_567_890 * 10**9 + 987_654_321
        self.mkdir(b"times/dir_pre1970")
        self.write(b"times/dir_pre1970/child", b"c\n")
        self.mtimes[b"times/dir_pre1970"] = -86_400 * 10**9 + 5

    @staticmethod
    def acl(entries):
        """Linux xattr ACL blob: version 2, then (tag u16, perm u16, id u32) sorted."""
        return struct.pack("<I", 2) + b"".join(
            struct.pack("<HHI", tag, perm, 0xFFFFFFFF if uid is None else uid)
            for tag, perm, uid in entries)

    def g_acls(self):
        UO, U, GO, G, M, O = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
        self.mkdir(b"acls")
        self.write(b"acls/file_with_acl", b"acl\n", 0o640)
        self.late_xattrs.append((b"acls/file_with_acl", "system.posix_acl_access",
                                 self.acl([(UO, 6, None), (U, 4, 1000), (GO, 4, None),
                                           (G, 6, 65534), (M, 6, None), (O, 0, None)])))
        # children are created BEFORE the default ACL is set, so they carry no
        # inherited ACL; a restore that sets the dir's default ACL first and then
        # creates the children gets this wrong.
        self.mkdir(b"acls/dir_default_acl", 0o750)
        self.write(b"acls/dir_default_acl/child_without_acl", b"c\n", 0o600)
        self.mkdir(b"acls/dir_default_acl/subdir_without_acl", 0o700)
        self.late_xattrs.append((b"acls/dir_default_acl", "system.posix_acl_default",
                                 self.acl([(UO, 7, None), (U, 5, 1000), (GO, 5, None),
                                           (M, 5, None), (O, 0, None)])))
        self.late_xattrs.append((b"acls/dir_default_acl", "system.posix_acl_access",
                                 self.acl([(UO, 7, None), (GO, 5, None), (G, 7, 65534),
                                           (M, 7, None), (O, 0, None)])))

    def g_privxattrs(self):
        if not self.is_root:
            note("not root: skipping security.capability/trusted.* xattrs")
            return
        self.mkdir(b"privxattrs")
        # cap_net_bind_service=ep, VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
        self.write(b"privxattrs/cap_file_u1000", b"#!/bin/sh\n", 0o750)
        self.chown(b"privxattrs/cap_file_u1000", 1000, 1000)
        self.late_xattrs.append((b"privxattrs/cap_file_u1000", "security.capability",
                                 struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)))
        self.write(b"privxattrs/trusted_xattr", b"t\n")
        self.late_xattrs.append((b"privxattrs/trusted_xattr", "trusted.stampfs", b"\x00t\xff"))
        self.late_xattrs.append((b"privxattrs/trusted_xattr", "user.mixed", b"u"))

    def g_large(self):
        """~100 MiB, pseudo-random but compressible and internally repetitive:
        unaligned slices of a pool of 4-bit-entropy blocks, some mutated."""
        self.mkdir(b"large")
        table = bytes(b"0123456789abcdef"[i & 15] for i in range(256))
        pool = [self.randbytes(256 * 1024).translate(table) for _ in range(48)]
        target = 100 * MiB + 4321
        rng = self.rng
        done = 0
        with open(self.p(b"large/big_100m.bin"), "wb") as f:
            while done < target:
                blk = pool[rng.randrange(len(pool))]
                a = rng.randrange(0, len(blk) - 1024)
                n = min(rng.randint(1024, len(blk) - a), target - done)
                piece = blk[a:a + n]
                if rng.random() < 0.05:
                    piece = bytearray(piece)
                    piece[rng.randrange(n)] ^= 0x20
                    piece = bytes(piece)
                f.write(piece)
                done += n
        self.modes[b"large/big_100m.bin"] = 0o644

    # ---------- attribute passes ----------
    def walk(self):
        """All relative paths below root (bytes), sorted, without following symlinks."""
        out = []
        stack = [b""]
        while stack:
            rel = stack.pop()
            with os.scandir(self.p(rel)) as it:
                for e in it:
                    r = os.path.join(rel, e.name) if rel else e.name
                    out.append(r)
                    if e.is_dir(follow_symlinks=False):
                        stack.append(r)
        out.sort()
        return out

    def apply(self):
        # 1. xattrs (before chmod: non-root needs write permission to set them)
        xattr_ok = True
        for rel, name, value in self.xattrs:
            if not xattr_ok:
                break
            try:
                os.setxattr(self.p(rel), name, value, follow_symlinks=False)
            except OSError as e:
                if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES):
                    note("filesystem refused user xattrs (%s); xattrs skipped" % e.strerror)
                    xattr_ok = False
                    for r, n, _ in self.xattrs:
                        try:
                            os.removexattr(self.p(r), n, follow_symlinks=False)
                        except OSError:
                            pass
                else:
                    raise
        # 2. ownership (before chmod: chown clears setuid/setgid)
        if self.is_root:
            for rel, (u, g) in sorted(self.owners.items()):
                try:
                    os.chown(self.p(rel), u, g, follow_symlinks=False)
                except OSError as e:
                    note("chown %r to %d:%d failed (%s); left as is" % (rel, u, g, e.strerror))
        # 3. mtimes: non-directories first, then directories deepest first, root
        #    last.  Done before chmod so that a non-root caller can still reach
        #    entries inside 0000 directories; chmod/chown/setxattr only touch ctime.
        all_paths = self.walk()
        trng = random.Random(self.seed * 7919 + 17)
        def stamp(rel):
            ns = self.mtimes.get(rel)
            if ns is None:
                ns = trng.randrange(1_000_000_000, 1_700_000_000) * 10**9 + trng.randrange(10**9)
            atime = 1_650_000_000 * 10**9 + 123
            os.utime(self.p(rel), ns=(atime, ns), follow_symlinks=False)
        dirs = []
        kinds = {}
        for rel in all_paths:
            kinds[rel] = os.lstat(self.p(rel)).st_mode
            if stat.S_ISDIR(kinds[rel]):
                dirs.append(rel)
            else:
                stamp(rel)
        dirs.sort(key=lambda r: (-r.count(b"/"), r))
        for rel in dirs:
            stamp(rel)
        stamp(b"")
        # 4. modes: every non-symlink gets an explicit mode (umask independent);
        #    descendants before ancestors, root last.
        for rel in reversed(all_paths):
            m = kinds[rel]
            if stat.S_ISLNK(m):
                continue
            default = 0o755 if stat.S_ISDIR(m) else 0o644
            os.chmod(self.p(rel), self.modes.get(rel, default))
        os.chmod(self.root, self.modes.get(b"", 0o755))
        # 5. ACLs (they rewrite group bits, so after chmod) and capabilities
        #    (cleared by chown and by writes, so after both)
        for rel, name, value in self.late_xattrs:
            try:
                os.setxattr(self.p(rel), name, value, follow_symlinks=False)
            except OSError as e:
                note("setxattr %s on %r failed (%s); skipped" % (name, rel, e.strerror))

    def run(self):
        order = ["files", "deep", "longpath", "empty", "sparse", "symlinks", "hardlinks",
                 "special", "devices", "xattrs", "names", "sort", "modes", "owners", "times",
                 "acls", "privxattrs"]
        for g in order:
            if self.on(g):
                getattr(self, "g_" + g)()
        if self.size == "large":
            self.g_large()
        self.apply()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", nargs="?")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--size", choices=("small", "large"), default="small")
    ap.add_argument("--skip", default="", help="comma-separated groups to leave out")
    ap.add_argument("--list-groups", action="store_true")
    a = ap.parse_args()
    if a.list_groups:
        for k, v in GROUPS.items():
            print("%-10s %s" % (k, v))
        return 0
    if a.dir is None:
        ap.error("DIR is required")
    skip = set(s for s in a.skip.split(",") if s)
    bad = skip - set(GROUPS)
    if bad:
        ap.error("unknown group(s): %s (see --list-groups)" % ",".join(sorted(bad)))
    root = os.fsencode(a.dir)
    if os.path.lexists(root):
        if not os.path.isdir(root) or os.path.islink(root):
            ap.error("%s exists and is not a directory" % a.dir)
        if os.listdir(root):
            ap.error("%s exists and is not empty" % a.dir)
    else:
        os.makedirs(root)
    Gen(os.path.abspath(root), a.seed, a.size, skip).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

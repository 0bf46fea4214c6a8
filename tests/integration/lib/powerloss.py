#!/usr/bin/env python3
"""Power-loss crash states of a store, from the log of tests/helpers/oplog.c.

    powerloss.py --log LOG --base DIR --inodes FILE --stamp STAMP --src SRC
                 --work DIR [--states N] [--seed S] [--expect-loss]

BASE is a copy of the store taken before the recorded commands ran, and
INODES the live store's `find -printf '%i %y %P\\n'` at that moment (the log
names files by inode number). The log also holds marker lines the test
writes between commands:

    E snap STAMP     the snapshot command that made STAMP returned (exit 0)
    E forget STAMP   a command that may remove STAMP is about to run

For each chosen crash point k (the first k operations happened, then the
power went), a crash state is built under a pessimistic model:
  - a file's writes and truncations up to its last fsync (or a syncfs) are
    on disk; each later one independently is, is not, or is torn at a
    512-byte boundary;
  - a directory entry (create, rename's new name, link, unlink, rename's
    old name going, mkdir, rmdir) is on disk once its parent directory was
    fsynced afterwards; each later one independently is or is not (in
    order; an entry whose directory is missing is lost);
then materialised in WORK/state and checked as a user would after the
reboot:
  1. the newest committed snapshot validates with --read-data (a restore
     right away, before any writer ran recovery);
  2. a new snapshot of SRC succeeds (recovery works);
  3. every committed snapshot is listed, and `stamp verify --read-data`
     finds the whole store sound (a snapshot taken at the cut is there
     whole or not at all).
Committed: its `E snap` marker comes before k, and no `E forget` marker
for it does. Exit 0 if every state passes (with --expect-loss: if at least
one fails, the negative control); 1 otherwise, naming the state, its seed
and what failed. A failing state is kept in WORK/failed-K.
"""
import argparse
import os
import random
import shutil
import subprocess
import sys


class Inode:
    def __init__(self, data=b""):
        self.durable = bytearray(data)
        self.pending = []  # ("W", off, bytes) / ("T", length)


def apply(data, op, torn_rng=None):
    if op[0] == "T":
        n = op[1]
        if n < len(data):
            del data[n:]
        else:
            data.extend(b"\0" * (n - len(data)))
        return
    off, b = op[1], op[2]
    if torn_rng is not None and len(b) > 512:
        b = b[: 512 * torn_rng.randrange(len(b) // 512 + 1)]
    if off > len(data):
        data.extend(b"\0" * (off - len(data)))
    data[off:off + len(b)] = b


def parent(path):
    return os.path.dirname(path) or "."


def unescape(s):
    out = bytearray()
    i = 0
    while i < len(s):
        if s[i] == "%":
            out.append(int(s[i + 1:i + 3], 16))
            i += 3
        else:
            out.extend(s[i].encode())
            i += 1
    return out.decode("utf-8", "surrogateescape")


def parse_log(path):
    data = open(path, "rb").read()
    ops, i = [], 0
    while i < len(data):
        j = data.index(b"\n", i)
        f = data[i:j].decode("utf-8", "surrogateescape").split(" ")
        i = j + 1
        kind = f[0]
        if kind == "W":
            n = int(f[3])
            ops.append(("W", int(f[1]), int(f[2]), data[i:i + n]))
            i += n
        elif kind == "C":
            ops.append(("C", int(f[1]), unescape(f[2])))
        elif kind == "T":
            ops.append(("T", int(f[1]), int(f[2])))
        elif kind == "F":
            ops.append(("F", int(f[1])))
        elif kind in "DUXM":
            ops.append((kind, unescape(f[1])))
        elif kind in "RL":
            ops.append((kind, unescape(f[1]), unescape(f[2])))
        elif kind == "S":
            ops.append(("S",))
        elif kind == "E":
            ops.append(("E", f[1], f[2]))
        else:
            raise SystemExit("powerloss.py: %s: unknown record %r" % (path, kind))
    return ops


class Model:
    """The store as the disk has it: durable state plus what is pending."""

    def __init__(self, base, inodes_file):
        self.by_ino = {}
        self.cur = {}      # path -> Inode, as the program sees it
        self.files = {}    # path -> Inode, durable
        self.dirs = {"."}  # durable directories
        self.effects = []  # pending (parent, kind, path, inode)
        for line in open(inodes_file, encoding="utf-8", errors="surrogateescape"):
            ino, typ, rel = line.rstrip("\n").split(" ", 2)
            if not rel:
                continue
            if typ == "d":
                self.dirs.add(rel)
            elif typ == "f":
                node = Inode(open(os.path.join(base, rel), "rb").read())
                self.by_ino[int(ino)] = node
                self.cur[rel] = node
                self.files[rel] = node

    def inode(self, ino):
        if ino not in self.by_ino:  # opened before the log began, not in the store
            self.by_ino[ino] = Inode()
        return self.by_ino[ino]

    def effect(self, kind, path, node=None):
        self.effects.append((parent(path), kind, path, node))

    @staticmethod
    def settle(files, dirs, kind, path, node):
        if kind == "add":
            if parent(path) in dirs:
                files[path] = node
        elif kind == "del":
            files.pop(path, None)
        elif kind == "mkdir":
            if parent(path) in dirs:
                dirs.add(path)
        elif kind == "rmdir":
            dirs.discard(path)

    def sync_dir(self, d):
        keep = []
        for e in self.effects:
            if e[0] == d:
                self.settle(self.files, self.dirs, e[1], e[2], e[3])
            else:
                keep.append(e)
        self.effects = keep

    def step(self, op):
        k = op[0]
        if k == "C":
            node = Inode()
            self.by_ino[op[1]] = node
            self.cur[op[2]] = node
            self.effect("add", op[2], node)
        elif k == "W":
            self.inode(op[1]).pending.append(("W", op[2], op[3]))
        elif k == "T":
            self.inode(op[1]).pending.append(("T", op[2]))
        elif k == "F":
            node = self.inode(op[1])
            for p in node.pending:
                apply(node.durable, p)
            node.pending = []
        elif k == "D":
            self.sync_dir(op[1])
        elif k == "S":
            for node in set(self.by_ino.values()) | set(self.cur.values()):
                for p in node.pending:
                    apply(node.durable, p)
                node.pending = []
            for e in self.effects:
                self.settle(self.files, self.dirs, e[1], e[2], e[3])
            self.effects = []
        elif k == "R":
            node = self.cur.pop(op[1], None)
            if node is not None:
                self.cur[op[2]] = node
                self.effect("add", op[2], node)
            self.effect("del", op[1])
        elif k == "L":
            node = self.cur.get(op[1])
            if node is not None:
                self.cur[op[2]] = node
                self.effect("add", op[2], node)
        elif k == "U":
            self.cur.pop(op[1], None)
            self.effect("del", op[1])
        elif k == "M":
            self.effect("mkdir", op[1])
        elif k == "X":
            self.effect("rmdir", op[1])

    def crash(self, rng, out):
        """Writes one crash state of the current point into @out."""
        files, dirs = dict(self.files), set(self.dirs)
        for e in self.effects:
            if rng.random() < 0.5:
                self.settle(files, dirs, e[1], e[2], e[3])
        contents = {}
        os.makedirs(out)
        for d in sorted(dirs, key=lambda p: p.count("/")):
            if d != ".":
                if parent(d) not in dirs:
                    continue
                os.makedirs(os.path.join(out, d), exist_ok=True)
        for path, node in files.items():
            if not os.path.isdir(os.path.join(out, parent(path))):
                continue
            if id(node) not in contents:
                data = bytearray(node.durable)
                for p in node.pending:
                    x = rng.random()
                    if x < 0.4:
                        apply(data, p)
                    elif x < 0.6:
                        apply(data, p, torn_rng=rng)
                contents[id(node)] = bytes(data)
            with open(os.path.join(out, path), "wb") as f:
                f.write(contents[id(node)])
            os.chmod(os.path.join(out, path), 0o600)


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def check(args, state, committed):
    st = args.stamp
    if committed:
        newest = sorted(committed)[-1]
        rc, out = run([st, "--store", state, "-q", "validate", "--read-data", newest])
        if rc != 0:
            return "committed snapshot %s does not validate before recovery (exit %d): %s" % (
                newest, rc, out.strip()[-400:])
    rc, out = run([st, "--store", state, "-q", "snapshot", args.src])
    if rc != 0:
        return "a snapshot after the cut fails (exit %d): %s" % (rc, out.strip()[-400:])
    rc, out = run([st, "--store", state, "list", "--short"])
    if rc != 0:
        return "list fails (exit %d): %s" % (rc, out.strip()[-400:])
    listed = set(out.split())
    lost = sorted(committed - listed)
    if lost:
        return "committed snapshots lost: %s" % " ".join(lost)
    rc, out = run([st, "--store", state, "-q", "verify", "--read-data"])
    if rc != 0:
        return "verify --read-data finds damage (exit %d): %s" % (rc, out.strip()[-400:])
    return None


def main():
    ap = argparse.ArgumentParser()
    for o in ("log", "base", "inodes", "stamp", "src", "work"):
        ap.add_argument("--" + o, required=True)
    ap.add_argument("--states", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--expect-loss", action="store_true")
    args = ap.parse_args()

    ops = parse_log(args.log)
    n = len(ops)
    barriers = [i for i, op in enumerate(ops) if op[0] in "FDS"]
    markers = [i for i, op in enumerate(ops) if op[0] == "E"]
    rng = random.Random(args.seed)
    # Every point just before and just after a barrier, right after each
    # marker and at the end, then random ones; as many as asked for.
    points = {n} | {i + 1 for i in markers}
    around = sorted({j for i in barriers for j in (i, i + 1)})
    rng.shuffle(around)
    for j in around:
        if len(points) >= args.states:
            break
        points.add(j)
    while len(points) < min(args.states, n + 1):
        points.add(rng.randrange(n + 1))
    points = sorted(points)
    print("powerloss: %d operations (%d barriers, %d markers), %d crash states" % (
        n, len(barriers), len(markers), len(points)))

    model = Model(args.base, args.inodes)
    made, forgotten = set(), set()
    done = 0
    failures = 0
    state = os.path.join(args.work, "state")
    for k in points:
        while done < k:
            op = ops[done]
            if op[0] == "E":
                (made if op[1] == "snap" else forgotten).add(op[2])
            else:
                model.step(op)
            done += 1
        seed = rng.randrange(1 << 30)
        shutil.rmtree(state, ignore_errors=True)
        model.crash(random.Random(seed), state)
        why = check(args, state, made - forgotten)
        if why:
            failures += 1
            kept = os.path.join(args.work, "failed-%d" % k)
            if failures <= 3 and not args.expect_loss:
                shutil.rmtree(kept, ignore_errors=True)
                shutil.copytree(state, kept)
            print("powerloss: state %d of %d (seed %d%s): %s" % (
                k, n, seed, ", kept in " + kept if failures <= 3 and not args.expect_loss else "",
                why), flush=True)
            if args.expect_loss:
                break
    shutil.rmtree(state, ignore_errors=True)
    if args.expect_loss:
        if failures == 0:
            print("powerloss: the negative control found no loss: the harness is broken")
            return 1
        print("powerloss: the negative control found a loss, as it must")
        return 0
    print("powerloss: %d of %d crash states failed" % (failures, len(points)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

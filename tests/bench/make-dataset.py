#!/usr/bin/env python3
"""Build (or advance by one day) the stampfs snapshot benchmark dataset.

    make-dataset.py [--scale F] DIR             build day 0 into DIR (~1 GB)
    make-dataset.py [--scale F] --next-day DIR  apply one deterministic "next day" in place

The dataset imitates the data volume of a small service: a WAL-mode SQLite
database with text and embeddings, a vector store (a SQLite plus big binary
HNSW-like segment files), a JSON registry, a tree of source files and a
folder of markdown notes.  Everything generated comes from a fixed seed, so
two runs on the same machine produce byte-identical generated files.  The
only input taken from the machine is the set of real source files under
src/ (Python's stdlib and /usr/include), which depends on what is installed;
their number is topped up with generated files so the file count is fixed.

Python 3 stdlib only: this must run on a bare Debian box.
"""

import argparse
import json
import os
import random
import shutil
import sqlite3
import struct
import sys
import sysconfig
import time
import uuid

SEED = 20240601
# Fixed "now" so generated timestamps do not depend on when the script runs.
EPOCH = 1717200000  # 2024-06-01T00:00:00Z
DAY = 86400

# Sizes at --scale 1.  Together with the real sources this lands near 1 GB.
APP_ROWS = 82_000                # ~1 row per 4 KiB page: ~250 MB
EMBED_DIM = 384                  # float32 -> 1536-byte BLOBs
REGISTRY_PROJECTS = 175          # ~200 KB of JSON
CHROMA_EMBEDDINGS = 37_000       # chroma.sqlite3 ends up ~50 MB
CHROMA_QUEUE = 6_000             # recent vectors kept in chroma's queue table
# (collection, file, MB): ~300 MB of poorly compressible segment data.
SEGMENTS = [
    (0, "data_level0.bin", 100),
    (0, "link_lists.bin", 30),
    (1, "data_level0.bin", 80),
    (1, "link_lists.bin", 35),
    (2, "data_level0.bin", 55),
]
SRC_FILES = 30_000               # real files first, generated ones fill up
NOTES = 2_000

MB = 1 << 20


# ---------------------------------------------------------------------------
# Deterministic content generators
# ---------------------------------------------------------------------------

def make_vocab(rng, n):
    """Pseudo-words built from syllables, with Zipf-like weights.

    Uniformly random letters would compress far worse than real text; a
    skewed vocabulary gives compression ratios close to English prose, which
    matters because every tool under test compresses.
    """
    syl = ["ka", "lo", "re", "mi", "tan", "ser", "vo", "dul", "pra", "en",
           "ix", "or", "sta", "que", "ne", "fi", "gro", "um", "bel", "tor",
           "ha", "cy", "pel", "das", "ri", "mon", "ap", "zu", "lek", "ost"]
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(syl) for _ in range(rng.randint(1, 4))))
    words = sorted(words)
    rng.shuffle(words)
    cum, acc = [], 0.0
    for i in range(len(words)):
        acc += 1.0 / (i + 1)
        cum.append(acc)
    return words, cum


class Gen:
    """All pseudo-random content, driven by one seeded random.Random."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        vocab_rng = random.Random(SEED)  # same vocabulary on every day
        self.words, self.cum = make_vocab(vocab_rng, 5000)
        self.idents, self.icum = make_vocab(vocab_rng, 3000)
        self._masks = {}
        self.pools = {}

    def words_n(self, n):
        return self.rng.choices(self.words, cum_weights=self.cum, k=n)

    def text(self, nbytes):
        """Sentences of pseudo-words, about nbytes long."""
        out, size = [], 0
        while size < nbytes:
            ws = self.words_n(self.rng.randint(6, 18))
            s = " ".join(ws).capitalize() + self.rng.choice(".....?!")
            out.append(s)
            size += len(s) + 1
        return " ".join(out)[:max(nbytes, 1)]

    def floats(self, n):
        """n little-endian float32 values that look like embedding components.

        Random bytes would be perfectly incompressible; real float32 vectors
        share exponent bits.  Keep sign, mantissa and the 2 low exponent
        bits random and pin the rest (|x| in [2^-7, 2^-3)), so the data is
        "poorly compressible" the way real embeddings are.  Done with one
        big-int mask per buffer because per-float struct packing is too slow
        for hundreds of MB.
        """
        if n not in self._masks:
            self._masks[n] = (
                int.from_bytes(struct.pack("<I", 0x81FFFFFF) * n, "little"),
                int.from_bytes(struct.pack("<I", 120 << 23) * n, "little"))
        mask, pat = self._masks[n]
        r = int.from_bytes(self.rng.randbytes(4 * n), "little")
        return ((r & mask) | pat).to_bytes(4 * n, "little")

    def ident(self):
        return self.rng.choices(self.idents, cum_weights=self.icum, k=1)[0]

    def uuid(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))


# ---------------------------------------------------------------------------
# db/app.db
# ---------------------------------------------------------------------------

APP_SCHEMA = """
CREATE TABLE documents(
    id INTEGER PRIMARY KEY,
    doc_key TEXT NOT NULL,
    project TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    embedding BLOB NOT NULL
);
"""
APP_INDEXES = """
CREATE UNIQUE INDEX documents_doc_key ON documents(doc_key);
CREATE INDEX documents_project_updated ON documents(project, updated_at);
"""
KINDS = ["note", "chat", "ticket", "page", "snippet", "email"]


def app_row(g, rid, ts, projects):
    return (rid,
            "doc-%032x" % g.rng.getrandbits(128),
            g.rng.choice(projects),
            g.rng.choice(KINDS),
            ts, ts,
            g.text(g.rng.randint(20, 70)),
            g.text(g.rng.randint(200, 600)),
            g.floats(EMBED_DIM))


def app_projects():
    return ["proj-%03d" % i for i in range(40)]


def build_app_db(g, path, rows):
    con = sqlite3.connect(path, isolation_level=None)
    # WAL like the real service; synchronous=OFF because durability of a
    # throw-away benchmark file does not matter and fsyncs cost minutes.
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    con.executescript(APP_SCHEMA)
    projects = app_projects()
    batch = 20_000
    for start in range(1, rows + 1, batch):
        con.execute("BEGIN")
        con.executemany(
            "INSERT INTO documents VALUES(?,?,?,?,?,?,?,?,?)",
            (app_row(g, rid, EPOCH - (rows - rid) * 60, projects)
             for rid in range(start, min(start + batch, rows + 1))))
        con.execute("COMMIT")
    # Indexes after the bulk load: several times faster than maintaining
    # them row by row, and the resulting file is just as realistic.
    con.executescript("BEGIN;" + APP_INDEXES + "COMMIT;")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def next_day_app_db(g, path, day):
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    (n, max_id), = con.execute("SELECT count(*), max(id) FROM documents")
    n_new = max(1, n // 100)
    n_upd = max(1, n // 200)
    ts = EPOCH + day * DAY
    projects = app_projects()
    con.execute("BEGIN")
    con.executemany(
        "INSERT INTO documents VALUES(?,?,?,?,?,?,?,?,?)",
        (app_row(g, max_id + i + 1, ts + i, projects) for i in range(n_new)))
    # Scattered random ids: touches pages all over the table, which is what
    # makes SQLite files hard for snapshot tools.
    ids = sorted(g.rng.sample(range(1, max_id + 1), n_upd))
    con.executemany(
        "UPDATE documents SET updated_at=?, body=?, embedding=? WHERE id=?",
        ((ts + 1000 + k, g.text(g.rng.randint(200, 600)),
          g.floats(EMBED_DIM), rid) for k, rid in enumerate(ids)))
    con.execute("COMMIT")
    # Fold the WAL into the main file so the change is visible in app.db
    # itself, as after the service's own checkpoint.
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return n_new, n_upd


# ---------------------------------------------------------------------------
# config/project-registry.json
# ---------------------------------------------------------------------------

def registry_project(g, i, ts):
    name = "-".join(g.words_n(2))
    return {
        "id": "p%05d" % i,
        "name": name,
        "owner": g.rng.choice(["platform", "data", "search", "infra", "web",
                               "ml", "billing", "support"]),
        "repo": "git@git.internal:%s/%s.git" % (g.ident(), name),
        "description": g.text(g.rng.randint(60, 200)),
        "status": g.rng.choice(["active", "active", "active", "paused",
                                "archived"]),
        "tags": g.words_n(g.rng.randint(1, 5)),
        "services": [{
            "name": "%s-%s" % (name, g.ident()),
            "image": "registry.internal/%s:%d.%d.%d" % (
                name, g.rng.randint(0, 4), g.rng.randint(0, 30),
                g.rng.randint(0, 99)),
            "port": g.rng.randint(3000, 9999),
            "replicas": g.rng.randint(1, 4),
            "env": {g.ident().upper(): g.ident()
                    for _ in range(g.rng.randint(1, 5))},
        } for _ in range(g.rng.randint(1, 3))],
        "created_at": ts - g.rng.randint(0, 700) * DAY,
        "updated_at": ts - g.rng.randint(0, 30) * DAY,
    }


def write_json(path, obj):
    # Services rewrite config files via rename; do the same.
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def build_registry(g, path, n):
    reg = {"meta": {"schema": 3, "dataset_day": 0, "updated_at": EPOCH},
           "projects": [registry_project(g, i, EPOCH) for i in range(n)]}
    write_json(path, reg)


# ---------------------------------------------------------------------------
# chroma/
# ---------------------------------------------------------------------------

CHROMA_SCHEMA = """
CREATE TABLE collections(id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                         dimension INTEGER, database_id TEXT NOT NULL);
CREATE TABLE segments(id TEXT PRIMARY KEY, type TEXT NOT NULL,
                      scope TEXT NOT NULL, collection TEXT);
CREATE TABLE embeddings(id INTEGER PRIMARY KEY, segment_id TEXT NOT NULL,
                        embedding_id TEXT NOT NULL, seq_id BLOB NOT NULL,
                        created_at TEXT NOT NULL,
                        UNIQUE(segment_id, embedding_id));
CREATE TABLE embedding_metadata(id INTEGER REFERENCES embeddings(id),
                                key TEXT NOT NULL, string_value TEXT,
                                int_value INTEGER, float_value REAL,
                                PRIMARY KEY(id, key));
CREATE INDEX embedding_metadata_int ON embedding_metadata(key, int_value)
    WHERE int_value IS NOT NULL;
CREATE TABLE embeddings_queue(seq_id INTEGER PRIMARY KEY,
                              created_at TEXT NOT NULL, operation INTEGER,
                              topic TEXT NOT NULL, id TEXT NOT NULL,
                              vector BLOB, encoding TEXT, metadata TEXT);
"""


def build_chroma(g, root, n_emb, n_queue, seg_scale):
    colls = [g.uuid() for _ in range(3)]
    con = sqlite3.connect(os.path.join(root, "chroma.sqlite3"),
                          isolation_level=None)
    con.execute("PRAGMA synchronous=OFF")
    con.executescript(CHROMA_SCHEMA)
    con.execute("BEGIN")
    for i, c in enumerate(colls):
        con.execute("INSERT INTO collections VALUES(?,?,?,?)",
                    (c, "collection_%d" % i, EMBED_DIM,
                     "00000000-0000-0000-0000-000000000000"))
        con.execute("INSERT INTO segments VALUES(?,?,?,?)",
                    (g.uuid(), "urn:chroma:segment/metadata/sqlite",
                     "METADATA", c))
        con.execute("INSERT INTO segments VALUES(?,?,?,?)",
                    (c, "urn:chroma:segment/vector/hnsw-local-persisted",
                     "VECTOR", c))
    for i in range(1, n_emb + 1):
        seg = colls[i % 3]
        con.execute("INSERT INTO embeddings VALUES(?,?,?,?,?)",
                    (i, seg, g.uuid(), struct.pack(">Q", i),
                     "2024-05-%02d 12:00:00" % (1 + i % 28)))
        con.executemany(
            "INSERT INTO embedding_metadata VALUES(?,?,?,?,?)",
            [(i, "chroma:document", g.text(g.rng.randint(300, 900)),
              None, None),
             (i, "source", "notes/%s.md" % "-".join(g.words_n(3)),
              None, None),
             (i, "chunk_index", None, g.rng.randint(0, 40), None)])
    for i in range(1, n_queue + 1):
        con.execute("INSERT INTO embeddings_queue VALUES(?,?,?,?,?,?,?,?)",
                    (i, "2024-05-31 12:00:00", 0,
                     "persistent://default/default/" + colls[i % 3],
                     g.uuid(), g.floats(EMBED_DIM), "FLOAT32",
                     json.dumps({"source": g.ident()})))
    con.execute("COMMIT")
    con.close()

    for ci, c in enumerate(colls):
        os.makedirs(os.path.join(root, c), exist_ok=True)
        with open(os.path.join(root, c, "header.bin"), "wb") as f:
            f.write(g.rng.randbytes(100))
    for ci, name, mb in SEGMENTS:
        write_floats(g, os.path.join(root, colls[ci], name),
                     int(mb * MB * seg_scale))
    for c in colls:
        with open(os.path.join(root, c, "length.bin"), "wb") as f:
            f.write(g.rng.randbytes(4 * n_emb // 3))
    return colls


def write_floats(g, path, nbytes, mode="wb"):
    with open(path, mode) as f:
        left = nbytes
        while left > 0:
            n = min(left, MB)
            f.write(g.floats(n // 4) if n % 4 == 0 else g.rng.randbytes(n))
            left -= n


def chroma_collections(root):
    """Collection ids in creation order (directory order is arbitrary)."""
    con = sqlite3.connect(os.path.join(root, "chroma.sqlite3"))
    ids = [r[0] for r in con.execute(
        "SELECT id FROM collections ORDER BY name")]
    con.close()
    return ids


# ---------------------------------------------------------------------------
# src/
# ---------------------------------------------------------------------------

SKIP_DIRS = {"__pycache__", "site-packages", "dist-packages"}


def real_sources():
    """(source path, path under src/) for real text files, sorted."""
    roots = [("python", sysconfig.get_paths()["stdlib"]),
             ("include", "/usr/include")]
    out = []
    for tag, root in roots:
        if not os.path.isdir(root):
            continue
        for dp, dns, fns in os.walk(root):
            dns[:] = sorted(d for d in dns if d not in SKIP_DIRS)
            for fn in sorted(fns):
                p = os.path.join(dp, fn)
                # Symlinks skipped: absolute ones point outside the dataset
                # and the benchmark is about file data, not link handling.
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                try:
                    if os.path.getsize(p) > MB:
                        continue  # libpython.a, bundled wheels: not source
                    with open(p, "rb") as f:
                        if b"\0" in f.read(8192):
                            continue  # .so and other binaries
                except OSError:
                    continue
                out.append((p, os.path.join(tag, os.path.relpath(p, root))))
    return out


C_LINES = [
    "{i} = {j}({k}, {l});", "if ({i} == NULL)", "return {j}->{k};",
    "static int {i}(struct {j} *{k}, size_t {l})", "{{", "}}",
    "for (size_t {i} = 0; {i} < {j}; {i}++)", "{i}->{j} += {k};",
    "/* {w} */", "#define {I}_{J} {n}", "#include \"{i}/{j}.h\"",
    "goto {i};", "{i} |= {I}_{J};", "memcpy({i}, {j}, sizeof(*{k}));",
    "case {I}: {j} = {n}; break;", "uint64_t {i} = {n}u;", "",
]
PY_LINES = [
    "def {i}(self, {j}, {k}={n}):", "return {i}.{j}({k})", "{i} = {j}[{k}]",
    "if {i} is None:", "for {i} in {j}.{k}():", "# {w}", "\"\"\"{w}\"\"\"",
    "import {i}", "from {i} import {j}, {k}", "class {I}({J}):",
    "raise {I}Error({w!r})", "self.{i} = {j}", "{i}.append({j} + {n})", "",
]


def line_pool(g, templates, n=40_000):
    """A fixed pool of code-shaped lines (indentation, keywords, skewed
    identifiers).  Files are drawn from the pool line by line: formatting
    every line of ~250 MB of code one at a time is minutes of Python.  A
    separate RNG keeps the pool identical whatever was generated before."""
    key = id(templates)
    if key not in g.pools:
        rng = random.Random(SEED + len(templates))
        pool, depth = [], 0
        for _ in range(n):
            ids = rng.choices(g.idents, cum_weights=g.icum, k=4)
            w = " ".join(rng.choices(g.words, cum_weights=g.cum,
                                     k=rng.randint(3, 10)))
            line = rng.choice(templates).format(
                i=ids[0], j=ids[1], k=ids[2], l=ids[3],
                I=ids[0].upper(), J=ids[1].capitalize(),
                n=rng.randint(0, 4096), w=w)
            depth = max(0, min(5, depth + rng.choice((-1, 0, 0, 1))))
            pool.append("    " * depth + line + "\n")
        g.pools[key] = pool
    return g.pools[key]


def gen_source(g, nbytes, templates):
    pool = line_pool(g, templates)
    out, size = [], 0
    while size < nbytes:
        lines = g.rng.choices(pool, k=max(8, (nbytes - size) // 30))
        out.extend(lines)
        size += sum(map(len, lines))
    return "".join(out)[:nbytes]


def build_src(g, root, n_files):
    real = real_sources()[:n_files]
    for src, rel in real:
        dst = os.path.join(root, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)
    n_gen = n_files - len(real)
    for i in range(n_gen):
        ext = (".c", ".h", ".py")[i % 3]
        d = os.path.join(root, "generated", "pkg%03d" % (i // 200))
        if i % 200 == 0:
            os.makedirs(d, exist_ok=True)
        # Log-uniform-ish sizes, 1-48 KB, like a real code tree.
        size = int(1024 * 48 ** g.rng.random())
        with open(os.path.join(d, "%s_%05d%s" % (g.ident(), i, ext)), "w") as f:
            f.write(gen_source(g, size, PY_LINES if ext == ".py" else C_LINES))
    return len(real), n_gen


# ---------------------------------------------------------------------------
# notes/
# ---------------------------------------------------------------------------

AREAS = ["ops", "design", "meetings", "research", "incidents", "howto",
         "journal", "reading", "planning", "misc"]


def note_text(g, day):
    parts = ["# " + " ".join(g.words_n(g.rng.randint(3, 8))).capitalize(),
             "", "tags: " + ", ".join("#" + w for w in g.words_n(3)),
             "date: %s" % time.strftime(
                 "%Y-%m-%d", time.gmtime(EPOCH + day * DAY
                                         - g.rng.randint(0, 900) * DAY)), ""]
    target = g.rng.randint(1024, 8192)
    size = sum(len(p) + 1 for p in parts)
    while size < target:
        r = g.rng.random()
        if r < 0.15:
            p = "## " + " ".join(g.words_n(g.rng.randint(2, 5))).capitalize()
        elif r < 0.35:
            p = "\n".join("- " + g.text(g.rng.randint(20, 90))
                          for _ in range(g.rng.randint(2, 6)))
        elif r < 0.42:
            p = "```\n" + gen_source(g, g.rng.randint(80, 400), C_LINES) + "```"
        else:
            p = g.text(g.rng.randint(150, 700))
        parts += [p, ""]
        size += len(p) + 2
    return "\n".join(parts)[:target] + "\n"


def write_note(g, root, name, day):
    area = g.rng.choice(AREAS)
    os.makedirs(os.path.join(root, area), exist_ok=True)
    with open(os.path.join(root, area, name), "w") as f:
        f.write(note_text(g, day))


def build_notes(g, root, n):
    for i in range(n):
        write_note(g, root, "%04d-%s.md" % (i, "-".join(g.words_n(3))), 0)


def list_notes(root):
    return sorted(os.path.join(dp, f) for dp, _, fs in os.walk(root)
                  for f in fs if f.endswith(".md"))


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------

def tree_stats(path):
    n = b = 0
    for dp, _, fs in os.walk(path):
        for f in fs:
            p = os.path.join(dp, f)
            if not os.path.islink(p):
                n += 1
                b += os.path.getsize(p)
    return n, b


def print_stats(d):
    tot_n = tot_b = 0
    for sub in sorted(os.listdir(d)):
        n, b = tree_stats(os.path.join(d, sub))
        tot_n += n
        tot_b += b
        print("  %-8s %7d files %10.1f MB" % (sub, n, b / 1e6))
    print("  %-8s %7d files %10.1f MB" % ("total", tot_n, tot_b / 1e6))


def step(msg, t0):
    print("  %-44s %6.1f s" % (msg, time.time() - t0), flush=True)
    return time.time()


def build(d, scale):
    if os.path.exists(d) and os.listdir(d):
        sys.exit("make-dataset: %s exists and is not empty" % d)
    g = Gen(SEED)
    for sub in ("db", "config", "chroma", "src", "notes"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    print("building day 0 in %s (scale %g)" % (d, scale), flush=True)
    t = t0 = time.time()
    build_app_db(g, os.path.join(d, "db", "app.db"), int(APP_ROWS * scale))
    t = step("db/app.db", t)
    build_registry(g, os.path.join(d, "config", "project-registry.json"),
                   max(5, int(REGISTRY_PROJECTS * scale)))
    t = step("config/project-registry.json", t)
    build_chroma(g, os.path.join(d, "chroma"), int(CHROMA_EMBEDDINGS * scale),
                 int(CHROMA_QUEUE * scale), scale)
    t = step("chroma/", t)
    n_real, n_gen = build_src(g, os.path.join(d, "src"),
                              int(SRC_FILES * scale))
    t = step("src/ (%d real + %d generated files)" % (n_real, n_gen), t)
    build_notes(g, os.path.join(d, "notes"), int(NOTES * scale))
    t = step("notes/", t)
    print("done in %.1f s" % (time.time() - t0))
    print_stats(d)


def next_day(d, scale):
    reg_path = os.path.join(d, "config", "project-registry.json")
    with open(reg_path) as f:
        reg = json.load(f)
    # The day number lives in the registry so that --next-day can be applied
    # repeatedly and day N is always the same bytes.
    day = reg["meta"]["dataset_day"] + 1
    g = Gen(SEED * 1000 + day)
    print("applying day %d to %s" % (day, d))

    n_new, n_upd = next_day_app_db(g, os.path.join(d, "db", "app.db"), day)
    print("  db/app.db: %d rows inserted, %d scattered rows updated, "
          "WAL checkpointed" % (n_new, n_upd))

    croot = os.path.join(d, "chroma")
    colls = chroma_collections(croot)
    # In-place rewrite of a region of one segment (HNSW nodes updated).
    seg_a = os.path.join(croot, colls[0], "data_level0.bin")
    size_a = os.path.getsize(seg_a)
    n_rw = min(int(4 * MB * scale) // 4 * 4, size_a // 2 // 4 * 4)
    off = g.rng.randrange(size_a // 4, size_a // 2) // 4 * 4
    with open(seg_a, "r+b") as f:
        f.seek(off)
        f.write(g.floats(n_rw // 4))
    print("  chroma/%s/data_level0.bin: %d bytes rewritten in place at "
          "offset %d" % (colls[0], n_rw, off))
    # Another segment grows (new vectors appended).
    seg_b = os.path.join(croot, colls[1], "data_level0.bin")
    n_app = int(8 * MB * scale) // 4 * 4
    write_floats(g, seg_b, n_app, mode="ab")
    print("  chroma/%s/data_level0.bin: %d bytes appended" % (colls[1], n_app))
    for c in colls[:2]:
        with open(os.path.join(croot, c, "header.bin"), "wb") as f:
            f.write(g.rng.randbytes(100))

    nroot = os.path.join(d, "notes")
    notes = list_notes(nroot)
    edited = g.rng.sample(notes, max(1, len(notes) // 100))
    for p in edited:
        # A line at the very top shifts every byte of the file: the case
        # fixed-size chunking handles worst.
        with open(p) as f:
            body = f.read()
        with open(p, "w") as f:
            f.write("> reviewed on day %d: %s\n%s"
                    % (day, g.text(g.rng.randint(30, 90)), body))
    removed = g.rng.sample(sorted(set(notes) - set(edited)),
                           max(1, len(notes) // 200))
    for p in removed:
        os.unlink(p)
    n_add = max(1, len(notes) // 100)
    for i in range(n_add):
        write_note(g, nroot, "d%03d-%02d-%s.md"
                   % (day, i, "-".join(g.words_n(3))), day)
    print("  notes/: %d edited at the top, %d added, %d removed"
          % (len(edited), n_add, len(removed)))

    projs = reg["projects"]
    for p in g.rng.sample(projs, min(3, len(projs))):
        p["updated_at"] = EPOCH + day * DAY
        p["status"] = g.rng.choice(["active", "paused", "archived"])
    projs.append(registry_project(g, len(projs), EPOCH + day * DAY))
    reg["meta"]["dataset_day"] = day
    reg["meta"]["updated_at"] = EPOCH + day * DAY
    write_json(reg_path, reg)
    print("  config/project-registry.json: 3 projects edited, 1 added")
    print_stats(d)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--next-day", action="store_true",
                    help="apply one day of changes to an existing dataset")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="size factor for quick tests (default 1 = ~1 GB); "
                         "use the same value for --next-day")
    a = ap.parse_args()
    if a.next_day:
        next_day(a.dir, a.scale)
    else:
        build(a.dir, a.scale)


if __name__ == "__main__":
    main()

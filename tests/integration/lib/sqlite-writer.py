#!/usr/bin/env python3
"""A service that keeps writing a WAL-mode SQLite database, for the live-snapshot tests.

    sqlite-writer.py DB READY [--rows N] [--rate TXN_PER_S] [--seconds S] [--stats FILE]
                              [--journal wal|delete] [--checkpoint-every N]

Builds DB with N rows (checkpointed into the database file), creates the
file READY, then commits transactions until SIGTERM or S seconds. Each
transaction inserts 1-3 rows, changes the amount of a random row, sometimes
deletes one, and keeps table `totals` in step, so every committed state
satisfies:

    totals.n_rows     = count(*) of items
    totals.sum_amount = sum(amount) of items
    totals.last_txn   = max(txn) of items = the number of the transaction

In WAL mode (the default) automatic checkpoints are off: every commit
after READY lives only in the -wal file, never in the database file. With
--journal delete the database is in rollback-journal mode and every commit
rewrites pages of the database file itself. --checkpoint-every N runs
PRAGMA wal_checkpoint(TRUNCATE) after every N commits, so the -wal is often
empty (and the database file is often being written by checkpoints). At the end it writes "commits=N
max_ms=M" (M: the longest wait to begin and commit a transaction) to FILE.
"""

import argparse
import os
import random
import signal
import sqlite3
import time

ap = argparse.ArgumentParser()
ap.add_argument("db")
ap.add_argument("ready")
ap.add_argument("--rows", type=int, default=15000)
ap.add_argument("--rate", type=float, default=150)
ap.add_argument("--seconds", type=float, default=120)
ap.add_argument("--stats")
ap.add_argument("--journal", choices=("wal", "delete"), default="wal")
ap.add_argument("--checkpoint-every", type=int, default=0)
args = ap.parse_args()

stop = False


def on_term(signum, frame):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
rng = random.Random(7)
con = sqlite3.connect(args.db, isolation_level=None, timeout=30)
con.execute("PRAGMA journal_mode=" + args.journal)
con.execute("PRAGMA synchronous=NORMAL")
con.executescript("""
CREATE TABLE items(id INTEGER PRIMARY KEY, txn INTEGER NOT NULL,
                   amount INTEGER NOT NULL, payload BLOB NOT NULL);
CREATE INDEX items_txn ON items(txn);
CREATE TABLE totals(id INTEGER PRIMARY KEY CHECK (id = 1), n_rows INTEGER NOT NULL,
                    sum_amount INTEGER NOT NULL, last_txn INTEGER NOT NULL);
""")
con.execute("BEGIN")
amounts = [rng.randint(1, 1000) for _ in range(args.rows)]
con.executemany("INSERT INTO items(txn, amount, payload) VALUES(0, ?, ?)",
                ((a, rng.randbytes(rng.randint(200, 1500))) for a in amounts))
con.execute("INSERT INTO totals VALUES(1, ?, ?, 0)", (args.rows, sum(amounts)))
con.execute("COMMIT")
# The initial state in the database file; from here on, commits stay in the -wal.
con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
con.execute("PRAGMA wal_autocheckpoint=0")
open(args.ready, "w").close()

txn, worst = 0, 0.0
end = time.monotonic() + args.seconds
max_id = args.rows
while not stop and time.monotonic() < end:
    txn += 1
    t0 = time.monotonic()
    con.execute("BEGIN IMMEDIATE")
    t1 = time.monotonic()
    k = rng.randint(1, 3)
    new = [rng.randint(1, 1000) for _ in range(k)]
    con.executemany("INSERT INTO items(txn, amount, payload) VALUES(?, ?, ?)",
                    ((txn, a, rng.randbytes(rng.randint(200, 1500))) for a in new))
    max_id += k
    delta = rng.randint(-50, 50)
    changed = con.execute("UPDATE items SET amount = amount + ?, txn = ? WHERE id = ?",
                          (delta, txn, rng.randint(1, max_id))).rowcount
    removed, gone = 0, 0
    if rng.random() < 0.3:
        victim = rng.randint(1, max_id)
        row = con.execute("SELECT amount FROM items WHERE id = ? AND txn < ?",
                          (victim, txn)).fetchone()
        if row:
            con.execute("DELETE FROM items WHERE id = ?", (victim,))
            removed, gone = 1, row[0]
    con.execute("UPDATE totals SET n_rows = n_rows + ?, sum_amount = sum_amount + ?,"
                " last_txn = ?", (k - removed, sum(new) + delta * changed - gone, txn))
    t2 = time.monotonic()
    con.execute("COMMIT")
    t3 = time.monotonic()
    worst = max(worst, (t1 - t0) + (t3 - t2))
    if args.checkpoint_every and txn % args.checkpoint_every == 0:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # waits for readers: not timed
    time.sleep(1.0 / args.rate)

if args.stats:
    with open(args.stats, "w") as f:
        f.write("commits=%d max_ms=%.1f\n" % (txn, worst * 1000))
os._exit(0)  # no checkpoint on close: leave the -wal as a killed service would

#!/usr/bin/env python3
"""What the broker's commits write, variant by variant (docs/benchmarks.md, fourth round).

Replays the broker store's submit path (schema v5's `messages` with its indexes and `seen`,
100 messages of 1 KiB per transaction, WAL, synchronous=FULL) with Python's sqlite3 and prints
messages/s and the bytes the process wrote per message (/proc/self/io write_bytes: the WAL plus
the checkpoints). Not part of the test suite; Python's own overhead is in the figures, so compare
variants run back to back, not with bud-bench.

  bench/tools/sqlite_pages.py VARIANT [MESSAGES] [DIR]

VARIANT: "asbuilt" (seen keyed by the message id as text), "noseen" (seen without a key: no
random index), "blob" (seen keyed by the 16-byte id), "p1k" (page size 1,024); append "-acN"
for SQLite's automatic checkpoint every N pages (default 1,000), e.g. "asbuilt-ac10000".
"""
import os
import sqlite3
import sys
import tempfile
import time
import uuid


def written_bytes():
    with open('/proc/self/io') as f:
        for line in f:
            if line.startswith('write_bytes'):
                return int(line.split()[1])
    return 0


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    variant = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    folder = tempfile.mkdtemp(dir=sys.argv[3] if len(sys.argv) > 3 else None)
    path = os.path.join(folder, 'sketch.db')
    kind, _, ac = variant.partition('-ac')
    if kind not in ('asbuilt', 'noseen', 'blob', 'p1k'):
        sys.exit(f'unknown variant {kind!r}\n{__doc__}')
    db = sqlite3.connect(path, isolation_level=None)
    if kind == 'p1k':
        db.execute('PRAGMA page_size=1024')
    db.execute('PRAGMA journal_mode=WAL')
    db.execute(f'PRAGMA wal_autocheckpoint={int(ac) if ac else 1000}')
    db.execute('PRAGMA synchronous=FULL')
    db.execute('PRAGMA cache_size=-16384')  # as broker/store.cc
    key = {'noseen': 'message_id TEXT', 'blob': 'message_id BLOB PRIMARY KEY'}.get(
        kind, 'message_id TEXT PRIMARY KEY')
    db.executescript(f'''
      CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL,
        sender TEXT NOT NULL, receiver TEXT NOT NULL, envelope BLOB NOT NULL,
        received_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0);
      CREATE INDEX messages_by_receiver ON messages(receiver, seq);
      CREATE INDEX messages_by_expiry ON messages(expires_ms);
      CREATE INDEX messages_with_attempts ON messages(attempts) WHERE attempts > 0;
      CREATE TABLE seen ({key}, sender TEXT NOT NULL, receiver TEXT NOT NULL,
        first_seen_ms INTEGER NOT NULL, seq INTEGER) {'' if kind == 'noseen' else 'WITHOUT ROWID'};''')
    envelope = os.urandom(1000)
    sender, receiver = '0192:910076787', '0192:910075918'
    before, start, seq = written_bytes(), time.time(), 1
    for _ in range(count // 100):
        db.execute('BEGIN')
        now = int(time.time() * 1000)
        for _ in range(100):
            mid = uuid.uuid4()
            db.execute('INSERT OR IGNORE INTO seen VALUES(?,?,?,?,?)',
                       (mid.bytes if kind == 'blob' else str(mid), sender, receiver, now, seq))
            db.execute('INSERT INTO messages(seq, message_id, sender, receiver, envelope, '
                       'received_ms, expires_ms) VALUES(?,?,?,?,?,?,?)',
                       (seq, str(mid), sender, receiver, envelope, now, now + 3600000))
            seq += 1
        db.execute('COMMIT')
    elapsed = time.time() - start
    print(f'{variant}: {count / elapsed:.0f} msgs/s, '
          f'{(written_bytes() - before) / count / 1024:.1f} KiB written per message')
    db.close()
    for name in os.listdir(folder):
        os.remove(os.path.join(folder, name))
    os.rmdir(folder)


if __name__ == '__main__':
    main()

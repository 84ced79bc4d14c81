// Two SQLite VFSs over the default one, sharing one file wrapper.
//
// The paced VFS, for the connections that checkpoint: their writes to a main database file are
// paced. Used by the store's checkpointer (common/storage/checkpointer.h) and by the broker's id
// index file, whose merges are checkpointed by the merge thread (broker/seen_index.h).
// (The gathering VFS, for the broker store's own connection: GatheredWritesVfs below.)
//
// Why: a WAL checkpoint copies thousands of pages into the database file and then fsyncs it. The
// pages sit dirty in the page cache until that fsync sends them all at once, and a commit's WAL
// fdatasync on the same disk waits behind the burst (the device's cache flush carries everything
// written before it): the 3-11 ms commits under load. Here the thread that checkpoints starts the
// kernel's writeback after every 256 KiB it writes and waits for it (sync_file_range), so that no
// more than that is ever queued ahead of a commit's flush, as PostgreSQL's checkpoint_flush_after.
// Durability is unchanged: SQLite still fsyncs the database file at the end of the checkpoint.
// Operation: everything else (reads, the WAL, the shared-memory index, locks) goes to SQLite's
// default VFS untouched (with the gathering VFS, all but the WAL's writes). sync_file_range gets
// the default (unix) VFS's own descriptor of the main database file, checked against the file's
// inode; without it there is no pacing (paced_vfs.cc). Registered once per process, never as the
// default.
#pragma once

namespace bud::storage {

// The VFS's name for sqlite3_open_v2 (Db::Options::vfs), registered on first use; nullptr when
// SQLite has no default VFS to wrap.
const char* PacedWritesVfs();

// The VFS's name for a connection with synchronous=FULL whose WAL writes are gathered: a
// commit's frames (each a 24-byte header and a page, two writes) reach the file together, in
// writes of up to 64 KiB, when SQLite syncs the WAL, reads it, asks its size or closes it. Only for
// synchronous=FULL: SQLite makes a commit visible to other connections after syncing its frames,
// which is when they are written; without that sync they would wait unwritten.
const char* GatheredWritesVfs();

// How many times a file of the VFS started the kernel's writeback (for tests and the curious).
long PacedWritebacks();

// How many writes the gathering VFS passed on for WAL files (for tests and the curious).
long GatheredWrites();

}  // namespace bud::storage

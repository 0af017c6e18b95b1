//! The private object store: immutable, verified copies of backing files that reads are served
//! from with `--private-copy` and on remote mounts (a local mount's default checks each read chunk
//! by chunk instead: `mount/chunked.rs`).
//!
//! Why a copy: a backing file can be written, truncated or replaced at any time after it was
//! verified, and the one rule says those new bytes must never reach a reader. A verified copy in a
//! root-only directory (0700, files 0400) that nothing else writes is what reads are served from —
//! through FUSE passthrough at native speed, or in userspace as a fallback.
//!
//! How a copy is made: `FICLONE` first (a reflink on btrfs/xfs costs no data copy), then the clone
//! is hashed; otherwise a pipelined copy where one thread reads the backing file into a buffer and
//! writes that buffer to the object, and a second thread hashes *the same buffer*, so the bytes
//! hashed are exactly the bytes written. Only after length and every listed hash match is the
//! temporary file renamed to its final, content-addressed name. The store is cleared when the
//! daemon starts (verification records live in memory) and bounded by an LRU limit on objects that
//! are not currently open.
//!
//! The same store, opened with [`ObjectStore::open_cache`], is the remote mount's download cache
//! ([`StoreMode::SharedCache`]): filled from a stream ([`ObjectStore::fetch_and_store`], the same
//! copy-and-hash pipeline), kept across restarts, and shareable by several daemons. What changes
//! in that mode:
//! - a verified object is renamed into place at once and made durable in batches (`syncfs` at
//!   most every second, see `mount/durability.rs`): a `kill -9` loses nothing, and after a system
//!   crash the first daemon removes the objects of the last unsynced moments before serving;
//! - each writer creates its temporary as `new.<pid>.<unique>`, takes `flock(LOCK_SH)` and only
//!   then renames it `tmp.<pid>.<unique>`, and holds that lock until the object is published and
//!   released (one lock, never converted); at start, `tmp.*` files whose lock is free are removed
//!   (a live writer of any daemon, in any pid namespace, holds its lock);
//! - an object in use is held with `flock(LOCK_SH)`; the evictor of any process takes
//!   `LOCK_EX | LOCK_NB` before unlinking, so an open object is never evicted, by anyone;
//! - LRU order is the object's mtime, touched at every use, so it is shared across processes;
//!   the size bound is checked against a running total (the last directory scan plus what this
//!   daemon stored since), and the directory is rescanned when that passes the bound or once a
//!   minute (other daemons' objects), never after every insert;
//! - the directory must be owned by the euid and not group/other-writable (else it is refused),
//!   and an object is used only if it is a regular file owned by the euid, without group/other
//!   write, of exactly the signed length; anything else under its name is removed and fetched
//!   again.
//!
//! Both modes hold the store directory open and work relative to that descriptor (`openat` with
//! `O_NOFOLLOW`, `renameat`, `unlinkat`), never through a path.
//!
//! The files: this one has the types and the accounting's state; `dir.rs` makes, refuses, clears
//! and opens the store directory; `objects.rs` uses objects (acquire, release, the on-disk checks
//! of the shared cache); `evict.rs` keeps the bound; `publish.rs` verifies a copy and gives it its
//! name; `copy.rs` is the copy-and-hash pipeline; `temps.rs` names and cleans up temporary files;
//! `durable.rs` makes the shared cache durable and recovers it after a crash.

mod copy;
mod dir;
mod durable;
mod evict;
mod objects;
mod publish;
mod temps;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub(super) use crate::sys::{flock, openat, renameat, unlinkat};

use sha2::{Digest, Sha256};

pub use dir::MARKER;
pub(super) use dir::{fstatat_nofollow, list_names, open_owned_dir};

use super::durability::Syncer;
use crate::hashing::Mismatch;
use crate::index::TargetInfo;
use crate::telemetry::Counters;

/// Why a backing file could not be turned into a verified object.
#[derive(Debug)]
pub enum StoreError {
    /// Content does not match the signed metadata.
    Mismatch(Mismatch),
    /// The backing file changed (size, times or identity) while it was being copied.
    ChangedWhileReading,
    /// I/O error reading the source (backing file or HTTP response body).
    Read(io::Error),
    /// I/O error writing the store (e.g. ENOSPC): the content was not judged.
    Io(io::Error),
    /// A stream (an HTTP body) ended before the signed length: the transfer broke off, the
    /// content was not judged.
    Truncated { received: u64, expected: u64 },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Mismatch(m) => m.fmt(f),
            StoreError::ChangedWhileReading => {
                f.write_str("backing file changed while it was being verified")
            }
            StoreError::Read(e) => write!(f, "read error while verifying: {e}"),
            StoreError::Io(e) => write!(f, "I/O error while verifying: {e}"),
            StoreError::Truncated { received, expected } => write!(
                f,
                "the transfer ended after {received} of the signed {expected} bytes"
            ),
        }
    }
}

/// The content-addressed name of the object for a target: a digest over its signed length and
/// every listed hash, so an object is only ever reused for exactly the metadata it was checked
/// against.
pub fn object_name(info: &TargetInfo) -> String {
    let mut h = Sha256::new();
    h.update(info.length.to_string().as_bytes());
    for (alg, digest) in info.hashes.iter() {
        h.update(b"\n");
        h.update(alg.as_bytes());
        h.update(b"=");
        h.update(hex::encode(digest).as_bytes());
    }
    format!("t-{}", hex::encode(h.finalize()))
}

#[derive(Debug)]
struct Entry {
    size: u64,
    open: u64,
    /// Position in `lru` while `open == 0`.
    tick: u64,
    /// Shared cache only: the object held with `flock(LOCK_SH)` while `open > 0`.
    lock: Option<File>,
}

#[derive(Debug, Default)]
struct Inner {
    objects: HashMap<String, Entry>,
    /// Objects not currently open, least recently used first.
    lru: BTreeMap<u64, String>,
    total: u64,
    tick: u64,
    /// Shared cache only: the last scan ended above the bound (everything left was in use).
    over: bool,
    /// Shared cache only: when the directory was last scanned.
    scanned_at: Option<Instant>,
}

/// Whether the store outlives the daemon and can be shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    /// The local mount's private copies: cleared at start, accounted in memory only.
    PrivateCleared,
    /// The remote mount's download cache: kept across restarts, shareable between daemons
    /// (flock on objects, LRU by mtime), fsynced before objects get their names.
    SharedCache,
}

/// The object store under `<state-dir>/objects`.
#[derive(Debug)]
pub struct ObjectStore {
    /// The directory's path, for messages only: every operation goes through `dirfd`.
    dir: PathBuf,
    /// The store directory, held open (`O_DIRECTORY | O_NOFOLLOW`); objects are opened, created,
    /// renamed and unlinked relative to it, so a rename or symlink swap of the path (or of a
    /// parent) after the checks cannot redirect the store.
    dirfd: File,
    mode: StoreMode,
    max_bytes: u64,
    inner: Mutex<Inner>,
    tmp_counter: AtomicU64,
    counters: Arc<Counters>,
    /// Shared cache: syncs stored objects in batches and records it (see `mount/durability.rs`).
    syncer: Option<Arc<Syncer>>,
}

/// How the copy was made (for the log line).
#[derive(Clone, Copy, Debug)]
pub enum CopyMethod {
    Reflink,
    Copy,
}

impl ObjectStore {
    pub fn mode(&self) -> StoreMode {
        self.mode
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps inconsistent in a way that
        // matters for safety (at worst an object is not evicted), so recover the guard.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

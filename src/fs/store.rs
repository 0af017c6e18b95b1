//! The private object store: immutable, verified copies of backing files that reads are served
//! from with `--private-copy` and on remote mounts (a local mount's default checks each read chunk
//! by chunk instead: `chunked.rs`).
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
//!   most every second, see `durability.rs`): a `kill -9` loses nothing, and after a system
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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Instant, SystemTime};

pub(super) use crate::sys::{flock, openat, renameat, unlinkat};

use sha2::{Digest, Sha256};

use super::durability::{self, SyncRecord, Syncer};
use crate::index::TargetInfo;
use crate::ops::Counters;
use crate::source::{ficlone, fstat, BackingFile};
use crate::verify::{Mismatch, MultiHasher};

/// Size of one copy buffer; files up to this size are copied and hashed on the calling thread.
const CHUNK: usize = 1 << 20;
/// Buffers in flight between the copying and the hashing thread.
const BUFFERS: usize = 4;
/// The most verified copies the private store keeps (unused ones beyond are evicted, LRU).
const MAX_PRIVATE_OBJECTS: usize = 100_000;
/// The shared cache's directory is rescanned (other daemons' objects) at most this often while
/// the running total stays under the bound.
const RESCAN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

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
    /// Shared cache: syncs stored objects in batches and records it (see `durability.rs`).
    syncer: Option<Arc<Syncer>>,
}

/// How the copy was made (for the log line).
#[derive(Clone, Copy, Debug)]
pub enum CopyMethod {
    Reflink,
    Copy,
}

impl ObjectStore {
    /// Create (or clear) the store directory `dir` with mode 0700, marked with [`MARKER`].
    /// An existing `dir` is cleared only if it is a store trustfs made: it carries the marker (or,
    /// made before the marker existed, holds nothing but object and temporary files). Anything
    /// else is refused, so a mistaken `--state-dir` never deletes someone's files.
    pub fn create(dir: &Path, max_bytes: u64, counters: Arc<Counters>) -> io::Result<ObjectStore> {
        if dir.symlink_metadata().is_ok() {
            check_clearable(dir)?;
            std::fs::remove_dir_all(dir)?;
        }
        if let Some(parent) = dir.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
        std::fs::DirBuilder::new().mode(0o700).create(dir)?;
        let dirfd = open_owned_dir(dir)?;
        openat(
            &dirfd,
            MARKER,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o400,
        )?;
        Ok(ObjectStore {
            dir: dir.to_owned(),
            dirfd,
            mode: StoreMode::PrivateCleared,
            max_bytes,
            inner: Mutex::new(Inner::default()),
            tmp_counter: AtomicU64::new(0),
            counters,
            syncer: None,
        })
    }

    /// Open (or create, mode 0700) the persistent download cache `dir`. Nothing verified is
    /// removed; temporary files of dead writers are; objects over `max_bytes` are evicted LRU.
    pub fn open_cache(
        dir: &Path,
        max_bytes: u64,
        counters: Arc<Counters>,
    ) -> io::Result<ObjectStore> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let dirfd = open_owned_dir(dir)?;
        let mut store = ObjectStore {
            dir: dir.to_owned(),
            dirfd,
            mode: StoreMode::SharedCache,
            max_bytes,
            inner: Mutex::new(Inner::default()),
            tmp_counter: AtomicU64::new(0),
            counters,
            syncer: None,
        };
        let removed = store.remove_stale_temps()?;
        if removed > 0 {
            crate::log_event!(
                "cache {}: removed {removed} partial download(s) left by a stopped daemon",
                dir.display()
            );
        }
        store.recover_after_reboot()?;
        // Everything there now is on disk from here on; record it before storing anything.
        let syncfd = store.dirfd.try_clone()?;
        sync_and_record(&syncfd, &[]).map_err(|e| e.error)?;
        let dir_for_log = dir.to_owned();
        store.syncer = Some(Syncer::start(move |batch| {
            if let Err(e) = sync_and_record(&syncfd, &batch) {
                crate::log_event!(
                    "ERROR cache {}: cannot make stored objects durable: {}{}",
                    dir_for_log.display(),
                    e.error,
                    if e.removed > 0 {
                        format!("; removed {} object(s) whose bytes did not reach the disk (downloaded again when opened)", e.removed)
                    } else {
                        String::new()
                    }
                );
            }
        }));
        let mut inner = store.lock();
        store.evict(&mut inner);
        drop(inner);
        Ok(store)
    }

    pub fn mode(&self) -> StoreMode {
        self.mode
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// If the system crashed since the cache was last synced (its record names another boot),
    /// remove every object not clearly older than that sync: its bytes may not have reached the
    /// disk. Objects in use (locked by a daemon started in this boot) are left alone.
    fn recover_after_reboot(&self) -> io::Result<()> {
        let record = match openat(
            &self.dirfd,
            durability::RECORD,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0,
        ) {
            Ok(mut f) => {
                let mut text = String::new();
                let _ = Read::by_ref(&mut f).take(256).read_to_string(&mut text);
                SyncRecord::parse(&text)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(e),
        };
        // Without a readable record (a crash while the first one was written, a cache of an
        // older version) or without a known boot, nothing vouches for any object.
        let current = durability::boot_id();
        let why = match (&record, &current) {
            (Some(r), Some(boot)) if &r.boot == boot => return Ok(()),
            (Some(_), Some(_)) => "the system restarted since the cache was last synced",
            (None, _) => "the cache has no readable sync record",
            (Some(_), None) => "this boot's id cannot be read (/proc/sys/kernel/random/boot_id)",
        };
        let suspect = |mtime: i64| match (&record, &current) {
            (Some(r), Some(_)) => r.suspect(mtime),
            _ => true,
        };
        let mut removed = 0;
        for name in list_names(&self.dirfd)? {
            if !name.starts_with("t-") {
                continue;
            }
            let Ok(st) = fstatat_nofollow(&self.dirfd, &name) else {
                continue;
            };
            if !suspect(st.st_mtime) {
                continue;
            }
            if self.remove_unused(&name) {
                removed += 1;
            }
        }
        if removed > 0 || record.is_some() {
            crate::log_event!(
                "cache {}: {why}; removed {removed} object(s) that may not have reached the disk (they are downloaded again when opened)",
                self.dir.display()
            );
        }
        Ok(())
    }

    /// Remove the entry `name` if no one holds a lock on it (no daemon uses it) and the name
    /// still leads to the file locked.
    fn remove_unused(&self, name: &str) -> bool {
        let Ok(file) = self.open_entry(name) else {
            return false;
        };
        flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_ok()
            && self.same_name(&file, name)
            && unlinkat(&self.dirfd, name).is_ok()
    }

    /// Sync every object stored so far now (the next batch would within a second).
    pub fn sync(&self) {
        if let Some(s) = &self.syncer {
            s.flush();
        }
    }

    /// Remove temporary files whose writer is gone. A writer takes `flock(LOCK_SH)` on its file
    /// before the file has a `tmp.*` name (it is created as `new.*`, locked, then renamed), and
    /// holds it until the object is published or removed, so a `tmp.*` file whose lock is free
    /// has no live writer, in any pid namespace. A `new.*` file (a writer that died between its
    /// create and its lock, a few microseconds) is removed once it is an hour old and unlocked.
    fn remove_stale_temps(&self) -> io::Result<usize> {
        let mut removed = 0;
        for name in list_names(&self.dirfd)? {
            let fresh = name.starts_with("new.");
            if !(fresh || name.starts_with("tmp.")) || temp_owner(&name).is_none() {
                continue;
            }
            if fresh {
                let old = fstatat_nofollow(&self.dirfd, &name)
                    .is_ok_and(|st| durability::now_secs() - st.st_mtime > 3600);
                if !old {
                    continue;
                }
            }
            if self.remove_unused(&name) {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Create a new temporary file, named `tmp.<pid>.<unique>`; in the shared cache it is held
    /// with `flock(LOCK_SH)` from before it has that name until it is published or removed (the
    /// same lock then protects the object from evictors: no lock conversion, no gap). The
    /// unique part (time, a counter and 64 random bits) keeps the names of daemons that share a
    /// pid (pid 1 in containers) and the cache apart.
    fn create_temp(&self) -> io::Result<(String, File)> {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let random = rand_core::RngCore::next_u64(&mut rand_core::OsRng);
        let unique = format!("{}.{nanos:x}{n:x}{random:016x}", std::process::id());
        let (new_name, tmp_name) = (format!("new.{unique}"), format!("tmp.{unique}"));
        let file = openat(
            &self.dirfd,
            &new_name,
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o400,
        )?;
        let locked = if self.mode == StoreMode::SharedCache {
            flock(&file, libc::LOCK_SH)
        } else {
            Ok(())
        };
        if let Err(e) = locked.and_then(|()| renameat(&self.dirfd, &new_name, &tmp_name)) {
            let _ = unlinkat(&self.dirfd, &new_name);
            return Err(e);
        }
        Ok((tmp_name, file))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps inconsistent in a way that
        // matters for safety (at worst an object is not evicted), so recover the guard.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mark `name` (an object of `length` bytes) as in use if it exists; false if it was never
    /// stored or has been evicted. In the shared cache the object on disk is looked up (another
    /// daemon may have stored or evicted it), locked shared and its mtime touched (LRU).
    pub fn acquire(&self, name: &str, length: u64) -> bool {
        let mut inner = self.lock();
        if self.mode == StoreMode::SharedCache
            && inner.objects.get(name).is_none_or(|e| e.open == 0)
        {
            return match self.lock_on_disk(name, length) {
                Some(file) => {
                    self.mark_open(&mut inner, name, length, file);
                    true
                }
                None => {
                    if let Some(e) = inner.objects.remove(name) {
                        inner.total = inner.total.saturating_sub(e.size);
                        inner.lru.remove(&e.tick);
                    }
                    false
                }
            };
        }
        let Some(entry) = inner.objects.get_mut(name) else {
            return false;
        };
        entry.open += 1;
        let tick = entry.tick;
        if entry.open == 1 {
            inner.lru.remove(&tick);
        }
        true
    }

    /// Shared cache: open `name`, take `LOCK_SH`, check the name still links to that file and
    /// that it can be an object of ours: a regular file owned by this daemon's euid, not
    /// writable by group or others, of exactly `length` bytes; touch its mtime. None if it is
    /// not there (or being evicted). A file that fails the check was not made by a trustfs
    /// daemon of this uid (planted, or damaged): it is removed, so it is downloaded again.
    fn lock_on_disk(&self, name: &str, length: u64) -> Option<File> {
        let file = match self.open_entry(name) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                self.remove_bad(name, None, "is a symbolic link");
                return None;
            }
            Err(_) => return None,
        };
        flock(&file, libc::LOCK_SH).ok()?;
        // After the lock: an evictor that unlinked it first has released its lock by now.
        if !self.same_name(&file, name) {
            return None;
        }
        let meta = file.metadata().ok()?;
        if let Err(why) = check_object(&meta, length) {
            self.remove_bad(name, Some(&file), &why);
            return None;
        }
        let _ = file.set_modified(SystemTime::now());
        Some(file)
    }

    /// Remove a cache entry that is not a valid object (if `name` still links to `file`).
    fn remove_bad(&self, name: &str, file: Option<&File>, why: &str) {
        if file.is_some_and(|f| !self.same_name(f, name)) {
            return;
        }
        match unlinkat(&self.dirfd, name) {
            Ok(()) => crate::log_event!(
                "cache {}: object {name} {why}; removed, it will be downloaded again",
                self.dir.display()
            ),
            Err(e) => crate::log_event!(
                "cache {}: object {name} {why}; not used (cannot remove it: {e})",
                self.dir.display()
            ),
        }
    }

    /// Open the entry `name` of the store directory for reading, never following a symlink and
    /// never blocking (a FIFO planted under an object's name opens and then fails the checks).
    fn open_entry(&self, name: &str) -> io::Result<File> {
        openat(
            &self.dirfd,
            name,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK,
            0,
        )
    }

    /// Does `name` in the store directory still link to the open `file` (same device and inode)?
    fn same_name(&self, file: &File, name: &str) -> bool {
        match (file.metadata(), fstatat_nofollow(&self.dirfd, name)) {
            (Ok(a), Ok(b)) => a.dev() == b.st_dev && a.ino() == b.st_ino,
            _ => false,
        }
    }

    /// Record `name` as stored and opened once more, holding `lock` (shared cache).
    fn mark_open(&self, inner: &mut Inner, name: &str, size: u64, lock: File) {
        if !inner.objects.contains_key(name) {
            // Learned from disk (stored earlier, or by another daemon).
            inner.total += size;
            inner.objects.insert(
                name.to_owned(),
                Entry {
                    size,
                    open: 0,
                    tick: 0,
                    lock: None,
                },
            );
        }
        let Some(entry) = inner.objects.get_mut(name) else {
            return;
        };
        entry.open += 1;
        let tick = entry.tick;
        if entry.open == 1 {
            entry.lock = Some(lock);
            inner.lru.remove(&tick);
        }
    }

    /// Whether the store holds `name` (in this process's accounting).
    pub fn contains(&self, name: &str) -> bool {
        self.lock().objects.contains_key(name)
    }

    /// Objects the store accounts for.
    pub fn object_count(&self) -> usize {
        self.lock().objects.len()
    }

    /// Drop one use of `name`; evict least recently used unused objects over the limit. Returns
    /// true when nobody uses `name` any more.
    pub fn release(&self, name: &str) -> bool {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let Some(entry) = inner.objects.get_mut(name) else {
            return true;
        };
        entry.open = entry.open.saturating_sub(1);
        let unused = entry.open == 0;
        if entry.open == 0 {
            entry.tick = tick;
            // Shared cache: drop the LOCK_SH, so any daemon's evictor may take the object.
            entry.lock = None;
            inner.lru.insert(tick, name.to_owned());
        }
        match self.mode {
            StoreMode::PrivateCleared => self.evict(&mut inner),
            // A release frees space only if the last scan could not get under the bound.
            StoreMode::SharedCache if inner.over => self.evict(&mut inner),
            StoreMode::SharedCache => {}
        }
        unused
    }

    fn evict(&self, inner: &mut Inner) {
        if self.mode == StoreMode::SharedCache {
            // The running total (the last scan plus what this daemon stored since) decides; a
            // rescan (every daemon's objects) happens when it passes the bound, or at most every
            // RESCAN_INTERVAL to see other daemons' objects. Not after every insert: that made
            // filling a cache quadratic in its size.
            let due = inner.over
                || inner.total > self.max_bytes
                || inner
                    .scanned_at
                    .is_none_or(|t| t.elapsed() >= RESCAN_INTERVAL);
            if self.max_bytes < u64::MAX && due {
                self.evict_shared(inner);
            }
            return;
        }
        // Bounded in bytes and in count: a million tiny objects cost memory here even when
        // they fit the byte bound.
        while inner.total > self.max_bytes || inner.objects.len() > MAX_PRIVATE_OBJECTS {
            let Some((_, name)) = inner.lru.pop_first() else {
                break;
            };
            if let Some(entry) = inner.objects.remove(&name) {
                inner.total -= entry.size;
            }
            let _ = unlinkat(&self.dirfd, &name);
        }
    }

    /// Shared cache: scan the directory (objects of every daemon), oldest mtime first, and
    /// unlink objects nobody holds (`LOCK_EX | LOCK_NB` succeeds) until under the bound.
    fn evict_shared(&self, inner: &mut Inner) {
        let Ok(names) = list_names(&self.dirfd) else {
            return;
        };
        let mut objects: Vec<((i64, i64), u64, String)> = Vec::new();
        for name in names {
            if !name.starts_with("t-") {
                continue;
            }
            if let Ok(st) = fstatat_nofollow(&self.dirfd, &name) {
                let mtime = (st.st_mtime, st.st_mtime_nsec);
                objects.push((mtime, st.st_size as u64, name));
            }
        }
        let mut total: u64 = objects.iter().map(|o| o.1).sum();
        objects.sort();
        for (_, size, name) in objects {
            if total <= self.max_bytes {
                break;
            }
            if inner.objects.get(&name).is_some_and(|e| e.open > 0) {
                continue;
            }
            let Ok(file) = self.open_entry(&name) else {
                continue;
            };
            // Held (LOCK_SH) by a reader in some daemon: in use, never evicted.
            if flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_err() || !self.same_name(&file, &name)
            {
                continue;
            }
            if unlinkat(&self.dirfd, &name).is_ok() {
                total -= size;
                if let Some(e) = inner.objects.remove(&name) {
                    inner.lru.remove(&e.tick);
                }
                crate::log_event!("cache: evicted {name} ({size} bytes)");
            }
        }
        inner.total = total;
        inner.over = total > self.max_bytes;
        inner.scanned_at = Some(Instant::now());
    }

    /// Open a stored object for reading (relative to the held directory, no symlink followed);
    /// it must still be a regular file of ours (owner, no group/other write).
    pub fn open(&self, name: &str) -> io::Result<File> {
        let file = openat(
            &self.dirfd,
            name,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0,
        )?;
        let meta = file.metadata()?;
        check_object(&meta, meta.len()).map_err(|why| {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("object {name} {why}"),
            )
        })?;
        Ok(file)
    }

    /// Private store: remove those of `names` that no handle uses (their content is no longer
    /// listed by the metadata in force). Returns how many were removed. The shared cache keeps
    /// them (other mounts may use them; its own bound evicts them in time).
    pub fn drop_unused(&self, names: &[String]) -> usize {
        if self.mode != StoreMode::PrivateCleared {
            return 0;
        }
        let mut inner = self.lock();
        let mut dropped = 0;
        for name in names {
            if inner.objects.get(name).is_some_and(|e| e.open == 0) {
                if let Some(e) = inner.objects.remove(name) {
                    inner.total = inner.total.saturating_sub(e.size);
                    inner.lru.remove(&e.tick);
                    let _ = unlinkat(&self.dirfd, name);
                    dropped += 1;
                }
            }
        }
        dropped
    }

    /// Bytes currently stored.
    pub fn total_bytes(&self) -> u64 {
        self.lock().total
    }

    /// Copy `src` into the store, hashing exactly the bytes written, and publish it as `name`
    /// only if it matches `info`. On success the object is acquired (call [`Self::release`]).
    pub fn verify_and_store(
        &self,
        src: &BackingFile,
        info: &TargetInfo,
        name: &str,
    ) -> Result<CopyMethod, StoreError> {
        MultiHasher::for_content(info).map_err(StoreError::Mismatch)?;
        if src.stat.key.size != info.length {
            // Cheap refusal: fstat already shows the length differs.
            return Err(StoreError::Mismatch(Mismatch::Length {
                expected: info.length,
                actual: src.stat.key.size,
            }));
        }
        self.store_with(info, name, |tmp, hasher| self.fill(src, tmp, hasher, info))
    }

    /// Stream `reader` into the store, at most `info.length + 1` bytes (a source that sends more
    /// is cut off and refused), hashing exactly the bytes written, and publish it as `name` only
    /// if it matches `info`. `progress` sees the byte count after each chunk. On success the
    /// object is acquired (call [`Self::release`]).
    pub fn fetch_and_store(
        &self,
        reader: &mut dyn Read,
        info: &TargetInfo,
        name: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), StoreError> {
        self.store_with(info, name, |tmp, hasher| {
            let started = Instant::now();
            let limit = info.length.saturating_add(1);
            preallocate(tmp, info.length);
            let result = copy_and_hash(reader, tmp, hasher, limit, progress).and_then(|hasher| {
                // Fewer bytes than signed: the stream broke off (not judged); more, or the
                // right number with other hashes: wrong content.
                if hasher.length() < info.length {
                    return Err(StoreError::Truncated {
                        received: hasher.length(),
                        expected: info.length,
                    });
                }
                hasher.check(info).map_err(StoreError::Mismatch)
            });
            self.counters
                .verification_pass(started.elapsed().as_secs_f64());
            result
        })
    }

    /// Create a temporary file, let `fill` write and check it, then publish it as `name`
    /// (fsynced first in the shared cache) and acquire it. On any error the temporary is removed.
    fn store_with<T>(
        &self,
        info: &TargetInfo,
        name: &str,
        fill: impl FnOnce(&File, MultiHasher) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let hasher = MultiHasher::for_content(info).map_err(StoreError::Mismatch)?;
        let (tmp_name, tmp) = self.create_temp().map_err(StoreError::Io)?;
        let shared = self.mode == StoreMode::SharedCache;
        let result = (|| {
            let out = fill(&tmp, hasher)?;
            // The hashes cover the bytes written; nothing else may be in the file either.
            let size = tmp.metadata().map_err(StoreError::Io)?.len();
            if size != info.length {
                return Err(StoreError::Io(io::Error::other(format!(
                    "temporary object has {size} bytes, expected the signed {}; not published",
                    info.length
                ))));
            }
            Ok(out)
        })();
        let out = match result {
            Ok(out) => out,
            Err(e) => {
                let _ = unlinkat(&self.dirfd, &tmp_name);
                return Err(e);
            }
        };
        let mut inner = self.lock();
        if shared {
            return self
                .publish_shared(&mut inner, &tmp_name, tmp, info, name)
                .map(|()| out);
        }
        let known = inner.objects.contains_key(name);
        if known {
            // Another open stored the same content first; keep that one.
            let _ = unlinkat(&self.dirfd, &tmp_name);
        } else if let Err(e) = renameat(&self.dirfd, &tmp_name, name) {
            let _ = unlinkat(&self.dirfd, &tmp_name);
            return Err(StoreError::Io(e));
        }
        if !known {
            inner.total += info.length;
            inner.objects.insert(
                name.to_owned(),
                Entry {
                    size: info.length,
                    open: 0,
                    tick: 0,
                    lock: None,
                },
            );
        }
        if let Some(entry) = inner.objects.get_mut(name) {
            entry.open += 1;
            let tick = entry.tick;
            if entry.open == 1 {
                inner.lru.remove(&tick);
            }
        }
        Ok(out)
    }

    /// Shared cache: give the verified, fsynced temporary its name and acquire it. If the object
    /// is already there (stored by another daemon meanwhile) that one is used and ours dropped.
    fn publish_shared(
        &self,
        inner: &mut Inner,
        tmp_name: &str,
        tmp: File,
        info: &TargetInfo,
        name: &str,
    ) -> Result<(), StoreError> {
        if let Some(existing) = self.lock_on_disk(name, info.length) {
            let _ = unlinkat(&self.dirfd, tmp_name);
            self.mark_open(inner, name, info.length, existing);
            return Ok(());
        }
        if let Err(e) = renameat(&self.dirfd, tmp_name, name) {
            let _ = unlinkat(&self.dirfd, tmp_name);
            return Err(StoreError::Io(e));
        }
        // Durable with the next batch (within a second); a system crash before that is handled
        // by the first daemon after the reboot (`durability.rs`).
        if let Some(s) = &self.syncer {
            s.dirty(name);
        }
        // The writer's LOCK_SH, held since before the file had a name anyone scans, now keeps
        // the object from every evictor until the caller releases it.
        if let Some(e) = inner.objects.remove(name) {
            // A stale record of an object evicted meanwhile.
            inner.total = inner.total.saturating_sub(e.size);
            inner.lru.remove(&e.tick);
        }
        self.mark_open(inner, name, info.length, tmp);
        self.evict(inner);
        Ok(())
    }

    fn fill(
        &self,
        src: &BackingFile,
        tmp: &File,
        hasher: MultiHasher,
        info: &TargetInfo,
    ) -> Result<CopyMethod, StoreError> {
        let started = Instant::now();
        let result = self.fill_inner(src, tmp, hasher, info);
        self.counters
            .verification_pass(started.elapsed().as_secs_f64());
        result
    }

    fn fill_inner(
        &self,
        src: &BackingFile,
        tmp: &File,
        hasher: MultiHasher,
        info: &TargetInfo,
    ) -> Result<CopyMethod, StoreError> {
        let limit = info.length.saturating_add(1);
        let (hasher, method) = if ficlone(tmp, &src.file).is_ok() {
            (hash_file(tmp, hasher, limit)?, CopyMethod::Reflink)
        } else {
            // A FICLONE that failed partway may have left cloned extents in the temporary; the
            // copy writes from offset 0, so start from an empty file or trailing bytes survive.
            tmp.set_len(0).map_err(StoreError::Io)?;
            preallocate(tmp, info.length);
            (
                copy_and_hash(&mut &src.file, tmp, hasher, limit, &mut |_| {})?,
                CopyMethod::Copy,
            )
        };
        let after = fstat(src.file.as_fd()).map_err(StoreError::Read)?;
        if after.key != src.stat.key {
            return Err(StoreError::ChangedWhileReading);
        }
        hasher.check(info).map_err(StoreError::Mismatch)?;
        Ok(method)
    }
}

/// Hash a (cloned) file from offset 0, reading at most `limit` bytes.
fn hash_file(file: &File, mut hasher: MultiHasher, limit: u64) -> Result<MultiHasher, StoreError> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let want = (limit - hasher.length()).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(hasher);
        }
        match file.read_at(&mut buf[..want], hasher.length()) {
            Ok(0) => return Ok(hasher),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StoreError::Read(e)),
        }
    }
}

/// Fill `buf` from `src` as far as it goes; fewer bytes only at end of stream.
fn read_full(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reserve `len` bytes for `file` up front (`fallocate`), so the copy's writes land in allocated
/// extents instead of reserving delayed-allocation blocks page by page. Only a hint: a filesystem
/// without `fallocate` just skips it.
fn preallocate(file: &File, len: u64) {
    if len > CHUNK as u64 {
        // Only blocks are allocated, the size is left alone: the size check before publishing
        // still sees exactly the bytes written.
        let _ = crate::sys::fallocate_keep_size(file, len);
    }
}

/// Copy at most `limit` bytes of `src` to `dst`; hash the same buffers on a second thread.
/// `progress` is called with the bytes copied so far after each chunk.
fn copy_and_hash(
    src: &mut dyn Read,
    mut dst: &File,
    mut hasher: MultiHasher,
    limit: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<MultiHasher, StoreError> {
    if limit <= CHUNK as u64 {
        let mut buf = vec![0u8; limit as usize];
        let filled = read_full(src, &mut buf).map_err(StoreError::Read)?;
        dst.write_all(&buf[..filled]).map_err(StoreError::Io)?;
        hasher.update(&buf[..filled]);
        progress(filled as u64);
        return Ok(hasher);
    }
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(BUFFERS);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
    for _ in 0..BUFFERS {
        // The channel has room for exactly BUFFERS items and nobody has received yet.
        let _ = empty_tx.send(vec![0u8; CHUNK]);
    }
    std::thread::scope(|scope| {
        let hashing = scope.spawn(move || {
            for (buf, n) in full_rx {
                hasher.update(&buf[..n]);
                // The copier may have finished and dropped its receiver; then buffers are freed.
                let _ = empty_tx.send(buf);
            }
            hasher
        });
        let mut copied: u64 = 0;
        let copy_result = (|| -> Result<(), StoreError> {
            while copied < limit {
                let Ok(mut buf) = empty_rx.recv() else {
                    // The hashing thread is gone (it panicked); the join below reports it.
                    return Err(StoreError::Io(io::Error::other("hashing thread stopped")));
                };
                let want = (limit - copied).min(CHUNK as u64) as usize;
                let n = read_full(src, &mut buf[..want]).map_err(StoreError::Read)?;
                if n == 0 {
                    break;
                }
                dst.write_all(&buf[..n]).map_err(StoreError::Io)?;
                copied += n as u64;
                progress(copied);
                if full_tx.send((buf, n)).is_err() {
                    return Err(StoreError::Io(io::Error::other("hashing thread stopped")));
                }
            }
            Ok(())
        })();
        drop(full_tx);
        let hasher = hashing
            .join()
            .map_err(|_| StoreError::Io(io::Error::other("hashing thread panicked")))?;
        copy_result.map(|()| hasher)
    })
}

/// The writer pid of a temporary file name `tmp.<pid>.<unique hex>` (or `new.…`).
fn temp_owner(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix("tmp.")
        .or_else(|| name.strip_prefix("new."))?;
    let (pid, unique) = rest.split_once('.')?;
    if unique.is_empty() || !unique.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    pid.parse().ok()
}

/// Why a batch could not be made durable, and how many of its objects were removed for it.
struct SyncFailure {
    error: io::Error,
    removed: usize,
}

/// `syncfs` the cache's filesystem and `fsync` each object of `batch` (to learn of a write error
/// per file: an object whose bytes did not reach the disk is removed), then record (a flushed
/// temporary file, renamed) that everything stored before the sync began is on disk, unless an
/// object of the batch failed.
fn sync_and_record(dirfd: &File, batch: &[String]) -> Result<(), SyncFailure> {
    let fail = |error: io::Error, removed: usize| SyncFailure { error, removed };
    let before = durability::now_secs();
    let synced = durability::syncfs(dirfd);
    let mut first_error = None;
    let mut removed = 0;
    for name in batch {
        let result = openat(
            dirfd,
            name,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0,
        )
        .and_then(|f| f.sync_all());
        match result {
            Ok(()) => {}
            // Evicted meanwhile: nothing left to be durable.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => {
                if unlinkat(dirfd, name).is_ok() {
                    removed += 1;
                }
                first_error.get_or_insert(io::Error::new(e.kind(), format!("{name}: {e}")));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(fail(e, removed));
    }
    if batch.is_empty() {
        // The start-up sync: nothing but the syncfs vouches for what is there.
        synced.map_err(|e| fail(e, 0))?;
    }
    let record = SyncRecord {
        boot: durability::boot_id().unwrap_or_else(|| durability::UNKNOWN_BOOT.to_owned()),
        synced_before: before,
    };
    // Unique among daemons sharing the cache, also two pid 1s in different containers.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = format!(
        "{}.{}.{}.{nanos}",
        durability::RECORD,
        std::process::id(),
        durability::now_secs()
    );
    let write = || -> io::Result<()> {
        let mut f = openat(
            dirfd,
            &tmp,
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        )?;
        f.write_all(record.render().as_bytes())?;
        f.sync_all()?;
        drop(f);
        renameat(dirfd, &tmp, durability::RECORD)
    };
    write().map_err(|e| {
        let _ = unlinkat(dirfd, &tmp);
        fail(e, 0)
    })
}

/// The file that marks a directory as a trustfs object store (`<state-dir>/objects`).
pub const MARKER: &str = ".trustfs-objects";

/// May the existing `dir` be cleared as an object store? It must be a directory (not a
/// symlink) owned by our euid and carry [`MARKER`], or hold only `t-<64 hex>`, `tmp.*` and
/// `new.*` files (a store from before the marker).
fn check_clearable(dir: &Path) -> io::Result<()> {
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing to clear {}: {why}; it does not look like a trustfs object store \
                 (is --state-dir right?)",
                dir.display()
            ),
        ))
    };
    let meta = dir.symlink_metadata()?;
    if !meta.is_dir() {
        return refuse("it is not a directory".into());
    }
    if meta.uid() != euid() {
        return refuse(format!("it is owned by uid {}", meta.uid()));
    }
    let dirfd = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)?;
    if fstatat_nofollow(&dirfd, MARKER).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG) {
        return Ok(());
    }
    for name in list_names(&dirfd)? {
        let object = name
            .strip_prefix("t-")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        let regular = fstatat_nofollow(&dirfd, &name)
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG);
        if !((object || temp_owner(&name).is_some()) && regular) {
            return refuse(format!("it has no {MARKER} marker and holds {name:?}"));
        }
    }
    Ok(())
}

/// This process's effective uid.
fn euid() -> u32 {
    crate::sys::euid()
}

/// Can `meta` be an object this daemon stored: a regular file owned by our euid, not writable by
/// group or others, of exactly `length` bytes? Err: why not, for a log line.
fn check_object(meta: &std::fs::Metadata, length: u64) -> Result<(), String> {
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    if meta.uid() != euid() {
        return Err(format!(
            "is owned by uid {}, not by this daemon's uid {}",
            meta.uid(),
            euid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "is writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    if meta.len() != length {
        return Err(format!("has {} bytes, expected {length}", meta.len()));
    }
    Ok(())
}

/// Open the store directory `dir` (no symlink), refuse it unless it is owned by our euid and not
/// writable by group or others (whoever else can write it can plant objects), then make it 0700.
pub(super) fn open_owned_dir(dir: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a directory (or is a symbolic link)",
                    dir.display()
                ),
            ),
            _ => e,
        })?;
    let meta = file.metadata()?;
    if meta.uid() != euid() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing {}: it is owned by uid {}, not by this daemon's uid {} \
                 (its owner could plant content in it)",
                dir.display(),
                meta.uid(),
                euid()
            ),
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing {}: it is writable by group or others (mode {:o}), \
                 so others could plant content in it; make it 0700",
                dir.display(),
                meta.mode() & 0o7777
            ),
        ));
    }
    file.set_permissions(std::fs::Permissions::from_mode(0o700))?;
    Ok(file)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
pub(super) fn fstatat_nofollow(dir: &File, name: &str) -> io::Result<libc::stat> {
    crate::source::fstatat_nofollow(dir.as_fd(), name)
}

/// The names in directory `dir` (without `.` and `..`; names that are not UTF-8 are skipped:
/// the store never makes one).
pub(super) fn list_names(dir: &File) -> io::Result<Vec<String>> {
    Ok(crate::source::list_dir(dir.as_fd())?
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Hashes;

    #[test]
    fn object_names_depend_on_length_and_every_hash() {
        let mut a = TargetInfo {
            length: 1,
            hashes: Hashes::from([("sha256".to_owned(), vec![1; 32])]),
            custom: None,
            chunk_root: None,
        };
        let n1 = object_name(&a);
        a.length = 2;
        let n2 = object_name(&a);
        a.hashes.insert("sha512", vec![2; 64]);
        let n3 = object_name(&a);
        assert!(n1 != n2 && n2 != n3 && n1 != n3);
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("trustfs-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn info_of(data: &[u8]) -> TargetInfo {
        TargetInfo {
            length: data.len() as u64,
            hashes: Hashes::from([("sha256".to_owned(), Sha256::digest(data).to_vec())]),
            custom: None,
            chunk_root: None,
        }
    }

    #[test]
    fn a_temporary_longer_than_the_signed_length_is_never_published() {
        let root = scratch("trailing");
        let dir = root.join("objects");
        let store = ObjectStore::create(&dir, u64::MAX, Arc::default()).unwrap();
        let data = b"signed bytes";
        let info = info_of(data);
        let name = object_name(&info);
        // The hashed (and verified) bytes are right, but stale bytes follow them in the file,
        // as a partial FICLONE followed by the copy from offset 0 could leave.
        let r = store.store_with(&info, &name, |tmp, mut hasher| {
            tmp.write_all_at(b"signed bytes and trailing junk", 0)
                .map_err(StoreError::Io)?;
            hasher.update(data);
            hasher.check(&info).map_err(StoreError::Mismatch)
        });
        assert!(matches!(r, Err(StoreError::Io(_))), "{r:?}");
        assert!(!dir.join(&name).exists());
        assert!(!store.acquire(&name, info.length));
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert!(
            left.iter()
                .all(|e| e.file_name().to_string_lossy().starts_with('.')),
            "{left:?}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn only_a_marked_or_trustfs_only_directory_is_cleared() {
        let root = scratch("marker");
        let dir = root.join("objects");
        // Someone's files where --state-dir/objects points by mistake: refused, kept.
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("precious.txt"), b"keep me").unwrap();
        let e = ObjectStore::create(&dir, u64::MAX, Arc::default()).unwrap_err();
        assert!(e.to_string().contains("refusing to clear"), "{e}");
        assert_eq!(std::fs::read(dir.join("precious.txt")).unwrap(), b"keep me");
        std::fs::remove_file(dir.join("precious.txt")).unwrap();
        // A store from before the marker (objects and temporaries only): cleared, then marked.
        let obj = format!("t-{}", "a".repeat(64));
        std::fs::write(dir.join(&obj), b"x").unwrap();
        std::fs::write(dir.join("tmp.12.7"), b"x").unwrap();
        let store = ObjectStore::create(&dir, u64::MAX, Arc::default()).unwrap();
        assert!(!dir.join(&obj).exists());
        assert!(dir.join(MARKER).is_file());
        drop(store);
        // A marked store is cleared whatever it holds.
        std::fs::write(dir.join("whatever"), b"x").unwrap();
        ObjectStore::create(&dir, u64::MAX, Arc::default()).unwrap();
        assert!(!dir.join("whatever").exists());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn temp_names_carry_their_writer() {
        assert_eq!(temp_owner("tmp.1234.7"), Some(1234));
        assert_eq!(temp_owner("new.1.18f3a9c0deadbeef"), Some(1));
        for bad in [
            "tmp.x.1", "tmp.12", "t-abc", "tmp.12.x", "xtmp.1.2", "tmp.1.",
        ] {
            assert_eq!(temp_owner(bad), None, "{bad}");
        }
    }

    #[test]
    fn temps_of_a_daemon_with_the_same_pid_do_not_collide_and_stay_locked_until_used() {
        let root = scratch("samepid");
        let dir = root.join("cache");
        let store = ObjectStore::open_cache(&dir, u64::MAX, Arc::default()).unwrap();
        // Another daemon with our pid (pid 1 in two containers) is writing its first temps,
        // under the names a counter alone would give ours.
        let pid = std::process::id();
        for n in 0..4 {
            std::fs::write(dir.join(format!("tmp.{pid}.{n}")), b"theirs").unwrap();
        }
        let data = b"object bytes";
        let info = info_of(data);
        let name = object_name(&info);
        let mut reader: &[u8] = data;
        store
            .fetch_and_store(&mut reader, &info, &name, &mut |_| {})
            .expect("a temp name collision must not fail the download");
        for n in 0..4 {
            assert!(dir.join(format!("tmp.{pid}.{n}")).exists());
        }
        // Published and held: a second daemon starting now with a bound of 0 (its evictor and
        // its stale-temp cleaner) does not take our object.
        let other = ObjectStore::open_cache(&dir, 0, Arc::default()).unwrap();
        assert!(dir.join(&name).exists(), "an object in use was evicted");
        store.release(&name);
        drop(other);
        let _ = std::fs::remove_dir_all(&root);
    }
}

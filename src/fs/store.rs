//! The private object store: immutable, verified copies of backing files that reads are served from.
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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use sha2::{Digest, Sha256};

use super::Stats;
use crate::index::TargetInfo;
use crate::source::{fstat, BackingFile};
use crate::verify::{Mismatch, MultiHasher};

/// Size of one copy buffer; files up to this size are copied and hashed on the calling thread.
const CHUNK: usize = 1 << 20;
/// Buffers in flight between the copying and the hashing thread.
const BUFFERS: usize = 4;

/// Why a backing file could not be turned into a verified object.
#[derive(Debug)]
pub enum StoreError {
    /// Content does not match the signed metadata.
    Mismatch(Mismatch),
    /// The backing file changed (size, times or identity) while it was being copied.
    ChangedWhileReading,
    /// I/O error reading the backing file or writing the store.
    Io(io::Error),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Mismatch(m) => m.fmt(f),
            StoreError::ChangedWhileReading => {
                f.write_str("backing file changed while it was being verified")
            }
            StoreError::Io(e) => write!(f, "I/O error while verifying: {e}"),
        }
    }
}

/// The content-addressed name of the object for a target: a digest over its signed length and
/// every listed hash, so an object is only ever reused for exactly the metadata it was checked
/// against.
pub fn object_name(info: &TargetInfo) -> String {
    let mut h = Sha256::new();
    h.update(info.length.to_string().as_bytes());
    for (alg, digest) in &info.hashes {
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
}

#[derive(Debug, Default)]
struct Inner {
    objects: HashMap<String, Entry>,
    /// Objects not currently open, least recently used first.
    lru: BTreeMap<u64, String>,
    total: u64,
    tick: u64,
}

/// The object store under `<state-dir>/objects`.
#[derive(Debug)]
pub struct ObjectStore {
    dir: PathBuf,
    max_bytes: u64,
    inner: Mutex<Inner>,
    tmp_counter: AtomicU64,
    stats: Arc<Stats>,
}

/// How the copy was made (for the log line).
#[derive(Clone, Copy, Debug)]
pub enum CopyMethod {
    Reflink,
    Copy,
}

impl ObjectStore {
    /// Create (or clear) the store directory `dir` with mode 0700.
    pub fn create(dir: &Path, max_bytes: u64, stats: Arc<Stats>) -> io::Result<ObjectStore> {
        if dir.symlink_metadata().is_ok() {
            std::fs::remove_dir_all(dir)?;
        }
        if let Some(parent) = dir.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
        std::fs::DirBuilder::new().mode(0o700).create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(ObjectStore {
            dir: dir.to_owned(),
            max_bytes,
            inner: Mutex::new(Inner::default()),
            tmp_counter: AtomicU64::new(0),
            stats,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps inconsistent in a way that
        // matters for safety (at worst an object is not evicted), so recover the guard.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mark `name` as in use if it exists; false if it was never stored or has been evicted.
    pub fn acquire(&self, name: &str) -> bool {
        let mut inner = self.lock();
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

    /// Drop one use of `name`; evict least recently used unused objects over the limit.
    pub fn release(&self, name: &str) {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let Some(entry) = inner.objects.get_mut(name) else {
            return;
        };
        entry.open = entry.open.saturating_sub(1);
        if entry.open == 0 {
            entry.tick = tick;
            inner.lru.insert(tick, name.to_owned());
        }
        self.evict(&mut inner);
    }

    fn evict(&self, inner: &mut Inner) {
        while inner.total > self.max_bytes {
            let Some((_, name)) = inner.lru.pop_first() else {
                break;
            };
            if let Some(entry) = inner.objects.remove(&name) {
                inner.total -= entry.size;
            }
            let _ = std::fs::remove_file(self.dir.join(&name));
        }
    }

    /// Open a stored object for reading.
    pub fn open(&self, name: &str) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.dir.join(name))
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
        let hasher = MultiHasher::for_target(info).map_err(StoreError::Mismatch)?;
        if src.stat.key.size != info.length {
            // Cheap refusal: fstat already shows the length differs.
            return Err(StoreError::Mismatch(Mismatch::Length {
                expected: info.length,
                actual: src.stat.key.size,
            }));
        }
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp_path = self.dir.join(format!("tmp.{}.{n}", std::process::id()));
        let tmp = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o400)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp_path)
            .map_err(StoreError::Io)?;
        let result = self.fill(src, &tmp, hasher, info);
        let method = match result {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp_path);
                return Err(e);
            }
        };
        drop(tmp);
        let mut inner = self.lock();
        if inner.objects.contains_key(name) {
            // Another open stored the same content first; keep that one.
            let _ = std::fs::remove_file(&tmp_path);
        } else if let Err(e) = std::fs::rename(&tmp_path, self.dir.join(name)) {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(StoreError::Io(e));
        } else {
            inner.total += info.length;
            inner.objects.insert(
                name.to_owned(),
                Entry {
                    size: info.length,
                    open: 0,
                    tick: 0,
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
        Ok(method)
    }

    fn fill(
        &self,
        src: &BackingFile,
        tmp: &File,
        hasher: MultiHasher,
        info: &TargetInfo,
    ) -> Result<CopyMethod, StoreError> {
        self.stats.hash_passes.fetch_add(1, Ordering::Relaxed);
        let limit = info.length.saturating_add(1);
        let (hasher, method) = if ficlone(tmp, &src.file).is_ok() {
            (hash_file(tmp, hasher, limit)?, CopyMethod::Reflink)
        } else {
            (
                copy_and_hash(&src.file, tmp, hasher, limit)?,
                CopyMethod::Copy,
            )
        };
        let after = fstat(std::os::fd::AsFd::as_fd(&src.file)).map_err(StoreError::Io)?;
        if after.key != src.stat.key {
            return Err(StoreError::ChangedWhileReading);
        }
        hasher.check(info).map_err(StoreError::Mismatch)?;
        Ok(method)
    }
}

/// `ioctl(FICLONE)`: make `dst` a reflink copy of `src` (fails on filesystems without reflinks).
fn ficlone(dst: &File, src: &File) -> io::Result<()> {
    // SAFETY: FICLONE takes the source descriptor as its integer argument; both descriptors are
    // live for the duration of the call and no memory is passed.
    let ret = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
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
            Err(e) => return Err(StoreError::Io(e)),
        }
    }
}

fn read_some(mut src: &File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match src.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Copy at most `limit` bytes of `src` to `dst`; hash the same buffers on a second thread.
fn copy_and_hash(
    src: &File,
    mut dst: &File,
    mut hasher: MultiHasher,
    limit: u64,
) -> Result<MultiHasher, StoreError> {
    if limit <= CHUNK as u64 {
        let mut buf = vec![0u8; limit as usize];
        let mut filled = 0;
        while filled < buf.len() {
            let n = read_some(src, &mut buf[filled..]).map_err(StoreError::Io)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        dst.write_all(&buf[..filled]).map_err(StoreError::Io)?;
        hasher.update(&buf[..filled]);
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
                let n = read_some(src, &mut buf[..want]).map_err(StoreError::Io)?;
                if n == 0 {
                    break;
                }
                dst.write_all(&buf[..n]).map_err(StoreError::Io)?;
                copied += n as u64;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn object_names_depend_on_length_and_every_hash() {
        let mut a = TargetInfo {
            length: 1,
            hashes: BTreeMap::from([("sha256".to_owned(), vec![1; 32])]),
            custom: None,
        };
        let n1 = object_name(&a);
        a.length = 2;
        let n2 = object_name(&a);
        a.hashes.insert("sha512".into(), vec![2; 64]);
        let n3 = object_name(&a);
        assert!(n1 != n2 && n2 != n3 && n1 != n3);
    }
}

//! Using objects: acquire and release (the use counts and the LRU order), opening one for reading,
//! and the shared cache's checks of what lies on disk under an object's name (lock, same inode,
//! owner, mode, length).

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::time::SystemTime;

use super::dir::{euid, fstatat_nofollow};
use super::{flock, openat, unlinkat, Entry, Inner, ObjectStore, StoreMode};

impl ObjectStore {
    /// Remove the entry `name` if no one holds a lock on it (no daemon uses it) and the name
    /// still leads to the file locked.
    pub(super) fn remove_unused(&self, name: &str) -> bool {
        let Ok(file) = self.open_entry(name) else {
            return false;
        };
        flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_ok()
            && self.same_name(&file, name)
            && unlinkat(&self.dirfd, name).is_ok()
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
    pub(super) fn lock_on_disk(&self, name: &str, length: u64) -> Option<File> {
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
    pub(super) fn open_entry(&self, name: &str) -> io::Result<File> {
        openat(
            &self.dirfd,
            name,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK,
            0,
        )
    }

    /// Does `name` in the store directory still link to the open `file` (same device and inode)?
    pub(super) fn same_name(&self, file: &File, name: &str) -> bool {
        match (file.metadata(), fstatat_nofollow(&self.dirfd, name)) {
            (Ok(a), Ok(b)) => a.dev() == b.st_dev && a.ino() == b.st_ino,
            _ => false,
        }
    }

    /// Record `name` as stored and opened once more, holding `lock` (shared cache).
    pub(super) fn mark_open(&self, inner: &mut Inner, name: &str, size: u64, lock: File) {
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

    /// Bytes currently stored.
    pub fn total_bytes(&self) -> u64 {
        self.lock().total
    }
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

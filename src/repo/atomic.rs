//! Atomic file replacement and the repository lock.
//!
//! A repository may be served over HTTP while it is published to, so no file may ever be seen half
//! written: every file is written to a temporary name in the same directory (created with
//! `O_EXCL` and its final mode, so a private key is never readable by others even briefly),
//! flushed to disk, then renamed over the final name.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::RepoError;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary file beside `dest`, removed on drop unless persisted.
pub(crate) struct TempFile {
    path: PathBuf,
    file: Option<File>,
    /// Flush to disk before the rename (the default); off for files made durable in a batch
    /// ([`syncfs`]) before anything refers to them.
    sync: bool,
}

impl TempFile {
    /// Create a new, empty temporary file in the directory of `dest` with `mode`.
    pub(crate) fn beside(dest: &Path, mode: u32) -> Result<TempFile, RepoError> {
        let dir = parent_dir(dest);
        let base = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Keep the temporary name short enough for 255-byte file name limits.
        let base: String = base.chars().take(64).collect();
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(".{base}.tmp-{}-{n}", std::process::id()));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file: Some(file),
                        sync: true,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(RepoError::io("create a temporary file", &path, e)),
            }
        }
    }

    /// Do not flush this file on its own: the caller makes it durable with [`syncfs`] before
    /// anything refers to it.
    pub(crate) fn batched(mut self) -> TempFile {
        self.sync = false;
        self
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn write_all(&mut self, data: &[u8]) -> Result<(), RepoError> {
        let file = self.open_file()?;
        file.write_all(data)
            .map_err(|e| RepoError::io("write", &self.path, e))
    }

    pub(crate) fn open_file(&mut self) -> Result<&mut File, RepoError> {
        self.file
            .as_mut()
            .ok_or_else(|| RepoError::Internal("temporary file used after it was closed".into()))
    }

    /// Flush to disk and close, leaving the file at its temporary name.
    fn sync_and_close(&mut self) -> Result<(), RepoError> {
        if let Some(file) = self.file.take() {
            if self.sync {
                file.sync_all()
                    .map_err(|e| RepoError::io("flush to disk", &self.path, e))?;
            }
        }
        Ok(())
    }

    /// Flush and rename over `dest` (replacing it atomically).
    pub(crate) fn persist(mut self, dest: &Path) -> Result<(), RepoError> {
        self.sync_and_close()?;
        fs::rename(&self.path, dest).map_err(|e| RepoError::io("rename into place", dest, e))?;
        self.path = PathBuf::new();
        Ok(())
    }

    /// Flush and give `dest` the content without replacing an existing `dest`: hard-link, which
    /// fails with `AlreadyExists` atomically, then drop the temporary name. Used for key files, so
    /// an existing `dest` is reported as [`RepoError::KeyExists`].
    pub(crate) fn persist_noclobber(mut self, dest: &Path) -> Result<(), RepoError> {
        self.sync_and_close()?;
        match fs::hard_link(&self.path, dest) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(RepoError::KeyExists {
                path: dest.to_owned(),
            }),
            Err(e) => Err(RepoError::io("create", dest, e)),
        }
        // Drop removes the temporary name.
    }

    /// Also give the (flushed) content a second final name `dest` via a hard link, atomically.
    pub(crate) fn link_also(&mut self, dest: &Path) -> Result<(), RepoError> {
        self.sync_and_close()?;
        let second = TempFile::beside(dest, 0o644)?;
        let second_path = second.path.clone();
        drop(second); // removes the placeholder; its name is now free for the link
        fs::hard_link(&self.path, &second_path)
            .map_err(|e| RepoError::io("hard-link", &second_path, e))?;
        fs::rename(&second_path, dest).map_err(|e| {
            let _ = fs::remove_file(&second_path);
            RepoError::io("rename into place", dest, e)
        })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Write `data` to `dest` atomically with `mode` (temp file + fsync + rename), then flush the
/// directory entry.
pub(crate) fn write_atomic(dest: &Path, data: &[u8], mode: u32) -> Result<(), RepoError> {
    let mut tmp = TempFile::beside(dest, mode)?;
    tmp.write_all(data)?;
    tmp.persist(dest)?;
    sync_dir(parent_dir(dest))
}

/// Flush a directory so renames in it survive a crash. Best effort where unsupported.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), RepoError> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        Err(e) => Err(RepoError::io("flush directory", dir, e)),
    }
}

/// Flush everything written to the filesystem that holds `dir` (one `syncfs` instead of an
/// `fsync` per file and directory): files written [`TempFile::batched`] and the renames that put
/// them in place are on disk when this returns.
pub(crate) fn syncfs(dir: &Path) -> Result<(), RepoError> {
    let d = File::open(dir).map_err(|e| RepoError::io("open", dir, e))?;
    crate::sys::syncfs(&d).map_err(|e| RepoError::io("flush to disk (syncfs)", dir, e))
}

/// An exclusive lock on a repository, held while a command publishes, so that a cron `refresh`
/// and a CI `add` never both write version N. Released when dropped (the file is closed).
pub(crate) struct RepoLock {
    _file: File,
}

impl RepoLock {
    /// Wait for and take the lock `REPO/.trustfs.lock`.
    pub(crate) fn acquire(repo: &Path) -> Result<RepoLock, RepoError> {
        let path = repo.join(".trustfs.lock");
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(|e| RepoError::io("open the lock file", &path, e))?;
        // (Retried on EINTR.)
        crate::sys::flock(&file, libc::LOCK_EX).map_err(|e| RepoError::io("lock", &path, e))?;
        Ok(RepoLock { _file: file })
    }
}

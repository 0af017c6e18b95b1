//! Trusted metadata persisted between runs, so a restart never accepts older metadata.
//!
//! The layout is the one python-tuf's client and the conformance suite use for a metadata
//! directory: `root.json`, `timestamp.json`, `snapshot.json`, `targets.json` and
//! `<role>.json` for delegated roles (role names percent-encoded). Files are written atomically
//! (temporary file, rename) so a crash leaves the old or the new version, never half; the roles
//! rollback protection rests on (root, timestamp, snapshot, top-level targets) with fsyncs, the
//! delegated roles (a cache, verified against snapshot at every load) without.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::{TrustError, TrustErrorKind};

#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

/// Percent-encode everything but unreserved characters, as python-tuf names local role files.
pub fn quote(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl StateDir {
    /// Use (and create, mode 0700) `dir`. What it holds decides what is trusted, so it must be
    /// a directory (not a symlink) owned by this user and not writable by group or others.
    pub fn open(dir: &Path) -> Result<StateDir, TrustError> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        let state_err = |msg: String| TrustError::new(TrustErrorKind::State, msg);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                state_err(format!(
                    "cannot create state directory {}: {e}",
                    dir.display()
                ))
            })?;
        let meta =
            fs::symlink_metadata(dir).map_err(|e| state_err(format!("{}: {e}", dir.display())))?;
        let euid = crate::sys::euid();
        if !meta.is_dir() {
            return Err(state_err(format!(
                "state directory {} is not a directory",
                dir.display()
            )));
        }
        if meta.uid() != euid || meta.mode() & 0o022 != 0 {
            return Err(state_err(format!(
                "state directory {} is owned by uid {} with mode {:o}; it must belong to uid {euid} \
                 and not be writable by group or others, because what it holds decides what is trusted",
                dir.display(),
                meta.uid(),
                meta.mode() & 0o7777
            )));
        }
        Ok(StateDir {
            dir: dir.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn file(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{}.json", quote(role)))
    }

    /// The stored bytes of `role`, if any (bounded by `limit`).
    pub fn load(&self, role: &str, limit: u64) -> Result<Option<Vec<u8>>, TrustError> {
        read_optional(&self.file(role), limit)
    }

    /// Store `bytes` as the trusted `role` metadata, atomically.
    pub fn store(&self, role: &str, bytes: &[u8]) -> Result<(), TrustError> {
        write_file(&self.dir, &self.file(role), bytes, true)
    }

    /// Store `bytes` as `role` metadata that is only a cache (a delegated role, verified against
    /// snapshot whenever it is loaded): atomically, but without waiting for the disk.
    pub fn store_cached(&self, role: &str, bytes: &[u8]) -> Result<(), TrustError> {
        write_file(&self.dir, &self.file(role), bytes, false)
    }

    /// Store `bytes` as the file `name` of the state directory: a cache trustfs derives from
    /// trusted metadata (atomically, without waiting for the disk).
    pub fn store_file(&self, name: &str, bytes: &[u8]) -> Result<(), TrustError> {
        write_file(&self.dir, &self.dir.join(name), bytes, false)
    }

    fn history_file(&self, version: u64) -> PathBuf {
        self.dir
            .join("root-history")
            .join(format!("{version}.root.json"))
    }

    /// Keep root `version` in the rotation history (`root-history/N.root.json`).
    pub fn store_history(&self, version: u64, bytes: &[u8]) -> Result<(), TrustError> {
        let dir = self.dir.join("root-history");
        std::fs::create_dir_all(&dir).map_err(|e| {
            TrustError::new(
                TrustErrorKind::State,
                format!("cannot create {}: {e}", dir.display()),
            )
        })?;
        write_file(&dir, &self.history_file(version), bytes, true)
    }

    /// Root `version` from the rotation history, if kept.
    pub fn load_history(&self, version: u64, limit: u64) -> Result<Option<Vec<u8>>, TrustError> {
        read_optional(&self.history_file(version), limit)
    }

    /// Forget the trusted `role` metadata (fast-forward recovery after a key rotation).
    pub fn remove(&self, role: &str) -> Result<(), TrustError> {
        match fs::remove_file(self.file(role)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(TrustError::new(
                TrustErrorKind::State,
                format!("{}: {e}", self.file(role).display()),
            )),
        }
    }
}

fn read_optional(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, TrustError> {
    use std::os::unix::fs::OpenOptionsExt;
    match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => super::fetch::read_limited(f, &path.display().to_string(), limit)
            .map(Some)
            .map_err(|e| TrustError::new(TrustErrorKind::State, e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TrustError::new(
            TrustErrorKind::State,
            format!("{}: {e}", path.display()),
        )),
    }
}

/// Write `bytes` to `path` atomically: a new temporary file in `dir` (never following or
/// reusing an existing name), fsync (if `durable`), rename, fsync of the directory (if
/// `durable`).
fn write_file(dir: &Path, path: &Path, bytes: &[u8], durable: bool) -> Result<(), TrustError> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let err = |e: std::io::Error| {
        TrustError::new(
            TrustErrorKind::State,
            format!("cannot write {}: {e}", path.display()),
        )
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(err)?;
    let written = f
        .write_all(bytes)
        .and_then(|()| if durable { f.sync_all() } else { Ok(()) });
    drop(f);
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(err(e));
    }
    if !durable {
        return Ok(());
    }
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err)
}

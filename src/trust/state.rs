//! Trusted metadata persisted between runs, so a restart never accepts older metadata.
//!
//! The layout is the one python-tuf's client and the conformance suite use for a metadata
//! directory: `root.json`, `timestamp.json`, `snapshot.json`, `targets.json` and
//! `<role>.json` for delegated roles (role names percent-encoded). Files are written atomically
//! (temporary file, fsync, rename) so a crash leaves the old or the new version, never half.

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
    /// Use (and create, mode 0700) `dir`.
    pub fn open(dir: &Path) -> Result<StateDir, TrustError> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                TrustError::new(
                    TrustErrorKind::State,
                    format!("cannot create state directory {}: {e}", dir.display()),
                )
            })?;
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
        let path = self.file(role);
        match fs::File::open(&path) {
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

    /// Store `bytes` as the trusted `role` metadata, atomically.
    pub fn store(&self, role: &str, bytes: &[u8]) -> Result<(), TrustError> {
        let path = self.file(role);
        let err = |e: std::io::Error| {
            TrustError::new(
                TrustErrorKind::State,
                format!("cannot write {}: {e}", path.display()),
            )
        };
        let tmp = self
            .dir
            .join(format!(".{}.tmp.{}", quote(role), std::process::id()));
        let mut f = fs::File::create(&tmp).map_err(err)?;
        f.write_all(bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
        drop(f);
        fs::rename(&tmp, &path).map_err(err)?;
        Ok(())
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

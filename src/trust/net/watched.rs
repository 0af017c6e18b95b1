//! A secrets file (auth file, netrc) read at start and again whenever it changes, so a rotated
//! token is used without a restart; a version that cannot be used is logged once and the last
//! good one kept.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::files::read_secret;

/// What identifies a version of a file: re-read when it changes.
type Stamp = (u64, u64, u64, i64, i64, i64, i64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ))
}

/// A private file read at start and again whenever it changes (a rotated token); a version that
/// cannot be read or parsed is logged once and the last good one kept.
pub(super) struct Watched<T> {
    pub(super) path: PathBuf,
    what: &'static str,
    parse: fn(&[u8]) -> Result<T, String>,
    state: Mutex<(Option<Stamp>, Arc<T>, bool)>,
}

impl<T> Watched<T> {
    pub(super) fn new(
        path: &Path,
        what: &'static str,
        parse: fn(&[u8]) -> Result<T, String>,
    ) -> Result<Watched<T>, String> {
        let st = stamp(path);
        let value = read_secret(path)
            .and_then(|b| parse(&b))
            .map_err(|e| format!("{what} {}: {e}", path.display()))?;
        Ok(Watched {
            path: path.to_owned(),
            what,
            parse,
            state: Mutex::new((st, Arc::new(value), false)),
        })
    }

    pub(super) fn get(&self) -> Arc<T> {
        let now = stamp(&self.path);
        {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if now.is_none() || now == state.0 {
                return state.1.clone();
            }
        }
        // Changed: read and parse without the lock (other requests keep the last good value).
        let fresh = read_secret(&self.path).and_then(|b| (self.parse)(&b));
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if now != state.0 {
            match fresh {
                Ok(v) => {
                    state.0 = now;
                    state.1 = Arc::new(v);
                    if state.2 {
                        crate::log_event!("{} {}: read again", self.what, self.path.display());
                    }
                    state.2 = false;
                }
                Err(e) => {
                    if !state.2 {
                        crate::log_event!(
                            "ERROR {} {} changed and cannot be used: {e}; keeping the credentials read before",
                            self.what,
                            self.path.display()
                        );
                    }
                    state.2 = true;
                }
            }
        }
        state.1.clone()
    }
}

//! The partial files' share of the cache bound, and their evictor.

use std::fs::File;
use std::sync::{Condvar, Mutex};

use crate::mount::lock;
use crate::mount::store::{flock, fstatat_nofollow, list_names, openat, unlinkat};

/// The partial files of the cache, bounded by `--cache-max-size` (their allocated bytes, counted
/// on their own: whole objects have the same bound apart). Least recently used (mtime: touched
/// at every open, moved by every write) are removed first; a file a daemon is reading holds
/// `flock(LOCK_SH)` on it and is not removed (the evictor needs `LOCK_EX | LOCK_NB`). Scans run
/// on a thread of their own, at most four a second, never on a FUSE worker or a fetch.
pub(super) struct PartialDir {
    pub(super) dir: File,
    pub(super) max_bytes: u64,
    pub(super) usage: Mutex<Usage>,
    pub(super) wake: Condvar,
}

#[derive(Default)]
pub(super) struct Usage {
    /// Allocated bytes at the last scan plus those written since.
    pub(super) total: u64,
    /// The total the last scan ended at when it could not get under the bound (everything left
    /// was open): the next waits for a close or an eighth of the bound more.
    pub(super) stuck: Option<u64>,
    /// A scan is asked for.
    pub(super) wanted: bool,
}

impl PartialDir {
    /// `bytes` were written.
    pub(super) fn wrote(&self, bytes: u64) {
        let mut u = lock(&self.usage);
        u.total = u.total.saturating_add(bytes);
        let grown = u
            .stuck
            .is_none_or(|stuck| u.total.saturating_sub(stuck) >= self.max_bytes / 8);
        if u.total > self.max_bytes && grown {
            u.wanted = true;
            self.wake.notify_one();
        }
    }

    /// A fetch ended (the lock its descriptor shared may be gone now): as a close.
    pub(super) fn fetched(&self) {
        self.closed();
    }

    /// A partial file was closed (its lock given back).
    pub(super) fn closed(&self) {
        let mut u = lock(&self.usage);
        u.stuck = None;
        if u.total > self.max_bytes {
            u.wanted = true;
            self.wake.notify_one();
        }
    }

    /// The evictor thread: a scan when asked, at most every 250 ms.
    pub(super) fn run(&self) {
        loop {
            let mut u = lock(&self.usage);
            while !u.wanted {
                u = self.wake.wait(u).unwrap_or_else(|e| e.into_inner());
            }
            u.wanted = false;
            drop(u);
            self.evict();
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }

    pub(super) fn evict(&self) {
        use std::os::unix::fs::MetadataExt;
        let before = lock(&self.usage).total;
        let Ok(names) = list_names(&self.dir) else {
            return;
        };
        let mut files: Vec<((i64, i64), u64, String)> = names
            .into_iter()
            .filter(|n| n.ends_with(".data"))
            .filter_map(|n| {
                let st = fstatat_nofollow(&self.dir, &n).ok()?;
                let size = u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512);
                Some(((st.st_mtime, st.st_mtime_nsec), size, n))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, size, name) in files {
            if total <= self.max_bytes {
                break;
            }
            let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
            let Ok(file) = openat(&self.dir, &name, flags, 0) else {
                continue;
            };
            // Read by some daemon (or not the file under that name any more): left alone.
            if flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_err() {
                continue;
            }
            let same = match (file.metadata(), fstatat_nofollow(&self.dir, &name)) {
                (Ok(m), Ok(st)) => m.ino() == st.st_ino && m.dev() == st.st_dev,
                _ => false,
            };
            if same && unlinkat(&self.dir, &name).is_ok() {
                if let Some(stem) = name.strip_suffix(".data") {
                    let _ = unlinkat(&self.dir, &format!("{stem}.tree"));
                }
                total = total.saturating_sub(size);
                crate::log_event!("cache: evicted the partial file {name} ({size} bytes)");
            }
        }
        let mut u = lock(&self.usage);
        // What was written while the scan ran still counts.
        u.total = total.saturating_add(u.total.saturating_sub(before));
        u.stuck = (u.total > self.max_bytes).then_some(u.total);
    }
}

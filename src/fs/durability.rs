//! Crash safety of the shared download cache without an `fsync` per object.
//!
//! A verified object gets its name at once (the open that downloaded it returns at once); a
//! background syncer makes everything durable in batches (`syncfs` at most every
//! [`SYNC_EVERY`]) and then records, in the cache directory's [`RECORD`], the current boot and the
//! moment just before that `syncfs` began: everything stored before it is on disk.
//!
//! What can go wrong without a per-object `fsync` is only a *system* crash (power loss, kernel
//! panic): a killed daemon loses nothing (the kernel still holds the written pages). After a
//! system crash an object written in the last second may have its name but not its bytes (zeros
//! of the right length on some filesystems). So the first daemon to open the cache after a reboot
//! (the record names another boot) removes every object whose mtime is not clearly older than the
//! last recorded sync ([`MARGIN`] before it, for clock steps) before it serves anything; they are
//! downloaded and verified again when opened. Objects used since the last sync count as recent
//! too (their mtime is touched for LRU): a few extra downloads after a crash, never a damaged
//! object served.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The record file in the cache directory: `<boot id> <unix seconds>\n`.
pub(super) const RECORD: &str = ".trustfs-synced";
/// Batches are synced at most this often.
pub(super) const SYNC_EVERY: Duration = Duration::from_secs(1);
/// After a reboot, objects touched later than this before the last recorded sync are removed.
pub(super) const MARGIN: Duration = Duration::from_secs(300);

/// The kernel's id of this boot.
pub(super) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// A parsed [`RECORD`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SyncRecord {
    pub(super) boot: String,
    /// Unix seconds: everything stored before this was synced.
    pub(super) synced_before: i64,
}

impl SyncRecord {
    pub(super) fn parse(text: &str) -> Option<SyncRecord> {
        let mut it = text.split_whitespace();
        let boot = it.next()?.to_owned();
        let synced_before = it.next()?.parse().ok()?;
        if it.next().is_some() || boot.is_empty() || boot.len() > 64 {
            return None;
        }
        Some(SyncRecord {
            boot,
            synced_before,
        })
    }

    pub(super) fn render(&self) -> String {
        format!("{} {}\n", self.boot, self.synced_before)
    }

    /// After a reboot, is an object last modified at `mtime` (Unix seconds) possibly not on disk?
    pub(super) fn suspect(&self, mtime: i64) -> bool {
        mtime >= self.synced_before - MARGIN.as_secs() as i64
    }
}

pub(super) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `syncfs(2)` of the filesystem holding `dir`.
pub(super) fn syncfs(dir: &File) -> io::Result<()> {
    // SAFETY: syncfs takes a live descriptor and no memory.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The background syncer of one cache: [`Syncer::dirty`] after each object stored; a thread
/// syncs and records. The thread ends when the syncer is dropped (it holds only a weak
/// reference), after a last sync.
pub(super) struct Syncer {
    dirty: AtomicBool,
    sync: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer")
            .field("dirty", &self.dirty)
            .finish_non_exhaustive()
    }
}

impl Syncer {
    /// A syncer calling `sync` (a `syncfs` and the record write) for each dirty batch.
    pub(super) fn start(sync: impl Fn() + Send + Sync + 'static) -> Arc<Syncer> {
        let s = Arc::new(Syncer {
            dirty: AtomicBool::new(false),
            sync: Box::new(sync),
        });
        let weak: Weak<Syncer> = Arc::downgrade(&s);
        let spawned = std::thread::Builder::new()
            .name("trustfs-cache-sync".into())
            .spawn(move || loop {
                std::thread::sleep(SYNC_EVERY);
                let Some(s) = weak.upgrade() else { return };
                s.flush();
            });
        if spawned.is_err() {
            crate::log_event!("cannot start the cache syncer thread; syncing every object");
            s.dirty.store(true, Ordering::Release);
        }
        s
    }

    /// An object was stored: sync it with the next batch.
    pub(super) fn dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Sync now if anything was stored since the last sync.
    pub(super) fn flush(&self) {
        if self.dirty.swap(false, Ordering::AcqRel) {
            (self.sync)();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_ones_are_ignored() {
        let r = SyncRecord {
            boot: "0f3c-aa".into(),
            synced_before: 1_700_000_000,
        };
        assert_eq!(SyncRecord::parse(&r.render()), Some(r.clone()));
        for bad in ["", "x", "x y", "x 1 2", &format!("{} 1", "b".repeat(65))] {
            assert_eq!(SyncRecord::parse(bad), None, "{bad:?}");
        }
        assert!(r.suspect(1_700_000_000));
        assert!(r.suspect(1_700_000_000 - 299));
        assert!(!r.suspect(1_700_000_000 - 301));
    }

    #[test]
    fn the_syncer_batches_and_flushes_when_dropped() {
        let n = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let n2 = n.clone();
        let s = Syncer::start(move || {
            n2.fetch_add(1, Ordering::SeqCst);
        });
        for _ in 0..100 {
            s.dirty();
        }
        s.flush();
        assert_eq!(n.load(Ordering::SeqCst), 1);
        s.flush();
        assert_eq!(n.load(Ordering::SeqCst), 1, "nothing new: no sync");
        s.dirty();
        drop(s);
        assert_eq!(n.load(Ordering::SeqCst), 2, "a last sync on drop");
    }
}

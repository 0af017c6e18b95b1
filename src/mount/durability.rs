//! Crash safety of the shared download cache without an `fsync` per object.
//!
//! A verified object gets its name at once (the open that downloaded it returns at once); a
//! background syncer makes everything durable in batches (`syncfs` at most every
//! [`SYNC_EVERY`]) and then records, in the cache directory's [`RECORD`], the current boot and the
//! moment just before that `syncfs` began: everything stored before it is on disk.
//!
//! What can go wrong without a per-object `fsync` is only a *system* crash (power loss, kernel
//! panic) or a write error of the disk: a killed daemon loses nothing (the kernel still holds the
//! written pages). After a system crash an object written in the last second may have its name
//! but not its bytes (zeros of the right length on some filesystems). So the first daemon to open
//! the cache after a reboot (the record names another boot) removes every object whose mtime is
//! not clearly older than the last recorded sync ([`MARGIN`] before it, for clock steps) before
//! it serves anything; they are downloaded and verified again when opened. Objects used since the
//! last sync count as recent too (their mtime is touched for LRU): a few extra downloads after a
//! crash, never a damaged object served. A record that is missing, unreadable or names an unknown
//! boot while objects exist vouches for nothing: every object not in use is removed.
//!
//! The syncer knows the objects of its batch: after the `syncfs` it `fsync`s each one (cheap,
//! they are clean by then) to learn of a write error per file; an object whose bytes did not
//! reach the disk is removed, and the record is only advanced when all of them did. The record
//! itself is written to a temporary file, flushed, and renamed.

use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The record file in the cache directory: `<boot id> <unix seconds>\n`.
pub(super) const RECORD: &str = ".trustfs-synced";
/// Batches are synced at most this often.
pub(super) const SYNC_EVERY: Duration = Duration::from_secs(1);
/// After a reboot, objects touched later than this before the last recorded sync are removed.
pub(super) const MARGIN: Duration = Duration::from_secs(300);

/// The kernel's id of this boot; `None` if it cannot be read (then every start is treated as a
/// start after a crash).
pub(super) fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && s.len() <= 64 && !s.contains(char::is_whitespace))
}

/// What the boot is recorded as when [`boot_id`] is unknown: never equal to a real boot id.
pub(super) const UNKNOWN_BOOT: &str = "unknown";

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
    crate::sys::syncfs(dir)
}

/// The background syncer of one cache: [`Syncer::dirty`] with each object stored; a thread
/// syncs the batch and records. The thread ends when the syncer is dropped (it holds only a weak
/// reference), after a last sync.
pub(super) struct Syncer {
    /// Names of the objects stored since the last sync.
    pending: Mutex<Vec<String>>,
    sync: Box<dyn Fn(Vec<String>) + Send + Sync>,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer").finish_non_exhaustive()
    }
}

impl Syncer {
    /// A syncer calling `sync` with the names of each batch of objects stored (it makes them
    /// durable and writes the record).
    pub(super) fn start(sync: impl Fn(Vec<String>) + Send + Sync + 'static) -> Arc<Syncer> {
        let s = Arc::new(Syncer {
            pending: Mutex::new(Vec::new()),
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
            crate::log_event!(
                "cannot start the cache syncer thread; objects are synced when the daemon stops (a system crash before that removes them at the next start)"
            );
        }
        s
    }

    /// The object `name` was stored: sync it with the next batch.
    pub(super) fn dirty(&self, name: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.to_owned());
    }

    /// Sync now if anything was stored since the last sync.
    pub(super) fn flush(&self) {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if !batch.is_empty() {
            (self.sync)(batch);
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
    use std::sync::atomic::Ordering;

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
        let s = Syncer::start(move |batch| {
            n2.fetch_add(batch.len() as u32 * 1000 + 1, Ordering::SeqCst);
        });
        for i in 0..100 {
            s.dirty(&format!("t-{i}"));
        }
        s.flush();
        assert_eq!(n.load(Ordering::SeqCst), 100_001, "one sync of 100 objects");
        s.flush();
        assert_eq!(n.load(Ordering::SeqCst), 100_001, "nothing new: no sync");
        s.dirty("t-x");
        drop(s);
        assert_eq!(n.load(Ordering::SeqCst), 101_002, "a last sync on drop");
    }
}

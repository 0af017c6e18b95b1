//! The store's bound: LRU eviction of unused objects (in memory for the private store, by mtime
//! over the shared directory for the cache), and dropping objects the metadata no longer lists.

use std::time::Instant;

use super::dir::{fstatat_nofollow, list_names};
use super::{flock, unlinkat, Inner, ObjectStore, StoreMode};

/// The most verified copies the private store keeps (unused ones beyond are evicted, LRU).
const MAX_PRIVATE_OBJECTS: usize = 100_000;
/// The shared cache's directory is rescanned (other daemons' objects) at most this often while
/// the running total stays under the bound.
const RESCAN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

impl ObjectStore {
    pub(super) fn evict(&self, inner: &mut Inner) {
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
}

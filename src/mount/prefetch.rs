//! Remote mount: bounded background download of a directory's small files.
//!
//! Reading a tree of small files through a remote mount costs one HTTP round trip per file, one
//! after the other, if every file waits for its own first open. So when the first open in a
//! directory misses the cache, the other small registered files of that directory are queued
//! here and fetched by a few workers, each reusing its own keep-alive connection, into the same
//! verified cache the opens use (`download::fetch_into_cache`: streamed, hashed while written,
//! renamed to its object name only when length and every hash match). Later opens then find
//! their object ready and are answered on the FUSE worker without any request.
//!
//! Rules:
//! - Nothing is served from here: a prefetch only ever adds verified objects to the cache, exactly
//!   as an open's download would; every open still checks the object against the metadata in
//!   force.
//! - The foreground never waits for the queue: a prefetch takes an object's gate only if nobody
//!   holds it (it never queues behind an open), and an open that finds a prefetch downloading its
//!   object waits for that one download only (as for another open's), then uses the object or,
//!   if the prefetch failed, downloads it itself.
//! - A prefetch failure is never an open's answer: it is logged and counted
//!   (`trustfs_prefetch_failures_total`), never a denial or a fault of any open, and not remembered
//!   (the gate's failure memory is for opens only). A later open downloads and judges the file
//!   itself: a denial stays "this open got content other than what was signed".
//! - Bounded: files of at most [`PrefetchOptions::max_file`] bytes, at most
//!   [`PrefetchOptions::max_files`] queued and [`PrefetchOptions::max_bytes`] queued bytes (and no
//!   more than a quarter of the cache bound), each directory once per metadata generation (the
//!   set of directories done is bounded too). What does not fit is dropped and counted
//!   (`trustfs_prefetch_dropped_total`). A fault (mirrors unreachable, the cache not writable)
//!   empties the queue: the next first open in a directory starts again.
//! - The cache's own size bound applies to prefetched objects as to any other (they are not held
//!   open, so they are the first candidates for eviction only by age).

use std::collections::{HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

use super::lock;
use crate::index::TargetInfo;
use crate::log_event;
use crate::telemetry::Counters;

/// How much a remote mount prefetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefetchOptions {
    /// Parallel downloads (workers, each with its own keep-alive connection); 0 turns prefetch
    /// off.
    pub threads: usize,
    /// Only files of at most this many bytes are prefetched.
    pub max_file: u64,
    /// Files queued at most (over every directory).
    pub max_files: usize,
    /// Bytes queued at most (over every directory).
    pub max_bytes: u64,
}

/// Default parallel prefetch downloads.
pub const DEFAULT_PREFETCH_THREADS: usize = 4;

impl Default for PrefetchOptions {
    fn default() -> Self {
        PrefetchOptions {
            threads: DEFAULT_PREFETCH_THREADS,
            max_file: 256 << 10,
            max_files: 8192,
            max_bytes: 64 << 20,
        }
    }
}

impl PrefetchOptions {
    /// No prefetch at all.
    pub fn off() -> Self {
        PrefetchOptions {
            threads: 0,
            ..Default::default()
        }
    }
}

/// Directories remembered as prefetched at most (then the set starts again).
const MAX_DIRS_DONE: usize = 100_000;

/// One file to prefetch: its target path and the signed info it must match.
#[derive(Clone, Debug)]
pub(super) struct Item {
    pub path: String,
    pub info: TargetInfo,
}

/// What became of one prefetch.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Downloaded and verified into the cache.
    Fetched,
    /// Nothing to do: already cached, being downloaded by an open, or no longer listed as is by
    /// the metadata in force.
    Skipped,
    /// The mirrors delivered content other than what was signed (logged; an open judges again).
    Refused(String),
    /// Could not be fetched (mirrors unreachable, cache not writable): stop prefetching for now.
    Fault(String),
}

type Work = Arc<dyn Fn(&Item) -> Option<Outcome> + Send + Sync>;

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    bytes: u64,
    /// (metadata generation, directory) already queued once.
    dirs_done: HashSet<(u64, OsString)>,
    /// Workers busy with an item.
    running: usize,
    /// Totals of the current burst (from an empty, idle queue back to one), for its log line.
    burst: Burst,
}

#[derive(Default)]
struct Burst {
    started: Option<Instant>,
    fetched: u64,
    bytes: u64,
    failed: u64,
    dropped: u64,
}

/// The queue and its workers (started at the first request).
pub(super) struct Prefetcher {
    options: PrefetchOptions,
    queue: Mutex<Queue>,
    wake: Condvar,
    work: OnceLock<Work>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Prefetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetcher")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Prefetcher {
    /// `cache_max`: the cache's size bound; at most a quarter of it is queued at once.
    pub(super) fn new(
        mut options: PrefetchOptions,
        cache_max: u64,
        counters: Arc<Counters>,
    ) -> Arc<Prefetcher> {
        options.max_bytes = options.max_bytes.min(cache_max / 4);
        Arc::new(Prefetcher {
            options,
            queue: Mutex::default(),
            wake: Condvar::new(),
            work: OnceLock::new(),
            counters,
        })
    }

    /// The prefetcher of a mount: off for a local one.
    pub(super) fn for_mount(
        options: &super::MountOptions,
        counters: Arc<Counters>,
    ) -> Arc<Prefetcher> {
        match &options.source {
            super::ContentSource::Remote(r) => Self::new(r.prefetch, r.cache_max, counters),
            super::ContentSource::Backing(_) => Self::new(PrefetchOptions::off(), 0, counters),
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.options.threads > 0 && self.options.max_files > 0 && self.options.max_bytes > 0
    }

    /// Whether `dir` (in metadata generation `generation`) is seen for the first time; marks it.
    pub(super) fn first_visit(&self, generation: u64, dir: &OsStr) -> bool {
        if !self.enabled() {
            return false;
        }
        let mut q = lock(&self.queue);
        if q.dirs_done.len() >= MAX_DIRS_DONE {
            q.dirs_done.clear();
        }
        q.dirs_done.insert((generation, dir.to_owned()))
    }

    /// Queue `items` (in the order given) within the bounds; `work` fetches one item (None: the
    /// mount is gone). Workers start at the first call.
    pub(super) fn request(
        self: &Arc<Self>,
        items: impl IntoIterator<Item = Item>,
        work: impl Fn(&Item) -> Option<Outcome> + Send + Sync + 'static,
    ) {
        if !self.enabled() {
            return;
        }
        if self.work.set(Arc::new(work)).is_ok() {
            for i in 0..self.options.threads {
                // Workers hold the prefetcher weakly: they end with the mount.
                let me = Arc::downgrade(self);
                let spawned = std::thread::Builder::new()
                    .name(format!("trustfs-prefetch-{i}"))
                    .spawn(move || worker(&me));
                if let Err(e) = spawned {
                    log_event!("prefetch: cannot start a worker thread: {e}");
                }
            }
        }
        let mut q = lock(&self.queue);
        let mut added = 0usize;
        let mut dropped = 0u64;
        for item in items {
            if item.info.length > self.options.max_file {
                continue;
            }
            if q.items.len() >= self.options.max_files
                || q.bytes.saturating_add(item.info.length) > self.options.max_bytes
            {
                dropped += 1;
                continue;
            }
            q.bytes += item.info.length;
            q.items.push_back(item);
            added += 1;
        }
        if dropped > 0 {
            self.counters
                .prefetch_dropped
                .fetch_add(dropped, Ordering::Relaxed);
            q.burst.dropped += dropped;
        }
        if added > 0 {
            q.burst.started.get_or_insert_with(Instant::now);
            drop(q);
            self.wake.notify_all();
        }
    }

    /// Files queued and not started yet.
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        lock(&self.queue).items.len()
    }

    /// Drop everything queued (a fault: the mirrors or the cache cannot take more now).
    fn clear(&self, q: &mut Queue) {
        let n = q.items.len() as u64;
        q.items.clear();
        q.bytes = 0;
        if n > 0 {
            self.counters
                .prefetch_dropped
                .fetch_add(n, Ordering::Relaxed);
            q.burst.dropped += n;
        }
    }
}

fn worker(me: &std::sync::Weak<Prefetcher>) {
    loop {
        let Some(p) = me.upgrade() else { return };
        let item = {
            let mut q = lock(&p.queue);
            loop {
                if let Some(item) = q.items.pop_front() {
                    q.bytes = q.bytes.saturating_sub(item.info.length);
                    q.running += 1;
                    break Some(item);
                }
                // Wait with a timeout, so a worker notices the mount is gone.
                let (guard, timeout) = p
                    .wake
                    .wait_timeout(q, std::time::Duration::from_secs(1))
                    .unwrap_or_else(|e| e.into_inner());
                q = guard;
                if timeout.timed_out() && q.items.is_empty() {
                    break None;
                }
            }
        };
        let Some(item) = item else {
            // Idle: let go of the prefetcher for a moment (the mount may be ending).
            drop(p);
            continue;
        };
        let Some(work) = p.work.get().cloned() else {
            return;
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&item)))
            .unwrap_or_else(|_| Some(Outcome::Fault("internal error (panic)".into())));
        let mut q = lock(&p.queue);
        q.running -= 1;
        match outcome {
            None => return,
            Some(Outcome::Fetched) => {
                p.counters.prefetch_fetches.fetch_add(1, Ordering::Relaxed);
                p.counters
                    .prefetch_bytes
                    .fetch_add(item.info.length, Ordering::Relaxed);
                q.burst.fetched += 1;
                q.burst.bytes += item.info.length;
            }
            Some(Outcome::Skipped) => {}
            Some(Outcome::Refused(why)) => {
                p.counters.prefetch_failures.fetch_add(1, Ordering::Relaxed);
                q.burst.failed += 1;
                log_event!(
                    "prefetch {:?}: {why}; not cached, not served (an open downloads and judges it again)",
                    item.path
                );
            }
            Some(Outcome::Fault(why)) => {
                p.counters.prefetch_failures.fetch_add(1, Ordering::Relaxed);
                q.burst.failed += 1;
                let left = q.items.len();
                p.clear(&mut q);
                log_event!(
                    "prefetch {:?}: {why}; stopped prefetching ({left} queued file(s) dropped; opens fetch them as usual)",
                    item.path
                );
            }
        }
        if q.items.is_empty() && q.running == 0 {
            let b = std::mem::take(&mut q.burst);
            if b.fetched + b.failed > 0 {
                let secs = b.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
                log_event!(
                    "prefetched {} file(s), {} bytes, verified, in {secs:.2} s ({} failed, {} dropped over the bounds)",
                    b.fetched,
                    b.bytes,
                    b.failed,
                    b.dropped
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Hashes;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn item(i: usize, length: u64) -> Item {
        Item {
            path: format!("d/f{i}"),
            info: TargetInfo {
                length,
                hashes: Hashes::from([("sha256".to_owned(), vec![i as u8; 32])]),
                custom: None,
                chunk_root: None,
            },
        }
    }

    fn wait_until(mut f: impl FnMut() -> bool) {
        for _ in 0..500 {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("condition not reached");
    }

    #[test]
    fn bounds_in_files_bytes_and_size_are_kept_and_drops_counted() {
        let counters = Arc::new(Counters::default());
        let opts = PrefetchOptions {
            threads: 1,
            max_file: 100,
            max_files: 3,
            max_bytes: 1000,
        };
        let p = Prefetcher::new(opts, u64::MAX, counters.clone());
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let g = gate.clone();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        // One file over the size bound (never queued), then five small ones, queued at once:
        // three fit, two are dropped.
        let items = std::iter::once(item(0, 101)).chain((1..6).map(|i| item(i, 10)));
        p.request(items, move |_| {
            let _g = g.lock().unwrap();
            r.fetch_add(1, Ordering::Relaxed);
            Some(Outcome::Fetched)
        });
        assert_eq!(counters.prefetch_dropped.load(Ordering::Relaxed), 2);
        drop(held);
        wait_until(|| ran.load(Ordering::Relaxed) == 3);
        wait_until(|| counters.prefetch_fetches.load(Ordering::Relaxed) == 3);
        assert_eq!(counters.prefetch_bytes.load(Ordering::Relaxed), 30);
        // The cache bound caps the queued bytes too.
        let q = Prefetcher::new(opts, 40, counters.clone());
        assert_eq!(q.options.max_bytes, 10);
    }

    #[test]
    fn a_fault_empties_the_queue_and_a_refusal_does_not() {
        let counters = Arc::new(Counters::default());
        let opts = PrefetchOptions {
            threads: 1,
            ..Default::default()
        };
        let p = Prefetcher::new(opts, u64::MAX, counters.clone());
        p.request((0..10).map(|i| item(i, 1)), |it| {
            Some(match it.path.as_str() {
                "d/f0" => Outcome::Refused("sha256 mismatch".into()),
                "d/f1" => Outcome::Fetched,
                _ => Outcome::Fault("connection refused".into()),
            })
        });
        wait_until(|| p.queued() == 0 && lock(&p.queue).running == 0);
        assert_eq!(counters.prefetch_fetches.load(Ordering::Relaxed), 1);
        assert_eq!(counters.prefetch_failures.load(Ordering::Relaxed), 2);
        assert_eq!(counters.prefetch_dropped.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn each_directory_once_per_generation_and_off_means_off() {
        let p = Prefetcher::new(PrefetchOptions::default(), u64::MAX, Arc::default());
        assert!(p.first_visit(1, OsStr::new("a")));
        assert!(!p.first_visit(1, OsStr::new("a")));
        assert!(p.first_visit(2, OsStr::new("a")));
        let off = Prefetcher::new(PrefetchOptions::off(), u64::MAX, Arc::default());
        assert!(!off.first_visit(1, OsStr::new("a")));
        off.request([item(1, 1)], |_| panic!("prefetch is off"));
    }
}

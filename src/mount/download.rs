//! Fetching one target into the verified cache: mirrors in order, progress lines, and what a
//! failure means for the open that asked.
//!
//! Semantics (also in `docs/remote.md` and `trustfs mount --help`):
//! - Bases are tried in order: `--targets-url`, then each `--mirror`. A mirror that cannot deliver
//!   (connection refused or reset, a missed deadline, HTTP 5xx or any status but 200, 404, a
//!   redirect off its origin, a body that ends before the signed length) or whose bytes fail
//!   verification (announced or actual length longer or different, a listed hash differs) is
//!   skipped and the next one is tried; a failed attempt leaves nothing in the cache, so one bad
//!   mirror cannot poison the others. Nothing is remembered between opens: every first open of
//!   an uncached file starts again with the first base.
//! - If some mirror delivers the verified file, the open succeeds.
//! - If at least one mirror delivered content and every delivery failed verification, the open
//!   is denied: `EACCES` and a `DENY` log line.
//! - If no mirror delivered the whole file (all unreachable, too slow, missing it, or cut off),
//!   the open fails on a fault: `EIO` and an `ERROR` line; if the cache itself cannot be written
//!   (e.g. `ENOSPC`), `ENOSPC` or `EIO`. Never `EACCES`: nothing was judged.
//! - A download slower than [`PROGRESS_AFTER`] logs a progress line every [`PROGRESS_EVERY`]; every
//!   download logs one final line with its size and rate.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::store::{ObjectStore, StoreError};
use crate::index::TargetInfo;
use crate::log_event;
use crate::source::remote::{MirrorError, Mirrors};

/// A download running longer than this starts logging progress.
pub const PROGRESS_AFTER: Duration = Duration::from_secs(2);
/// Interval between progress lines.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(3);

/// Why a target could not be fetched into the cache.
#[derive(Debug)]
pub enum FetchFailure {
    /// No mirror delivered the whole file (a fault: `EIO`).
    Unavailable(String),
    /// Content was delivered but failed verification on every mirror that delivered (a denial:
    /// `EACCES`).
    Refused(String),
    /// The cache itself could not be written, e.g. `ENOSPC` (a fault: `ENOSPC`/`EIO`).
    Cache(std::io::Error),
    /// This process is out of file descriptors (a fault: `EMFILE`).
    Descriptors(String),
}

/// Fetch `path` into `store` as object `name`, verified against `info`, trying every mirror.
/// On success the object is acquired (the caller releases it). `quiet`: no line for a successful
/// download (background prefetches log one line per burst instead).
pub fn fetch_into_cache(
    mirrors: &Mirrors,
    store: &ObjectStore,
    path: &str,
    info: &TargetInfo,
    name: &str,
    quiet: bool,
) -> Result<(), FetchFailure> {
    let mut refused = false;
    let mut reasons = String::new();
    for i in 0..mirrors.len() {
        let last = i + 1 == mirrors.len();
        let next = if last { "" } else { "; trying the next mirror" };
        let body = match mirrors.open(i, path, info) {
            Ok(b) => b,
            Err(MirrorError::Descriptors(why)) => {
                log_event!("fetch {path:?}: out of file descriptors: {why}");
                return Err(FetchFailure::Descriptors(why));
            }
            Err(e) => {
                if matches!(e, MirrorError::WrongLength { .. }) {
                    refused = true;
                }
                log_event!("fetch {path:?}: {e}{next}");
                let _ = write!(reasons, "{}{e}", sep(&reasons));
                continue;
            }
        };
        let url = body.url;
        let mut reader = body.reader;
        let mut progress = Progress::new(path, info.length);
        match store.fetch_and_store(&mut reader, info, name, &mut |done| progress.update(done)) {
            Ok(()) => {
                if !quiet {
                    progress.done(&url);
                }
                return Ok(());
            }
            Err(StoreError::Mismatch(m)) => {
                refused = true;
                log_event!("fetch {path:?}: {url}: content refused: {m}{next}");
                let _ = write!(reasons, "{}{url}: {m}", sep(&reasons));
            }
            Err(StoreError::Io(e)) => {
                // The cache itself failed (ENOSPC, EIO): another mirror would not help.
                log_event!(
                    "fetch {path:?}: cannot write the cache {}: {e}",
                    store.dir().display()
                );
                return Err(FetchFailure::Cache(e));
            }
            Err(e) => {
                log_event!("fetch {path:?}: {url}: {e}{next}");
                let _ = write!(reasons, "{}{url}: {e}", sep(&reasons));
            }
        }
    }
    if refused {
        Err(FetchFailure::Refused(format!(
            "no mirror delivered content matching the signed metadata ({reasons})"
        )))
    } else {
        Err(FetchFailure::Unavailable(format!(
            "no mirror could deliver it ({reasons})"
        )))
    }
}

fn sep(s: &str) -> &'static str {
    if s.is_empty() {
        ""
    } else {
        "; "
    }
}

/// Progress lines for one download.
struct Progress<'a> {
    path: &'a str,
    total: u64,
    start: Instant,
    next_log: Instant,
    done: u64,
}

impl<'a> Progress<'a> {
    fn new(path: &'a str, total: u64) -> Progress<'a> {
        let start = Instant::now();
        Progress {
            path,
            total,
            start,
            next_log: start + PROGRESS_AFTER,
            done: 0,
        }
    }

    fn update(&mut self, done: u64) {
        self.done = done;
        let now = Instant::now();
        if now < self.next_log {
            return;
        }
        self.next_log = now + PROGRESS_EVERY;
        let pct = if self.total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / self.total as f64
        };
        log_event!(
            "fetching {:?}: {} of {} bytes ({pct:.0}%), {}",
            self.path,
            done,
            self.total,
            rate(done, self.start.elapsed())
        );
    }

    fn done(&self, url: &str) {
        let elapsed = self.start.elapsed();
        log_event!(
            "fetched {:?} from {url}: {} bytes in {:.2} s ({}), verified",
            self.path,
            self.total,
            elapsed.as_secs_f64(),
            rate(self.total, elapsed)
        );
    }
}

/// `12.3 MB/s`.
fn rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-6);
    format!("{:.1} MB/s", bytes as f64 / secs / 1e6)
}

//! Operating a mount for months: what it reports about itself.
//!
//! - [`status`]: the status record a running mount publishes in the runtime directory, which
//!   `trustfs status` reads (the little green check mark).
//! - [`audit`]: one JSON object a line for every denial and every metadata change.
//! - [`metrics`]: Prometheus text format on `/metrics`.
//! - [`Counters`]: the event counts all three report, updated by the filesystem.

pub mod audit;
pub mod metrics;
pub mod status;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Why an open was denied, as a small closed set of labels (for metrics and audit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// Not listed in the signed targets metadata.
    Unregistered,
    /// Length or a hash differs from the signed metadata.
    Altered,
    /// Not a regular file (symlink, FIFO, socket, device) or outside the backing directory.
    NotRegular,
    /// Changed while it was being verified.
    Changed,
    /// The trusted metadata has expired: opens fail closed.
    Expired,
    /// Anything else that refused an open (I/O while verifying, ...).
    Other,
}

impl DenyReason {
    pub const ALL: [DenyReason; 6] = [
        DenyReason::Unregistered,
        DenyReason::Altered,
        DenyReason::NotRegular,
        DenyReason::Changed,
        DenyReason::Expired,
        DenyReason::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DenyReason::Unregistered => "unregistered",
            DenyReason::Altered => "altered",
            DenyReason::NotRegular => "not_regular",
            DenyReason::Changed => "changed",
            DenyReason::Expired => "expired",
            DenyReason::Other => "other",
        }
    }
}

/// Event counts of one mount. Cheap to update from any FUSE thread.
#[derive(Debug, Default)]
pub struct Counters {
    pub opens: AtomicU64,
    pub served: AtomicU64,
    pub denied: [AtomicU64; 6],
    /// Bytes read through the daemon (userspace reads; passthrough reads bypass the daemon).
    pub bytes_read: AtomicU64,
    /// Bytes of verified files opened (counts passthrough opens too).
    pub bytes_opened: AtomicU64,
    pub verifications: AtomicU64,
    pub verify_micros: AtomicU64,
    /// Verification time histogram: counts per bucket of [`VERIFY_BUCKETS`] (cumulative on render).
    pub verify_buckets: [AtomicU64; 8],
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub cache_bytes: AtomicU64,
    /// Remote mount: targets downloaded and verified into the cache.
    pub fetches: AtomicU64,
    /// Remote mount: opens failed with EIO because no mirror could deliver.
    pub fetch_failures: AtomicU64,
    /// Live updates: refreshes that found new metadata and switched it in.
    pub metadata_switches: AtomicU64,
    /// Live updates: refreshes that failed (the last good metadata stayed in force).
    pub refresh_failures: AtomicU64,
    /// The most recent denial, for `trustfs status`.
    pub last_denial: Mutex<Option<String>>,
}

/// Upper bounds (seconds) of the verification time histogram buckets.
pub const VERIFY_BUCKETS: [f64; 8] = [0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

impl Counters {
    pub fn deny(&self, reason: DenyReason, summary: String) {
        self.denied[reason as usize].fetch_add(1, Ordering::Relaxed);
        *self.last_denial.lock().unwrap_or_else(|e| e.into_inner()) = Some(summary);
    }

    /// One verification pass (a hash pass over backing content, or a download), successful or
    /// not, that took `secs`.
    pub fn verified(&self, secs: f64) {
        self.verifications.fetch_add(1, Ordering::Relaxed);
        self.verify_micros
            .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
        let i = VERIFY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(VERIFY_BUCKETS.len() - 1);
        self.verify_buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CountersSnapshot {
            opens: get(&self.opens),
            served: get(&self.served),
            denied: DenyReason::ALL
                .iter()
                .map(|r| (r.label().to_owned(), get(&self.denied[*r as usize])))
                .collect(),
            bytes_read: get(&self.bytes_read),
            bytes_opened: get(&self.bytes_opened),
            verifications: get(&self.verifications),
            verify_seconds: get(&self.verify_micros) as f64 / 1e6,
            verify_buckets: self.verify_buckets.iter().map(get).collect(),
            cache_hits: get(&self.cache_hits),
            cache_misses: get(&self.cache_misses),
            cache_bytes: get(&self.cache_bytes),
            fetches: get(&self.fetches),
            fetch_failures: get(&self.fetch_failures),
            metadata_switches: get(&self.metadata_switches),
            refresh_failures: get(&self.refresh_failures),
            last_denial: self
                .last_denial
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

/// A point-in-time copy of [`Counters`], as published in the status record.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CountersSnapshot {
    pub opens: u64,
    pub served: u64,
    pub denied: BTreeMap<String, u64>,
    pub bytes_read: u64,
    pub bytes_opened: u64,
    pub verifications: u64,
    pub verify_seconds: f64,
    pub verify_buckets: Vec<u64>,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_bytes: u64,
    #[serde(default)]
    pub fetches: u64,
    #[serde(default)]
    pub fetch_failures: u64,
    #[serde(default)]
    pub metadata_switches: u64,
    #[serde(default)]
    pub refresh_failures: u64,
    pub last_denial: Option<String>,
}

impl CountersSnapshot {
    pub fn denied_total(&self) -> u64 {
        self.denied.values().sum()
    }
}

impl Counters {
    /// Refused opens so far, every reason.
    pub fn denied_total(&self) -> u64 {
        self.denied.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }
}

//! Operating a mount for months: what it reports about itself.
//!
//! - [`status`]: the status record a running mount publishes in the runtime directory, which
//!   `trustfs status` reads (the little green check mark).
//! - [`mountinfo`]: which trustfs mounts the kernel lists (`/proc/self/mountinfo`).
//! - [`audit`]: one JSON object a line for every denial and every metadata change.
//! - [`http`]: the small HTTP server on `--metrics-addr`: [`metrics`] (Prometheus text format on
//!   `/metrics`) and [`page`] (the status page on `/`, `/status.json`, `/badge.svg`).
//! - [`Counters`]: the event counts all three report, updated by the filesystem.

pub mod audit;
pub mod http;
pub mod metrics;
pub mod mountinfo;
pub mod page;
pub mod status;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Why an open was denied, as a small closed set of labels (for metrics and audit). A denial
/// means the content is not what the signed, current metadata says; the daemon judged it. When
/// the daemon could not judge (disk, I/O, descriptors, network), that is a [`FaultKind`].
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
}

impl DenyReason {
    pub const ALL: [DenyReason; 5] = [
        DenyReason::Unregistered,
        DenyReason::Altered,
        DenyReason::NotRegular,
        DenyReason::Changed,
        DenyReason::Expired,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DenyReason::Unregistered => "unregistered",
            DenyReason::Altered => "altered",
            DenyReason::NotRegular => "not_regular",
            DenyReason::Changed => "changed",
            DenyReason::Expired => "expired",
        }
    }
}

/// Why the daemon could not judge an open (or serve a read): an operational fault, answered with
/// `EIO` (or `ENOSPC`, `EMFILE`), an `ERROR` line, a fault metric and an audit `fault` record —
/// never with `EACCES`, so an operator can tell a full disk from an attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// An I/O error reading the backing file or the store (`EIO`).
    Io,
    /// The state dir or cache is full (`ENOSPC`).
    NoSpace,
    /// The daemon ran out of file descriptors (`EMFILE`).
    Descriptors,
    /// No mirror could deliver (connection, timeout, HTTP error, short body) (`EIO`).
    Network,
    /// Another open's download or verification of the same file did not finish in time (`EIO`).
    Busy,
    /// A bound on the daemon's memory was reached (directory listings held open) (`ENOMEM`).
    Memory,
    /// A bug caught at a boundary (a panic) (`EIO`).
    Internal,
}

impl FaultKind {
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Io,
        FaultKind::NoSpace,
        FaultKind::Descriptors,
        FaultKind::Network,
        FaultKind::Busy,
        FaultKind::Memory,
        FaultKind::Internal,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FaultKind::Io => "io",
            FaultKind::NoSpace => "no_space",
            FaultKind::Descriptors => "descriptors",
            FaultKind::Network => "network",
            FaultKind::Busy => "busy",
            FaultKind::Memory => "memory",
            FaultKind::Internal => "internal",
        }
    }
}

/// Event counts of one mount. Cheap to update from any FUSE thread.
#[derive(Debug, Default)]
pub struct Counters {
    pub opens: AtomicU64,
    pub served: AtomicU64,
    pub denied: [AtomicU64; DenyReason::ALL.len()],
    /// Opens (and reads) that failed on a fault, by [`FaultKind`].
    pub faults: [AtomicU64; FaultKind::ALL.len()],
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
    /// Remote mount: opens failed with EIO because no mirror could deliver (the `network`
    /// faults; kept as its own counter for the `fetch_failures` field and metric).
    pub fetch_failures: AtomicU64,
    /// Remote mount: small files of a directory downloaded and verified in the background
    /// (`mount::prefetch`), and their bytes.
    pub prefetch_fetches: AtomicU64,
    pub prefetch_bytes: AtomicU64,
    /// Remote mount: background downloads that failed (never an open's answer).
    pub prefetch_failures: AtomicU64,
    /// Remote mount: files not prefetched because the queue was over its bounds or emptied
    /// after a fault.
    pub prefetch_dropped: AtomicU64,
    /// Live updates: refreshes that found new metadata and switched it in.
    pub metadata_switches: AtomicU64,
    /// Live updates: refreshes that failed (the last good metadata stayed in force).
    pub refresh_failures: AtomicU64,
    /// Live updates: refreshes that found the repository exactly as trusted (no next root, the
    /// same timestamp) and stopped there.
    pub refresh_unchanged: AtomicU64,
    /// The most recent denial, for `trustfs status`.
    pub last_denial: Mutex<Option<String>>,
    /// The last [`RECENT_DENIALS`] denials, newest first, for the status page.
    pub recent_denials: Mutex<VecDeque<DenialRecord>>,
    /// The most recent fault, for `trustfs status`.
    pub last_fault: Mutex<Option<String>>,
}

/// Upper bounds (seconds) of the verification time histogram buckets.
pub const VERIFY_BUCKETS: [f64; 8] = [0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

/// How many denials the status record keeps (newest first).
pub const RECENT_DENIALS: usize = 10;

/// One denied open, as the status record and the status page show it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenialRecord {
    /// UTC, RFC 3339.
    pub time: String,
    /// The path in the mount as the kernel asked for it, escaped for display ([`shown_path`]).
    pub path: String,
    /// A [`DenyReason::label`].
    pub reason: String,
    pub detail: String,
    pub pid: u32,
    pub uid: u32,
}

impl DenialRecord {
    /// One line: time, path, detail, caller (the `last_denial` of the status record).
    pub fn summary(&self) -> String {
        format!(
            "{} \"{}\": {} (pid {}, uid {})",
            self.time, self.path, self.detail, self.pid, self.uid
        )
    }
}

/// A path escaped for display as Rust escapes a string literal, without the quotes: control
/// characters, `"` and `\` escaped, bytes that are not UTF-8 as `\xNN` — so no name can forge a
/// line and two different names never look the same.
pub fn shown_path(path: &std::ffi::OsStr) -> String {
    let quoted = format!("{path:?}");
    quoted
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .map_or(quoted.clone(), str::to_owned)
}

impl Counters {
    pub fn deny(&self, reason: DenyReason, record: DenialRecord) {
        self.denied[reason as usize].fetch_add(1, Ordering::Relaxed);
        *self.last_denial.lock().unwrap_or_else(|e| e.into_inner()) = Some(record.summary());
        let mut recent = self
            .recent_denials
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        recent.truncate(RECENT_DENIALS - 1);
        recent.push_front(record);
    }

    pub fn fault(&self, kind: FaultKind, summary: String) {
        self.faults[kind as usize].fetch_add(1, Ordering::Relaxed);
        if kind == FaultKind::Network {
            self.fetch_failures.fetch_add(1, Ordering::Relaxed);
        }
        *self.last_fault.lock().unwrap_or_else(|e| e.into_inner()) = Some(summary);
    }

    /// Faults so far, every kind.
    pub fn faults_total(&self) -> u64 {
        self.faults.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }

    /// One verification pass (a hash pass over backing content, or a download), successful or
    /// not, that took `secs`.
    pub fn verification_pass(&self, secs: f64) {
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
            faults: FaultKind::ALL
                .iter()
                .map(|k| (k.label().to_owned(), get(&self.faults[*k as usize])))
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
            prefetch_fetches: get(&self.prefetch_fetches),
            prefetch_bytes: get(&self.prefetch_bytes),
            prefetch_failures: get(&self.prefetch_failures),
            prefetch_dropped: get(&self.prefetch_dropped),
            metadata_switches: get(&self.metadata_switches),
            refresh_failures: get(&self.refresh_failures),
            refresh_unchanged: get(&self.refresh_unchanged),
            last_denial: self
                .last_denial
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            last_fault: self
                .last_fault
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            recent_denials: self
                .recent_denials
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect(),
        }
    }
}

/// Entries in a mount's in-memory tables, for tests, metrics and the soak benchmark: each is
/// bounded by what the kernel and the readers hold right now, not by history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSizes {
    /// Inodes the kernel holds (the root included).
    pub inodes: usize,
    /// Verification records (backing file versions and verified objects).
    pub records: usize,
    /// Objects being verified or downloaded, or waited for.
    pub gates: usize,
    /// Open file handles.
    pub handles: usize,
    /// Open directory handles.
    pub dir_handles: usize,
    /// Distinct directory listings the directory handles share.
    pub listings: usize,
    /// Entries in those listings.
    pub listing_entries: usize,
    /// Descriptors open for userspace reads, and the most the pool keeps.
    pub read_fds: usize,
    pub read_fd_capacity: usize,
    /// Objects the store accounts for.
    pub objects: usize,
}

/// A point-in-time copy of [`Counters`], as published in the status record.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CountersSnapshot {
    pub opens: u64,
    pub served: u64,
    pub denied: BTreeMap<String, u64>,
    /// Faults by kind (absent in records of older daemons).
    #[serde(default)]
    pub faults: BTreeMap<String, u64>,
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
    pub prefetch_fetches: u64,
    #[serde(default)]
    pub prefetch_bytes: u64,
    #[serde(default)]
    pub prefetch_failures: u64,
    #[serde(default)]
    pub prefetch_dropped: u64,
    #[serde(default)]
    pub metadata_switches: u64,
    #[serde(default)]
    pub refresh_failures: u64,
    #[serde(default)]
    pub refresh_unchanged: u64,
    pub last_denial: Option<String>,
    #[serde(default)]
    pub last_fault: Option<String>,
    /// The last [`RECENT_DENIALS`] denials, newest first (absent in records of older daemons).
    #[serde(default)]
    pub recent_denials: Vec<DenialRecord>,
}

impl CountersSnapshot {
    pub fn denied_total(&self) -> u64 {
        self.denied.values().sum()
    }

    pub fn faults_total(&self) -> u64 {
        self.faults.values().sum()
    }
}

impl Counters {
    /// Refused opens so far, every reason.
    pub fn denied_total(&self) -> u64 {
        self.denied.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }
}

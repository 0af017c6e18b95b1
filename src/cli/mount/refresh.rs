//! The live-update thread (`--refresh-interval`): the client workflow again and again, switching
//! in what it trusts.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::system::release_free_memory;
use crate::log_event;
use crate::mount::LiveMount;
use crate::telemetry::audit::AuditLog;
use crate::trust::{self, TrustErrorKind, TrustOptions};

/// The live-update loop: every interval, run the client workflow again (same source, same state
/// dir: rollback protection) and switch in what it trusts if it differs from what is in force.
pub(super) struct Refresher {
    pub(super) live: LiveMount,
    pub(super) options: TrustOptions,
    pub(super) audit: Option<Arc<AuditLog>>,
    /// The kind of the last failed refresh and when it was last logged: a failure of the same
    /// kind is counted every time but logged (and audited) again only after [`REPEAT_LOG`].
    pub(super) last_failure: Option<(TrustErrorKind, Instant)>,
    /// After a refresh that loaded everything without problems: the trusted root version and
    /// the exact timestamp bytes trusted. While the repository still offers exactly these
    /// ([`trust::unchanged`]: no next root, the same timestamp bytes), a refresh costs two small
    /// fetches instead of the whole workflow and a new index.
    pub(super) quiet: Option<(u64, Vec<u8>)>,
}

/// A refresh failing the same way again is logged and audited at most this often.
const REPEAT_LOG: Duration = Duration::from_secs(300);

impl Refresher {
    /// Refresh every `interval`, forever. Supervised: a panic in one refresh (a bug, or in a
    /// library below) is caught, logged as an ERROR, counted as a failed refresh and shown by
    /// `trustfs status`; the next interval tries again. The thread never dies silently.
    pub(super) fn run(mut self, interval: Duration) {
        loop {
            std::thread::sleep(interval);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.once()));
            if let Err(p) = outcome {
                let what = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                let msg = format!("internal error during the metadata refresh: {what}");
                log_event!(
                    "ERROR {msg}; keeping the metadata in force, trying again in {} s",
                    interval.as_secs()
                );
                self.live
                    .counters()
                    .refresh_failures
                    .fetch_add(1, Ordering::Relaxed);
                self.live.refresh_failed(msg);
                self.live.write_status();
            }
        }
    }

    fn once(&mut self) {
        let mut opts = self.options.clone();
        opts.now = SystemTime::now();
        let current = self.live.summary().unwrap_or_default();
        if let Some((root_version, timestamp)) = &self.quiet {
            if trust::unchanged(&opts, *root_version, timestamp) {
                self.live
                    .counters()
                    .refresh_unchanged
                    .fetch_add(1, Ordering::Relaxed);
                if self.last_failure.take().is_some() {
                    log_event!("metadata refresh works again");
                }
                self.live.refresh_ok();
                return;
            }
        }
        self.quiet = None;
        match trust::load(&opts) {
            Ok(trusted) => {
                if self.last_failure.take().is_some() {
                    log_event!("metadata refresh works again");
                }
                self.live.refresh_ok();
                if trusted.problems.is_empty() {
                    self.quiet =
                        trust::trusted_timestamp(&opts).map(|t| (trusted.summary.root_version, t));
                }
                // Same versions and expiry can still mean a different index: a delegated role
                // that could not be loaded last time may load now.
                if trusted.summary == current && self.live.same_index(&trusted.index) {
                    return;
                }
                for problem in &trusted.problems {
                    log_event!("warning: left out of the mount: {problem}");
                }
                let targets = trusted.index.len();
                let new = trusted.summary.clone();
                let report = self.live.switch(trusted.index, trusted.summary);
                release_free_memory();
                log_event!(
                    "metadata updated: timestamp v{} -> v{}, snapshot v{} -> v{}, targets v{} -> v{}, root v{} -> v{}; {} targets ({} added, {} removed, {} changed); valid until {} ({} role)",
                    current.timestamp_version,
                    new.timestamp_version,
                    current.snapshot_version,
                    new.snapshot_version,
                    current.targets_version,
                    new.targets_version,
                    current.root_version,
                    new.root_version,
                    targets,
                    report.added.len(),
                    report.removed.len(),
                    report.changed.len(),
                    new.expires,
                    new.expires_role
                );
                if let Some(a) = &self.audit {
                    a.metadata_change(Some(&current), &new, targets);
                }
                self.live.write_status();
            }
            Err(e) => {
                self.live
                    .counters()
                    .refresh_failures
                    .fetch_add(1, Ordering::Relaxed);
                let msg = e.to_string();
                self.live.refresh_failed(format!(
                    "last metadata refresh failed at {}: {msg}",
                    crate::log::timestamp(SystemTime::now())
                ));
                let repeated = self
                    .last_failure
                    .is_some_and(|(kind, at)| kind == e.kind && at.elapsed() < REPEAT_LOG);
                if !repeated {
                    log_event!(
                        "metadata refresh FAILED, keeping the metadata in force (timestamp v{}, targets v{}, valid until {}): {msg}",
                        current.timestamp_version,
                        current.targets_version,
                        current.expires
                    );
                    if let Some(a) = &self.audit {
                        a.refresh_failed(&msg, &current);
                    }
                    self.last_failure = Some((e.kind, Instant::now()));
                }
                self.live.write_status();
            }
        }
    }
}

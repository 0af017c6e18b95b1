//! The mount's status record as of now, and the sizes of its in-memory tables.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::MountState;
use crate::mount::{lock, TableSizes};
use crate::schema::UtcTime;
use crate::telemetry::status::MountStatus;

impl MountState {
    /// The status record as of now.
    pub(in crate::mount) fn status(&self) -> MountStatus {
        let gen = self.generation();
        let now = SystemTime::now();
        self.counters
            .cache_bytes
            .store(self.store.total_bytes(), Ordering::Relaxed);
        let expired = gen.expired_at(now);
        let (fresh, refresh) = {
            let f = lock(&self.freshness);
            (f.judge(now), f.refresh())
        };
        let problem = match expired {
            Some((t, role)) => Some(format!(
                "the trusted metadata expired at {} (the {role} role); opens are refused",
                crate::log::timestamp(*t)
            )),
            None if gen.summary.is_none() => {
                Some("mounted from a bare target index (no signed metadata summary)".into())
            }
            None => fresh.problem,
        };
        MountStatus {
            pid: std::process::id(),
            mountpoint: self.mountpoint.display().to_string(),
            repository: self.repository.clone(),
            content: self.content_desc.clone(),
            started: self.started.clone(),
            updated: crate::log::timestamp(now),
            updated_unix: UtcTime::from_system(now).0,
            verified: gen.summary.is_some() && expired.is_none() && !fresh.stale,
            problem,
            stale: fresh.stale,
            confirmed: crate::log::timestamp(fresh.last_ok),
            confirmed_unix: UtcTime::from_system(fresh.last_ok).0,
            refresh_interval_secs: refresh.map(|(every, _)| every.as_secs()),
            stale_after_secs: refresh.map(|(_, after)| after.as_secs()),
            metadata: gen.summary.clone().unwrap_or_default(),
            targets: gen.index.len(),
            counters: self.counters.snapshot(),
            tables: self.table_sizes(),
            process: crate::telemetry::status::ProcessStats::now(),
        }
    }

    /// Inodes allocated so far (the root included). Inodes are allocated only for entries that
    /// exist, so lookups of missing names never grow this.
    pub(in crate::mount) fn inode_count(&self) -> usize {
        self.inodes.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Entries in the mount's in-memory tables (bounded under churn; see `docs/operations.md`).
    pub(in crate::mount) fn table_sizes(&self) -> TableSizes {
        let (listings, listing_entries) = self.listings.sizes();
        TableSizes {
            inodes: self.inode_count(),
            records: lock(&self.records).len(),
            gates: self.gates.len(),
            handles: lock(&self.handles).len(),
            dir_handles: lock(&self.dirs).len(),
            listings,
            listing_entries,
            read_fds: self.read_files.len() + self.backing_files.len(),
            read_fd_capacity: match self.chunks {
                Some(_) => self.backing_files.capacity(),
                None => self.read_files.capacity(),
            },
            objects: self.store.object_count(),
        }
    }
}

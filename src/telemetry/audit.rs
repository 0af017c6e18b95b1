//! The audit log: one JSON object a line for every denial and every metadata change, appended to
//! a file (`--audit-log FILE`) that standard log tools (jq, journald imports, SIEM shippers) read.
//!
//! Each line is written with one `write(2)` on an `O_APPEND` file, so concurrent writers never
//! interleave; the file is opened once, so rotate it with logrotate's `copytruncate` (with
//! `O_APPEND` the next line lands at the start of the truncated file).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::json;

use super::{DenyReason, FaultKind};
use crate::trust::TrustSummary;

pub struct AuditLog {
    file: Mutex<File>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

/// Versions in force, as every audit line records them.
#[derive(Serialize)]
struct Versions {
    root: u64,
    timestamp: u64,
    snapshot: u64,
    targets: u64,
}

fn versions(s: &TrustSummary) -> Versions {
    Versions {
        root: s.root_version,
        timestamp: s.timestamp_version,
        snapshot: s.snapshot_version,
        targets: s.targets_version,
    }
}

fn now() -> String {
    crate::log::timestamp(SystemTime::now())
}

impl AuditLog {
    /// Open `path` for appending (created with mode 0640).
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)?;
        Ok(AuditLog {
            file: Mutex::new(file),
        })
    }

    fn write(&self, value: serde_json::Value) {
        let mut line = value.to_string();
        line.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        // An audit line that cannot be written is reported on stderr, never silently dropped.
        if let Err(e) = f.write_all(line.as_bytes()) {
            crate::log_event!("audit log write failed: {e}; line was: {}", line.trim_end());
        }
    }

    /// An open was denied; `left_out` repeats of it were not written since the last line.
    pub fn deny(
        &self,
        path: &str,
        reason: DenyReason,
        detail: &str,
        caller: (u32, u32),
        left_out: u64,
        meta: &TrustSummary,
    ) {
        let label = ("reason", reason.label());
        self.refused("deny", label, path, detail, caller, left_out, meta);
    }

    /// An open (or read) failed on a fault: the daemon could not judge the content.
    pub fn fault(
        &self,
        path: &str,
        kind: FaultKind,
        detail: &str,
        caller: (u32, u32),
        left_out: u64,
        meta: &TrustSummary,
    ) {
        let label = ("kind", kind.label());
        self.refused("fault", label, path, detail, caller, left_out, meta);
    }

    /// One `deny` or `fault` line: the event, its label, the path, the caller (pid, uid) and how
    /// many repeats were left out before it (`"repeats_not_logged"`, only when not 0).
    #[allow(clippy::too_many_arguments)]
    fn refused(
        &self,
        event: &str,
        (label_key, label): (&str, &str),
        path: &str,
        detail: &str,
        (pid, uid): (u32, u32),
        left_out: u64,
        meta: &TrustSummary,
    ) {
        let mut line = json!({
            "time": now(),
            "event": event,
            "path": path,
            "detail": detail,
            "pid": pid,
            "uid": uid,
            "metadata": versions(meta),
        });
        line[label_key] = json!(label);
        if left_out > 0 {
            line["repeats_not_logged"] = json!(left_out);
        }
        self.write(line);
    }

    /// The metadata in force changed (mount start, or a refresh that switched in new metadata).
    pub fn metadata_change(&self, old: Option<&TrustSummary>, new: &TrustSummary, targets: usize) {
        self.write(json!({
            "time": now(),
            "event": "metadata",
            "previous": old.map(versions),
            "metadata": versions(new),
            "targets": targets,
            "source": new.source,
        }));
    }

    /// A refresh failed and the last good metadata stays in force.
    pub fn refresh_failed(&self, reason: &str, meta: &TrustSummary) {
        self.write(json!({
            "time": now(),
            "event": "refresh_failed",
            "reason": reason,
            "metadata": versions(meta),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_objects() {
        let dir = std::env::temp_dir().join(format!("trustfs-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        let meta = TrustSummary {
            targets_version: 3,
            ..Default::default()
        };
        log.deny(
            "a \"quoted\"\nname",
            DenyReason::Altered,
            "sha256 mismatch",
            (42, 1000),
            0,
            &meta,
        );
        log.metadata_change(None, &meta, 7);
        log.fault("b", FaultKind::NoSpace, "No space", (43, 0), 7, &meta);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2]["event"], "fault");
        assert_eq!(lines[2]["kind"], "no_space");
        assert_eq!(lines[2]["repeats_not_logged"], 7);
        assert!(lines[0].get("repeats_not_logged").is_none());
        assert_eq!(lines[0]["event"], "deny");
        assert_eq!(lines[0]["path"], "a \"quoted\"\nname");
        assert_eq!(lines[0]["reason"], "altered");
        assert_eq!(lines[0]["metadata"]["targets"], 3);
        assert_eq!(lines[1]["event"], "metadata");
        assert_eq!(lines[1]["targets"], 7);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

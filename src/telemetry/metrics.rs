//! Prometheus metrics: text exposition format 0.0.4, served on `GET /metrics` by [`super::http`]
//! (`--metrics-addr HOST:PORT`).

use std::fmt::Write as _;

use super::status::{seconds_until, MountStatus};
use super::{DenyReason, FaultKind, VERIFY_BUCKETS};
use crate::schema::UtcTime;

/// One metric family: HELP, TYPE and its samples (`labels` include the braces).
fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP trustfs_{name} {help}");
    let _ = writeln!(out, "# TYPE trustfs_{name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "trustfs_{name}{labels} {v}");
    }
}

/// Render `s` in Prometheus text format.
pub fn render(s: &MountStatus, now: UtcTime) -> String {
    let c = &s.counters;
    let mut out = String::new();
    let one = |v: u64| vec![(String::new(), v as f64)];
    metric(
        &mut out,
        "up",
        "gauge",
        "1 when the mount serves trusted, unexpired metadata, else 0.",
        &one(u64::from(s.verified)),
    );
    metric(
        &mut out,
        "opens_total",
        "counter",
        "Opens of files in the mount.",
        &one(c.opens),
    );
    metric(
        &mut out,
        "served_total",
        "counter",
        "Opens that were allowed (verified content).",
        &one(c.served),
    );
    let denials: Vec<(String, f64)> = DenyReason::ALL
        .iter()
        .map(|r| {
            (
                format!("{{reason=\"{}\"}}", r.label()),
                *c.denied.get(r.label()).unwrap_or(&0) as f64,
            )
        })
        .collect();
    metric(
        &mut out,
        "denials_total",
        "counter",
        "Opens denied, by reason.",
        &denials,
    );
    let faults: Vec<(String, f64)> = FaultKind::ALL
        .iter()
        .map(|k| {
            (
                format!("{{kind=\"{}\"}}", k.label()),
                *c.faults.get(k.label()).unwrap_or(&0) as f64,
            )
        })
        .collect();
    metric(
        &mut out,
        "faults_total",
        "counter",
        "Opens and reads that failed because the daemon could not judge the content (I/O, \
         disk space, file descriptors, network, busy, internal), by kind. Not denials.",
        &faults,
    );
    metric(
        &mut out,
        "read_bytes_total",
        "counter",
        "Bytes read through the daemon (FUSE passthrough reads bypass it and are not counted).",
        &one(c.bytes_read),
    );
    metric(
        &mut out,
        "opened_bytes_total",
        "counter",
        "Bytes of verified files opened (every open counts the file's length).",
        &one(c.bytes_opened),
    );
    // Histogram of verification time.
    let _ = writeln!(
        out,
        "# HELP trustfs_verify_seconds Time to verify a file (hash pass or download)."
    );
    let _ = writeln!(out, "# TYPE trustfs_verify_seconds histogram");
    let mut cumulative = 0u64;
    for (i, le) in VERIFY_BUCKETS.iter().enumerate() {
        cumulative += c.verify_buckets.get(i).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "trustfs_verify_seconds_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "trustfs_verify_seconds_bucket{{le=\"+Inf\"}} {}",
        c.verifications
    );
    let _ = writeln!(out, "trustfs_verify_seconds_sum {}", c.verify_seconds);
    let _ = writeln!(out, "trustfs_verify_seconds_count {}", c.verifications);
    metric(
        &mut out,
        "cache_hits_total",
        "counter",
        "Opens served from an already verified copy.",
        &one(c.cache_hits),
    );
    metric(
        &mut out,
        "cache_misses_total",
        "counter",
        "Opens that needed a hash pass or a download.",
        &one(c.cache_misses),
    );
    metric(
        &mut out,
        "cache_bytes",
        "gauge",
        "Bytes held in the verified copy store or download cache.",
        &one(c.cache_bytes),
    );
    metric(
        &mut out,
        "fetches_total",
        "counter",
        "Remote mount: targets downloaded and verified into the cache.",
        &one(c.fetches),
    );
    metric(
        &mut out,
        "fetch_failures_total",
        "counter",
        "Remote mount: opens that failed with EIO because no mirror could deliver.",
        &one(c.fetch_failures),
    );
    metric(
        &mut out,
        "prefetch_fetches_total",
        "counter",
        "Remote mount: small files of a directory downloaded and verified in the background.",
        &one(c.prefetch_fetches),
    );
    metric(
        &mut out,
        "prefetch_bytes_total",
        "counter",
        "Remote mount: bytes downloaded and verified in the background.",
        &one(c.prefetch_bytes),
    );
    metric(
        &mut out,
        "prefetch_failures_total",
        "counter",
        "Remote mount: background downloads that failed (never an open's answer).",
        &one(c.prefetch_failures),
    );
    metric(
        &mut out,
        "prefetch_dropped_total",
        "counter",
        "Remote mount: files not prefetched (queue bounds, or emptied after a fault).",
        &one(c.prefetch_dropped),
    );
    metric(
        &mut out,
        "metadata_switches_total",
        "counter",
        "Live updates: new trusted metadata switched in while mounted.",
        &one(c.metadata_switches),
    );
    metric(
        &mut out,
        "refresh_failures_total",
        "counter",
        "Live updates: metadata refreshes that failed (the last good metadata stayed in force).",
        &one(c.refresh_failures),
    );
    metric(
        &mut out,
        "refresh_unchanged_total",
        "counter",
        "Live updates: refreshes that found no new root and the trusted timestamp, and stopped there.",
        &one(c.refresh_unchanged),
    );
    metric(
        &mut out,
        "metadata_stale",
        "gauge",
        "1 when the metadata was not confirmed by a refresh for longer than the staleness bound.",
        &one(u64::from(s.stale)),
    );
    metric(
        &mut out,
        "metadata_confirmed_timestamp_seconds",
        "gauge",
        "When the metadata in force was last confirmed (mount start or a successful refresh), Unix time.",
        &one(u64::try_from(s.confirmed_unix).unwrap_or(0)),
    );
    metric(
        &mut out,
        "targets",
        "gauge",
        "Targets the trusted metadata lists.",
        &one(s.targets as u64),
    );
    let t = &s.tables;
    let tables: Vec<(String, f64)> = [
        ("inodes", t.inodes),
        ("records", t.records),
        ("gates", t.gates),
        ("handles", t.handles),
        ("dir_handles", t.dir_handles),
        ("listings", t.listings),
        ("listing_entries", t.listing_entries),
        ("read_fds", t.read_fds),
        ("objects", t.objects),
    ]
    .iter()
    .map(|(name, v)| (format!("{{table=\"{name}\"}}"), *v as f64))
    .collect();
    metric(
        &mut out,
        "table_entries",
        "gauge",
        "Entries in the daemon's in-memory tables (bounded by what the kernel and readers hold).",
        &tables,
    );
    let _ = writeln!(
        out,
        "# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {}",
        s.process.open_fds
    );
    let _ = writeln!(
        out,
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}",
        s.process.resident_bytes
    );
    let m = &s.metadata;
    let roles = [
        ("root", m.root_version, &m.root_expires),
        ("timestamp", m.timestamp_version, &m.timestamp_expires),
        ("snapshot", m.snapshot_version, &m.snapshot_expires),
        ("targets", m.targets_version, &m.targets_expires),
    ];
    let versions: Vec<(String, f64)> = roles
        .iter()
        .map(|(r, v, _)| (format!("{{role=\"{r}\"}}"), *v as f64))
        .collect();
    metric(
        &mut out,
        "metadata_version",
        "gauge",
        "Version of the trusted metadata, by role.",
        &versions,
    );
    let expiry: Vec<(String, f64)> = roles
        .iter()
        .filter_map(|(r, _, e)| {
            seconds_until(e, now).map(|secs| (format!("{{role=\"{r}\"}}"), secs as f64))
        })
        .collect();
    metric(
        &mut out,
        "metadata_expires_in_seconds",
        "gauge",
        "Seconds until the trusted metadata expires (negative: expired), by role.",
        &expiry,
    );
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::telemetry::{Counters, DenialRecord};
    use crate::trust::TrustSummary;

    pub(crate) fn status() -> MountStatus {
        let counters = Counters::default();
        counters.deny(DenyReason::Altered, DenialRecord::default());
        counters.verification_pass(0.02);
        MountStatus {
            pid: 1,
            mountpoint: "/mnt".into(),
            repository: "r".into(),
            content: "c".into(),
            started: String::new(),
            updated: String::new(),
            updated_unix: 0,
            verified: true,
            problem: None,
            metadata: TrustSummary {
                targets_version: 4,
                targets_expires: "2030-01-01T00:00:00Z".into(),
                ..Default::default()
            },
            targets: 3,
            counters: counters.snapshot(),
            stale: false,
            confirmed: String::new(),
            confirmed_unix: 0,
            refresh_interval_secs: None,
            stale_after_secs: None,
            tables: Default::default(),
            process: Default::default(),
        }
    }

    #[test]
    fn renders_every_sample_with_help_and_type() {
        let text = render(&status(), UtcTime(0));
        assert!(
            text.contains("trustfs_denials_total{reason=\"altered\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("trustfs_metadata_version{role=\"targets\"} 4\n"));
        assert!(text.contains("trustfs_verify_seconds_bucket{le=\"0.05\"} 1\n"));
        assert!(text.contains("trustfs_verify_seconds_count 1\n"));
        assert!(text.contains("trustfs_metadata_expires_in_seconds{role=\"targets\"} 1893456000\n"));
        // Every sample line belongs to a metric announced by # TYPE.
        let mut typed = std::collections::BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let base = name
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_sum")
                    .trim_end_matches("_count");
                assert!(
                    typed.contains(name) || typed.contains(base),
                    "untyped sample {line}"
                );
            }
        }
    }
}

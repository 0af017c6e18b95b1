//! `trustfs status`: the little green check mark.
//!
//! One glance per mount: ✔ verified or ✘ not, with the repository, metadata versions and expiry,
//! the trusted keys and counts of files served and denied. Exit 0 when every mount shown is
//! verified, 1 otherwise (or when there is no trustfs mount at all).

use std::path::PathBuf;

use clap::Parser;

use crate::schema::UtcTime;
use crate::telemetry::status::{in_words, seconds_until, trustfs_mounts, verdict, Verdict};

/// Show whether trustfs mounts are verified (✔) or not (✘).
///
/// Without MOUNTPOINT, every trustfs mount on this host (from /proc/self/mountinfo) is shown.
#[derive(Parser, Debug)]
pub struct Args {
    /// The mount to show (default: all trustfs mounts).
    pub mountpoint: Option<PathBuf>,
    /// Print JSON (a list of mounts) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> i32 {
    let now = UtcTime::now();
    let mounts = match &args.mountpoint {
        Some(m) => vec![std::fs::canonicalize(m).unwrap_or_else(|_| m.clone())],
        None => trustfs_mounts(),
    };
    let verdicts: Vec<Verdict> = mounts.iter().map(|m| verdict(m, now)).collect();
    if args.json {
        match serde_json::to_string_pretty(&verdicts) {
            Ok(s) => println!("{s}"),
            Err(e) => super::report_error("status", &e),
        }
    } else if verdicts.is_empty() {
        println!("✘ no trustfs mounts on this host");
    } else {
        for v in &verdicts {
            print_verdict(v, now);
        }
    }
    if !verdicts.is_empty() && verdicts.iter().all(|v| v.verified) {
        super::EXIT_OK
    } else {
        super::EXIT_CONTENT
    }
}

fn print_verdict(v: &Verdict, now: UtcTime) {
    if v.verified {
        println!("✔ {}  verified", v.mountpoint);
    } else {
        println!("✘ {}  NOT verified", v.mountpoint);
        for p in &v.problems {
            println!("    problem     {p}");
        }
    }
    let Some(s) = &v.status else { return };
    let m = &s.metadata;
    println!("    repository  {}", s.repository);
    println!("    content     {}", s.content);
    println!("    daemon      pid {}, up since {}", s.pid, s.started);
    for (role, version, expires) in [
        ("root", m.root_version, &m.root_expires),
        ("timestamp", m.timestamp_version, &m.timestamp_expires),
        ("snapshot", m.snapshot_version, &m.snapshot_expires),
        ("targets", m.targets_version, &m.targets_expires),
    ] {
        let when = seconds_until(expires, now)
            .map(in_words)
            .unwrap_or_default();
        println!("    {role:<11} v{version:<5} expires {expires} ({when})");
    }
    for (role, k) in &m.keys {
        let ids: Vec<&str> = k
            .keyids
            .iter()
            .map(|id| id.get(..12).unwrap_or(id))
            .collect();
        println!(
            "    keys        {role}: {} of {} [{}]",
            k.threshold,
            ids.len(),
            ids.join(", ")
        );
    }
    let c = &s.counters;
    println!(
        "    files       {} targets; {} opens served, {} denied, {} faults",
        s.targets,
        c.served,
        c.denied_total(),
        c.faults_total()
    );
    if let Some(d) = &c.last_denial {
        println!("    last denial {d}");
    }
    if let Some(f) = &c.last_fault {
        println!("    last fault  {f}");
    }
    if let Some(p) = &s.problem {
        if v.verified {
            println!("    note        {p}");
        }
    }
}

//! `trustfs verify`: offline check of a directory against signed metadata.
//!
//! Runs the same client workflow as the mounts, then walks CONTENT_DIR without following symlinks
//! and reports each file as ok, unregistered or altered, and each target missing from the
//! directory. Exit codes: 0 all ok; 1 content failed; 2 the metadata cannot be trusted.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use clap::Parser;
use serde::Serialize;

use crate::hashing::check_reader;
use crate::index::TargetIndex;
use crate::source::EntryKind;
use crate::trust::{self, MetadataSource, TrustOptions, TrustSummary};

/// Check every file of CONTENT_DIR against signed TUF targets metadata.
///
/// Starts from the trusted root you give (never from a root found in METADATA_DIR), follows the
/// root rotation chain, loads timestamp, snapshot and targets (with delegations), and reports every
/// file as ok, unregistered or altered, and every target missing from CONTENT_DIR.
///
/// Exit status: 0 everything verified; 1 some content failed; 2 the metadata itself cannot be
/// trusted (bad signature, threshold not met, expired, rolled back, malformed).
#[derive(Parser, Debug)]
pub struct Args {
    /// The trusted root metadata, pinned by you (e.g. a copy of 1.root.json you obtained safely).
    #[arg(long, value_name = "ROOT.json")]
    pub root: PathBuf,
    /// Directory holding the repository's metadata (N.root.json, timestamp.json, ...).
    #[arg(long, value_name = "METADATA_DIR")]
    pub metadata: PathBuf,
    /// The content directory to check (plain target names, as a mount's backing directory).
    #[arg(value_name = "CONTENT_DIR")]
    pub content_dir: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also list files that verified.
    #[arg(short, long)]
    pub verbose: bool,
    /// Keep trusted metadata versions here, so later runs refuse rollbacks (default: not kept).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Unregistered,
    Altered,
    Missing,
}

#[derive(Serialize, Debug)]
pub struct FileReport {
    pub path: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Serialize, Debug, Default)]
pub struct Counts {
    pub ok: usize,
    pub unregistered: usize,
    pub altered: usize,
    pub missing: usize,
}

#[derive(Serialize, Debug)]
pub struct Report {
    pub ok: bool,
    pub summary: TrustSummary,
    pub files: Vec<FileReport>,
    pub counts: Counts,
}

/// Most untrusted-metadata problems printed (a hostile bin can list a million foreign paths).
const MAX_PROBLEMS_SHOWN: usize = 20;

pub fn run(args: Args) -> i32 {
    let opts = TrustOptions {
        trusted_root: args.root.clone(),
        source: MetadataSource::Dir(args.metadata.clone()),
        state_dir: args.state_dir.clone(),
        now: SystemTime::now(),
        http: Default::default(),
    };
    // A delegated role (or hash bin) that cannot be trusted, or a bin listing a path outside its
    // range, makes the whole answer untrusted: each is reported, the first one as `error`.
    let loaded =
        trust::load(&opts)
            .map_err(|e| vec![e])
            .and_then(|t| match t.problems.is_empty() {
                true => Ok(t),
                false => Err(t.problems),
            });
    let trusted = match loaded {
        Ok(t) => t,
        Err(all) => {
            // Never empty: one load error, or the (non-empty) list of problems.
            let e = &all[0];
            let shown = &all[..all.len().min(MAX_PROBLEMS_SHOWN)];
            if args.json {
                let problems: Vec<String> = shown.iter().map(|p| p.to_string()).collect();
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": e.to_string(),
                        "kind": format!("{:?}", e.kind), "problems": problems,
                        "problem_count": all.len()})
                );
            } else {
                for p in shown {
                    eprintln!("✘ metadata cannot be trusted: {p}");
                }
                if all.len() > shown.len() {
                    eprintln!("✘ ... and {} more", all.len() - shown.len());
                }
            }
            return super::EXIT_METADATA;
        }
    };
    let files = match check_dir(&args.content_dir, &trusted.index) {
        Ok(f) => f,
        Err(e) => {
            super::report_error("verify", &e);
            return super::EXIT_CONTENT;
        }
    };
    let mut counts = Counts::default();
    for f in &files {
        match f.status {
            Status::Ok => counts.ok += 1,
            Status::Unregistered => counts.unregistered += 1,
            Status::Altered => counts.altered += 1,
            Status::Missing => counts.missing += 1,
        }
    }
    let ok = counts.unregistered == 0 && counts.altered == 0 && counts.missing == 0;
    let report = Report {
        ok,
        summary: trusted.summary,
        files,
        counts,
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => super::report_error("verify", &e),
        }
    } else {
        print_human(&report, args.verbose);
    }
    if ok {
        super::EXIT_OK
    } else {
        super::EXIT_CONTENT
    }
}

fn print_human(report: &Report, verbose: bool) {
    for f in &report.files {
        if f.status == Status::Ok && !verbose {
            continue;
        }
        let mark = if f.status == Status::Ok { "✔" } else { "✘" };
        let status = format!("{:?}", f.status).to_lowercase();
        match &f.reason {
            Some(r) => println!("{mark} {status:<12} {}: {r}", f.path),
            None => println!("{mark} {status:<12} {}", f.path),
        }
    }
    let s = &report.summary;
    let c = &report.counts;
    let versions = format!(
        "targets v{}, snapshot v{}, timestamp v{}, root v{}",
        s.targets_version, s.snapshot_version, s.timestamp_version, s.root_version
    );
    if report.ok {
        println!("✔ {} files verified ({versions})", c.ok);
    } else {
        println!(
            "✘ {} altered, {} unregistered, {} missing, {} ok ({versions})",
            c.altered, c.unregistered, c.missing, c.ok
        );
    }
}

/// A registered regular file the walk found, to be hashed.
struct ToCheck {
    rel: String,
    path: std::path::PathBuf,
    info: crate::index::TargetInfo,
}

/// Check every entry under `dir` against `index`; targets not found become `missing`. Files are
/// hashed on every core (up to 8 threads).
pub fn check_dir(dir: &Path, index: &TargetIndex) -> Result<Vec<FileReport>, String> {
    let mut found: BTreeMap<String, FileReport> = BTreeMap::new();
    let mut to_check = Vec::new();
    walk(dir, "", index, &mut found, &mut to_check)?;
    for (file, report) in to_check.iter().zip(check_all(&to_check)) {
        found.insert(file.rel.clone(), report);
    }
    for (path, _) in index.iter() {
        if !found.contains_key(path) {
            found.insert(
                path.to_string(),
                FileReport {
                    path: path.to_string(),
                    status: Status::Missing,
                    reason: Some("registered but not in the directory".into()),
                },
            );
        }
    }
    Ok(found.into_values().collect())
}

/// The reports of `files`, in their order.
fn check_all(files: &[ToCheck]) -> Vec<FileReport> {
    let check = |f: &ToCheck| {
        let result = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&f.path)
            .map_err(|e| e.to_string())
            .and_then(|file| check_reader(file, &f.info).map_err(|e| e.to_string()));
        match result {
            Ok(()) => FileReport {
                path: f.rel.clone(),
                status: Status::Ok,
                reason: None,
            },
            Err(e) => FileReport {
                path: f.rel.clone(),
                status: Status::Altered,
                reason: Some(e),
            },
        }
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut slots: Vec<Option<FileReport>> = (0..files.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .spawn_scoped(s, || {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(f) = files.get(i) else { break done };
                            done.push((i, check(f)));
                        }
                    })
                    .ok()
            })
            .collect();
        for h in handles {
            // A worker that panicked leaves its files unchecked: checked below, here.
            for (i, report) in h.join().unwrap_or_default() {
                slots[i] = Some(report);
            }
        }
    });
    files
        .iter()
        .zip(slots)
        .map(|(f, slot)| slot.unwrap_or_else(|| check(f)))
        .collect()
}

fn walk(
    dir: &Path,
    prefix: &str,
    index: &TargetIndex,
    out: &mut BTreeMap<String, FileReport>,
    to_check: &mut Vec<ToCheck>,
) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            let path = format!("{prefix}{}", name.to_string_lossy());
            out.insert(
                path.clone(),
                FileReport {
                    path,
                    status: Status::Unregistered,
                    reason: Some("name is not UTF-8".into()),
                },
            );
            continue;
        };
        let rel = format!("{prefix}{name}");
        let ft = entry
            .file_type()
            .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        if ft.is_dir() {
            walk(&entry.path(), &format!("{rel}/"), index, out, to_check)?;
            continue;
        }
        let report = match index.get(&rel) {
            None => FileReport {
                path: rel.clone(),
                status: Status::Unregistered,
                reason: Some("not in the signed targets metadata".into()),
            },
            Some(_) if !ft.is_file() => FileReport {
                path: rel.clone(),
                status: Status::Altered,
                reason: Some(format!(
                    "not a regular file ({}); not followed",
                    EntryKind::from_std(ft).describe()
                )),
            },
            Some(info) => {
                to_check.push(ToCheck {
                    rel,
                    path: entry.path(),
                    info,
                });
                continue;
            }
        };
        out.insert(rel, report);
    }
    Ok(())
}

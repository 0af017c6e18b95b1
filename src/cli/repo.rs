//! `trustfs repo`: publisher commands. The work is done by [`crate::repo`]; this file parses
//! arguments and prints reports.
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::repo::{self, Expiries, RepoError};
use crate::schema::UtcTime;

#[derive(Subcommand, Debug)]
pub enum RepoCommand {
    /// Create a new repository: REPO/metadata with 1.root.json, 1.targets.json (no targets),
    /// 1.snapshot.json and timestamp.json (consistent snapshots), and REPO/targets.
    ///
    /// Role keys are KEYDIR/root, KEYDIR/targets, KEYDIR/snapshot and KEYDIR/timestamp (format of
    /// `trustfs key generate`); missing ones are generated. No unversioned root.json is written:
    /// give clients 1.root.json out of band as their trusted root.
    Init {
        /// The repository directory to create.
        repo: PathBuf,
        #[command(flatten)]
        common: KeyArgs,
    },
    /// Make the repository's target list equal to the regular files under CONTENT_DIR.
    ///
    /// Every regular file becomes a target named by its path relative to CONTENT_DIR, with its
    /// length and sha256 (and sha512 with --sha512), and is copied to REPO/targets as
    /// dir/<hash>.<basename>. Targets whose files are gone from CONTENT_DIR are REMOVED from the
    /// list; unchanged files keep their entries (including `custom`). Symlinks, FIFOs, sockets and
    /// devices are skipped with a warning; a name that is not UTF-8 or not a safe target path
    /// stops the command before anything is written. Then targets, snapshot and timestamp are
    /// re-signed with new versions (even when nothing changed). Needs KEYDIR/targets,
    /// KEYDIR/snapshot and KEYDIR/timestamp.
    Add {
        /// The repository directory.
        repo: PathBuf,
        /// The directory whose files are to be published.
        content_dir: PathBuf,
        #[command(flatten)]
        common: KeyArgs,
        /// Also list sha512 hashes (and publish under the sha512 name too).
        #[arg(long)]
        sha512: bool,
    },
    /// Re-sign snapshot and timestamp with new versions and expiry dates (for cron or CI).
    /// Needs KEYDIR/snapshot and KEYDIR/timestamp (and KEYDIR/targets with --role targets).
    Refresh {
        /// The repository directory.
        repo: PathBuf,
        #[command(flatten)]
        common: KeyArgs,
        /// Also re-sign this role (only `targets` is accepted): same targets, new version and
        /// expiry.
        #[arg(long, value_parser = ["targets"])]
        role: Option<String>,
    },
}

/// Options every repo command takes.
#[derive(Args, Debug)]
pub struct KeyArgs {
    /// Directory holding the role keys: root, targets, snapshot, timestamp (and .pub files).
    #[arg(long, value_name = "KEYDIR")]
    pub keys: PathBuf,
    /// How long newly signed metadata of ROLE stays valid, e.g. timestamp=2h, targets=30d
    /// (repeatable). Defaults: root=365d, targets=90d, snapshot=7d, timestamp=1d.
    #[arg(long, value_name = "ROLE=DURATION")]
    pub expires: Vec<String>,
}

pub fn run(cmd: RepoCommand) -> i32 {
    let (name, result) = match cmd {
        RepoCommand::Init { repo, common } => ("repo init", init(repo, common)),
        RepoCommand::Add {
            repo,
            content_dir,
            common,
            sha512,
        } => ("repo add", add(repo, content_dir, common, sha512)),
        RepoCommand::Refresh { repo, common, role } => {
            ("repo refresh", refresh(repo, common, role.is_some()))
        }
    };
    match result {
        Ok(()) => super::EXIT_OK,
        Err(e) => {
            super::report_error(name, &e);
            e.exit_code()
        }
    }
}

fn init(repo: PathBuf, common: KeyArgs) -> Result<(), RepoError> {
    let report = repo::init(&repo::InitOptions {
        repo,
        keydir: common.keys,
        expires: Expiries::from_specs(&common.expires)?,
    })?;
    for k in &report.generated_keys {
        eprintln!("generated key {}", k.display());
    }
    for f in &report.written {
        println!("wrote {}", f.display());
    }
    Ok(())
}

fn add(
    repo: PathBuf,
    content_dir: PathBuf,
    common: KeyArgs,
    sha512: bool,
) -> Result<(), RepoError> {
    let report = repo::add(&repo::AddOptions {
        repo,
        keydir: common.keys,
        content_dir,
        sha512,
        expires: Expiries::from_specs(&common.expires)?,
    })?;
    for s in &report.skipped {
        eprintln!(
            "trustfs: warning: skipped {}: {}",
            s.path.display(),
            s.reason
        );
    }
    for (label, list) in [
        ("added", &report.added),
        ("changed", &report.changed),
        ("removed", &report.removed),
    ] {
        for t in list {
            println!("{label} {t}");
        }
    }
    println!(
        "{} targets ({} added, {} changed, {} unchanged, {} removed); targets version {}, snapshot version {}, timestamp version {}",
        report.added.len() + report.changed.len() + report.unchanged.len(),
        report.added.len(),
        report.changed.len(),
        report.unchanged.len(),
        report.removed.len(),
        report.versions.targets,
        report.versions.snapshot,
        report.versions.timestamp
    );
    if let Some(t) = report.root_expires {
        warn_root_expiry(t);
    }
    Ok(())
}

fn refresh(repo: PathBuf, common: KeyArgs, resign_targets: bool) -> Result<(), RepoError> {
    let report = repo::refresh(&repo::RefreshOptions {
        repo,
        keydir: common.keys,
        expires: Expiries::from_specs(&common.expires)?,
        resign_targets,
    })?;
    let v = report.versions;
    println!(
        "targets version {}, snapshot version {}, timestamp version {}",
        v.targets, v.snapshot, v.timestamp
    );
    warn_root_expiry(report.root_expires);
    Ok(())
}

/// Root is not re-signed by these commands; say so before it runs out.
fn warn_root_expiry(expires: UtcTime) {
    let now = UtcTime::now();
    if expires <= now {
        eprintln!("trustfs: warning: root metadata expired at {expires}; clients will refuse this repository");
    } else if expires.0 - now.0 < 30 * 86400 {
        eprintln!("trustfs: warning: root metadata expires at {expires}, in less than 30 days");
    }
}

//! `trustfs repo`: publisher commands. The work is done by [`crate::repo`]; this directory parses
//! arguments and prints reports.
//!
//! Files: `args.rs` the command line (the doc comments are `--help`); here the dispatch and the
//! report lines several commands print; then the commands by what they change: `targets.rs`
//! (init, add), `delegation.rs` (delegate, undelegate), `rotation.rs` (rotate, sign, publish,
//! status: keys and the staged root), `upkeep.rs` (refresh, prune).

mod args;
mod delegation;
mod rotation;
mod targets;
mod upkeep;

pub use args::{DelegateArgs, KeyArgs, RepoCommand};

use crate::repo;
use crate::schema::UtcTime;
use delegation::{delegate, undelegate};
use rotation::{publish, rotate, sign, status};
use targets::{add, init};
use upkeep::{prune, refresh};

pub fn run(cmd: RepoCommand) -> i32 {
    let (name, result) = match cmd {
        RepoCommand::Init { repo, common } => ("repo init", init(repo, common)),
        RepoCommand::Add {
            repo,
            content_dir,
            common,
            sha512,
            role,
            bins,
            reread,
        } => (
            "repo add",
            add(
                repo,
                content_dir,
                common,
                sha512,
                role,
                bins.unwrap_or_default(),
                reread,
            ),
        ),
        RepoCommand::Delegate(args) => ("repo delegate", delegate(args)),
        RepoCommand::Refresh { repo, common, role } => {
            ("repo refresh", refresh(repo, common, role.is_some()))
        }
        RepoCommand::Rotate {
            repo,
            common,
            role,
            public_keys,
            threshold,
            key_type,
            encrypt,
        } => (
            "repo rotate",
            rotate(
                repo,
                common,
                role,
                public_keys,
                threshold,
                key_type,
                encrypt,
            ),
        ),
        RepoCommand::Sign { repo, key, expect } => ("repo sign", sign(repo, key, expect)),
        RepoCommand::Undelegate { repo, common, role } => {
            ("repo undelegate", undelegate(repo, common, role))
        }
        RepoCommand::Prune {
            repo,
            keep,
            dry_run,
        } => ("repo prune", prune(repo, keep, dry_run)),
        RepoCommand::Publish { repo, common } => ("repo publish", publish(repo, common)),
        RepoCommand::Status { repo } => match status(repo) {
            Ok(true) => return super::EXIT_OK,
            Ok(false) => return super::EXIT_CONTENT,
            Err(e) => ("repo status", Err(e)),
        },
    };
    match result {
        Ok(()) => super::EXIT_OK,
        Err(e) => {
            super::report_error(name, &e);
            super::repo_exit_code(&e)
        }
    }
}

fn print_versions(v: &repo::Versions) {
    println!(
        "targets version {}, snapshot version {}, timestamp version {}",
        v.targets, v.snapshot, v.timestamp
    );
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

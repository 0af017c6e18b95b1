//! `repo refresh` and `repo prune`: new versions before the old ones expire, and old versions
//! no client needs removed.

use std::path::PathBuf;

use super::{print_versions, warn_root_expiry, KeyArgs};
use crate::repo::{self, display_name, Expiries, RepoError};

pub(super) fn refresh(
    repo: PathBuf,
    common: KeyArgs,
    resign_targets: bool,
) -> Result<(), RepoError> {
    let report = repo::refresh(&repo::RefreshOptions {
        repo,
        keydir: common.keys,
        expires: Expiries::from_specs(&common.expires)?,
        resign_targets,
    })?;
    let v = report.versions;
    for role in &report.resigned {
        println!("re-signed {role} (less than half its validity was left)");
    }
    print_versions(&v);
    for w in &report.warnings {
        eprintln!("trustfs: warning: {w}");
    }
    warn_root_expiry(report.root_expires);
    Ok(())
}

pub(super) fn prune(repo: PathBuf, keep: u64, dry_run: bool) -> Result<(), RepoError> {
    let r = repo::prune(&repo::PruneOptions {
        repo,
        keep,
        dry_run,
    })?;
    let verb = if dry_run { "would remove" } else { "removed" };
    for p in r.metadata.iter().chain(&r.targets) {
        println!("{verb} {}", display_name(p));
    }
    println!(
        "{verb} {} metadata files and {} target files ({} bytes)",
        r.metadata.len(),
        r.targets.len(),
        r.bytes
    );
    Ok(())
}

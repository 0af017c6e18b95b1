//! `repo refresh`: snapshot and timestamp (and, asked, targets and its hash bins) signed anew
//! with bumped versions, and delegated roles near expiry re-signed where KEYDIR holds their keys.

use std::path::PathBuf;

use crate::schema::UtcTime;

use super::atomic::RepoLock;
use super::bins;
use super::chain::{bump, publish_chain, RoleWrite, Versions};
use super::error::RepoError;
use super::expiries::Expiries;
use super::signing::Signers;
use super::state::RepoState;

/// Options of [`refresh`].
#[derive(Clone, Debug)]
pub struct RefreshOptions {
    pub repo: PathBuf,
    pub keydir: PathBuf,
    pub expires: Expiries,
    /// Also re-sign targets (new version and expiry, same targets).
    pub resign_targets: bool,
}

/// What [`refresh`] did.
#[derive(Clone, Debug)]
pub struct RefreshReport {
    pub versions: Versions,
    pub root_expires: UtcTime,
    /// Delegated roles signed anew (less than half their validity was left).
    pub resigned: Vec<String>,
    /// Delegated roles near expiry whose keys KEYDIR does not hold.
    pub warnings: Vec<String>,
}

/// Re-sign snapshot and timestamp with bumped versions and fresh expiry (and targets too with
/// `resign_targets`, and then, in a sharded repository, every hash bin). For cron jobs and CI
/// that keep a repository fresh. Delegated roles with less than half the delegated validity left
/// are re-signed too when KEYDIR holds their keys (the others are named in warnings).
pub fn refresh(opts: &RefreshOptions) -> Result<RefreshReport, RepoError> {
    let _lock = RepoLock::acquire(&opts.repo)?;
    let state = RepoState::load(&opts.repo)?;
    let roles: &[&str] = if opts.resign_targets {
        &["targets", "snapshot", "timestamp"]
    } else {
        &["snapshot", "timestamp"]
    };
    let signers = Signers::load(&state, &opts.keydir, roles)?;
    // With hash bins, "targets" is targets and its bins: every bin is signed anew too.
    let bins = match opts.resign_targets {
        true => bins::LoadedBins::load(&state)?,
        false => None,
    };
    let bin_keys = match &bins {
        Some(b) => bins::signing_keys(&opts.keydir, b)?,
        None => Vec::new(),
    };
    let mut writes = match &bins {
        Some(b) => bins::resign_all(&state, b, &bin_keys, &opts.expires)?,
        None => Vec::new(),
    };
    if opts.resign_targets {
        writes.push(RoleWrite::top_level(
            &state,
            &signers,
            state.targets.signed_value.clone(),
            &opts.expires,
        )?);
    }
    // Delegated roles with less than half their validity left are signed anew when KEYDIR holds
    // their keys; the others are named in a warning before they expire.
    let tree = super::roletree::RoleTree::load(&state)?;
    let now = UtcTime::now();
    let valid_for = opts.expires.delegated();
    let half = now.plus(valid_for / 2);
    let mut warnings = Vec::new();
    let mut due = Vec::new();
    for role in tree.names() {
        let r = tree.get(role)?;
        if bins::is_bin_of(&state, role).is_some() || r.md.expires() > half {
            continue;
        }
        // Never a reason to fail: refresh keeps snapshot and timestamp alive (cron, no
        // terminal), whatever a delegated role's keys are.
        match tree.signing_keys(&opts.keydir, role) {
            Ok(keys) => due.push((r, keys)),
            Err(RepoError::NotEnoughKeys { .. }) => warnings.push(format!(
                "delegated role {role} expires at {}; KEYDIR does not hold its keys (re-sign it with `trustfs repo add --role {role}` where they are)",
                r.md.expires()
            )),
            Err(e) => warnings.push(format!(
                "delegated role {role} expires at {} and cannot be re-signed here: {e}",
                r.md.expires()
            )),
        }
    }
    let mut resigned = Vec::new();
    for (r, keys) in &due {
        resigned.push(r.name.clone());
        writes.push(RoleWrite {
            name: r.name.clone(),
            value: r.md.signed_value.clone(),
            version: bump(&r.path, r.md.version())?,
            valid_for,
            keys: keys.iter().map(|(k, id)| (k, id.clone())).collect(),
        });
    }
    let versions = publish_chain(&state, &signers, writes, &opts.expires)?;
    Ok(RefreshReport {
        versions,
        root_expires: state.root.expires(),
        resigned,
        warnings,
    })
}

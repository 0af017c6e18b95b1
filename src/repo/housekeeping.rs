//! Repository housekeeping: removing a delegation (`repo undelegate`) and pruning metadata
//! versions and target files no client can still need (`repo prune`).
//!
//! What a client can need: every `N.root.json` (clients walk the root chain one version at a
//! time, so roots are never pruned); `timestamp.json`; the snapshot versions the current
//! timestamp and the `--keep` snapshots before it name, and every targets, delegated and
//! hash-bin version those snapshots list; every target file (under each hash it is published
//! by, and its chunk outboard `chunks/<sha256>`) that those targets versions list. A client in
//! the middle of an update — timestamp read,
//! snapshot or targets not yet — holds one of those. Everything else with a consistent-snapshot
//! name (`N.<role>.json`, `targets/…/<hash>.<name>`) is removed; files of other names are left
//! alone.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::schema::{Metadata, Snapshot, Targets};

use super::atomic::RepoLock;
use super::chain::{bump, publish_chain_removing, RoleWrite, Versions};
use super::error::RepoError;
use super::expiries::Expiries;
use super::roletree::{delegator_file, keyids_in_use, RoleTree};
use super::signing::Signers;
use super::state::{targets_dir, RepoState};

/// Options of [`undelegate`].
#[derive(Clone, Debug)]
pub struct UndelegateOptions {
    pub repo: PathBuf,
    pub keydir: PathBuf,
    /// The delegated role to remove.
    pub role: String,
    pub expires: Expiries,
}

/// Remove the delegation of `role` from its delegator: a new delegator version without the
/// role's entry (and without keys no other entry uses), and a snapshot that no longer lists the
/// role. A role that delegates further is refused (undelegate those first). Its metadata files
/// stay until `prune` removes them; clients no longer reach its targets.
pub fn undelegate(opts: &UndelegateOptions) -> Result<(String, Versions), RepoError> {
    let _lock = RepoLock::acquire(&opts.repo)?;
    let state = RepoState::load(&opts.repo)?;
    let tree = RoleTree::load(&state)?;
    let role = tree.get(&opts.role)?;
    if role
        .md
        .signed
        .delegations
        .as_ref()
        .is_some_and(|d| !d.roles().is_empty() || d.succinct_roles.is_some())
    {
        return Err(RepoError::InvalidArgument(format!(
            "{} delegates to other roles itself; remove those delegations first",
            opts.role
        )));
    }
    let delegator = role.delegator.clone();
    let (value, path, version) = delegator_file(&state, &tree, &delegator)?;
    let (mut value, path) = (value.clone(), path.clone());
    let malformed = |reason: &str| RepoError::Malformed {
        file: path.clone(),
        reason: reason.to_owned(),
    };
    let delegations = value
        .get_mut("delegations")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| malformed("no delegations"))?;
    let roles = delegations
        .get_mut("roles")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| malformed("delegations without a roles list"))?;
    roles.retain(|r| r.get("name").and_then(Value::as_str) != Some(opts.role.as_str()));
    let used = keyids_in_use(roles);
    if let Some(keys) = delegations.get_mut("keys").and_then(Value::as_object_mut) {
        keys.retain(|id, _| used.contains(id));
    }
    let top: &[&str] = if delegator == "targets" {
        &["targets", "snapshot", "timestamp"]
    } else {
        &["snapshot", "timestamp"]
    };
    let signers = Signers::load(&state, &opts.keydir, top)?;
    let delegator_keys;
    let write = if delegator == "targets" {
        RoleWrite::top_level(&state, &signers, value, &opts.expires)?
    } else {
        delegator_keys = tree.signing_keys(&opts.keydir, &delegator)?;
        RoleWrite {
            name: delegator.clone(),
            value,
            version: bump(&path, version)?,
            valid_for: opts.expires.delegated(),
            keys: delegator_keys
                .iter()
                .map(|(k, id)| (k, id.clone()))
                .collect(),
        }
    };
    let versions = publish_chain_removing(
        &state,
        &signers,
        vec![write],
        std::slice::from_ref(&opts.role),
        &opts.expires,
    )?;
    Ok((delegator, versions))
}

/// Options of [`prune`].
#[derive(Clone, Debug)]
pub struct PruneOptions {
    pub repo: PathBuf,
    /// Snapshot versions kept before the current one (and everything they list).
    pub keep: u64,
    /// Only report what would be removed.
    pub dry_run: bool,
}

/// What [`prune`] removed (or would remove).
#[derive(Clone, Debug, Default)]
pub struct PruneReport {
    pub metadata: Vec<PathBuf>,
    pub targets: Vec<PathBuf>,
    pub bytes: u64,
}

/// Remove what no client can still need; see the module documentation.
pub fn prune(opts: &PruneOptions) -> Result<PruneReport, RepoError> {
    let _lock = RepoLock::acquire(&opts.repo)?;
    let state = RepoState::load(&opts.repo)?;
    if !state.consistent {
        return Err(RepoError::InvalidArgument(
            "the repository does not use consistent snapshots: there are no old versions to prune"
                .into(),
        ));
    }
    let mdir = &state.metadata_dir;
    // The snapshots kept: the current one and `keep` before it (those still on disk).
    let current = state.snapshot.version();
    let mut keep_meta: HashSet<String> = HashSet::new();
    let mut keep_hashes: HashSet<String> = HashSet::new();
    // A kept targets version that cannot be read: its targets are unknown, so none is pruned.
    let mut targets_unknown = false;
    for v in current.saturating_sub(opts.keep)..=current {
        let name = format!("{v}.snapshot.json");
        let Ok(bytes) = fs::read(mdir.join(&name)) else {
            continue; // gone already: nothing of it to keep
        };
        let Ok(snap) = Metadata::<Snapshot>::from_slice(&name, &bytes) else {
            // Kept, but what it lists is unknown: prune no target file this time.
            keep_meta.insert(name);
            targets_unknown = true;
            continue;
        };
        keep_meta.insert(name);
        for (file, meta) in &snap.signed.meta {
            let Some(role) = file.strip_suffix(".json") else {
                continue;
            };
            let name = format!("{}.{role}.json", meta.version);
            // A listed file must stay even if it cannot be read now; its targets are unknown
            // then, so nothing is pruned from targets/ this time.
            match fs::read(mdir.join(&name))
                .ok()
                .and_then(|b| Metadata::<Targets>::from_slice(&name, &b).ok())
            {
                Some(t) => collect_hashes(&t.signed_value, &mut keep_hashes),
                None if v == current => {
                    return Err(RepoError::Malformed {
                        file: mdir.join(&name),
                        reason: "listed by the current snapshot but unreadable; nothing pruned"
                            .into(),
                    })
                }
                None => targets_unknown = true,
            }
            keep_meta.insert(name);
        }
    }
    let mut report = PruneReport::default();
    for e in fs::read_dir(mdir).map_err(|e| RepoError::io("list", mdir, e))? {
        let e = e.map_err(|err| RepoError::io("list", mdir, err))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let versioned = name.split_once('.').is_some_and(|(n, rest)| {
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && rest.ends_with(".json")
        });
        if !versioned || name.ends_with(".root.json") || keep_meta.contains(&name) {
            continue;
        }
        remove(&e.path(), opts.dry_run, &mut report.bytes)?;
        report.metadata.push(e.path());
    }
    let tdir = targets_dir(&opts.repo);
    let mut stack = if targets_unknown {
        Vec::new()
    } else {
        vec![tdir.clone()]
    };
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(path);
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((hash, _)) = name.split_once('.') else {
                continue;
            };
            let hashed = (hash.len() == 64 || hash.len() == 128)
                && hash.bytes().all(|b| b.is_ascii_hexdigit());
            if !hashed || keep_hashes.contains(&hash.to_ascii_lowercase()) {
                continue;
            }
            remove(&path, opts.dry_run, &mut report.bytes)?;
            report.targets.push(path);
        }
    }
    // Outboards (REPO/chunks/<sha256>) go with the content they describe.
    let cdir = super::content::chunks_dir(&tdir);
    if !targets_unknown {
        if let Ok(entries) = fs::read_dir(&cdir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_ascii_lowercase();
                let hashed = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
                if !hashed
                    || keep_hashes.contains(&name)
                    || !e.file_type().is_ok_and(|t| t.is_file())
                {
                    continue;
                }
                remove(&e.path(), opts.dry_run, &mut report.bytes)?;
                report.targets.push(e.path());
            }
        }
    }
    report.metadata.sort();
    report.targets.sort();
    Ok(report)
}

/// Every digest the targets listing in `signed` names (lowercase hex).
fn collect_hashes(signed: &Value, out: &mut HashSet<String>) {
    let Some(targets) = signed.get("targets").and_then(Value::as_object) else {
        return;
    };
    for info in targets.values() {
        if let Some(hashes) = info.get("hashes").and_then(Value::as_object) {
            for d in hashes.values().filter_map(Value::as_str) {
                out.insert(d.to_ascii_lowercase());
            }
        }
    }
}

fn remove(path: &Path, dry_run: bool, bytes: &mut u64) -> Result<(), RepoError> {
    *bytes += fs::symlink_metadata(path).map(|m| m.len()).unwrap_or(0);
    if dry_run {
        return Ok(());
    }
    fs::remove_file(path).map_err(|e| RepoError::io("remove", path, e))
}

//! Key rotation and signing by several people: `repo rotate`, `repo sign`, `repo publish`,
//! `repo status`.
//!
//! Rotating a top-level role writes root version N+1 listing the role's new keys (and
//! threshold), signed by a threshold of the *old* root keys — and, when root itself rotates, by a
//! threshold of the new ones too (TUF 1.0 §5.3.4) — then re-signs what the rotation invalidates:
//! targets (when its keys changed), snapshot and timestamp, with the new keys. Retired key files
//! move to `KEYDIR/retired/`; signatures by them no longer count anywhere.
//!
//! When KEYDIR does not hold enough of the keys the new root needs (a 2-of-3 root whose holders
//! each keep their key on their own machine), the new root is *staged* in `REPO/staged/`
//! instead of published: every holder reviews what it changes and adds a signature with
//! `trustfs repo sign REPO --key THEIR_KEY --expect DIGEST` (the body digest they reviewed;
//! nothing else needed on their machine), `trustfs repo status` says who signed and who is
//! missing, and `trustfs repo publish` writes it once both thresholds are met. A staged root
//! that no longer follows the published one (stale), or that clients would refuse, is refused.
//!
//! A delegated role is rotated through its delegator: `delegate` with the role's paths, flags
//! and the new keys (a new delegator version and a new version of the role, signed by them).
//!
//! `staged.rs` holds the staged root (`repo sign`, `repo publish`), `newroot.rs` signs, checks,
//! describes and publishes a new root version, `keyfiles.rs` finds, names and retires the key
//! files of a role, `status.rs` answers `repo status`.

mod keyfiles;
mod newroot;
mod staged;
mod status;

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::schema::{Key, KeyType, Root, SigningKey};

use super::atomic::{write_atomic, RepoLock};
use super::chain::{bump, Versions};
use super::delegate::{self, DelegateOptions, DelegatedPaths};
use super::error::{display_name, RepoError};
use super::expiries::{expiry, Expiries};
use super::keys;
use super::roletree::RoleTree;
use super::signing::{set_field, TOP_LEVEL_ROLES};
use super::state::{create_dir, RepoState};
use keyfiles::{available_keys, next_key_path, retire_files, role_keys};
use newroot::{check_new_root, publish_root, sign_root};
use staged::{existing_staged, staged_status};

pub use staged::{publish_staged, sign_staged, staged, staged_dir, StagedStatus};
pub use status::{status, RoleStatus};

/// Options of [`rotate`].
#[derive(Clone, Debug)]
pub struct RotateOptions {
    pub repo: PathBuf,
    pub keydir: PathBuf,
    /// The role whose keys are replaced: root, targets, snapshot, timestamp or a delegated role.
    pub role: String,
    /// The new keys as public key files (their private keys live elsewhere). Empty: one new key
    /// is generated into KEYDIR (`<role>`, else `<role>@N`).
    pub public_keys: Vec<PathBuf>,
    /// The role's new threshold (default: as before).
    pub threshold: Option<u64>,
    /// Type of a generated key.
    pub key_type: KeyType,
    /// Encrypt a generated key with a passphrase.
    pub encrypt: bool,
    pub expires: Expiries,
}

/// What [`rotate`] did.
#[derive(Clone, Debug, Default)]
pub struct RotateReport {
    pub role: String,
    pub new_keyids: Vec<String>,
    pub retired_keyids: Vec<String>,
    pub generated_keys: Vec<PathBuf>,
    /// The root version written (or staged), for a top-level role.
    pub root_version: Option<u64>,
    /// Set when the new root could not be signed by enough keys here and was staged.
    pub staged: Option<StagedStatus>,
    /// Versions written after the root (None when staged).
    pub versions: Option<Versions>,
    /// Key files moved to KEYDIR/retired.
    pub retired_files: Vec<PathBuf>,
}

/// Replace the keys of a role; see the module documentation.
pub fn rotate(opts: &RotateOptions) -> Result<RotateReport, RepoError> {
    if !TOP_LEVEL_ROLES.contains(&opts.role.as_str()) {
        return rotate_delegated(opts);
    }
    let role = opts.role.as_str();
    let count = opts.public_keys.len().max(1) as u64;
    let _lock = RepoLock::acquire(&opts.repo)?;
    let state = RepoState::load(&opts.repo)?;
    if let Some(s) = existing_staged(&opts.repo)? {
        return Err(RepoError::InvalidArgument(format!(
            "{} is staged and not published yet: publish it (trustfs repo publish) or remove it before another rotation",
            display_name(&s)
        )));
    }
    let old = state
        .root
        .signed
        .roles
        .get(role)
        .ok_or_else(|| RepoError::Internal(format!("root lists no {role} role")))?;
    let threshold = opts.threshold.unwrap_or(old.threshold);
    if threshold < 1 || threshold > count {
        return Err(RepoError::InvalidArgument(format!(
            "the {role} role would have {count} key(s) and threshold {threshold}: it could never be signed (give as many keys as the threshold, with --key)"
        )));
    }
    // The new keys, checked before anything is written.
    let mut new_keys: Vec<(Key, Option<SigningKey>)> = Vec::new();
    for p in &opts.public_keys {
        let k = keys::load_public(p)?;
        k.usable().map_err(|reason| RepoError::KeyFile {
            path: p.clone(),
            reason,
        })?;
        if new_keys.iter().any(|(n, _)| n.identity() == k.identity()) {
            return Err(RepoError::InvalidArgument(format!(
                "{} is given twice: a threshold counts distinct keys",
                display_name(p)
            )));
        }
        new_keys.push((k, None));
    }
    let old_identities: BTreeSet<Vec<u8>> = role_keys(&state.root.signed, role)
        .iter()
        .map(|k| k.identity())
        .collect();
    if new_keys
        .iter()
        .any(|(k, _)| old_identities.contains(&k.identity()))
    {
        return Err(RepoError::InvalidArgument(format!(
            "a --key given is already a key of the {role} role; a rotation replaces keys"
        )));
    }
    let mut report = RotateReport {
        role: role.to_owned(),
        ..Default::default()
    };
    if new_keys.is_empty() {
        create_dir(&opts.keydir, 0o700)?;
        let path = next_key_path(&opts.keydir, role);
        keys::generate_with(&path, false, opts.key_type, opts.encrypt)?;
        report.generated_keys.push(path.clone());
        match keys::load(&path) {
            Ok(key) => new_keys.push((key.public_key(), Some(key))),
            Err(e) => {
                forget_generated(&report.generated_keys);
                return Err(e);
            }
        }
    }
    let generated = report.generated_keys.clone();
    rotate_top_level(opts, state, new_keys, threshold, report).inspect_err(|_| {
        // Never used for anything: a failed rotation leaves no key behind.
        forget_generated(&generated);
    })
}

/// Remove key files generated for a rotation that did not happen.
fn forget_generated(paths: &[PathBuf]) {
    for p in paths {
        let _ = fs::remove_file(p);
        let _ = fs::remove_file(keys::pub_path(p));
    }
}

fn rotate_top_level(
    opts: &RotateOptions,
    state: RepoState,
    new_keys: Vec<(Key, Option<SigningKey>)>,
    threshold: u64,
    mut report: RotateReport,
) -> Result<RotateReport, RepoError> {
    let role = opts.role.as_str();
    let old = state
        .root
        .signed
        .roles
        .get(role)
        .ok_or_else(|| RepoError::Internal(format!("root lists no {role} role")))?
        .clone();

    // Root N+1: the role's new keys and threshold; keys no role uses any more dropped.
    let n = state.root.version();
    let version = bump(&state.metadata_dir.join(format!("{n}.root.json")), n)?;
    let mut value = state.root.signed_value.clone();
    let new_ids: Vec<String> = new_keys.iter().map(|(k, _)| k.compute_keyid()).collect();
    {
        let roles = value
            .get_mut("roles")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| RepoError::Internal("root without roles".into()))?;
        let entry = roles
            .get_mut(role)
            .and_then(Value::as_object_mut)
            .ok_or_else(|| RepoError::Internal(format!("root lists no {role} role")))?;
        entry.insert("keyids".into(), json!(new_ids));
        entry.insert("threshold".into(), json!(threshold));
        let used: BTreeSet<String> = roles
            .values()
            .filter_map(|r| r.get("keyids").and_then(Value::as_array))
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        let keys_obj = value
            .get_mut("keys")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| RepoError::Internal("root without keys".into()))?;
        keys_obj.retain(|id, _| used.contains(id));
        for (k, _) in &new_keys {
            keys_obj.insert(k.compute_keyid(), k.to_value());
        }
    }
    set_field(&mut value, "version", json!(version))?;
    set_field(&mut value, "expires", json!(expiry(opts.expires.root)))?;
    report.new_keyids = new_ids.clone();
    report.retired_keyids = old.keyids.clone();
    report.root_version = Some(version);

    // Signed by every root key at hand: old ones from KEYDIR, new generated ones.
    let new_root: Root = serde_json::from_value(value.clone())
        .map_err(|e| RepoError::Internal(format!("new root: {e}")))?;
    let mut signers: Vec<(SigningKey, String)> =
        available_keys(&opts.keydir, "root", &state.root.signed)?;
    if role == "root" {
        for ((_, sk), id) in new_keys.into_iter().zip(&new_ids) {
            if let Some(sk) = sk {
                signers.push((sk, id.clone()));
            }
        }
        for (sk, id) in available_keys(&opts.keydir, "root", &new_root)? {
            if !signers.iter().any(|(_, i)| *i == id) {
                signers.push((sk, id));
            }
        }
    }
    let md = sign_root(value, &signers)?;
    check_new_root(&state.root.signed, &md)?;
    let status = staged_status(
        &staged_dir(&opts.repo).join(format!("{version}.root.json")),
        &state.root.signed,
        &md,
    )?;
    if !status.complete() {
        create_dir(&staged_dir(&opts.repo), 0o755)?;
        write_atomic(&status.path, &md.to_bytes(), 0o644)?;
        report.staged = Some(status);
        return Ok(report);
    }
    let (versions, retired) = publish_root(state, md, &opts.keydir, &opts.expires)?;
    report.versions = Some(versions);
    report.retired_files = retired;
    Ok(report)
}

/// A delegated role: new keys through its delegator (see [`delegate::delegate`]).
fn rotate_delegated(opts: &RotateOptions) -> Result<RotateReport, RepoError> {
    let role = opts.role.as_str();
    let (entry, delegator) = {
        let _lock = RepoLock::acquire(&opts.repo)?;
        let state = RepoState::load(&opts.repo)?;
        let tree = RoleTree::load(&state)?;
        let r = tree.get(role)?;
        (r.entry.clone(), r.delegator.clone())
    };
    let count = opts.public_keys.len().max(1) as u64;
    let threshold = opts.threshold.unwrap_or(entry.threshold);
    if threshold < 1 || threshold > count {
        return Err(RepoError::InvalidArgument(format!(
            "the {role} role would have {count} key(s) and threshold {threshold}: it could never be signed (give as many keys as the threshold, with --key)"
        )));
    }
    let paths = match (&entry.paths, &entry.path_hash_prefixes) {
        (Some(p), _) => DelegatedPaths::Paths(p.clone()),
        (None, Some(h)) => DelegatedPaths::HashPrefixes(h.clone()),
        (None, None) => DelegatedPaths::Paths(Vec::new()),
    };
    let mut report = RotateReport {
        role: role.to_owned(),
        retired_keyids: entry.keyids.clone(),
        ..Default::default()
    };
    let public_keys = if opts.public_keys.is_empty() {
        create_dir(&opts.keydir, 0o700)?;
        let path = next_key_path(&opts.keydir, role);
        keys::generate_with(&path, false, opts.key_type, opts.encrypt)?;
        report.generated_keys.push(path.clone());
        vec![keys::pub_path(&path)]
    } else {
        opts.public_keys.clone()
    };
    let generated = report.generated_keys.clone();
    let d = delegate::delegate(&DelegateOptions {
        repo: opts.repo.clone(),
        keydir: opts.keydir.clone(),
        role: role.to_owned(),
        delegator,
        paths,
        threshold,
        terminating: entry.terminating,
        public_keys,
        expires: opts.expires.clone(),
    })
    .inspect_err(|_| forget_generated(&generated))?;
    report.new_keyids = d.keyids;
    report.versions = Some(d.versions);
    let now = {
        let state = RepoState::load(&opts.repo)?;
        let tree = RoleTree::load(&state)?;
        let r = tree.get(role)?;
        r.entry
            .keyids
            .iter()
            .filter_map(|id| r.keys.get(id).and_then(|v| Key::from_value(v).ok()))
            .collect::<Vec<_>>()
    };
    report.retired_files = retire_files(&opts.keydir, role, &now)?;
    Ok(report)
}

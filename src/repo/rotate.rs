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

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::schema::{verify_threshold, Key, KeyType, Metadata, Root, Signature, SigningKey};

use super::atomic::{write_atomic, RepoLock};
use super::chain::{bump, publish_chain, RoleWrite, Versions};
use super::delegate::{self, DelegateOptions, DelegatedPaths, RoleTree};
use super::error::{display_name, RepoError};
use super::expiries::{expiry, Expiries};
use super::keys;
use super::signing::{keyfile, set_field, Signers, TOP_LEVEL_ROLES};
use super::state::{create_dir, RepoState};

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

/// Where the signatures of a staged root stand.
#[derive(Clone, Debug)]
pub struct StagedStatus {
    pub path: PathBuf,
    pub version: u64,
    /// sha256 of the canonical `signed` part: what each signer confirms (`repo sign --expect`).
    pub digest: String,
    /// What the staged root changes against the published one, one line each.
    pub changes: Vec<String>,
    /// The published root's root role: (threshold, signed key ids, missing key ids).
    pub old: (u64, Vec<String>, Vec<String>),
    /// The staged root's own root role.
    pub new: (u64, Vec<String>, Vec<String>),
}

impl StagedStatus {
    pub fn complete(&self) -> bool {
        self.old.1.len() as u64 >= self.old.0 && self.new.1.len() as u64 >= self.new.0
    }
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

/// The staging directory of a repository.
pub fn staged_dir(repo: &Path) -> PathBuf {
    repo.join("staged")
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

/// Write root `md` (its thresholds checked), then targets (if its keys changed), snapshot and
/// timestamp signed by the keys it lists; move key files it no longer lists to KEYDIR/retired.
/// Every key needed is loaded before the first write.
fn publish_root(
    mut state: RepoState,
    md: Metadata<Root>,
    keydir: &Path,
    expires: &Expiries,
) -> Result<(Versions, Vec<PathBuf>), RepoError> {
    let old_root = state.root.signed.clone();
    let targets_changed = role_ids(&old_root, "targets") != role_ids(&md.signed, "targets");
    let path = state
        .metadata_dir
        .join(format!("{}.root.json", md.version()));
    let bytes = md.to_bytes();
    state.root = md;
    let roles: &[&str] = if targets_changed {
        &["targets", "snapshot", "timestamp"]
    } else {
        &["snapshot", "timestamp"]
    };
    let signers = Signers::load(&state, keydir, roles)?;
    let writes = match targets_changed {
        true => vec![RoleWrite::top_level(
            &state,
            &signers,
            state.targets.signed_value.clone(),
            expires,
        )?],
        false => Vec::new(),
    };
    write_atomic(&path, &bytes, 0o644)?;
    let versions = publish_chain(&state, &signers, writes, expires)?;
    let mut retired = Vec::new();
    for role in TOP_LEVEL_ROLES {
        retired.extend(retire_files(
            keydir,
            role,
            &role_keys(&state.root.signed, role),
        )?);
    }
    Ok((versions, retired))
}

/// Add a signature by the key at `key` to the staged root of `repo`, if the staged root is the
/// one the signer reviewed: `expect` is the sha256 of its canonical `signed` part, as `rotate`
/// and `status` print it (with what it changes).
pub fn sign_staged(repo: &Path, key_path: &Path, expect: &str) -> Result<StagedStatus, RepoError> {
    let _lock = RepoLock::acquire(repo)?;
    let state = RepoState::load(repo)?;
    let (path, mut md) = load_staged(repo, &state)?;
    let digest = body_digest(&md)?;
    if !digest.eq_ignore_ascii_case(expect.trim()) {
        return Err(RepoError::InvalidArgument(format!(
            "{} is not the root you expect: its body is sha256 {digest}, not {expect}; it changes:\n  {}",
            display_name(&path),
            describe_changes(&state.root.signed, &md.signed).join("\n  ")
        )));
    }
    check_new_root(&state.root.signed, &md)?;
    let key = keys::load(key_path)?;
    let ours = key.public_key();
    let keyid = [&state.root.signed, &md.signed]
        .iter()
        .find_map(|root| {
            let listed = root.roles.get("root")?;
            listed.keyids.iter().find(|id| {
                root.keys
                    .get(*id)
                    .and_then(|v| Key::from_value(v).ok())
                    .is_some_and(|k| k.identity() == ours.identity())
            })
        })
        .cloned()
        .ok_or_else(|| {
            RepoError::InvalidArgument(format!(
                "{}: this key (key id {}) is neither a root key of the published root nor of the staged one; refusing to sign",
                display_name(key_path),
                ours.compute_keyid()
            ))
        })?;
    let msg = md
        .canonical_signed()
        .map_err(|e| RepoError::Internal(e.to_string()))?;
    let sig = key.sign(&msg);
    if ours.verify(&msg, &sig) != Ok(true) {
        return Err(RepoError::Internal(format!(
            "the signature by {} does not verify with its public key",
            display_name(key_path)
        )));
    }
    md.signatures.retain(|s| s.keyid != keyid);
    md.signatures.push(Signature {
        keyid,
        sig: hex::encode(sig),
    });
    write_atomic(&path, &md.to_bytes(), 0o644)?;
    staged_status(&path, &state.root.signed, &md)
}

/// Publish the staged root of `repo` once both thresholds are met (then as [`rotate`] does).
pub fn publish_staged(
    repo: &Path,
    keydir: &Path,
    expires: &Expiries,
) -> Result<(u64, Versions, Vec<PathBuf>), RepoError> {
    let _lock = RepoLock::acquire(repo)?;
    let state = RepoState::load(repo)?;
    let (path, md) = load_staged(repo, &state)?;
    let status = staged_status(&path, &state.root.signed, &md)?;
    check_new_root(&state.root.signed, &md)?;
    // The same checks a client makes (§5.3.4): a threshold of the old root and of the new one.
    for (which, root) in [("published", &state.root.signed), ("staged", &md.signed)] {
        let listed = root
            .roles
            .get("root")
            .ok_or_else(|| RepoError::Internal("root lists no root role".into()))?;
        verify_threshold("root", &md, &listed.keyids, listed.threshold, &root.keys).map_err(
            |source| {
                RepoError::InvalidArgument(format!(
                    "{} is short of signatures by the {which} root's keys ({source}); signed: {} of {} old, {} of {} new",
                    display_name(&path),
                    status.old.1.len(),
                    status.old.0,
                    status.new.1.len(),
                    status.new.0
                ))
            },
        )?;
    }
    let version = md.version();
    let (versions, retired) = publish_root(state, md, keydir, expires)?;
    fs::remove_file(&path).map_err(|e| RepoError::io("remove", &path, e))?;
    Ok((version, versions, retired))
}

/// The staged root, if any, and its signature status against the published root.
pub fn staged(repo: &Path) -> Result<Option<StagedStatus>, RepoError> {
    let state = RepoState::load(repo)?;
    if existing_staged(repo)?.is_none() {
        return Ok(None);
    }
    let (path, md) = load_staged(repo, &state)?;
    staged_status(&path, &state.root.signed, &md).map(Some)
}

/// One top-level role as published: version, expiry, threshold, key ids, and which of them
/// signed the current file.
#[derive(Clone, Debug)]
pub struct RoleStatus {
    pub role: String,
    pub version: u64,
    pub expires: String,
    pub threshold: u64,
    pub keyids: Vec<String>,
    pub listed_by: Vec<String>,
}

/// The published top-level roles of `repo`.
pub fn status(repo: &Path) -> Result<Vec<RoleStatus>, RepoError> {
    let state = RepoState::load(repo)?;
    let root = &state.root.signed;
    let entry = |role: &str, version: u64, expires: String, msg: &[u8], sigs: &[Signature]| {
        let listed = root.roles.get(role);
        let keyids = listed.map(|l| l.keyids.clone()).unwrap_or_default();
        RoleStatus {
            role: role.to_owned(),
            version,
            expires,
            threshold: listed.map_or(0, |l| l.threshold),
            listed_by: valid_signers(msg, sigs, &keyids, root),
            keyids,
        }
    };
    Ok(vec![
        entry(
            "root",
            state.root.version(),
            state.root.expires().to_string(),
            &state
                .root
                .canonical_signed()
                .map_err(|e| RepoError::Internal(e.to_string()))?,
            &state.root.signatures,
        ),
        entry(
            "targets",
            state.targets.version(),
            state.targets.expires().to_string(),
            &state
                .targets
                .canonical_signed()
                .map_err(|e| RepoError::Internal(e.to_string()))?,
            &state.targets.signatures,
        ),
        entry(
            "snapshot",
            state.snapshot.version(),
            state.snapshot.expires().to_string(),
            &state
                .snapshot
                .canonical_signed()
                .map_err(|e| RepoError::Internal(e.to_string()))?,
            &state.snapshot.signatures,
        ),
        entry(
            "timestamp",
            state.timestamp.version(),
            state.timestamp.expires().to_string(),
            &state
                .timestamp
                .canonical_signed()
                .map_err(|e| RepoError::Internal(e.to_string()))?,
            &state.timestamp.signatures,
        ),
    ])
}

/// The key ids of `keyids` whose signature over `msg` verifies, each key counted once.
fn valid_signers(msg: &[u8], sigs: &[Signature], keyids: &[String], root: &Root) -> Vec<String> {
    let mut counted: BTreeSet<Vec<u8>> = BTreeSet::new();
    keyids
        .iter()
        .filter(|id| {
            let Some(k) = root.keys.get(*id).and_then(|v| Key::from_value(v).ok()) else {
                return false;
            };
            sigs.iter().any(|s| {
                s.keyid == **id
                    && hex::decode(&s.sig).is_ok_and(|sig| k.verify(msg, &sig) == Ok(true))
            }) && counted.insert(k.identity())
        })
        .cloned()
        .collect()
}

/// The staged root file, whatever its version.
fn existing_staged(repo: &Path) -> Result<Option<PathBuf>, RepoError> {
    let dir = staged_dir(repo);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RepoError::io("list", &dir, e)),
    };
    for e in entries {
        let e = e.map_err(|err| RepoError::io("list", &dir, err))?;
        if e.file_name().to_string_lossy().ends_with(".root.json") {
            return Ok(Some(e.path()));
        }
    }
    Ok(None)
}

/// The staged root: it must be the version after the published one (else stale).
fn load_staged(repo: &Path, state: &RepoState) -> Result<(PathBuf, Metadata<Root>), RepoError> {
    let published = state.root.version();
    let path = existing_staged(repo)?.ok_or_else(|| {
        RepoError::InvalidArgument(format!(
            "nothing is staged in {} (a rotation stages a root there when it needs signatures from elsewhere)",
            display_name(&staged_dir(repo))
        ))
    })?;
    let bytes = read_staged(&path)?;
    let md = Metadata::<Root>::from_slice(&display_name(&path).to_string(), &bytes).map_err(
        |source| RepoError::Untrusted {
            file: path.clone(),
            source,
        },
    )?;
    if Some(md.version()) != published.checked_add(1)
        || path.file_name() != Some(format!("{}.root.json", md.version()).as_ref())
    {
        return Err(RepoError::InvalidArgument(format!(
            "{} is stale: it is root version {}, but the published root is version {published} (stage the rotation again)",
            display_name(&path),
            md.version()
        )));
    }
    Ok((path, md))
}

/// Which keys of the published root's root role and of `md`'s own have signed `md`.
fn staged_status(
    path: &Path,
    published: &Root,
    md: &Metadata<Root>,
) -> Result<StagedStatus, RepoError> {
    let msg = md
        .canonical_signed()
        .map_err(|e| RepoError::Internal(e.to_string()))?;
    let side = |root: &Root| -> (u64, Vec<String>, Vec<String>) {
        let Some(listed) = root.roles.get("root") else {
            return (1, Vec::new(), Vec::new());
        };
        let mut signed = Vec::new();
        let mut missing = Vec::new();
        // One key counts once, whatever ids it is listed under (as clients count).
        let mut counted: BTreeSet<Vec<u8>> = BTreeSet::new();
        for id in &listed.keyids {
            let key = root.keys.get(id).and_then(|v| Key::from_value(v).ok());
            let ok = key.as_ref().is_some_and(|k| {
                md.signatures.iter().any(|s| {
                    s.keyid == *id
                        && hex::decode(&s.sig).is_ok_and(|sig| k.verify(&msg, &sig) == Ok(true))
                }) && counted.insert(k.identity())
            });
            if ok {
                signed.push(id.clone());
            } else {
                missing.push(id.clone());
            }
        }
        (listed.threshold, signed, missing)
    };
    Ok(StagedStatus {
        path: path.to_owned(),
        version: md.version(),
        digest: body_digest(md)?,
        changes: describe_changes(published, &md.signed),
        old: side(published),
        new: side(&md.signed),
    })
}

fn sign_root(value: Value, keys: &[(SigningKey, String)]) -> Result<Metadata<Root>, RepoError> {
    let signed: Root = serde_json::from_value(value.clone())
        .map_err(|e| RepoError::Internal(format!("new root: {e}")))?;
    let mut md = Metadata {
        signed,
        signed_value: value,
        signatures: Vec::new(),
    };
    let msg = md
        .canonical_signed()
        .map_err(|e| RepoError::Internal(e.to_string()))?;
    let mut seen = BTreeSet::new();
    for (key, id) in keys {
        if seen.insert(id.clone()) {
            let sig = key.sign(&msg);
            // Never a signature a client cannot verify (see publish::sign_all).
            if key.public_key().verify(&msg, &sig) != Ok(true) {
                return Err(RepoError::Internal(format!(
                    "the signature by root key {id} does not verify with its public key"
                )));
            }
            md.signatures.push(Signature {
                keyid: id.clone(),
                sig: hex::encode(sig),
            });
        }
    }
    Ok(md)
}

/// The keys root lists for `role`.
fn role_keys(root: &Root, role: &str) -> Vec<Key> {
    role_ids(root, role)
        .iter()
        .filter_map(|id| root.keys.get(id).and_then(|v| Key::from_value(v).ok()))
        .collect()
}

fn role_ids(root: &Root, role: &str) -> Vec<String> {
    root.roles
        .get(role)
        .map(|r| r.keyids.clone())
        .unwrap_or_default()
}

/// The key files in KEYDIR for `role` whose keys `root` lists for it (any number, even none).
fn available_keys(
    keydir: &Path,
    role: &str,
    root: &Root,
) -> Result<Vec<(SigningKey, String)>, RepoError> {
    let listed = root
        .roles
        .get(role)
        .map(|r| r.keyids.clone())
        .unwrap_or_default();
    match super::signing::find_role_keys(keydir, role, &listed, 0, &root.keys, "") {
        Ok(found) => {
            if role == "root" {
                super::signing::warn_unencrypted_root(keydir)?;
            }
            Ok(found)
        }
        Err(RepoError::NotEnoughKeys { .. }) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// `KEYDIR/<role>` if free, else the first free `KEYDIR/<role>@N`.
fn next_key_path(keydir: &Path, role: &str) -> PathBuf {
    let free = |p: &Path| {
        fs::symlink_metadata(p).is_err() && fs::symlink_metadata(keys::pub_path(p)).is_err()
    };
    let base = keyfile(keydir, role);
    if free(&base) {
        return base;
    }
    (2u32..)
        .map(|n| keyfile(keydir, &format!("{role}@{n}")))
        .find(|p| free(p))
        .unwrap_or(base)
}

/// Move KEYDIR's key files of `role` whose keys are not among `keep` (the keys the role has
/// now, compared by key material: key ids are labels) to `KEYDIR/retired/` (with their `.pub`),
/// so nothing signs with them again by accident.
fn retire_files(keydir: &Path, role: &str, keep: &[Key]) -> Result<Vec<PathBuf>, RepoError> {
    let keep_keys: BTreeSet<Vec<u8>> = keep.iter().map(Key::identity).collect();
    let mut moved = Vec::new();
    let Ok(entries) = fs::read_dir(keydir) else {
        return Ok(moved);
    };
    let retired = keydir.join("retired");
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let numbered = name
            .strip_prefix(role)
            .and_then(|r| r.strip_prefix('@'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if name != role && !numbered {
            continue;
        }
        let public = keys::pub_path(&e.path());
        let (id, identity) = match keys::load_public(&public) {
            Ok(k) => (k.compute_keyid(), k.identity()),
            // Without a .pub the private key would have to be decrypted to tell: left alone.
            Err(_) => continue,
        };
        if keep_keys.contains(&identity) {
            continue;
        }
        create_dir(&retired, 0o700)?;
        let stamp = id.get(..12).unwrap_or(&id).to_owned();
        for from in [e.path(), public] {
            let file = from
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let to = retired.join(format!("{file}.{stamp}"));
            fs::rename(&from, &to).map_err(|err| RepoError::io("retire", &from, err))?;
            moved.push(to);
        }
    }
    Ok(moved)
}

/// The largest staged root read (clients download at most this much root metadata too).
const MAX_STAGED: u64 = 5_000_000;

/// Read the staged file: a regular file (never a FIFO or device), bounded.
fn read_staged(path: &Path) -> Result<Vec<u8>, RepoError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| RepoError::io("open", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| RepoError::io("stat", path, e))?;
    if !meta.is_file() || meta.len() > MAX_STAGED {
        return Err(RepoError::InvalidArgument(format!(
            "{}: not a regular file of at most {MAX_STAGED} bytes",
            display_name(path)
        )));
    }
    let mut out = Vec::new();
    file.take(MAX_STAGED)
        .read_to_end(&mut out)
        .map_err(|e| RepoError::io("read", path, e))?;
    Ok(out)
}

/// sha256 of the canonical `signed` part of `md`: what every signature covers.
pub fn body_digest(md: &Metadata<Root>) -> Result<String, RepoError> {
    use sha2::Digest;
    let msg = md
        .canonical_signed()
        .map_err(|e| RepoError::Internal(e.to_string()))?;
    Ok(hex::encode(sha2::Sha256::digest(&msg)))
}

/// What `new` changes against `published`, one line each (roles' keys and thresholds, expiry,
/// the fields clients rely on).
pub fn describe_changes(published: &Root, new: &Root) -> Vec<String> {
    let mut out = Vec::new();
    let mut roles: BTreeSet<&String> = published.roles.keys().collect();
    roles.extend(new.roles.keys());
    let short = |ids: &[String]| {
        ids.iter()
            .map(|i| i.get(..12).unwrap_or(i).to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for role in roles {
        let (a, b) = (published.roles.get(role), new.roles.get(role));
        match (a, b) {
            (Some(a), Some(b)) if a.keyids == b.keyids && a.threshold == b.threshold => {}
            (Some(a), Some(b)) => out.push(format!(
                "{role}: keys [{}] threshold {} -> keys [{}] threshold {}",
                short(&a.keyids),
                a.threshold,
                short(&b.keyids),
                b.threshold
            )),
            (None, Some(b)) => out.push(format!("{role}: added, keys [{}]", short(&b.keyids))),
            (Some(_), None) => out.push(format!("{role}: REMOVED")),
            (None, None) => {}
        }
    }
    out.push(format!(
        "expires: {} -> {}",
        published.common.expires, new.common.expires
    ));
    if published.consistent_snapshot != new.consistent_snapshot {
        out.push(format!(
            "consistent_snapshot: {:?} -> {:?}",
            published.consistent_snapshot, new.consistent_snapshot
        ));
    }
    if published.common.spec_version != new.common.spec_version {
        out.push(format!(
            "spec_version: {} -> {}",
            published.common.spec_version, new.common.spec_version
        ));
    }
    out
}

/// Refuse a new root that clients would refuse or that would break the repository: expired, a
/// changed `consistent_snapshot` or `spec_version`, a top-level role missing, a threshold its
/// distinct usable keys cannot meet, a key trustfs cannot verify. Checked by `rotate`, `sign`
/// and `publish`.
fn check_new_root(published: &Root, md: &Metadata<Root>) -> Result<(), RepoError> {
    let bad = |why: String| {
        RepoError::InvalidArgument(format!("the new root version {} {why}", md.version()))
    };
    // What a client parses: the bytes, read back.
    Metadata::<Root>::from_slice("new root", &md.to_bytes())
        .map_err(|e| bad(format!("would not parse: {e}")))?;
    let new = &md.signed;
    if md.expires() <= crate::schema::UtcTime::now() {
        return Err(bad(format!("has expired ({})", new.common.expires)));
    }
    if new.consistent_snapshot != published.consistent_snapshot {
        return Err(bad("changes consistent_snapshot".into()));
    }
    if new.common.spec_version != published.common.spec_version {
        return Err(bad("changes spec_version".into()));
    }
    for role in TOP_LEVEL_ROLES {
        let listed = new
            .roles
            .get(role)
            .ok_or_else(|| bad(format!("lists no {role} role")))?;
        let mut distinct = BTreeSet::new();
        for id in &listed.keyids {
            let key = new
                .keys
                .get(id)
                .and_then(|v| Key::from_value(v).ok())
                .ok_or_else(|| bad(format!("lists key id {id} for {role} without the key")))?;
            key.usable()
                .map_err(|e| bad(format!("lists for {role} {e}")))?;
            distinct.insert(key.identity());
        }
        if listed.threshold < 1 || listed.threshold > distinct.len() as u64 {
            return Err(bad(format!(
                "gives {role} threshold {} with {} distinct key(s)",
                listed.threshold,
                distinct.len()
            )));
        }
    }
    Ok(())
}

//! `repo init`: a new repository, its role keys and its first metadata.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map};

use crate::schema::{Root, SigningKey, Snapshot, Targets, Timestamp, SPEC_VERSION};

use super::atomic::{write_atomic, RepoLock};
use super::chain::timestamp_value;
use super::error::RepoError;
use super::expiries::{expiry, Expiries};
use super::keys;
use super::signing::{keyfile, sign, warn_unencrypted_root, TOP_LEVEL_ROLES};
use super::state::{create_dir, latest_root, metadata_dir, targets_dir};

/// Options of [`init`].
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// The repository directory; `metadata/` and `targets/` are created in it.
    pub repo: PathBuf,
    /// The role key directory: `root`, `targets`, `snapshot`, `timestamp` (generated if missing).
    pub keydir: PathBuf,
    pub expires: Expiries,
}

/// What [`init`] did.
#[derive(Clone, Debug)]
pub struct InitReport {
    /// Key files that did not exist and were generated.
    pub generated_keys: Vec<PathBuf>,
    /// Metadata files written, in order.
    pub written: Vec<PathBuf>,
}

/// Create a new repository: role keys (generated where missing), `1.root.json`,
/// `1.targets.json` (no targets), `1.snapshot.json` and `timestamp.json`, consistent snapshots on.
/// Only versioned roots are written (no `root.json`): clients pin `1.root.json` out of band and
/// fetch `N.root.json` to rotate.
pub fn init(opts: &InitOptions) -> Result<InitReport, RepoError> {
    let mdir = metadata_dir(&opts.repo);
    let initialised = |mdir: &Path| -> Result<bool, RepoError> {
        Ok(latest_root(mdir)?.is_some() || mdir.join("timestamp.json").exists())
    };
    if initialised(&mdir)? {
        return Err(RepoError::AlreadyInitialised { path: mdir });
    }
    // Keys first: a key that cannot be loaded (a wrong passphrase) stops init before anything
    // of the repository is created.
    create_dir(&opts.keydir, 0o700)?;
    let mut generated_keys = Vec::new();
    let mut signers = BTreeMap::new();
    for role in TOP_LEVEL_ROLES {
        let path = keyfile(&opts.keydir, role);
        let (key, generated) = keys::load_or_generate(&path)?;
        if generated {
            generated_keys.push(path);
        }
        signers.insert(role, key);
    }
    warn_unencrypted_root(&opts.keydir)?;
    create_dir(&opts.repo, 0o755)?;
    let _lock = RepoLock::acquire(&opts.repo)?;
    create_dir(&mdir, 0o755)?;
    create_dir(&targets_dir(&opts.repo), 0o755)?;
    if initialised(&mdir)? {
        return Err(RepoError::AlreadyInitialised { path: mdir });
    }
    let mut key_objs = Map::new();
    let mut roles = Map::new();
    let mut keyids = BTreeMap::new();
    for (role, key) in &signers {
        let public = key.public_key();
        let keyid = public.compute_keyid();
        key_objs.insert(keyid.clone(), public.to_value());
        roles.insert(
            role.to_string(),
            json!({"keyids": [keyid.clone()], "threshold": 1}),
        );
        keyids.insert(*role, keyid);
    }
    let signer = |role: &str| -> Result<(&SigningKey, &str), RepoError> {
        match (signers.get(role), keyids.get(role)) {
            (Some(k), Some(id)) => Ok((k, id.as_str())),
            _ => Err(RepoError::Internal(format!("no {role} key loaded"))),
        }
    };

    let root = json!({
        "_type": "root",
        "spec_version": SPEC_VERSION,
        "version": 1,
        "expires": expiry(opts.expires.root),
        "consistent_snapshot": true,
        "keys": key_objs,
        "roles": roles,
    });
    let targets = json!({
        "_type": "targets",
        "spec_version": SPEC_VERSION,
        "version": 1,
        "expires": expiry(opts.expires.targets),
        "targets": {},
    });
    let (k, id) = signer("root")?;
    let (_, root_bytes) = sign::<Root>(root, k, id)?;
    let (k, id) = signer("targets")?;
    let (_, targets_bytes) = sign::<Targets>(targets, k, id)?;
    let snapshot = json!({
        "_type": "snapshot",
        "spec_version": SPEC_VERSION,
        "version": 1,
        "expires": expiry(opts.expires.snapshot),
        "meta": {"targets.json": {"version": 1}},
    });
    let (k, id) = signer("snapshot")?;
    let (_, snapshot_bytes) = sign::<Snapshot>(snapshot, k, id)?;
    let timestamp = timestamp_value(None, 1, 1, &snapshot_bytes, opts.expires.timestamp);
    let (k, id) = signer("timestamp")?;
    let (_, timestamp_bytes) = sign::<Timestamp>(timestamp, k, id)?;

    let mut written = Vec::new();
    for (name, bytes) in [
        ("1.root.json", &root_bytes),
        ("1.targets.json", &targets_bytes),
        ("1.snapshot.json", &snapshot_bytes),
        ("timestamp.json", &timestamp_bytes),
    ] {
        let path = mdir.join(name);
        write_atomic(&path, bytes, 0o644)?;
        written.push(path);
    }
    Ok(InitReport {
        generated_keys,
        written,
    })
}

//! Writing in the order clients rely on: targets-type roles ([`RoleWrite`]), then snapshot, then
//! timestamp last ([`publish_chain`]); the versions a command wrote.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::schema::{SigningKey, Snapshot, Targets, Timestamp, SPEC_VERSION};

use super::atomic::write_atomic;
use super::error::RepoError;
use super::expiries::{expiry, Expiries};
use super::signing::{set_field, sign_all, Signers};
use super::state::RepoState;

/// The versions a command wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Versions {
    pub targets: u64,
    pub snapshot: u64,
    pub timestamp: u64,
}

/// A targets-type role (top-level or delegated) to sign and write: its new `signed` value
/// (`version` and `expires` are set from the fields here) and the keys to sign it with.
pub(crate) struct RoleWrite<'k> {
    pub(crate) name: String,
    pub(crate) value: Value,
    pub(crate) version: u64,
    pub(crate) valid_for: Duration,
    pub(crate) keys: Vec<(&'k SigningKey, String)>,
}

impl<'k> RoleWrite<'k> {
    /// The top-level targets role, one version up, signed with the targets key.
    pub(crate) fn top_level(
        state: &RepoState,
        signers: &'k Signers,
        value: Value,
        expires: &Expiries,
    ) -> Result<RoleWrite<'k>, RepoError> {
        let keys = signers
            .get("targets")?
            .into_iter()
            .map(|(k, id)| (k, id.to_owned()))
            .collect();
        Ok(RoleWrite {
            name: "targets".into(),
            value,
            version: bump(&state.targets_path, state.targets.version())?,
            valid_for: expires.targets,
            keys,
        })
    }
}

/// The `signed` value of a new targets-type role, listing nothing (`version` and `expires` are
/// set when it is written, see [`RoleWrite`]).
pub(crate) fn fresh_role_value() -> Value {
    json!({
        "_type": "targets",
        "spec_version": SPEC_VERSION,
        "version": 1,
        "expires": "",
        "targets": {},
    })
}

/// Sign and write the given targets roles (in order), then snapshot and timestamp. Snapshot's
/// `meta` gets an entry `<name>.json` per role written; every other entry is carried over.
pub(crate) fn publish_chain(
    state: &RepoState,
    signers: &Signers,
    roles: Vec<RoleWrite>,
    expires: &Expiries,
) -> Result<Versions, RepoError> {
    publish_chain_removing(state, signers, roles, &[], expires)
}

/// [`publish_chain`], and snapshot's `meta` loses the entries of the roles named in `removed`
/// (`<name>.json`: roles no delegation lists any more).
pub(crate) fn publish_chain_removing(
    state: &RepoState,
    signers: &Signers,
    roles: Vec<RoleWrite>,
    removed: &[String],
    expires: &Expiries,
) -> Result<Versions, RepoError> {
    let mdir = &state.metadata_dir;
    let mut targets_version = state.targets.version();
    let mut entries: Vec<(String, Value)> = Vec::new();
    for role in roles {
        let mut value = role.value;
        set_field(&mut value, "version", json!(role.version))?;
        set_field(&mut value, "expires", json!(expiry(role.valid_for)))?;
        let keys: Vec<(&SigningKey, &str)> =
            role.keys.iter().map(|(k, id)| (*k, id.as_str())).collect();
        let (_, bytes) = sign_all::<Targets>(value, &keys)?;
        let path = mdir.join(state.meta_name(&role.name, role.version));
        // Keep the form the snapshot already uses for this role (for a new role: the form of
        // targets.json): version only (python-tuf's default), or version, length and sha256 when
        // the existing entry lists length or hashes.
        let file = format!("{}.json", role.name);
        let meta = &state.snapshot.signed.meta;
        let old = meta.get(&file).or_else(|| meta.get("targets.json"));
        let pinned = old.is_some_and(|m| m.length.is_some() || m.hashes.is_some());
        // Without a length in snapshot, clients download at most their default limit: metadata
        // above it would be written only to be refused by every client.
        let limit = crate::trust::Limits::default().targets_max_bytes;
        if !pinned && bytes.len() as u64 > limit {
            return Err(RepoError::TooLarge {
                file: path,
                role: role.name,
                size: bytes.len() as u64,
                limit,
            });
        }
        write_atomic(&path, &bytes, 0o644)?;
        if role.name == "targets" {
            targets_version = role.version;
        }
        let entry = if pinned {
            json!({"version": role.version, "length": bytes.len(),
               "hashes": {"sha256": hex::encode(Sha256::digest(&bytes))}})
        } else {
            json!({"version": role.version})
        };
        entries.push((file, entry));
    }

    let snapshot_version = bump(&state.snapshot_path, state.snapshot.version())?;
    let mut snapshot = state.snapshot.signed_value.clone();
    if let Some(meta) = snapshot.get_mut("meta").and_then(Value::as_object_mut) {
        for name in removed {
            meta.remove(&format!("{name}.json"));
        }
    }
    if !entries.is_empty() {
        let meta = snapshot
            .get_mut("meta")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| RepoError::Internal("snapshot without meta".into()))?;
        for (file, entry) in entries {
            meta.insert(file, entry);
        }
    }
    set_field(&mut snapshot, "version", json!(snapshot_version))?;
    set_field(&mut snapshot, "expires", json!(expiry(expires.snapshot)))?;
    let (_, snapshot_bytes) = sign_all::<Snapshot>(snapshot, &signers.get("snapshot")?)?;
    write_atomic(
        &mdir.join(state.meta_name("snapshot", snapshot_version)),
        &snapshot_bytes,
        0o644,
    )?;

    let timestamp_version = bump(&state.timestamp_path, state.timestamp.version())?;
    let timestamp = timestamp_value(
        Some(&state.timestamp.signed_value),
        timestamp_version,
        snapshot_version,
        &snapshot_bytes,
        expires.timestamp,
    );
    let (_, timestamp_bytes) = sign_all::<Timestamp>(timestamp, &signers.get("timestamp")?)?;
    // Last: only now does any client see the new snapshot and targets.
    write_atomic(&mdir.join("timestamp.json"), &timestamp_bytes, 0o644)?;
    Ok(Versions {
        targets: targets_version,
        snapshot: snapshot_version,
        timestamp: timestamp_version,
    })
}

/// A timestamp `signed` value pointing at `snapshot_bytes` (version, length and sha256; the
/// length and hash are optional in TUF and make a substituted snapshot detectable before parsing).
/// Unknown fields of `old` are kept.
pub(super) fn timestamp_value(
    old: Option<&Value>,
    version: u64,
    snapshot_version: u64,
    snapshot_bytes: &[u8],
    valid_for: Duration,
) -> Value {
    let meta = json!({"snapshot.json": {
        "version": snapshot_version,
        "length": snapshot_bytes.len(),
        "hashes": {"sha256": hex::encode(Sha256::digest(snapshot_bytes))},
    }});
    let mut v = match old {
        Some(Value::Object(o)) => Value::Object(o.clone()),
        _ => json!({"_type": "timestamp", "spec_version": SPEC_VERSION}),
    };
    if let Value::Object(o) = &mut v {
        o.insert("version".into(), json!(version));
        o.insert("expires".into(), json!(expiry(valid_for)));
        o.insert("meta".into(), meta);
    }
    v
}

pub(crate) fn bump(file: &Path, version: u64) -> Result<u64, RepoError> {
    version.checked_add(1).ok_or_else(|| RepoError::Malformed {
        file: file.to_owned(),
        reason: "version cannot be incremented".into(),
    })
}

//! A new root version: signed by the root keys at hand, refused when clients would refuse it,
//! described line by line for the people who sign it, and published with what it invalidates
//! (targets when its keys changed, snapshot, timestamp) signed anew.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::schema::{Key, Metadata, Root, Signature, SigningKey};

use super::keyfiles::{retire_files, role_ids, role_keys};
use crate::repo::atomic::write_atomic;
use crate::repo::chain::{publish_chain, RoleWrite, Versions};
use crate::repo::error::RepoError;
use crate::repo::expiries::Expiries;
use crate::repo::signing::{Signers, TOP_LEVEL_ROLES};
use crate::repo::state::RepoState;

/// Write root `md` (its thresholds checked), then targets (if its keys changed), snapshot and
/// timestamp signed by the keys it lists; move key files it no longer lists to KEYDIR/retired.
/// Every key needed is loaded before the first write.
pub(super) fn publish_root(
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

pub(super) fn sign_root(
    value: Value,
    keys: &[(SigningKey, String)],
) -> Result<Metadata<Root>, RepoError> {
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
            // Never a signature a client cannot verify (see signing::sign_all).
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
pub(super) fn check_new_root(published: &Root, md: &Metadata<Root>) -> Result<(), RepoError> {
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

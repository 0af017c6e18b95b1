//! `repo status`: each published top-level role's version, expiry, threshold and keys, and which
//! of them signed the current file.

use std::collections::BTreeSet;
use std::path::Path;

use crate::schema::{Key, Root, Signature};

use super::super::error::RepoError;
use super::super::state::RepoState;

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

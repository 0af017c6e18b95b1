//! `repo status`: each published top-level role's version, expiry, threshold and keys, and which
//! of them signed the current file.

use std::collections::BTreeSet;
use std::path::Path;

use crate::schema::{Key, Metadata, Root, Signature, Signed};

use crate::repo::error::RepoError;
use crate::repo::state::RepoState;

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
    Ok(vec![
        role_status(root, "root", &state.root)?,
        role_status(root, "targets", &state.targets)?,
        role_status(root, "snapshot", &state.snapshot)?,
        role_status(root, "timestamp", &state.timestamp)?,
    ])
}

/// The top-level role `role` as published in `md`, with the keys `root` lists for it.
fn role_status<T: Signed>(
    root: &Root,
    role: &str,
    md: &Metadata<T>,
) -> Result<RoleStatus, RepoError> {
    let msg = md
        .canonical_signed()
        .map_err(|e| RepoError::Internal(e.to_string()))?;
    let listed = root.roles.get(role);
    let keyids = listed.map(|l| l.keyids.clone()).unwrap_or_default();
    Ok(RoleStatus {
        role: role.to_owned(),
        version: md.version(),
        expires: md.expires().to_string(),
        threshold: listed.map_or(0, |l| l.threshold),
        listed_by: valid_signers(&msg, &md.signatures, &keyids, root),
        keyids,
    })
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

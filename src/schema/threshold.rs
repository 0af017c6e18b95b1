//! The signature threshold check, shared by root, top-level and delegated roles.
//!
//! A role is trusted when at least `threshold` *distinct* keys listed for it made a valid signature
//! over the canonical `signed` bytes. Key ids are labels: each key id counts once, and two key ids
//! naming the same public key count once too (two labels do not make two signers).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::error::SchemaError;
use super::keys::Key;
use super::metadata::{Metadata, Signed};

/// Check that `metadata` carries valid signatures from `threshold` distinct keys among `keyids`,
/// with the keys taken from `keys` (a root's or a delegating role's `keys` object).
pub fn verify_threshold<T: Signed>(
    role: &str,
    metadata: &Metadata<T>,
    keyids: &[String],
    threshold: u64,
    keys: &BTreeMap<String, Value>,
) -> Result<(), SchemaError> {
    let message = metadata.canonical_signed()?;
    let mut details = Vec::new();
    let mut counted_ids = BTreeSet::new();
    let mut counted_keys = BTreeSet::new();
    for keyid in keyids {
        if !counted_ids.insert(keyid.as_str()) {
            continue;
        }
        let Some(sig) = metadata.signatures.iter().find(|s| &s.keyid == keyid) else {
            continue;
        };
        let key = match keys.get(keyid).map(Key::from_value) {
            Some(Ok(k)) => k,
            Some(Err(e)) => {
                details.push(format!("key {}: {e}", short(keyid)));
                continue;
            }
            None => {
                details.push(format!(
                    "key {} is listed for the role but not defined",
                    short(keyid)
                ));
                continue;
            }
        };
        let Ok(sig_bytes) = hex::decode(&sig.sig) else {
            details.push(format!("key {}: signature is not hex", short(keyid)));
            continue;
        };
        match key.verify(&message, &sig_bytes) {
            Ok(true) => {
                if counted_keys.insert(key.identity()) {
                    if counted_keys.len() as u64 >= threshold {
                        return Ok(());
                    }
                } else {
                    details.push(format!(
                        "key {} repeats a key already counted",
                        short(keyid)
                    ));
                }
            }
            Ok(false) => details.push(format!("key {}: bad signature", short(keyid))),
            Err(e) => details.push(format!("key {}: {e}", short(keyid))),
        }
    }
    if metadata.signatures.is_empty() {
        details.push("no signatures".into());
    }
    Err(SchemaError::Threshold {
        role: role.to_owned(),
        needed: threshold,
        valid: counted_keys.len() as u64,
        details,
    })
}

fn short(keyid: &str) -> &str {
    keyid.get(..12).unwrap_or(keyid)
}

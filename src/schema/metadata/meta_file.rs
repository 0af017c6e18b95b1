//! [`MetaFile`]: the entry timestamp and snapshot list for each metadata file they vouch for.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::hex_digests::check_hashes;

/// A `meta` entry of timestamp or snapshot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MetaFile {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

pub(super) fn check_meta(name: &str, m: &MetaFile) -> Result<(), String> {
    if m.version < 1 {
        return Err(format!("meta {name:?}: version must be at least 1"));
    }
    if let Some(h) = &m.hashes {
        check_hashes(&format!("meta {name:?}"), h)?;
    }
    Ok(())
}

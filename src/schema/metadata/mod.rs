//! The four top-level TUF 1.0 roles and delegated targets roles, as typed views over the parsed
//! JSON. The raw `signed` value is kept next to the typed view: signatures are checked over its
//! canonical form, so fields trustfs does not know are kept and still covered.
//!
//! Here: what every role shares ([`Common`], [`Signed`], [`RoleType`]) and the file around a role
//! ([`Metadata`]: parse, wrap, canonical bytes, write). Each role in its own file: `root.rs`,
//! `timestamp.rs`, `snapshot.rs` (and `meta_file.rs`, the entry both list), `targets.rs`,
//! `delegations.rs` and `succinct.rs` (the hash bins of TAP 15); `hex_digests.rs` the hex digests.

mod delegations;
mod hex_digests;
mod meta_file;
mod root;
mod snapshot;
mod succinct;
mod targets;
#[cfg(test)]
mod tests;
mod timestamp;

pub use delegations::{DelegatedRole, Delegations};
pub use hex_digests::{decode_hex, hex_eq, is_hex};
pub use meta_file::MetaFile;
pub use root::{RoleKeys, Root};
pub use snapshot::Snapshot;
pub use succinct::SuccinctRoles;
pub use targets::{TargetFile, Targets};
pub use timestamp::Timestamp;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::cjson;
use super::error::SchemaError;
use super::time::UtcTime;

/// The specification major version trustfs implements.
pub const SPEC_MAJOR: &str = "1";
/// The spec version trustfs writes.
pub const SPEC_VERSION: &str = "1.0.31";

/// One entry of `signatures`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Signature {
    pub keyid: String,
    pub sig: String,
}

/// The role a metadata file claims to be (`signed._type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleType {
    Root,
    Targets,
    Snapshot,
    Timestamp,
}

impl RoleType {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleType::Root => "root",
            RoleType::Targets => "targets",
            RoleType::Snapshot => "snapshot",
            RoleType::Timestamp => "timestamp",
        }
    }
}

/// Fields every role has.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Common {
    #[serde(rename = "_type")]
    pub type_: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: String,
}

/// Accessors every typed role offers.
pub trait Signed: serde::de::DeserializeOwned + Serialize {
    const TYPE: RoleType;
    fn common(&self) -> &Common;
    fn common_mut(&mut self) -> &mut Common;
    /// Role-specific structural checks beyond types (thresholds ≥ 1, hashes hex, ...).
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A parsed metadata file: the typed view, the raw `signed` value and the signatures.
#[derive(Clone, Debug)]
pub struct Metadata<T> {
    pub signed: T,
    pub signed_value: Value,
    pub signatures: Vec<Signature>,
}

impl<T: Signed> Metadata<T> {
    /// Parse `bytes` as metadata of role type `T`. `file` names the file in errors.
    pub fn from_slice(file: &str, bytes: &[u8]) -> Result<Self, SchemaError> {
        let malformed = |rule: String| SchemaError::Malformed {
            file: file.to_owned(),
            rule,
        };
        let mut value: Value =
            serde_json::from_slice(bytes).map_err(|e| malformed(format!("not valid JSON: {e}")))?;
        let obj = value
            .as_object_mut()
            .ok_or_else(|| malformed("top level must be a JSON object".into()))?;
        let signed_value = obj
            .remove("signed")
            .ok_or_else(|| malformed("no \"signed\" object".into()))?;
        if !signed_value.is_object() {
            return Err(malformed("\"signed\" must be a JSON object".into()));
        }
        let sigs = obj
            .remove("signatures")
            .ok_or_else(|| malformed("no \"signatures\" list".into()))?;
        let signatures: Vec<Signature> =
            serde_json::from_value(sigs).map_err(|e| malformed(format!("\"signatures\": {e}")))?;
        let mut keyids = std::collections::BTreeSet::new();
        for s in &signatures {
            if !keyids.insert(s.keyid.as_str()) {
                return Err(malformed(format!("two signatures from key id {}", s.keyid)));
            }
        }
        let type_ = signed_value
            .get("_type")
            .and_then(Value::as_str)
            .unwrap_or("");
        if type_ != T::TYPE.as_str() {
            return Err(malformed(format!(
                "expected a {} role, but _type is {type_:?}",
                T::TYPE.as_str()
            )));
        }
        // Deserialized from a borrow of the value (a clone of a large targets role costs as
        // much as the parse).
        let signed = T::deserialize(&signed_value)
            .map_err(|e| malformed(format!("{} metadata: {e}", T::TYPE.as_str())))?;
        let common = signed.common();
        let major = common.spec_version.split('.').next().unwrap_or("");
        if major != SPEC_MAJOR || common.spec_version.split('.').count() < 2 {
            return Err(malformed(format!(
                "spec_version {:?} is not supported (trustfs implements {SPEC_MAJOR}.x)",
                common.spec_version
            )));
        }
        if common.version < 1 {
            return Err(malformed("version must be at least 1".into()));
        }
        UtcTime::parse(&common.expires).map_err(|e| malformed(format!("expires: {e}")))?;
        signed.validate().map_err(malformed)?;
        // Every signature must at least be hex, or the file is malformed.
        for s in &signatures {
            hex::decode(&s.sig)
                .map_err(|_| malformed(format!("signature of key id {} is not hex", s.keyid)))?;
        }
        Ok(Metadata {
            signed,
            signed_value,
            signatures,
        })
    }

    /// Wrap a freshly built role (publisher side); the raw value is derived from it.
    pub fn new(signed: T) -> Result<Self, SchemaError> {
        let signed_value = serde_json::to_value(&signed).map_err(|e| SchemaError::Malformed {
            file: T::TYPE.as_str().into(),
            rule: e.to_string(),
        })?;
        Ok(Metadata {
            signed,
            signed_value,
            signatures: Vec::new(),
        })
    }

    /// The bytes signatures are made over: the canonical form of the parsed `signed` value.
    pub fn canonical_signed(&self) -> Result<Vec<u8>, SchemaError> {
        cjson::to_canonical(&self.signed_value).map_err(|e| SchemaError::Malformed {
            file: T::TYPE.as_str().into(),
            rule: e.to_string(),
        })
    }

    pub fn version(&self) -> u64 {
        self.signed.common().version
    }

    /// Expiry time (validated at parse time).
    pub fn expires(&self) -> UtcTime {
        // from_slice and the publisher both validate `expires`; fall back to the epoch (expired)
        // rather than panic should that ever not hold.
        UtcTime::parse(&self.signed.common().expires).unwrap_or(UtcTime(0))
    }

    /// Serialize for writing: `{"signatures": [...], "signed": {...}}`, pretty-printed like
    /// python-tuf's JSONSerializer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let v = serde_json::json!({"signed": self.signed_value, "signatures": self.signatures});
        let mut out = serde_json::to_vec_pretty(&v).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

/// A metadata file, whatever its role, for commands that just need to look.
pub fn peek_type(bytes: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    v.get("signed")?.get("_type")?.as_str().map(str::to_owned)
}

//! The four top-level TUF 1.0 roles and delegated targets roles, as typed views over the parsed
//! JSON. The raw `signed` value is kept next to the typed view: signatures are checked over its
//! canonical form, so fields trustfs does not know are kept and still covered.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::cjson;
use super::error::SchemaError;
use super::keys::Key;
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

/// Keys and threshold of one top-level role in root.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoleKeys {
    pub keyids: Vec<String>,
    pub threshold: u64,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Root {
    #[serde(flatten)]
    pub common: Common,
    #[serde(default)]
    pub consistent_snapshot: Option<bool>,
    pub keys: BTreeMap<String, Value>,
    pub roles: BTreeMap<String, RoleKeys>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

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

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Timestamp {
    #[serde(flatten)]
    pub common: Common,
    pub meta: BTreeMap<String, MetaFile>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(flatten)]
    pub common: Common,
    pub meta: BTreeMap<String, MetaFile>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One entry of `targets`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TargetFile {
    pub length: u64,
    pub hashes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<Value>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A delegated targets role as listed in `delegations.roles`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DelegatedRole {
    pub name: String,
    pub keyids: Vec<String>,
    pub threshold: u64,
    #[serde(default)]
    pub terminating: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hash_prefixes: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Delegations {
    pub keys: BTreeMap<String, Value>,
    pub roles: Vec<DelegatedRole>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Targets {
    #[serde(flatten)]
    pub common: Common,
    pub targets: BTreeMap<String, TargetFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegations: Option<Delegations>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
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

impl Signed for Root {
    const TYPE: RoleType = RoleType::Root;
    fn common(&self) -> &Common {
        &self.common
    }
    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }
    fn validate(&self) -> Result<(), String> {
        for (keyid, key) in &self.keys {
            Key::from_value(key).map_err(|e| format!("key {keyid}: {e}"))?;
        }
        for name in ["root", "targets", "snapshot", "timestamp"] {
            let role = self
                .roles
                .get(name)
                .ok_or_else(|| format!("root lists no {name:?} role"))?;
            check_role_keys(name, &role.keyids, role.threshold, &self.keys)?;
        }
        Ok(())
    }
}

impl Signed for Timestamp {
    const TYPE: RoleType = RoleType::Timestamp;
    fn common(&self) -> &Common {
        &self.common
    }
    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }
    fn validate(&self) -> Result<(), String> {
        if self.meta.len() != 1 || !self.meta.contains_key("snapshot.json") {
            return Err("timestamp meta must list exactly \"snapshot.json\"".into());
        }
        self.meta.iter().try_for_each(|(n, m)| check_meta(n, m))
    }
}

impl Signed for Snapshot {
    const TYPE: RoleType = RoleType::Snapshot;
    fn common(&self) -> &Common {
        &self.common
    }
    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }
    fn validate(&self) -> Result<(), String> {
        self.meta.iter().try_for_each(|(n, m)| check_meta(n, m))
    }
}

impl Signed for Targets {
    const TYPE: RoleType = RoleType::Targets;
    fn common(&self) -> &Common {
        &self.common
    }
    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }
    fn validate(&self) -> Result<(), String> {
        for (path, t) in &self.targets {
            crate::index::TargetPath::parse(path).map_err(|e| format!("target {path:?}: {e}"))?;
            check_hashes(&format!("target {path:?}"), &t.hashes)?;
        }
        if let Some(d) = &self.delegations {
            for (keyid, key) in &d.keys {
                Key::from_value(key).map_err(|e| format!("delegated key {keyid}: {e}"))?;
            }
            let mut names = std::collections::BTreeSet::new();
            for role in &d.roles {
                if !names.insert(role.name.as_str()) {
                    return Err(format!("delegated role {:?} is listed twice", role.name));
                }
                if ["root", "targets", "snapshot", "timestamp"].contains(&role.name.as_str()) {
                    return Err(format!("a delegated role may not be named {:?}", role.name));
                }
                // Role names become file names and URL components; they are always
                // percent-encoded there (trust::quote), so only emptiness and NUL are refused.
                if role.name.is_empty() || role.name.contains('\0') {
                    return Err(format!(
                        "delegated role name {:?} is empty or contains NUL",
                        role.name
                    ));
                }
                check_role_keys(&role.name, &role.keyids, role.threshold, &d.keys)?;
                match (&role.paths, &role.path_hash_prefixes) {
                    (Some(_), Some(_)) => {
                        return Err(format!(
                            "delegated role {:?} sets both paths and path_hash_prefixes",
                            role.name
                        ))
                    }
                    (None, Some(prefixes)) => {
                        for p in prefixes {
                            if !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                                return Err(format!(
                                    "delegated role {:?}: path hash prefix {p:?} is not hex",
                                    role.name
                                ));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

fn check_role_keys(
    role: &str,
    keyids: &[String],
    threshold: u64,
    keys: &BTreeMap<String, Value>,
) -> Result<(), String> {
    if threshold < 1 {
        return Err(format!(
            "role {role:?} has threshold {threshold}; it must be at least 1"
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for k in keyids {
        if !seen.insert(k) {
            return Err(format!("role {role:?} lists key id {k} twice"));
        }
        if !keys.contains_key(k) {
            return Err(format!(
                "role {role:?} lists key id {k}, which is not among the keys"
            ));
        }
    }
    Ok(())
}

fn check_meta(name: &str, m: &MetaFile) -> Result<(), String> {
    if m.version < 1 {
        return Err(format!("meta {name:?}: version must be at least 1"));
    }
    if let Some(h) = &m.hashes {
        check_hashes(&format!("meta {name:?}"), h)?;
    }
    Ok(())
}

fn check_hashes(what: &str, hashes: &BTreeMap<String, String>) -> Result<(), String> {
    if hashes.is_empty() {
        return Err(format!("{what} lists no hashes"));
    }
    for (alg, h) in hashes {
        if hex::decode(h).is_err() {
            return Err(format!("{what}: {alg} hash {h:?} is not hex"));
        }
    }
    Ok(())
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
        let signed: T = serde_json::from_value(signed_value.clone())
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

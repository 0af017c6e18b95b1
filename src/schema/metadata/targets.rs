//! The targets role (top-level or delegated): the target files and the delegations it makes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::hex_digests::check_hashes;
use super::root::check_role_keys;
use super::{Common, Delegations, RoleType, Signed};
use crate::schema::{Key, TargetPath};

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
            TargetPath::parse(path).map_err(|e| format!("target {path:?}: {e}"))?;
            check_hashes(&format!("target {path:?}"), &t.hashes)?;
        }
        if let Some(d) = &self.delegations {
            for (keyid, key) in &d.keys {
                Key::from_value(key).map_err(|e| format!("delegated key {keyid}: {e}"))?;
            }
            match (&d.roles, &d.succinct_roles) {
                (Some(_), Some(_)) => {
                    return Err(
                        "delegations sets both roles and succinct_roles; exactly one is allowed"
                            .into(),
                    )
                }
                (None, None) => {
                    return Err(
                        "delegations sets neither roles nor succinct_roles; exactly one is needed"
                            .into(),
                    )
                }
                _ => {}
            }
            if let Some(s) = &d.succinct_roles {
                s.check()?;
                check_role_keys(
                    &format!("{}-*", s.name_prefix),
                    &s.keyids,
                    s.threshold,
                    &d.keys,
                )?;
            }
            let mut names = std::collections::BTreeSet::new();
            for role in d.roles() {
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

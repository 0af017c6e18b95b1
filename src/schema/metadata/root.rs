//! The root role: the keys and thresholds of the four top-level roles.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Common, RoleType, Signed};
use crate::schema::Key;

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

impl Root {
    /// The keys and threshold of top-level role `name` ("root", "targets", "snapshot",
    /// "timestamp"; a validated root lists all four).
    pub fn role(&self, name: &str) -> Result<&RoleKeys, String> {
        self.roles
            .get(name)
            .ok_or_else(|| format!("root lists no {name:?} role"))
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

pub(super) fn check_role_keys(
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

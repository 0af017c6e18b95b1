//! A targets role's `delegations`: named delegated roles, or succinct hash bins.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::SuccinctRoles;

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

/// A targets role's `delegations`: keys, and exactly one of `roles` (named roles with paths or
/// hash prefixes) and `succinct_roles` (hash bins, TAP 15).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Delegations {
    pub keys: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<DelegatedRole>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succinct_roles: Option<SuccinctRoles>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Delegations {
    /// The named delegated roles (none when the delegation is succinct).
    pub fn roles(&self) -> &[DelegatedRole] {
        self.roles.as_deref().unwrap_or(&[])
    }
}

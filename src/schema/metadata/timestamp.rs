//! The timestamp role: the one current snapshot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::meta_file::check_meta;
use super::{Common, MetaFile, RoleType, Signed};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Timestamp {
    #[serde(flatten)]
    pub common: Common,
    pub meta: BTreeMap<String, MetaFile>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Timestamp {
    /// The snapshot it names (a validated timestamp lists exactly "snapshot.json").
    pub fn snapshot(&self) -> Result<&MetaFile, String> {
        self.meta
            .get("snapshot.json")
            .ok_or_else(|| "timestamp meta does not list \"snapshot.json\"".to_owned())
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

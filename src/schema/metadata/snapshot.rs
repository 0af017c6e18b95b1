//! The snapshot role: the versions of every targets metadata file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::meta_file::check_meta;
use super::{Common, MetaFile, RoleType, Signed};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(flatten)]
    pub common: Common,
    pub meta: BTreeMap<String, MetaFile>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
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

//! Verification records: which version of a backing file was verified into which object, and
//! which objects were verified during this mount; the names content is known by.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};

use super::MountState;
use crate::index::TargetInfo;
use crate::mount::chunked::tree_key;
use crate::mount::store::object_name;
use crate::source::FileKey;

/// What the mount remembers about verifications: which version of the backing file at a path
/// was verified into which object (one record per path, its latest verified version), and which
/// objects were verified during this mount (the `verified` xattr). Bounded: one record per path
/// of the backing tree, at most [`MAX_RECORDS`] (the oldest half dropped beyond; a dropped record
/// costs one hash pass), and verified objects the store no longer holds are pruned.
#[derive(Debug, Default)]
pub(super) struct Records {
    /// Backing path → (the version verified, its object, when recorded).
    by_path: HashMap<OsString, (FileKey, String, u64)>,
    pub(super) verified: HashSet<String>,
    tick: u64,
    prune_at: usize,
}

/// Paths with a verification record at most.
const MAX_RECORDS: usize = 262_144;

impl Records {
    const MIN_PRUNE_AT: usize = 1024;

    /// `object` was verified (from the backing file at `path`, version `key`, if local).
    pub(super) fn insert(
        &mut self,
        source: Option<(&OsStr, FileKey)>,
        object: &str,
        keep: &dyn Fn(&str) -> bool,
    ) {
        if let Some((path, key)) = source {
            self.tick += 1;
            let record = (key, object.to_owned(), self.tick);
            self.by_path.insert(path.to_owned(), record);
            if self.by_path.len() > MAX_RECORDS {
                let mut ticks: Vec<u64> = self.by_path.values().map(|v| v.2).collect();
                ticks.sort_unstable();
                let cut = ticks[ticks.len() / 2];
                self.by_path.retain(|_, v| v.2 > cut);
            }
        }
        if self.verified.insert(object.to_owned())
            && self.verified.len() > self.prune_at.max(Self::MIN_PRUNE_AT)
        {
            self.verified.retain(|o| keep(o));
            self.prune_at = 2 * self.verified.len();
        }
    }

    /// Drop records of objects the store (or trees the tree cache) no longer holds.
    pub(super) fn prune(&mut self, keep: &dyn Fn(&str) -> bool) {
        self.by_path.retain(|_, (_, o, _)| keep(o));
        self.verified.retain(|o| keep(o));
    }

    /// The object verified from exactly version `key` of the backing file at `path`, if any.
    pub(super) fn object_of(&self, path: &OsStr, key: &FileKey) -> Option<&str> {
        self.by_path
            .get(path)
            .filter(|(k, _, _)| k == key)
            .map(|(_, o, _)| o.as_str())
    }

    pub(super) fn len(&self) -> usize {
        self.by_path.len() + self.verified.len()
    }
}

impl MountState {
    /// Whether the store (or, chunk-verified reads, the tree cache) still holds `object`.
    pub(super) fn keeps(&self, object: &str) -> bool {
        match &self.chunks {
            Some(c) => c.holds(object),
            None => self.store.contains(object),
        }
    }

    /// The name verification records and the `verified` xattr know content by: the object name,
    /// or (chunk-verified reads) the tree key.
    pub(super) fn content_key(&self, info: &TargetInfo) -> String {
        match &self.chunks {
            Some(_) => tree_key(info),
            None => object_name(info),
        }
    }
}

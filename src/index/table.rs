//! [`TargetIndex`]: the flat, sorted table of every target and its lookups by path and by
//! position.

use super::{Hashes, IndexBuilder, TargetInfo};

/// Every target the trusted metadata vouches for, after delegation resolution: a sorted, flat
/// table, built once ([`IndexBuilder`]) and then only read.
///
/// A target costs one 64-byte record plus its path's bytes (one shared buffer, in path order);
/// the few targets with more than a sha256 or with a `custom` object keep those in a side table,
/// and signed chunk roots (32 bytes each) are in another. At a million targets that is about 70 MB where a map of owned entries took several times
/// that. Positions (`0..len()`) are stable for the life of an index: the mount's inodes name
/// targets by position. Paths sort bytewise, so the targets under a directory are one range:
/// directories are derived ([`TargetIndex::is_dir`], [`TargetIndex::children`]), never stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetIndex {
    /// Every path, concatenated in sorted order; record `i` ends at `records[i].end`.
    pub(super) names: Box<str>,
    pub(super) records: Box<[Record]>,
    /// Hashes and `custom` of targets that do not fit a record.
    pub(super) extras: Box<[Extra]>,
    /// The roles that listed targets ("targets" or a delegated role), each once.
    pub(super) roles: Box<[Box<str>]>,
    /// Signed chunk roots of the targets that list one (a side table: a record grows by 8 bytes in
    /// memory, 4 encoded, where a `custom` object in `extras` would cost hundreds).
    pub(super) chunk_roots: Box<[[u8; 32]]>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Record {
    /// End of this record's path in `names` (it starts where the previous one ends).
    pub(super) end: u64,
    pub(super) length: u64,
    /// The sha256 digest, when `extra` is [`NONE`].
    pub(super) sha256: [u8; 32],
    /// Position in `roles` ([`NONE`]: not recorded).
    pub(super) role: u32,
    /// Position in `extras` ([`NONE`]: the hashes are exactly `sha256`, no `custom`).
    pub(super) extra: u32,
    /// Position in `chunk_roots` ([`NONE`]: no signed chunk root).
    pub(super) chunks: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Extra {
    pub(super) hashes: Hashes,
    pub(super) custom: Option<Box<serde_json::Value>>,
}

pub(super) const NONE: u32 = u32::MAX;

impl TargetIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn builder() -> IndexBuilder {
        IndexBuilder::default()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The path of the target at `pos` (panics past `len()`, like slice indexing).
    pub fn path_at(&self, pos: usize) -> &str {
        let start = match pos {
            0 => 0,
            _ => self.records[pos - 1].end as usize,
        };
        &self.names[start..self.records[pos].end as usize]
    }

    /// What the metadata says about the target at `pos`.
    pub fn info_at(&self, pos: usize) -> TargetInfo {
        let r = &self.records[pos];
        let chunk_root = self.chunk_roots.get(r.chunks as usize).copied();
        match self.extras.get(r.extra as usize) {
            Some(e) => TargetInfo {
                length: r.length,
                hashes: e.hashes.clone(),
                custom: e.custom.clone(),
                chunk_root,
            },
            None => TargetInfo {
                length: r.length,
                hashes: Hashes {
                    sha256: Some(r.sha256),
                    others: None,
                },
                custom: None,
                chunk_root,
            },
        }
    }

    /// The role that listed the target at `pos`, if recorded.
    pub fn role_at(&self, pos: usize) -> Option<&str> {
        self.roles
            .get(self.records[pos].role as usize)
            .map(|r| &**r)
    }

    /// The first position whose path is not less than `key`.
    pub(super) fn lower_bound(&self, key: &str) -> usize {
        self.partition_point(|p| p < key)
    }

    /// The position of `path`.
    pub fn position(&self, path: &str) -> Option<usize> {
        let at = self.lower_bound(path);
        (at < self.len() && self.path_at(at) == path).then_some(at)
    }

    pub fn get(&self, path: &str) -> Option<TargetInfo> {
        self.position(path).map(|pos| self.info_at(pos))
    }

    /// The role that listed `path`, if recorded.
    pub fn listed_by(&self, path: &str) -> Option<&str> {
        self.position(path).and_then(|pos| self.role_at(pos))
    }

    /// Every target, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, TargetInfo)> {
        (0..self.len()).map(|pos| (self.path_at(pos), self.info_at(pos)))
    }

    /// The first position whose path `less` says is not less (paths are sorted).
    pub(super) fn partition_point(&self, less: impl Fn(&str) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.records.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if less(self.path_at(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

//! The inode table: which path (and, for a registered file, which signed content) each inode
//! number the kernel holds stands for.
//!
//! An inode is allocated when a `lookup` answers with it and counted once per such answer; the
//! kernel's `forget` gives the counts back, and an inode whose count reaches zero is removed. So
//! the table holds only what the kernel holds (its dentry cache, bounded by memory pressure and
//! `drop_caches`), not every path ever looked up. Numbers are never reused (a `u64` counter), so a
//! forgotten inode's number can never come to mean another file.
//!
//! A registered file's key includes its object name (a digest of the signed length and hashes):
//! when the metadata changes a file's content, the new content gets a new inode, and handles open
//! on the old one keep reading the old verified object.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::sync::Arc;

use crate::index::TargetInfo;

/// The root directory's inode number (never forgotten).
pub(super) const ROOT: u64 = 1;

/// The signed content an inode stands for.
#[derive(Debug)]
pub(super) struct NodeTarget {
    /// Content-addressed object name (digest of the signed length and every hash).
    pub(super) object: String,
    pub(super) info: TargetInfo,
}

#[derive(Debug)]
pub(super) struct Node {
    /// Path relative to the backing root, `/`-separated; empty for the root.
    pub(super) path: OsString,
    /// Registered file: the signed content this inode stands for (fixed for its lifetime).
    pub(super) target: Option<NodeTarget>,
}

/// Inode key: the path, and for a registered file the object name of its signed content.
pub(super) type NodeKey = (OsString, Option<String>);

#[derive(Debug)]
struct Slot {
    node: Arc<Node>,
    /// Lookups answered with this inode and not yet forgotten by the kernel.
    lookups: u64,
}

#[derive(Debug)]
pub(super) struct Inodes {
    slots: HashMap<u64, Slot>,
    by_key: HashMap<NodeKey, u64>,
    next: u64,
}

impl Default for Inodes {
    fn default() -> Self {
        let mut t = Inodes {
            slots: HashMap::new(),
            by_key: HashMap::new(),
            next: ROOT + 1,
        };
        let root = Node {
            path: OsString::new(),
            target: None,
        };
        t.slots.insert(
            ROOT,
            Slot {
                node: Arc::new(root),
                lookups: 1,
            },
        );
        t.by_key.insert((OsString::new(), None), ROOT);
        t
    }
}

impl Inodes {
    pub(super) fn get(&self, ino: u64) -> Option<Arc<Node>> {
        self.slots.get(&ino).map(|s| s.node.clone())
    }

    /// The inode of `key`, if the kernel holds one.
    pub(super) fn find(&self, key: &NodeKey) -> Option<u64> {
        self.by_key.get(key).copied()
    }

    /// The inode for `path` standing for `target` (with its object name `object`), allocated if
    /// needed, with one more lookup counted: call only when answering a lookup with it.
    pub(super) fn lookup(&mut self, path: &OsStr, target: Option<(&str, &TargetInfo)>) -> u64 {
        let key: NodeKey = (path.to_owned(), target.map(|(o, _)| o.to_owned()));
        if let Some(&ino) = self.by_key.get(&key) {
            if let Some(slot) = self.slots.get_mut(&ino) {
                slot.lookups += 1;
                return ino;
            }
        }
        let ino = self.next;
        self.next += 1;
        let node = Node {
            path: path.to_owned(),
            target: target.map(|(object, info)| NodeTarget {
                object: object.to_owned(),
                info: info.clone(),
            }),
        };
        self.slots.insert(
            ino,
            Slot {
                node: Arc::new(node),
                lookups: 1,
            },
        );
        self.by_key.insert(key, ino);
        ino
    }

    /// The kernel dropped `n` lookups of `ino`; at zero the inode is removed (never the root).
    pub(super) fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let Some(slot) = self.slots.get_mut(&ino) else {
            return;
        };
        slot.lookups = slot.lookups.saturating_sub(n);
        if slot.lookups > 0 {
            return;
        }
        if let Some(slot) = self.slots.remove(&ino) {
            let key = (
                slot.node.path.clone(),
                slot.node.target.as_ref().map(|t| t.object.clone()),
            );
            if self.by_key.get(&key) == Some(&ino) {
                self.by_key.remove(&key);
            }
        }
    }

    /// Inodes held (the root included).
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Hashes;

    #[test]
    fn inodes_live_exactly_as_long_as_the_kernel_holds_them() {
        let mut t = Inodes::default();
        let a = t.lookup(OsStr::new("a"), None);
        assert_eq!(t.lookup(OsStr::new("a"), None), a);
        assert_eq!(t.len(), 2);
        t.forget(a, 1);
        assert!(t.get(a).is_some(), "one lookup is still held");
        t.forget(a, 1);
        assert!(t.get(a).is_none());
        assert_eq!(t.len(), 1);
        // A new lookup of the same path gets a new number: numbers are never reused.
        let b = t.lookup(OsStr::new("a"), None);
        assert!(b > a);
        // The root is never forgotten.
        t.forget(ROOT, 100);
        assert!(t.get(ROOT).is_some());
    }

    #[test]
    fn other_signed_content_is_another_inode() {
        let mut t = Inodes::default();
        let info = TargetInfo {
            length: 1,
            hashes: Hashes::new(),
            custom: None,
        };
        let v1 = t.lookup(OsStr::new("f"), Some(("t-1", &info)));
        let v2 = t.lookup(OsStr::new("f"), Some(("t-2", &info)));
        assert_ne!(v1, v2);
        assert_eq!(t.find(&(OsString::from("f"), Some("t-1".into()))), Some(v1));
        t.forget(v1, 1);
        assert_eq!(t.find(&(OsString::from("f"), Some("t-1".into()))), None);
        assert_eq!(t.get(v2).unwrap().target.as_ref().unwrap().object, "t-2");
    }

    #[test]
    fn churn_leaves_nothing_behind() {
        let mut t = Inodes::default();
        for i in 0..10_000 {
            let ino = t.lookup(OsStr::new(&format!("d/{i}")), None);
            t.forget(ino, 1);
        }
        assert_eq!(t.len(), 1);
        assert_eq!(t.by_key.len(), 1);
    }
}

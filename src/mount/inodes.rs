//! The inode table: which path (and, for a registered file, which signed content) each inode
//! number the kernel holds stands for.
//!
//! An inode is allocated when a `lookup` answers with it and counted once per such answer; the
//! kernel's `forget` gives the counts back, and an inode whose count reaches zero is removed. So
//! the table holds only what the kernel holds (its dentry cache, bounded by memory pressure and
//! `drop_caches`), not every path ever looked up. Numbers are never reused (a `u64` counter), so a
//! forgotten inode's number can never come to mean another file.
//!
//! A registered file's inode names its target by position in the index in force (no copy of the
//! path or the signed info: after a `find` over a million targets the kernel holds a million of
//! these). A switch carries each such inode to the new index when its content (length and hashes)
//! is unchanged — same number, so the kernel keeps its entry and cached pages — and detaches it
//! otherwise: it keeps the content it stood for, handles open on it keep reading the old verified
//! object, and new lookups find a new inode.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::Arc;

use crate::index::{TargetIndex, TargetInfo};

/// The root directory's inode number (never forgotten).
pub(super) const ROOT: u64 = 1;

/// What an inode stands for.
#[derive(Clone, Debug)]
pub(super) enum Node {
    /// The root (empty path), a directory or an unregistered file.
    Path(Arc<OsStr>),
    /// A registered file: the target at `pos` of `index`.
    Target { index: Arc<TargetIndex>, pos: usize },
    /// A registered file whose content the metadata in force no longer lists as it did (a switch
    /// changed or removed it, or the lookup raced one): the path and the content, on its own.
    Detached(Arc<(Box<OsStr>, TargetInfo)>),
}

impl Node {
    /// Path relative to the backing root, `/`-separated; empty for the root.
    pub(super) fn path(&self) -> &OsStr {
        match self {
            Node::Path(p) => p,
            Node::Target { index, pos } => OsStr::new(index.path_at(*pos)),
            Node::Detached(d) => &d.0,
        }
    }

    /// The signed content a registered file's inode stands for (fixed for its lifetime).
    pub(super) fn target(&self) -> Option<TargetInfo> {
        match self {
            Node::Path(_) => None,
            Node::Target { index, pos } => Some(index.info_at(*pos)),
            Node::Detached(d) => Some(d.1.clone()),
        }
    }

    pub(super) fn is_target(&self) -> bool {
        !matches!(self, Node::Path(_))
    }
}

#[derive(Debug)]
struct Slot {
    node: Node,
    /// Lookups answered with this inode and not yet forgotten by the kernel.
    lookups: u64,
}

#[derive(Debug)]
pub(super) struct Inodes {
    slots: HashMap<u64, Slot>,
    /// Inodes of [`Node::Path`] entries.
    by_path: HashMap<Arc<OsStr>, u64>,
    /// Inodes of [`Node::Target`] entries, all of which point into `current`.
    by_pos: HashMap<usize, u64>,
    /// The index in force (the one `by_pos` positions refer to).
    current: Arc<TargetIndex>,
    next: u64,
}

/// Same length, hashes and chunk root: the same signed content (what `store::object_name` digests,
/// and the tree chunk-verified reads check it against). An inode's page cache holds only bytes
/// verified against exactly this, so any difference gets a new inode.
pub(super) fn same_content(a: &TargetInfo, b: &TargetInfo) -> bool {
    a.length == b.length && a.hashes == b.hashes && a.chunk_root == b.chunk_root
}

impl Inodes {
    pub(super) fn new(current: Arc<TargetIndex>) -> Inodes {
        let root: Arc<OsStr> = Arc::from(OsStr::new(""));
        let mut t = Inodes {
            slots: HashMap::new(),
            by_path: HashMap::new(),
            by_pos: HashMap::new(),
            current,
            next: ROOT + 1,
        };
        t.by_path.insert(root.clone(), ROOT);
        t.slots.insert(
            ROOT,
            Slot {
                node: Node::Path(root),
                lookups: 1,
            },
        );
        t
    }

    pub(super) fn get(&self, ino: u64) -> Option<Node> {
        self.slots.get(&ino).map(|s| s.node.clone())
    }

    /// The inode of the directory or unregistered file at `path`, if the kernel holds one.
    pub(super) fn find_path(&self, path: &OsStr) -> Option<u64> {
        self.by_path.get(path).copied()
    }

    /// The inode of the target at `pos` of `index`, if the kernel holds one.
    pub(super) fn find_target(&self, index: &Arc<TargetIndex>, pos: usize) -> Option<u64> {
        if !Arc::ptr_eq(index, &self.current) {
            return None;
        }
        self.by_pos.get(&pos).copied()
    }

    fn allocate(&mut self, node: Node) -> u64 {
        let ino = self.next;
        self.next += 1;
        self.slots.insert(ino, Slot { node, lookups: 1 });
        ino
    }

    fn count(&mut self, ino: u64) -> bool {
        match self.slots.get_mut(&ino) {
            Some(slot) => {
                slot.lookups += 1;
                true
            }
            None => false,
        }
    }

    /// The inode for the directory or unregistered file at `path`, allocated if needed, with one
    /// more lookup counted: call only when answering a lookup with it.
    pub(super) fn lookup_path(&mut self, path: &OsStr) -> u64 {
        if let Some(&ino) = self.by_path.get(path) {
            if self.count(ino) {
                return ino;
            }
        }
        let path: Arc<OsStr> = Arc::from(path);
        let ino = self.allocate(Node::Path(path.clone()));
        self.by_path.insert(path, ino);
        ino
    }

    /// The inode for the target at `pos` of `index`, allocated if needed, with one more lookup
    /// counted. A lookup that read an index no longer in force (it raced a switch) gets a
    /// detached inode of its own: the kernel will look the name up again.
    pub(super) fn lookup_target(&mut self, index: &Arc<TargetIndex>, pos: usize) -> u64 {
        if !Arc::ptr_eq(index, &self.current) {
            let path: Box<OsStr> = OsStr::new(index.path_at(pos)).into();
            return self.allocate(Node::Detached(Arc::new((path, index.info_at(pos)))));
        }
        if let Some(&ino) = self.by_pos.get(&pos) {
            if self.count(ino) {
                return ino;
            }
        }
        let ino = self.allocate(Node::Target {
            index: index.clone(),
            pos,
        });
        self.by_pos.insert(pos, ino);
        ino
    }

    /// The metadata in force is now `new`: carry every target inode whose content is unchanged
    /// to its position in `new` (same number); detach the others. Returns the detached inodes
    /// with their paths (the kernel's entries for them must go).
    pub(super) fn switch(&mut self, new: Arc<TargetIndex>) -> Vec<(u64, Box<OsStr>)> {
        let old = std::mem::replace(&mut self.current, new);
        let new = &self.current;
        let mut by_pos = HashMap::with_capacity(self.by_pos.len());
        let mut detached = Vec::new();
        for (pos, ino) in self.by_pos.drain() {
            let Some(slot) = self.slots.get_mut(&ino) else {
                continue;
            };
            let path = old.path_at(pos);
            let info = old.info_at(pos);
            match new.position(path) {
                Some(p) if same_content(&new.info_at(p), &info) => {
                    slot.node = Node::Target {
                        index: new.clone(),
                        pos: p,
                    };
                    by_pos.insert(p, ino);
                }
                _ => {
                    let path: Box<OsStr> = OsStr::new(path).into();
                    slot.node = Node::Detached(Arc::new((path.clone(), info)));
                    detached.push((ino, path));
                }
            }
        }
        self.by_pos = by_pos;
        detached
    }

    /// The kernel dropped `n` lookups of `ino`; at zero the inode is removed (never the root).
    /// True when this removed it.
    pub(super) fn forget(&mut self, ino: u64, n: u64) -> bool {
        if ino == ROOT {
            return false;
        }
        let Some(slot) = self.slots.get_mut(&ino) else {
            return false;
        };
        slot.lookups = slot.lookups.saturating_sub(n);
        if slot.lookups > 0 {
            return false;
        }
        let Some(slot) = self.slots.remove(&ino) else {
            return false;
        };
        match &slot.node {
            Node::Path(p) => {
                if self.by_path.get(p) == Some(&ino) {
                    self.by_path.remove(p);
                }
            }
            Node::Target { index, pos } => {
                if Arc::ptr_eq(index, &self.current) && self.by_pos.get(pos) == Some(&ino) {
                    self.by_pos.remove(pos);
                }
            }
            Node::Detached(_) => {}
        }
        true
    }

    /// Inodes held (the root included).
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Hashes, TargetPath};

    fn info(n: u8) -> TargetInfo {
        TargetInfo {
            length: 1,
            hashes: Hashes::from([("sha256", vec![n; 32])]),
            custom: None,
            chunk_root: None,
        }
    }

    fn index(entries: &[(&str, u8)]) -> Arc<TargetIndex> {
        Arc::new(
            entries
                .iter()
                .map(|(p, n)| (TargetPath::parse(p).unwrap(), info(*n)))
                .collect(),
        )
    }

    #[test]
    fn inodes_live_exactly_as_long_as_the_kernel_holds_them() {
        let mut t = Inodes::new(index(&[]));
        let a = t.lookup_path(OsStr::new("a"));
        assert_eq!(t.lookup_path(OsStr::new("a")), a);
        assert_eq!(t.len(), 2);
        t.forget(a, 1);
        assert!(t.get(a).is_some(), "one lookup is still held");
        t.forget(a, 1);
        assert!(t.get(a).is_none());
        assert_eq!(t.len(), 1);
        // A new lookup of the same path gets a new number: numbers are never reused.
        let b = t.lookup_path(OsStr::new("a"));
        assert!(b > a);
        // The root is never forgotten.
        t.forget(ROOT, 100);
        assert!(t.get(ROOT).is_some());
        assert_eq!(t.find_path(OsStr::new("")), Some(ROOT));
    }

    #[test]
    fn a_switch_keeps_unchanged_content_and_detaches_the_rest() {
        let v1 = index(&[("same", 1), ("changed", 2), ("removed", 3)]);
        let mut t = Inodes::new(v1.clone());
        let ino = |t: &mut Inodes, p: &str| t.lookup_target(&v1, v1.position(p).unwrap());
        let same = ino(&mut t, "same");
        let changed = ino(&mut t, "changed");
        let removed = ino(&mut t, "removed");
        assert_eq!(ino(&mut t, "same"), same);
        assert_eq!(
            t.find_target(&v1, v1.position("changed").unwrap()),
            Some(changed)
        );

        // "new" sorts before "same": positions shift, numbers must not.
        let v2 = index(&[("changed", 9), ("new", 4), ("same", 1)]);
        let mut detached = t.switch(v2.clone());
        detached.sort();
        let names: Vec<(u64, &OsStr)> = detached.iter().map(|(i, p)| (*i, &**p)).collect();
        assert_eq!(
            names,
            [
                (changed, OsStr::new("changed")),
                (removed, OsStr::new("removed"))
            ]
        );
        assert_eq!(t.find_target(&v2, v2.position("same").unwrap()), Some(same));
        assert_eq!(t.get(same).unwrap().path(), "same");
        // A detached inode keeps the content it stood for.
        let old = t.get(changed).unwrap();
        assert_eq!(old.target(), Some(info(2)));
        assert_eq!(old.path(), "changed");
        // The changed path gets a new inode; positions of the old index find nothing now.
        let fresh = t.lookup_target(&v2, v2.position("changed").unwrap());
        assert_ne!(fresh, changed);
        assert_eq!(t.find_target(&v1, 0), None);
        // A lookup that read the old index after the switch gets a detached inode.
        let late = t.lookup_target(&v1, v1.position("same").unwrap());
        assert_ne!(late, same);
        assert!(matches!(t.get(late), Some(Node::Detached(_))));
        for i in [same, same, changed, removed, fresh, late] {
            t.forget(i, 1);
        }
        assert_eq!(t.len(), 1);
        assert!(t.by_pos.is_empty() && t.by_path.len() == 1);
    }

    #[test]
    fn churn_leaves_nothing_behind() {
        let idx = index(&[("t", 1)]);
        let mut t = Inodes::new(idx.clone());
        for i in 0..10_000 {
            let ino = t.lookup_path(OsStr::new(&format!("d/{i}")));
            t.forget(ino, 1);
            let ino = t.lookup_target(&idx, 0);
            t.forget(ino, 1);
        }
        assert_eq!(t.len(), 1);
        assert_eq!(t.by_path.len(), 1);
        assert!(t.by_pos.is_empty());
    }
}

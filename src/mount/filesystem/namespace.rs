//! The namespace: paths resolved against the metadata in force (and, local mount, the backing
//! tree) into inodes, attributes and TTLs; directory entries; the path helpers they share.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType, INodeNo};

use super::generation::MetadataInForce;
use super::{Content, MountState, LONG_TTL, SHORT_TTL};
use crate::index::Child;
use crate::mount::inodes::Node;
use crate::mount::refusal::Refusal;
use crate::mount::Unregistered;
use crate::source::{EntryKind, Stat};

/// A stable number for a listed entry the kernel holds no inode for (`d_ino` is informational:
/// the kernel looks each name up before using it). Top bit set: never a number the inode table
/// allocates.
pub(super) fn stand_in_ino(path: &OsStr, is_target: bool) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (path, is_target).hash(&mut h);
    h.finish() | (1 << 63)
}

pub(super) fn join(parent: &OsStr, name: &OsStr) -> OsString {
    if parent.is_empty() {
        name.to_owned()
    } else {
        let mut p = parent.to_owned();
        p.push("/");
        p.push(name);
        p
    }
}

/// (parent path, name) of a non-root path.
pub(super) fn split_parent(path: &OsStr) -> (&OsStr, &OsStr) {
    let p = path.as_bytes();
    match p.iter().rposition(|&b| b == b'/') {
        Some(i) => (OsStr::from_bytes(&p[..i]), OsStr::from_bytes(&p[i + 1..])),
        None => (OsStr::new(""), path),
    }
}

fn system_time((secs, nanos): (i64, i64)) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos.clamp(0, 999_999_999) as u32)
    } else {
        UNIX_EPOCH
    }
}

impl MountState {
    pub(super) fn node(&self, ino: INodeNo) -> Option<Node> {
        self.inodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(ino.0)
    }

    /// The inode a lookup answers with for `path` (a directory or unregistered entry; `pos`: the
    /// target at `pos` of `gen`'s index), allocated if needed and counted until the kernel
    /// forgets it.
    fn lookup_ino(&self, gen: &MetadataInForce, path: &OsStr, pos: Option<usize>) -> u64 {
        let mut inodes = self.inodes.write().unwrap_or_else(|e| e.into_inner());
        match pos {
            Some(pos) => inodes.lookup_target(&gen.index, pos),
            None => inodes.lookup_path(path),
        }
    }

    /// The inode the kernel holds for `path` (as in [`Self::lookup_ino`]), if any; else a
    /// stable stand-in number for listings (`d_ino` is informational: the kernel looks each name
    /// up before using it). Allocates nothing.
    fn peek_ino(&self, gen: &MetadataInForce, path: &OsStr, pos: Option<usize>) -> u64 {
        let held = {
            let inodes = self.inodes.read().unwrap_or_else(|e| e.into_inner());
            match pos {
                Some(pos) => inodes.find_target(&gen.index, pos),
                None => inodes.find_path(path),
            }
        };
        held.unwrap_or_else(|| stand_in_ino(path, pos.is_some()))
    }

    pub(super) fn visible_dir(&self, gen: &MetadataInForce, path: &OsStr) -> bool {
        self.unregistered == Unregistered::Deny || gen.is_dir(path)
    }

    /// Resolve `path` against the metadata in force: its inode, attributes and TTL. With
    /// `lookup`, the inode is allocated and counted (the answer to a `lookup`), but only once
    /// the entry is known to exist and be visible: every `ENOENT` (or other error) returns first,
    /// so lookups of missing names cost no memory. Without, nothing is allocated.
    pub(super) fn resolve(
        &self,
        gen: &MetadataInForce,
        path: &OsStr,
        lookup: bool,
    ) -> Result<(FileAttr, Duration), Errno> {
        let ino_for = |path: &OsStr, pos: Option<usize>| {
            if lookup {
                self.lookup_ino(gen, path, pos)
            } else {
                self.peek_ino(gen, path, pos)
            }
        };
        let backing = match &self.content {
            Content::Backing(b) => b,
            Content::Remote(_) => {
                let t = self.mount_time;
                return if gen.is_dir(path) {
                    let ino = ino_for(path, None);
                    Ok((
                        file_attr(ino, FileType::Directory, 0, 0o555, t, t),
                        LONG_TTL,
                    ))
                } else if let Some(pos) = gen.target_pos(path) {
                    let info = gen.index.info_at(pos);
                    let ino = ino_for(path, Some(pos));
                    let attr = file_attr(ino, FileType::RegularFile, info.length, 0o444, t, t);
                    Ok((attr, LONG_TTL))
                } else {
                    Err(Errno::ENOENT)
                };
            }
        };
        let stat: Stat = match backing.stat(path) {
            Ok(s) => s,
            Err(e) => return Err(Errno::from_i32(e.errno())),
        };
        if stat.kind == EntryKind::Directory {
            if !self.visible_dir(gen, path) {
                return Err(Errno::ENOENT);
            }
            let ino = ino_for(path, None);
            return Ok((
                local_attr(ino, &stat, FileType::Directory, 0, 0o555),
                LONG_TTL,
            ));
        }
        let exec = if stat.mode & 0o111 != 0 { 0o111 } else { 0 };
        match gen.target_pos(path) {
            Some(pos) => {
                let info = gen.index.info_at(pos);
                let ino = ino_for(path, Some(pos));
                Ok((
                    local_attr(ino, &stat, FileType::RegularFile, info.length, 0o444 | exec),
                    LONG_TTL,
                ))
            }
            None if self.unregistered == Unregistered::Hide => Err(Errno::ENOENT),
            None => {
                let ino = ino_for(path, None);
                let size = if stat.kind == EntryKind::Regular {
                    stat.key.size
                } else {
                    0
                };
                Ok((
                    local_attr(ino, &stat, FileType::RegularFile, size, 0o444 | exec),
                    SHORT_TTL,
                ))
            }
        }
    }

    /// Attributes of an inode the kernel already knows. A registered file's inode keeps the
    /// attributes of the content it stands for, even after a switch removed or changed it
    /// (files open on it keep reading that content).
    pub(super) fn node_attr(
        &self,
        gen: &MetadataInForce,
        ino: u64,
        node: &Node,
    ) -> Result<(FileAttr, Duration), Errno> {
        let Some(t) = node.target() else {
            let (mut attr, ttl) = self.resolve(gen, node.path(), false)?;
            // If the path now resolves to another inode (it became registered), report its
            // attributes under the old number with a short TTL; the switch invalidated it.
            let ttl = if attr.ino.0 == ino { ttl } else { SHORT_TTL };
            attr.ino = INodeNo(ino);
            return Ok((attr, ttl));
        };
        let length = t.length;
        if let Content::Backing(b) = &self.content {
            if let Ok(stat) = b.stat(node.path()) {
                let exec = if stat.mode & 0o111 != 0 { 0o111 } else { 0 };
                let kind = FileType::RegularFile;
                return Ok((local_attr(ino, &stat, kind, length, 0o444 | exec), LONG_TTL));
            }
        }
        let t = self.mount_time;
        Ok((
            file_attr(ino, FileType::RegularFile, length, 0o444, t, t),
            LONG_TTL,
        ))
    }

    /// The entries of the directory at `path` (without `.` and `..`).
    pub(super) fn list(
        &self,
        gen: &MetadataInForce,
        path: &OsStr,
    ) -> Result<Vec<(OsString, EntryKind)>, Refusal> {
        match &self.content {
            Content::Backing(b) => Ok(b.list(path)?),
            Content::Remote(_) => {
                let dir = path.to_str().ok_or(Refusal::Absent)?;
                if !gen.index.is_dir(dir) {
                    return Err(Refusal::Absent);
                }
                Ok(gen
                    .index
                    .children(dir)
                    .into_iter()
                    .map(|c| match c {
                        Child::Dir(name) => (OsString::from(name), EntryKind::Directory),
                        Child::File(name, _) => (OsString::from(name), EntryKind::Regular),
                    })
                    .collect())
            }
        }
    }
}

/// Attributes of a local entry: times from the backing entry.
fn local_attr(ino: u64, stat: &Stat, kind: FileType, size: u64, perm: u16) -> FileAttr {
    file_attr(
        ino,
        kind,
        size,
        perm,
        system_time(stat.mtime),
        system_time(stat.ctime),
    )
}

/// Attributes of a read-only entry owned by root.
fn file_attr(
    ino: u64,
    kind: FileType,
    size: u64,
    perm: u16,
    mtime: SystemTime,
    ctime: SystemTime,
) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: mtime,
        mtime,
        ctime,
        crtime: mtime,
        kind,
        perm,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

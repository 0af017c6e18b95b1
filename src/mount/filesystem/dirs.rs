//! Directory listings: built from the metadata in force (and the backing directory), shared
//! between handles, and kept in the kernel's cache while what they were made from is unchanged.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use fuser::{Errno, FileHandle, FileType, FopenFlags, INodeNo, ReplyDirectory, ReplyOpen, Request};

use super::generation::MetadataInForce;
use super::namespace::{join, split_parent, stand_in_ino};
use super::{Caller, Content, MountState, TrustFs};
use crate::index::Child;
use crate::mount::inodes::{Node, ROOT};
use crate::mount::listing::{DirEntry, DirHandle, Listing, ListingError, ListingKey};
use crate::mount::lock;
use crate::mount::refusal::{Fault, Refusal};
use crate::mount::Unregistered;
use crate::source::EntryKind;
use crate::telemetry::FaultKind;

impl MountState {
    /// `opendir` of a directory that cannot be listed: the errno to answer.
    fn refuse_listing(&self, who: Caller, path: &OsStr, r: Refusal) -> Errno {
        match r {
            Refusal::Fault(f) => {
                let gen = self.generation();
                self.fault(who, &gen, path, &f);
                Errno::from_i32(f.errno)
            }
            // A directory that escapes or is not one: as lookup answers it.
            Refusal::Denied(_) => Errno::EACCES,
            Refusal::Absent => Errno::ENOENT,
        }
    }

    /// The listing for `key` (the directory `node`): the one a handle already holds, or a new
    /// one. Live listings are bounded ([`crate::mount::listing::MAX_ENTRIES`]): past it, `ENOMEM`.
    fn listing(
        &self,
        who: Caller,
        gen: &MetadataInForce,
        node: &Node,
        key: ListingKey,
    ) -> Result<Arc<Listing>, Errno> {
        let dir = key.dir;
        match self
            .listings
            .get_or_build(key, || self.build_listing(who, gen, dir, node))
        {
            Ok(listing) => Ok(listing),
            Err(ListingError::Build(e)) => Err(e),
            Err(ListingError::OverBudget(live)) => {
                let f = Fault {
                    kind: FaultKind::Memory,
                    errno: libc::ENOMEM,
                    detail: format!(
                        "directory handles already hold {live} listed entries (the bound is {}); close some first",
                        crate::mount::listing::MAX_ENTRIES
                    ),
                };
                Err(self.refuse(who, gen, node.path(), f.into()))
            }
        }
    }

    /// The entries of directory `node` (inode `ino`) under `gen`, `.` and `..` first.
    fn build_listing(
        &self,
        who: Caller,
        gen: &MetadataInForce,
        ino: u64,
        node: &Node,
    ) -> Result<Vec<DirEntry>, Errno> {
        let dir = node.path();
        let mut entries = self
            .list(gen, dir)
            .map_err(|r| self.refuse_listing(who, dir, r))?;
        // The targets directly in this directory, by name (one binary search for the directory,
        // a few per subdirectory), matched to the entries by one merge walk: no search per entry.
        let children = match dir.to_str() {
            Some(d) => gen.index.children(d),
            None => Vec::new(),
        };
        entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut next_child = children.iter().peekable();
        let mut target_of = |name: &OsStr| -> Option<usize> {
            while next_child
                .next_if(|c| c.name().as_bytes() < name.as_bytes())
                .is_some()
            {}
            match next_child.peek() {
                Some(Child::File(n, pos)) if n.as_bytes() == name.as_bytes() => Some(*pos),
                // A target that is also a directory of other targets (children shows the
                // directory); a file here is that target.
                Some(Child::Dir(n)) if n.as_bytes() == name.as_bytes() => {
                    gen.target_pos(&join(dir, name))
                }
                _ => None,
            }
        };
        // (name, is a directory, target position) of what the listing shows.
        let mut shown: Vec<(OsString, bool, Option<usize>)> = Vec::with_capacity(entries.len());
        for (name, kind) in entries {
            if kind == EntryKind::Directory {
                if self.visible_dir(gen, &join(dir, &name)) {
                    shown.push((name, true, None));
                }
            } else {
                let pos = target_of(&name);
                if self.unregistered == Unregistered::Deny || pos.is_some() {
                    shown.push((name, false, pos));
                }
            }
        }
        let parent = split_parent(dir).0;
        let mut list = Vec::with_capacity(shown.len() + 2);
        let inodes = self.inodes.read().unwrap_or_else(|e| e.into_inner());
        // The inode the kernel holds for an entry, or a stand-in.
        let number = |path: &OsStr, pos: Option<usize>| {
            let held = match pos {
                Some(pos) => inodes.find_target(&gen.index, pos),
                None => inodes.find_path(path),
            };
            held.unwrap_or_else(|| stand_in_ino(path, pos.is_some()))
        };
        let parent_ino = if dir.is_empty() {
            ROOT
        } else {
            number(parent, None)
        };
        list.push((ino, FileType::Directory, OsString::from(".")));
        list.push((parent_ino, FileType::Directory, OsString::from("..")));
        for (name, is_dir, pos) in shown {
            let kind = if is_dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            list.push((number(&join(dir, &name), pos), kind, name));
        }
        Ok(list)
    }
}

impl TrustFs {
    /// `opendir`: a handle on the directory's listing (or on the one the kernel keeps).
    pub(super) fn answer_opendir(&self, req: &Request, ino: INodeNo, reply: ReplyOpen) {
        let Some(node) = self.node(ino) else {
            reply.error(Errno::ENOENT);
            return;
        };
        let gen = self.generation();
        let backing = match &self.content {
            Content::Backing(b) => match b.stat(node.path()) {
                Ok(st) => Some(st.key),
                Err(e) => {
                    reply.error(self.refuse_listing(Caller::of(req), node.path(), e.into()));
                    return;
                }
            },
            Content::Remote(_) => None,
        };
        let key = ListingKey {
            dir: ino.0,
            generation: gen.number,
            backing,
        };
        // Directory listings are cached by the kernel (FOPEN_CACHE_DIR), so a repeated `find` or
        // `ls` costs one request per directory, not one per few dozen entries. The kernel keeps
        // its cached listing across opens only when told to (FOPEN_KEEP_CACHE), which is safe
        // when the listing it holds was made from what the directory is now: the same metadata
        // generation and (local mount) the same backing directory identity, which changes with
        // every entry added, removed or renamed. Then nothing is built here; a handle whose
        // reads reach us anyway (the kernel evicted its cache) builds the listing then.
        if lock(&self.kernel_listings).get(&ino.0) == Some(&key) {
            let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
            lock(&self.dirs).insert(fh, DirHandle::Unlisted(key));
            let flags = FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE;
            reply.opened(FileHandle(fh), flags);
            return;
        }
        match self.listing(Caller::of(req), &gen, &node, key.clone()) {
            Ok(listing) => {
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                lock(&self.dirs).insert(fh, DirHandle::Listed(key.clone(), listing));
                // Without FOPEN_KEEP_CACHE the kernel drops what it cached and caches this one,
                // which later opens may keep, unless the backing directory changed while it was
                // listed (within one timestamp tick its identity may not show that).
                let mut kept = lock(&self.kernel_listings);
                match &self.content {
                    Content::Backing(b)
                        if b.stat(node.path()).ok().map(|st| st.key) != key.backing =>
                    {
                        kept.remove(&ino.0)
                    }
                    _ => kept.insert(ino.0, key),
                };
                drop(kept);
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_CACHE_DIR);
            }
            Err(e) => reply.error(e),
        }
    }

    /// `readdir`: the handle's listing from `offset` (built now if the handle has none yet).
    pub(super) fn answer_readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(handle) = lock(&self.dirs).get(&fh.0).cloned() else {
            reply.error(Errno::EBADF);
            return;
        };
        // What this handle answers goes into the kernel's cache of the directory. If that is not
        // the listing later opens are told to keep (a handle opened before the directory or the
        // metadata changed reads from the start again), the next open must list anew.
        let key = match &handle {
            DirHandle::Listed(key, _) | DirHandle::Unlisted(key) => key,
        };
        {
            let mut kept = lock(&self.kernel_listings);
            if kept.get(&ino.0) != Some(key) || key.generation != self.generation().number {
                kept.remove(&ino.0);
            }
        }
        let listing = match handle {
            DirHandle::Listed(_, listing) => listing,
            DirHandle::Unlisted(key) => {
                let Some(node) = self.node(ino) else {
                    reply.error(Errno::ENOENT);
                    return;
                };
                let gen = self.generation();
                match self.listing(Caller::of(req), &gen, &node, key.clone()) {
                    Ok(listing) => {
                        let handle = DirHandle::Listed(key, listing.clone());
                        lock(&self.dirs).insert(fh.0, handle);
                        listing
                    }
                    Err(e) => {
                        reply.error(e);
                        return;
                    }
                }
            }
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (ino, kind, name)) in listing.entries.iter().enumerate().skip(start) {
            if reply.add(INodeNo(*ino), (i + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

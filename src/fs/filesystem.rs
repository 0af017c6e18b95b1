//! The `fuser::Filesystem`: namespace from the backing tree (or, for a remote mount, from the
//! target index alone), policy from the target index.
//!
//! - Remote mount ([`Content::Remote`]): the tree is derived from the target paths (directories
//!   0555, files 0444 with their signed length) and shown in full before any content is fetched.
//!   The first open of a file downloads it into the shared cache through `fetch.rs` (one download
//!   per object, however many openers wait on it); later opens use the cached object. A fetch
//!   failure is `EIO`, a verification failure `EACCES`. Everything below about reads applies.
//! - Namespace of a local mount: the backing tree as it is. Directories are 0555; every other entry is shown as a
//!   regular file 0444 (plus the backing file's execute bits), so an open of a symlink, FIFO,
//!   socket or device reaches [`TrustFs::open`] and is refused with a reason, never followed.
//!   Registered files report their signed length.
//! - Open: unregistered → `EACCES` (or hidden with [`Unregistered::Hide`]); registered → the
//!   backing file is opened beneath the root, and a verification record keyed by its
//!   `(dev, ino, size, mtime, ctime)` is looked up; on a miss it is copied into the object store and
//!   hashed. Reads are served from the verified object (passthrough or userspace).
//! - Every mutating operation → `EROFS`.
//!
//! TTLs: registered entries and directories get [`LONG_TTL`] (their attributes come from the
//! signed metadata, which does not change during a mount; every open re-checks the backing file
//! anyway). Unregistered entries get [`SHORT_TTL`] since their attributes come from the backing
//! directory. Negative lookups are not cached, so files added to the backing directory appear.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
};

use super::fetch::{fetch_into_cache, FetchFailure};
use super::store::{object_name, ObjectStore};
use super::{MountOptions, Stats, Unregistered};
use crate::index::{TargetIndex, TargetInfo};
use crate::log_event;
use crate::source::remote::Mirrors;
use crate::source::{is_plain_component, BackingDir, EntryKind, FileKey, SourceError, Stat};

/// TTL for entries whose attributes come from signed metadata (and for directories).
pub const LONG_TTL: Duration = Duration::from_secs(3600);
/// TTL for unregistered entries, whose attributes come from the backing directory.
pub const SHORT_TTL: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Node {
    /// Path relative to the backing root, `/`-separated; empty for the root.
    path: OsString,
}

#[derive(Debug, Default)]
struct Inodes {
    /// `nodes[i]` is inode `i + 1`.
    nodes: Vec<Arc<Node>>,
    by_path: HashMap<OsString, u64>,
}

/// One listed directory entry: (inode, type, name).
type DirEntry = (u64, FileType, OsString);

/// Where the mount's namespace and bytes come from.
pub(super) enum Content {
    /// A local backing directory: its tree is the namespace; files are copied and verified.
    Backing(BackingDir),
    /// A remote repository: the namespace is derived from the index; files are fetched.
    Remote {
        mirrors: Mirrors,
        /// Directory path ("" is the root) → its entries (name, is a directory).
        tree: HashMap<OsString, Vec<(OsString, bool)>>,
    },
}

impl Content {
    /// The remote content: the directory tree every target path implies. A path that is both a
    /// target and a directory of other targets is shown as the directory (and logged).
    pub(super) fn remote(mirrors: Mirrors, index: &TargetIndex) -> Content {
        let mut dirs: HashSet<OsString> = HashSet::from([OsString::new()]);
        for (path, _) in index.iter() {
            let p = path.as_str();
            for (i, _) in p.match_indices('/') {
                dirs.insert(OsString::from(&p[..i]));
            }
        }
        let mut tree: HashMap<OsString, Vec<(OsString, bool)>> = HashMap::new();
        let mut add = |path: &str, is_dir: bool| {
            let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
            tree.entry(OsString::from(parent))
                .or_default()
                .push((OsString::from(name), is_dir));
        };
        for dir in &dirs {
            if let Some(d) = dir.to_str().filter(|d| !d.is_empty()) {
                add(d, true);
            }
        }
        for (path, _) in index.iter() {
            if dirs.contains(OsStr::new(path.as_str())) {
                log_event!("warning: target {path:?} is also a directory of other targets; shown as the directory");
            } else {
                add(path.as_str(), false);
            }
        }
        for dir in dirs {
            tree.entry(dir).or_default();
        }
        for entries in tree.values_mut() {
            entries.sort();
        }
        Content::Remote { mirrors, tree }
    }
}

/// An open file: the verified object it reads from.
#[derive(Debug)]
struct Handle {
    object: String,
    /// Userspace reads (no passthrough).
    file: Option<Arc<File>>,
    /// Keeps the kernel's backing file registered while this handle is open.
    _backing: Option<Arc<BackingId>>,
}

pub(super) struct TrustFs {
    content: Content,
    /// Attribute times of a remote mount's entries.
    mount_time: SystemTime,
    /// From then on, every open is refused (the trusted metadata expired).
    metadata_expires: Option<SystemTime>,
    index: TargetIndex,
    /// Directories that contain at least one registered target (for `Hide`).
    registered_dirs: HashSet<OsString>,
    unregistered: Unregistered,
    store: ObjectStore,
    stats: Arc<Stats>,
    want_passthrough: bool,
    passthrough: bool,
    inodes: RwLock<Inodes>,
    /// Verification records: backing file version → object verified from it.
    records: Mutex<HashMap<FileKey, String>>,
    /// One verification at a time per target (a second opener waits and then hits the record).
    verifying: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    backing_ids: Mutex<HashMap<String, Weak<BackingId>>>,
    /// Objects open for userspace reads, shared by all handles of the same object.
    object_files: Mutex<HashMap<String, Weak<File>>>,
    /// Files shorter than this are served in userspace with FOPEN_KEEP_CACHE even when
    /// passthrough is available (fewer syscalls per open; reads come from the page cache).
    passthrough_min_size: u64,
    handles: Mutex<HashMap<u64, Handle>>,
    dirs: Mutex<HashMap<u64, Vec<DirEntry>>>,
    next_fh: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section below leaves its map consistent at each step; a panic elsewhere
    // must not turn into a panic on every later request.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn join(parent: &OsStr, name: &OsStr) -> OsString {
    if parent.is_empty() {
        name.to_owned()
    } else {
        let mut p = parent.to_owned();
        p.push("/");
        p.push(name);
        p
    }
}

fn system_time((secs, nanos): (i64, i64)) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos.clamp(0, 999_999_999) as u32)
    } else {
        UNIX_EPOCH
    }
}

impl TrustFs {
    pub(super) fn new(
        options: &MountOptions,
        index: TargetIndex,
        content: Content,
        store: ObjectStore,
        stats: Arc<Stats>,
    ) -> TrustFs {
        let mut registered_dirs = HashSet::new();
        registered_dirs.insert(OsString::new());
        for (path, _) in index.iter() {
            let p = path.as_str();
            for (i, _) in p.match_indices('/') {
                registered_dirs.insert(OsString::from(&p[..i]));
            }
        }
        let mut inodes = Inodes::default();
        inodes.nodes.push(Arc::new(Node {
            path: OsString::new(),
        }));
        inodes.by_path.insert(OsString::new(), 1);
        TrustFs {
            content,
            mount_time: SystemTime::now(),
            metadata_expires: options.metadata_expires,
            index,
            registered_dirs,
            unregistered: options.unregistered,
            store,
            stats,
            want_passthrough: options.passthrough,
            passthrough: false,
            inodes: RwLock::new(inodes),
            records: Mutex::new(HashMap::new()),
            verifying: Mutex::new(HashMap::new()),
            backing_ids: Mutex::new(HashMap::new()),
            object_files: Mutex::new(HashMap::new()),
            passthrough_min_size: options.passthrough_min_size,
            handles: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        }
    }

    fn node(&self, ino: INodeNo) -> Option<Arc<Node>> {
        let inodes = self.inodes.read().unwrap_or_else(|e| e.into_inner());
        let i = usize::try_from(ino.0).ok()?.checked_sub(1)?;
        inodes.nodes.get(i).cloned()
    }

    fn ino_for(&self, path: &OsStr) -> u64 {
        {
            let inodes = self.inodes.read().unwrap_or_else(|e| e.into_inner());
            if let Some(&ino) = inodes.by_path.get(path) {
                return ino;
            }
        }
        let mut inodes = self.inodes.write().unwrap_or_else(|e| e.into_inner());
        if let Some(&ino) = inodes.by_path.get(path) {
            return ino;
        }
        inodes.nodes.push(Arc::new(Node {
            path: path.to_owned(),
        }));
        let ino = inodes.nodes.len() as u64;
        inodes.by_path.insert(path.to_owned(), ino);
        ino
    }

    fn target(&self, path: &OsStr) -> Option<&TargetInfo> {
        path.to_str().and_then(|p| self.index.get(p))
    }

    fn visible_dir(&self, path: &OsStr) -> bool {
        self.unregistered == Unregistered::Deny || self.registered_dirs.contains(path)
    }

    /// Attributes of the entry at `path`. Errors are errnos (`ENOENT` also for hidden entries).
    fn attr(&self, ino: u64, path: &OsStr) -> Result<(FileAttr, Duration), Errno> {
        let backing = match &self.content {
            Content::Backing(b) => b,
            Content::Remote { tree, .. } => {
                let t = self.mount_time;
                return if tree.contains_key(path) {
                    Ok((
                        file_attr(ino, FileType::Directory, 0, 0o555, t, t),
                        LONG_TTL,
                    ))
                } else if let Some(info) = self.target(path) {
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
        let base = |kind: FileType, size: u64, perm: u16| {
            file_attr(
                ino,
                kind,
                size,
                perm,
                system_time(stat.mtime),
                system_time(stat.ctime),
            )
        };
        if stat.kind == EntryKind::Directory {
            if !self.visible_dir(path) {
                return Err(Errno::ENOENT);
            }
            return Ok((base(FileType::Directory, 0, 0o555), LONG_TTL));
        }
        let exec = if stat.mode & 0o111 != 0 { 0o111 } else { 0 };
        match self.target(path) {
            Some(info) => Ok((
                base(FileType::RegularFile, info.length, 0o444 | exec),
                LONG_TTL,
            )),
            None if self.unregistered == Unregistered::Hide => Err(Errno::ENOENT),
            None => {
                let size = if stat.kind == EntryKind::Regular {
                    stat.key.size
                } else {
                    0
                };
                Ok((base(FileType::RegularFile, size, 0o444 | exec), SHORT_TTL))
            }
        }
    }

    /// The entries of the directory at `path` (without `.` and `..`).
    fn list(&self, path: &OsStr) -> Result<Vec<(OsString, EntryKind)>, Errno> {
        match &self.content {
            Content::Backing(b) => b.list(path).map_err(|e| Errno::from_i32(e.errno())),
            Content::Remote { tree, .. } => {
                let entries = tree.get(path).ok_or(Errno::ENOENT)?;
                Ok(entries
                    .iter()
                    .map(|(name, is_dir)| {
                        let kind = if *is_dir {
                            EntryKind::Directory
                        } else {
                            EntryKind::Regular
                        };
                        (name.clone(), kind)
                    })
                    .collect())
            }
        }
    }

    fn deny(&self, req: &Request, path: &OsStr, why: &dyn std::fmt::Display) {
        self.stats.denied.fetch_add(1, Ordering::Relaxed);
        log_event!(
            "DENY open {:?}: {why} (pid {}, uid {})",
            path,
            req.pid(),
            req.uid()
        );
    }

    /// Find or make the verified object for `path`; returns the object name, acquired.
    fn verified_object(&self, path: &OsStr, info: &TargetInfo) -> Result<String, Refusal> {
        let name = object_name(info);
        let gate = {
            let mut v = lock(&self.verifying);
            v.entry(name.clone()).or_default().clone()
        };
        let _serialized = lock(&gate);
        let backing = match &self.content {
            Content::Backing(b) => b,
            Content::Remote { mirrors, .. } => {
                // The cache is content-addressed by the signed length and hashes: an object
                // under this name was verified against exactly this metadata.
                if self.store.acquire(&name, info.length) {
                    return Ok(name);
                }
                let p = path.to_str().ok_or(Refusal::Source(SourceError::BadName))?;
                fetch_into_cache(mirrors, &self.store, p, info, &name).map_err(Refusal::Fetch)?;
                self.stats.fetches.fetch_add(1, Ordering::Relaxed);
                return Ok(name);
            }
        };
        // Fast path: an O_PATH probe and fstat identify the backing file's version; if that
        // version was verified into an object still in the store, nothing is read or hashed.
        let probe = backing.stat(path).map_err(Refusal::Source)?;
        if probe.kind == EntryKind::Regular {
            let records = lock(&self.records);
            if records.get(&probe.key) == Some(&name) && self.store.acquire(&name, info.length) {
                return Ok(name);
            }
        }
        let src = backing.open_file(path).map_err(Refusal::Source)?;
        let started = Instant::now();
        let method = self
            .store
            .verify_and_store(&src, info, &name)
            .map_err(Refusal::Store)?;
        lock(&self.records).insert(src.stat.key, name.clone());
        log_event!(
            "verified {:?}: {} bytes in {} ms ({:?})",
            path,
            info.length,
            started.elapsed().as_millis(),
            method
        );
        Ok(name)
    }

    /// The shared read-only `File` of a stored object.
    fn object_file(&self, object: &str) -> std::io::Result<Arc<File>> {
        let mut files = lock(&self.object_files);
        if let Some(f) = files.get(object).and_then(Weak::upgrade) {
            return Ok(f);
        }
        let f = Arc::new(self.store.open(object)?);
        files.insert(object.to_owned(), Arc::downgrade(&f));
        if files.len() > 4096 {
            files.retain(|_, w| w.strong_count() > 0);
        }
        Ok(f)
    }

    /// The shared `BackingId` of an object (registered on first use). `Ok(None)`: the kernel
    /// refused it; serve this open in userspace.
    fn backing_id(
        &self,
        reply: &ReplyOpen,
        object: &str,
    ) -> std::io::Result<Option<Arc<BackingId>>> {
        let mut ids = lock(&self.backing_ids);
        if let Some(id) = ids.get(object).and_then(Weak::upgrade) {
            return Ok(Some(id));
        }
        let file = self.store.open(object)?;
        match reply.open_backing(&file) {
            Ok(id) => {
                let id = Arc::new(id);
                ids.insert(object.to_owned(), Arc::downgrade(&id));
                if ids.len() > 4096 {
                    ids.retain(|_, w| w.strong_count() > 0);
                }
                Ok(Some(id))
            }
            Err(e) => {
                log_event!(
                    "passthrough unavailable for object {object}: {e}; reading in userspace"
                );
                Ok(None)
            }
        }
    }
}

/// Why an open was refused.
enum Refusal {
    Source(SourceError),
    Store(super::store::StoreError),
    Fetch(FetchFailure),
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

impl Filesystem for TrustFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if self.want_passthrough
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(2).is_ok()
        {
            self.passthrough = true;
        }
        self.stats
            .passthrough
            .store(self.passthrough, Ordering::Relaxed);
        // Largest readahead the kernel offers; max_write (and so max_pages) already defaults to
        // fuser's maximum, so userspace reads come in requests as large as the kernel allows.
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        log_event!(
            "mounted; reads via {}",
            if self.passthrough {
                "FUSE passthrough"
            } else {
                "userspace"
            }
        );
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if !is_plain_component(name) {
            reply.error(Errno::EINVAL);
            return;
        }
        let Some(parent) = self.node(parent) else {
            reply.error(Errno::ENOENT);
            return;
        };
        let path = join(&parent.path, name);
        if self.unregistered == Unregistered::Hide
            && self.target(&path).is_none()
            && !self.registered_dirs.contains(&path)
        {
            reply.error(Errno::ENOENT);
            return;
        }
        let ino = self.ino_for(&path);
        match self.attr(ino, &path) {
            Ok((attr, ttl)) => reply.entry(&ttl, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let Some(node) = self.node(ino) else {
            reply.error(Errno::ENOENT);
            return;
        };
        match self.attr(ino.0, &node.path) {
            Ok((attr, ttl)) => reply.attr(&ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & libc::O_TRUNC != 0 {
            reply.error(Errno::EROFS);
            return;
        }
        let Some(node) = self.node(ino) else {
            reply.error(Errno::ENOENT);
            return;
        };
        let path = &node.path;
        let Some(info) = self.target(path) else {
            if self.unregistered == Unregistered::Hide {
                reply.error(Errno::ENOENT);
            } else {
                self.deny(req, path, &"not listed in the signed targets metadata");
                reply.error(Errno::EACCES);
            }
            return;
        };
        if let Some(expires) = self.metadata_expires {
            if SystemTime::now() >= expires {
                let at = crate::fs::log::timestamp(expires);
                self.deny(
                    req,
                    path,
                    &format_args!("the trusted metadata expired at {at}"),
                );
                reply.error(Errno::EACCES);
                return;
            }
        }
        let object = match self.verified_object(path, info) {
            Ok(o) => o,
            Err(Refusal::Source(SourceError::NotFound)) => {
                reply.error(Errno::ENOENT);
                return;
            }
            Err(Refusal::Source(e)) => {
                self.deny(req, path, &e);
                reply.error(Errno::EACCES);
                return;
            }
            Err(Refusal::Store(e)) => {
                self.deny(req, path, &e);
                reply.error(Errno::EACCES);
                return;
            }
            Err(Refusal::Fetch(FetchFailure::Refused(why))) => {
                self.deny(req, path, &why);
                reply.error(Errno::EACCES);
                return;
            }
            Err(Refusal::Fetch(FetchFailure::Unavailable(why))) => {
                self.stats.fetch_failures.fetch_add(1, Ordering::Relaxed);
                log_event!(
                    "EIO open {:?}: fetch failed: {why} (pid {}, uid {})",
                    path,
                    req.pid(),
                    req.uid()
                );
                reply.error(Errno::EIO);
                return;
            }
        };
        let use_passthrough = self.passthrough && info.length >= self.passthrough_min_size;
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        // Userspace mode opens the object lazily at the first read: with KEEP_CACHE most opens
        // of a small file never see a read request.
        let backing = if use_passthrough {
            match self.backing_id(&reply, &object) {
                Ok(id) => id,
                Err(e) => {
                    self.store.release(&object);
                    log_event!("cannot open verified object for {path:?}: {e}");
                    reply.error(Errno::EIO);
                    return;
                }
            }
        } else {
            None
        };
        // No flush on close: nothing to write back. In userspace mode the object's content is
        // fixed for this inode (it is the signed content), so cached pages stay valid across
        // opens: KEEP_CACHE. (The kernel rejects KEEP_CACHE together with passthrough, EIO.)
        let fopen = FopenFlags::FOPEN_NOFLUSH;
        match backing {
            Some(id) => {
                lock(&self.handles).insert(
                    fh,
                    Handle {
                        object,
                        file: None,
                        _backing: Some(id.clone()),
                    },
                );
                reply.opened_passthrough(FileHandle(fh), fopen, &id);
            }
            None => {
                lock(&self.handles).insert(
                    fh,
                    Handle {
                        object,
                        file: None,
                        _backing: None,
                    },
                );
                reply.opened(FileHandle(fh), fopen | FopenFlags::FOPEN_KEEP_CACHE);
            }
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let file = {
            let mut handles = lock(&self.handles);
            let Some(h) = handles.get_mut(&fh.0) else {
                reply.error(Errno::EBADF);
                return;
            };
            match &h.file {
                Some(f) => f.clone(),
                None => match self.object_file(&h.object) {
                    Ok(f) => {
                        h.file = Some(f.clone());
                        f
                    }
                    Err(e) => {
                        log_event!("cannot open verified object {}: {e}", h.object);
                        reply.error(Errno::EIO);
                        return;
                    }
                },
            }
        };
        let mut buf = vec![0u8; size as usize];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    reply.error(Errno::EIO);
                    return;
                }
            }
        }
        reply.data(&buf[..filled]);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let handle = lock(&self.handles).remove(&fh.0);
        if let Some(h) = handle {
            let object = h.object.clone();
            drop(h);
            self.store.release(&object);
        }
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let Some(node) = self.node(ino) else {
            reply.error(Errno::ENOENT);
            return;
        };
        let entries = match self.list(&node.path) {
            Ok(e) => e,
            Err(e) => {
                reply.error(e);
                return;
            }
        };
        let parent_ino = {
            let p = node.path.as_bytes();
            match p.iter().rposition(|&b| b == b'/') {
                Some(i) => self.ino_for(OsStr::from_bytes(&p[..i])),
                None => 1,
            }
        };
        let mut list = vec![
            (ino.0, FileType::Directory, OsString::from(".")),
            (parent_ino, FileType::Directory, OsString::from("..")),
        ];
        for (name, kind) in entries {
            let path = join(&node.path, &name);
            let (visible, ftype) = if kind == EntryKind::Directory {
                (self.visible_dir(&path), FileType::Directory)
            } else {
                (
                    self.unregistered == Unregistered::Deny || self.target(&path).is_some(),
                    FileType::RegularFile,
                )
            };
            if visible {
                list.push((self.ino_for(&path), ftype, name));
            }
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.dirs).insert(fh, list);
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let dirs = lock(&self.dirs);
        let Some(list) = dirs.get(&fh.0) else {
            reply.error(Errno::EBADF);
            return;
        };
        for (i, (ino, kind, name)) in list.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), (i + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.dirs).remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let files = self.index.len() as u64;
        reply.statfs(0, 0, 0, files, 0, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        if mask.contains(AccessFlags::W_OK) {
            reply.error(Errno::EROFS);
        } else {
            reply.ok();
        }
    }

    fn readlink(&self, _req: &Request, _ino: INodeNo, reply: ReplyData) {
        // Symlinks are never exposed as symlinks.
        reply.error(Errno::EINVAL);
    }

    // ---- everything that would change the filesystem: EROFS ----

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: fuser::ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }
}

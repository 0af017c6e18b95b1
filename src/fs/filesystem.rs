//! The `fuser::Filesystem`: namespace from the backing tree (or, for a remote mount, from the
//! target index alone), policy from the target index in force.
//!
//! - Remote mount ([`Content::Remote`]): the tree is derived from the target paths (directories
//!   0555, files 0444 with their signed length) and shown in full before any content is fetched.
//!   The first open of a file downloads it into the shared cache through `download.rs` (one download
//!   per object, however many openers wait on it); later opens use the cached object. A fetch
//!   failure is `EIO`, a verification failure `EACCES`. Everything below about reads applies.
//! - Namespace of a local mount: the backing tree as it is. Directories are 0555; every other
//!   entry is shown as a regular file 0444 (plus the backing file's execute bits), so an open of a
//!   symlink, FIFO, socket or device reaches [`TrustFs::open`] and is refused with a reason, never
//!   followed. Registered files report their signed length.
//! - Open: unregistered → `EACCES` (or hidden with [`Unregistered::Hide`]); metadata expired →
//!   `EACCES`; registered → the backing file is opened beneath the root, and a verification record
//!   keyed by its `(dev, ino, size, mtime, ctime)` is looked up; on a miss it is copied into the
//!   object store and hashed. Reads are served from the verified object (passthrough or userspace).
//! - Every mutating operation → `EROFS`.
//!
//! Live updates: the metadata in force is a [`MetadataInForce`] (the sorted index, from which
//! directories are derived, the summary and the expiry) behind an `RwLock<Arc<_>>`;
//! [`Core::switch`] replaces it in one step. A registered file's inode names its target by
//! position in the index; the switch carries inodes whose content (signed length and hashes) is
//! unchanged to the new index under the same number, and detaches the others, so a target whose
//! content changes gets a new inode: handles open on the old inode keep reading their verified
//! object (and its kernel page cache), new lookups find the new inode. The switch then invalidates
//! the kernel's entries (and the detached inodes' attributes and pages) of every added, removed or
//! changed target, since entry/attr TTLs are long, and once more when no request works on the old
//! generation. An open that reaches an inode whose content is not what the metadata in force lists
//! (a lookup raced the switch) gets `ESTALE`, which makes the kernel look the name up again.
//!
//! TTLs: registered entries and directories get [`LONG_TTL`] (their attributes come from the
//! signed metadata, and a metadata switch invalidates what changed; every open re-checks the
//! backing file anyway). Unregistered entries get [`SHORT_TTL`] since their attributes come from
//! the backing directory. Negative lookups are not cached, so files added to the backing directory
//! appear.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation as FuseGeneration, INodeNo, InitFlags, KernelConfig, LockOwner, Notifier,
    OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request,
};

use super::chunked::{tree_key, ChunkReads};
use super::download::{fetch_into_cache, FetchFailure};
use super::freshness::Freshness;
use super::gate::{Gates, Shut};
use super::inodes::{same_content, Inodes, Node, ROOT};
use super::lazyremote::{LazyError, LazyRemote};
use super::listing::{DirEntry, DirHandle, Listing, ListingError, ListingKey, Listings};
use super::openers::Openers;
use super::prefetch::{Item as PrefetchItem, Outcome as PrefetchOutcome, Prefetcher};
use super::readfiles::ReadFiles;
use super::refusal::{Denial, Fault, Refusal};
use super::store::{object_name, ObjectStore};
use super::throttle::Throttle;
use super::verified::{self, ChunkError, StoredObject, TrustedTree, VerifiedBytes};
use super::{lock, ContentSource, MountOptions, SwitchReport, TableSizes, Unregistered};
use crate::index::{Child, TargetIndex, TargetInfo};
use crate::log_event;
use crate::ops::audit::AuditLog;
use crate::ops::status::MountStatus;
use crate::ops::{Counters, DenialRecord, DenyReason, FaultKind};
use crate::schema::UtcTime;
use crate::source::remote::Mirrors;
use crate::source::{is_plain_component, BackingDir, EntryKind, FileKey, SourceError, Stat};
use crate::trust::TrustSummary;

/// TTL for entries whose attributes come from signed metadata (and for directories).
pub const LONG_TTL: Duration = Duration::from_secs(3600);
/// TTL for unregistered entries, whose attributes come from the backing directory.
pub const SHORT_TTL: Duration = Duration::from_secs(1);

/// The most of one file a whole-file check pushes into the page cache.
const PUSH_MAX: u64 = 2 << 30;

/// How long a switch waits for requests still working on the old generation before it repeats
/// its invalidations (an open waiting for a download can hold it longer; it gets ESTALE later).
const SWITCH_DRAIN: Duration = Duration::from_secs(2);

/// Extended attributes of registered files (and of the mount root).
pub const XATTR_SHA256: &str = "user.trustfs.sha256";
pub const XATTR_LENGTH: &str = "user.trustfs.length";
pub const XATTR_VERIFIED: &str = "user.trustfs.verified";
pub const XATTR_STATUS: &str = "user.trustfs.status";
pub const XATTR_ROLE: &str = "user.trustfs.role";

/// Where the mount's bytes come from.
pub(super) enum Content {
    /// A local backing directory: its tree is the namespace; reads are verified chunk by chunk
    /// (or served from private verified copies with `--private-copy`).
    Backing(BackingDir),
    /// A remote repository: the namespace is derived from the index; files are fetched.
    Remote(Arc<Mirrors>),
}

/// The metadata in force, and what is derived from it. Replaced as a whole by a switch.
pub(super) struct MetadataInForce {
    /// 1 at mount, +1 per switch.
    pub(super) number: u64,
    /// Shared with the inodes that name its targets by position.
    pub(super) index: Arc<TargetIndex>,
    pub(super) summary: Option<TrustSummary>,
    /// When the metadata expires, and the role that expires first.
    expires: Option<(SystemTime, String)>,
}

impl MetadataInForce {
    fn new(
        number: u64,
        index: TargetIndex,
        summary: Option<TrustSummary>,
        fallback_expires: Option<SystemTime>,
    ) -> MetadataInForce {
        let expires = match &summary {
            Some(s) => {
                let role = if s.expires_role.is_empty() {
                    "trusted".to_owned()
                } else {
                    s.expires_role.clone()
                };
                // An expiry that does not parse fails closed: treated as long past.
                Some((
                    UtcTime::parse(&s.expires).map_or(SystemTime::UNIX_EPOCH, utc_to_system),
                    role,
                ))
            }
            None => fallback_expires.map(|t| (t, "trusted".to_owned())),
        };
        MetadataInForce {
            number,
            index: Arc::new(index),
            summary,
            expires,
        }
    }

    /// The position of the target at `path`.
    fn target_pos(&self, path: &OsStr) -> Option<usize> {
        path.to_str().and_then(|p| self.index.position(p))
    }

    fn target(&self, path: &OsStr) -> Option<TargetInfo> {
        self.target_pos(path).map(|pos| self.index.info_at(pos))
    }

    /// The expiry, if it has passed at `now`.
    pub(super) fn expired_at(&self, now: SystemTime) -> Option<&(SystemTime, String)> {
        self.expires.as_ref().filter(|(t, _)| now >= *t)
    }

    /// Whether some target path continues below `path` (a remote mount's whole tree; with
    /// `Hide`, the only directories a local mount shows).
    fn is_dir(&self, path: &OsStr) -> bool {
        path.to_str().is_some_and(|p| self.index.is_dir(p))
    }
}

fn utc_to_system(t: UtcTime) -> SystemTime {
    u64::try_from(t.0).map_or(UNIX_EPOCH, |s| UNIX_EPOCH + Duration::from_secs(s))
}

/// The invalidations a switch sends once more when no request works on the old generation any
/// more ([`Core::second_round`]).
pub(super) struct SecondRound {
    old: Arc<MetadataInForce>,
    entries: Vec<(u64, OsString)>,
    inodes: Vec<u64>,
}

/// An open file: the verified object it reads from, or (chunk-verified reads) the trusted tree
/// and the backing path. It holds no descriptor: userspace reads take one from a bounded pool
/// ([`ReadFiles`]).
#[derive(Debug)]
struct Handle {
    /// The object's name, or (chunk-verified reads) the tree's key.
    object: String,
    chunks: Option<Arc<ChunkedFile>>,
    /// Keeps the kernel's backing file registered while this handle is open (passthrough).
    _backing: Option<Arc<BackingId>>,
}

/// What a chunk-verified handle reads: the backing file at `path`, checked against `tree`. Made
/// once at open and shared by the handle's reads (nothing is cloned or encoded per READ).
#[derive(Debug)]
struct ChunkedFile {
    tree: Arc<TrustedTree>,
    path: OsString,
    /// The tree's key ([`tree_key`]): a lazy remote read's partial file.
    key: String,
    /// The backing descriptor's key in the pool ([`pool_key`]).
    pool_key: String,
    /// What the metadata signed for it (a lazy remote read names the target by it).
    info: TargetInfo,
}

/// Content ready for an open: the object (acquired from the store) or the trusted tree.
struct Ready {
    object: String,
    chunks: Option<Arc<TrustedTree>>,
}

/// Everything the filesystem knows, shared between the FUSE workers ([`TrustFs`]) and the
/// threads around the mount ([`super::LiveMount`]).
pub(super) struct Core {
    content: Content,
    /// Attribute times of a remote mount's entries (and of files whose backing entry is gone).
    mount_time: SystemTime,
    generation: RwLock<Arc<MetadataInForce>>,
    unregistered: Unregistered,
    store: ObjectStore,
    pub(super) counters: Arc<Counters>,
    audit: Option<Arc<AuditLog>>,
    want_passthrough: bool,
    pub(super) passthrough: AtomicBool,
    inodes: RwLock<Inodes>,
    /// Verification records: backing file version → object verified from it, and objects
    /// verified (or found verified in the cache) during this mount. Pruned of objects the store
    /// no longer holds.
    records: Mutex<Records>,
    /// One verification or download at a time per object (a second opener waits, at most
    /// `gate_wait`, and then hits the record or the cached object).
    gates: Gates,
    gate_wait: Duration,
    backing_ids: Mutex<HashMap<String, Weak<BackingId>>>,
    /// Descriptors of objects for userspace reads: a bounded pool, not one per handle.
    read_files: ReadFiles<StoredObject>,
    /// Local mount without private copies: where trusted chunk trees come from, what an open
    /// checks (None: reads come from verified objects in the store).
    chunks: Option<ChunkReads>,
    /// Chunk-verified reads: backing files open for reading, by [`pool_key`] (a bounded pool).
    backing_files: ReadFiles<std::fs::File>,
    /// Chunk-verified reads: open handles per [`pool_key`] (the descriptor is closed with the
    /// last).
    backing_handles: Mutex<HashMap<String, usize>>,
    /// Remote mount with `--verify lazy`: outboards and range fetches (`lazyremote/`).
    lazy: Option<LazyRemote>,
    /// Remote mount with `--lazy-fetch`: the sparse partial files, by tree key.
    partial_files: ReadFiles<std::fs::File>,
    /// Files shorter than this are served in userspace with FOPEN_KEEP_CACHE even when
    /// passthrough is available (fewer syscalls per open; reads come from the page cache).
    passthrough_min_size: u64,
    handles: Mutex<HashMap<u64, Handle>>,
    /// Open directory handles.
    dirs: Mutex<HashMap<u64, DirHandle>>,
    listings: Listings,
    /// What the kernel's cached listing of each directory (by inode) was made from: the key of
    /// the last listing handed out without `FOPEN_KEEP_CACHE` (see `opendir`).
    kernel_listings: Mutex<HashMap<u64, ListingKey>>,
    next_fh: AtomicU64,
    /// Sends invalidations to the kernel (set once the session exists).
    notifier: OnceLock<Notifier>,
    /// Repeats of one refusal are logged once per window (they are all counted).
    throttle: Throttle,
    /// Threads that finish opens needing a verification or download (off the FUSE workers).
    openers: Openers,
    /// Remote mount: background downloads of a directory's small files (`prefetch.rs`).
    prefetch: Arc<Prefetcher>,
    /// Serializes metadata switches (the generation swap itself is one write-lock step).
    switching: Mutex<()>,
    // ---- for the status record ----
    pub(super) mountpoint: std::path::PathBuf,
    repository: String,
    content_desc: String,
    started: String,
    /// When the metadata was last confirmed, and refresh failures since.
    pub(super) freshness: Mutex<Freshness>,
    /// Serializes status writes; true once the record was removed (shutting down).
    pub(super) status_lock: Mutex<bool>,
    /// The last status record write failed (logged once until one succeeds again).
    pub(super) status_failing: AtomicBool,
}

/// The `fuser::Filesystem` the session owns; the state lives in the shared [`Core`].
pub(super) struct TrustFs(Arc<Core>);

impl TrustFs {
    pub(super) fn new(core: Arc<Core>) -> TrustFs {
        TrustFs(core)
    }
}

impl std::ops::Deref for TrustFs {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.0
    }
}

/// Who asked: the pid and uid of a request, for log lines and audit records (a `Request` does not
/// outlive its handler; an open finished on the pool needs them later).
#[derive(Clone, Copy, Debug)]
pub(super) struct Caller {
    pid: u32,
    uid: u32,
    /// When the request arrived (an open queued for the pool still arrived then).
    arrived: Instant,
}

impl Caller {
    fn of(req: &Request) -> Caller {
        Caller {
            pid: req.pid(),
            uid: req.uid(),
            arrived: Instant::now(),
        }
    }
}

/// A successful open: the handle, the passthrough backing (if any), the open flags.
type Opened = (u64, Option<Arc<BackingId>>, FopenFlags);

fn send_opened(reply: ReplyOpen, (fh, backing, fopen): Opened) {
    match backing {
        Some(id) => reply.opened_passthrough(FileHandle(fh), fopen, &id),
        None => reply.opened(FileHandle(fh), fopen),
    }
}

/// What the mount remembers about verifications: which version of the backing file at a path
/// was verified into which object (one record per path, its latest verified version), and which
/// objects were verified during this mount (the `verified` xattr). Bounded: one record per path
/// of the backing tree, at most [`MAX_RECORDS`] (the oldest half dropped beyond; a dropped record
/// costs one hash pass), and verified objects the store no longer holds are pruned.
#[derive(Debug, Default)]
struct Records {
    /// Backing path → (the version verified, its object, when recorded).
    by_path: HashMap<OsString, (FileKey, String, u64)>,
    verified: HashSet<String>,
    tick: u64,
    prune_at: usize,
}

/// Paths with a verification record at most.
const MAX_RECORDS: usize = 262_144;

impl Records {
    const MIN_PRUNE_AT: usize = 1024;

    /// `object` was verified (from the backing file at `path`, version `key`, if local).
    fn insert(
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
    fn prune(&mut self, keep: &dyn Fn(&str) -> bool) {
        self.by_path.retain(|_, (_, o, _)| keep(o));
        self.verified.retain(|o| keep(o));
    }

    /// The object verified from exactly version `key` of the backing file at `path`, if any.
    fn object_of(&self, path: &OsStr, key: &FileKey) -> Option<&str> {
        self.by_path
            .get(path)
            .filter(|(k, _, _)| k == key)
            .map(|(_, o, _)| o.as_str())
    }

    fn len(&self) -> usize {
        self.by_path.len() + self.verified.len()
    }
}

/// The directories above `paths` that are not directories of `index`.
fn ancestors_outside<'p>(paths: &'p [String], index: &TargetIndex) -> HashSet<&'p str> {
    let mut out = HashSet::new();
    for path in paths {
        for (at, _) in path.match_indices('/') {
            let dir = &path[..at];
            if !index.is_dir(dir) {
                out.insert(dir);
            }
        }
    }
    out
}

/// A stable number for a listed entry the kernel holds no inode for (`d_ino` is informational:
/// the kernel looks each name up before using it). Top bit set: never a number the inode table
/// allocates.
fn stand_in_ino(path: &OsStr, is_target: bool) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (path, is_target).hash(&mut h);
    h.finish() | (1 << 63)
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

/// (parent path, name) of a non-root path.
fn split_parent(path: &OsStr) -> (&OsStr, &OsStr) {
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

impl Core {
    pub(super) fn new(
        options: &MountOptions,
        index: TargetIndex,
        content: Content,
        store: ObjectStore,
        counters: Arc<Counters>,
        lazy: Option<LazyRemote>,
    ) -> Core {
        let generation =
            MetadataInForce::new(1, index, options.metadata.clone(), options.metadata_expires);
        let inodes = Inodes::new(generation.index.clone());
        let content_desc = match &options.source {
            ContentSource::Backing(p) => p.display().to_string(),
            ContentSource::Remote(r) => r.targets_urls.join(", "),
        };
        let now = SystemTime::now();
        let prefetch = Prefetcher::for_mount(options, counters.clone());
        let chunks = match (&content, options.private_copy) {
            (Content::Backing(_), false) => Some(ChunkReads::new(
                options.verify,
                options.outboards.clone(),
                &options.state_dir,
                counters.clone(),
            )),
            _ => None,
        };
        Core {
            content,
            mount_time: now,
            generation: RwLock::new(Arc::new(generation)),
            unregistered: options.unregistered,
            store,
            counters,
            audit: options.audit.clone(),
            // Passthrough reads a file the daemon cannot check: only for verified objects.
            want_passthrough: options.passthrough && chunks.is_none(),
            passthrough: AtomicBool::new(false),
            inodes: RwLock::new(inodes),
            records: Mutex::new(Records::default()),
            gates: Gates::default(),
            gate_wait: options.gate_wait,
            backing_ids: Mutex::new(HashMap::new()),
            read_files: ReadFiles::for_this_process(),
            chunks,
            backing_files: ReadFiles::for_this_process(),
            backing_handles: Mutex::new(HashMap::new()),
            lazy,
            partial_files: ReadFiles::for_this_process(),
            passthrough_min_size: options.passthrough_min_size,
            handles: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            listings: Listings::default(),
            kernel_listings: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            notifier: OnceLock::new(),
            throttle: Throttle::default(),
            openers: Openers::new(options.threads.max(1)),
            prefetch,
            switching: Mutex::new(()),
            mountpoint: options.mountpoint.clone(),
            repository: options.repository.clone(),
            content_desc,
            started: crate::log::timestamp(now),
            freshness: Mutex::new(Freshness::new(now)),
            status_lock: Mutex::new(false),
            status_failing: AtomicBool::new(false),
        }
    }

    pub(super) fn set_notifier(&self, notifier: Notifier) {
        let _ = self.notifier.set(notifier);
    }

    /// The metadata in force (a cheap `Arc` clone; a switch never changes it in place).
    pub(super) fn generation(&self) -> Arc<MetadataInForce> {
        self.generation
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Switch in new metadata: one atomic swap, then kernel cache invalidations for every target
    /// added, removed or changed and every directory that disappeared.
    pub(super) fn switch(
        &self,
        index: TargetIndex,
        summary: TrustSummary,
    ) -> (SwitchReport, Option<SecondRound>) {
        let _one_at_a_time = lock(&self.switching);
        let old = self.generation();
        let new = Arc::new(MetadataInForce::new(
            old.number + 1,
            index,
            Some(summary),
            None,
        ));
        let mut report = SwitchReport::default();
        // Superseded contents: their object names and lengths (see `still_unlisted`).
        let mut superseded = Vec::new();
        let mut superseded_lengths = HashSet::new();
        // Both indexes are sorted: one merge walk finds what was added, removed and changed.
        let (o, n) = (&old.index, &new.index);
        let (mut i, mut j) = (0, 0);
        while i < o.len() || j < n.len() {
            let order = match (i < o.len(), j < n.len()) {
                (true, true) => o.path_at(i).cmp(n.path_at(j)),
                (true, false) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    let info = o.info_at(i);
                    report.removed.push(o.path_at(i).to_owned());
                    superseded.push(object_name(&info));
                    superseded_lengths.insert(info.length);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    report.added.push(n.path_at(j).to_owned());
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    let info = o.info_at(i);
                    if info != n.info_at(j) {
                        report.changed.push(o.path_at(i).to_owned());
                        superseded.push(object_name(&info));
                        superseded_lengths.insert(info.length);
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        // Directories that held only removed targets, and paths that became directories (a
        // target `x` the kernel holds as a file when `x/y` is added).
        let gone_dirs = ancestors_outside(&report.removed, &new.index);
        let new_dirs = ancestors_outside(&report.added, &old.index);
        // The swap, and the inodes carried over or detached with it, under both locks: no
        // lookup sees the new generation before its inodes point into it.
        let detached = {
            let mut current = self.generation.write().unwrap_or_else(|e| e.into_inner());
            let detached = self
                .inodes
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .switch(new.index.clone());
            *current = new.clone();
            detached
        };
        // Verified copies of content the metadata no longer lists are dropped now (unless a
        // handle still reads them), not when the byte bound is reached: under steady republishing
        // the store and the records stay the size of what is current.
        let superseded = still_unlisted(superseded, &superseded_lengths, &new.index);
        if self.store.drop_unused(&superseded) > 0 {
            lock(&self.records).prune(&|o| self.keeps(o));
        }

        // Collect inode numbers first, then notify without holding any lock: an invalidation
        // waits for the kernel's directory lock, which a request in that directory may hold
        // while it waits for a worker.
        let mut entries: Vec<(u64, OsString)> = Vec::new();
        let mut inodes_to_drop: Vec<u64> = Vec::new();
        {
            let inodes = self.inodes.read().unwrap_or_else(|e| e.into_inner());
            let mut entry = |path: &OsStr| {
                let (parent, name) = split_parent(path);
                if let Some(parent_ino) = inodes.find_path(parent) {
                    entries.push((parent_ino, name.to_owned()));
                }
            };
            for (ino, path) in &detached {
                entry(path);
                inodes_to_drop.push(*ino);
            }
            // Removed and changed paths the kernel held no inode for at the swap: a lookup that
            // read the old generation may still be installing one (see the second round below).
            for path in report.removed.iter().chain(&report.changed) {
                entry(OsStr::new(path));
            }
            // Cached as an unregistered file (local mount) or a directory until now.
            let paths = report.added.iter().map(String::as_str);
            for path in paths.chain(gone_dirs.iter().copied()) {
                let path = OsStr::new(path);
                entry(path);
                if let Some(ino) = inodes.find_path(path) {
                    inodes_to_drop.push(ino);
                }
            }
            // Cached as a file (a target, unchanged, or an unregistered file) until now.
            for dir in new_dirs {
                let path = OsStr::new(dir);
                entry(path);
                let pos = new.index.position(dir);
                let held = pos.and_then(|p| inodes.find_target(&new.index, p));
                inodes_to_drop.extend(held.into_iter().chain(inodes.find_path(path)));
            }
        }
        entries.sort();
        entries.dedup();
        inodes_to_drop.sort_unstable();
        inodes_to_drop.dedup();
        report.invalidations += self.invalidate(&entries, &inodes_to_drop, true);
        self.counters
            .metadata_switches
            .fetch_add(1, Ordering::Relaxed);
        let again = (!entries.is_empty() || !inodes_to_drop.is_empty()).then_some(SecondRound {
            old,
            entries,
            inodes: inodes_to_drop,
        });
        (report, again)
    }

    /// The end of a switch, off the caller's thread (it can take up to [`SWITCH_DRAIN`]). A
    /// request that read the old generation just before the swap (a lookup) may answer the
    /// kernel after the first invalidations and so re-install an old entry; one that answered
    /// just before may have its entry installed by the kernel only now. Requests hold the
    /// generation only while they run: wait (bounded) until none holds the old one, let the
    /// kernel finish installing what they answered, then invalidate again. (A lookup that
    /// notices the switch answers with no entry TTL, and an open that still reaches an old inode
    /// gets ESTALE.)
    pub(super) fn second_round(&self, round: SecondRound) {
        let deadline = Instant::now() + SWITCH_DRAIN;
        while Arc::strong_count(&round.old) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(20));
        self.invalidate(&round.entries, &round.inodes, false);
    }

    /// Send the kernel invalidations for `entries` (parent, name) and `inodes`; returns how many
    /// were accepted. Errors are logged when `log` (the second round repeats the first).
    fn invalidate(&self, entries: &[(u64, OsString)], inodes: &[u64], log: bool) -> usize {
        let Some(n) = self.notifier.get() else {
            return 0;
        };
        let mut sent = 0;
        // ENOENT: the kernel no longer holds that entry or inode (it forgot it meanwhile), so
        // there is nothing to invalidate.
        let gone = |e: &std::io::Error| e.raw_os_error() == Some(libc::ENOENT);
        for (parent, name) in entries {
            match n.inval_entry(INodeNo(*parent), name) {
                Ok(()) => sent += 1,
                Err(e) if log && !gone(&e) => {
                    log_event!("cannot invalidate the kernel entry {name:?}: {e}")
                }
                Err(_) => {}
            }
        }
        for ino in inodes {
            match n.inval_inode(INodeNo(*ino), 0, -1) {
                Ok(()) => sent += 1,
                Err(e) if log && !gone(&e) => {
                    log_event!("cannot invalidate the kernel inode {ino}: {e}")
                }
                Err(_) => {}
            }
        }
        sent
    }

    /// The status record as of now.
    pub(super) fn status(&self) -> MountStatus {
        let gen = self.generation();
        let now = SystemTime::now();
        self.counters
            .cache_bytes
            .store(self.store.total_bytes(), Ordering::Relaxed);
        let expired = gen.expired_at(now);
        let (fresh, refresh) = {
            let f = lock(&self.freshness);
            (f.judge(now), f.refresh())
        };
        let problem = match expired {
            Some((t, role)) => Some(format!(
                "the trusted metadata expired at {} (the {role} role); opens are refused",
                crate::log::timestamp(*t)
            )),
            None if gen.summary.is_none() => {
                Some("mounted from a bare target index (no signed metadata summary)".into())
            }
            None => fresh.problem,
        };
        MountStatus {
            pid: std::process::id(),
            mountpoint: self.mountpoint.display().to_string(),
            repository: self.repository.clone(),
            content: self.content_desc.clone(),
            started: self.started.clone(),
            updated: crate::log::timestamp(now),
            updated_unix: UtcTime::from_system(now).0,
            verified: gen.summary.is_some() && expired.is_none() && !fresh.stale,
            problem,
            stale: fresh.stale,
            confirmed: crate::log::timestamp(fresh.last_ok),
            confirmed_unix: UtcTime::from_system(fresh.last_ok).0,
            refresh_interval_secs: refresh.map(|(every, _)| every.as_secs()),
            stale_after_secs: refresh.map(|(_, after)| after.as_secs()),
            metadata: gen.summary.clone().unwrap_or_default(),
            targets: gen.index.len(),
            counters: self.counters.snapshot(),
            tables: self.table_sizes(),
            process: crate::ops::status::ProcessStats::now(),
        }
    }

    /// Inodes allocated so far (the root included). Inodes are allocated only for entries that
    /// exist, so lookups of missing names never grow this.
    pub(super) fn inode_count(&self) -> usize {
        self.inodes.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Entries in the mount's in-memory tables (bounded under churn; see `docs/operations.md`).
    pub(super) fn table_sizes(&self) -> TableSizes {
        let (listings, listing_entries) = self.listings.sizes();
        TableSizes {
            inodes: self.inode_count(),
            records: lock(&self.records).len(),
            gates: self.gates.len(),
            handles: lock(&self.handles).len(),
            dir_handles: lock(&self.dirs).len(),
            listings,
            listing_entries,
            read_fds: self.read_files.len() + self.backing_files.len(),
            read_fd_capacity: match self.chunks {
                Some(_) => self.backing_files.capacity(),
                None => self.read_files.capacity(),
            },
            objects: self.store.object_count(),
        }
    }

    fn node(&self, ino: INodeNo) -> Option<Node> {
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

    fn visible_dir(&self, gen: &MetadataInForce, path: &OsStr) -> bool {
        self.unregistered == Unregistered::Deny || gen.is_dir(path)
    }

    /// Resolve `path` against the metadata in force: its inode, attributes and TTL. With
    /// `lookup`, the inode is allocated and counted (the answer to a `lookup`), but only once
    /// the entry is known to exist and be visible: every `ENOENT` (or other error) returns first,
    /// so lookups of missing names cost no memory. Without, nothing is allocated.
    fn resolve(
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
    fn node_attr(
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
    fn list(
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

    /// Answer a refused open: a denial (`EACCES`, `DENY`, denial metric, audit `deny`), a fault
    /// (`EIO`/`ENOSPC`/`EMFILE`, `ERROR`, fault metric, audit `fault`) or `ENOENT`.
    fn refuse(&self, who: Caller, gen: &MetadataInForce, path: &OsStr, refusal: Refusal) -> Errno {
        match refusal {
            Refusal::Denied(d) => {
                self.deny(who, gen, path, &d);
                Errno::EACCES
            }
            Refusal::Fault(f) => {
                self.fault(who, gen, path, &f);
                Errno::from_i32(f.errno)
            }
            Refusal::Absent => Errno::ENOENT,
        }
    }

    fn deny(&self, caller: Caller, gen: &MetadataInForce, path: &OsStr, d: &Denial) {
        self.deny_op("open", caller, gen, path, d);
    }

    /// A denial of `op` (`open`, or `read` of a chunk that differs).
    fn deny_op(&self, op: &str, caller: Caller, gen: &MetadataInForce, path: &OsStr, d: &Denial) {
        let who = format!("(pid {}, uid {})", caller.pid, caller.uid);
        self.counters.deny(
            d.reason,
            DenialRecord {
                time: crate::log::timestamp(SystemTime::now()),
                path: crate::ops::shown_path(path),
                reason: d.reason.label().to_owned(),
                detail: d.detail.clone(),
                pid: caller.pid,
                uid: caller.uid,
            },
        );
        let Some(left_out) = self.throttle.admit(caller.uid, path, d.reason.label()) else {
            return;
        };
        log_event!(
            "DENY {op} {path:?}: {} {who}{}",
            d.detail,
            repeats(left_out)
        );
        if let Some(audit) = &self.audit {
            let meta = gen.summary.clone().unwrap_or_default();
            let p = path.to_string_lossy();
            let caller = (caller.pid, caller.uid);
            audit.deny(&p, d.reason, &d.detail, caller, left_out, &meta);
        }
    }

    fn fault(&self, caller: Caller, gen: &MetadataInForce, path: &OsStr, f: &Fault) {
        self.fault_op("open", caller, gen, path, f);
    }

    /// A fault of `op` (`open`, or `read`).
    fn fault_op(&self, op: &str, caller: Caller, gen: &MetadataInForce, path: &OsStr, f: &Fault) {
        let errno = match f.errno {
            libc::ENOSPC => "ENOSPC",
            libc::EMFILE => "EMFILE",
            libc::ENOMEM => "ENOMEM",
            _ => "EIO",
        };
        let who = format!("(pid {}, uid {})", caller.pid, caller.uid);
        let at = crate::log::timestamp(SystemTime::now());
        self.counters.fault(
            f.kind,
            format!("{at} {path:?}: {} ({errno}) {who}", f.detail),
        );
        let Some(left_out) = self.throttle.admit(caller.uid, path, f.kind.label()) else {
            return;
        };
        log_event!(
            "ERROR {op} {path:?}: {} ({}: {errno}; not a denial: the content was not judged) {who}{}",
            f.detail,
            f.kind.label(),
            repeats(left_out)
        );
        if let Some(audit) = &self.audit {
            let meta = gen.summary.clone().unwrap_or_default();
            let p = path.to_string_lossy();
            let caller = (caller.pid, caller.uid);
            audit.fault(&p, f.kind, &f.detail, caller, left_out, &meta);
        }
    }

    /// Find or make the verified object for `path` (acquired), or its trusted chunk tree.
    fn verified_object(
        &self,
        ino: u64,
        path: &OsStr,
        info: &TargetInfo,
        arrived: Instant,
    ) -> Result<Ready, Refusal> {
        let name = object_name(info);
        // A stuck download (or a huge verification) must not pin every FUSE worker: waiters
        // give up after `gate_wait` with EIO, and may try again.
        let pass = match self.gates.enter(&name, arrived, self.gate_wait) {
            Ok(pass) => pass,
            Err(Shut::Busy) => {
                return Err(Fault::eio(
                    FaultKind::Busy,
                    format_args!(
                        "still being downloaded or verified by another open after {} s; try again",
                        self.gate_wait.as_secs()
                    ),
                )
                .into())
            }
            Err(Shut::Failed(mut f)) => {
                f.detail = format!(
                    "an attempt that ended after this open arrived failed: {}",
                    f.detail
                );
                return Err(f.into());
            }
        };
        let result = self.verify_or_fetch(ino, path, info, &name);
        if let Err(Refusal::Fault(f)) = &result {
            // Those waiting behind this attempt get its fault instead of a doomed retry each.
            pass.failed(f);
        }
        result
    }

    /// The body of [`Self::verified_object`], holding the object's gate.
    fn verify_or_fetch(
        &self,
        ino: u64,
        path: &OsStr,
        info: &TargetInfo,
        name: &str,
    ) -> Result<Ready, Refusal> {
        // Whoever held the gate before may have made it ready.
        if let Some(ready) = self.ready_object(path, info) {
            return Ok(ready);
        }
        self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
        let backing = match &self.content {
            Content::Backing(b) => b,
            Content::Remote(mirrors) => {
                let p = path.to_str().ok_or(SourceError::BadName)?;
                let lazy = self.lazy.as_ref().filter(|l| l.fetches_lazily(info.length));
                if let (Some(lazy), Some(_)) = (lazy, info.chunk_root) {
                    let key = tree_key(info);
                    match lazy.tree(&key, info) {
                        Ok(Some(tree)) => {
                            return Ok(Ready {
                                object: key,
                                chunks: Some(tree),
                            })
                        }
                        Ok(None) => {}
                        Err(e) => return Err(Fault::eio(FaultKind::Network, e).into()),
                    }
                }
                fetch_into_cache(mirrors, &self.store, p, info, name, false)?;
                self.counters.fetches.fetch_add(1, Ordering::Relaxed);
                return Ok(Ready {
                    object: name.to_owned(),
                    chunks: None,
                });
            }
        };
        let src = backing.open_file(path)?;
        if let Some(chunks) = &self.chunks {
            // The whole-file check hands each verified block to the kernel's page cache of this
            // inode (kept across opens: FOPEN_KEEP_CACHE), so the reads that follow an open
            // usually never reach the daemon. A failed push only costs speed.
            // At most PUSH_MAX of a file: the first open of a huge one must not evict everyone
            // else's cache.
            let notifier = self.notifier.get();
            let mut pushing = notifier.is_some();
            let mut push = |offset: u64, bytes: &VerifiedBytes| {
                pushing &= offset < PUSH_MAX;
                if let (true, Some(n)) = (pushing, notifier) {
                    pushing = n.store(INodeNo(ino), offset, bytes.as_slice()).is_ok();
                }
            };
            let (tree, _) = chunks.prepare(path, &src, info, &mut push)?;
            let key = tree_key(info);
            if chunks.mode.whole_at_open(info.length) {
                // Checked whole: remember which version of the backing file that was (reads are
                // checked chunk by chunk whatever happens to it later).
                let after = crate::source::fstat(std::os::fd::AsFd::as_fd(&src.file))
                    .map_err(|e| Fault::io("checking the backing file after verifying it", &e))?;
                if after.key != src.stat.key {
                    return Err(Denial::new(
                        DenyReason::Changed,
                        "backing file changed while it was being verified",
                    )
                    .into());
                }
                lock(&self.records).insert(Some((path, src.stat.key)), &key, &|o| self.keeps(o));
            }
            // Reads use the very file that was checked while the pool keeps it: a reader of a
            // file replaced (renamed over) after this open keeps reading what it opened.
            self.backing_files
                .insert(&pool_key(&key, path), Arc::new(src.file));
            return Ok(Ready {
                object: key,
                chunks: Some(tree),
            });
        }
        let started = Instant::now();
        let method = self.store.verify_and_store(&src, info, name)?;
        lock(&self.records).insert(Some((path, src.stat.key)), name, &|o| self.keeps(o));
        log_event!(
            "verified {:?}: {} bytes in {} ms ({:?})",
            path,
            info.length,
            started.elapsed().as_millis(),
            method
        );
        Ok(Ready {
            object: name.to_owned(),
            chunks: None,
        })
    }

    /// Whether the store (or, chunk-verified reads, the tree cache) still holds `object`.
    fn keeps(&self, object: &str) -> bool {
        match &self.chunks {
            Some(c) => c.holds(object),
            None => self.store.contains(object),
        }
    }

    /// The name verification records and the `verified` xattr know content by: the object name,
    /// or (chunk-verified reads) the tree key.
    fn content_key(&self, info: &TargetInfo) -> String {
        match &self.chunks {
            Some(_) => tree_key(info),
            None => object_name(info),
        }
    }

    /// The verified object for `path`, if it is ready without any verification or download: a
    /// verification record of the backing file's current version (local) or a cached object
    /// (remote). Acquired. Cheap (an `fstat`, a lookup): answered on the FUSE worker.
    fn ready_object(&self, path: &OsStr, info: &TargetInfo) -> Option<Ready> {
        if let (Some(chunks), Content::Backing(b)) = (&self.chunks, &self.content) {
            let key = tree_key(info);
            let probe = b.stat(path).ok()?;
            let ready = probe.kind == EntryKind::Regular
                && if chunks.mode.whole_at_open(info.length) {
                    lock(&self.records).object_of(path, &probe.key) == Some(key.as_str())
                } else {
                    probe.key.size == info.length
                };
            let tree = chunks.cached(&key).filter(|_| ready)?;
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Some(Ready {
                object: key,
                chunks: Some(tree),
            });
        }
        let name = object_name(info);
        let lazy = self.lazy.as_ref().filter(|l| l.fetches_lazily(info.length));
        if let (Some(lazy), Some(_), Content::Remote(_)) = (lazy, info.chunk_root, &self.content) {
            if !self.store.contains(&name) {
                let key = tree_key(info);
                let tree = lazy.cached(&key)?;
                self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Some(Ready {
                    object: key,
                    chunks: Some(tree),
                });
            }
        }
        let ready = match &self.content {
            Content::Remote(_) => self.store.acquire(&name, info.length),
            Content::Backing(b) => {
                let probe = b.stat(path).ok()?;
                probe.kind == EntryKind::Regular
                    && lock(&self.records).object_of(path, &probe.key) == Some(name.as_str())
                    && self.store.acquire(&name, info.length)
            }
        };
        if ready {
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
        }
        ready.then_some(Ready {
            object: name,
            chunks: None,
        })
    }

    /// Whether the content `node` stands for was verified during this mount and (local mount)
    /// the backing file is still the version that was verified.
    fn is_verified(&self, node: &Node, object: &str) -> bool {
        if !lock(&self.records).verified.contains(object) {
            return false;
        }
        match &self.content {
            Content::Remote(_) => true,
            Content::Backing(b) => match b.stat(node.path()) {
                Ok(stat) => lock(&self.records).object_of(node.path(), &stat.key) == Some(object),
                Err(_) => false,
            },
        }
    }

    /// The role that listed the content this inode stands for, while the metadata in force still
    /// lists exactly that content for its path (a stale inode after a switch has none).
    fn role_of(&self, node: &Node, object: &str) -> Option<String> {
        let gen = self.generation();
        let pos = gen.target_pos(node.path())?;
        if self.content_key(&gen.index.info_at(pos)) != object {
            return None;
        }
        gen.index.role_at(pos).map(str::to_owned)
    }

    /// Extended attributes of inode `ino`: (name, value) pairs.
    /// The status record as `who` may see it: root sees everything; anyone else (with
    /// `--allow-other`, any uid) not the last denial or fault, which name other users' paths,
    /// pids and uids.
    fn status_for(&self, who: Caller) -> MountStatus {
        let mut st = self.status();
        if who.uid != 0 {
            st.counters.last_denial = None;
            st.counters.last_fault = None;
            st.counters.recent_denials.clear();
        }
        st
    }

    fn xattrs(&self, who: Caller, ino: u64, node: &Node) -> Vec<(&'static str, Vec<u8>)> {
        let mut out = Vec::new();
        if ino == ROOT {
            let status = serde_json::to_vec(&self.status_for(who)).unwrap_or_default();
            out.push((XATTR_STATUS, status));
        }
        if let Some(info) = node.target() {
            if let Some(sha) = info.sha256() {
                out.push((XATTR_SHA256, hex::encode(sha).into_bytes()));
            }
            out.push((XATTR_LENGTH, info.length.to_string().into_bytes()));
            let object = self.content_key(&info);
            let v: &[u8] = if self.is_verified(node, &object) {
                b"yes"
            } else {
                b"no"
            };
            out.push((XATTR_VERIFIED, v.to_vec()));
            if let Some(role) = self.role_of(node, &object) {
                out.push((XATTR_ROLE, role.into_bytes()));
            }
        }
        out
    }

    /// The open policy before any content is looked at: unregistered, stale inode, expired
    /// metadata. Ok: the signed info the open must match.
    fn admit(&self, who: Caller, gen: &MetadataInForce, node: &Node) -> Result<TargetInfo, Errno> {
        let path = node.path();
        let Some(info) = gen.target(path) else {
            if node.is_target() {
                // Registered when the kernel looked it up, not any more: look it up again.
                return Err(Errno::ESTALE);
            } else if self.unregistered == Unregistered::Hide {
                return Err(Errno::ENOENT);
            }
            let d = Denial::new(
                DenyReason::Unregistered,
                "not listed in the signed targets metadata",
            );
            return Err(self.refuse(who, gen, path, d.into()));
        };
        if !node.target().is_some_and(|t| same_content(&t, &info)) {
            // The inode stands for other content than the metadata in force lists (a lookup
            // raced a metadata switch): ESTALE makes the kernel look the name up again.
            return Err(Errno::ESTALE);
        }
        if let Some((t, role)) = gen.expired_at(SystemTime::now()) {
            let at = crate::log::timestamp(*t);
            let d = Denial::new(
                DenyReason::Expired,
                format_args!(
                    "the trusted metadata expired at {at} (the {role} role); no fresh metadata could be trusted since"
                ),
            );
            return Err(self.refuse(who, gen, path, d.into()));
        }
        Ok(info)
    }

    /// An open whose object is ready (see [`Self::ready_object`]): answered on the FUSE worker.
    /// Ok(None): it needs a verification or download ([`Self::open_slow`]).
    fn open_fast(
        &self,
        who: Caller,
        gen: &MetadataInForce,
        node: &Node,
        reply: &ReplyOpen,
    ) -> Result<Option<Opened>, Errno> {
        let info = self.admit(who, gen, node)?;
        match self.ready_object(node.path(), &info) {
            Some(ready) => self
                .finish_open(who, gen, node.path(), &info, ready, reply)
                .map(Some),
            None => Ok(None),
        }
    }

    /// An open that verifies or downloads its object, on the pool ([`Openers`]); replies itself.
    /// A panic costs this open (an `internal` fault), never the pool thread.
    fn open_slow(
        &self,
        who: Caller,
        gen: &MetadataInForce,
        ino: u64,
        node: &Node,
        reply: ReplyOpen,
    ) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let info = self.admit(who, gen, node)?;
            let ready = self
                .verified_object(ino, node.path(), &info, who.arrived)
                .map_err(|r| self.refuse(who, gen, node.path(), r))?;
            self.finish_open(who, gen, node.path(), &info, ready, &reply)
        }));
        match outcome {
            Ok(Ok(opened)) => send_opened(reply, opened),
            Ok(Err(errno)) => reply.error(errno),
            Err(panic) => {
                let f = Fault::eio(
                    FaultKind::Internal,
                    format_args!("internal error: {}", panic_message(&*panic)),
                );
                reply.error(self.refuse(who, gen, node.path(), f.into()));
            }
        }
    }

    /// After the object (acquired) is verified: re-check what may have changed meanwhile, then
    /// make the handle and choose how reads are served.
    fn finish_open(
        &self,
        who: Caller,
        gen: &MetadataInForce,
        path: &OsStr,
        info: &TargetInfo,
        ready: Ready,
        reply: &ReplyOpen,
    ) -> Result<Opened, Errno> {
        let Ready { object, chunks } = ready;
        // Chunk-verified reads hold nothing in the store.
        let release = |object: &str| {
            if chunks.is_none() {
                self.store.release(object);
            }
        };
        // Verification (or a download) can take long; if metadata was switched or expired
        // meanwhile, what this open verified may no longer be what is in force.
        let now_gen = self.generation();
        if now_gen.number != gen.number {
            let still = now_gen.target(path).map(|i| match chunks {
                Some(_) => tree_key(&i),
                None => self.content_key(&i),
            });
            if still.as_deref() != Some(object.as_str()) {
                release(&object);
                return Err(Errno::ESTALE);
            }
        }
        if let Some((t, role)) = now_gen.expired_at(SystemTime::now()) {
            release(&object);
            let at = crate::log::timestamp(*t);
            let d = Denial::new(
                DenyReason::Expired,
                format_args!("the trusted metadata expired at {at} (the {role} role) while this open was being verified"),
            );
            return Err(self.refuse(who, &now_gen, path, d.into()));
        }
        let whole = self
            .chunks
            .as_ref()
            .map(|c| c.mode.whole_at_open(info.length));
        if chunks.is_none() || whole == Some(true) {
            lock(&self.records).insert(None, &object, &|o| self.keeps(o));
        }
        // Passthrough reads a file the daemon cannot check: only verified objects qualify.
        let use_passthrough = chunks.is_none()
            && self.passthrough.load(Ordering::Relaxed)
            && info.length >= self.passthrough_min_size;
        // Userspace mode opens the object lazily at the first read: with KEEP_CACHE most opens
        // of a small file never see a read request.
        let backing = if use_passthrough {
            match self.backing_id(reply, &object) {
                Ok(id) => id,
                Err(e) => {
                    release(&object);
                    let f = Fault::io("opening the verified object for passthrough", &e);
                    return Err(self.refuse(who, &now_gen, path, f.into()));
                }
            }
        } else {
            None
        };
        self.counters.served.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_opened
            .fetch_add(info.length, Ordering::Relaxed);
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        // No flush on close: nothing to write back. In userspace mode the object's content is
        // fixed for this inode (it is the signed content), so cached pages stay valid across
        // opens: KEEP_CACHE. (The kernel rejects KEEP_CACHE together with passthrough, EIO.)
        let fopen = match backing {
            Some(_) => FopenFlags::FOPEN_NOFLUSH,
            None => FopenFlags::FOPEN_NOFLUSH | FopenFlags::FOPEN_KEEP_CACHE,
        };
        let chunks = chunks.map(|tree| {
            let key = pool_key(&object, path);
            let mut open = lock(&self.backing_handles);
            *open.entry(key.clone()).or_default() += 1;
            if self.lazy.is_some() {
                // The partial file is per object (several paths may share it).
                *open.entry(partial_key(&object)).or_default() += 1;
            }
            drop(open);
            Arc::new(ChunkedFile {
                tree,
                path: path.to_owned(),
                pool_key: key,
                key: object.clone(),
                info: info.clone(),
            })
        });
        lock(&self.handles).insert(
            fh,
            Handle {
                object,
                chunks,
                _backing: backing.clone(),
            },
        );
        Ok((fh, backing, fopen))
    }

    /// A read from a verified object of the store.
    fn read_stored(
        &self,
        who: Caller,
        object: &str,
        offset: u64,
        size: u32,
    ) -> Result<VerifiedBytes, Errno> {
        let file = self
            .read_files
            .get(object, || StoredObject::open(&self.store, object))
            .map_err(|e| {
                let f = Fault::io(format_args!("opening verified object {object}"), &e);
                self.read_fault(who, object, &f);
                Errno::from_i32(f.errno)
            })?;
        verified::read_stored(&file, offset, size).map_err(|e| {
            let f = Fault::io(format_args!("reading verified object {object}"), &e);
            self.read_fault(who, object, &f);
            Errno::EIO
        })
    }

    /// A chunk-verified read of a backing file: the chunks the range touches are read and each
    /// checked against the trusted tree. A chunk that differs (the backing file changed since it
    /// was verified, or, `--verify lazy`, was never what was signed) gets `EIO`, a `DENY read`
    /// line naming the file and offset, a denial count and an audit record.
    fn read_chunked(
        &self,
        who: Caller,
        c: &ChunkedFile,
        offset: u64,
        size: u32,
    ) -> Result<VerifiedBytes, Errno> {
        let Content::Backing(backing) = &self.content else {
            return Err(Errno::EIO);
        };
        // One descriptor per (content, path): a path whose file changed never costs another
        // path with the same content its reads.
        let pool_key = &c.pool_key;
        let mut why = None;
        let opened = self.backing_files.get(pool_key, || {
            backing.open_file(&c.path).map(|b| b.file).map_err(|e| {
                let io = match &e {
                    SourceError::Io(io) => std::io::Error::new(io.kind(), io.to_string()),
                    other => std::io::Error::other(other.to_string()),
                };
                why = Some(e);
                io
            })
        });
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                // What is at the path now is judged as an open would judge it: replaced by a
                // directory, FIFO or symlink, or gone, is a denial (answered EIO: this is a
                // read); an I/O error is a fault.
                let refusal = match why {
                    Some(SourceError::NotFound) => Refusal::Denied(Denial::new(
                        DenyReason::Changed,
                        "the backing file was removed after it was opened",
                    )),
                    Some(se) => Refusal::from(se),
                    None => Refusal::Fault(Fault::io("opening the backing file for a read", &e)),
                };
                let gen = self.generation();
                return Err(match refusal {
                    Refusal::Denied(d) => {
                        let d = Denial::new(
                            d.reason,
                            format_args!(
                                "{} (since it was opened); the read fails with EIO",
                                d.detail
                            ),
                        );
                        self.deny_op("read", who, &gen, &c.path, &d);
                        Errno::EIO
                    }
                    Refusal::Fault(f) => {
                        self.fault_op("read", who, &gen, &c.path, &f);
                        Errno::from_i32(f.errno)
                    }
                    Refusal::Absent => Errno::EIO,
                });
            }
        };
        match verified::read_chunks(&c.tree, &file, offset, size) {
            Ok(bytes) => Ok(bytes),
            Err(ChunkError::Io(e)) => {
                let f = Fault::io("reading the backing file", &e);
                self.fault_op("read", who, &self.generation(), &c.path, &f);
                Err(Errno::EIO)
            }
            Err(ChunkError::Differs { offset, detail }) => {
                // The next read opens the path again (the file may have been put back).
                self.backing_files.close(pool_key);
                // Checked whole at open: it changed since. Lazy: it may never have been right.
                let whole = self
                    .chunks
                    .as_ref()
                    .map(|m| m.mode.whole_at_open(c.tree.length()));
                let reason = match whole {
                    Some(false) => DenyReason::Altered,
                    _ => DenyReason::Changed,
                };
                let d = Denial::new(
                    reason,
                    format_args!(
                        "at offset {offset}: {detail}; the read fails with EIO, the changed bytes are never served"
                    ),
                );
                self.deny_op("read", who, &self.generation(), &c.path, &d);
                Err(Errno::EIO)
            }
        }
    }

    /// A lazy remote read (`--lazy-fetch`): the chunks come from the partial file or, those it
    /// lacks, from a range request; every one is checked. Wrong bytes from every mirror that
    /// delivered: `DENY read` (EIO); none could deliver: `ERROR read` (EIO).
    fn read_lazy(
        &self,
        who: Caller,
        mirrors: &Arc<Mirrors>,
        c: &ChunkedFile,
        offset: u64,
        size: u32,
    ) -> Result<VerifiedBytes, Errno> {
        let Some(lazy) = &self.lazy else {
            return Err(Errno::EIO);
        };
        let gen = self.generation();
        let path = c.path.to_string_lossy();
        let mut cache_fault = |e: std::io::Error| {
            let f = Fault::io("using the cache's partial file (served all the same)", &e);
            self.counters.fault(f.kind, f.detail.clone());
            log_event!("ERROR lazy fetch {path:?}: {}", f.detail);
        };
        // Opened (and locked) outside the pool's lock: a partial file someone else holds locked
        // costs only the reads of that file their wait.
        let data = match self.partial_files.held(&c.key) {
            Some(f) => Ok(f),
            None => lazy.data_file(&c.key, c.tree.length()).map(|f| {
                let f = Arc::new(f);
                self.partial_files.insert(&c.key, f.clone());
                f
            }),
        };
        let got = match data {
            Ok(data) => lazy.read(
                mirrors,
                &c.key,
                &path,
                &c.info,
                &c.tree,
                &data,
                offset,
                size,
                &mut cache_fault,
            ),
            Err(e) => {
                cache_fault(e);
                lazy.read_direct(mirrors, &path, &c.info, &c.tree, offset, size)
            }
        };
        match got {
            Ok(bytes) => Ok(bytes),
            Err(LazyError::Refused(why)) => {
                let d = Denial::new(
                    DenyReason::Altered,
                    format_args!("{why}; the read fails with EIO, nothing of it was kept"),
                );
                self.deny_op("read", who, &gen, &c.path, &d);
                Err(Errno::EIO)
            }
            Err(LazyError::Unavailable(why)) => {
                let f = Fault::eio(FaultKind::Network, why);
                self.fault_op("read", who, &gen, &c.path, &f);
                Err(Errno::EIO)
            }
            Err(LazyError::Cache(e)) => {
                let f = Fault::io("reading the cache's partial file", &e);
                self.fault_op("read", who, &gen, &c.path, &f);
                Err(Errno::from_i32(f.errno))
            }
        }
    }

    /// A read failed on a fault: counted, logged as an `ERROR`, audited.
    fn read_fault(&self, who: Caller, object: &str, f: &Fault) {
        let gen = self.generation();
        self.fault_op("read", who, &gen, OsStr::new(object), f);
    }

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
    /// one. Live listings are bounded ([`super::listing::MAX_ENTRIES`]): past it, `ENOMEM`.
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
                        super::listing::MAX_ENTRIES
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
        // The kernel keeps its own reference to the file; our descriptor closes at the end of
        // this function, so passthrough handles cost the daemon no descriptor.
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

/// The handle count key of a lazy remote read's partial file (one per object, in
/// `backing_handles` beside the per-path keys; a `/` cannot start an object name).
fn partial_key(object: &str) -> String {
    format!("/partial/{object}")
}

/// The key of a backing file's descriptor in the pool: content and path, so a path whose file
/// changed never costs another path with the same content its reads.
fn pool_key(tree_key: &str, path: &OsStr) -> String {
    format!("{tree_key}:{}", hex::encode(path.as_bytes()))
}

/// The only way bytes reach a read reply: a [`VerifiedBytes`], which only `verified.rs` makes.
fn reply_verified(reply: ReplyData, counters: &Counters, bytes: &VerifiedBytes) {
    let data = bytes.as_slice();
    counters
        .bytes_read
        .fetch_add(data.len() as u64, Ordering::Relaxed);
    reply.data(data);
}

/// Reply to a getxattr/listxattr `value` with the size-probe protocol: `size` 0 asks for the
/// length; a buffer too small is `ERANGE`.
fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
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

/// The objects of `superseded` that no target of `index` maps to: a copy another path still
/// lists with the same content (length and hashes) stays. Only targets whose length is one of
/// the superseded objects' are hashed into object names.
fn still_unlisted(
    superseded: Vec<String>,
    lengths: &HashSet<u64>,
    index: &TargetIndex,
) -> Vec<String> {
    if superseded.is_empty() {
        return superseded;
    }
    let mut gone: HashSet<String> = superseded.into_iter().collect();
    for (_, info) in index.iter() {
        if gone.is_empty() {
            break;
        }
        if lengths.contains(&info.length) {
            gone.remove(&object_name(&info));
        }
    }
    gone.into_iter().collect()
}

/// Background requests (RELEASE, async reads) the kernel keeps in flight; see `init`.
const MAX_BACKGROUND: u16 = 256;

impl Filesystem for TrustFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if self.want_passthrough
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(2).is_ok()
        {
            self.passthrough.store(true, Ordering::Relaxed);
        }
        // Largest readahead the kernel offers; max_write (and so max_pages) already defaults to
        // fuser's maximum, so userspace reads come in requests as large as the kernel allows.
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        // RELEASE is a background request, and the kernel keeps at most `max_background` of
        // those in flight (fuser's default is 16). Many threads opening and closing files
        // outran 16 by ~35,000 handles a second, so the handle table grew to a million entries
        // (bench/latency.sh); with 256 it stays at about the number of open files.
        let _ = config.set_max_background(MAX_BACKGROUND);
        match self.chunks.as_ref().map(|c| c.mode) {
            Some(mode) => log_event!(
                "mounted; reads checked chunk by chunk against each file's signed chunk tree, {mode}"
            ),
            None => log_event!(
                "mounted; reads of verified copies via {}",
                if self.passthrough.load(Ordering::Relaxed) {
                    "FUSE passthrough"
                } else {
                    "userspace"
                }
            ),
        }
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
        let path = join(parent.path(), name);
        let gen = self.generation();
        match self.resolve(&gen, &path, true) {
            Ok((attr, ttl)) => {
                // Metadata switched while this lookup ran: its answer may already be stale, so
                // the kernel must not keep it (the switch's invalidations may come first).
                let ttl = if self.generation().number == gen.number {
                    ttl
                } else {
                    Duration::ZERO
                };
                reply.entry(&ttl, &attr, FuseGeneration(0))
            }
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let Some(node) = self.node(ino) else {
            reply.error(Errno::ENOENT);
            return;
        };
        let gen = self.generation();
        match self.node_attr(&gen, ino.0, &node) {
            Ok((attr, ttl)) => reply.attr(&ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let gone = self
            .inodes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .forget(ino.0, nlookup);
        if gone {
            // The kernel dropped the inode, and its cached listing with it.
            lock(&self.kernel_listings).remove(&ino.0);
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & libc::O_TRUNC != 0 {
            reply.error(Errno::EROFS);
            return;
        }
        self.counters.opens.fetch_add(1, Ordering::Relaxed);
        let Some(node) = self.node(ino) else {
            reply.error(Errno::ENOENT);
            return;
        };
        let who = Caller::of(req);
        let gen = self.generation();
        // A bug below must cost this open (EIO, counted, logged), never the FUSE worker: a
        // panic that unwinds out of here would kill the thread, and enough of them the mount.
        let fast = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.open_fast(who, &gen, &node, &reply)
        }));
        match fast {
            Ok(Ok(Some(opened))) => send_opened(reply, opened),
            Ok(Ok(None)) => {
                self.0.prefetch_siblings(&gen, node.path());
                // A verification or download: off the worker, which goes back to serving.
                let core = self.0.clone();
                self.openers
                    .run(move || core.open_slow(who, &gen, ino.0, &node, reply));
            }
            Ok(Err(errno)) => reply.error(errno),
            Err(panic) => {
                let what = panic_message(&*panic);
                let f = Fault::eio(FaultKind::Internal, format_args!("internal error: {what}"));
                reply.error(self.refuse(who, &gen, node.path(), f.into()));
            }
        }
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // What the handle reads from, taken without copying more than a pointer for chunk reads.
        let Some(from) = lock(&self.handles).get(&fh.0).map(|h| match &h.chunks {
            Some(c) => Ok(c.clone()),
            None => Err(h.object.clone()),
        }) else {
            reply.error(Errno::EBADF);
            return;
        };
        let who = Caller::of(req);
        let result = match (from, &self.content) {
            (Ok(c), Content::Remote(m)) => self.read_lazy(who, m, &c, offset, size),
            (Ok(c), _) => self.read_chunked(who, &c, offset, size),
            (Err(object), _) => self.read_stored(who, &object, offset, size),
        };
        match result {
            Ok(bytes) => reply_verified(reply, &self.counters, &bytes),
            Err(errno) => reply.error(errno),
        }
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
            if let Some(c) = &h.chunks {
                // The last handle of a backing file: its descriptor need not wait for LRU (a
                // deleted file's space is given back).
                let key = &c.pool_key;
                let mut open = lock(&self.backing_handles);
                let last = open.get_mut(key).is_none_or(|n| {
                    *n = n.saturating_sub(1);
                    *n == 0
                });
                if last {
                    open.remove(key);
                    self.backing_files.close(key);
                }
                if let Some(lazy) = &self.lazy {
                    // The last handle of a lazy remote read's partial file: its descriptor (and
                    // lock) goes, so the cache's bound may evict it.
                    let pk = partial_key(&c.key);
                    let last = open.get_mut(&pk).is_none_or(|n| {
                        *n = n.saturating_sub(1);
                        *n == 0
                    });
                    if last {
                        open.remove(&pk);
                        self.partial_files.close(&c.key);
                        lazy.closed(&c.key);
                    }
                }
            }
            let stored = h.chunks.is_none();
            drop(h);
            if stored && self.store.release(&object) {
                // No handle reads it any more: its descriptor need not wait for LRU.
                self.read_files.close(&object);
            }
        }
        reply.ok();
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
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

    fn readdir(
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
        let files = self.generation().index.len() as u64;
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

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let Some(node) = self.node(ino) else {
            reply.error(Errno::ENOENT);
            return;
        };
        // Only compute what is asked for (the status record is not free).
        let known = [
            XATTR_SHA256,
            XATTR_LENGTH,
            XATTR_VERIFIED,
            XATTR_STATUS,
            XATTR_ROLE,
        ];
        if !known.iter().any(|k| OsStr::new(k) == name) {
            reply.error(Errno::ENODATA);
            return;
        }
        match self
            .xattrs(Caller::of(req), ino.0, &node)
            .into_iter()
            .find(|(n, _)| OsStr::new(n) == name)
        {
            Some((_, value)) => reply_xattr(reply, size, &value),
            None => reply.error(Errno::ENODATA),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let Some(node) = self.node(ino) else {
            reply.error(Errno::ENOENT);
            return;
        };
        let mut names = Vec::new();
        if ino.0 == 1 {
            names.extend_from_slice(XATTR_STATUS.as_bytes());
            names.push(0);
        }
        if let Some(info) = node.target() {
            let mut list = vec![XATTR_LENGTH, XATTR_VERIFIED];
            if info.sha256().is_some() {
                list.insert(0, XATTR_SHA256);
            }
            if self.role_of(&node, &self.content_key(&info)).is_some() {
                list.push(XATTR_ROLE);
            }
            for n in list {
                names.extend_from_slice(n.as_bytes());
                names.push(0);
            }
        }
        reply_xattr(reply, size, &names);
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

/// The tail of a log line written after `n` repeats were left out (see `throttle.rs`).
fn repeats(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(
            "; {n} more like it in the last {} s not logged",
            super::throttle::WINDOW.as_secs()
        )
    }
}

/// The message of a caught panic.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Remote mount: prefetching a directory's small files (the queue and its rules: `prefetch.rs`).
impl Core {
    /// The first open in `path`'s directory (this metadata generation) missed the cache: queue
    /// the directory's other files, those after `path` in name order first.
    fn prefetch_siblings(self: &Arc<Core>, gen: &MetadataInForce, path: &OsStr) {
        if !matches!(self.content, Content::Remote(_)) {
            return;
        }
        let (dir, name) = split_parent(path);
        let (Some(d), Some(name)) = (dir.to_str(), name.to_str()) else {
            return;
        };
        if !self.prefetch.first_visit(gen.number, dir) {
            return;
        }
        // The directory's targets by name, with their positions: no search per file. Those after
        // the opened one first (a reader going through the directory in order).
        let children = gen.index.children(d);
        let at = children.partition_point(|c| c.name() <= name);
        let (before, after) = children.split_at(at);
        let items = after.iter().chain(before).filter_map(|c| match c {
            Child::File(n, pos) if *n != name => Some(PrefetchItem {
                path: gen.index.path_at(*pos).to_owned(),
                info: gen.index.info_at(*pos),
            }),
            _ => None,
        });
        let core = Arc::downgrade(self);
        self.prefetch
            .request(items, move |item| Some(core.upgrade()?.prefetch_one(item)));
    }

    /// Fetch one prefetch item into the cache, unless it is there, an open is fetching it, or
    /// the metadata in force no longer lists exactly this content. Never an open's answer: no
    /// denial or fault is counted, and the gate does not remember a failure.
    fn prefetch_one(&self, item: &PrefetchItem) -> PrefetchOutcome {
        let Content::Remote(mirrors) = &self.content else {
            return PrefetchOutcome::Skipped;
        };
        let name = object_name(&item.info);
        let gen = self.generation();
        if gen.target(OsStr::new(&item.path)).map(|t| object_name(&t)) != Some(name.clone()) {
            return PrefetchOutcome::Skipped;
        }
        // Only a free gate: never wait behind an open (or another prefetch).
        let Ok(_pass) = self.gates.enter(&name, Instant::now(), Duration::ZERO) else {
            return PrefetchOutcome::Skipped;
        };
        if self.store.acquire(&name, item.info.length) {
            self.store.release(&name);
            return PrefetchOutcome::Skipped;
        }
        match fetch_into_cache(mirrors, &self.store, &item.path, &item.info, &name, true) {
            Ok(()) => {
                self.store.release(&name);
                PrefetchOutcome::Fetched
            }
            Err(FetchFailure::Refused(why)) => PrefetchOutcome::Refused(why),
            Err(FetchFailure::Unavailable(why)) => PrefetchOutcome::Fault(why),
            Err(FetchFailure::Descriptors(why)) => {
                PrefetchOutcome::Fault(format!("out of file descriptors: {why}"))
            }
            Err(FetchFailure::Cache(e)) => {
                PrefetchOutcome::Fault(format!("cannot write the cache: {e}"))
            }
        }
    }
}

//! The `fuser::Filesystem`: namespace from the backing tree (or, for a remote mount, from the
//! target index alone), policy from the target index in force.
//!
//! - Remote mount ([`Content::Remote`]): the tree is derived from the target paths (directories
//!   0555, files 0444 with their signed length) and shown in full before any content is fetched.
//!   The first open of a file downloads it into the shared cache through `mount/download.rs` (one download
//!   per object, however many openers wait on it); later opens use the cached object. A fetch
//!   failure is `EIO`, a verification failure `EACCES`. Everything below about reads applies.
//! - Namespace of a local mount: the backing tree as it is. Directories are 0555; every other
//!   entry is shown as a regular file 0444 (plus the backing file's execute bits), so an open of a
//!   symlink, FIFO, socket or device reaches `open` (`fuse.rs` → `TrustFs::answer_open` in `open.rs`) and is refused with a
//!   reason, never followed. Registered files report their signed length.
//! - Open: unregistered → `EACCES` (or hidden with [`Unregistered::Hide`]); metadata expired →
//!   `EACCES`; registered → the backing file is opened beneath the root; by default each read is
//!   checked chunk by chunk against the file's trusted tree (`mount/chunked.rs`,
//!   `mount/verified.rs`; `--verify open` also checks the whole file at its first open). With
//!   `--private-copy`, a verification record keyed by its `(dev, ino, size, mtime, ctime)` is
//!   looked up, on a miss the file is copied into the object store and hashed, and reads are
//!   served from the verified object (passthrough or userspace).
//! - Every mutating operation → `EROFS`.
//!
//! Live updates: the metadata in force is a [`MetadataInForce`] (the sorted index, from which
//! directories are derived, the summary and the expiry) behind an `RwLock<Arc<_>>`;
//! [`MountState::switch`] replaces it in one step. A registered file's inode names its target by
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use fuser::{BackingId, Notifier, Request};

use super::chunked::ChunkReads;
use super::freshness::Freshness;
use super::gate::Gates;
use super::inodes::Inodes;
use super::lazyremote::LazyRemote;
use super::listing::{DirHandle, ListingKey, Listings};
use super::openers::Openers;
use super::prefetch::Prefetcher;
use super::readfiles::ReadFiles;
use super::store::ObjectStore;
use super::throttle::Throttle;
use super::verified::StoredObject;
use super::{ContentSource, MountOptions, Unregistered};
use crate::index::TargetIndex;
use crate::source::remote::Mirrors;
use crate::source::BackingDir;
use crate::telemetry::audit::AuditLog;
use crate::telemetry::Counters;

// One concept a file: the metadata in force (`generation.rs`) and its switch (`switch.rs`), the
// status record (`status.rs`), the namespace and its inodes (`namespace.rs`), how a refusal is
// answered (`refuse.rs`), verification records (`records.rs`), content made ready under the
// object's gate (`ready.rs`), opens (`open.rs`), open handles (`handles.rs`), reads (`read.rs`),
// directory listings (`dirs.rs`), extended attributes (`xattr.rs`), a remote mount's prefetching
// (`prefetching.rs`), and the `fuser::Filesystem` impl that dispatches to them (`fuse.rs`). This
// file: the shared state ([`MountState`]) and what the session owns ([`TrustFs`]).
mod dirs;
mod fuse;
mod generation;
mod handles;
mod namespace;
mod open;
mod prefetching;
mod read;
mod ready;
mod records;
mod refuse;
mod status;
mod switch;
mod xattr;

use generation::MetadataInForce;
use handles::Handle;
use records::Records;

/// TTL for entries whose attributes come from signed metadata (and for directories).
pub const LONG_TTL: Duration = Duration::from_secs(3600);
/// TTL for unregistered entries, whose attributes come from the backing directory.
pub const SHORT_TTL: Duration = Duration::from_secs(1);

/// Where the mount's bytes come from.
pub(super) enum Content {
    /// A local backing directory: its tree is the namespace; reads are verified chunk by chunk
    /// (or served from private verified copies with `--private-copy`).
    Backing(BackingDir),
    /// A remote repository: the namespace is derived from the index; files are fetched.
    Remote(Arc<Mirrors>),
}

/// Everything the filesystem knows, shared between the FUSE workers ([`TrustFs`]) and the
/// threads around the mount ([`super::LiveMount`]).
pub(super) struct MountState {
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
    ///
    /// [`pool_key`]: handles::pool_key
    backing_files: ReadFiles<std::fs::File>,
    /// Chunk-verified reads: open handles per [`pool_key`] (the descriptor is closed with the
    /// last).
    ///
    /// [`pool_key`]: handles::pool_key
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
    /// Remote mount: background downloads of a directory's small files (`mount/prefetch.rs`).
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

/// The `fuser::Filesystem` the session owns; the state lives in the shared [`MountState`].
pub(super) struct TrustFs(Arc<MountState>);

impl TrustFs {
    pub(super) fn new(core: Arc<MountState>) -> TrustFs {
        TrustFs(core)
    }
}

impl std::ops::Deref for TrustFs {
    type Target = MountState;
    fn deref(&self) -> &MountState {
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

impl MountState {
    pub(super) fn new(
        options: &MountOptions,
        index: TargetIndex,
        content: Content,
        store: ObjectStore,
        counters: Arc<Counters>,
        lazy: Option<LazyRemote>,
    ) -> MountState {
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
        MountState {
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
}

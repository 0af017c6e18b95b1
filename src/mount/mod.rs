//! The read-only verified FUSE filesystem, over a local backing directory or a remote repository.
//!
//! [`spawn`] mounts a [`TargetIndex`] and returns a [`MountHandle`]; the `trustfs mount` command
//! and the integration tests use the same entry point. Where content comes from is the
//! [`ContentSource`]: a local backing directory (namespace from the directory, each file checked
//! against its signed chunk tree, or copied and verified with `--private-copy`), or HTTP mirrors
//! of a remote repository (namespace from the index alone, each file downloaded and verified into
//! a persistent cache at first open). What the mount guarantees either way (the one rule): no byte
//! reaches a reader unless it belongs to a file that matches the index (signed length and hashes,
//! and the signed chunk root where there is one) — also after open, because every read of a
//! backing file is checked chunk by chunk against the trusted tree before it is served
//! (`verified.rs`), or reads are served from an immutable, verified object in the [`store`].
//!
//! - `filesystem/`: the `fuser::Filesystem` (metadata in force, inodes, lookup/readdir, open
//!   policy, reads, xattrs; one concept a file, `fuse.rs` dispatches).
//! - `chunked.rs`: where a local mount's trusted chunk trees come from; what an open checks.
//! - `verified.rs` (+ `verified/`): the checks, and `VerifiedBytes`, the only thing a read reply
//!   carries.
//! - `store/`: the content-addressed object store (the local mount's private copies with
//!   `--private-copy`, or the remote mount's shared cache) and the copy-and-hash pipeline both
//!   fill it with.
//! - `download.rs`: the mirror loop of the remote mount (failover, progress, EIO vs EACCES).
//! - `lazyremote/`: remote reads with `--verify lazy` (outboards, range fetches, partial files).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{BackgroundSession, Config, MountOption, SessionACL};

use crate::index::TargetIndex;
use crate::log_event;
use crate::source::remote::Mirrors;
use crate::source::BackingDir;
use crate::telemetry;
use crate::telemetry::audit::AuditLog;
use crate::trust::TrustSummary;

pub mod chunked;
pub mod download;
mod durability;
mod filesystem;
pub mod freshness;
mod fusermount;
mod gate;
mod inodes;
pub mod lazyremote;
pub mod limits;
mod listing;
mod openers;
pub mod prefetch;
mod readfiles;
pub mod refusal;
pub mod store;
mod throttle;
pub mod verified;

/// Lock `m`, recovering the guard if a thread panicked while holding it: every critical section
/// of this module leaves its data consistent at each step, and a panic elsewhere must not turn
/// into a panic on every later request.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub use crate::telemetry::TableSizes;

/// What to do with backing entries the metadata does not list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unregistered {
    /// Listed and visible, but opening them fails with `EACCES` (and is logged).
    Deny,
    /// Not listed and not found by lookup (`ENOENT`).
    Hide,
}

/// Where the content of the mount comes from.
#[derive(Clone, Debug)]
pub enum ContentSource {
    /// A local backing content directory; nothing outside it is ever opened. The namespace is the
    /// directory's; verified copies go to `<state_dir>/objects` (cleared at start).
    Backing(PathBuf),
    /// A remote repository's targets over HTTP; the namespace is the target index alone.
    Remote(RemoteOptions),
}

/// The remote side of a mount fed by HTTP mirrors.
#[derive(Clone, Debug)]
pub struct RemoteOptions {
    /// Targets base URLs, tried in this order (the targets URL first, then the mirrors).
    pub targets_urls: Vec<String>,
    /// The persistent, content-addressed download cache (shareable between mounts).
    pub cache_dir: PathBuf,
    /// Bound on the cache's bytes (LRU eviction of objects no reader holds open).
    pub cache_max: u64,
    /// The trusted root's `consistent_snapshot`: request `dir/<sha256>.<basename>` names.
    pub consistent_snapshot: bool,
    /// Deadlines of every request to a mirror.
    pub http: crate::trust::HttpOptions,
    /// Background download of a directory's small files after its first uncached open.
    pub prefetch: prefetch::PrefetchOptions,
    /// Fetch only the chunks that are read (targets with a signed chunk root and a published
    /// outboard), from these chunk bases (one per targets URL; None: `chunks/` next to each).
    pub lazy_fetch: Option<Option<Vec<String>>>,
}

/// How the mount is set up.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// Where content comes from.
    pub source: ContentSource,
    /// Private state; the local mount's verified copies go to `<state_dir>/objects`.
    pub state_dir: PathBuf,
    /// Let every uid use the mount (`allow_other`), e.g. containers running as other users.
    pub allow_other: bool,
    pub unregistered: Unregistered,
    /// Local mount: read through private verified copies (the copy made and hashed at the first
    /// open, served by passthrough) instead of chunk-verified reads of the backing files. Open
    /// files then survive changes of the backing file; the state dir needs room for the copies.
    pub private_copy: bool,
    /// Local mount, chunk-verified reads: what an open checks (the whole file, or only its size).
    pub verify: chunked::VerifyMode,
    /// Local mount, chunk-verified reads: the directory of published outboards (`REPO/chunks`).
    pub outboards: Option<PathBuf>,
    /// Bound on the bytes of verified copies not currently open (LRU eviction beyond it).
    pub copy_cache_max: u64,
    /// Serve reads with FUSE passthrough when the kernel offers it (else in userspace).
    pub passthrough: bool,
    /// Files shorter than this are read in userspace with the page cache kept across opens even
    /// when passthrough is on (cheaper per open for small files).
    pub passthrough_min_size: u64,
    /// FUSE worker threads.
    pub threads: usize,
    /// When the trusted metadata expires, if `metadata` is not given (with `metadata`, its
    /// `expires`/`expires_role` are used). From then on every open is refused with `EACCES`.
    /// None: not enforced after start.
    pub metadata_expires: Option<SystemTime>,
    /// The trusted metadata the index was built from: versions, expiry (opens fail closed once
    /// `expires` has passed), keys. Shown by status, audit and metrics; replaced by
    /// [`LiveMount::switch`].
    pub metadata: Option<TrustSummary>,
    /// Where the metadata comes from (a directory or URL), for the status record.
    pub repository: String,
    /// Append one JSON line per denial (and per metadata change, by the caller) here.
    pub audit: Option<Arc<AuditLog>>,
    /// How long an open waits for another open's download or verification of the same object
    /// before it fails with `EIO` ("still being downloaded…; try again").
    pub gate_wait: Duration,
}

impl MountOptions {
    /// A local mount over `backing`, defaults for everything but the three paths.
    pub fn new(mountpoint: &Path, backing: &Path, state_dir: &Path) -> MountOptions {
        Self::with_source(
            mountpoint,
            ContentSource::Backing(backing.to_owned()),
            state_dir,
        )
    }

    /// A mount fed by remote mirrors through the verified cache, defaults for the rest. It gets
    /// at least [`REMOTE_MIN_THREADS`] workers: an open waiting for a download holds one.
    pub fn remote(mountpoint: &Path, remote: RemoteOptions, state_dir: &Path) -> MountOptions {
        let mut o = Self::with_source(mountpoint, ContentSource::Remote(remote), state_dir);
        o.threads = o.threads.max(REMOTE_MIN_THREADS);
        o
    }

    fn with_source(mountpoint: &Path, source: ContentSource, state_dir: &Path) -> MountOptions {
        MountOptions {
            mountpoint: mountpoint.to_owned(),
            source,
            state_dir: state_dir.to_owned(),
            allow_other: false,
            unregistered: Unregistered::Deny,
            private_copy: false,
            verify: chunked::VerifyMode::Open,
            outboards: None,
            copy_cache_max: DEFAULT_COPY_CACHE_MAX,
            passthrough: true,
            passthrough_min_size: DEFAULT_PASSTHROUGH_MIN_SIZE,
            threads: default_threads(),
            metadata_expires: None,
            metadata: None,
            repository: String::new(),
            audit: None,
            gate_wait: DEFAULT_GATE_WAIT,
        }
    }
}

/// Default bound on waiting for another open's download or verification of the same object.
pub const DEFAULT_GATE_WAIT: Duration = Duration::from_secs(300);

/// Default size from which reads use passthrough: 256 KiB.
pub const DEFAULT_PASSTHROUGH_MIN_SIZE: u64 = 256 << 10;

/// Default bound of the copy cache: 2 GiB.
pub const DEFAULT_COPY_CACHE_MAX: u64 = 2 << 30;

/// Default worker threads of a remote mount: opens of uncached files block a worker for the
/// length of the download (and openers of the same file wait on it), so keep enough for
/// lookups, listings and cached files to be served meanwhile.
pub const REMOTE_MIN_THREADS: usize = 16;

/// Worker threads: two per CPU, at least four, so one long first-open verification (a copy and a
/// hash of a large file) does not stall every other request.
pub fn default_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cpus * 2).max(4)
}

/// A running mount. Dropping it unmounts (lazily if busy).
pub struct MountHandle {
    session: Option<BackgroundSession>,
    live: LiveMount,
    mountpoint: PathBuf,
    /// Set when the mount was made by the `fusermount3` helper (no privileges): it unmounts.
    helper: Option<fusermount::HelperMount>,
}

impl std::fmt::Debug for MountHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountHandle")
            .field("mountpoint", &self.mountpoint)
            .finish_non_exhaustive()
    }
}

impl MountHandle {
    /// Number of full verification passes so far (hash passes over backing content, or
    /// downloads; a re-open of an unchanged file adds none).
    pub fn hash_passes(&self) -> u64 {
        self.live.counters().verifications.load(Ordering::Relaxed)
    }

    /// Number of denials so far (refused opens, and chunk reads refused with EIO).
    pub fn denied(&self) -> u64 {
        self.live.counters().denied_total()
    }

    /// Remote mount: number of targets downloaded into the cache so far.
    pub fn fetches(&self) -> u64 {
        self.live.counters().fetches.load(Ordering::Relaxed)
    }

    /// Remote mount: number of opens that failed with EIO (no mirror could deliver).
    pub fn fetch_failures(&self) -> u64 {
        self.live.counters().fetch_failures.load(Ordering::Relaxed)
    }

    /// Whether reads are served by FUSE passthrough.
    pub fn passthrough(&self) -> bool {
        self.live.passthrough()
    }

    /// The mount's live side: switch in new metadata, read counters and status.
    pub fn live(&self) -> LiveMount {
        self.live.clone()
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// True when the session ended on its own (e.g. someone ran `umount`).
    pub fn is_finished(&self) -> bool {
        self.session.as_ref().is_none_or(|s| s.guard.is_finished())
    }

    /// Unmount and wait for the session to end. If the mount is busy it is detached (lazy
    /// unmount): it disappears from the namespace at once and this waits until the files still
    /// open are closed.
    pub fn unmount(mut self) -> io::Result<()> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let ours = !session.guard.is_finished();
        if ours {
            match &self.helper {
                Some(h) => h.unmount()?,
                None => umount(&self.mountpoint)?,
            }
        }
        match session.join() {
            // After our own unmount a worker reading /dev/fuse may get ECONNABORTED rather than
            // ENODEV (seen after a lazy unmount with a thousand files being released): the same
            // clean end. A session that had ended before (an abort) still reports it.
            Err(e) if ours && e.raw_os_error() == Some(libc::ECONNABORTED) => Ok(()),
            other => other,
        }
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_inner() {
            log_event!("unmount of {} failed: {e}", self.mountpoint.display());
        }
    }
}

/// A cloneable handle on a running mount's state, for the threads around it (metadata refresh,
/// status writer, metrics server): switch in new metadata, read the counters and the status.
#[derive(Clone)]
pub struct LiveMount {
    core: Arc<filesystem::MountState>,
}

/// What a metadata switch changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwitchReport {
    /// Target paths new in the metadata.
    pub added: Vec<String>,
    /// Target paths no longer in the metadata.
    pub removed: Vec<String>,
    /// Target paths whose length or hashes changed.
    pub changed: Vec<String>,
    /// Kernel cache invalidations sent (entries and inodes).
    pub invalidations: usize,
}

impl LiveMount {
    /// Switch in new trusted metadata atomically: opens from now on follow `index`; handles
    /// already open keep their verified objects; the kernel's cached entries, attributes and pages
    /// of added, removed and changed targets are invalidated.
    pub fn switch(&self, index: TargetIndex, summary: TrustSummary) -> SwitchReport {
        let (report, again) = self.core.switch(index, summary);
        if let Some(round) = again {
            // Off this thread: the caller logs the switch and writes the status record now.
            let core = self.core.clone();
            let spawned = std::thread::Builder::new()
                .name("trustfs-inval".into())
                .spawn(move || core.second_round(round));
            if let Err(e) = spawned {
                log_event!("cannot start the second round of kernel invalidations: {e}");
            }
        }
        report
    }

    /// The metadata in force (None: the mount was started from a bare index).
    pub fn summary(&self) -> Option<TrustSummary> {
        self.core.generation().summary.clone()
    }

    /// Whether `index` lists exactly what the metadata in force lists.
    pub fn same_index(&self, index: &TargetIndex) -> bool {
        *self.core.generation().index == *index
    }

    /// Number of targets in the metadata in force.
    pub fn targets(&self) -> usize {
        self.core.generation().index.len()
    }

    /// Inodes the kernel holds now (root included). Only entries that exist get one, and the
    /// kernel's `forget` removes them.
    pub fn inode_count(&self) -> usize {
        self.core.inode_count()
    }

    /// Entries in the mount's in-memory tables.
    pub fn table_sizes(&self) -> TableSizes {
        self.core.table_sizes()
    }

    pub fn counters(&self) -> &telemetry::Counters {
        &self.core.counters
    }

    pub fn passthrough(&self) -> bool {
        self.core.passthrough.load(Ordering::Relaxed)
    }

    /// If the metadata in force has expired: when, and the role that expired first.
    pub fn expired(&self) -> Option<(SystemTime, String)> {
        self.core
            .generation()
            .expired_at(SystemTime::now())
            .cloned()
    }

    /// The mount refreshes its metadata every `interval`; unconfirmed for longer than
    /// `stale_after`, it is reported stale (✘ in `trustfs status`, `trustfs_up` 0).
    pub fn set_refresh(&self, interval: Duration, stale_after: Duration) {
        lock(&self.core.freshness).set_refresh(interval, stale_after);
    }

    /// The mount started from metadata trusted earlier because the repository could not be
    /// reached: reported unconfirmed (✘, stale) until a refresh succeeds.
    pub fn started_offline(&self, why: String) {
        lock(&self.core.freshness).offline(why);
    }

    /// A refresh confirmed (or replaced) the metadata in force.
    pub fn refresh_ok(&self) {
        lock(&self.core.freshness).ok(SystemTime::now());
    }

    /// A refresh failed (the last good metadata stays in force); shown by `trustfs status`.
    pub fn refresh_failed(&self, problem: String) {
        lock(&self.core.freshness).failed(problem);
    }

    /// The mount's status record as of now.
    pub fn status(&self) -> telemetry::status::MountStatus {
        self.core.status()
    }

    /// Publish the status record (`telemetry::status::write`), unless the mount is shutting down.
    /// Serialized: the refresh thread and the periodic writer share one temporary file name.
    pub fn write_status(&self) {
        let closed = self
            .core
            .status_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if *closed {
            return;
        }
        let path = || telemetry::status::status_path(&self.core.mountpoint);
        match telemetry::status::write(&self.core.status()) {
            Err(e) => {
                if !self.core.status_failing.swap(true, Ordering::Relaxed) {
                    log_event!(
                        "cannot write the status record {}: {e} (not logged again until a write works)",
                        path().display()
                    );
                }
            }
            Ok(()) => {
                if self.core.status_failing.swap(false, Ordering::Relaxed) {
                    log_event!("status record {} written again", path().display());
                }
            }
        }
    }

    /// Remove the status record and stop writing it (clean unmount).
    pub fn remove_status(&self) {
        let mut closed = self
            .core
            .status_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *closed = true;
        telemetry::status::remove(&self.core.mountpoint);
    }
}

/// If `path` is a dead FUSE mount (its daemon was killed: `statfs`, which the kernel always
/// sends to the daemon, fails with `ENOTCONN`), detach it (`umount2(MNT_DETACH)`) and return true;
/// false if it is not one. (`stat` is no test: the root's attributes may still be cached.)
pub fn detach_dead_mount(path: &Path) -> io::Result<bool> {
    match crate::sys::statfs(path) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {}
        _ => return Ok(false),
    }
    let Err(err) = crate::sys::umount2(path, libc::MNT_DETACH) else {
        return Ok(true);
    };
    // A normal user's own dead mount: through the helper that made it.
    if err.raw_os_error() == Some(libc::EPERM) && fusermount::needed() {
        return fusermount::unmount(path).map(|()| true);
    }
    Err(err)
}

/// `umount2(path, 0)`, falling back to `MNT_DETACH` when busy; "not mounted" counts as done.
fn umount(path: &Path) -> io::Result<()> {
    for flags in [0, libc::MNT_DETACH] {
        let Err(err) = crate::sys::umount2(path, flags) else {
            return Ok(());
        };
        match err.raw_os_error() {
            Some(libc::EBUSY) => continue,
            Some(libc::EINVAL) | Some(libc::ENOENT) => return Ok(()),
            _ => return Err(err),
        }
    }
    Err(io::Error::other("mount stayed busy"))
}

/// Mount `index` at `options.mountpoint` with content from `options.source`; returns once the
/// kernel has completed the FUSE handshake.
pub fn spawn(options: MountOptions, index: TargetIndex) -> io::Result<MountHandle> {
    let counters = Arc::new(telemetry::Counters::default());
    let (content, store) = match &options.source {
        ContentSource::Backing(path) => {
            let backing = BackingDir::open(path).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot open backing directory {}: {e}", path.display()),
                )
            })?;
            let store = store::ObjectStore::create(
                &options.state_dir.join("objects"),
                options.copy_cache_max,
                counters.clone(),
            )
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot prepare object store under {}: {e}",
                        options.state_dir.display()
                    ),
                )
            })?;
            (filesystem::Content::Backing(backing), store)
        }
        ContentSource::Remote(remote) => {
            let mirrors = Mirrors::new(
                &remote.targets_urls,
                remote.consistent_snapshot,
                remote.http.clone(),
            )
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let store = store::ObjectStore::open_cache(
                &remote.cache_dir,
                remote.cache_max,
                counters.clone(),
            )
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot open cache {}: {e}", remote.cache_dir.display()),
                )
            })?;
            (filesystem::Content::Remote(Arc::new(mirrors)), store)
        }
    };
    let lazy = match &options.source {
        ContentSource::Remote(remote) => match &remote.lazy_fetch {
            Some(bases) => {
                let bases = bases.clone().unwrap_or_else(|| {
                    lazyremote::LazyRemote::default_chunk_bases(&remote.targets_urls)
                });
                let l = lazyremote::LazyRemote::new(
                    &bases,
                    remote.http.clone(),
                    &remote.cache_dir,
                    remote.cache_max,
                    // Asked for lazy fetches: lazy for every size unless a threshold was given.
                    match options.verify {
                        chunked::VerifyMode::Open => chunked::VerifyMode::Lazy,
                        mode => mode,
                    },
                )
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                Some(l)
            }
            None => None,
        },
        ContentSource::Backing(_) => None,
    };
    let core = Arc::new(filesystem::MountState::new(
        &options, index, content, store, counters, lazy,
    ));
    let fs = filesystem::TrustFs::new(core.clone());

    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("trustfs".into()),
        MountOption::Subtype("trustfs".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
    ];
    config.acl = if options.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(options.threads.max(1));
    let (session, helper) = if fusermount::needed() {
        // Without privileges: the setuid helper mounts and hands over the descriptor. Worker
        // threads then share it (a clone of it needs /dev/fuse opened anew).
        config.clone_fd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .is_ok();
        let mut mount_options =
            String::from("ro,nodev,nosuid,noatime,fsname=trustfs,subtype=trustfs");
        if options.allow_other {
            mount_options.push_str(",allow_other");
        }
        let (fd, helper) = fusermount::mount(&options.mountpoint, &mount_options)?;
        let acl = config.acl;
        match fuser::Session::from_fd(fs, fd, acl, config).and_then(fuser::Session::spawn) {
            Ok(session) => (session, Some(helper)),
            Err(e) => {
                let _ = helper.unmount();
                return Err(e);
            }
        }
    } else {
        config.clone_fd = true;
        (fuser::spawn_mount(fs, &options.mountpoint, &config)?, None)
    };
    core.set_notifier(session.notifier());
    Ok(MountHandle {
        session: Some(session),
        live: LiveMount { core },
        mountpoint: options.mountpoint,
        helper,
    })
}

//! The read-only verified FUSE filesystem, over a local backing directory or a remote repository.
//!
//! [`spawn`] mounts a [`TargetIndex`] and returns a [`MountHandle`]; the `trustfs mount` command
//! and the integration tests use the same entry point. Where content comes from is the
//! [`ContentSource`]: a local backing directory (namespace from the directory, each file copied
//! and verified at open), or HTTP mirrors of a remote repository (namespace from the index alone,
//! each file downloaded and verified into a persistent cache at first open). What the mount
//! guarantees either way (the one rule): no byte reaches a reader unless it belongs to a file whose
//! length and every listed hash match the index — also after open, because reads are served from
//! an immutable, verified object in the [`store`], never from the backing file or the network.
//!
//! - `filesystem.rs`: the `fuser::Filesystem` (inodes, lookup/readdir, open policy, reads).
//! - `store.rs`: the content-addressed object store (the local mount's private copies, or the
//!   remote mount's shared cache) and the copy-and-hash pipeline both fill it with.
//! - `fetch.rs`: the mirror loop of the remote mount (failover, progress, EIO vs EACCES).
//! - `log.rs`: one timestamped line per event on stderr.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{BackgroundSession, Config, MountOption, SessionACL};

use crate::index::TargetIndex;
use crate::log_event;
use crate::source::remote::Mirrors;
use crate::source::BackingDir;

pub mod fetch;
mod filesystem;
pub mod log;
pub mod store;

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
    /// Bound on the bytes of verified copies not currently open (LRU eviction beyond it).
    pub copy_cache_max: u64,
    /// Serve reads with FUSE passthrough when the kernel offers it (else in userspace).
    pub passthrough: bool,
    /// Files shorter than this are read in userspace with the page cache kept across opens even
    /// when passthrough is on (cheaper per open for small files).
    pub passthrough_min_size: u64,
    /// FUSE worker threads.
    pub threads: usize,
    /// When the trusted metadata expires (the earliest `expires` of the roles it was built
    /// from). From then on every open is refused with `EACCES`. None: not enforced after start.
    pub metadata_expires: Option<SystemTime>,
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
            copy_cache_max: DEFAULT_COPY_CACHE_MAX,
            passthrough: true,
            passthrough_min_size: DEFAULT_PASSTHROUGH_MIN_SIZE,
            threads: default_threads(),
            metadata_expires: None,
        }
    }
}

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

/// Counters of one mount, shared with the filesystem.
#[derive(Debug, Default)]
pub struct Stats {
    /// Full hash passes over backing content (a re-open of an unchanged file adds none).
    pub hash_passes: AtomicU64,
    /// Opens refused (unregistered, altered, not a regular file, ...).
    pub denied: AtomicU64,
    /// Whether the kernel accepted FUSE passthrough at INIT.
    pub passthrough: AtomicBool,
    /// Remote mount: targets downloaded and verified into the cache.
    pub fetches: AtomicU64,
    /// Remote mount: opens failed with EIO because no mirror could deliver.
    pub fetch_failures: AtomicU64,
}

/// A running mount. Dropping it unmounts (lazily if busy).
#[derive(Debug)]
pub struct MountHandle {
    session: Option<BackgroundSession>,
    stats: Arc<Stats>,
    mountpoint: PathBuf,
}

impl MountHandle {
    /// Number of full hash passes so far.
    pub fn hash_passes(&self) -> u64 {
        self.stats.hash_passes.load(Ordering::Relaxed)
    }

    /// Number of refused opens so far.
    pub fn denied(&self) -> u64 {
        self.stats.denied.load(Ordering::Relaxed)
    }

    /// Remote mount: number of targets downloaded into the cache so far.
    pub fn fetches(&self) -> u64 {
        self.stats.fetches.load(Ordering::Relaxed)
    }

    /// Remote mount: number of opens that failed with EIO (no mirror could deliver).
    pub fn fetch_failures(&self) -> u64 {
        self.stats.fetch_failures.load(Ordering::Relaxed)
    }

    /// Whether reads are served by FUSE passthrough.
    pub fn passthrough(&self) -> bool {
        self.stats.passthrough.load(Ordering::Relaxed)
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
        if !session.guard.is_finished() {
            umount(&self.mountpoint)?;
        }
        session.join()
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_inner() {
            log_event!("unmount of {} failed: {e}", self.mountpoint.display());
        }
    }
}

/// `umount2(path, 0)`, falling back to `MNT_DETACH` when busy; "not mounted" counts as done.
fn umount(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    for flags in [0, libc::MNT_DETACH] {
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        let ret = unsafe { libc::umount2(c.as_ptr(), flags) };
        if ret == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
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
    let stats = Arc::new(Stats::default());
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
                stats.clone(),
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
            let mirrors = Mirrors::new(&remote.targets_urls, remote.consistent_snapshot)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let store =
                store::ObjectStore::open_cache(&remote.cache_dir, remote.cache_max, stats.clone())
                    .map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("cannot open cache {}: {e}", remote.cache_dir.display()),
                        )
                    })?;
            (filesystem::Content::remote(mirrors, &index), store)
        }
    };
    let fs = filesystem::TrustFs::new(&options, index, content, store, stats.clone());

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
    config.clone_fd = true;
    let session = fuser::spawn_mount(fs, &options.mountpoint, &config)?;
    Ok(MountHandle {
        session: Some(session),
        stats,
        mountpoint: options.mountpoint,
    })
}

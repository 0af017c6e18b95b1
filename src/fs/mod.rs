//! The read-only verified FUSE filesystem over a local backing directory.
//!
//! [`spawn`] mounts a [`TargetIndex`] over a backing directory and returns a [`MountHandle`]; the
//! `trustfs mount` command and the integration tests use the same entry point. What the mount
//! guarantees (the one rule): no byte reaches a reader unless it belongs to a file whose length and
//! every listed hash match the index — also after open, because reads are served from a private,
//! verified copy in the [`store`], never from the backing file itself.
//!
//! - `filesystem.rs`: the `fuser::Filesystem` (inodes, lookup/readdir, open policy, reads).
//! - `store.rs`: the content-addressed object store and the copy-and-hash pipeline.
//! - `log.rs`: one timestamped line per event on stderr.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use fuser::{BackgroundSession, Config, MountOption, SessionACL};

use crate::index::TargetIndex;
use crate::log_event;
use crate::source::BackingDir;

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

/// How the mount is set up.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// The backing content directory; nothing outside it is ever opened.
    pub backing: PathBuf,
    /// Private state; verified copies go to `<state_dir>/objects` (cleared at start).
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
}

impl MountOptions {
    /// Defaults for everything but the three paths.
    pub fn new(mountpoint: &Path, backing: &Path, state_dir: &Path) -> MountOptions {
        MountOptions {
            mountpoint: mountpoint.to_owned(),
            backing: backing.to_owned(),
            state_dir: state_dir.to_owned(),
            allow_other: false,
            unregistered: Unregistered::Deny,
            copy_cache_max: DEFAULT_COPY_CACHE_MAX,
            passthrough: true,
            passthrough_min_size: DEFAULT_PASSTHROUGH_MIN_SIZE,
            threads: default_threads(),
        }
    }
}

/// Default size from which reads use passthrough: 256 KiB.
pub const DEFAULT_PASSTHROUGH_MIN_SIZE: u64 = 256 << 10;

/// Default bound of the copy cache: 2 GiB.
pub const DEFAULT_COPY_CACHE_MAX: u64 = 2 << 30;

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

/// Mount `index` over `options.backing` at `options.mountpoint`; returns once the kernel has
/// completed the FUSE handshake.
pub fn spawn(options: MountOptions, index: TargetIndex) -> io::Result<MountHandle> {
    let backing = BackingDir::open(&options.backing).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot open backing directory {}: {e}",
                options.backing.display()
            ),
        )
    })?;
    let stats = Arc::new(Stats::default());
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
    let fs = filesystem::TrustFs::new(&options, index, backing, store, stats.clone());

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

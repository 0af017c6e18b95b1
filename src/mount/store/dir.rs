//! The store directory: made (or cleared, only if trustfs made it) for the private store, opened
//! (or made) for the shared cache, and refused unless it is ours and writable by us alone.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use super::durable::sync_and_record;
use super::temps::temp_owner;
use super::{openat, Inner, ObjectStore, StoreMode};
use crate::mount::durability::Syncer;
use crate::telemetry::Counters;

impl ObjectStore {
    /// Create (or clear) the store directory `dir` with mode 0700, marked with [`MARKER`].
    /// An existing `dir` is cleared only if it is a store trustfs made: it carries the marker (or,
    /// made before the marker existed, holds nothing but object and temporary files). Anything
    /// else is refused, so a mistaken `--state-dir` never deletes someone's files.
    pub fn create(dir: &Path, max_bytes: u64, counters: Arc<Counters>) -> io::Result<ObjectStore> {
        if dir.symlink_metadata().is_ok() {
            check_clearable(dir)?;
            std::fs::remove_dir_all(dir)?;
        }
        if let Some(parent) = dir.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
        std::fs::DirBuilder::new().mode(0o700).create(dir)?;
        let dirfd = open_owned_dir(dir)?;
        openat(
            &dirfd,
            MARKER,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o400,
        )?;
        Ok(ObjectStore {
            dir: dir.to_owned(),
            dirfd,
            mode: StoreMode::PrivateCleared,
            max_bytes,
            inner: Mutex::new(Inner::default()),
            tmp_counter: AtomicU64::new(0),
            counters,
            syncer: None,
        })
    }

    /// Open (or create, mode 0700) the persistent download cache `dir`. Nothing verified is
    /// removed; temporary files of dead writers are; objects over `max_bytes` are evicted LRU.
    pub fn open_cache(
        dir: &Path,
        max_bytes: u64,
        counters: Arc<Counters>,
    ) -> io::Result<ObjectStore> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let dirfd = open_owned_dir(dir)?;
        let mut store = ObjectStore {
            dir: dir.to_owned(),
            dirfd,
            mode: StoreMode::SharedCache,
            max_bytes,
            inner: Mutex::new(Inner::default()),
            tmp_counter: AtomicU64::new(0),
            counters,
            syncer: None,
        };
        let removed = store.remove_stale_temps()?;
        if removed > 0 {
            crate::log_event!(
                "cache {}: removed {removed} partial download(s) left by a stopped daemon",
                dir.display()
            );
        }
        store.recover_after_reboot()?;
        // Everything there now is on disk from here on; record it before storing anything.
        let syncfd = store.dirfd.try_clone()?;
        sync_and_record(&syncfd, &[]).map_err(|e| e.error)?;
        let dir_for_log = dir.to_owned();
        store.syncer = Some(Syncer::start(move |batch| {
            if let Err(e) = sync_and_record(&syncfd, &batch) {
                crate::log_event!(
                    "ERROR cache {}: cannot make stored objects durable: {}{}",
                    dir_for_log.display(),
                    e.error,
                    if e.removed > 0 {
                        format!("; removed {} object(s) whose bytes did not reach the disk (downloaded again when opened)", e.removed)
                    } else {
                        String::new()
                    }
                );
            }
        }));
        let mut inner = store.lock();
        store.evict(&mut inner);
        drop(inner);
        Ok(store)
    }
}

/// The file that marks a directory as a trustfs object store (`<state-dir>/objects`).
pub const MARKER: &str = ".trustfs-objects";

/// May the existing `dir` be cleared as an object store? It must be a directory (not a
/// symlink) owned by our euid and carry [`MARKER`], or hold only `t-<64 hex>`, `tmp.*` and
/// `new.*` files (a store from before the marker).
fn check_clearable(dir: &Path) -> io::Result<()> {
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing to clear {}: {why}; it does not look like a trustfs object store \
                 (is --state-dir right?)",
                dir.display()
            ),
        ))
    };
    let meta = dir.symlink_metadata()?;
    if !meta.is_dir() {
        return refuse("it is not a directory".into());
    }
    if meta.uid() != euid() {
        return refuse(format!("it is owned by uid {}", meta.uid()));
    }
    let dirfd = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)?;
    if fstatat_nofollow(&dirfd, MARKER).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG) {
        return Ok(());
    }
    for name in list_names(&dirfd)? {
        let object = name
            .strip_prefix("t-")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        let regular = fstatat_nofollow(&dirfd, &name)
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG);
        if !((object || temp_owner(&name).is_some()) && regular) {
            return refuse(format!("it has no {MARKER} marker and holds {name:?}"));
        }
    }
    Ok(())
}

/// This process's effective uid.
pub(super) fn euid() -> u32 {
    crate::sys::euid()
}

/// Open the store directory `dir` (no symlink), refuse it unless it is owned by our euid and not
/// writable by group or others (whoever else can write it can plant objects), then make it 0700.
pub(in crate::mount) fn open_owned_dir(dir: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a directory (or is a symbolic link)",
                    dir.display()
                ),
            ),
            _ => e,
        })?;
    let meta = file.metadata()?;
    if meta.uid() != euid() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing {}: it is owned by uid {}, not by this daemon's uid {} \
                 (its owner could plant content in it)",
                dir.display(),
                meta.uid(),
                euid()
            ),
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing {}: it is writable by group or others (mode {:o}), \
                 so others could plant content in it; make it 0700",
                dir.display(),
                meta.mode() & 0o7777
            ),
        ));
    }
    file.set_permissions(std::fs::Permissions::from_mode(0o700))?;
    Ok(file)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
pub(in crate::mount) fn fstatat_nofollow(dir: &File, name: &str) -> io::Result<libc::stat> {
    crate::source::fstatat_nofollow(dir.as_fd(), name)
}

/// The names in directory `dir` (without `.` and `..`; names that are not UTF-8 are skipped:
/// the store never makes one).
pub(in crate::mount) fn list_names(dir: &File) -> io::Result<Vec<String>> {
    Ok(crate::source::list_dir(dir.as_fd())?
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .collect())
}

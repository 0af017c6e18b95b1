//! The shared cache made durable: stored objects synced in batches with a record of the sync
//! (`syncfs`, then a record naming the boot), and after a system crash the objects of the last
//! unsynced moments removed before anything is served (see `mount/durability.rs`).

use std::fs::File;
use std::io::{self, Read, Write};

use super::dir::{fstatat_nofollow, list_names};
use super::{openat, renameat, unlinkat, ObjectStore};
use crate::mount::durability::{self, SyncRecord};

impl ObjectStore {
    /// If the system crashed since the cache was last synced (its record names another boot),
    /// remove every object not clearly older than that sync: its bytes may not have reached the
    /// disk. Objects in use (locked by a daemon started in this boot) are left alone.
    pub(super) fn recover_after_reboot(&self) -> io::Result<()> {
        let record = match openat(
            &self.dirfd,
            durability::RECORD,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0,
        ) {
            Ok(mut f) => {
                let mut text = String::new();
                let _ = Read::by_ref(&mut f).take(256).read_to_string(&mut text);
                SyncRecord::parse(&text)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(e),
        };
        // Without a readable record (a crash while the first one was written, a cache of an
        // older version) or without a known boot, nothing vouches for any object.
        let current = durability::boot_id();
        let why = match (&record, &current) {
            (Some(r), Some(boot)) if &r.boot == boot => return Ok(()),
            (Some(_), Some(_)) => "the system restarted since the cache was last synced",
            (None, _) => "the cache has no readable sync record",
            (Some(_), None) => "this boot's id cannot be read (/proc/sys/kernel/random/boot_id)",
        };
        let suspect = |mtime: i64| match (&record, &current) {
            (Some(r), Some(_)) => r.suspect(mtime),
            _ => true,
        };
        let mut removed = 0;
        for name in list_names(&self.dirfd)? {
            if !name.starts_with("t-") {
                continue;
            }
            let Ok(st) = fstatat_nofollow(&self.dirfd, &name) else {
                continue;
            };
            if !suspect(st.st_mtime) {
                continue;
            }
            if self.remove_unused(&name) {
                removed += 1;
            }
        }
        if removed > 0 || record.is_some() {
            crate::log_event!(
                "cache {}: {why}; removed {removed} object(s) that may not have reached the disk (they are downloaded again when opened)",
                self.dir.display()
            );
        }
        Ok(())
    }

    /// Sync every object stored so far now (the next batch would within a second).
    pub fn sync(&self) {
        if let Some(s) = &self.syncer {
            s.flush();
        }
    }
}

/// Why a batch could not be made durable, and how many of its objects were removed for it.
pub(super) struct SyncFailure {
    pub(super) error: io::Error,
    pub(super) removed: usize,
}

/// `syncfs` the cache's filesystem and `fsync` each object of `batch` (to learn of a write error
/// per file: an object whose bytes did not reach the disk is removed), then record (a flushed
/// temporary file, renamed) that everything stored before the sync began is on disk, unless an
/// object of the batch failed.
pub(super) fn sync_and_record(dirfd: &File, batch: &[String]) -> Result<(), SyncFailure> {
    let fail = |error: io::Error, removed: usize| SyncFailure { error, removed };
    let before = durability::now_secs();
    let synced = durability::syncfs(dirfd);
    let mut first_error = None;
    let mut removed = 0;
    for name in batch {
        let result = openat(
            dirfd,
            name,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0,
        )
        .and_then(|f| f.sync_all());
        match result {
            Ok(()) => {}
            // Evicted meanwhile: nothing left to be durable.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => {
                if unlinkat(dirfd, name).is_ok() {
                    removed += 1;
                }
                first_error.get_or_insert(io::Error::new(e.kind(), format!("{name}: {e}")));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(fail(e, removed));
    }
    if batch.is_empty() {
        // The start-up sync: nothing but the syncfs vouches for what is there.
        synced.map_err(|e| fail(e, 0))?;
    }
    let record = SyncRecord {
        boot: durability::boot_id().unwrap_or_else(|| durability::UNKNOWN_BOOT.to_owned()),
        synced_before: before,
    };
    // Unique among daemons sharing the cache, also two pid 1s in different containers.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = format!(
        "{}.{}.{}.{nanos}",
        durability::RECORD,
        std::process::id(),
        durability::now_secs()
    );
    let write = || -> io::Result<()> {
        let mut f = openat(
            dirfd,
            &tmp,
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        )?;
        f.write_all(record.render().as_bytes())?;
        f.sync_all()?;
        drop(f);
        renameat(dirfd, &tmp, durability::RECORD)
    };
    write().map_err(|e| {
        let _ = unlinkat(dirfd, &tmp);
        fail(e, 0)
    })
}

//! Temporary files: each writer's uniquely named, locked temporary (`new.*`, then `tmp.*`), and
//! the removal of those whose writer is gone.

use std::fs::File;
use std::io;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::dir::{fstatat_nofollow, list_names};
use super::{flock, openat, renameat, unlinkat, ObjectStore, StoreMode};
use crate::mount::durability;

impl ObjectStore {
    /// Remove temporary files whose writer is gone. A writer takes `flock(LOCK_SH)` on its file
    /// before the file has a `tmp.*` name (it is created as `new.*`, locked, then renamed), and
    /// holds it until the object is published or removed, so a `tmp.*` file whose lock is free
    /// has no live writer, in any pid namespace. A `new.*` file (a writer that died between its
    /// create and its lock, a few microseconds) is removed once it is an hour old and unlocked.
    pub(super) fn remove_stale_temps(&self) -> io::Result<usize> {
        let mut removed = 0;
        for name in list_names(&self.dirfd)? {
            let fresh = name.starts_with("new.");
            if !(fresh || name.starts_with("tmp.")) || temp_owner(&name).is_none() {
                continue;
            }
            if fresh {
                let old = fstatat_nofollow(&self.dirfd, &name)
                    .is_ok_and(|st| durability::now_secs() - st.st_mtime > 3600);
                if !old {
                    continue;
                }
            }
            if self.remove_unused(&name) {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Create a new temporary file, named `tmp.<pid>.<unique>`; in the shared cache it is held
    /// with `flock(LOCK_SH)` from before it has that name until it is published or removed (the
    /// same lock then protects the object from evictors: no lock conversion, no gap). The
    /// unique part (time, a counter and 64 random bits) keeps the names of daemons that share a
    /// pid (pid 1 in containers) and the cache apart.
    pub(super) fn create_temp(&self) -> io::Result<(String, File)> {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let random = rand_core::RngCore::next_u64(&mut rand_core::OsRng);
        let unique = format!("{}.{nanos:x}{n:x}{random:016x}", std::process::id());
        let (new_name, tmp_name) = (format!("new.{unique}"), format!("tmp.{unique}"));
        let file = openat(
            &self.dirfd,
            &new_name,
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o400,
        )?;
        let locked = if self.mode == StoreMode::SharedCache {
            flock(&file, libc::LOCK_SH)
        } else {
            Ok(())
        };
        if let Err(e) = locked.and_then(|()| renameat(&self.dirfd, &new_name, &tmp_name)) {
            let _ = unlinkat(&self.dirfd, &new_name);
            return Err(e);
        }
        Ok((tmp_name, file))
    }
}

/// The writer pid of a temporary file name `tmp.<pid>.<unique hex>` (or `new.…`).
pub(super) fn temp_owner(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix("tmp.")
        .or_else(|| name.strip_prefix("new."))?;
    let (pid, unique) = rest.split_once('.')?;
    if unique.is_empty() || !unique.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    pid.parse().ok()
}

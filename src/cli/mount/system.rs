//! What the mount daemon asks of the system: free memory back, SIGINT/SIGTERM, CAP_SYS_ADMIN, a
//! private directory.

use std::path::Path;
use std::time::Duration;

/// Give the memory the metadata workflow freed back to the system. Loading a large repository
/// parses every metadata file (hash bins included) into values that are dropped once the target
/// index is built; glibc keeps such freed memory in its heaps, so without this the daemon's RSS
/// stays at the peak of the load (100,000 targets in 256 hash bins: 350 MiB at start, 253 MiB
/// with this).
pub(super) fn release_free_memory() {
    crate::sys::malloc_trim();
}

pub(super) fn block_signals() -> std::io::Result<libc::sigset_t> {
    crate::sys::block_signals()
}

pub(super) fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    crate::sys::wait_signal(set, timeout)
}

/// Whether this process has CAP_SYS_ADMIN in effect (`CapEff` in /proc/self/status).
pub(super) fn has_cap_sys_admin() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// Create `dir` (and its parents); a normal user's is private (0700): it holds verified copies
/// and the trusted metadata.
pub(super) fn create_private_dir(dir: &Path, root: bool) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(if root { 0o755 } else { 0o700 })
        .create(dir)
}

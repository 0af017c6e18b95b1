//! The process's open-file limit: read it, and raise the soft limit to the hard one at start
//! (as most daemons do), so the many readers of a mount do not run the daemon out of descriptors
//! at the historical default of 1024. The descriptors the daemon uses are bounded anyway (see
//! `readfiles.rs`); this only leaves room.

use std::io;

/// The soft `RLIMIT_NOFILE`, if it can be read.
pub fn open_files_limit() -> Option<u64> {
    get().ok().map(|l| l.rlim_cur)
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit. Returns (before, after).
pub fn raise_open_files_limit() -> io::Result<(u64, u64)> {
    let mut l = get()?;
    let before = l.rlim_cur;
    if l.rlim_cur < l.rlim_max {
        l.rlim_cur = l.rlim_max;
        crate::sys::set_open_files_limit(&l)?;
    }
    Ok((before, l.rlim_cur))
}

fn get() -> io::Result<libc::rlimit> {
    crate::sys::open_files_limit()
}

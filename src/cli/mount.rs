//! `trustfs mount`: verify the metadata, then serve a verified, read-only view of a backing
//! directory in the foreground until SIGINT/SIGTERM or an external `umount`.
//!
//! Exit codes: 0 clean unmount; 2 the metadata cannot be trusted (nothing is mounted); 1 the mount
//! itself failed (bad backing directory, mountpoint, no /dev/fuse, ...).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::Parser;

use crate::fs::{self, MountOptions, Unregistered};
use crate::log_event;
use crate::trust::{self, MetadataSource, TrustOptions};

/// Mount a verified, read-only view of a backing directory.
///
/// Only files listed in the signed targets metadata, with matching length and hashes, can be
/// opened; everything else gets "Permission denied" (EACCES) and one log line on stderr. Reads are
/// served from a private verified copy, so changing a backing file after it was verified never
/// changes what readers see. Runs in the foreground; SIGINT or SIGTERM unmounts and exits.
#[derive(Parser, Debug)]
pub struct Args {
    /// The trusted root metadata (root.json) you pinned; never taken from the repository.
    #[arg(long, value_name = "ROOT.json")]
    pub root: PathBuf,
    /// Directory holding the repository metadata (timestamp.json, N.root.json, ...).
    #[arg(long, value_name = "METADATA_DIR")]
    pub metadata: PathBuf,
    /// Directory holding the content (target files under their target paths).
    #[arg(long, value_name = "CONTENT_DIR")]
    pub backing: PathBuf,
    /// Private state: metadata versions seen (rollback protection across restarts) and verified
    /// copies (`objects/`, cleared at start). Default: /var/lib/trustfs/<escaped mountpoint>.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Let every user (e.g. containers running as other uids) use the mount (allow_other).
    #[arg(long)]
    pub allow_other: bool,
    /// Hide files the metadata does not list (instead of listing them and refusing opens).
    #[arg(long)]
    pub hide_unregistered: bool,
    /// Disk bound for verified copies that are not currently open, e.g. 512M, 2G, 1T (LRU).
    #[arg(long, value_name = "SIZE", default_value = "2G", value_parser = parse_size)]
    pub copy_cache_max: u64,
    /// Serve reads in userspace even if the kernel supports FUSE passthrough.
    #[arg(long)]
    pub no_passthrough: bool,
    /// FUSE worker threads (default: two per CPU, at least 4).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Where to mount.
    pub mountpoint: PathBuf,
}

/// Parse `123`, `64K`, `512M`, `2G`, `1T` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("unknown size suffix {c:?} (use K, M, G or T)")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 512M or 2G"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `/mnt/trusted` → `mnt-trusted` (like `systemd-escape --path`, without the \x escapes).
pub fn state_name(mountpoint: &Path) -> String {
    let s = mountpoint.to_string_lossy();
    let name: String = s
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        "root".into()
    } else {
        name
    }
}

pub fn run(args: Args) -> i32 {
    if !args.mountpoint.exists() {
        // A missing mountpoint is created (as `mount` helpers and systemd do), not an error.
        if let Err(e) = std::fs::create_dir_all(&args.mountpoint) {
            super::report_error(
                "mount",
                &format!("mountpoint {}: {e}", args.mountpoint.display()),
            );
            return super::EXIT_CONTENT;
        }
        log_event!("created mountpoint {}", args.mountpoint.display());
    }
    let mountpoint = std::fs::canonicalize(&args.mountpoint).unwrap_or(args.mountpoint.clone());
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| Path::new("/var/lib/trustfs").join(state_name(&mountpoint)));
    if let Err(e) = std::fs::create_dir_all(&state_dir) {
        super::report_error("mount", &format!("state dir {}: {e}", state_dir.display()));
        return super::EXIT_CONTENT;
    }

    let trusted = match trust::load(&TrustOptions {
        trusted_root: args.root.clone(),
        source: MetadataSource::Dir(args.metadata.clone()),
        state_dir: Some(state_dir.clone()),
        now: SystemTime::now(),
    }) {
        Ok(t) => t,
        Err(e) => {
            super::report_error(
                "mount",
                &format!("refusing to mount: metadata cannot be trusted: {e}"),
            );
            return super::EXIT_METADATA;
        }
    };

    // Block SIGINT/SIGTERM before any thread exists, so every thread inherits the mask and the
    // signals stay pending for `wait_signal` below instead of killing the process mid-mount.
    let signals = match block_signals() {
        Ok(s) => s,
        Err(e) => {
            super::report_error("mount", &format!("cannot block signals: {e}"));
            return super::EXIT_CONTENT;
        }
    };

    let mut options = MountOptions::new(&mountpoint, &args.backing, &state_dir);
    options.allow_other = args.allow_other;
    options.unregistered = if args.hide_unregistered {
        Unregistered::Hide
    } else {
        Unregistered::Deny
    };
    options.copy_cache_max = args.copy_cache_max;
    options.passthrough = !args.no_passthrough;
    if let Some(n) = args.threads {
        options.threads = n;
    }
    for problem in &trusted.problems {
        log_event!("warning: left out of the mount: {problem}");
    }
    let targets = trusted.index.len();
    let handle = match fs::spawn(options, trusted.index) {
        Ok(h) => h,
        Err(e) => {
            super::report_error("mount", &format!("{}: {e}", mountpoint.display()));
            return super::EXIT_CONTENT;
        }
    };
    let s = &trusted.summary;
    log_event!(
        "serving {targets} targets from {} at {} (root v{}, timestamp v{}, snapshot v{}, targets v{}); state in {}",
        args.backing.display(),
        mountpoint.display(),
        s.root_version,
        s.timestamp_version,
        s.snapshot_version,
        s.targets_version,
        state_dir.display()
    );

    loop {
        if let Some(sig) = wait_signal(&signals, Duration::from_millis(500)) {
            log_event!("received signal {sig}; unmounting {}", mountpoint.display());
            return match handle.unmount() {
                Ok(()) => {
                    log_event!("unmounted {}", mountpoint.display());
                    super::EXIT_OK
                }
                Err(e) => {
                    super::report_error("mount", &format!("unmount failed: {e}"));
                    super::EXIT_CONTENT
                }
            };
        }
        if handle.is_finished() {
            log_event!("{} was unmounted externally; exiting", mountpoint.display());
            let _ = handle.unmount();
            return super::EXIT_OK;
        }
    }
}

/// Block SIGINT and SIGTERM in the calling thread (and every thread it spawns later).
fn block_signals() -> std::io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before any other use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t; the signal numbers are valid constants.
    let ret = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if ret != 0 {
        return Err(std::io::Error::from_raw_os_error(ret));
    }
    Ok(set)
}

/// Wait up to `timeout` for one of the blocked signals in `set`; returns its number.
fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` and `ts` are valid for the call; a null siginfo pointer is allowed.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("2X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn state_names() {
        assert_eq!(state_name(Path::new("/mnt/trusted")), "mnt-trusted");
        assert_eq!(state_name(Path::new("/")), "root");
        assert_eq!(state_name(Path::new("/srv/a b/c")), "srv-a-b-c");
    }
}

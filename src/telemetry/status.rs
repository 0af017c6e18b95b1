//! The status record a running mount publishes, and how `trustfs status` finds and judges it.
//!
//! Every mount writes `<runtime dir>/<instance>.json` (atomically, every second and on every
//! metadata change), where the runtime directory is `/run/trustfs` (or `$TRUSTFS_RUNTIME_DIR`) and
//! the instance is the mountpoint escaped like `systemd-escape --path` ([`instance_name`]). `trustfs status` lists the
//! trustfs mounts of `/proc/self/mountinfo` and judges each by its record: verified (✔) only
//! if the daemon is alive, its record is fresh, and the metadata it serves is trusted and unexpired
//! right now.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CountersSnapshot;
use crate::schema::UtcTime;
use crate::trust::TrustSummary;

/// Seconds between status writes; a record older than [`STALE_AFTER`] means a stuck daemon.
pub use super::mountinfo::{
    parse_mountinfo, top_mount, trustfs_mounts, unescape_mountinfo, TopMount,
};

pub const WRITE_INTERVAL_SECS: u64 = 1;
pub const STALE_AFTER: i64 = 60;

/// The published state of one mount.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MountStatus {
    pub pid: u32,
    pub mountpoint: String,
    /// Where metadata comes from (directory or URL).
    pub repository: String,
    /// Where content comes from (backing directory or targets URLs).
    pub content: String,
    pub started: String,
    pub updated: String,
    pub updated_unix: i64,
    /// The daemon's own judgement: metadata trusted and unexpired at its last check.
    pub verified: bool,
    /// Why not verified (or the last failed refresh, while still verified).
    pub problem: Option<String>,
    /// The metadata was not confirmed by a refresh for longer than the staleness bound.
    #[serde(default)]
    pub stale: bool,
    /// When the metadata in force was last confirmed (mount start or a successful refresh).
    #[serde(default)]
    pub confirmed: String,
    #[serde(default)]
    pub confirmed_unix: i64,
    /// `--refresh-interval` and the staleness bound, in seconds (None: no live refresh).
    #[serde(default)]
    pub refresh_interval_secs: Option<u64>,
    #[serde(default)]
    pub stale_after_secs: Option<u64>,
    pub metadata: TrustSummary,
    pub targets: usize,
    pub counters: CountersSnapshot,
    /// Entries in the daemon's in-memory tables (absent in records of older daemons).
    #[serde(default)]
    pub tables: super::TableSizes,
    /// The daemon's open descriptors and resident memory, from `/proc/self`.
    #[serde(default)]
    pub process: ProcessStats,
}

/// Resource use of the daemon process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStats {
    pub open_fds: u64,
    pub resident_bytes: u64,
}

impl ProcessStats {
    /// Read from `/proc/self` (zeros where it cannot be read).
    pub fn now() -> ProcessStats {
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        // statm: size resident shared ... in pages.
        let resident_pages = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0);
        ProcessStats {
            open_fds,
            resident_bytes: resident_pages.saturating_mul(page_size()),
        }
    }
}

fn page_size() -> u64 {
    crate::sys::page_size()
}

/// Root's runtime directory, where system mounts publish their status records.
pub const SYSTEM_RUNTIME_DIR: &str = "/run/trustfs";

fn is_root() -> bool {
    crate::sys::euid() == 0
}

/// An absolute path from the environment variable `name`, if set to one.
fn env_dir(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// Where a normal user's trustfs keeps its state: `$XDG_STATE_HOME/trustfs`, else
/// `~/.local/state/trustfs`; `None` without a home directory.
pub fn user_state_base() -> Option<PathBuf> {
    env_dir("XDG_STATE_HOME")
        .or_else(|| env_dir("HOME").map(|h| h.join(".local/state")))
        .map(|d| d.join("trustfs"))
}

/// Where this process publishes status records: `$TRUSTFS_RUNTIME_DIR` if set; for root
/// `/run/trustfs`; for a normal user `$XDG_RUNTIME_DIR/trustfs`, else `run/` in the user's
/// state directory (see [`user_state_base`]).
pub fn runtime_dir() -> PathBuf {
    if let Some(d) = env_dir("TRUSTFS_RUNTIME_DIR") {
        return d;
    }
    if is_root() {
        return PathBuf::from(SYSTEM_RUNTIME_DIR);
    }
    env_dir("XDG_RUNTIME_DIR")
        .map(|d| d.join("trustfs"))
        .or_else(|| user_state_base().map(|b| b.join("run")))
        .unwrap_or_else(|| PathBuf::from(SYSTEM_RUNTIME_DIR))
}

/// Where `trustfs status` looks for records: [`runtime_dir`], then (for a normal user without
/// `$TRUSTFS_RUNTIME_DIR`) root's, so a user sees system mounts too.
pub fn runtime_dirs() -> Vec<PathBuf> {
    let own = runtime_dir();
    let system = PathBuf::from(SYSTEM_RUNTIME_DIR);
    if env_dir("TRUSTFS_RUNTIME_DIR").is_some() || own == system {
        vec![own]
    } else {
        vec![own, system]
    }
}

/// Make sure this process can publish status records (one clear error at start instead of a
/// failed write every second): create [`runtime_dir`] (private to a normal user) and write a
/// probe file in it.
pub fn check_runtime_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    use std::os::unix::fs::MetadataExt;
    let dir = runtime_dir();
    let mode = if is_root() { 0o755 } else { 0o700 };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(&dir)
        .and_then(|()| {
            // Ours alone: records there vouch for our mounts (see `judge`), and a directory
            // another user can write lets them plant files and links.
            let m = std::fs::symlink_metadata(&dir)?;
            let me = crate::sys::euid();
            if !m.is_dir() || m.uid() != me || m.mode() & 0o022 != 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "not a directory owned by uid {me} that only its owner can write (owner uid {}, mode {:04o})",
                        m.uid(),
                        m.mode() & 0o7777
                    ),
                ));
            }
            let probe = dir.join(format!(".probe.{}", std::process::id()));
            let _ = std::fs::remove_file(&probe);
            create_new_file(&probe, 0o600)?;
            std::fs::remove_file(&probe)
        })
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "status directory {}: {e} (set TRUSTFS_RUNTIME_DIR to a directory this user can write)",
                    dir.display()
                ),
            )
        })?;
    Ok(dir)
}

/// The mountpoint escaped exactly like `systemd-escape --path` (so it equals the `%i` of the
/// `trustfs@.service` instance for that path): empty components dropped, `/` → `-`, bytes other
/// than `[A-Za-z0-9:_.]` (among them `-` and `\\`) → `\xNN`, a leading `.` → `\x2e`, the root →
/// `-`. Injective on normalized absolute paths, so two mountpoints never share a status record
/// or a default state directory (`/srv/app-data`, `/srv/app/data` and `/srv/app data` give
/// `srv-app\x2ddata`, `srv-app-data` and `srv-app\x20data`).
pub fn instance_name(mountpoint: &Path) -> String {
    use std::fmt::Write as _;
    use std::os::unix::ffi::OsStrExt;
    let bytes = mountpoint.as_os_str().as_bytes();
    let mut out = String::new();
    for component in bytes.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        if !out.is_empty() {
            out.push('-');
        }
        for (i, &b) in component.iter().enumerate() {
            let plain = b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'.';
            if plain && !(b == b'.' && i == 0 && out.is_empty()) {
                out.push(b as char);
            } else {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    if out.is_empty() {
        "-".into()
    } else {
        out
    }
}

pub fn status_path(mountpoint: &Path) -> PathBuf {
    runtime_dir().join(format!("{}.json", instance_name(mountpoint)))
}

/// What the status record keeps out of its world-readable file: the paths, pids and uids of
/// denied opens and faults, which are other users' business. They go to a companion file only
/// the daemon's user (and root) can read, `<instance>.private.json`, which [`judge`] merges in
/// when the caller can read it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct PrivateDetails {
    pid: u32,
    last_denial: Option<String>,
    last_fault: Option<String>,
    #[serde(default)]
    recent_denials: Vec<super::DenialRecord>,
}

fn private_path(mountpoint: &Path) -> PathBuf {
    runtime_dir().join(format!("{}.private.json", instance_name(mountpoint)))
}

/// Write `status` atomically (temporary file + rename): the record world-readable without
/// the details of denials and faults, those in a companion file of mode 0600
/// (`PrivateDetails`).
pub fn write(status: &MountStatus) -> std::io::Result<()> {
    let mut public = status.clone();
    let c = &mut public.counters;
    let details = PrivateDetails {
        pid: status.pid,
        last_denial: c.last_denial.take(),
        last_fault: c.last_fault.take(),
        recent_denials: std::mem::take(&mut c.recent_denials),
    };
    let mountpoint = Path::new(&status.mountpoint);
    let dir = runtime_dir();
    std::fs::create_dir_all(&dir)?;
    let name = instance_name(mountpoint);
    // The private part first: a reader that finds the new record finds its details too.
    write_atomically(
        &dir.join(format!(".{name}.private.{}.tmp", status.pid)),
        &private_path(mountpoint),
        &serde_json::to_vec_pretty(&details).map_err(std::io::Error::other)?,
        0o600,
    )?;
    write_atomically(
        &dir.join(format!(".{name}.{}.tmp", status.pid)),
        &status_path(mountpoint),
        &serde_json::to_vec_pretty(&public).map_err(std::io::Error::other)?,
        0o644,
    )
}

fn write_atomically(tmp: &Path, path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    // Never through a link someone left at that name.
    let _ = std::fs::remove_file(tmp);
    let mut f = create_new_file(tmp, mode)?;
    f.write_all(bytes)?;
    drop(f);
    std::fs::rename(tmp, path)
}

/// Create `path` anew (`O_EXCL`, never following a link) with `mode`.
fn create_new_file(path: &Path, mode: u32) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// The uid that mounted the FUSE filesystem at `mountpoint` (its `user_id=` option in
/// /proc/self/mountinfo).
fn mount_owner(mountpoint: &Path) -> Option<u32> {
    let info = std::fs::read("/proc/self/mountinfo").ok()?;
    let info = String::from_utf8_lossy(&info);
    let want = mountpoint.to_string_lossy();
    info.lines().rev().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if unescape_mountinfo(left.split(' ').nth(4)?) != want {
            return None;
        }
        right
            .split(' ')
            .nth(2)?
            .split(',')
            .find_map(|o| o.strip_prefix("user_id="))?
            .parse()
            .ok()
    })
}

/// The real uid of process `pid`, if it runs.
fn pid_owner(pid: u32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid())
}

/// Remove the record of a mount that is shutting down.
pub fn remove(mountpoint: &Path) {
    let _ = std::fs::remove_file(status_path(mountpoint));
    let _ = std::fs::remove_file(private_path(mountpoint));
}

/// The verdict on one mount.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub mountpoint: String,
    pub verified: bool,
    /// Reasons it is not verified (empty when verified).
    pub problems: Vec<String>,
    pub status: Option<MountStatus>,
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Judge the mount at `mountpoint` now.
pub fn judge(mountpoint: &Path, now: UtcTime) -> Verdict {
    let mut problems = Vec::new();
    // A record vouches only for a mount made by the owner of the directory it is in, as written
    // by a daemon of that owner: a user's own directory cannot speak for root's mounts.
    use std::os::unix::fs::MetadataExt;
    let file = format!("{}.json", instance_name(mountpoint));
    let owner = mount_owner(mountpoint);
    let found: Option<(MountStatus, u32)> = runtime_dirs().iter().find_map(|dir| {
        let meta = std::fs::symlink_metadata(dir).ok().filter(|m| m.is_dir())?;
        if owner.is_some_and(|u| u != meta.uid()) {
            return None;
        }
        let mut status: MountStatus = std::fs::read(dir.join(&file))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(|s: &MountStatus| Path::new(&s.mountpoint) == mountpoint)?;
        // The details, if this caller may read them (the daemon's user or root).
        let details =
            std::fs::read(dir.join(format!("{}.private.json", instance_name(mountpoint))))
                .ok()
                .and_then(|b| serde_json::from_slice::<PrivateDetails>(&b).ok())
                .filter(|d| d.pid == status.pid);
        if let Some(d) = details {
            let c = &mut status.counters;
            c.last_denial = d.last_denial;
            c.last_fault = d.last_fault;
            c.recent_denials = d.recent_denials;
        }
        Some((status, meta.uid()))
    });
    if let Some((s, uid)) = &found {
        if pid_alive(s.pid) && pid_owner(s.pid) != Some(*uid) {
            problems.push(format!(
                "the status record names pid {}, which is not a process of uid {uid}",
                s.pid
            ));
        }
        if s.updated_unix > now.0.saturating_add(60) {
            problems.push(format!(
                "the status record is dated in the future ({})",
                s.updated
            ));
        }
    }
    let status = found.map(|(s, _)| s);
    match &status {
        None => problems.push(format!(
            "no status record at {} (no trustfs daemon serves this mount)",
            status_path(mountpoint).display()
        )),
        Some(s) => {
            if !pid_alive(s.pid) {
                problems.push(format!("daemon pid {} is not running (stale mount)", s.pid));
            } else if now.0.saturating_sub(s.updated_unix) > STALE_AFTER {
                problems.push(format!(
                    "daemon pid {} has not updated its status since {}",
                    s.pid, s.updated
                ));
            }
            if !s.verified {
                problems.push(
                    s.problem
                        .clone()
                        .unwrap_or_else(|| "metadata is not trusted".into()),
                );
            }
            let m = &s.metadata;
            for (role, expires) in [
                ("root", &m.root_expires),
                ("timestamp", &m.timestamp_expires),
                ("snapshot", &m.snapshot_expires),
                ("targets", &m.targets_expires),
            ] {
                match UtcTime::parse(expires) {
                    Ok(t) if t <= now => {
                        problems.push(format!("{role} metadata expired at {expires}"))
                    }
                    Ok(_) => {}
                    Err(_) => problems.push(format!("{role} metadata has no valid expiry")),
                }
            }
        }
    }
    problems.dedup();
    Verdict {
        mountpoint: mountpoint.display().to_string(),
        verified: problems.is_empty(),
        problems,
        status,
    }
}

/// The verdict on `mountpoint` as `trustfs status` and the status page give it: [`judge`], and
/// not verified at all when the path is not a trustfs mount (any more).
pub fn verdict(mountpoint: &Path, now: UtcTime) -> Verdict {
    let mut v = judge(mountpoint, now);
    let info = std::fs::read("/proc/self/mountinfo").unwrap_or_default();
    let problem = match top_mount(&String::from_utf8_lossy(&info), mountpoint) {
        None => Some(format!("{} is not a trustfs mount", mountpoint.display())),
        Some(TopMount::Trustfs) => None,
        // What a reader of the path sees is that other filesystem, not the verified one.
        Some(TopMount::Other(fstype)) => Some(format!(
            "{} is covered by another mount ({fstype}) on top of the trustfs mount: readers of the path do not see the verified files",
            mountpoint.display()
        )),
    };
    if let Some(p) = problem {
        v.verified = false;
        v.problems.insert(0, p);
    }
    v
}

/// A duration in seconds from now in words: `in 3d`, `in 5h`, `in 12m`, `now`, `40s ago`.
pub fn in_words(secs: i64) -> String {
    if secs == 0 {
        return "now".into();
    }
    let (past, s) = (secs < 0, secs.unsigned_abs());
    let text = match s {
        s if s >= 2 * 86400 => format!("{}d", s / 86400),
        s if s >= 2 * 3600 => format!("{}h", s / 3600),
        s if s >= 120 => format!("{}m", s / 60),
        s => format!("{s}s"),
    };
    if past {
        format!("{text} ago")
    } else {
        format!("in {text}")
    }
}

/// Seconds from `now` until `expires` (negative when past).
pub fn seconds_until(expires: &str, now: UtcTime) -> Option<i64> {
    UtcTime::parse(expires).ok()?.0.checked_sub(now.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names() {
        assert_eq!(instance_name(Path::new("/mnt/trusted")), "mnt-trusted");
        assert_eq!(instance_name(Path::new("/")), "-");
        assert_eq!(instance_name(Path::new("/srv/a b/c")), r"srv-a\x20b-c");
        assert_eq!(instance_name(Path::new("/srv//x/")), "srv-x");
        assert_eq!(instance_name(Path::new("/.hidden/.x")), r"\x2ehidden-.x");
        assert_eq!(instance_name(Path::new("/root")), "root");
    }

    #[test]
    fn instance_names_are_injective() {
        let paths = [
            "/srv/app-data",
            "/srv/app/data",
            "/srv/app data",
            "/srv/app\\x2ddata",
            "/srv/app_data",
            "/",
            "/-",
            "/root",
        ];
        let names: std::collections::HashSet<String> =
            paths.iter().map(|p| instance_name(Path::new(p))).collect();
        assert_eq!(names.len(), paths.len(), "{names:?}");
    }

    #[test]
    fn instance_names_match_systemd_escape() {
        let paths = [
            "/srv/app-data",
            "/srv/app data",
            "/.x/y.z:1",
            "/mnt/ü\\b",
            "/",
        ];
        // Compared with the real tool (the unit files use its `%i`): .ci/run installs it.
        let out = std::process::Command::new("systemd-escape")
            .arg("--path")
            .args(paths)
            .output()
            .expect("this test needs systemd-escape (apt-get install systemd, or run .ci/run)");
        assert!(out.status.success(), "{out:?}");
        let want = String::from_utf8(out.stdout).unwrap();
        let got: Vec<String> = paths.iter().map(|p| instance_name(Path::new(p))).collect();
        assert_eq!(want.split_whitespace().collect::<Vec<_>>(), got);
    }

    #[test]
    fn the_top_mount_decides() {
        let info = "\
36 25 0:32 / /mnt/t rw - fuse trustfs rw,user_id=0
37 25 0:33 / /other rw - fuse.trustfs x rw
38 36 0:34 / /mnt/t rw - tmpfs tmpfs rw
39 25 0:35 / /mnt/plain rw - tmpfs tmpfs rw
";
        assert_eq!(
            top_mount(info, Path::new("/mnt/t")),
            Some(TopMount::Other("tmpfs".into()))
        );
        assert_eq!(
            top_mount(info, Path::new("/other")),
            Some(TopMount::Trustfs)
        );
        assert_eq!(top_mount(info, Path::new("/mnt/plain")), None);
        assert_eq!(top_mount(info, Path::new("/nowhere")), None);
        let under = "36 25 0:34 / /m rw - tmpfs tmpfs rw\n37 36 0:32 / /m rw - fuse trustfs rw\n";
        assert_eq!(top_mount(under, Path::new("/m")), Some(TopMount::Trustfs));
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/mnt/a\040b\134c"), "/mnt/a b\\c");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/end\04"), r"/end\04");
        assert_eq!(unescape_mountinfo(r"/a\401"), r"/a\401");
    }
}

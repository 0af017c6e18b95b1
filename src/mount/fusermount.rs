//! Mounting without privileges, as sshfs and rclone do: through the setuid `fusermount3` helper
//! (Debian's `fuse3`), which opens `/dev/fuse`, mounts it and hands the descriptor back over a
//! socket (the protocol libfuse uses: `_FUSE_COMMFD` names the socket, the descriptor arrives as
//! `SCM_RIGHTS`). A process that can mount by itself (root, with `/dev/fuse` openable) does.
//!
//! The helper is looked up as `$FUSERMOUNT_PATH`, else `fusermount3`, else `fusermount` on PATH.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::log_event;

/// Whether this process must mount through the helper: it is not root. (Root mounts by itself;
/// the helper could not open a `/dev/fuse` that root cannot, and root never runs a helper an
/// environment variable names.)
pub(super) fn needed() -> bool {
    crate::sys::euid() != 0
}

/// The helper binary: `$FUSERMOUNT_PATH` if it is an absolute path, else `fusermount3` (or
/// `fusermount`) on PATH. Only ever run without privileges (see [`needed`]).
fn helper() -> OsString {
    if let Some(p) = std::env::var_os("FUSERMOUNT_PATH").filter(|p| Path::new(p).is_absolute()) {
        return p;
    }
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
    };
    if !on_path("fusermount3") && on_path("fusermount") {
        return "fusermount".into();
    }
    "fusermount3".into()
}

/// A mount made by the helper: unmounted by it too.
#[derive(Debug)]
pub(super) struct HelperMount {
    mountpoint: PathBuf,
    helper: OsString,
}

impl HelperMount {
    /// `fusermount3 -u -z MOUNTPOINT` (lazy: a busy mount leaves the namespace at once).
    pub(super) fn unmount(&self) -> io::Result<()> {
        unmount_with(&self.helper, &self.mountpoint)
    }
}

/// Unmount `mountpoint` through the helper (a normal user cannot `umount2`).
pub(super) fn unmount(mountpoint: &Path) -> io::Result<()> {
    unmount_with(&helper(), mountpoint)
}

fn unmount_with(helper: &OsString, mountpoint: &Path) -> io::Result<()> {
    let out = Command::new(helper)
        .args(["-u", "-z", "--"])
        .arg(mountpoint)
        .stdin(Stdio::null())
        .output()?;
    // Done when it worked, or when nothing is mounted there any more (someone ran
    // `fusermount3 -u` already).
    if out.status.success() || !is_mount_point(mountpoint) {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{} -u failed: {}",
        helper.to_string_lossy(),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// Whether `path` is a mount point in this process's mount namespace.
fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return true;
    };
    let want = path.to_string_lossy();
    info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|m| crate::telemetry::status::unescape_mountinfo(m) == want)
    })
}

/// Mount a FUSE filesystem at `mountpoint` with the mount options `options` (comma-separated,
/// as `fusermount3 -o` takes them) through the helper; returns the `/dev/fuse` descriptor.
pub(super) fn mount(mountpoint: &Path, options: &str) -> io::Result<(OwnedFd, HelperMount)> {
    let helper = helper();
    let (ours, theirs) = UnixStream::pair()?;
    let fd = theirs.as_raw_fd();
    let mut cmd = Command::new(&helper);
    cmd.arg("-o")
        .arg(options)
        .arg("--")
        .arg(mountpoint)
        .env("_FUSE_COMMFD", fd.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    crate::sys::inherit_fd(&mut cmd, fd);
    let child = cmd.spawn().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot run {} to mount without privileges ({e}); install fuse3 \
                 (apt-get install fuse3) or mount as root",
                helper.to_string_lossy()
            ),
        )
    })?;
    drop(theirs);
    let received = crate::sys::receive_fd(&ours);
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let mounted = HelperMount {
        mountpoint: mountpoint.to_owned(),
        helper: helper.clone(),
    };
    match received {
        Ok(dev) if out.status.success() => Ok((dev, mounted)),
        received => {
            // What the helper says it mounted is undone (no daemon will serve it). Only then:
            // something mounted there before (the helper refused) is not ours to unmount.
            drop(received);
            if out.status.success() {
                if let Err(e) = mounted.unmount() {
                    log_event!("cannot undo the mount at {}: {e}", mountpoint.display());
                }
            }
            let mut msg = if stderr.is_empty() {
                format!("{} failed ({})", helper.to_string_lossy(), out.status)
            } else {
                stderr.clone()
            };
            if stderr.contains("/dev/fuse") {
                msg.push_str(&format!(
                    " ({} opens /dev/fuse with the user's own rights, so the administrator must \
                     let this user use FUSE: most distributions set /dev/fuse to mode 0666; \
                     here it is {})",
                    helper.to_string_lossy(),
                    dev_fuse_mode()
                ));
            }
            if stderr.contains("allow_other") {
                msg.push_str(
                    " (--allow-other needs the line `user_allow_other` in /etc/fuse.conf for a \
                     mount by a normal user)",
                );
            }
            Err(io::Error::new(io::ErrorKind::PermissionDenied, msg))
        }
    }
}

/// `/dev/fuse`'s mode and owner, for messages.
fn dev_fuse_mode() -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/dev/fuse") {
        Ok(m) => format!(
            "mode {:04o}, owner uid {} gid {}",
            m.mode() & 0o7777,
            m.uid(),
            m.gid()
        ),
        Err(e) => format!("not usable: {e}"),
    }
}

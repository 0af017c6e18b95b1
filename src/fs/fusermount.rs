//! Mounting without privileges, as sshfs and rclone do: through the setuid `fusermount3` helper
//! (Debian's `fuse3`), which opens `/dev/fuse`, mounts it and hands the descriptor back over a
//! socket (the protocol libfuse uses: `_FUSE_COMMFD` names the socket, the descriptor arrives as
//! `SCM_RIGHTS`). A process that can mount by itself (root, with `/dev/fuse` openable) does.
//!
//! The helper is looked up as `$FUSERMOUNT_PATH`, else `fusermount3`, else `fusermount` on PATH.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::log_event;

/// Whether this process must mount through the helper: it is not root. (Root mounts by itself;
/// the helper could not open a `/dev/fuse` that root cannot, and root never runs a helper an
/// environment variable names.)
pub(super) fn needed() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() != 0 }
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
            .is_some_and(|m| crate::ops::status::unescape_mountinfo(m) == want)
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
    // SAFETY: between fork and exec only fcntl runs, which is async-signal-safe; it clears
    // close-on-exec on the helper's end of the socket so the helper inherits it.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
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
    let received = receive_fd(&ours);
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

/// Receive the one descriptor the helper sends with `SCM_RIGHTS` (and one byte) on `sock`,
/// and check that it is the FUSE device. Every descriptor that arrives is owned (and so closed)
/// here; more or fewer than one, a truncated message or another kind of file is an error.
fn receive_fd(sock: &UnixStream) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: byte.len(),
    };
    // u64s: aligned for cmsghdr; room for a few descriptors, so extra ones arrive (and are
    // closed) instead of truncating the message.
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; all-zero is a valid empty header, filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    let n = loop {
        // SAFETY: `msg` points at `iov` (one writable byte) and `control` (its whole size,
        // writable), all live for the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds: Vec<OwnedFd> = Vec::new();
    let int = std::mem::size_of::<libc::c_int>();
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/CMSG_NXTHDR walk its control data
    // within msg_controllen and return null at the end.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null and points into `control`, as recvmsg filled it.
        let (level, kind, len) = unsafe {
            (
                (*cmsg).cmsg_level,
                (*cmsg).cmsg_type,
                (*cmsg).cmsg_len as usize,
            )
        };
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN only computes a size.
            let header = unsafe { libc::CMSG_LEN(0) } as usize;
            let count = len.saturating_sub(header) / int;
            // SAFETY: an SCM_RIGHTS message of `count` ints: CMSG_DATA points at them
            // (possibly unaligned, hence read_unaligned), all within `control`.
            let data = unsafe { libc::CMSG_DATA(cmsg) };
            for k in 0..count {
                // SAFETY: see above; `k < count`.
                let fd =
                    unsafe { std::ptr::read_unaligned(data.add(k * int).cast::<libc::c_int>()) };
                if fd >= 0 {
                    // SAFETY: the kernel installed `fd` in this process for us (SCM_RIGHTS);
                    // we own it from here on (and close it if unused).
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other(
            "the mount helper sent more than was expected",
        ));
    }
    if n == 0 && fds.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the mount helper ended without sending a descriptor",
        ));
    }
    if fds.len() != 1 {
        return Err(io::Error::other(format!(
            "the mount helper sent {} descriptors, not one",
            fds.len()
        )));
    }
    let fd = fds.remove(0);
    // The FUSE device (character device 10:229), nothing else.
    let file = std::fs::File::from(fd);
    let meta = file.metadata()?;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if !(meta.file_type().is_char_device() && meta.rdev() == libc::makedev(10, 229)) {
        return Err(io::Error::other(
            "the mount helper sent a descriptor that is not /dev/fuse",
        ));
    }
    Ok(OwnedFd::from(file))
}

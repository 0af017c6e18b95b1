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

/// Whether this process must mount through the helper: it is not root, or it cannot open
/// `/dev/fuse` (mode 0600 in many containers).
pub(super) fn needed() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let dev_fuse = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .is_ok();
    !(root && dev_fuse)
}

/// The helper binary.
fn helper() -> OsString {
    if let Some(p) = std::env::var_os("FUSERMOUNT_PATH") {
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
        let out = Command::new(&self.helper)
            .args(["-u", "-z", "--"])
            .arg(&self.mountpoint)
            .stdin(Stdio::null())
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Already gone (someone ran `fusermount3 -u`): done.
        if out.status.success() || stderr.contains("not mounted") || stderr.contains("not found") {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "{} -u failed: {}",
            self.helper.to_string_lossy(),
            stderr.trim()
        )))
    }
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
    match received {
        Ok(dev) if out.status.success() => Ok((
            dev,
            HelperMount {
                mountpoint: mountpoint.to_owned(),
                helper,
            },
        )),
        _ => {
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

/// Receive one descriptor sent with `SCM_RIGHTS` (and one byte) on `sock`.
fn receive_fd(sock: &UnixStream) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: byte.len(),
    };
    // u64s: aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    debug_assert!(space <= std::mem::size_of_val(&control));
    // SAFETY: msghdr is plain data; all-zero is a valid empty header, filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: `msg` points at `iov` (one writable byte) and `control` (`space` writable
        // bytes), all live for the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the mount helper ended without sending a descriptor",
        ));
    }
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR reads only its control fields.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if cmsg.is_null() {
        return Err(io::Error::other("the mount helper sent no descriptor"));
    }
    // SAFETY: `cmsg` is non-null and points into `control`, as recvmsg filled it.
    let (level, kind, len) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type, (*cmsg).cmsg_len) };
    // SAFETY: CMSG_LEN only computes a size.
    let want = unsafe { libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    if level != libc::SOL_SOCKET || kind != libc::SCM_RIGHTS || (len as u64) < want as u64 {
        return Err(io::Error::other(
            "the mount helper sent something else than a descriptor",
        ));
    }
    // SAFETY: an SCM_RIGHTS message of at least one int: CMSG_DATA points at the descriptor
    // (possibly unaligned, hence read_unaligned).
    let fd = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>()) };
    if fd < 0 {
        return Err(io::Error::other(
            "the mount helper sent an invalid descriptor",
        ));
    }
    // SAFETY: the kernel installed `fd` in this process for us (received with SCM_RIGHTS); we
    // own it from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

//! The one module with `unsafe` code: safe wrappers around the system calls the standard library
//! does not offer (`openat2`, `readdir` on a descriptor, `statx`, `FICLONE`, `flock`, `syncfs`,
//! `umount2`, descriptor passing, signals, the terminal). Every block says why it is sound; the
//! rest of the crate is `#![deny(unsafe_code)]`. Bottom layer: it uses nothing of the crate.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// `openat2(2)` with the given `open_how` fields; `dir` None means `AT_FDCWD`. Retried on `EINTR`,
/// and on `EAGAIN` (a rename racing a `RESOLVE_BENEATH` walk) at most [`EAGAIN_RETRIES`] times:
/// an `O_NONBLOCK` open of a file someone holds a lease on answers `EAGAIN` for as long as the
/// lease lasts, and must not spin a worker.
pub fn openat2(
    dir: Option<BorrowedFd<'_>>,
    path: &CStr,
    flags: i32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    // SAFETY: `open_how` is a plain C struct of integers; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.mode = 0;
    how.resolve = resolve;
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let mut again = 0;
    loop {
        // SAFETY: `path` is a valid NUL-terminated string and `how` a valid `open_how` for the
        // duration of the call; the size passed is the size of that struct. The kernel only reads
        // both. `dirfd` is AT_FDCWD or a descriptor borrowed for the duration of the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if ret >= 0 {
            // SAFETY: a non-negative return of openat2 is a new descriptor we exclusively own.
            return Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) });
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) if again < EAGAIN_RETRIES => again += 1,
            _ => return Err(err),
        }
    }
}

/// How often [`openat2`] retries `EAGAIN`.
const EAGAIN_RETRIES: u32 = 3;

/// The names in directory `dir` (without `.` and `..`), read with `readdir` from a new open file
/// description of the same directory, so `dir`'s own read position is untouched and nothing is
/// looked up by path.
pub fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let own = openat2(
        Some(dir),
        c".",
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
    )?;
    let fd = own.into_raw_fd();
    // SAFETY: `fd` is an open directory descriptor owned here; on success fdopendir owns it
    // (closedir closes it), on failure it is closed below.
    let dirp = unsafe { libc::fdopendir(fd) };
    if dirp.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so `fd` is still ours to close.
        unsafe { libc::close(fd) };
        return Err(e);
    }
    let mut names = Vec::new();
    let result = loop {
        // SAFETY: errno is thread-local; cleared to tell end of directory from an error.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `dirp` is a valid DIR* used by this thread only.
        let ent = unsafe { libc::readdir(dirp) };
        if ent.is_null() {
            let e = io::Error::last_os_error();
            break if e.raw_os_error().unwrap_or(0) == 0 {
                Ok(())
            } else {
                Err(e)
            };
        }
        // SAFETY: readdir returned a valid dirent whose d_name is NUL-terminated; it stays valid
        // until the next readdir/closedir, and is copied out before that.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        let bytes = name.to_bytes();
        if bytes != b"." && bytes != b".." {
            names.push(OsStr::from_bytes(bytes).to_owned());
        }
    };
    // SAFETY: `dirp` is valid and closed exactly once.
    unsafe { libc::closedir(dirp) };
    result.map(|()| names)
}

/// `name` as a C string if it is one plain file name (not empty, no `/`, no NUL).
pub fn plain_name(name: &str) -> io::Result<CString> {
    if name.is_empty() || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a plain file name",
        ));
    }
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)` of a plain name in `dir` (no `/`).
pub fn fstatat_nofollow(dir: BorrowedFd<'_>, name: &str) -> io::Result<libc::stat> {
    let c = plain_name(name)?;
    // SAFETY: plain data; filled by the kernel on success (only read then).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: live descriptor, valid NUL-terminated name, `st` writable for the call.
    let ret = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    cvt(ret)?;
    Ok(st)
}

/// `ioctl(FICLONE)`: make `dst` a reflink copy of `src` (fails on filesystems without reflinks,
/// e.g. ext4; a failure may leave part of the extents cloned, so a fallback copy must truncate
/// `dst` first).
pub fn ficlone(dst: &std::fs::File, src: &std::fs::File) -> io::Result<()> {
    // SAFETY: FICLONE takes the source descriptor as its integer argument; both descriptors are
    // live for the duration of the call and no memory is passed.
    let ret = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
    cvt(ret).map(|_| ())
}

/// `fstat(2)` on a descriptor (works on `O_PATH` descriptors too).
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: `stat` is a plain C struct; all-zero is valid and fstat overwrites it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is a live descriptor for the call and `st` a valid, writable `stat`.
    let ret = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) };
    cvt(ret)?;
    Ok(st)
}

/// `statx(dir, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT)` of a plain name in `dir`, basic
/// fields.
pub fn statx_nofollow(dir: BorrowedFd<'_>, name: &str) -> io::Result<libc::statx> {
    let c = plain_name(name)?;
    // SAFETY: plain data; filled by the kernel on success (only read then).
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: live descriptor, valid NUL-terminated name, `stx` writable for the call.
    let ret = unsafe {
        libc::statx(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT | libc::AT_STATX_SYNC_AS_STAT,
            libc::STATX_BASIC_STATS,
            &mut stx,
        )
    };
    cvt(ret)?;
    Ok(stx)
}

/// `flock(2)` on `file` with `op` (LOCK_SH, LOCK_EX, optionally | LOCK_NB), retrying EINTR.
pub fn flock(file: &File, op: i32) -> io::Result<()> {
    loop {
        // SAFETY: the descriptor is live for the duration of the call; flock takes no memory.
        let ret = unsafe { libc::flock(file.as_raw_fd(), op) };
        if ret == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// `openat(dir, name, flags, mode)`.
pub fn openat(dir: &File, name: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<File> {
    let c = plain_name(name)?;
    // SAFETY: `dir` is a live directory descriptor and `c` a valid NUL-terminated name for the
    // duration of the call; the returned descriptor is new and owned by nobody else.
    let fd =
        cvt(unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, mode as libc::c_uint) })?;
    // SAFETY: `fd` was just returned by openat and is owned only here.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// `unlinkat(dir, name, 0)`.
pub fn unlinkat(dir: &File, name: &str) -> io::Result<()> {
    let c = plain_name(name)?;
    // SAFETY: live descriptor, valid NUL-terminated name; no memory is retained.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) }).map(|_| ())
}

/// `renameat(dir, from, dir, to)`.
pub fn renameat(dir: &File, from: &str, to: &str) -> io::Result<()> {
    let (f, t) = (plain_name(from)?, plain_name(to)?);
    let d = dir.as_raw_fd();
    // SAFETY: live descriptor, valid NUL-terminated names; no memory is retained.
    cvt(unsafe { libc::renameat(d, f.as_ptr(), d, t.as_ptr()) }).map(|_| ())
}

/// A system call's `int` result: negative (-1) is the call's errno as an error; the calls wrapped
/// here return 0 (or a descriptor) on success.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// This process's effective uid.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// `syncfs(2)` of the filesystem holding `dir`.
pub fn syncfs(dir: &File) -> io::Result<()> {
    // SAFETY: syncfs takes a live descriptor and no memory.
    cvt(unsafe { libc::syncfs(dir.as_raw_fd()) })?;
    Ok(())
}

/// `fallocate(FALLOC_FL_KEEP_SIZE)`: reserve blocks for `len` bytes of `file` from offset 0
/// without changing its size.
pub fn fallocate_keep_size(file: &File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: fallocate on a live descriptor with in-range offsets; no memory is passed.
    let ret = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) };
    cvt(ret).map(|_| ())
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// `statfs(2)` of `path` (a FUSE mount's daemon is asked; a dead one answers `ENOTCONN`).
pub fn statfs(path: &Path) -> io::Result<libc::statfs> {
    let c = c_path(path)?;
    // SAFETY: statfs is plain data; the kernel fills it (or not, on error; it is not read then).
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `buf` a writable statfs for the call.
    cvt(unsafe { libc::statfs(c.as_ptr(), &mut buf) })?;
    Ok(buf)
}

/// `umount2(2)`.
pub fn umount2(path: &Path, flags: i32) -> io::Result<()> {
    let c = c_path(path)?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    cvt(unsafe { libc::umount2(c.as_ptr(), flags) })?;
    Ok(())
}

/// `mkfifo(3)`.
pub fn mkfifo(path: &Path, mode: libc::mode_t) -> io::Result<()> {
    let c = c_path(path)?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    cvt(unsafe { libc::mkfifo(c.as_ptr(), mode) })?;
    Ok(())
}

/// `getrlimit(RLIMIT_NOFILE)`.
pub fn open_files_limit() -> io::Result<libc::rlimit> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `l` is a valid, writable rlimit for the duration of the call.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) })?;
    Ok(l)
}

/// `setrlimit(RLIMIT_NOFILE)`.
pub fn set_open_files_limit(l: &libc::rlimit) -> io::Result<()> {
    // SAFETY: `l` is a valid, initialised rlimit for the duration of the call.
    cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, l) })?;
    Ok(())
}

/// `lseek(SEEK_DATA)`: the offset of the first written byte of `file` at or after `from`.
pub fn seek_data(file: &File, from: libc::off_t) -> io::Result<u64> {
    // SAFETY: lseek on a descriptor `file` owns; it moves only that descriptor's offset.
    let got = unsafe { libc::lseek(file.as_raw_fd(), from, libc::SEEK_DATA) };
    u64::try_from(got).map_err(|_| io::Error::last_os_error())
}

/// Give the memory glibc keeps in its heaps after large frees back to the system.
pub fn malloc_trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists; 0 keeps no extra pad.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// SIGPIPE back to its default action (the process ends at a write to a closed pipe), for
/// short-lived commands; call before any other thread exists.
pub fn default_sigpipe() {
    // SAFETY: resetting a signal's disposition to SIG_DFL has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Block SIGINT and SIGTERM in the calling thread (and every thread it spawns later).
pub fn block_signals() -> io::Result<libc::sigset_t> {
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
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(set)
}

/// Wait up to `timeout` for one of the blocked signals in `set`; returns its number.
pub fn wait_signal(set: &libc::sigset_t, timeout: std::time::Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` and `ts` are valid for the call; a null siginfo pointer is allowed.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// The system's page size.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).unwrap_or(4096)
}

/// This machine's host name (`gethostname`).
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0)?;
    String::from_utf8(buf[..end].to_vec()).ok()
}

/// Let the child `cmd` starts inherit descriptor `fd` (its close-on-exec flag is cleared between
/// fork and exec).
pub fn inherit_fd(cmd: &mut std::process::Command, fd: std::os::fd::RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only fcntl runs, which is async-signal-safe; it clears
    // close-on-exec on that one descriptor so the child inherits it.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Receive the one descriptor the helper sends with `SCM_RIGHTS` (and one byte) on `sock`,
/// and check that it is the FUSE device. Every descriptor that arrives is owned (and so closed)
/// here; more or fewer than one, a truncated message or another kind of file is an error.
pub fn receive_fd(sock: &UnixStream) -> io::Result<OwnedFd> {
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

/// Write `question` to the terminal `tty` and read one line from it with echo off (back on
/// afterwards, also when SIGINT or SIGTERM ends the process meanwhile).
pub fn read_line_without_echo(tty: &File, question: &str) -> io::Result<String> {
    use std::io::{BufRead, Write};
    let fd = tty.as_raw_fd();
    // SAFETY: plain data filled by tcgetattr.
    let mut old: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a writable termios.
    cvt(unsafe { libc::tcgetattr(fd, &mut old) })?;
    let mut quiet = old;
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    (&*tty).write_all(question.as_bytes())?;
    // Ctrl-C (or a SIGTERM) while the echo is off must not leave the terminal without it.
    // SAFETY: written before the handlers are installed and only read by them afterwards.
    unsafe {
        SAVED_TERMIOS = Some((fd, old));
    }
    let handler = restore_terminal_and_die as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: installing a handler that only calls async-signal-safe functions.
    let previous = unsafe {
        [
            libc::signal(libc::SIGINT, handler),
            libc::signal(libc::SIGTERM, handler),
        ]
    };
    // SAFETY: a valid descriptor and termios.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    let mut line = String::new();
    let read = std::io::BufReader::new(tty).read_line(&mut line);
    // SAFETY: as above; the terminal gets its echo back whatever the read did, then the
    // previous signal dispositions.
    unsafe {
        libc::tcsetattr(fd, libc::TCSANOW, &old);
        libc::signal(libc::SIGINT, previous[0]);
        libc::signal(libc::SIGTERM, previous[1]);
    }
    read?;
    Ok(line)
}

/// The terminal and its settings before a prompt turned echo off.
static mut SAVED_TERMIOS: Option<(i32, libc::termios)> = None;

/// Signal handler during a prompt: echo back on, then die of the signal as without it.
extern "C" fn restore_terminal_and_die(sig: libc::c_int) {
    // SAFETY: tcsetattr, signal and raise are async-signal-safe; SAVED_TERMIOS was written
    // before this handler was installed.
    unsafe {
        if let Some((fd, old)) = *std::ptr::addr_of!(SAVED_TERMIOS) {
            libc::tcsetattr(fd, libc::TCSANOW, &old);
        }
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// `dup(2)`: a new descriptor of the same open file, owned by the returned `File`.
pub fn dup(fd: std::os::fd::RawFd) -> io::Result<File> {
    // SAFETY: dup gives us our own descriptor to own and close; the caller's stays open.
    let own = unsafe { libc::dup(fd) };
    if own < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `own` is a fresh descriptor nothing else owns.
    Ok(unsafe { File::from_raw_fd(own) })
}

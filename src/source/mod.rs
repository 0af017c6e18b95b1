//! Where bytes come from: the local backing directory, opened beneath its root only (this file),
//! or HTTP mirrors of a remote repository ([`remote`]).
//!
//! Every path is resolved with `openat2(2)` relative to a directory fd of the backing root, with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`: no `..`
//! escape, no symlink (in any component), no `/proc` magic link, no mount point crossed (a
//! filesystem mounted inside the backing directory, perhaps a hung network or FUSE mount, is
//! never entered: a worker cannot be stalled there, and the content is what the backing
//! directory's own filesystem holds). A file is first opened `O_PATH | O_NOFOLLOW` and
//! `fstat`ed; anything that is not a regular file (FIFO, socket, device, symlink, directory) is
//! refused with a readable reason *before* it is opened for reading, so a FIFO can never block the
//! daemon. The read open uses `O_NONBLOCK` as a second line of defence and must land on the same
//! `(dev, ino)` as the `O_PATH` probe, or the file is refused as "replaced while opening".
//!
//! [`openat2`], [`list_dir`] (re-exported from `sys`) and [`fstat`] are also the
//! descriptor-relative primitives of the rest of the crate (the object store, the publisher's walk
//! of CONTENT_DIR). This module has no `unsafe`: the system calls themselves are wrapped in `sys`.

use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub(crate) use crate::sys::{ficlone, fstatat_nofollow, list_dir, openat2};

pub mod remote;

/// `RESOLVE_NO_MAGICLINKS` (linux/openat2.h); spelled out in case the libc crate lacks it.
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;

/// The identity and version of a backing file as `fstat` reports it. Any change of content, size or
/// replacement changes at least one field (the kernel updates ctime on every write and truncate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

/// What kind of entry a backing path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Unknown,
}

impl EntryKind {
    fn from_mode(mode: u32) -> EntryKind {
        match mode & libc::S_IFMT {
            libc::S_IFREG => EntryKind::Regular,
            libc::S_IFDIR => EntryKind::Directory,
            libc::S_IFLNK => EntryKind::Symlink,
            libc::S_IFIFO => EntryKind::Fifo,
            libc::S_IFSOCK => EntryKind::Socket,
            libc::S_IFCHR => EntryKind::CharDevice,
            libc::S_IFBLK => EntryKind::BlockDevice,
            _ => EntryKind::Unknown,
        }
    }

    /// The kind of a directory entry as `std::fs` reports it.
    pub fn from_std(t: std::fs::FileType) -> EntryKind {
        use std::os::unix::fs::FileTypeExt;
        if t.is_file() {
            EntryKind::Regular
        } else if t.is_dir() {
            EntryKind::Directory
        } else if t.is_symlink() {
            EntryKind::Symlink
        } else if t.is_fifo() {
            EntryKind::Fifo
        } else if t.is_socket() {
            EntryKind::Socket
        } else if t.is_char_device() {
            EntryKind::CharDevice
        } else if t.is_block_device() {
            EntryKind::BlockDevice
        } else {
            EntryKind::Unknown
        }
    }

    /// A name for log lines.
    pub fn describe(self) -> &'static str {
        match self {
            EntryKind::Regular => "regular file",
            EntryKind::Directory => "directory",
            EntryKind::Symlink => "symbolic link",
            EntryKind::Fifo => "FIFO (named pipe)",
            EntryKind::Socket => "socket",
            EntryKind::CharDevice => "character device",
            EntryKind::BlockDevice => "block device",
            EntryKind::Unknown => "file of unknown type",
        }
    }
}

/// `fstat` of a backing entry, reduced to what the mount uses.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    pub kind: EntryKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub key: FileKey,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

/// Why a backing path could not be used. `Display` is a reason a person can read.
#[derive(Debug)]
pub enum SourceError {
    /// The path does not exist in the backing directory.
    NotFound,
    /// Resolution would leave the backing directory, cross a symlink or cross a mount point
    /// (`EXDEV`/`ELOOP`).
    Escapes,
    /// The entry exists but is not a regular file.
    NotRegular(EntryKind),
    /// Between the `O_PATH` probe and the read open, the path started naming another file.
    Replaced,
    /// The name is not a plain component (contains `/` or NUL, or is `.`/`..`).
    BadName,
    /// The file cannot be opened now: another process holds a lease or mandatory lock on it
    /// (`EAGAIN` on the non-blocking open). Not judged: try again.
    Busy,
    /// Any other I/O error.
    Io(io::Error),
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::NotFound => f.write_str("not present in the backing directory"),
            SourceError::Escapes => f.write_str(
                "path resolution in the backing directory crosses a symbolic link or a mount point, or leaves the directory",
            ),
            SourceError::NotRegular(k) => {
                write!(f, "backing entry is a {}, not a regular file", k.describe())
            }
            SourceError::Replaced => f.write_str("backing file was replaced while being opened"),
            SourceError::BadName => f.write_str("name is not a plain path component"),
            SourceError::Busy => f.write_str(
                "the backing file cannot be opened now: another process holds a lease or lock on it",
            ),
            SourceError::Io(e) => write!(f, "backing directory I/O error: {e}"),
        }
    }
}

impl std::error::Error for SourceError {}

impl SourceError {
    fn from_open(e: io::Error) -> SourceError {
        match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => SourceError::NotFound,
            Some(libc::EXDEV) | Some(libc::ELOOP) => SourceError::Escapes,
            Some(libc::EAGAIN) => SourceError::Busy,
            _ => SourceError::Io(e),
        }
    }

    /// The errno a FUSE reply should carry for this error.
    pub fn errno(&self) -> i32 {
        match self {
            SourceError::NotFound => libc::ENOENT,
            SourceError::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
            SourceError::Busy => libc::EIO,
            _ => libc::EACCES,
        }
    }
}

/// Is `name` a single plain path component (not empty, no `/`, no NUL, not `.` or `..`)?
pub fn is_plain_component(name: &OsStr) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && b != b"." && b != b".." && !b.contains(&b'/') && !b.contains(&0)
}

/// A backing directory; every open is resolved beneath it.
#[derive(Debug)]
pub struct BackingDir {
    root: OwnedFd,
    path: PathBuf,
}

/// A regular backing file opened for reading, with the `fstat` taken right after opening.
#[derive(Debug)]
pub struct BackingFile {
    pub file: File,
    pub stat: Stat,
}

impl BackingDir {
    /// Open the backing root directory.
    pub fn open(path: &Path) -> io::Result<BackingDir> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
        let fd = openat2(
            None,
            &c,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            0,
        )?;
        Ok(BackingDir {
            root: fd,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn resolve(&self, rel: &OsStr, flags: i32) -> Result<OwnedFd, SourceError> {
        let rel = if rel.is_empty() { b"." } else { rel.as_bytes() };
        let c = CString::new(rel).map_err(|_| SourceError::BadName)?;
        openat2(
            Some(self.root.as_fd()),
            &c,
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            libc::RESOLVE_BENEATH
                | libc::RESOLVE_NO_SYMLINKS
                | RESOLVE_NO_MAGICLINKS
                | libc::RESOLVE_NO_XDEV,
        )
        .map_err(SourceError::from_open)
    }

    /// `fstat` the entry at `rel` (a `/`-separated path relative to the root; "" is the root)
    /// without opening it for reading.
    pub fn stat(&self, rel: &OsStr) -> Result<Stat, SourceError> {
        let fd = self.resolve(rel, libc::O_PATH)?;
        fstat(fd.as_fd()).map_err(SourceError::Io)
    }

    /// Open the regular file at `rel` for reading, refusing anything else.
    pub fn open_file(&self, rel: &OsStr) -> Result<BackingFile, SourceError> {
        let probe = self.resolve(rel, libc::O_PATH)?;
        let before = fstat(probe.as_fd()).map_err(SourceError::Io)?;
        if before.kind != EntryKind::Regular {
            return Err(SourceError::NotRegular(before.kind));
        }
        let fd = match self.resolve(rel, libc::O_RDONLY | libc::O_NONBLOCK) {
            Ok(fd) => fd,
            Err(e) => return Err(self.explain_failed_open(rel, &before, e)),
        };
        let stat = fstat(fd.as_fd()).map_err(SourceError::Io)?;
        if stat.kind != EntryKind::Regular {
            return Err(SourceError::NotRegular(stat.kind));
        }
        if (stat.key.dev, stat.key.ino) != (before.key.dev, before.key.ino) {
            return Err(SourceError::Replaced);
        }
        Ok(BackingFile {
            file: File::from(fd),
            stat,
        })
    }

    /// The read open of `rel` failed with `e` after the probe saw the regular file `before`. If
    /// the name now leads to another file or to something that is not a regular file (a socket
    /// answers `ENXIO`, a device `ENODEV`…), that is what the open met: a replaced or
    /// non-regular entry, a denial. Otherwise `e` stands (a fault, or `Busy`).
    fn explain_failed_open(&self, rel: &OsStr, before: &Stat, e: SourceError) -> SourceError {
        if !matches!(e, SourceError::Io(_)) {
            return e;
        }
        match self.stat(rel) {
            Ok(now) if now.kind != EntryKind::Regular => SourceError::NotRegular(now.kind),
            Ok(now) if (now.key.dev, now.key.ino) != (before.key.dev, before.key.ino) => {
                SourceError::Replaced
            }
            Err(SourceError::NotFound) => SourceError::Replaced,
            _ => e,
        }
    }

    /// List the directory at `rel`: (name, kind) for each entry except `.` and `..`.
    pub fn list(&self, rel: &OsStr) -> Result<Vec<(OsString, EntryKind)>, SourceError> {
        let fd = self.resolve(rel, libc::O_RDONLY | libc::O_DIRECTORY)?;
        // Our own descriptor, named through /proc so std can iterate it; the fd already points
        // beneath the root, so this opens nothing new outside it.
        let dir = std::fs::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(SourceError::Io)?;
        let mut out = Vec::new();
        for entry in dir {
            let entry = entry.map_err(SourceError::Io)?;
            let kind = entry
                .file_type()
                .map(EntryKind::from_std)
                .unwrap_or(EntryKind::Unknown);
            out.push((entry.file_name(), kind));
        }
        drop(fd);
        Ok(out)
    }
}

/// `fstat(2)` on a descriptor (works on `O_PATH` descriptors too).
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    crate::sys::fstat(fd).map(|st| Stat::of(&st))
}

/// `statx(dir, name, AT_SYMLINK_NOFOLLOW)` of a plain name in `dir`: its [`Stat`], and whether it
/// may be the root of a mount (a bind mount of a single file included; also true when the kernel
/// cannot tell), which only `openat2` with `RESOLVE_NO_XDEV` then settles.
pub(crate) fn statat(dir: BorrowedFd<'_>, name: &str) -> io::Result<(Stat, bool)> {
    let stx = crate::sys::statx_nofollow(dir, name)?;
    let root = libc::STATX_ATTR_MOUNT_ROOT as u64;
    let maybe_mount = stx.stx_attributes_mask & root == 0 || stx.stx_attributes & root != 0;
    let ns = |t: &libc::statx_timestamp| t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128;
    let mode = u32::from(stx.stx_mode);
    let st = Stat {
        kind: EntryKind::from_mode(mode),
        mode: mode & 0o7777,
        key: FileKey {
            dev: libc::makedev(stx.stx_dev_major, stx.stx_dev_minor),
            ino: stx.stx_ino,
            size: stx.stx_size,
            mtime_ns: ns(&stx.stx_mtime),
            ctime_ns: ns(&stx.stx_ctime),
        },
        mtime: (stx.stx_mtime.tv_sec, i64::from(stx.stx_mtime.tv_nsec)),
        ctime: (stx.stx_ctime.tv_sec, i64::from(stx.stx_ctime.tv_nsec)),
    };
    Ok((st, maybe_mount))
}

impl Stat {
    fn of(st: &libc::stat) -> Stat {
        Stat {
            kind: EntryKind::from_mode(st.st_mode),
            mode: st.st_mode & 0o7777,
            key: FileKey {
                dev: st.st_dev,
                ino: st.st_ino,
                size: st.st_size as u64,
                mtime_ns: st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
                ctime_ns: st.st_ctime as i128 * 1_000_000_000 + st.st_ctime_nsec as i128,
            },
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_components() {
        for bad in ["", ".", "..", "a/b", "/", "a\0b"] {
            assert!(!is_plain_component(OsStr::new(bad)), "{bad:?}");
        }
        for good in ["a", "..a", "a..", ".hidden"] {
            assert!(is_plain_component(OsStr::new(good)), "{good:?}");
        }
    }

    #[test]
    fn a_read_open_that_fails_after_a_swap_names_the_swap_not_an_io_error() {
        let dir = std::env::temp_dir().join(format!("trustfs-src-swap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a"), b"x").unwrap();
        let b = BackingDir::open(&dir).unwrap();
        let before = b.stat(OsStr::new("a")).unwrap();
        let enxio = || SourceError::Io(io::Error::from_raw_os_error(libc::ENXIO));
        // Swapped for a socket (its open answers ENXIO): a non-regular entry, a denial.
        std::fs::remove_file(dir.join("a")).unwrap();
        let sock = std::os::unix::net::UnixListener::bind(dir.join("a")).unwrap();
        assert!(matches!(
            b.explain_failed_open(OsStr::new("a"), &before, enxio()),
            SourceError::NotRegular(EntryKind::Socket)
        ));
        drop(sock);
        // Swapped for another regular file (created while the first still exists, so its inode
        // number cannot be reused): replaced.
        std::fs::remove_file(dir.join("a")).unwrap();
        std::fs::write(dir.join("a"), b"x").unwrap();
        let before = b.stat(OsStr::new("a")).unwrap();
        std::fs::write(dir.join("b"), b"y").unwrap();
        std::fs::rename(dir.join("b"), dir.join("a")).unwrap();
        assert!(matches!(
            b.explain_failed_open(OsStr::new("a"), &before, enxio()),
            SourceError::Replaced
        ));
        // Still the same file: the error stands (a fault).
        let now = b.stat(OsStr::new("a")).unwrap();
        assert!(matches!(
            b.explain_failed_open(OsStr::new("a"), &now, enxio()),
            SourceError::Io(_)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn escapes_and_special_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("trustfs-src-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(dir.join("d/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).unwrap();
        std::os::unix::fs::symlink("d", dir.join("dirlink")).unwrap();
        let b = BackingDir::open(&dir).unwrap();
        let o = |p: &str| b.open_file(OsStr::new(p));
        assert!(o("d/f").is_ok());
        assert!(matches!(
            o("link"),
            Err(SourceError::NotRegular(EntryKind::Symlink))
        ));
        assert!(matches!(o("dirlink/f"), Err(SourceError::Escapes)));
        assert!(matches!(o("../etc/passwd"), Err(SourceError::Escapes)));
        assert!(matches!(o("missing"), Err(SourceError::NotFound)));
        assert!(matches!(
            o("d"),
            Err(SourceError::NotRegular(EntryKind::Directory))
        ));
        let names: Vec<_> = b
            .list(OsStr::new(""))
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(names.len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

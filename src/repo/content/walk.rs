//! The walk of CONTENT_DIR beneath one descriptor ([`ContentRoot`]): the regular files found
//! ([`ContentFile`]) and those skipped ([`Skipped`]), and opening a walked file again only if it
//! is still the file the walk recorded.

use std::ffi::{CString, OsString};
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::index::TargetPath;
use crate::source::{fstat, list_dir, openat2, statat, EntryKind, FileKey, Stat};

use crate::repo::error::RepoError;

/// How every path below CONTENT_DIR is resolved: beneath the descriptor it is relative to, no
/// symlink in any component, no magic link, no mount point crossed.
const BENEATH: u64 = libc::RESOLVE_BENEATH
    | libc::RESOLVE_NO_SYMLINKS
    | libc::RESOLVE_NO_MAGICLINKS
    | libc::RESOLVE_NO_XDEV;

/// A file under CONTENT_DIR that was not published, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// One regular file found under CONTENT_DIR.
#[derive(Clone, Debug)]
pub(crate) struct ContentFile {
    pub(crate) target: TargetPath,
    /// CONTENT_DIR joined with the target path; for messages only, never opened.
    pub(crate) path: PathBuf,
    /// (device, inode) as the walk saw it: the only file that may be published under `target`.
    id: (u64, u64),
    /// The file's whole identity as the walk saw it (see `addcache`): when it equals what an
    /// earlier `add` read, that content is kept without opening the file.
    pub(super) walked: FileKey,
}

/// A directory the walk has yet to list: its name in a parent it holds open, and the identity
/// seen when the parent was listed.
pub(super) struct Pending {
    parent: Rc<OwnedFd>,
    name: CString,
    id: (u64, u64),
    rel: String,
}

/// CONTENT_DIR, opened once; everything below it is resolved beneath this descriptor.
pub(crate) struct ContentRoot {
    pub(super) fd: OwnedFd,
    path: PathBuf,
}

impl ContentRoot {
    /// Open CONTENT_DIR. Its last component is not followed if it is a symlink (the same rule as
    /// for everything below it); earlier components are, since they belong to the operator.
    pub(crate) fn open(path: &Path) -> Result<ContentRoot, RepoError> {
        let not_a_dir = |reason: &str| RepoError::ContentName {
            path: path.to_owned(),
            reason: reason.into(),
        };
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| not_a_dir("the path contains a NUL byte"))?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        match openat2(None, &c, flags, 0) {
            Ok(fd) => Ok(ContentRoot {
                fd,
                path: path.to_owned(),
            }),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => {
                // Only to word the message: the open above already refused it.
                if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
                    Err(not_a_dir(
                        "a symbolic link, which is not followed; give the directory it points to",
                    ))
                } else {
                    Err(not_a_dir("not a directory"))
                }
            }
            Err(e) => Err(RepoError::io("open", path, e)),
        }
    }

    /// Walk CONTENT_DIR recursively without following symlinks or crossing mount points. Regular
    /// files become [`ContentFile`]s named by their `/`-joined relative path; symlinks, FIFOs,
    /// sockets, devices and mount points are skipped (reported in `skipped`, never opened); a
    /// directory whose (device, inode) is in `exclude` (the repository itself, should it sit
    /// inside CONTENT_DIR) is skipped. A name that is not UTF-8 or not a valid target path is an
    /// error: publishing a different set of files than asked is worse than none.
    ///
    /// Only the directories on the current path that still have unlisted subdirectories are held
    /// open.
    pub(crate) fn walk(
        &self,
        exclude: &[(u64, u64)],
        skipped: &mut Vec<Skipped>,
    ) -> Result<Vec<ContentFile>, RepoError> {
        let root = self
            .fd
            .try_clone()
            .map_err(|e| RepoError::io("open", &self.path, e))?;
        let mut out = Vec::new();
        let mut pending = Vec::new();
        self.list(&Rc::new(root), "", exclude, skipped, &mut out, &mut pending)?;
        while let Some(dir) = pending.pop() {
            let rel = dir.rel.clone();
            let fd = self.open_pending(dir)?;
            self.list(&Rc::new(fd), &rel, exclude, skipped, &mut out, &mut pending)?;
        }
        out.sort_by(|a, b| a.target.cmp(&b.target));
        Ok(out)
    }

    /// Open a directory the walk found, by its name in its parent, as the directory it was then.
    pub(super) fn open_pending(&self, dir: Pending) -> Result<OwnedFd, RepoError> {
        let path = self.path.join(&dir.rel);
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let fd = openat2(Some(dir.parent.as_fd()), &dir.name, flags, BENEATH)
            .map_err(|e| changed_or_io(&path, e))?;
        let st = fstat(fd.as_fd()).map_err(|e| RepoError::io("stat", &path, e))?;
        if (st.key.dev, st.key.ino) != dir.id {
            return Err(changed(&path, "another directory took its place"));
        }
        Ok(fd)
    }

    /// List one directory of the walk (`rel` below the root, held open as `dir`).
    pub(super) fn list(
        &self,
        dir: &Rc<OwnedFd>,
        rel: &str,
        exclude: &[(u64, u64)],
        skipped: &mut Vec<Skipped>,
        out: &mut Vec<ContentFile>,
        pending: &mut Vec<Pending>,
    ) -> Result<(), RepoError> {
        let dir_path = self.path.join(rel);
        let names = list_dir(dir.as_fd()).map_err(|e| RepoError::io("list", &dir_path, e))?;
        let dir_dev = fstat(dir.as_fd())
            .map_err(|e| RepoError::io("stat", &dir_path, e))?
            .key
            .dev;
        for name in names {
            let path = dir_path.join(&name);
            let c = CString::new(name.as_bytes())
                .map_err(|_| RepoError::Internal("readdir returned a name with NUL".into()))?;
            let name = name_utf8(name, &path)?;
            let name_len = name.len();
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            // A name in a directory held open, not followed if a symlink: one `statx`. What is
            // a directory or may be a mount point is looked at again through `openat2`, which
            // refuses every mount crossing (`RESOLVE_NO_XDEV`).
            let (quick, maybe_mount) = statat(dir.as_fd(), &rel[rel.len() - name_len..])
                .map_err(|e| changed_or_io(&path, e))?;
            let st =
                if quick.kind == EntryKind::Directory || maybe_mount || quick.key.dev != dir_dev {
                    // O_PATH | O_NOFOLLOW: looks at a symlink itself, never opens a FIFO or a device.
                    let flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
                    let probe = match openat2(Some(dir.as_fd()), &c, flags, BENEATH) {
                        Ok(fd) => fd,
                        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                            skipped.push(Skipped {
                                path,
                                reason: "another filesystem (not crossed)".into(),
                            });
                            continue;
                        }
                        Err(e) => return Err(changed_or_io(&path, e)),
                    };
                    fstat(probe.as_fd()).map_err(|e| RepoError::io("stat", &path, e))?
                } else {
                    quick
                };
            let id = (st.key.dev, st.key.ino);
            match st.kind {
                EntryKind::Regular => {
                    let target = TargetPath::parse(&rel).map_err(|e| RepoError::ContentName {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                    out.push(ContentFile {
                        target,
                        path,
                        id,
                        walked: st.key,
                    });
                }
                EntryKind::Directory if exclude.contains(&id) => skipped.push(Skipped {
                    path,
                    reason: "the repository itself".into(),
                }),
                EntryKind::Directory => pending.push(Pending {
                    parent: Rc::clone(dir),
                    name: c,
                    id,
                    rel,
                }),
                EntryKind::Symlink => skipped.push(Skipped {
                    path,
                    reason: "symbolic link (not followed)".into(),
                }),
                kind => skipped.push(Skipped {
                    path,
                    reason: format!("{} (only regular files are published)", kind.describe()),
                }),
            }
        }
        Ok(())
    }

    /// Open `file` for reading, beneath the root, only if it is still the regular file the walk
    /// recorded.
    pub(super) fn open_walked(&self, file: &ContentFile) -> Result<(File, FileKey), RepoError> {
        let c = CString::new(file.target.as_str())
            .map_err(|_| RepoError::Internal("target path with NUL".into()))?;
        let open = |flags: i32| {
            openat2(
                Some(self.fd.as_fd()),
                &c,
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                BENEATH,
            )
            .map_err(|e| changed_or_io(&file.path, e))
        };
        let same = |fd: &OwnedFd| -> Result<FileKey, RepoError> {
            let st = fstat(fd.as_fd()).map_err(|e| RepoError::io("stat", &file.path, e))?;
            check_walked(file, &st)?;
            Ok(st.key)
        };
        // First without opening for reading, so a file swapped for a FIFO or device is not opened;
        // O_NONBLOCK as a second line of defence should it be swapped between the two opens.
        same(&open(libc::O_PATH)?)?;
        let fd = open(libc::O_RDONLY | libc::O_NONBLOCK)?;
        let key = same(&fd)?;
        Ok((File::from(fd), key))
    }
}

/// Is `st` the regular file the walk recorded for `file`?
fn check_walked(file: &ContentFile, st: &Stat) -> Result<(), RepoError> {
    if st.kind != EntryKind::Regular {
        return Err(changed(
            &file.path,
            &format!("it is now a {}", st.kind.describe()),
        ));
    }
    if (st.key.dev, st.key.ino) != file.id {
        return Err(changed(&file.path, "another file took its place"));
    }
    Ok(())
}

fn name_utf8(name: OsString, path: &Path) -> Result<String, RepoError> {
    name.into_string().map_err(|_| RepoError::ContentName {
        path: path.to_owned(),
        reason: "the file name is not valid UTF-8".into(),
    })
}

fn changed(path: &Path, reason: &str) -> RepoError {
    RepoError::ContentChanged {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// An error of an open beneath CONTENT_DIR: the errors by which `openat2` refuses a path that
/// changed since it was listed, or any other I/O error.
fn changed_or_io(path: &Path, e: io::Error) -> RepoError {
    match e.raw_os_error() {
        Some(libc::ENOENT) => changed(path, "it is no longer there"),
        Some(libc::ENOTDIR) => changed(
            path,
            "a directory on its path is no longer a directory (replaced by a file or a symbolic link)",
        ),
        Some(libc::ELOOP) => changed(path, "a symbolic link is now in its path"),
        Some(libc::EXDEV) => changed(
            path,
            "its path now crosses a mount point or leaves the content directory",
        ),
        _ => RepoError::io("open", path, e),
    }
}

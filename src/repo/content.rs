//! CONTENT_DIR → targets: walking the content directory and copying each file into the
//! repository under its consistent-snapshot names while hashing exactly the bytes copied.
//!
//! CONTENT_DIR may be writable by people who must not be able to publish anything else: they can
//! rename, replace or symlink any entry at any moment while `add` runs. So nothing is ever looked
//! up by a path from `/`. CONTENT_DIR is opened once ([`ContentRoot::open`], `O_NOFOLLOW`), and
//! every later open is `openat2(2)` relative to that descriptor or to a directory descriptor
//! reached from it, with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV`: no `..` out, no symlink in any component, no `/proc` magic link, no mount
//! point crossed.
//!
//! - [`ContentRoot::walk`] descends from directory descriptor to directory descriptor, lists each
//!   with `readdir` on the descriptor, and looks at each entry through an `O_PATH | O_NOFOLLOW`
//!   descriptor (never opening a FIFO or following a link). It records each regular file's
//!   (device, inode).
//! - [`publish_file`] opens the file again beneath the root and copies it only if it
//!   is still a regular file with the (device, inode) the walk recorded. A directory swapped for a
//!   symlink, a file or directory moved in from elsewhere, a new mount point: the open fails or
//!   lands on another inode, and `add` stops with [`RepoError::ContentChanged`] before anything
//!   is signed.

use crate::chunks::{ChunkHasher, ChunkTree};
use std::ffi::{CString, OsString};
use std::fs::{self, File};
use std::io::{self, ErrorKind, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::index::{Hashes, TargetPath};
use crate::source::{ficlone, fstat, list_dir, openat2, statat, EntryKind, FileKey, Stat};
use crate::verify::MultiHasher;

use super::atomic::TempFile;
use super::error::RepoError;

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
    walked: FileKey,
}

/// A directory the walk has yet to list: its name in a parent it holds open, and the identity
/// seen when the parent was listed.
struct Pending {
    parent: Rc<OwnedFd>,
    name: CString,
    id: (u64, u64),
    rel: String,
}

/// CONTENT_DIR, opened once; everything below it is resolved beneath this descriptor.
pub(crate) struct ContentRoot {
    fd: OwnedFd,
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
    fn open_pending(&self, dir: Pending) -> Result<OwnedFd, RepoError> {
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
    fn list(
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
    fn open_walked(&self, file: &ContentFile) -> Result<(File, FileKey), RepoError> {
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

/// What [`publish_file`] copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Published {
    pub(crate) length: u64,
    /// algorithm → digest (raw bytes; hex in metadata and file names).
    pub(crate) hashes: Hashes,
    /// The chunk root ([`crate::chunks`]) when the file was read by this add (not kept by the
    /// add cache: an entry kept from an earlier add keeps whatever it listed).
    pub(crate) chunk_root: Option<[u8; 32]>,
}

/// What an earlier `add` published for a target, and the identity of the file it read
/// (see `addcache`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Known {
    pub(crate) key: FileKey,
    pub(crate) published: Published,
}

/// The outcome of [`publish_file`].
pub(crate) struct Outcome {
    pub(crate) published: Published,
    /// The file's identity when it was read, if it did not change while it was read and is old
    /// enough for the identity to stand for its content (see [`settled`]); `None`: do not
    /// remember it.
    pub(crate) key: Option<FileKey>,
    /// The copy an earlier `add` made was kept: the file was not read.
    pub(crate) reused: bool,
}

/// How long after its last change a file's (device, inode, size, mtime, ctime) is trusted to
/// stand for its content. File times come from a coarse clock (a few ms), so a file written
/// twice within one tick keeps its times; a file changed this recently is read again next time
/// (git's "racy clean" rule).
const SETTLE: i128 = 2_000_000_000;

/// Is `key` old enough (ctime and mtime more than [`SETTLE`] ago) to be remembered?
fn settled(key: &FileKey) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    key.ctime_ns.max(key.mtime_ns) < now - SETTLE
}

thread_local! {
    /// The destination directory the last kept copy was looked for in, held open: files come in
    /// target order, so consecutive ones share it, and a `stat` by name in it costs much less
    /// than resolving the whole path each time (a million kept copies per `add`). The repository
    /// is locked for the add; a directory under `REPO/targets` replaced meanwhile by someone
    /// else can make this look in the old one (clients still check every hash).
    static COPY_DIR: std::cell::RefCell<Option<(PathBuf, File)>> =
        const { std::cell::RefCell::new(None) };
}

/// Whether `dir/name` is a regular file (not followed if a symlink) of `length` bytes.
fn copy_in_place(dir: &Path, name: &str, length: u64) -> bool {
    COPY_DIR.with_borrow_mut(|held| {
        if held.as_ref().is_none_or(|(p, _)| p != dir) {
            use std::os::unix::fs::OpenOptionsExt;
            let open = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(dir);
            *held = open.ok().map(|f| (dir.to_owned(), f));
        }
        let Some((_, d)) = held.as_ref() else {
            return false;
        };
        crate::source::fstatat_nofollow(d.as_fd(), name).is_ok_and(|st| {
            st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_size as u64 == length
        })
    })
}

/// Copy `file` (opened beneath `root`, and only if it is still the file the walk recorded) into
/// `targets_dir` under `dir/<hash>.<basename>` for each computed hash (or under `dir/basename`
/// when the repository does not use consistent snapshots), hashing exactly the bytes written (one
/// read pass: read → hash → temporary file → rename). The hash-named copies are hard links of one
/// file. Copies are not flushed one by one: the caller runs one `syncfs` before any metadata
/// names them.
///
/// With `known` (what an earlier `add` published for this target): if the opened file still has
/// the recorded identity (device, inode, size, mtime, ctime) and the earlier copies are in place
/// with the recorded length, they are kept and the file is not read.
pub(crate) fn publish_file(
    root: &ContentRoot,
    file: &ContentFile,
    targets_dir: &Path,
    sha512: bool,
    consistent: bool,
    known: Option<&Known>,
) -> Result<Outcome, RepoError> {
    let (src, target) = (&file.path, &file.target);
    let walked = file.walked;
    let components: Vec<&str> = target.components().collect();
    let (basename, dirs) = components
        .split_last()
        .ok_or_else(|| RepoError::Internal("target path without components".into()))?;
    let mut dest_dir = targets_dir.to_owned();
    for d in dirs {
        dest_dir.push(d);
    }
    let names = |hashes: &Hashes| -> Vec<PathBuf> {
        if consistent {
            hashes
                .values()
                .map(|h| dest_dir.join(format!("{}.{basename}", hex::encode(h))))
                .collect()
        } else {
            vec![dest_dir.join(basename)]
        }
    };
    // What an earlier add published, kept if the file has the identity it had then and the copies
    // are in place.
    let reuse = |key: &FileKey| -> Option<Outcome> {
        let k = known?;
        let copies_in_place = || {
            let length = k.published.length;
            if consistent {
                k.published.hashes.values().all(|h| {
                    copy_in_place(&dest_dir, &format!("{}.{basename}", hex::encode(h)), length)
                })
            } else {
                copy_in_place(&dest_dir, basename, length)
            }
        };
        (k.key == *key
            && key.size == k.published.length
            && k.published.hashes.contains_key("sha256")
            && (!sha512 || k.published.hashes.contains_key("sha512"))
            && copies_in_place())
        .then(|| Outcome {
            published: k.published.clone(),
            key: Some(*key),
            reused: true,
        })
    };
    // The identity the walk saw is enough not to read the file: signed as it was then (a file
    // changed since is signed as it was, as if it changed after this add).
    if let Some(kept) = reuse(&walked) {
        return Ok(kept);
    }
    let (file, key) = root.open_walked(file)?;
    if let Some(kept) = reuse(&key) {
        return Ok(kept);
    }
    fs::create_dir_all(&dest_dir).map_err(|e| RepoError::io("create directory", &dest_dir, e))?;
    // The temporary name lives in the destination directory so the rename is atomic.
    let mut tmp = TempFile::beside(&dest_dir.join(basename), 0o644)?.batched();
    let mut hasher = if sha512 {
        MultiHasher::sha256_and_sha512()
    } else {
        MultiHasher::sha256_only()
    };
    let mut chunker = ChunkHasher::new();
    let file = if clone_hashing(&file, src, &mut tmp, &mut hasher, &mut chunker)? {
        file
    } else {
        copy_hashing(file, src, &mut tmp, &mut hasher, &mut chunker)?
    };
    let (length, digests) = hasher.finish();
    let hashes: Hashes = digests.into_iter().collect();
    let tree = chunker.finish();
    write_outboard(targets_dir, &hashes, &tree)?;
    let names = names(&hashes);
    let (last, others) = names
        .split_last()
        .ok_or_else(|| RepoError::Internal("no hash computed".into()))?;
    for name in others {
        tmp.link_also(name)?;
    }
    tmp.persist(last)?;
    // Remembered only if the file did not change while it was read, and not too recently.
    let after = fstat(file.as_fd()).map(|st| st.key).ok();
    let key = (after == Some(key) && key.size == length && settled(&key)).then_some(key);
    Ok(Outcome {
        published: Published {
            length,
            hashes,
            chunk_root: Some(tree.root),
        },
        key,
        reused: false,
    })
}

/// The chunk directory of a repository whose targets directory is `targets_dir`:
/// `REPO/chunks`, beside `REPO/targets`.
pub(crate) fn chunks_dir(targets_dir: &Path) -> PathBuf {
    targets_dir
        .parent()
        .map_or_else(|| PathBuf::from("chunks"), |r| r.join("chunks"))
}

/// Publish the outboard of a file as `REPO/chunks/<sha256 hex>` (content-addressed: identical
/// contents share it), unless one of the right size is there already. Not flushed one by one:
/// the same `syncfs` as the copies covers it.
fn write_outboard(targets_dir: &Path, hashes: &Hashes, tree: &ChunkTree) -> Result<(), RepoError> {
    let (Some(sha), false) = (hashes.get("sha256"), tree.leaves.is_empty()) else {
        return Ok(());
    };
    let dir = chunks_dir(targets_dir);
    let path = dir.join(hex::encode(sha));
    let outboard = tree.outboard();
    if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.len() == outboard.len() as u64) {
        return Ok(());
    }
    fs::create_dir_all(&dir).map_err(|e| RepoError::io("create directory", &dir, e))?;
    let mut tmp = TempFile::beside(&path, 0o644)?.batched();
    tmp.write_all(&outboard)?;
    tmp.persist(&path)
}

/// Make `out` a reflink copy of `file` (btrfs, XFS: no data written) and hash the copy, so the
/// digests are those of exactly the bytes the copy holds. `Ok(false)`: the filesystem cannot
/// (ext4, across filesystems), `out` is empty again, copy instead.
fn clone_hashing(
    file: &File,
    src: &Path,
    out: &mut TempFile,
    hasher: &mut MultiHasher,
    chunker: &mut ChunkHasher,
) -> Result<bool, RepoError> {
    use std::os::unix::fs::FileExt;
    let tmp_path = out.path().to_owned();
    let tmp = out.open_file()?;
    if ficlone(tmp, file).is_err() {
        // A clone that failed partway may have left extents behind.
        tmp.set_len(0)
            .map_err(|e| RepoError::io("truncate", &tmp_path, e))?;
        return Ok(false);
    }
    let mut buf = vec![0u8; 256 * 1024];
    let mut at = 0u64;
    loop {
        let n = match tmp.read_at(&mut buf, at) {
            Ok(0) => return Ok(true),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(RepoError::io("read the reflink copy of", src, e)),
        };
        hasher.update(&buf[..n]);
        chunker.update(&buf[..n]);
        at += n as u64;
    }
}

/// Copy `file` into `out`, hashing every byte; gives the file back.
fn copy_hashing(
    mut file: File,
    src: &Path,
    out: &mut TempFile,
    hasher: &mut MultiHasher,
    chunker: &mut ChunkHasher,
) -> Result<File, RepoError> {
    thread_local! {
        /// One read buffer per worker: a new zeroed 256 KiB per file cost more than reading a
        /// small file.
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 256 * 1024]);
    }
    BUF.with_borrow_mut(|buf| loop {
        let n = match file.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(RepoError::io("read", src, e)),
        };
        let chunk = &buf[..n];
        hasher.update(chunk);
        chunker.update(chunk);
        out.write_all(chunk)?;
    })?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("trustfs-content-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                out.extend(files_under(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }

    /// CONTENT_DIR with `zz/secret` ("inside"), `a` ("a"), and beside it `outside/secret`
    /// ("SECRET") and an empty `targets/`; the walk of CONTENT_DIR done.
    struct Staged {
        base: PathBuf,
        content: PathBuf,
        outside: PathBuf,
        tdir: PathBuf,
        root: ContentRoot,
        files: Vec<ContentFile>,
    }

    fn stage(name: &str) -> Staged {
        let base = scratch(name);
        let content = base.join("content");
        fs::create_dir_all(content.join("zz")).unwrap();
        fs::write(content.join("zz/secret"), b"inside").unwrap();
        fs::write(content.join("a"), b"a").unwrap();
        let outside = base.join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), b"SECRET").unwrap();
        let tdir = base.join("targets");
        fs::create_dir_all(&tdir).unwrap();
        let root = ContentRoot::open(&content).unwrap();
        let mut skipped = Vec::new();
        let files = root.walk(&[], &mut skipped).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        let names: Vec<&str> = files.iter().map(|f| f.target.as_str()).collect();
        assert_eq!(names, ["a", "zz/secret"]);
        Staged {
            base,
            content,
            outside,
            tdir,
            root,
            files,
        }
    }

    impl Staged {
        /// Publish every walked file; the result for zz/secret.
        fn publish(&self) -> Result<Published, RepoError> {
            let a =
                publish_file(&self.root, &self.files[0], &self.tdir, false, true, None).unwrap();
            assert_eq!(a.published.length, 1, "untouched files still publish");
            publish_file(&self.root, &self.files[1], &self.tdir, false, true, None)
                .map(|o| o.published)
        }

        /// No copy of outside/secret (by hash name or content) under targets/.
        fn assert_secret_not_copied(&self) {
            let secret_sha = hex::encode(Sha256::digest(b"SECRET"));
            for f in files_under(&self.tdir) {
                assert!(
                    !f.to_string_lossy().contains(&secret_sha),
                    "{}",
                    f.display()
                );
                assert_ne!(fs::read(&f).unwrap(), b"SECRET", "{}", f.display());
            }
            fs::remove_dir_all(&self.base).unwrap();
        }
    }

    fn assert_changed(r: Result<Published, RepoError>, want_reason: &str) {
        match r {
            Err(RepoError::ContentChanged { path, reason }) => {
                assert!(path.ends_with("content/zz/secret"), "{}", path.display());
                assert!(reason.contains(want_reason), "{reason}");
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(p) => panic!("published {:?}", p.hashes),
        }
    }

    /// The attack of the Hardening issue, made deterministic: after the walk, a directory is
    /// swapped for a symlink to a directory outside CONTENT_DIR that holds a file of the same
    /// name. (It used to be followed: the outside file was copied and listed.)
    #[test]
    fn directory_swapped_for_symlink_after_the_walk_is_not_published() {
        let s = stage("swap-symlink");
        fs::rename(s.content.join("zz"), s.base.join("zz-away")).unwrap();
        std::os::unix::fs::symlink(&s.outside, s.content.join("zz")).unwrap();
        assert_changed(s.publish(), "symbolic link");
        let e = s.publish().err().unwrap().to_string();
        assert!(
            e.contains("zz/secret: changed while publishing")
                && e.ends_with("nothing was published, run add again"),
            "{e}"
        );
        s.assert_secret_not_copied();
    }

    /// The same with a real directory moved in from outside CONTENT_DIR: the path resolves beneath
    /// the root, but to another inode than the walk listed.
    #[test]
    fn directory_replaced_by_one_moved_in_after_the_walk_is_not_published() {
        let s = stage("swap-moved");
        fs::rename(s.content.join("zz"), s.base.join("zz-away")).unwrap();
        fs::rename(&s.outside, s.content.join("zz")).unwrap();
        assert_changed(s.publish(), "another file took its place");
        s.assert_secret_not_copied();
    }

    /// A directory moved out of CONTENT_DIR after the walk (to where its owner may then replace
    /// its files): its files are no longer beneath the root, so they are not published.
    #[test]
    fn directory_moved_out_after_the_walk_is_not_published() {
        let s = stage("moved-out");
        fs::rename(s.content.join("zz"), s.outside.join("zz")).unwrap();
        assert_changed(s.publish(), "no longer there");
        s.assert_secret_not_copied();
    }

    /// A walked file replaced by a symlink, a hard link to another file, or a FIFO.
    #[test]
    fn file_replaced_after_the_walk_is_not_published() {
        let s = stage("file-replaced");
        let secret = s.content.join("zz/secret");
        fs::remove_file(&secret).unwrap();
        std::os::unix::fs::symlink(s.outside.join("secret"), &secret).unwrap();
        assert_changed(s.publish(), "symbolic link");
        fs::remove_file(&secret).unwrap();
        fs::hard_link(s.outside.join("secret"), &secret).unwrap();
        assert_changed(s.publish(), "another file took its place");
        fs::remove_file(&secret).unwrap();
        crate::sys::mkfifo(&secret, 0o644).unwrap();
        assert_changed(s.publish(), "FIFO");
        s.assert_secret_not_copied();
    }

    /// A directory swapped for a symlink between being listed in its parent and being opened for
    /// listing itself stops the walk; so does CONTENT_DIR given as a symlink.
    #[test]
    fn symlinks_are_refused_at_every_level_of_the_walk() {
        let base = scratch("walk-symlink");
        let content = base.join("content");
        fs::create_dir_all(content.join("d")).unwrap();
        fs::write(content.join("d/f"), b"f").unwrap();
        std::os::unix::fs::symlink(&content, base.join("link")).unwrap();
        match ContentRoot::open(&base.join("link")) {
            Err(RepoError::ContentName { reason, .. }) => {
                assert!(reason.contains("symbolic link"), "{reason}")
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        fs::write(base.join("file"), b"").unwrap();
        match ContentRoot::open(&base.join("file")) {
            Err(RepoError::ContentName { reason, .. }) => assert_eq!(reason, "not a directory"),
            other => panic!("{:?}", other.map(|_| ())),
        }
        let root = ContentRoot::open(&content).unwrap();
        let dir = Rc::new(root.fd.try_clone().unwrap());
        let (mut out, mut pending, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
        root.list(&dir, "", &[], &mut skipped, &mut out, &mut pending)
            .unwrap();
        assert_eq!(pending.len(), 1);
        fs::rename(content.join("d"), base.join("d-away")).unwrap();
        std::os::unix::fs::symlink("/etc", content.join("d")).unwrap();
        match root.open_pending(pending.pop().unwrap()) {
            Err(RepoError::ContentChanged { reason, .. }) => {
                assert!(reason.contains("symbolic link"), "{reason}")
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        // Listed, then replaced by another directory of the same name.
        fs::remove_file(content.join("d")).unwrap();
        fs::rename(base.join("d-away"), content.join("d")).unwrap();
        root.list(&dir, "", &[], &mut skipped, &mut out, &mut pending)
            .unwrap();
        fs::rename(content.join("d"), base.join("d-away")).unwrap();
        fs::create_dir(content.join("d")).unwrap();
        match root.open_pending(pending.pop().unwrap()) {
            Err(RepoError::ContentChanged { reason, .. }) => {
                assert!(reason.contains("another directory"), "{reason}")
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        fs::remove_dir(content.join("d")).unwrap();
        std::os::unix::fs::symlink("/etc", content.join("d")).unwrap();
        let mut skipped = Vec::new();
        let files = root.walk(&[], &mut skipped).unwrap();
        assert!(files.is_empty());
        assert_eq!(skipped[0].reason, "symbolic link (not followed)");
        fs::remove_dir_all(&base).unwrap();
    }
}

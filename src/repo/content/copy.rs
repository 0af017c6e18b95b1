//! Copying a walked file into `REPO/targets` under its consistent-snapshot names while hashing
//! exactly the bytes copied (reflink when the filesystem can), its chunk outboard in
//! `REPO/chunks`, or keeping the copies an earlier add made when the file has not changed.

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::chunks::{ChunkHasher, ChunkTree};
use crate::hashing::MultiHasher;
use crate::index::Hashes;
use crate::source::{ficlone, fstat, FileKey};

use super::walk::{ContentFile, ContentRoot};
use crate::repo::atomic::TempFile;
use crate::repo::error::RepoError;

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

//! CONTENT_DIR → targets: walking the content directory safely and copying each file into the
//! repository under its consistent-snapshot names while hashing exactly the bytes copied.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::index::TargetPath;
use crate::verify::MultiHasher;

use super::atomic::{sync_dir, TempFile};
use super::error::RepoError;

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
    pub(crate) path: PathBuf,
}

/// Walk `root` recursively without following symlinks. Regular files become [`ContentFile`]s named
/// by their `/`-joined relative path; symlinks, FIFOs, sockets and devices are skipped (reported
/// in `skipped`, never opened); a directory whose (device, inode) is in `exclude` (the repository
/// itself, should it sit inside CONTENT_DIR) is skipped. A name that is not UTF-8 or not a valid
/// target path is an error: publishing a different set of files than asked is worse than none.
pub(crate) fn walk(
    root: &Path,
    exclude: &[(u64, u64)],
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<ContentFile>, RepoError> {
    let meta = fs::metadata(root).map_err(|e| RepoError::io("read", root, e))?;
    if !meta.is_dir() {
        return Err(RepoError::ContentName {
            path: root.to_owned(),
            reason: "not a directory".into(),
        });
    }
    let mut out = Vec::new();
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_owned(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| RepoError::io("list", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| RepoError::io("list", &dir, e))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                return Err(RepoError::ContentName {
                    path,
                    reason: "the file name is not valid UTF-8".into(),
                });
            };
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            // lstat: never follows a symlink, never opens a FIFO.
            let meta = fs::symlink_metadata(&path).map_err(|e| RepoError::io("stat", &path, e))?;
            let ft = meta.file_type();
            if ft.is_symlink() {
                skipped.push(Skipped {
                    path,
                    reason: "symbolic link (not followed)".into(),
                });
            } else if ft.is_dir() {
                if exclude.contains(&(meta.dev(), meta.ino())) {
                    skipped.push(Skipped {
                        path,
                        reason: "the repository itself".into(),
                    });
                } else {
                    stack.push((path, rel));
                }
            } else if ft.is_file() {
                let target = TargetPath::parse(&rel).map_err(|e| RepoError::ContentName {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                out.push(ContentFile { target, path });
            } else {
                let kind = crate::source::EntryKind::from_std(ft).describe();
                skipped.push(Skipped {
                    path,
                    reason: format!("{kind} (only regular files are published)"),
                });
            }
        }
    }
    out.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(out)
}

/// What [`publish_file`] copied.
pub(crate) struct Published {
    pub(crate) length: u64,
    /// algorithm → lowercase hex digest.
    pub(crate) hashes: BTreeMap<String, String>,
}

/// Copy `src` into `targets_dir` under `dir/<hash>.<basename>` for each computed hash (or under
/// `dir/basename` when the repository does not use consistent snapshots), hashing exactly the
/// bytes written (one read pass: read → hash → temporary file → rename). The hash-named copies are
/// hard links of one file.
pub(crate) fn publish_file(
    src: &Path,
    target: &TargetPath,
    targets_dir: &Path,
    sha512: bool,
    consistent: bool,
) -> Result<Published, RepoError> {
    // O_NOFOLLOW: a file swapped for a symlink since the walk is refused, not followed.
    // O_NONBLOCK: a file swapped for a FIFO since the walk cannot hang the open.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(src)
        .map_err(|e| RepoError::io("open", src, e))?;
    let meta = file.metadata().map_err(|e| RepoError::io("stat", src, e))?;
    if !meta.is_file() {
        return Err(RepoError::ContentName {
            path: src.to_owned(),
            reason: "no longer a regular file".into(),
        });
    }
    let components: Vec<&str> = target.components().collect();
    let (basename, dirs) = components
        .split_last()
        .ok_or_else(|| RepoError::Internal("target path without components".into()))?;
    let mut dest_dir = targets_dir.to_owned();
    for d in dirs {
        dest_dir.push(d);
    }
    fs::create_dir_all(&dest_dir).map_err(|e| RepoError::io("create directory", &dest_dir, e))?;
    // The temporary name lives in the destination directory so the rename is atomic.
    let mut tmp = TempFile::beside(&dest_dir.join(basename), 0o644)?;
    let mut hasher = if sha512 {
        MultiHasher::sha256_and_sha512()
    } else {
        MultiHasher::sha256_only()
    };
    copy_hashing(file, src, &mut tmp, &mut hasher)?;
    let (length, digests) = hasher.finish();
    let hashes: BTreeMap<String, String> = digests
        .into_iter()
        .map(|(alg, d)| (alg.to_owned(), hex::encode(d)))
        .collect();
    let names: Vec<PathBuf> = if consistent {
        hashes
            .values()
            .map(|h| dest_dir.join(format!("{h}.{basename}")))
            .collect()
    } else {
        vec![dest_dir.join(basename)]
    };
    let (last, others) = names
        .split_last()
        .ok_or_else(|| RepoError::Internal("no hash computed".into()))?;
    for name in others {
        tmp.link_also(name)?;
    }
    tmp.persist(last)?;
    sync_dir(&dest_dir)?;
    Ok(Published { length, hashes })
}

fn copy_hashing(
    mut file: File,
    src: &Path,
    out: &mut TempFile,
    hasher: &mut MultiHasher,
) -> Result<(), RepoError> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(RepoError::io("read", src, e)),
        };
        let chunk = &buf[..n];
        hasher.update(chunk);
        out.write_all(chunk)?;
    }
}

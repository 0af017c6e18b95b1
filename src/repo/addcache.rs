//! What the last `repo add` read, so the next one reads only files that changed.
//!
//! `REPO/.trustfs-add-cache.json` maps each target path to the identity of the content file that
//! was read for it (device, inode, size, mtime, ctime, as `fstat` reported them before and after
//! the read) and what was published from it (length and hashes). When the file under CONTENT_DIR
//! still has that identity and the published copies are still in place, `add` keeps them without
//! reading the file (the rule rsync's and git's change detection use: any write, truncate or
//! replacement changes at least one of these fields, and ctime cannot be set by a file's owner).
//! Files changed within two seconds of being read are not remembered (see `content::settled`).
//!
//! The cache is only a hint: a missing, unreadable or malformed file means "read everything",
//! and `repo add --reread` ignores it. It never decides what is signed without the published copy
//! being there.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::source::FileKey;

use super::atomic::write_atomic;
use super::content::{Known, Published};
use super::error::RepoError;

/// Its file name in the repository directory (next to `metadata/` and `targets/`).
pub(crate) const FILE_NAME: &str = ".trustfs-add-cache.json";

const FORMAT: u32 = 1;

#[derive(Deserialize)]
struct CacheFile {
    format: u32,
    files: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    length: u64,
    hashes: BTreeMap<String, String>,
}

/// Target path → what was read and published for it.
#[derive(Default)]
pub(crate) struct AddCache {
    path: PathBuf,
    files: HashMap<String, Known>,
}

impl AddCache {
    /// The cache of `repo`; empty if there is none or it cannot be used.
    pub(crate) fn load(repo: &Path) -> AddCache {
        let path = repo.join(FILE_NAME);
        let files = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<CacheFile>(&b).ok())
            .filter(|c| c.format == FORMAT)
            .map(|c| {
                c.files
                    .into_iter()
                    .map(|(target, e)| {
                        let known = Known {
                            key: FileKey {
                                dev: e.dev,
                                ino: e.ino,
                                size: e.size,
                                mtime_ns: i128::from(e.mtime_ns),
                                ctime_ns: i128::from(e.ctime_ns),
                            },
                            published: Published {
                                length: e.length,
                                hashes: e.hashes,
                            },
                        };
                        (target, known)
                    })
                    .collect()
            })
            .unwrap_or_default();
        AddCache { path, files }
    }

    /// An empty cache that will be written to `repo` (`--reread`).
    pub(crate) fn empty(repo: &Path) -> AddCache {
        AddCache {
            path: repo.join(FILE_NAME),
            files: HashMap::new(),
        }
    }

    pub(crate) fn get(&self, target: &str) -> Option<&Known> {
        self.files.get(target)
    }

    /// Remember (or, with `None`, forget) what `target` was published from.
    pub(crate) fn set(&mut self, target: &str, known: Option<Known>) {
        match known {
            Some(k) => self.files.insert(target.to_owned(), k),
            None => self.files.remove(target),
        };
    }

    /// Write the cache (atomically), from borrowed entries: at a million targets, copying them
    /// cost seconds.
    pub(crate) fn save(&self) -> Result<(), RepoError> {
        #[derive(Serialize)]
        struct EntryRef<'a> {
            dev: u64,
            ino: u64,
            size: u64,
            mtime_ns: i64,
            ctime_ns: i64,
            length: u64,
            hashes: &'a BTreeMap<String, String>,
        }
        struct Files<'a>(&'a HashMap<String, Known>);
        impl Serialize for Files<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut map = s.serialize_map(None)?;
                // In path order: the next load builds its map from sorted keys (much faster
                // than a million random inserts).
                let mut sorted: Vec<(&String, &Known)> = self.0.iter().collect();
                sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
                for (t, k) in sorted {
                    // Times outside i64 nanoseconds (year 2262) are not remembered.
                    let (Ok(mtime_ns), Ok(ctime_ns)) =
                        (i64::try_from(k.key.mtime_ns), i64::try_from(k.key.ctime_ns))
                    else {
                        continue;
                    };
                    let entry = EntryRef {
                        dev: k.key.dev,
                        ino: k.key.ino,
                        size: k.key.size,
                        mtime_ns,
                        ctime_ns,
                        length: k.published.length,
                        hashes: &k.published.hashes,
                    };
                    map.serialize_entry(t, &entry)?;
                }
                map.end()
            }
        }
        #[derive(Serialize)]
        struct CacheFileRef<'a> {
            format: u32,
            files: Files<'a>,
        }
        let bytes = serde_json::to_vec(&CacheFileRef {
            format: FORMAT,
            files: Files(&self.files),
        })
        .map_err(|e| RepoError::Internal(format!("encode the add cache: {e}")))?;
        write_atomic(&self.path, &bytes, 0o644)
    }
}

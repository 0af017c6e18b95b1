//! What the last `repo add` read, so the next one reads only files that changed.
//!
//! `REPO/.trustfs-add-cache` maps each target path to the identity of the content file that
//! was read for it (device, inode, size, mtime, ctime, as `fstat` reported them before and after
//! the read) and what was published from it (length and hashes). When the file under CONTENT_DIR
//! still has that identity and the published copies are still in place, `add` keeps them without
//! reading the file (the rule rsync's and git's change detection use: any write, truncate or
//! replacement changes at least one of these fields, and ctime cannot be set by a file's owner).
//! Files changed within two seconds of being read are not remembered (see `settled` in
//! `content/copy.rs`).
//!
//! The cache is only a hint: a missing, unreadable or malformed file means "read everything",
//! and `repo add --reread` ignores it. It never decides what is signed without the published copy
//! being there.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::index::Hashes;
use crate::source::FileKey;

use super::atomic::write_atomic;
use super::content::{Known, Published};
use super::error::RepoError;

/// Its file name in the repository directory (next to `metadata/` and `targets/`).
pub(crate) const FILE_NAME: &str = ".trustfs-add-cache";
/// The JSON form earlier versions wrote: read if there is no [`FILE_NAME`], removed by the next
/// save.
const LEGACY_FILE_NAME: &str = ".trustfs-add-cache.json";

/// The first bytes of the file; the version changes with the layout.
const MAGIC: &[u8; 16] = b"trustfs-addc-v5\n";
/// The layout before [`BinsStamp`] (read; the next save writes the new one).
const MAGIC_V3: &[u8; 16] = b"trustfs-addc-v3\n";

/// The identity recorded for a file that was published but changed too recently for its
/// identity to stand for its content: never equal to a real file's (no file has this size), so
/// it is always read again, but its path is known to be listed.
pub(crate) const UNSETTLED: FileKey = FileKey {
    dev: 0,
    ino: 0,
    size: u64::MAX,
    mtime_ns: 0,
    ctime_ns: 0,
};

/// What the hash bins were when the cache was saved by an `add` that wrote the top-level
/// targets' bins: then every path the bins list is in the cache, with what it lists. While the
/// repository's snapshot is still the one named here (nothing signed anything since), an `add`
/// loads only the bins whose files changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BinsStamp {
    /// sha256 of the canonical `signed` of the snapshot that add wrote.
    pub(crate) snapshot: [u8; 32],
    /// sha256 of the identities (inode, size, mtime, ctime) of the bin files that snapshot
    /// names, as they were after the add: a bin file changed or replaced since shows.
    pub(crate) bin_files: [u8; 32],
    /// The earliest expiry among the bins (or earlier).
    pub(crate) earliest_expiry: i64,
}

/// sha256 of the canonical form of a snapshot's `signed` (what [`BinsStamp::snapshot`] holds).
pub(crate) fn snapshot_digest(
    snapshot: &crate::schema::Metadata<crate::schema::Snapshot>,
) -> Option<[u8; 32]> {
    let canonical = snapshot.canonical_signed().ok()?;
    Some(Sha256::digest(&canonical).into())
}

const LEGACY_FORMAT: u32 = 1;

#[derive(Deserialize)]
struct LegacyFile {
    format: u32,
    files: BTreeMap<String, LegacyEntry>,
}

#[derive(Deserialize)]
struct LegacyEntry {
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
    stamp: Option<BinsStamp>,
}

impl AddCache {
    /// The cache of `repo`; empty if there is none or it cannot be used.
    pub(crate) fn load(repo: &Path) -> AddCache {
        let path = repo.join(FILE_NAME);
        let (files, stamp) = match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes).unwrap_or_default(),
            Err(_) => std::fs::read(repo.join(LEGACY_FILE_NAME))
                .ok()
                .and_then(|b| decode_legacy(&b))
                .map(|files| (files, None))
                .unwrap_or_default(),
        };
        AddCache { path, files, stamp }
    }

    /// The [`BinsStamp`] of the cache of `repo`, read from the head of the file alone. Whether
    /// the rest is intact shows when it is loaded: the caller must then find the same stamp in
    /// the loaded cache (a damaged one loads empty, without a stamp).
    pub(crate) fn peek_stamp(repo: &Path) -> Option<BinsStamp> {
        use std::io::Read;
        let mut head = [0u8; 16 + 1 + 32 + 32 + 8];
        std::fs::File::open(repo.join(FILE_NAME))
            .ok()?
            .read_exact(&mut head)
            .ok()?;
        let mut r = Reader(&head);
        if r.take(MAGIC.len())? != MAGIC {
            return None;
        }
        read_stamp(&mut r)?
    }

    /// An empty cache that will be written to `repo` (`--reread`).
    pub(crate) fn empty(repo: &Path) -> AddCache {
        AddCache {
            path: repo.join(FILE_NAME),
            files: HashMap::new(),
            stamp: None,
        }
    }

    pub(crate) fn get(&self, target: &str) -> Option<&Known> {
        self.files.get(target)
    }

    pub(crate) fn len(&self) -> usize {
        self.files.len()
    }

    /// Every target path the cache knows.
    pub(crate) fn targets(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    pub(crate) fn stamp(&self) -> Option<&BinsStamp> {
        self.stamp.as_ref()
    }

    /// Saved with the cache: `Some` only by an `add` that leaves every path the bins list in the
    /// cache (see [`BinsStamp`]).
    pub(crate) fn set_stamp(&mut self, stamp: Option<BinsStamp>) {
        self.stamp = stamp;
    }

    /// Remember (or, with `None`, forget) what `target` was published from.
    pub(crate) fn set(&mut self, target: &str, known: Option<Known>) {
        match known {
            Some(k) => self.files.insert(target.to_owned(), k),
            None => self.files.remove(target),
        };
    }

    /// Write the cache (atomically), and remove the JSON form of earlier versions. At a million
    /// targets the JSON form took seconds to read and write; this one is a flat list of records
    /// with a digest (a torn or damaged file is ignored, and everything is read again).
    pub(crate) fn save(&self) -> Result<(), RepoError> {
        write_atomic(&self.path, &encode(&self.files, self.stamp.as_ref()), 0o644)?;
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_file(dir.join(LEGACY_FILE_NAME));
        }
        Ok(())
    }
}

/// `MAGIC`, the stamp (a byte 0, or 1 then the two digests and the earliest expiry), the
/// entry count, then per entry: the target path, dev, ino, size, mtime and ctime (ns), length,
/// and each (algorithm, digest); lengths and integers little-endian; then a sha256 of all before.
fn encode(files: &HashMap<String, Known>, stamp: Option<&BinsStamp>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + files.len() * 160);
    out.extend_from_slice(MAGIC);
    match stamp {
        Some(st) => {
            out.push(1);
            out.extend_from_slice(&st.snapshot);
            out.extend_from_slice(&st.bin_files);
            out.extend_from_slice(&st.earliest_expiry.to_le_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(&(files.len() as u64).to_le_bytes());
    let put = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&(b.len() as u64).to_le_bytes());
        out.extend_from_slice(b);
    };
    for (target, k) in files {
        put(&mut out, target.as_bytes());
        for n in [k.key.dev, k.key.ino, k.key.size] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        for t in [k.key.mtime_ns, k.key.ctime_ns] {
            out.extend_from_slice(&t.to_le_bytes());
        }
        out.extend_from_slice(&k.published.length.to_le_bytes());
        out.extend_from_slice(&(k.published.hashes.len() as u64).to_le_bytes());
        for (alg, digest) in k.published.hashes.iter() {
            put(&mut out, alg.as_bytes());
            put(&mut out, digest);
        }
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// The stamp as [`encode`] writes it: `Some(None)` for none, `None` for damage.
fn read_stamp(r: &mut Reader) -> Option<Option<BinsStamp>> {
    match r.take(1)?[0] {
        0 => Some(None),
        1 => {
            let snapshot: [u8; 32] = r.take(32)?.try_into().ok()?;
            let bin_files: [u8; 32] = r.take(32)?.try_into().ok()?;
            let earliest_expiry = i64::from_le_bytes(r.take(8)?.try_into().ok()?);
            Some(Some(BinsStamp {
                snapshot,
                bin_files,
                earliest_expiry,
            }))
        }
        _ => None,
    }
}

fn decode(bytes: &[u8]) -> Option<(HashMap<String, Known>, Option<BinsStamp>)> {
    let (body, digest) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if Sha256::digest(body)[..] != *digest {
        return None;
    }
    let mut r = Reader(body);
    let stamp = match r.take(MAGIC.len())? {
        m if m == MAGIC => read_stamp(&mut r)?,
        m if m == MAGIC_V3 => None,
        _ => return None,
    };
    let n = r.u64()?;
    // Every entry takes more than 64 bytes: a count past that is damage, not a reason to
    // reserve memory.
    let n = usize::try_from(n).ok().filter(|&n| n <= r.0.len() / 64)?;
    let mut files = HashMap::with_capacity(n);
    for _ in 0..n {
        let target = r.string()?;
        let key = FileKey {
            dev: r.u64()?,
            ino: r.u64()?,
            size: r.u64()?,
            mtime_ns: r.i128()?,
            ctime_ns: r.i128()?,
        };
        let length = r.u64()?;
        let mut hashes = Hashes::new();
        for _ in 0..r.u64()?.min(16) {
            let alg = r.string()?;
            let n = usize::try_from(r.u64()?).ok()?;
            hashes.insert(alg, r.take(n)?);
        }
        let published = Published {
            length,
            hashes,
            chunk_root: None,
        };
        files.insert(target, Known { key, published });
    }
    r.0.is_empty().then_some((files, stamp))
}

/// A bounded little-endian reader.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn i128(&mut self) -> Option<i128> {
        Some(i128::from_le_bytes(self.take(16)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<String> {
        let n = usize::try_from(self.u64()?).ok()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

fn decode_legacy(bytes: &[u8]) -> Option<HashMap<String, Known>> {
    let c = serde_json::from_slice::<LegacyFile>(bytes).ok()?;
    if c.format != LEGACY_FORMAT {
        return None;
    }
    let files = c
        .files
        .into_iter()
        .map(|(target, e)| -> Option<(String, Known)> {
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
                    hashes: e
                        .hashes
                        .into_iter()
                        .map(|(alg, d)| Some((alg, hex::decode(d).ok()?)))
                        .collect::<Option<Hashes>>()?,
                    chunk_root: None,
                },
            };
            Some((target, known))
        })
        .collect::<Option<HashMap<_, _>>>()?;
    Some(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(i: u64) -> Known {
        Known {
            key: FileKey {
                dev: 1,
                ino: i,
                size: i,
                mtime_ns: -5,
                ctime_ns: i128::from(i) << 70,
            },
            published: Published {
                length: i,
                hashes: Hashes::from([
                    ("sha256", vec![i as u8; 32]),
                    ("sha512", vec![i as u8; 64]),
                ]),
                chunk_root: None,
            },
        }
    }

    #[test]
    fn the_cache_round_trips_and_damage_reads_as_none() {
        let files: HashMap<String, Known> =
            (0..50).map(|i| (format!("d/f{i}"), known(i))).collect();
        let stamp = BinsStamp {
            snapshot: [7; 32],
            bin_files: [9; 32],
            earliest_expiry: -3,
        };
        let bytes = encode(&files, Some(&stamp));
        assert_eq!(decode(&bytes), Some((files.clone(), Some(stamp))));
        assert_eq!(decode(&encode(&files, None)), Some((files.clone(), None)));
        for cut in [0, 10, 31, 32, bytes.len() / 2, bytes.len() - 1] {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
        for at in [
            0,
            16,
            30,
            bytes.len() / 3,
            bytes.len() - 40,
            bytes.len() - 1,
        ] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert_eq!(decode(&bad), None, "byte {at}");
        }
        assert_eq!(
            decode(&encode(&HashMap::new(), None)),
            Some((HashMap::new(), None))
        );
        // The layout before stamps still reads.
        let mut v3 = MAGIC_V3.to_vec();
        v3.extend_from_slice(&encode(&files, None)[MAGIC.len() + 1..]);
        v3.truncate(v3.len() - 32);
        let digest = Sha256::digest(&v3);
        v3.extend_from_slice(&digest);
        assert_eq!(decode(&v3), Some((files, None)));
    }

    #[test]
    fn the_json_cache_of_earlier_versions_is_read_once_then_replaced() {
        let dir = std::env::temp_dir().join(format!("trustfs-addcache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let legacy = serde_json::json!({"format": 1, "files": {"a/b": {
            "dev": 1, "ino": 2, "size": 3, "mtime_ns": 4, "ctime_ns": 5, "length": 3,
            "hashes": {"sha256": "abcd"}}}});
        std::fs::write(dir.join(LEGACY_FILE_NAME), legacy.to_string()).unwrap();
        let cache = AddCache::load(&dir);
        let k = cache.get("a/b").unwrap();
        assert_eq!((k.key.ino, k.published.length), (2, 3));
        cache.save().unwrap();
        assert!(!dir.join(LEGACY_FILE_NAME).exists());
        assert_eq!(AddCache::load(&dir).get("a/b"), Some(k));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Lazy remote reads (`--lazy-fetch`): a remote mount that fetches only the chunks it reads.
//!
//! For a target with a signed chunk root, the open fetches the outboard (`<chunks base>/<sha256>`,
//! the `chunks/` directory next to each targets base unless `--chunks-url` says otherwise),
//! checks it against the root and keeps it (`partial/<key>.tree` in the cache, checked against
//! the root again when loaded). A read takes the chunks it needs from the sparse file
//! `partial/<key>.data`; every chunk is checked against the tree on every read, so a chunk that is
//! missing (a hole), torn by a crash or damaged is simply fetched again: crash safety needs no
//! fsync and no separate record of what is there. Missing chunks are fetched in one HTTP range
//! request per read, widened to the next [`WINDOW`] boundary; each fetched chunk is checked before
//! anything from that mirror is kept or served. A mirror that ignores ranges, answers another
//! range, sends fewer bytes or other bytes is skipped for the next one; if none delivers, the
//! read fails with `EIO` (a `DENY read` when some mirror delivered wrong bytes, an `ERROR read`
//! when none could deliver). A target without a root, or whose outboard no mirror has, is
//! downloaded whole as without `--lazy-fetch`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::lock;
use super::store::{open_owned_dir, openat, renameat, unlinkat};
use super::verified::{self, TrustedTree, VerifiedBytes};
use crate::chunks::{chunk_count, CHUNK_SIZE};
use crate::index::TargetInfo;
use crate::source::remote::Mirrors;
use crate::trust::{FetchError, HttpOptions};

/// Bytes fetched at least per request: reads are widened to this aligned window.
pub const WINDOW: u64 = 4 << 20;

/// Memory for trees kept (1 GiB of content is 512 KiB of tree); all are dropped beyond.
const TREES_BYTES: usize = 64 << 20;

/// The magic of a kept outboard file.
const TREE_MAGIC: &[u8] = b"trustfs-outboard/1\n";

/// Why a lazy read failed.
#[derive(Debug)]
pub enum LazyError {
    /// Some mirror delivered bytes that are not the signed ones (and none delivered them right).
    Refused(String),
    /// No mirror could deliver (network, HTTP errors, ranges ignored or cut short).
    Unavailable(String),
    /// The cache's partial file could not be used.
    Cache(io::Error),
}

pub struct LazyRemote {
    chunks: Mirrors,
    dir: File,
    trees: Mutex<HashMap<String, Arc<TrustedTree>>>,
    /// One fetch at a time per file (by its root), with the last failed fetch's answer: readers
    /// that waited behind a failure get it instead of repeating the doomed requests one by one.
    fetching: Mutex<HashMap<[u8; 32], Gate>>,
}

/// One file's fetch lock, holding the last failed fetch.
type Gate = Arc<Mutex<Option<Failed>>>;

/// A fetch that failed: when it ended and why.
#[derive(Clone)]
struct Failed {
    at: Instant,
    refused: bool,
    why: String,
}

impl LazyRemote {
    /// `chunk_bases`: where outboards are (one per targets base, same order); `cache` the
    /// mount's cache dir (`partial/` is made inside it, 0700).
    pub fn new(
        chunk_bases: &[String],
        http: HttpOptions,
        cache: &Path,
    ) -> Result<LazyRemote, String> {
        let chunks = Mirrors::new(chunk_bases, false, http)?;
        let dir = cache.join("partial");
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        }
        let dir = open_owned_dir(&dir).map_err(|e| e.to_string())?;
        // Temporaries of a daemon that died while keeping an outboard.
        if let Ok(names) = super::store::list_names(&dir) {
            for n in names.iter().filter(|n| n.starts_with("new.")) {
                let _ = unlinkat(&dir, n);
            }
        }
        Ok(LazyRemote {
            chunks,
            dir,
            trees: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
        })
    }

    /// The chunks base URLs by default: the `chunks/` directory next to each targets base.
    pub fn default_chunk_bases(targets_urls: &[String]) -> Vec<String> {
        targets_urls
            .iter()
            .map(|u| {
                let trimmed = u.trim_end_matches('/');
                // Only a path component is replaced: `https://host/` has none (its sibling
                // would be another host), so the chunks live below it.
                let path_start = trimmed.find("://").map_or(0, |i| i + 3);
                match trimmed[path_start..].rfind('/') {
                    Some(i) => format!("{}/chunks/", &trimmed[..path_start + i]),
                    None => format!("{trimmed}/chunks/"),
                }
            })
            .collect()
    }

    /// The tree of a target in memory, if fetched before.
    pub fn cached(&self, key: &str) -> Option<Arc<TrustedTree>> {
        lock(&self.trees).get(key).cloned()
    }

    /// The trusted tree of `info` (which has a signed root): memory, the kept outboard, or
    /// fetched from the chunk mirrors. None: no mirror has its outboard (download it whole).
    pub fn tree(&self, key: &str, info: &TargetInfo) -> Result<Option<Arc<TrustedTree>>, String> {
        if let Some(t) = self.cached(key) {
            return Ok(Some(t));
        }
        let tree = match self.load_kept(key, info) {
            Some(t) => t,
            None => match self.fetch_outboard(info)? {
                Some(t) => {
                    if let Err(e) = self.keep(key, &t) {
                        crate::log_event!("lazy fetch: cannot keep the outboard of {key}: {e}");
                    }
                    t
                }
                None => return Ok(None),
            },
        };
        let tree = Arc::new(tree);
        let mut trees = lock(&self.trees);
        if trees.values().map(|t| t.bytes()).sum::<usize>() + tree.bytes() > TREES_BYTES {
            trees.clear();
        }
        trees.insert(key.to_owned(), tree.clone());
        Ok(Some(tree))
    }

    fn fetch_outboard(&self, info: &TargetInfo) -> Result<Option<TrustedTree>, String> {
        let Some(sha) = info.sha256() else {
            return Ok(None);
        };
        let name = hex::encode(sha);
        let want = chunk_count(info.length)
            .checked_mul(32)
            .ok_or("a length too large for chunks")?;
        let mut reasons = Vec::new();
        for i in 0..self.chunks.len() {
            let got = self.chunks.open_plain(i, &name, want).and_then(|body| {
                let mut out = Vec::new();
                body.take(want + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| e.to_string())?;
                Ok(out)
            });
            match got {
                Ok(bytes) => match TrustedTree::from_outboard(info, &bytes) {
                    Ok(t) => return Ok(Some(t)),
                    Err(e) => reasons.push(format!("mirror {}: {e}", i + 1)),
                },
                Err(e) => reasons.push(e),
            }
        }
        crate::log_event!(
            "lazy fetch: no usable outboard for {name} ({}); downloading the file whole",
            reasons.join("; ")
        );
        Ok(None)
    }

    fn load_kept(&self, key: &str, info: &TargetInfo) -> Option<TrustedTree> {
        let mut f = openat(
            &self.dir,
            &format!("{key}.tree"),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0,
        )
        .ok()?;
        let want = chunk_count(info.length).checked_mul(32)? + TREE_MAGIC.len() as u64;
        let mut bytes = Vec::new();
        (&mut f).take(want + 1).read_to_end(&mut bytes).ok()?;
        let outboard = bytes.strip_prefix(TREE_MAGIC)?;
        // Checked against the signed root: the cache dir is not trusted for it.
        TrustedTree::from_outboard(info, outboard).ok()
    }

    fn keep(&self, key: &str, tree: &TrustedTree) -> io::Result<()> {
        let tmp = format!("new.{}.{key}.tree", std::process::id());
        let mut f = openat(
            &self.dir,
            &tmp,
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW,
            0o600,
        )?;
        let written = f
            .write_all(TREE_MAGIC)
            .and_then(|()| f.write_all(&tree.outboard()))
            .and_then(|()| renameat(&self.dir, &tmp, &format!("{key}.tree")));
        if written.is_err() {
            let _ = unlinkat(&self.dir, &tmp);
        }
        written
    }

    /// The sparse data file of `key` (created at the signed length).
    pub fn data_file(&self, key: &str, length: u64) -> io::Result<File> {
        let f = openat(
            &self.dir,
            &format!("{key}.data"),
            libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW,
            0o600,
        )?;
        let meta = f.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::other("the partial file is not a regular file"));
        }
        if meta.len() != length {
            f.set_len(length)?;
        }
        Ok(f)
    }

    /// Read `size` bytes at `offset` of the target `path` (`info`, tree `tree`), fetching the
    /// chunks the data file lacks. `Ok` bytes are checked chunk by chunk; a failure to write the
    /// data file is reported through `cache_fault` and the read is served all the same.
    #[allow(clippy::too_many_arguments)]
    pub fn read(
        &self,
        targets: &Mirrors,
        path: &str,
        info: &TargetInfo,
        tree: &TrustedTree,
        data: &File,
        offset: u64,
        size: u32,
        cache_fault: &mut dyn FnMut(io::Error),
    ) -> Result<VerifiedBytes, LazyError> {
        let length = tree.length();
        if offset >= length || size == 0 {
            return verified::check_buffer(tree, 0, Vec::new(), offset, size)
                .map_err(|e| LazyError::Refused(e.to_string()));
        }
        let cs = u64::from(CHUNK_SIZE);
        let end = offset.saturating_add(u64::from(size)).min(length);
        let (first, last) = (offset / cs, (end - 1) / cs);
        let start = first * cs;
        let stop = ((last + 1) * cs).min(length);
        let mut buf = vec![0u8; (stop - start) as usize];
        let missing = |buf: &mut [u8]| -> Result<Vec<u64>, LazyError> {
            // As far as the file goes; the rest stays zero and fails its check.
            verified::read_full_at(data, buf, start).map_err(LazyError::Cache)?;
            Ok((first..=last)
                .filter(|&i| {
                    let a = ((i - first) * cs) as usize;
                    let b = (a + cs as usize).min(buf.len());
                    !tree.chunk_matches(i, &buf[a..b])
                })
                .collect())
        };
        let mut lacking = missing(&mut buf)?;
        let arrived = Instant::now();
        // One fetch at a time per file (readahead sends several READs at once; they would fetch
        // the same window twice): after waiting, look again.
        let gate = (!lacking.is_empty()).then(|| {
            let mut gates = lock(&self.fetching);
            if gates.len() > 1024 {
                gates.retain(|_, m| Arc::strong_count(m) > 1);
            }
            gates
                .entry(tree_id(tree))
                .or_insert_with(|| Arc::new(Mutex::new(None)))
                .clone()
        });
        let mut held = gate.as_ref().map(|m| lock(m));
        if let Some(last) = held.as_ref().and_then(|h| (**h).clone()) {
            // A fetch that ended while this read waited failed: the same answer, at once.
            if last.at > arrived {
                return Err(match last.refused {
                    true => LazyError::Refused(last.why),
                    false => LazyError::Unavailable(last.why),
                });
            }
        }
        if gate.is_some() {
            lacking = missing(&mut buf)?;
        }
        if let (Some(&m0), Some(&m1)) = (lacking.first(), lacking.last()) {
            let n = chunk_count(length);
            let per = WINDOW / cs;
            // Widened up to the window boundary, but not over chunks written already: readahead
            // sends READs out of order, and a window fetched from the middle must not be fetched
            // again by the READ for its start (holes of the sparse file are what never came).
            let mut w_end = (m0 - m0 % per + per).min(n);
            if let Some(at) = next_data(data, (m1 + 1) * cs) {
                w_end = w_end.min(at / cs);
            }
            let w_end = w_end.max(m1 + 1);
            let (w_start, w_stop) = (m0 * cs, (w_end * cs).min(length));
            let fetched =
                match self.fetch_range(targets, path, info, tree, w_start, w_stop - w_start) {
                    Ok(f) => f,
                    Err(e) => {
                        if let (Some(h), LazyError::Refused(why) | LazyError::Unavailable(why)) =
                            (held.as_mut(), &e)
                        {
                            **h = Some(Failed {
                                at: Instant::now(),
                                refused: matches!(e, LazyError::Refused(_)),
                                why: why.clone(),
                            });
                        }
                        return Err(e);
                    }
                };
            if let Err(e) = data.write_all_at(&fetched, w_start) {
                cache_fault(e);
            }
            // The part of the window this read needs.
            let from = w_start.max(start);
            let to = w_stop.min(stop);
            buf[(from - start) as usize..(to - start) as usize]
                .copy_from_slice(&fetched[(from - w_start) as usize..(to - w_start) as usize]);
        }
        verified::check_buffer(tree, first, buf, offset, size)
            .map_err(|e| LazyError::Refused(e.to_string()))
    }

    /// Bytes `start .. start + len` (chunk aligned) from the first mirror that delivers exactly
    /// the signed chunks.
    fn fetch_range(
        &self,
        targets: &Mirrors,
        path: &str,
        info: &TargetInfo,
        tree: &TrustedTree,
        start: u64,
        len: u64,
    ) -> Result<Vec<u8>, LazyError> {
        let cs = u64::from(CHUNK_SIZE);
        let mut refused = Vec::new();
        let mut unavailable = Vec::new();
        for i in 0..targets.len() {
            let body = match targets.open_range(i, path, info, start, len) {
                Ok(b) => b,
                Err(e) => {
                    unavailable.push(e);
                    continue;
                }
            };
            let mut got = Vec::with_capacity(len as usize);
            if let Err(e) = body.take(len).read_to_end(&mut got) {
                unavailable.push(format!("mirror {}: {e}", i + 1));
                continue;
            }
            if got.len() as u64 != len {
                unavailable.push(format!(
                    "mirror {}: the range ended after {} of {len} bytes",
                    i + 1,
                    got.len()
                ));
                continue;
            }
            let bad = got
                .chunks(cs as usize)
                .enumerate()
                .find(|(k, c)| !tree.chunk_matches(start / cs + *k as u64, c));
            match bad {
                None => return Ok(got),
                Some((k, _)) => refused.push(format!(
                    "mirror {}: chunk {} (from byte {}) differs from the signed chunk root",
                    i + 1,
                    start / cs + k as u64,
                    start + k as u64 * cs
                )),
            }
        }
        let all = refused
            .iter()
            .chain(unavailable.iter())
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        let what = format!("bytes {start}..{} of {path:?}: {all}", start + len);
        if refused.is_empty() {
            Err(LazyError::Unavailable(what))
        } else {
            Err(LazyError::Refused(what))
        }
    }
}

/// The offset of the first written byte of `file` at or after `from` (`SEEK_DATA`); None when
/// there is none (only holes up to the end) or the call fails. A filesystem without hole support
/// reports everything as data, which only stops the widening of fetches.
fn next_data(file: &File, from: u64) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let from = libc::off_t::try_from(from).ok()?;
    // SAFETY: lseek on a descriptor `file` owns; it moves only that descriptor's offset, which
    // nothing here uses (all I/O is positioned: pread/pwrite).
    let at = unsafe { libc::lseek(file.as_raw_fd(), from, libc::SEEK_DATA) };
    u64::try_from(at).ok()
}

fn tree_id(tree: &TrustedTree) -> [u8; 32] {
    tree.root()
}

impl From<FetchError> for LazyError {
    fn from(e: FetchError) -> LazyError {
        LazyError::Unavailable(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outboards_default_to_chunks_next_to_the_targets_and_never_to_another_host() {
        let bases = LazyRemote::default_chunk_bases(&[
            "https://m.example/repo/targets/".into(),
            "https://m.example/targets".into(),
            "https://m.example/".into(),
            "http://127.0.0.1:8080".into(),
        ]);
        assert_eq!(
            bases,
            [
                "https://m.example/repo/chunks/",
                "https://m.example/chunks/",
                "https://m.example/chunks/",
                "http://127.0.0.1:8080/chunks/",
            ]
        );
    }
}

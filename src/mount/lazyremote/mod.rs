//! Lazy remote reads (`--lazy-fetch`): a remote mount that fetches only the chunks it reads.
//!
//! For a target with a signed chunk root, the open fetches the outboard (`<chunks base>/<sha256>`,
//! the `chunks/` directory next to each targets base unless `--chunks-url` says otherwise),
//! checks it against the root and keeps it (`partial/<key>.tree` in the cache, checked against
//! the root again when loaded). Reads are served from the sparse file `partial/<key>.data`, and
//! every chunk a read serves is checked against the tree on that read: a hole, a chunk torn by a
//! crash, or a partial file removed, cut or changed under the daemon is fetched again, never
//! served. A record per file ([`KeptChunks`], in memory) says which chunks were checked and
//! written, so what is there is not fetched again (after a restart it is rebuilt by checking what
//! lies in the file once; holes, found with `SEEK_DATA`, are not read).
//!
//! Missing chunks are fetched by a thread of their own ([`Run::fetch`]) in one HTTP range request,
//! widened to the next [`WINDOW`] boundary (never over chunks already there or being fetched).
//! It receives the chunks into 1 MiB batches ([`BATCH`]); a second thread checks each batch
//! chunk by chunk, hands it to the readers waiting ([`Recent`]: served from memory, until read
//! once, at most [`RECENT_BYTES`]), then writes and notes it, while the next batch arrives. A
//! read so returns as soon as its own chunks are checked. A file read from start to end
//! doubles its window up to [`MAX_WINDOW`] and has the next window fetched while it reads this
//! one. A mirror that ignores ranges, answers another range, sends fewer bytes or other bytes is
//! skipped for the next one from the chunk where it went wrong; if none delivers, the reads that
//! waited for those chunks fail with `EIO` (a `DENY read` when some mirror delivered wrong bytes,
//! an `ERROR read` when none could deliver). A target without a root, or whose outboard no mirror
//! has, is downloaded whole as without `--lazy-fetch`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::chunked::VerifyMode;
use super::lock;
use super::store::{
    flock, fstatat_nofollow, list_names, open_owned_dir, openat, renameat, unlinkat,
};
use super::verified::{self, ChunkError, ChunkSpan, TrustedTree, VerifiedBytes};
use crate::chunks::{chunk_count, CHUNK_SIZE};
use crate::index::TargetInfo;
use crate::source::remote::Mirrors;
use crate::trust::{FetchError, HttpOptions};

// One concept a file: a fetch (plan, receive, check, keep), the kept-chunks record, the batches
// in memory, the partial files' share of the cache bound. This file: the reads and the trees.
mod fetch;
mod kept;
mod recent;
mod space;

use fetch::{plan, FailKind, FetchState, Job, Partial, Run};
use kept::KeptChunks;
use recent::Recent;
use space::{PartialDir, Usage};
/// Bytes fetched at least per request: reads are widened to this aligned window.
pub const WINDOW: u64 = 4 << 20;

/// The largest window: a file read from start to end doubles its window up to this.
pub(super) const MAX_WINDOW: u64 = 32 << 20;

/// Fetch threads at most (all files); beyond, a read fetches on its own thread.
pub(super) const MAX_FETCHERS: usize = 16;

/// Memory for trees kept (1 GiB of content is 512 KiB of tree); all are dropped beyond.
pub(super) const TREES_BYTES: usize = 64 << 20;

/// Chunks a fetch checks, writes and hands to readers at a time (1 MiB; batches end on multiples
/// of it): a wake-up per chunk cost more than the chunk.
pub(super) const BATCH: u64 = 16;

/// Memory for the batches fetches brought last (all files together): reads of them are served
/// from it, not read back from the partial file and hashed again.
pub(super) const RECENT_BYTES: usize = 64 << 20;

/// The magic of a kept outboard file.
pub(super) const TREE_MAGIC: &[u8] = b"trustfs-outboard/1\n";

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
    /// Per partial file (by key): what it holds and its fetch.
    partials: Mutex<HashMap<String, Arc<Partial>>>,
    /// Fetch threads running.
    running: Arc<AtomicUsize>,
    /// The partial files' bound.
    space: Arc<PartialDir>,
    /// The chunks fetched last, in memory.
    recent: Arc<Recent>,
    /// Which targets are fetched lazily (by size).
    mode: VerifyMode,
}

impl LazyRemote {
    /// `chunk_bases`: where outboards are (one per targets base, same order); `cache` the
    /// mount's cache dir (`partial/` is made inside it, 0700).
    pub fn new(
        chunk_bases: &[String],
        http: HttpOptions,
        cache: &Path,
        max_bytes: u64,
        mode: VerifyMode,
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
        if let Ok(names) = list_names(&dir) {
            for n in names.iter().filter(|n| n.starts_with("new.")) {
                let _ = unlinkat(&dir, n);
            }
        }
        let space = Arc::new(PartialDir {
            dir: dir.try_clone().map_err(|e| e.to_string())?,
            max_bytes,
            usage: Mutex::new(Usage::default()),
            wake: Condvar::new(),
        });
        space.evict();
        let evictor = space.clone();
        std::thread::Builder::new()
            .name("trustfs-evict".into())
            .spawn(move || evictor.run())
            .map_err(|e| format!("cannot start the partial files' evictor: {e}"))?;
        Ok(LazyRemote {
            chunks,
            dir,
            trees: Mutex::new(HashMap::new()),
            partials: Mutex::new(HashMap::new()),
            running: Arc::new(AtomicUsize::new(0)),
            space,
            recent: Arc::default(),
            mode,
        })
    }

    /// Whether a target of `length` bytes (with a signed chunk root) is fetched lazily; others
    /// are downloaded whole at open (`--verify lazy-above=SIZE`).
    pub fn fetches_lazily(&self, length: u64) -> bool {
        !self.mode.whole_at_open(length)
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
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
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
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_CLOEXEC,
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
    /// Held with `flock(LOCK_SH)` while open (never evicted meanwhile) and touched (the
    /// eviction's LRU order).
    pub fn data_file(&self, key: &str, length: u64) -> io::Result<File> {
        use std::os::unix::fs::MetadataExt;
        let name = format!("{key}.data");
        for _ in 0..3 {
            let f = openat(
                &self.dir,
                &name,
                libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600,
            )?;
            let meta = f.metadata()?;
            if meta.nlink() == 0 {
                continue; // removed by an evictor since the open: open it again
            }
            if !meta.is_file() || meta.nlink() != 1 {
                return Err(io::Error::other(
                    "the partial file is not a regular file of one link",
                ));
            }
            // An evictor holds LOCK_EX for a moment; someone holding it longer must not stall
            // the reads of every file: after ~100 ms this read goes without the partial file.
            let mut locked = flock(&f, libc::LOCK_SH | libc::LOCK_NB);
            for _ in 0..20 {
                if locked.is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
                locked = flock(&f, libc::LOCK_SH | libc::LOCK_NB);
            }
            locked?;
            // An evictor may have removed it between the open and the lock: open it again.
            let st = fstatat_nofollow(&self.dir, &name);
            if !st.is_ok_and(|st| st.st_ino == meta.ino() && st.st_dev == meta.dev()) {
                continue;
            }
            if meta.len() != length {
                f.set_len(length)?;
            }
            let _ = f.set_modified(std::time::SystemTime::now());
            // The record of what it holds is about this file from now on (once per open, not
            // per read).
            self.partial(key, chunk_count(length)).kept.bind(&f)?;
            return Ok(f);
        }
        Err(io::Error::other(
            "the partial file was removed three times while being opened",
        ))
    }

    /// The partial file `key` was closed by the mount (its last handle was released).
    pub fn closed(&self, _key: &str) {
        self.space.closed();
    }

    /// The fetch state and kept-chunks record of the partial file `key`.
    fn partial(&self, key: &str, chunks: u64) -> Arc<Partial> {
        let mut all = lock(&self.partials);
        if let Some(p) = all.get(key) {
            return p.clone();
        }
        if all.len() > 1024 {
            // Records of files nobody reads now: forgetting one costs a check of its chunks.
            all.retain(|_, p| Arc::strong_count(p) > 1);
        }
        all.entry(key.to_owned())
            .or_insert_with(|| {
                Arc::new(Partial {
                    kept: KeptChunks::new(chunks),
                    state: Mutex::new(FetchState::default()),
                    changed: Condvar::new(),
                })
            })
            .clone()
    }

    /// Read `size` bytes at `offset` of the target `path` (`info`, tree `tree`; partial file
    /// `key`, open as `data`), fetching the chunks the partial file lacks. Every chunk served was
    /// checked against the tree: before it was written, or where it lay. When the partial file
    /// cannot be written, `cache_fault` is told and the read is served from a fetch into memory.
    #[allow(clippy::too_many_arguments)]
    pub fn read(
        &self,
        targets: &Arc<Mirrors>,
        key: &str,
        path: &str,
        info: &TargetInfo,
        tree: &Arc<TrustedTree>,
        data: &File,
        offset: u64,
        size: u32,
        cache_fault: &mut dyn FnMut(io::Error),
    ) -> Result<VerifiedBytes, LazyError> {
        let length = tree.length();
        let Some(ChunkSpan { first, last, .. }) = verified::chunk_span(length, offset, size) else {
            return verified::check_buffer(tree, 0, Vec::new(), offset, size)
                .map_err(|e| LazyError::Refused(e.to_string()));
        };
        let n = chunk_count(length);
        let p = self.partial(key, n);
        // After a restart (or a record forgotten), what the partial file already holds is
        // checked once where it lies, not fetched again.
        let usable = match (first..=last).all(|i| p.kept.has(i)) {
            true => Ok(()),
            false => p.kept.check_lying(tree, data, first, last),
        };
        if let Err(e) = usable {
            // A partial file that cannot be read: a fault of the cache, served from memory.
            cache_fault(e);
            return self.read_direct(targets, path, info, tree, offset, size);
        }
        let arrived = Instant::now();
        let mut retried = false;
        // The first missing chunk of this read's last fetch, and how many fetches it started
        // there: a fetch that ends "done" without the chunk it was for must not make the read
        // fetch it again and again (fetches that bring it on are progress, never counted).
        let mut stuck = (u64::MAX, 0u32);
        loop {
            let mut st = lock(&p.state);
            let mut ready = None;
            while let Some(m0) = (first..=last).find(|&i| !p.kept.has(i)) {
                if st.active.iter().any(|r| r.contains(&m0)) {
                    // A running fetch brings it: served from memory as soon as it is checked,
                    // before it is written.
                    ready = self.recent.serve(&p, offset, size);
                    if ready.is_some() {
                        break;
                    }
                    st = p.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                    continue;
                }
                let failed = st
                    .failed
                    .iter()
                    .rev()
                    .find(|f| f.at > arrived && f.chunks.contains(&m0))
                    .cloned();
                if let Some(f) = failed {
                    // The fetch this read waited for failed: its answer, at once.
                    drop(st);
                    return match f.kind {
                        FailKind::Refused => Err(LazyError::Refused(f.why)),
                        FailKind::Unavailable => Err(LazyError::Unavailable(f.why)),
                        FailKind::Cache => {
                            cache_fault(io::Error::other(f.why));
                            self.read_direct(targets, path, info, tree, offset, size)
                        }
                    };
                }
                let m1 = (first..=last).rev().find(|&i| !p.kept.has(i)).unwrap_or(m0);
                stuck = match stuck {
                    (at, n) if at == m0 => (at, n + 1),
                    _ => (m0, 1),
                };
                if stuck.1 > 4 {
                    return Err(LazyError::Unavailable(format!(
                        "chunk {m0} of {path:?} is still missing after {} fetches (internal error)",
                        stuck.1 - 1
                    )));
                }
                let job = plan(&mut st, &p, data, m0, m1, n)?;
                drop(st);
                self.start(job, targets, path, info, tree, true);
                st = lock(&p.state);
            }
            // A sequential reader near the end of what its stream fetched: the next window is
            // fetched while this one is read.
            let next = st.streams.iter().copied().find(|s| {
                s.continued > 0 && last < s.end && last + s.window / 2 >= s.end && s.end < n
            });
            let prefetch = next
                .map(|s| s.end)
                .filter(|&end| !p.kept.has(end) && !st.active.iter().any(|r| r.contains(&end)));
            let job = prefetch.and_then(|end| plan(&mut st, &p, data, end, end, n).ok());
            drop(st);
            if let Some(job) = job {
                self.start(job, targets, path, info, tree, false);
            }
            // Just fetched: served from the checked batch in memory.
            if let Some(bytes) = ready.or_else(|| self.recent.serve(&p, offset, size)) {
                return Ok(bytes);
            }
            // Otherwise served only after every chunk is checked again where it lies: the record
            // above is a hint of what need not be fetched, not a proof.
            match verified::read_chunks(tree, data, offset, size) {
                Ok(bytes) => return Ok(bytes),
                Err(ChunkError::Io(e)) => {
                    cache_fault(e);
                    return self.read_direct(targets, path, info, tree, offset, size);
                }
                Err(ChunkError::Differs { offset, .. }) if !retried => {
                    // Changed or cut under the daemon since it was written: fetch it again.
                    cache_fault(io::Error::other(format!(
                        "the partial file changed under the daemon at byte {offset}; fetched again"
                    )));
                    p.kept.forget(first..last + 1);
                    retried = true;
                }
                Err(ChunkError::Differs { .. }) => {
                    return self.read_direct(targets, path, info, tree, offset, size)
                }
            }
        }
    }

    /// Run `job` on a thread of its own, so the read that asked returns as soon as its chunks
    /// are in. When [`MAX_FETCHERS`] run already: here (`wait`, a read needs it) or not at all
    /// (a prefetch).
    fn start(
        &self,
        mut job: Job,
        targets: &Arc<Mirrors>,
        path: &str,
        info: &TargetInfo,
        tree: &Arc<TrustedTree>,
        wait: bool,
    ) {
        let busy = self.running.fetch_add(1, Ordering::AcqRel) >= MAX_FETCHERS;
        let run = Run {
            targets: targets.clone(),
            path: path.to_owned(),
            info: info.clone(),
            tree: tree.clone(),
            running: self.running.clone(),
            space: self.space.clone(),
            recent: self.recent.clone(),
        };
        if busy && !wait {
            return; // `job` dropped unstarted: the mark is cleared, nothing failed
        }
        job.started = true;
        if busy {
            return run.fetch(job);
        }
        // A thread that cannot start drops the job: it fails as unavailable, its readers get EIO.
        let spawned = std::thread::Builder::new()
            .name("trustfs-fetch".into())
            .spawn(move || run.fetch(job));
        if let Err(e) = spawned {
            crate::log_event!("ERROR lazy fetch: cannot start a fetch thread: {e}");
        }
    }

    /// Bytes `offset .. offset + size` fetched into memory and checked, nothing kept (the
    /// partial file cannot be used, or a kept chunk was damaged).
    pub fn read_direct(
        &self,
        targets: &Mirrors,
        path: &str,
        info: &TargetInfo,
        tree: &TrustedTree,
        offset: u64,
        size: u32,
    ) -> Result<VerifiedBytes, LazyError> {
        let span = verified::chunk_span(tree.length(), offset, size);
        let Some(ChunkSpan {
            first, start, stop, ..
        }) = span
        else {
            // Nothing to fetch (as in `read`).
            return verified::check_buffer(tree, 0, Vec::new(), offset, size)
                .map_err(|e| LazyError::Refused(e.to_string()));
        };
        let buf = self.fetch_range(targets, path, info, tree, start, stop - start)?;
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
        let all = [refused.as_slice(), unavailable.as_slice()]
            .concat()
            .join("; ");
        let what = format!("bytes {start}..{} of {path:?}: {all}", start + len);
        if refused.is_empty() {
            Err(LazyError::Unavailable(what))
        } else {
            Err(LazyError::Refused(what))
        }
    }
}

impl From<FetchError> for LazyError {
    fn from(e: FetchError) -> LazyError {
        LazyError::Unavailable(e.to_string())
    }
}

#[cfg(test)]
mod tests;

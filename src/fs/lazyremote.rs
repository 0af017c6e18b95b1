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

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Instant;

use super::chunked::VerifyMode;
use super::lock;
use super::store::{
    flock, fstatat_nofollow, list_names, open_owned_dir, openat, renameat, unlinkat,
};
use super::verified::{self, CheckedChunks, ChunkError, TrustedTree, VerifiedBytes};
use crate::chunks::{chunk_count, CHUNK_SIZE};
use crate::index::TargetInfo;
use crate::source::remote::Mirrors;
use crate::trust::{FetchError, HttpOptions};

/// Bytes fetched at least per request: reads are widened to this aligned window.
pub const WINDOW: u64 = 4 << 20;

/// The largest window: a file read from start to end doubles its window up to this.
const MAX_WINDOW: u64 = 32 << 20;

/// Fetch threads at most (all files); beyond, a read fetches on its own thread.
const MAX_FETCHERS: usize = 16;

/// Memory for trees kept (1 GiB of content is 512 KiB of tree); all are dropped beyond.
const TREES_BYTES: usize = 64 << 20;

/// Chunks a fetch checks, writes and hands to readers at a time (1 MiB; batches end on multiples
/// of it): a wake-up per chunk cost more than the chunk.
const BATCH: u64 = 16;

/// Memory for the batches fetches brought last (all files together): reads of them are served
/// from it, not read back from the partial file and hashed again.
const RECENT_BYTES: usize = 64 << 20;

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

/// The partial files of the cache, bounded by `--cache-max-size` (their allocated bytes, counted
/// on their own: whole objects have the same bound apart). Least recently used (mtime: touched
/// at every open, moved by every write) are removed first; a file a daemon is reading holds
/// `flock(LOCK_SH)` on it and is not removed (the evictor needs `LOCK_EX | LOCK_NB`). Scans run
/// on a thread of their own, at most four a second, never on a FUSE worker or a fetch.
struct PartialDir {
    dir: File,
    max_bytes: u64,
    usage: Mutex<Usage>,
    wake: Condvar,
}

#[derive(Default)]
struct Usage {
    /// Allocated bytes at the last scan plus those written since.
    total: u64,
    /// The total the last scan ended at when it could not get under the bound (everything left
    /// was open): the next waits for a close or an eighth of the bound more.
    stuck: Option<u64>,
    /// A scan is asked for.
    wanted: bool,
}

impl PartialDir {
    /// `bytes` were written.
    fn wrote(&self, bytes: u64) {
        let mut u = lock(&self.usage);
        u.total = u.total.saturating_add(bytes);
        let grown = u
            .stuck
            .is_none_or(|stuck| u.total.saturating_sub(stuck) >= self.max_bytes / 8);
        if u.total > self.max_bytes && grown {
            u.wanted = true;
            self.wake.notify_one();
        }
    }

    /// A fetch ended (the lock its descriptor shared may be gone now): as a close.
    fn fetched(&self) {
        self.closed();
    }

    /// A partial file was closed (its lock given back).
    fn closed(&self) {
        let mut u = lock(&self.usage);
        u.stuck = None;
        if u.total > self.max_bytes {
            u.wanted = true;
            self.wake.notify_one();
        }
    }

    /// The evictor thread: a scan when asked, at most every 250 ms.
    fn run(&self) {
        loop {
            let mut u = lock(&self.usage);
            while !u.wanted {
                u = self.wake.wait(u).unwrap_or_else(|e| e.into_inner());
            }
            u.wanted = false;
            drop(u);
            self.evict();
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }

    fn evict(&self) {
        use std::os::unix::fs::MetadataExt;
        let before = lock(&self.usage).total;
        let Ok(names) = list_names(&self.dir) else {
            return;
        };
        let mut files: Vec<((i64, i64), u64, String)> = names
            .into_iter()
            .filter(|n| n.ends_with(".data"))
            .filter_map(|n| {
                let st = fstatat_nofollow(&self.dir, &n).ok()?;
                let size = u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512);
                Some(((st.st_mtime, st.st_mtime_nsec), size, n))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, size, name) in files {
            if total <= self.max_bytes {
                break;
            }
            let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
            let Ok(file) = openat(&self.dir, &name, flags, 0) else {
                continue;
            };
            // Read by some daemon (or not the file under that name any more): left alone.
            if flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_err() {
                continue;
            }
            let same = match (file.metadata(), fstatat_nofollow(&self.dir, &name)) {
                (Ok(m), Ok(st)) => m.ino() == st.st_ino && m.dev() == st.st_dev,
                _ => false,
            };
            if same && unlinkat(&self.dir, &name).is_ok() {
                if let Some(stem) = name.strip_suffix(".data") {
                    let _ = unlinkat(&self.dir, &format!("{stem}.tree"));
                }
                total = total.saturating_sub(size);
                crate::log_event!("cache: evicted the partial file {name} ({size} bytes)");
            }
        }
        let mut u = lock(&self.usage);
        // What was written while the scan ran still counts.
        u.total = total.saturating_add(u.total.saturating_sub(before));
        u.stuck = (u.total > self.max_bytes).then_some(u.total);
    }
}

/// The batches fetches brought last, all files together, until each has been read once (a file
/// read in order reads each byte once; the kernel's page cache keeps what it read) or at most
/// [`RECENT_BYTES`] are held (oldest dropped first). Each is a [`CheckedChunks`] of one file's
/// content (its chunks were checked against the tree as they arrived), so serving from it needs
/// neither the partial file nor a second hash; the reader right behind a fetch is served as soon
/// as a batch is checked, before it is written.
#[derive(Default)]
struct Recent {
    kept: Mutex<Batches>,
}

#[derive(Default)]
struct Batches {
    /// The batches, oldest first, with the bytes served from each.
    batches: VecDeque<(Arc<Partial>, Arc<CheckedChunks>, usize)>,
    bytes: usize,
    /// Buffers of dropped batches, for the next ones (a fresh buffer costs a page fault a page).
    spare: Vec<Vec<u8>>,
}

impl Batches {
    fn spare(&mut self, old: Arc<CheckedChunks>) {
        if let (Ok(old), true) = (Arc::try_unwrap(old), self.spare.len() < 4) {
            self.spare.push(old.into_buffer());
        }
    }
}

impl Recent {
    fn keep(&self, partial: &Arc<Partial>, batch: Arc<CheckedChunks>) {
        let mut kept = lock(&self.kept);
        kept.bytes += batch.memory();
        kept.batches.push_back((partial.clone(), batch, 0));
        while kept.bytes > RECENT_BYTES {
            let Some((_, old, _)) = kept.batches.pop_front() else {
                break;
            };
            kept.bytes -= old.memory();
            kept.spare(old);
        }
    }

    /// A buffer for a batch.
    fn buffer(&self) -> Vec<u8> {
        lock(&self.kept).spare.pop().unwrap_or_default()
    }

    /// Bytes `offset .. offset + size` of `partial`'s file, if one batch holds them all. The
    /// copy is made outside the lock all files share.
    fn serve(&self, partial: &Arc<Partial>, offset: u64, size: u32) -> Option<VerifiedBytes> {
        let cs = u64::from(CHUNK_SIZE);
        let batch = lock(&self.kept)
            .batches
            .iter()
            .rev()
            .find(|(p, b, _)| Arc::ptr_eq(p, partial) && b.chunks().contains(&(offset / cs)))
            .map(|(_, b, _)| b.clone())?;
        let bytes = batch.serve(offset, size)?;
        let mut kept = lock(&self.kept);
        if let Some(i) = kept
            .batches
            .iter()
            .position(|(_, b, _)| Arc::ptr_eq(b, &batch))
        {
            let entry = &mut kept.batches[i];
            entry.2 += bytes.as_slice().len();
            if entry.2 >= entry.1.bytes().len() {
                // Read once: a reader in order does not come back (the page cache has it).
                if let Some((_, read, _)) = kept.batches.remove(i) {
                    kept.bytes -= read.memory();
                }
                kept.spare(batch);
            }
        }
        Some(bytes)
    }
}

/// One partial file: the chunks it holds ([`KeptChunks`]) and its one running fetch.
struct Partial {
    kept: KeptChunks,
    state: Mutex<FetchState>,
    /// Signalled at every chunk a fetch keeps and when it ends.
    changed: Condvar,
}

#[derive(Default)]
struct FetchState {
    /// Chunk ranges being fetched. A read whose chunks lie in one waits for it (readahead sends
    /// several READs at once; they would fetch the same window twice); others fetch their own.
    active: Vec<Range<u64>>,
    /// Failed fetches, newest last (a few): a reader that waited for one gets its answer instead
    /// of repeating the doomed requests one by one; other readers are not told.
    failed: Vec<Failed>,
    /// Readers' streams, most recent last: where each one's last fetch stopped, its window (in
    /// chunks) and how many fetches continued it. A fetch that starts at such an end continues
    /// it; once one has, the next window is fetched while this one is read, and from the
    /// second on the window doubles. A random read so costs one window, never a prefetch.
    streams: Vec<Stream>,
}

#[derive(Clone, Copy)]
struct Stream {
    end: u64,
    window: u64,
    continued: u32,
}

/// Streams remembered per file.
const STREAMS: usize = 4;

/// Failed fetches remembered per file.
const FAILURES: usize = 8;

/// A fetch that failed: when it ended and why.
#[derive(Clone)]
struct Failed {
    at: Instant,
    /// The chunks it did not bring.
    chunks: Range<u64>,
    kind: FailKind,
    why: String,
}

#[derive(Clone, Copy)]
enum FailKind {
    /// Every mirror that delivered sent other bytes.
    Refused,
    /// No mirror delivered.
    Unavailable,
    /// The partial file could not be written.
    Cache,
}

/// A fetch of chunks `from .. until` of one partial file, marked running in its state. However
/// it ends (done, failed, a thread that could not start, a panic), [`Drop`] clears the mark and
/// wakes the readers waiting for it.
struct Job {
    partial: Arc<Partial>,
    data: File,
    from: u64,
    until: u64,
    started: bool,
    /// How it ended: the chunk it reached and why it stopped short.
    outcome: Option<(u64, Option<Failed>)>,
}

impl Drop for Job {
    fn drop(&mut self) {
        let (reached, failed) = self.outcome.take().unwrap_or_else(|| {
            let failed = self.started.then(|| Failed {
                at: Instant::now(),
                chunks: self.from..self.until,
                kind: FailKind::Unavailable,
                why: "the fetch stopped before it ended (internal error)".into(),
            });
            (self.from, failed)
        });
        let mut st = lock(&self.partial.state);
        if let Some(i) = st.active.iter().position(|r| *r == (self.from..self.until)) {
            st.active.swap_remove(i);
        }
        if let Some(s) = st.streams.iter_mut().find(|s| s.end == self.from) {
            s.end = reached;
        }
        if let Some(f) = failed {
            if st.failed.len() >= FAILURES {
                st.failed.remove(0);
            }
            st.failed.push(f);
        }
        self.partial.changed.notify_all();
    }
}

/// What a fetch thread needs of the read that started it.
struct Run {
    targets: Arc<Mirrors>,
    path: String,
    info: TargetInfo,
    tree: Arc<TrustedTree>,
    running: Arc<AtomicUsize>,
    space: Arc<PartialDir>,
    recent: Arc<Recent>,
}

impl Drop for Run {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Run {
    /// Check the batches the receiver sends and keep the chunks that match: in memory for the
    /// reads waiting (served at once), then written into the partial file and noted. Batches
    /// after a chunk that did not match are dropped until the receiver drains (its mirror was
    /// wrong; it asks the next one from that chunk). Ends when the receiver is done, or when a
    /// write fails (the error is the answer). Returns where the chunks kept end: the fetch
    /// reached that far.
    fn check(
        &self,
        job: &Job,
        batches: mpsc::Receiver<ToCheck>,
        bad: &AtomicU64,
    ) -> (u64, io::Result<()>) {
        let mut reached = job.from;
        let mut found = None;
        for msg in batches {
            match msg {
                ToCheck::Drain(reply) => {
                    // Cleared before the answer: the receiver must never see this mirror's flag
                    // while it reads the next one.
                    bad.store(u64::MAX, Ordering::Release);
                    let _ = reply.send(found.take());
                }
                ToCheck::Batch(_) if found.is_some() => {}
                ToCheck::Batch(mut batch) => {
                    if let Err(index) = batch.check(&self.tree) {
                        found = Some(index);
                        bad.store(index, Ordering::Release);
                    }
                    let chunks = batch.chunks();
                    if let Err(e) = self.keep(job, batch) {
                        return (reached, Err(e));
                    }
                    if !chunks.is_empty() {
                        reached = reached.max(chunks.end);
                    }
                }
            }
        }
        (reached, Ok(()))
    }

    fn keep(&self, job: &Job, batch: CheckedChunks) -> io::Result<()> {
        let chunks = batch.chunks();
        if chunks.is_empty() {
            return Ok(());
        }
        let batch = Arc::new(batch);
        self.recent.keep(&job.partial, batch.clone());
        {
            let _st = lock(&job.partial.state);
            job.partial.changed.notify_all();
        }
        job.data
            .write_all_at(batch.bytes(), chunks.start * u64::from(CHUNK_SIZE))?;
        for i in chunks {
            job.partial.kept.set(i);
        }
        let _st = lock(&job.partial.state);
        job.partial.changed.notify_all();
        Ok(())
    }

    /// Fetch the job's chunks: received here, checked and kept on a second thread while the
    /// next ones arrive; readers are served the checked batches from memory at once.
    fn fetch(self, mut job: Job) {
        let cs = u64::from(CHUNK_SIZE);
        let stop = (job.until * cs).min(self.tree.length());
        let (to_check, batches) = mpsc::sync_channel(4);
        let bad = AtomicU64::new(u64::MAX);
        let (at, refused, unavailable, cache) = std::thread::scope(|scope| {
            let checker = std::thread::Builder::new()
                .name("trustfs-check".into())
                .spawn_scoped(scope, || self.check(&job, batches, &bad));
            let checker = match checker {
                Ok(c) => c,
                Err(e) => {
                    let e = io::Error::other(format!("cannot start a checker thread: {e}"));
                    return (job.from, Vec::new(), Vec::new(), Some(e));
                }
            };
            let (at, refused, unavailable) = self.receive(&job, stop, &to_check, &bad);
            drop(to_check);
            // Where the fetch stopped: what was received but not kept does not count.
            match checker.join() {
                Ok((reached, kept)) => (reached.min(at), refused, unavailable, kept.err()),
                Err(_) => {
                    let e = io::Error::other("the checker thread failed (internal error)");
                    (job.from, refused, unavailable, Some(e))
                }
            }
        });
        let failed = if at >= job.until {
            None
        } else if let Some(e) = cache {
            Some(Failed {
                at: Instant::now(),
                chunks: at..job.until,
                kind: FailKind::Cache,
                why: e.to_string(),
            })
        } else {
            let all = [refused.as_slice(), unavailable.as_slice()]
                .concat()
                .join("; ");
            Some(Failed {
                at: Instant::now(),
                chunks: at..job.until,
                kind: match refused.is_empty() {
                    true => FailKind::Unavailable,
                    false => FailKind::Refused,
                },
                why: format!("bytes {}..{stop} of {:?}: {all}", at * cs, self.path),
            })
        };
        job.outcome = Some((at, failed));
        let written = (at - job.from) * cs;
        drop(job);
        self.space.wrote(written);
        self.space.fetched();
    }

    /// Receive the job's chunks from the first mirror that delivers them and send them to the
    /// checker a batch at a time. A mirror that fails, or sent a chunk the checker refused, hands
    /// over to the next one at that chunk. Returns where it stopped and what the mirrors did
    /// wrong (sent other bytes, could not deliver).
    fn receive(
        &self,
        job: &Job,
        stop: u64,
        to_check: &mpsc::SyncSender<ToCheck>,
        bad: &AtomicU64,
    ) -> (u64, Vec<String>, Vec<String>) {
        let cs = u64::from(CHUNK_SIZE);
        let mut at = job.from;
        let (mut refused, mut unavailable) = (Vec::new(), Vec::new());
        let batch_at = |at: u64| {
            let until = (at / BATCH + 1).saturating_mul(BATCH).min(job.until);
            CheckedChunks::new(&self.tree, at, until - at, self.recent.buffer())
        };
        // What the checker refused since the last drain, once it has seen all that was sent;
        // Err when it stopped (it says why).
        let drain = || {
            let (reply, answer) = mpsc::sync_channel(1);
            to_check.send(ToCheck::Drain(reply)).map_err(drop)?;
            answer.recv().map_err(drop)
        };
        let mut i = 0;
        while i < self.targets.len() && at < job.until {
            let start = at * cs;
            let mut body =
                match self
                    .targets
                    .open_range(i, &self.path, &self.info, start, stop - start)
                {
                    Ok(b) => b,
                    Err(e) => {
                        unavailable.push(e);
                        i += 1;
                        continue;
                    }
                };
            let mut batch = batch_at(at);
            let cut = loop {
                let slot = batch.slot();
                let len = slot.len() as u64;
                if let Err(e) = body.read_exact(slot) {
                    break Some(format!(
                        "mirror {}: the range ended before byte {}: {e}",
                        i + 1,
                        at * cs + len
                    ));
                }
                batch.received();
                at += 1;
                if at >= job.until {
                    break None;
                }
                if batch.slot().is_empty() {
                    let full = std::mem::replace(&mut batch, batch_at(at));
                    if to_check.send(ToCheck::Batch(full)).is_err() {
                        return (at, refused, unavailable);
                    }
                    if bad.load(Ordering::Acquire) != u64::MAX {
                        break None;
                    }
                }
            };
            if to_check.send(ToCheck::Batch(batch)).is_err() {
                return (at, refused, unavailable);
            }
            match drain() {
                Err(()) => return (at, refused, unavailable),
                Ok(Some(index)) => {
                    refused.push(format!(
                        "mirror {}: chunk {index} (from byte {}) differs from the signed chunk root",
                        i + 1,
                        index * cs
                    ));
                    at = index;
                    i += 1;
                }
                Ok(None) => {
                    if let Some(why) = cut {
                        unavailable.push(why);
                        i += 1;
                    } else if at < job.until {
                        // Cannot happen (the flag is set only with a refused chunk); never ask
                        // the same mirror again and again.
                        unavailable
                            .push(format!("mirror {}: stopped early (internal error)", i + 1));
                        i += 1;
                    }
                }
            }
        }
        (at, refused, unavailable)
    }
}

/// What the receiver of a fetch sends its checker.
enum ToCheck {
    Batch(CheckedChunks),
    /// Everything sent before is done: answer the chunk refused since the last drain, if any.
    Drain(mpsc::SyncSender<Option<u64>>),
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
        if offset >= length || size == 0 {
            return verified::check_buffer(tree, 0, Vec::new(), offset, size)
                .map_err(|e| LazyError::Refused(e.to_string()));
        }
        let cs = u64::from(CHUNK_SIZE);
        let n = chunk_count(length);
        let end = offset.saturating_add(u64::from(size)).min(length);
        let (first, last) = (offset / cs, (end - 1) / cs);
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
        let cs = u64::from(CHUNK_SIZE);
        let length = tree.length();
        let end = offset.saturating_add(u64::from(size)).min(length);
        let (first, last) = (offset / cs, (end - 1) / cs);
        let (start, stop) = (first * cs, ((last + 1) * cs).min(length));
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

/// The fetch of chunks `m0 ..` (at least to `m1`), marked running in `st`: a window to the
/// next [`WINDOW`] boundary; a fetch that continues a sequential reader's stream doubles its
/// window (to [`MAX_WINDOW`]). Never over chunks the partial file holds already or another fetch
/// brings.
fn plan(
    st: &mut FetchState,
    p: &Arc<Partial>,
    data: &File,
    m0: u64,
    m1: u64,
    n: u64,
) -> Result<Job, LazyError> {
    let cs = u64::from(CHUNK_SIZE);
    let per = WINDOW / cs;
    let window = match st.streams.iter().position(|s| s.end == m0) {
        Some(i) => {
            let mut s = st.streams.remove(i);
            if s.continued > 0 {
                s.window = (s.window * 2).min(MAX_WINDOW / cs);
            }
            s.continued = s.continued.saturating_add(1);
            st.streams.push(s);
            s.window
        }
        None => {
            if st.streams.len() >= STREAMS {
                st.streams.remove(0);
            }
            st.streams.push(Stream {
                end: m0,
                window: per,
                continued: 0,
            });
            per
        }
    };
    let mut until = (m0 - m0 % per + window).min(n);
    // Never into a range another fetch brings (the read waits for that part).
    let m1 = match st.active.iter().map(|r| r.start).filter(|&a| a > m0).min() {
        Some(next) => {
            until = until.min(next);
            m1.min(next - 1)
        }
        None => m1,
    };
    // Readahead sends READs out of order: a window fetched from its middle must not be fetched
    // again for its start (holes of the partial file are what never came).
    if let Some(at) = next_data(data, (m1 + 1) * cs) {
        until = until.min(at / cs);
    }
    let until = until.max(m1 + 1);
    let data = data.try_clone().map_err(LazyError::Cache)?;
    st.active.push(m0..until);
    Ok(Job {
        partial: p.clone(),
        data,
        from: m0,
        until,
        started: false,
        outcome: None,
    })
}

/// Which chunks of one partial file were checked and written (or found there and checked): a
/// hint of what need not be fetched, never a proof. A read still checks every chunk it serves
/// against the tree ([`verified::read_chunks`]), so a partial file removed, cut short or changed
/// under the daemon costs a fetch again, never a wrong byte. Bound to the file's device and inode:
/// another file under the same name starts empty.
struct KeptChunks {
    file: Mutex<(u64, u64)>,
    bits: Vec<AtomicU64>,
}

impl KeptChunks {
    fn new(chunks: u64) -> KeptChunks {
        let words = usize::try_from(chunks.div_ceil(64)).unwrap_or(0);
        KeptChunks {
            file: Mutex::new((0, 0)),
            bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn word(&self, index: u64) -> Option<(&AtomicU64, u64)> {
        let i = usize::try_from(index).ok()?;
        Some((self.bits.get(i / 64)?, 1 << (i % 64)))
    }

    fn has(&self, index: u64) -> bool {
        self.word(index)
            .is_some_and(|(w, bit)| w.load(Ordering::Acquire) & bit != 0)
    }

    fn set(&self, index: u64) {
        if let Some((w, bit)) = self.word(index) {
            w.fetch_or(bit, Ordering::Release);
        }
    }

    fn forget(&self, chunks: Range<u64>) {
        for i in chunks {
            if let Some((w, bit)) = self.word(i) {
                w.fetch_and(!bit, Ordering::Release);
            }
        }
    }

    /// About `file` from now on; if it was about another file, every bit is forgotten.
    fn bind(&self, file: &File) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata()?;
        let id = (m.dev(), m.ino());
        let mut bound = lock(&self.file);
        if *bound != id {
            self.forget(0..self.bits.len() as u64 * 64);
            *bound = id;
        }
        Ok(())
    }

    /// Check chunks `first ..= last` where they lie in `file` and note those that match. Holes
    /// (never written) are not read: the kernel zero-fills every page of a hole read, which
    /// cost more than the fetch.
    fn check_lying(
        &self,
        tree: &TrustedTree,
        file: &File,
        first: u64,
        last: u64,
    ) -> io::Result<()> {
        let cs = u64::from(CHUNK_SIZE);
        let length = tree.length();
        let mut buf = vec![0u8; CHUNK_SIZE as usize];
        for index in first..=last {
            if self.has(index) {
                continue;
            }
            let at = index * cs;
            if next_data(file, at).is_none_or(|d| d >= at + cs) {
                continue;
            }
            let len = cs.min(length.saturating_sub(at)) as usize;
            let got = verified::read_full_at(file, &mut buf[..len], at)?;
            if got == len && tree.chunk_matches(index, &buf[..len]) {
                self.set(index);
            }
        }
        Ok(())
    }
}

/// The offset of the first written byte of `file` at or after `from` (`SEEK_DATA`); None when
/// there is none (only holes up to the end). Only a hint for what to read and fetch (every chunk
/// is checked anyway): when the call fails, or on a filesystem without hole support (everything
/// is data there), the answer is `from`, which costs reads and narrower fetches, never bytes.
fn next_data(file: &File, from: u64) -> Option<u64> {
    let Ok(at) = libc::off_t::try_from(from) else {
        return Some(from);
    };
    // (It moves only this descriptor's offset, which nothing here uses: all I/O is positioned.)
    match crate::sys::seek_data(file, at) {
        Ok(at) => Some(at),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => None,
        Err(_) => Some(from),
    }
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

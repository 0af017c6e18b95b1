//! Chunk-verified reads of a local mount (the default; `--private-copy` keeps the old copy mode):
//! where a file's trusted chunk tree comes from, and what an open checks.
//!
//! A local mount makes no copy. Each read takes the chunks it touches from the backing file into
//! a buffer the daemon owns and checks each against the file's [`TrustedTree`] before replying
//! (`verified.rs`); a chunk whose backing bytes changed gets `EIO`, never the new bytes. The tree
//! comes, in this order, from:
//! 1. memory (trees of files opened before, bounded by [`TREE_CACHE_BYTES`]);
//! 2. the outboard `repo add` published next to the metadata (`REPO/chunks/<sha256>`), checked
//!    against the target's signed chunk root;
//! 3. the daemon's saved tree (`STATE/trees/`, written after a pass whose hashes (and root)
//!    matched; a target with a root gets one only when its outboard is missing or unusable, and
//!    it is checked against the root again when loaded);
//! 4. one pass over the file: its chunk tree checked against the signed root, or — for a target
//!    without one (python-tuf made) — computed together with the signed hashes, which must match.
//!
//! What an open checks ([`VerifyMode`]): `open` (the default) checks the whole file at its first
//! open (per backing version) against the tree, chunks hashed on every core, so an altered file
//! is refused with `EACCES` then; `lazy` checks only the size at open, and an altered chunk
//! gets `EIO` when it is read.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::lock;
use super::refusal::{Denial, Fault, Refusal};
use super::store::{object_name, open_owned_dir, openat, renameat, unlinkat};
use super::verified::{self, ChunkError, PassError, TrustedTree};
use crate::index::TargetInfo;
use crate::log_event;
use crate::source::BackingFile;
use crate::telemetry::{Counters, DenyReason};

/// Memory for trees of files opened before (32 bytes per 64 KiB chunk: 64 MiB covers 128 GiB of
/// content); least recently used dropped beyond.
pub const TREE_CACHE_BYTES: usize = 64 << 20;

/// The first line of a saved tree.
const SAVED_MAGIC: &[u8] = b"trustfs-tree/1\n";

/// What an open checks before it succeeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyMode {
    /// The whole file, at its first open (per backing version): altered content is `EACCES` then.
    Open,
    /// The size only: opens are O(1), an altered chunk is `EIO` when read.
    Lazy,
    /// `Lazy` for files of at least this many bytes, `Open` for smaller ones.
    LazyAbove(u64),
}

impl VerifyMode {
    /// Whether an open of a file of `length` bytes checks the whole file.
    pub fn whole_at_open(self, length: u64) -> bool {
        match self {
            VerifyMode::Open => true,
            VerifyMode::Lazy => false,
            VerifyMode::LazyAbove(size) => length < size,
        }
    }
}

impl std::fmt::Display for VerifyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyMode::Open => f.write_str("whole file checked at its first open (--verify open)"),
            VerifyMode::Lazy => f.write_str("only the size checked at open (--verify lazy)"),
            VerifyMode::LazyAbove(n) => write!(
                f,
                "files of {n} bytes and more: only the size checked at open, smaller ones whole (--verify lazy-above)"
            ),
        }
    }
}

/// The key a trusted tree (and a verification record) is known by: the object name, which binds
/// the signed length and hashes, and the signed chunk root if there is one. A tree is only ever
/// used for exactly the signed content it was checked against.
pub(super) fn tree_key(info: &TargetInfo) -> String {
    match info.chunk_root {
        Some(root) => format!("{}-r-{}", object_name(info), hex::encode(root)),
        None => object_name(info),
    }
}

/// How the tree was had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TreeFrom {
    Memory,
    Outboard,
    Saved,
    /// One pass over the content, which was checked whole on the way.
    Pass,
}

pub(super) struct ChunkReads {
    pub(super) mode: VerifyMode,
    /// `REPO/chunks` of a local repository, if the metadata dir is `REPO/metadata`.
    outboards: Option<PathBuf>,
    /// `STATE/trees` (None: it could not be made; trees are then kept in memory only).
    saved: Option<File>,
    trees: Mutex<TreeCache>,
    threads: usize,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct TreeCache {
    map: HashMap<String, (Arc<TrustedTree>, u64)>,
    order: BTreeMap<u64, String>,
    bytes: usize,
    tick: u64,
}

impl ChunkReads {
    pub(super) fn new(
        mode: VerifyMode,
        outboards: Option<PathBuf>,
        state_dir: &Path,
        counters: Arc<Counters>,
    ) -> ChunkReads {
        let dir = state_dir.join("trees");
        let saved = match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => open_owned_dir(&dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => open_owned_dir(&dir),
            Err(e) => Err(e),
        };
        let saved = match saved {
            Ok(f) => {
                tidy_saved(&f, &dir);
                Some(f)
            }
            Err(e) => {
                log_event!(
                    "ERROR cannot use {} for chunk trees ({e}); trees of targets without a signed chunk root are kept in memory only",
                    dir.display()
                );
                None
            }
        };
        ChunkReads {
            mode,
            outboards,
            saved,
            trees: Mutex::new(TreeCache::default()),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            counters,
        }
    }

    /// The tree for `key` if it is in memory.
    pub(super) fn cached(&self, key: &str) -> Option<Arc<TrustedTree>> {
        let mut c = lock(&self.trees);
        c.tick += 1;
        let tick = c.tick;
        let (tree, old) = {
            let (tree, at) = c.map.get_mut(key)?;
            let old = std::mem::replace(at, tick);
            (tree.clone(), old)
        };
        c.order.remove(&old);
        c.order.insert(tick, key.to_owned());
        Some(tree)
    }

    /// Whether the tree for `key` is in memory (without touching its place in the LRU order).
    pub(super) fn holds(&self, key: &str) -> bool {
        lock(&self.trees).map.contains_key(key)
    }

    fn remember(&self, key: &str, tree: Arc<TrustedTree>) {
        let mut c = lock(&self.trees);
        c.tick += 1;
        let tick = c.tick;
        c.bytes += tree.bytes();
        if let Some((old, at)) = c.map.insert(key.to_owned(), (tree, tick)) {
            c.bytes -= old.bytes();
            c.order.remove(&at);
        }
        c.order.insert(tick, key.to_owned());
        while c.bytes > TREE_CACHE_BYTES && c.map.len() > 1 {
            let Some((_, oldest)) = c.order.pop_first() else {
                break;
            };
            if let Some((t, _)) = c.map.remove(&oldest) {
                c.bytes -= t.bytes();
            }
        }
    }

    /// The trusted tree of the target `info` at `path` (open as `src`), and where it came from.
    /// With [`VerifyMode::Open`] the whole file is checked against it (unless the pass that made
    /// it already did), verified blocks going to `sink` as they pass.
    pub(super) fn prepare(
        &self,
        path: &OsStr,
        src: &BackingFile,
        info: &TargetInfo,
        sink: verified::Sink<'_>,
    ) -> Result<(Arc<TrustedTree>, TreeFrom), Refusal> {
        if src.stat.key.size != info.length {
            let m = crate::hashing::Mismatch::Length {
                expected: info.length,
                actual: src.stat.key.size,
            };
            return Err(Denial::mismatch(&m).into());
        }
        let key = tree_key(info);
        let started = Instant::now();
        let (tree, from) = match self.cached(&key) {
            Some(t) => (t, TreeFrom::Memory),
            None => {
                let (tree, from) = self.find_or_compute(path, src, info, &key)?;
                let tree = Arc::new(tree);
                self.remember(&key, tree.clone());
                (tree, from)
            }
        };
        let whole = self.mode.whole_at_open(info.length);
        if whole && from != TreeFrom::Pass {
            let pass = Instant::now();
            let checked = verified::verify_whole(&tree, &src.file, self.threads, sink);
            self.counters
                .verification_pass(pass.elapsed().as_secs_f64());
            checked.map_err(|e| match e {
                ChunkError::Io(e) => Refusal::from(Fault::io("reading the backing file", &e)),
                ChunkError::Differs { offset, detail } => Denial::new(
                    DenyReason::Altered,
                    format_args!("at offset {offset}: {detail}"),
                )
                .into(),
            })?;
        }
        if from != TreeFrom::Memory || whole {
            log_event!(
                "verified {path:?}: {} bytes in {} ms (chunk tree from {}, {} check at open)",
                info.length,
                started.elapsed().as_millis(),
                match from {
                    TreeFrom::Memory => "memory",
                    TreeFrom::Outboard => "the published outboard",
                    TreeFrom::Saved => "the state dir",
                    TreeFrom::Pass => "one pass over the content",
                },
                if whole { "whole-file" } else { "size-only" }
            );
        }
        Ok((tree, from))
    }

    fn find_or_compute(
        &self,
        path: &OsStr,
        src: &BackingFile,
        info: &TargetInfo,
        key: &str,
    ) -> Result<(TrustedTree, TreeFrom), Refusal> {
        if info.chunk_root.is_some() {
            match self.outboard(info) {
                Some(Ok(tree)) => return Ok((tree, TreeFrom::Outboard)),
                Some(Err(why)) => log_event!(
                    "warning: the published chunk outboard of {path:?} is unusable ({why}); computing the tree from the content"
                ),
                None => {}
            }
        }
        if let Some(tree) = self.load_saved(key, info) {
            return Ok((tree, TreeFrom::Saved));
        }
        let pass = Instant::now();
        let tree = verified::compute_tree(info, &src.file, self.threads);
        self.counters
            .verification_pass(pass.elapsed().as_secs_f64());
        let tree = tree.map_err(|e| match e {
            PassError::Io(e) => Refusal::from(Fault::io("reading the backing file", &e)),
            PassError::Mismatch(m) => Denial::mismatch(&m).into(),
        })?;
        // Saved for later opens and restarts (a target with a root gets here only when its
        // outboard is missing or unusable).
        if let Err(e) = self.save(key, &tree) {
            // A full or failing state dir is a fault, not a reason to refuse verified content:
            // the tree is kept in memory and the open goes on.
            let f = Fault::io(
                format_args!("saving the chunk tree of {path:?} in the state dir"),
                &e,
            );
            log_event!(
                "ERROR {} (the file is served; its tree is kept in memory only)",
                f.detail
            );
            self.counters.fault(f.kind, f.detail);
        }
        Ok((tree, TreeFrom::Pass))
    }

    /// The published outboard of `info` checked against its signed root; None if there is none.
    fn outboard(&self, info: &TargetInfo) -> Option<Result<TrustedTree, String>> {
        let dir = self.outboards.as_ref()?;
        let name = hex::encode(info.sha256()?);
        let want = crate::chunks::chunk_count(info.length).checked_mul(32)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(dir.join(&name));
        let file = match file {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => return Some(Err(format!("opening it: {e}"))),
        };
        Some(read_outboard(file, want).and_then(|ob| TrustedTree::from_outboard(info, &ob)))
    }

    fn load_saved(&self, key: &str, info: &TargetInfo) -> Option<TrustedTree> {
        let dir = self.saved.as_ref()?;
        let file = openat(
            dir,
            key,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0,
        )
        .ok()?;
        let want = crate::chunks::chunk_count(info.length).checked_mul(32)?;
        let bytes = read_outboard(file, want + SAVED_MAGIC.len() as u64 + 32).ok()?;
        let rest = bytes.strip_prefix(SAVED_MAGIC)?;
        let (root, outboard) = rest.split_at(32);
        let root: [u8; 32] = root.try_into().ok()?;
        match info.chunk_root {
            // Checked against the signed root: no trust in the state dir needed.
            Some(_) => TrustedTree::from_outboard(info, outboard).ok(),
            None => TrustedTree::from_saved(info, outboard, &root).ok(),
        }
    }

    fn save(&self, key: &str, tree: &TrustedTree) -> io::Result<()> {
        let Some(dir) = &self.saved else {
            return Ok(());
        };
        let tmp = format!("new.{}.{key}", std::process::id());
        let mut f = openat(
            dir,
            &tmp,
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW,
            0o600,
        )?;
        let written = f
            .write_all(SAVED_MAGIC)
            .and_then(|()| f.write_all(&tree.root()))
            .and_then(|()| f.write_all(&tree.outboard()))
            .and_then(|()| renameat(dir, &tmp, key));
        if written.is_err() {
            let _ = unlinkat(dir, &tmp);
        }
        written
    }
}

/// Saved trees kept at most (bytes); beyond, the directory is emptied at start (a tree costs one
/// pass to make again).
const SAVED_MAX_BYTES: u64 = 256 << 20;

/// At start: remove temporaries a crash left, and every saved tree if they take more than
/// [`SAVED_MAX_BYTES`] (trees of targets long gone are never needed again).
fn tidy_saved(dir: &File, path: &Path) {
    let Ok(names) = super::store::list_names(dir) else {
        return;
    };
    let size = |n: &str| std::fs::symlink_metadata(path.join(n)).map_or(0, |m| m.len());
    let total: u64 = names.iter().map(|n| size(n)).sum();
    let clear_all = total > SAVED_MAX_BYTES;
    let mut removed = 0;
    for n in &names {
        if (clear_all || n.starts_with("new.")) && unlinkat(dir, n).is_ok() {
            removed += 1;
        }
    }
    if clear_all {
        log_event!(
            "saved chunk trees in {} took {total} bytes (more than {SAVED_MAX_BYTES}): removed {removed}; they are made again at the next open",
            path.display()
        );
    }
}

/// Read exactly `want` bytes of a regular file; anything else is an error in words.
fn read_outboard(mut file: File, want: u64) -> Result<Vec<u8>, String> {
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    if meta.len() != want {
        return Err(format!("it has {} bytes, not {want}", meta.len()));
    }
    let mut out = Vec::with_capacity(want as usize);
    (&mut file)
        .take(want)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() as u64 != want {
        return Err(format!("it has {} bytes, not {want}", out.len()));
    }
    Ok(out)
}

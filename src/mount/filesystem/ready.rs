//! Content made ready for an open: a verification record or cached object found, or, one opener
//! at a time under the object's gate, the backing file verified or the object downloaded (or its
//! trusted chunk tree prepared).

use std::ffi::OsStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use fuser::INodeNo;

use super::handles::pool_key;
use super::{Content, MountState};
use crate::index::TargetInfo;
use crate::log_event;
use crate::mount::chunked::tree_key;
use crate::mount::download::fetch_into_cache;
use crate::mount::gate::Shut;
use crate::mount::lock;
use crate::mount::refusal::{Denial, Fault, Refusal};
use crate::mount::store::object_name;
use crate::mount::verified::{TrustedTree, VerifiedBytes};
use crate::source::{EntryKind, SourceError};
use crate::telemetry::{DenyReason, FaultKind};

/// The most of one file a whole-file check pushes into the page cache.
const PUSH_MAX: u64 = 2 << 30;

/// Content ready for an open: the object (acquired from the store) or the trusted tree.
pub(super) struct Ready {
    pub(super) object: String,
    pub(super) chunks: Option<Arc<TrustedTree>>,
}

impl MountState {
    /// Find or make the verified object for `path` (acquired), or its trusted chunk tree.
    pub(super) fn verified_object(
        &self,
        ino: u64,
        path: &OsStr,
        info: &TargetInfo,
        arrived: Instant,
    ) -> Result<Ready, Refusal> {
        let name = object_name(info);
        // A stuck download (or a huge verification) must not pin every FUSE worker: waiters
        // give up after `gate_wait` with EIO, and may try again.
        let pass = match self.gates.enter(&name, arrived, self.gate_wait) {
            Ok(pass) => pass,
            Err(Shut::Busy) => {
                return Err(Fault::eio(
                    FaultKind::Busy,
                    format_args!(
                        "still being downloaded or verified by another open after {} s; try again",
                        self.gate_wait.as_secs()
                    ),
                )
                .into())
            }
            Err(Shut::Failed(mut f)) => {
                f.detail = format!(
                    "an attempt that ended after this open arrived failed: {}",
                    f.detail
                );
                return Err(f.into());
            }
        };
        let result = self.verify_or_fetch(ino, path, info, &name);
        if let Err(Refusal::Fault(f)) = &result {
            // Those waiting behind this attempt get its fault instead of a doomed retry each.
            pass.failed(f);
        }
        result
    }

    /// The body of [`Self::verified_object`], holding the object's gate.
    fn verify_or_fetch(
        &self,
        ino: u64,
        path: &OsStr,
        info: &TargetInfo,
        name: &str,
    ) -> Result<Ready, Refusal> {
        // Whoever held the gate before may have made it ready.
        if let Some(ready) = self.ready_object(path, info) {
            return Ok(ready);
        }
        self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
        let backing = match &self.content {
            Content::Backing(b) => b,
            Content::Remote(mirrors) => {
                let p = path.to_str().ok_or(SourceError::BadName)?;
                let lazy = self.lazy.as_ref().filter(|l| l.fetches_lazily(info.length));
                if let (Some(lazy), Some(_)) = (lazy, info.chunk_root) {
                    let key = tree_key(info);
                    match lazy.tree(&key, info) {
                        Ok(Some(tree)) => {
                            return Ok(Ready {
                                object: key,
                                chunks: Some(tree),
                            })
                        }
                        Ok(None) => {}
                        Err(e) => return Err(Fault::eio(FaultKind::Network, e).into()),
                    }
                }
                fetch_into_cache(mirrors, &self.store, p, info, name, false)?;
                self.counters.fetches.fetch_add(1, Ordering::Relaxed);
                return Ok(Ready {
                    object: name.to_owned(),
                    chunks: None,
                });
            }
        };
        let src = backing.open_file(path)?;
        if let Some(chunks) = &self.chunks {
            // The whole-file check hands each verified block to the kernel's page cache of this
            // inode (kept across opens: FOPEN_KEEP_CACHE), so the reads that follow an open
            // usually never reach the daemon. A failed push only costs speed.
            // At most PUSH_MAX of a file: the first open of a huge one must not evict everyone
            // else's cache.
            let notifier = self.notifier.get();
            let mut pushing = notifier.is_some();
            let mut push = |offset: u64, bytes: &VerifiedBytes| {
                pushing &= offset < PUSH_MAX;
                if let (true, Some(n)) = (pushing, notifier) {
                    pushing = n.store(INodeNo(ino), offset, bytes.as_slice()).is_ok();
                }
            };
            let (tree, _) = chunks.prepare(path, &src, info, &mut push)?;
            let key = tree_key(info);
            if chunks.mode.whole_at_open(info.length) {
                // Checked whole: remember which version of the backing file that was (reads are
                // checked chunk by chunk whatever happens to it later).
                let after = crate::source::fstat(std::os::fd::AsFd::as_fd(&src.file))
                    .map_err(|e| Fault::io("checking the backing file after verifying it", &e))?;
                if after.key != src.stat.key {
                    return Err(Denial::new(
                        DenyReason::Changed,
                        "backing file changed while it was being verified",
                    )
                    .into());
                }
                lock(&self.records).insert(Some((path, src.stat.key)), &key, &|o| self.keeps(o));
            }
            // Reads use the very file that was checked while the pool keeps it: a reader of a
            // file replaced (renamed over) after this open keeps reading what it opened.
            self.backing_files
                .insert(&pool_key(&key, path), Arc::new(src.file));
            return Ok(Ready {
                object: key,
                chunks: Some(tree),
            });
        }
        let started = Instant::now();
        let method = self.store.verify_and_store(&src, info, name)?;
        lock(&self.records).insert(Some((path, src.stat.key)), name, &|o| self.keeps(o));
        log_event!(
            "verified {:?}: {} bytes in {} ms ({:?})",
            path,
            info.length,
            started.elapsed().as_millis(),
            method
        );
        Ok(Ready {
            object: name.to_owned(),
            chunks: None,
        })
    }

    /// The verified object for `path`, if it is ready without any verification or download: a
    /// verification record of the backing file's current version (local) or a cached object
    /// (remote). Acquired. Cheap (an `fstat`, a lookup): answered on the FUSE worker.
    pub(super) fn ready_object(&self, path: &OsStr, info: &TargetInfo) -> Option<Ready> {
        if let (Some(chunks), Content::Backing(b)) = (&self.chunks, &self.content) {
            let key = tree_key(info);
            let probe = b.stat(path).ok()?;
            let ready = probe.kind == EntryKind::Regular
                && if chunks.mode.whole_at_open(info.length) {
                    lock(&self.records).object_of(path, &probe.key) == Some(key.as_str())
                } else {
                    probe.key.size == info.length
                };
            let tree = chunks.cached(&key).filter(|_| ready)?;
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Some(Ready {
                object: key,
                chunks: Some(tree),
            });
        }
        let name = object_name(info);
        let lazy = self.lazy.as_ref().filter(|l| l.fetches_lazily(info.length));
        if let (Some(lazy), Some(_), Content::Remote(_)) = (lazy, info.chunk_root, &self.content) {
            if !self.store.contains(&name) {
                let key = tree_key(info);
                let tree = lazy.cached(&key)?;
                self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Some(Ready {
                    object: key,
                    chunks: Some(tree),
                });
            }
        }
        let ready = match &self.content {
            Content::Remote(_) => self.store.acquire(&name, info.length),
            Content::Backing(b) => {
                let probe = b.stat(path).ok()?;
                probe.kind == EntryKind::Regular
                    && lock(&self.records).object_of(path, &probe.key) == Some(name.as_str())
                    && self.store.acquire(&name, info.length)
            }
        };
        if ready {
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
        }
        ready.then_some(Ready {
            object: name,
            chunks: None,
        })
    }
}

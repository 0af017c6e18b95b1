//! Open file handles: what a handle reads from, the keys of the descriptor pools it shares, and
//! the release that closes a descriptor with its last handle.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use fuser::{BackingId, FileHandle, ReplyEmpty};

use super::TrustFs;
use crate::index::TargetInfo;
use crate::mount::lock;
use crate::mount::verified::TrustedTree;

/// An open file: the verified object it reads from, or (chunk-verified reads) the trusted tree
/// and the backing path. It holds no descriptor: userspace reads take one from a bounded pool
/// ([`ReadFiles`]).
///
/// [`ReadFiles`]: crate::mount::readfiles::ReadFiles
#[derive(Debug)]
pub(super) struct Handle {
    /// The object's name, or (chunk-verified reads) the tree's key.
    pub(super) object: String,
    pub(super) chunks: Option<Arc<ChunkedFile>>,
    /// Keeps the kernel's backing file registered while this handle is open (passthrough).
    pub(super) _backing: Option<Arc<BackingId>>,
}

/// What a chunk-verified handle reads: the backing file at `path`, checked against `tree`. Made
/// once at open and shared by the handle's reads (nothing is cloned or encoded per READ).
#[derive(Debug)]
pub(super) struct ChunkedFile {
    pub(super) tree: Arc<TrustedTree>,
    pub(super) path: OsString,
    /// The tree's key ([`tree_key`]): a lazy remote read's partial file.
    ///
    /// [`tree_key`]: crate::mount::chunked::tree_key
    pub(super) key: String,
    /// The backing descriptor's key in the pool ([`pool_key`]).
    pub(super) pool_key: String,
    /// What the metadata signed for it (a lazy remote read names the target by it).
    pub(super) info: TargetInfo,
}

/// The handle count key of a lazy remote read's partial file (one per object, in
/// `backing_handles` beside the per-path keys; a `/` cannot start an object name).
pub(super) fn partial_key(object: &str) -> String {
    format!("/partial/{object}")
}

/// The key of a backing file's descriptor in the pool: content and path, so a path whose file
/// changed never costs another path with the same content its reads.
pub(super) fn pool_key(tree_key: &str, path: &OsStr) -> String {
    format!("{tree_key}:{}", hex::encode(path.as_bytes()))
}

impl TrustFs {
    /// `release`: the handle goes, and with the last one on it a descriptor of the pools.
    pub(super) fn answer_release(&self, fh: FileHandle, reply: ReplyEmpty) {
        let handle = lock(&self.handles).remove(&fh.0);
        if let Some(h) = handle {
            let object = h.object.clone();
            if let Some(c) = &h.chunks {
                // The last handle of a backing file: its descriptor need not wait for LRU (a
                // deleted file's space is given back).
                let key = &c.pool_key;
                let mut open = lock(&self.backing_handles);
                let last = open.get_mut(key).is_none_or(|n| {
                    *n = n.saturating_sub(1);
                    *n == 0
                });
                if last {
                    open.remove(key);
                    self.backing_files.close(key);
                }
                if let Some(lazy) = &self.lazy {
                    // The last handle of a lazy remote read's partial file: its descriptor (and
                    // lock) goes, so the cache's bound may evict it.
                    let pk = partial_key(&c.key);
                    let last = open.get_mut(&pk).is_none_or(|n| {
                        *n = n.saturating_sub(1);
                        *n == 0
                    });
                    if last {
                        open.remove(&pk);
                        self.partial_files.close(&c.key);
                        lazy.closed(&c.key);
                    }
                }
            }
            let stored = h.chunks.is_none();
            drop(h);
            if stored && self.store.release(&object) {
                // No handle reads it any more: its descriptor need not wait for LRU.
                self.read_files.close(&object);
            }
        }
        reply.ok();
    }
}

//! Opens: the policy before any content is looked at, the fast path on the FUSE worker, the slow
//! path (a verification or download) on the pool, and the handle made at the end, with its
//! passthrough backing.

use std::ffi::OsStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use fuser::{
    BackingId, Errno, FileHandle, FopenFlags, INodeNo, OpenAccMode, OpenFlags, ReplyOpen, Request,
};

use super::generation::MetadataInForce;
use super::handles::{partial_key, pool_key, ChunkedFile, Handle};
use super::ready::Ready;
use super::{Caller, MountState, TrustFs};
use crate::index::TargetInfo;
use crate::log_event;
use crate::mount::chunked::tree_key;
use crate::mount::inodes::{same_content, Node};
use crate::mount::refusal::{Denial, Fault};
use crate::mount::{lock, Unregistered};
use crate::telemetry::{DenyReason, FaultKind};

/// A successful open: the handle, the passthrough backing (if any), the open flags.
type Opened = (u64, Option<Arc<BackingId>>, FopenFlags);

fn send_opened(reply: ReplyOpen, (fh, backing, fopen): Opened) {
    match backing {
        Some(id) => reply.opened_passthrough(FileHandle(fh), fopen, &id),
        None => reply.opened(FileHandle(fh), fopen),
    }
}

impl MountState {
    /// The open policy before any content is looked at: unregistered, stale inode, expired
    /// metadata. Ok: the signed info the open must match.
    fn admit(&self, who: Caller, gen: &MetadataInForce, node: &Node) -> Result<TargetInfo, Errno> {
        let path = node.path();
        let Some(info) = gen.target(path) else {
            if node.is_target() {
                // Registered when the kernel looked it up, not any more: look it up again.
                return Err(Errno::ESTALE);
            } else if self.unregistered == Unregistered::Hide {
                return Err(Errno::ENOENT);
            }
            let d = Denial::new(
                DenyReason::Unregistered,
                "not listed in the signed targets metadata",
            );
            return Err(self.refuse(who, gen, path, d.into()));
        };
        if !node.target().is_some_and(|t| same_content(&t, &info)) {
            // The inode stands for other content than the metadata in force lists (a lookup
            // raced a metadata switch): ESTALE makes the kernel look the name up again.
            return Err(Errno::ESTALE);
        }
        if let Some((t, role)) = gen.expired_at(SystemTime::now()) {
            let at = crate::log::timestamp(*t);
            let d = Denial::new(
                DenyReason::Expired,
                format_args!(
                    "the trusted metadata expired at {at} (the {role} role); no fresh metadata could be trusted since"
                ),
            );
            return Err(self.refuse(who, gen, path, d.into()));
        }
        Ok(info)
    }

    /// An open whose object is ready (see [`Self::ready_object`]): answered on the FUSE worker.
    /// Ok(None): it needs a verification or download ([`Self::open_slow`]).
    fn open_fast(
        &self,
        who: Caller,
        gen: &MetadataInForce,
        node: &Node,
        reply: &ReplyOpen,
    ) -> Result<Option<Opened>, Errno> {
        let info = self.admit(who, gen, node)?;
        match self.ready_object(node.path(), &info) {
            Some(ready) => self
                .finish_open(who, gen, node.path(), &info, ready, reply)
                .map(Some),
            None => Ok(None),
        }
    }

    /// An open that verifies or downloads its object, on the pool ([`Openers`]); replies itself.
    /// A panic costs this open (an `internal` fault), never the pool thread.
    ///
    /// [`Openers`]: crate::mount::openers::Openers
    fn open_slow(
        &self,
        who: Caller,
        gen: &MetadataInForce,
        ino: u64,
        node: &Node,
        reply: ReplyOpen,
    ) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let info = self.admit(who, gen, node)?;
            let ready = self
                .verified_object(ino, node.path(), &info, who.arrived)
                .map_err(|r| self.refuse(who, gen, node.path(), r))?;
            self.finish_open(who, gen, node.path(), &info, ready, &reply)
        }));
        match outcome {
            Ok(Ok(opened)) => send_opened(reply, opened),
            Ok(Err(errno)) => reply.error(errno),
            Err(panic) => {
                let f = Fault::eio(
                    FaultKind::Internal,
                    format_args!("internal error: {}", panic_message(&*panic)),
                );
                reply.error(self.refuse(who, gen, node.path(), f.into()));
            }
        }
    }

    /// After the object (acquired) is verified: re-check what may have changed meanwhile, then
    /// make the handle and choose how reads are served.
    fn finish_open(
        &self,
        who: Caller,
        gen: &MetadataInForce,
        path: &OsStr,
        info: &TargetInfo,
        ready: Ready,
        reply: &ReplyOpen,
    ) -> Result<Opened, Errno> {
        let Ready { object, chunks } = ready;
        // Chunk-verified reads hold nothing in the store.
        let release = |object: &str| {
            if chunks.is_none() {
                self.store.release(object);
            }
        };
        // Verification (or a download) can take long; if metadata was switched or expired
        // meanwhile, what this open verified may no longer be what is in force.
        let now_gen = self.generation();
        if now_gen.number != gen.number {
            let still = now_gen.target(path).map(|i| match chunks {
                Some(_) => tree_key(&i),
                None => self.content_key(&i),
            });
            if still.as_deref() != Some(object.as_str()) {
                release(&object);
                return Err(Errno::ESTALE);
            }
        }
        if let Some((t, role)) = now_gen.expired_at(SystemTime::now()) {
            release(&object);
            let at = crate::log::timestamp(*t);
            let d = Denial::new(
                DenyReason::Expired,
                format_args!("the trusted metadata expired at {at} (the {role} role) while this open was being verified"),
            );
            return Err(self.refuse(who, &now_gen, path, d.into()));
        }
        let whole = self
            .chunks
            .as_ref()
            .map(|c| c.mode.whole_at_open(info.length));
        if chunks.is_none() || whole == Some(true) {
            lock(&self.records).insert(None, &object, &|o| self.keeps(o));
        }
        // Passthrough reads a file the daemon cannot check: only verified objects qualify.
        let use_passthrough = chunks.is_none()
            && self.passthrough.load(Ordering::Relaxed)
            && info.length >= self.passthrough_min_size;
        // Userspace mode opens the object lazily at the first read: with KEEP_CACHE most opens
        // of a small file never see a read request.
        let backing = if use_passthrough {
            match self.backing_id(reply, &object) {
                Ok(id) => id,
                Err(e) => {
                    release(&object);
                    let f = Fault::io("opening the verified object for passthrough", &e);
                    return Err(self.refuse(who, &now_gen, path, f.into()));
                }
            }
        } else {
            None
        };
        self.counters.served.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_opened
            .fetch_add(info.length, Ordering::Relaxed);
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        // No flush on close: nothing to write back. In userspace mode the object's content is
        // fixed for this inode (it is the signed content), so cached pages stay valid across
        // opens: KEEP_CACHE. (The kernel rejects KEEP_CACHE together with passthrough, EIO.)
        let fopen = match backing {
            Some(_) => FopenFlags::FOPEN_NOFLUSH,
            None => FopenFlags::FOPEN_NOFLUSH | FopenFlags::FOPEN_KEEP_CACHE,
        };
        let chunks = chunks.map(|tree| {
            let key = pool_key(&object, path);
            let mut open = lock(&self.backing_handles);
            *open.entry(key.clone()).or_default() += 1;
            if self.lazy.is_some() {
                // The partial file is per object (several paths may share it).
                *open.entry(partial_key(&object)).or_default() += 1;
            }
            drop(open);
            Arc::new(ChunkedFile {
                tree,
                path: path.to_owned(),
                pool_key: key,
                key: object.clone(),
                info: info.clone(),
            })
        });
        lock(&self.handles).insert(
            fh,
            Handle {
                object,
                chunks,
                _backing: backing.clone(),
            },
        );
        Ok((fh, backing, fopen))
    }

    /// The shared `BackingId` of an object (registered on first use). `Ok(None)`: the kernel
    /// refused it; serve this open in userspace.
    fn backing_id(
        &self,
        reply: &ReplyOpen,
        object: &str,
    ) -> std::io::Result<Option<Arc<BackingId>>> {
        let mut ids = lock(&self.backing_ids);
        if let Some(id) = ids.get(object).and_then(Weak::upgrade) {
            return Ok(Some(id));
        }
        // The kernel keeps its own reference to the file; our descriptor closes at the end of
        // this function, so passthrough handles cost the daemon no descriptor.
        let file = self.store.open(object)?;
        match reply.open_backing(&file) {
            Ok(id) => {
                let id = Arc::new(id);
                ids.insert(object.to_owned(), Arc::downgrade(&id));
                if ids.len() > 4096 {
                    ids.retain(|_, w| w.strong_count() > 0);
                }
                Ok(Some(id))
            }
            Err(e) => {
                log_event!(
                    "passthrough unavailable for object {object}: {e}; reading in userspace"
                );
                Ok(None)
            }
        }
    }
}

/// The message of a caught panic.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl TrustFs {
    /// `open`: read-only opens only; a ready object is answered here, the rest on the pool.
    pub(super) fn answer_open(
        &self,
        req: &Request,
        ino: INodeNo,
        flags: OpenFlags,
        reply: ReplyOpen,
    ) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & libc::O_TRUNC != 0 {
            reply.error(Errno::EROFS);
            return;
        }
        self.counters.opens.fetch_add(1, Ordering::Relaxed);
        let Some(node) = self.node(ino) else {
            reply.error(Errno::ENOENT);
            return;
        };
        let who = Caller::of(req);
        let gen = self.generation();
        // A bug below must cost this open (EIO, counted, logged), never the FUSE worker: a
        // panic that unwinds out of here would kill the thread, and enough of them the mount.
        let fast = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.open_fast(who, &gen, &node, &reply)
        }));
        match fast {
            Ok(Ok(Some(opened))) => send_opened(reply, opened),
            Ok(Ok(None)) => {
                self.0.prefetch_siblings(&gen, node.path());
                // A verification or download: off the worker, which goes back to serving.
                let core = self.0.clone();
                self.openers
                    .run(move || core.open_slow(who, &gen, ino.0, &node, reply));
            }
            Ok(Err(errno)) => reply.error(errno),
            Err(panic) => {
                let what = panic_message(&*panic);
                let f = Fault::eio(FaultKind::Internal, format_args!("internal error: {what}"));
                reply.error(self.refuse(who, &gen, node.path(), f.into()));
            }
        }
    }
}

//! Reads: from a verified object of the store, chunk-verified from a backing file, or (lazy remote
//! read) from the partial file and range requests; the one way bytes reach a read reply.

use std::ffi::OsStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use fuser::{Errno, FileHandle, ReplyData, Request};

use super::handles::ChunkedFile;
use super::{Caller, Content, MountState, TrustFs};
use crate::log_event;
use crate::mount::lazyremote::LazyError;
use crate::mount::lock;
use crate::mount::refusal::{Denial, Fault, Refusal};
use crate::mount::verified::{self, ChunkError, StoredObject, VerifiedBytes};
use crate::source::remote::Mirrors;
use crate::source::SourceError;
use crate::telemetry::{Counters, DenyReason, FaultKind};

impl MountState {
    /// A read from a verified object of the store.
    fn read_stored(
        &self,
        who: Caller,
        object: &str,
        offset: u64,
        size: u32,
    ) -> Result<VerifiedBytes, Errno> {
        let file = self
            .read_files
            .get(object, || StoredObject::open(&self.store, object))
            .map_err(|e| {
                let f = Fault::io(format_args!("opening verified object {object}"), &e);
                self.read_fault(who, object, &f);
                Errno::from_i32(f.errno)
            })?;
        verified::read_stored(&file, offset, size).map_err(|e| {
            let f = Fault::io(format_args!("reading verified object {object}"), &e);
            self.read_fault(who, object, &f);
            Errno::EIO
        })
    }

    /// A chunk-verified read of a backing file: the chunks the range touches are read and each
    /// checked against the trusted tree. A chunk that differs (the backing file changed since it
    /// was verified, or, `--verify lazy`, was never what was signed) gets `EIO`, a `DENY read`
    /// line naming the file and offset, a denial count and an audit record.
    fn read_chunked(
        &self,
        who: Caller,
        c: &ChunkedFile,
        offset: u64,
        size: u32,
    ) -> Result<VerifiedBytes, Errno> {
        let Content::Backing(backing) = &self.content else {
            return Err(Errno::EIO);
        };
        // One descriptor per (content, path): a path whose file changed never costs another
        // path with the same content its reads.
        let pool_key = &c.pool_key;
        let mut why = None;
        let opened = self.backing_files.get(pool_key, || {
            backing.open_file(&c.path).map(|b| b.file).map_err(|e| {
                let io = match &e {
                    SourceError::Io(io) => std::io::Error::new(io.kind(), io.to_string()),
                    other => std::io::Error::other(other.to_string()),
                };
                why = Some(e);
                io
            })
        });
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                // What is at the path now is judged as an open would judge it: replaced by a
                // directory, FIFO or symlink, or gone, is a denial (answered EIO: this is a
                // read); an I/O error is a fault.
                let refusal = match why {
                    Some(SourceError::NotFound) => Refusal::Denied(Denial::new(
                        DenyReason::Changed,
                        "the backing file was removed after it was opened",
                    )),
                    Some(se) => Refusal::from(se),
                    None => Refusal::Fault(Fault::io("opening the backing file for a read", &e)),
                };
                let gen = self.generation();
                return Err(match refusal {
                    Refusal::Denied(d) => {
                        let d = Denial::new(
                            d.reason,
                            format_args!(
                                "{} (since it was opened); the read fails with EIO",
                                d.detail
                            ),
                        );
                        self.deny_op("read", who, &gen, &c.path, &d);
                        Errno::EIO
                    }
                    Refusal::Fault(f) => {
                        self.fault_op("read", who, &gen, &c.path, &f);
                        Errno::from_i32(f.errno)
                    }
                    Refusal::Absent => Errno::EIO,
                });
            }
        };
        match verified::read_chunks(&c.tree, &file, offset, size) {
            Ok(bytes) => Ok(bytes),
            Err(ChunkError::Io(e)) => {
                let f = Fault::io("reading the backing file", &e);
                self.fault_op("read", who, &self.generation(), &c.path, &f);
                Err(Errno::EIO)
            }
            Err(ChunkError::Differs { offset, detail }) => {
                // The next read opens the path again (the file may have been put back).
                self.backing_files.close(pool_key);
                // Checked whole at open: it changed since. Lazy: it may never have been right.
                let whole = self
                    .chunks
                    .as_ref()
                    .map(|m| m.mode.whole_at_open(c.tree.length()));
                let reason = match whole {
                    Some(false) => DenyReason::Altered,
                    _ => DenyReason::Changed,
                };
                let d = Denial::new(
                    reason,
                    format_args!(
                        "at offset {offset}: {detail}; the read fails with EIO, the changed bytes are never served"
                    ),
                );
                self.deny_op("read", who, &self.generation(), &c.path, &d);
                Err(Errno::EIO)
            }
        }
    }

    /// A lazy remote read (`--lazy-fetch`): the chunks come from the partial file or, those it
    /// lacks, from a range request; every one is checked. Wrong bytes from every mirror that
    /// delivered: `DENY read` (EIO); none could deliver: `ERROR read` (EIO).
    fn read_lazy(
        &self,
        who: Caller,
        mirrors: &Arc<Mirrors>,
        c: &ChunkedFile,
        offset: u64,
        size: u32,
    ) -> Result<VerifiedBytes, Errno> {
        let Some(lazy) = &self.lazy else {
            return Err(Errno::EIO);
        };
        let gen = self.generation();
        let path = c.path.to_string_lossy();
        let mut cache_fault = |e: std::io::Error| {
            let f = Fault::io("using the cache's partial file (served all the same)", &e);
            self.counters.fault(f.kind, f.detail.clone());
            log_event!("ERROR lazy fetch {path:?}: {}", f.detail);
        };
        // Opened (and locked) outside the pool's lock: a partial file someone else holds locked
        // costs only the reads of that file their wait.
        let data = match self.partial_files.held(&c.key) {
            Some(f) => Ok(f),
            None => lazy.data_file(&c.key, c.tree.length()).map(|f| {
                let f = Arc::new(f);
                self.partial_files.insert(&c.key, f.clone());
                f
            }),
        };
        let got = match data {
            Ok(data) => lazy.read(
                mirrors,
                &c.key,
                &path,
                &c.info,
                &c.tree,
                &data,
                offset,
                size,
                &mut cache_fault,
            ),
            Err(e) => {
                cache_fault(e);
                lazy.read_direct(mirrors, &path, &c.info, &c.tree, offset, size)
            }
        };
        match got {
            Ok(bytes) => Ok(bytes),
            Err(LazyError::Refused(why)) => {
                let d = Denial::new(
                    DenyReason::Altered,
                    format_args!("{why}; the read fails with EIO, nothing of it was kept"),
                );
                self.deny_op("read", who, &gen, &c.path, &d);
                Err(Errno::EIO)
            }
            Err(LazyError::Unavailable(why)) => {
                let f = Fault::eio(FaultKind::Network, why);
                self.fault_op("read", who, &gen, &c.path, &f);
                Err(Errno::EIO)
            }
            Err(LazyError::Cache(e)) => {
                let f = Fault::io("reading the cache's partial file", &e);
                self.fault_op("read", who, &gen, &c.path, &f);
                Err(Errno::from_i32(f.errno))
            }
        }
    }

    /// A read failed on a fault: counted, logged as an `ERROR`, audited.
    fn read_fault(&self, who: Caller, object: &str, f: &Fault) {
        let gen = self.generation();
        self.fault_op("read", who, &gen, OsStr::new(object), f);
    }
}

/// The only way bytes reach a read reply: a [`VerifiedBytes`], which only `mount/verified.rs` makes.
fn reply_verified(reply: ReplyData, counters: &Counters, bytes: &VerifiedBytes) {
    let data = bytes.as_slice();
    counters
        .bytes_read
        .fetch_add(data.len() as u64, Ordering::Relaxed);
    reply.data(data);
}

impl TrustFs {
    /// `read`: from the handle's verified object, or chunk by chunk checked (backing file or
    /// partial file).
    pub(super) fn answer_read(
        &self,
        req: &Request,
        fh: FileHandle,
        offset: u64,
        size: u32,
        reply: ReplyData,
    ) {
        // What the handle reads from, taken without copying more than a pointer for chunk reads.
        let Some(from) = lock(&self.handles).get(&fh.0).map(|h| match &h.chunks {
            Some(c) => Ok(c.clone()),
            None => Err(h.object.clone()),
        }) else {
            reply.error(Errno::EBADF);
            return;
        };
        let who = Caller::of(req);
        let result = match (from, &self.content) {
            (Ok(c), Content::Remote(m)) => self.read_lazy(who, m, &c, offset, size),
            (Ok(c), _) => self.read_chunked(who, &c, offset, size),
            (Err(object), _) => self.read_stored(who, &object, offset, size),
        };
        match result {
            Ok(bytes) => reply_verified(reply, &self.counters, &bytes),
            Err(errno) => reply.error(errno),
        }
    }
}

//! The proof that bytes may be served: [`VerifiedBytes`], and the only code that makes one.
//!
//! A read reply carries a [`VerifiedBytes`] and nothing else (`filesystem/read.rs` has no other
//! path to `ReplyData::data`). Its fields are private and this file has the only producers:
//! - [`read_chunks`] (through `check_buffer`): bytes read from a backing file (which anybody may
//!   change at any time) into a buffer the daemon owns, each whole chunk checked against a
//!   [`TrustedTree`] before the buffer is handed out;
//! - [`read_stored`]: bytes of a [`StoredObject`], a verified copy in the private object store
//!   (checked whole before it got its name; nothing else writes there);
//! - `check_block` (of [`verify_whole`]): a block of a whole-file pass, checked against the tree;
//! - `CheckedChunks::serve`: chunks a lazy fetch received and checked against the tree whose root
//!   they carry;
//! - `VerifiedBytes::empty`: no bytes at all.
//!
//! A [`TrustedTree`] in turn is only made here: from an outboard that matches the signed chunk
//! root ([`TrustedTree::from_outboard`]), from one pass over content whose signed root or signed
//! hashes matched ([`compute_tree`]), or from the daemon's own record of such a pass in its
//! private state dir ([`TrustedTree::from_saved`]). This is the `…Verified` marker pattern of
//! rustls: the type system, not a convention, keeps an unchecked buffer away from the reply.
//!
//! This file holds [`VerifiedBytes`] and every function that makes one (`tests/it/mount.rs` counts
//! them here, so it stays `mount/verified.rs` rather than `verified/mod.rs`); the submodules may read
//! its fields but make none (a unit test checks): `tree.rs` is [`TrustedTree`], `checked.rs` the
//! chunks a lazy fetch received ([`CheckedChunks`], whose `serve` is here), `whole.rs` the passes
//! over a whole file ([`verify_whole`], [`compute_tree`]), `span.rs` which chunks a read touches
//! ([`chunk_span`]).

mod checked;
mod span;
#[cfg(test)]
mod tests;
mod tree;
mod whole;

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub use checked::CheckedChunks;
pub use span::{chunk_span, ChunkSpan};
pub use tree::TrustedTree;
pub use whole::{compute_tree, verify_whole, PassError, Sink};

use super::store::ObjectStore;
use crate::chunks::CHUNK_SIZE;
use whole::leaves_of;

/// Bytes that may go into a read reply.
pub struct VerifiedBytes {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl VerifiedBytes {
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn empty() -> VerifiedBytes {
        VerifiedBytes {
            buf: Vec::new(),
            start: 0,
            end: 0,
        }
    }
}

impl fmt::Debug for VerifiedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifiedBytes({} bytes)", self.end - self.start)
    }
}

impl CheckedChunks {
    /// Bytes `offset .. offset + size` (clipped to the file), if every one of them is held.
    pub fn serve(&self, offset: u64, size: u32) -> Option<VerifiedBytes> {
        let start = self.first.checked_mul(u64::from(CHUNK_SIZE))?;
        let end = offset.saturating_add(u64::from(size)).min(self.length);
        if offset >= end || offset < start || end > start + self.checked as u64 {
            return None;
        }
        let from = usize::try_from(offset - start).ok()?;
        let to = usize::try_from(end - start).ok()?;
        let buf = self.buf[from..to].to_vec();
        let end = buf.len();
        Some(VerifiedBytes { buf, start: 0, end })
    }
}

/// Why content could not be served or trusted.
#[derive(Debug)]
pub enum ChunkError {
    /// Reading failed: the content was not judged (a fault).
    Io(io::Error),
    /// The bytes at `offset` are not the signed ones (a denial at open; `EIO` on a read).
    Differs { offset: u64, detail: String },
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::Io(e) => write!(f, "read error: {e}"),
            ChunkError::Differs { offset, detail } => write!(f, "at offset {offset}: {detail}"),
        }
    }
}

/// Read `size` bytes at `offset` of the file `tree` describes from `file`, checking every chunk
/// the range touches. Past the end: fewer bytes, as a read at end of file gives.
pub fn read_chunks(
    tree: &TrustedTree,
    file: &File,
    offset: u64,
    size: u32,
) -> Result<VerifiedBytes, ChunkError> {
    let length = tree.length();
    let Some(ChunkSpan {
        first, start, stop, ..
    }) = chunk_span(length, offset, size)
    else {
        return Ok(VerifiedBytes::empty());
    };
    let mut buf = vec![0u8; (stop - start) as usize];
    let got = read_full_at(file, &mut buf, start).map_err(ChunkError::Io)?;
    if got < buf.len() {
        return Err(ChunkError::Differs {
            offset: start + got as u64,
            detail: format!(
                "the backing file ends at byte {}, before the signed length {length}",
                start + got as u64
            ),
        });
    }
    check_buffer(tree, first, buf, offset, size)
}

/// `buf` holds chunks `first ..` of the file `tree` describes (whole chunks, the last one may end
/// the file), assembled from anywhere (a cache file, the network): every chunk is checked, and the
/// bytes `offset .. offset + size` (clipped to the file) come back verified.
pub fn check_buffer(
    tree: &TrustedTree,
    first: u64,
    buf: Vec<u8>,
    offset: u64,
    size: u32,
) -> Result<VerifiedBytes, ChunkError> {
    let Some(ChunkSpan { end, .. }) = chunk_span(tree.length(), offset, size) else {
        return Ok(VerifiedBytes::empty());
    };
    let cs = u64::from(CHUNK_SIZE);
    let start = first.saturating_mul(cs);
    let covered = start.saturating_add(buf.len() as u64);
    if offset < start || end > covered {
        return Err(ChunkError::Differs {
            offset,
            detail: "the assembled chunks do not cover the read".into(),
        });
    }
    for (i, chunk) in buf.chunks(CHUNK_SIZE as usize).enumerate() {
        let index = first + i as u64;
        if !tree.chunk_matches(index, chunk) {
            return Err(ChunkError::Differs {
                offset: index * cs,
                detail: format!(
                    "chunk {index} (bytes {}..{}) differs from the signed chunk root",
                    index * cs,
                    index * cs + chunk.len() as u64
                ),
            });
        }
    }
    Ok(VerifiedBytes {
        buf,
        start: (offset - start) as usize,
        end: (end - start) as usize,
    })
}

/// Read `buf.len()` bytes at `offset` (a chunk boundary) into `buf` and check every chunk
/// against `tree`, hashed on up to `threads` threads.
fn check_block(
    tree: &TrustedTree,
    file: &File,
    mut buf: Vec<u8>,
    offset: u64,
    threads: usize,
) -> Result<VerifiedBytes, ChunkError> {
    let length = tree.length();
    let want = buf.len();
    let got = read_full_at(file, &mut buf, offset).map_err(ChunkError::Io)?;
    if got < want {
        return Err(ChunkError::Differs {
            offset: offset + got as u64,
            detail: format!(
                "the backing file ends at byte {}, before the signed length {length}",
                offset + got as u64
            ),
        });
    }
    let first = (offset / u64::from(CHUNK_SIZE)) as usize;
    let leaves = leaves_of(&buf, threads);
    if leaves.len() != want.div_ceil(CHUNK_SIZE as usize) {
        return Err(ChunkError::Io(io::Error::other(
            "internal error: a block's chunks were not all hashed",
        )));
    }
    for (i, leaf) in leaves.iter().enumerate() {
        if tree.tree.leaves.get(first + i) != Some(leaf) {
            let at = (first + i) as u64 * u64::from(CHUNK_SIZE);
            return Err(ChunkError::Differs {
                offset: at,
                detail: format!(
                    "chunk {} (from byte {at}) differs from the signed chunk root",
                    first + i
                ),
            });
        }
    }
    Ok(VerifiedBytes {
        buf,
        start: 0,
        end: want,
    })
}

/// A verified object of the private store, open for reading.
#[derive(Debug)]
pub struct StoredObject(File);

impl StoredObject {
    /// Open the object `name` of `store` (the store names only objects it verified).
    pub fn open(store: &ObjectStore, name: &str) -> io::Result<StoredObject> {
        store.open(name).map(StoredObject)
    }
}

/// Read `size` bytes at `offset` of a stored object.
pub fn read_stored(obj: &StoredObject, offset: u64, size: u32) -> io::Result<VerifiedBytes> {
    let mut buf = vec![0u8; size as usize];
    let got = read_full_at(&obj.0, &mut buf, offset)?;
    Ok(VerifiedBytes {
        buf,
        start: 0,
        end: got,
    })
}

/// Fill `buf` from `offset`; fewer bytes only at end of file.
pub(super) fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

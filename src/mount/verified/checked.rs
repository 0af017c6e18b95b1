//! [`CheckedChunks`]: chunks of one file received into memory by a lazy fetch, handed out only
//! once checked against the file's tree (the handing out, `serve`, is in `verified.rs`).

use super::TrustedTree;
use crate::chunks::CHUNK_SIZE;

/// Chunks `first ..` of one file received into memory, then checked against its tree: a lazy
/// fetch keeps the last ones it brought so that reads of them are served from here, not read
/// back from the cache file and hashed again. Only bytes that passed [`CheckedChunks::check`]
/// are ever handed out.
pub struct CheckedChunks {
    pub(super) first: u64,
    /// The file's length (the last chunk may be short) and its tree's root: only that tree may
    /// check these chunks.
    pub(super) length: u64,
    root: [u8; 32],
    pub(super) buf: Vec<u8>,
    /// `buf[..checked]` holds checked chunks, `buf[checked..filled]` chunks received, not yet
    /// checked.
    pub(super) checked: usize,
    filled: usize,
}

impl CheckedChunks {
    /// Room for chunks `first .. first + chunks` (clipped to the file `tree` describes), in `buf`
    /// (a buffer to reuse: what it holds is overwritten before anything is served).
    pub fn new(tree: &TrustedTree, first: u64, chunks: u64, mut buf: Vec<u8>) -> CheckedChunks {
        let cs = u64::from(CHUNK_SIZE);
        let length = tree.length();
        let start = first.saturating_mul(cs).min(length);
        let end = first.saturating_add(chunks).saturating_mul(cs).min(length);
        buf.resize(usize::try_from(end - start).unwrap_or(0), 0);
        CheckedChunks {
            first,
            length,
            root: tree.root(),
            buf,
            checked: 0,
            filled: 0,
        }
    }

    /// The memory it holds (its buffer's capacity).
    pub fn memory(&self) -> usize {
        self.buf.capacity()
    }

    /// The buffer, for reuse.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// The index of the next chunk to receive.
    pub fn next(&self) -> u64 {
        self.first + self.filled.div_ceil(CHUNK_SIZE as usize) as u64
    }

    /// The chunks held, checked (the last one of the file counts, short as it is).
    pub fn chunks(&self) -> std::ops::Range<u64> {
        self.first..self.first + self.checked.div_ceil(CHUNK_SIZE as usize) as u64
    }

    /// The checked bytes (chunk `first` at index 0), e.g. to be written to a cache file.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.checked]
    }

    /// The slot of the next chunk, to be filled in and then marked [`received`](Self::received);
    /// empty when the room is full.
    pub fn slot(&mut self) -> &mut [u8] {
        let end = self.buf.len().min(self.filled + CHUNK_SIZE as usize);
        &mut self.buf[self.filled..end]
    }

    /// The slot was filled in.
    pub fn received(&mut self) {
        self.filled = self.buf.len().min(self.filled + CHUNK_SIZE as usize);
    }

    /// Check every chunk received against `tree`. `Err(index)`: chunk `index` is not the signed
    /// one; the chunks before it are kept, it and those after it are dropped.
    pub fn check(&mut self, tree: &TrustedTree) -> Result<(), u64> {
        let cs = CHUNK_SIZE as usize;
        while self.checked < self.filled {
            let end = self.filled.min(self.checked + cs);
            let index = self.first + (self.checked / cs) as u64;
            if tree.length() != self.length
                || tree.root() != self.root
                || !tree.chunk_matches(index, &self.buf[self.checked..end])
            {
                self.filled = self.checked;
                return Err(index);
            }
            self.checked = end;
        }
        Ok(())
    }
}

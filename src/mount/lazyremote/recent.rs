//! The batches fetches brought last, in memory until read once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::chunks::CHUNK_SIZE;
use crate::mount::lock;
use crate::mount::verified::{CheckedChunks, VerifiedBytes};

use super::*;

/// The batches fetches brought last, all files together, until each has been read once (a file
/// read in order reads each byte once; the kernel's page cache keeps what it read) or at most
/// [`RECENT_BYTES`] are held (oldest dropped first). Each is a [`CheckedChunks`] of one file's
/// content (its chunks were checked against the tree as they arrived), so serving from it needs
/// neither the partial file nor a second hash; the reader right behind a fetch is served as soon
/// as a batch is checked, before it is written.
#[derive(Default)]
pub(super) struct Recent {
    pub(super) kept: Mutex<Batches>,
}

#[derive(Default)]
pub(super) struct Batches {
    /// The batches, oldest first, with the bytes served from each.
    pub(super) batches: VecDeque<(Arc<Partial>, Arc<CheckedChunks>, usize)>,
    pub(super) bytes: usize,
    /// Buffers of dropped batches, for the next ones (a fresh buffer costs a page fault a page).
    pub(super) spare: Vec<Vec<u8>>,
}

impl Batches {
    pub(super) fn spare(&mut self, old: Arc<CheckedChunks>) {
        if let (Ok(old), true) = (Arc::try_unwrap(old), self.spare.len() < 4) {
            self.spare.push(old.into_buffer());
        }
    }
}

impl Recent {
    pub(super) fn keep(&self, partial: &Arc<Partial>, batch: Arc<CheckedChunks>) {
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
    pub(super) fn buffer(&self) -> Vec<u8> {
        lock(&self.kept).spare.pop().unwrap_or_default()
    }

    /// Bytes `offset .. offset + size` of `partial`'s file, if one batch holds them all. The
    /// copy is made outside the lock all files share.
    pub(super) fn serve(
        &self,
        partial: &Arc<Partial>,
        offset: u64,
        size: u32,
    ) -> Option<VerifiedBytes> {
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

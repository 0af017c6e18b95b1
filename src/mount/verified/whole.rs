//! Passes over a whole file: [`verify_whole`] checks it against a trusted tree, block by block,
//! handing each verified block on; [`compute_tree`] computes its tree and every listed hash in one
//! pass and trusts the tree only if they match the signed metadata.

use std::fs::File;
use std::io;

use super::{check_block, read_full_at, ChunkError, TrustedTree, VerifiedBytes};
use crate::chunks::{ChunkTree, CHUNK_SIZE};
use crate::hashing::{Mismatch, MultiHasher};
use crate::index::TargetInfo;

/// Bytes read per step of a whole-file pass.
pub(super) const BLOCK: usize = 4 << 20;

/// Why one pass over a file did not give a trusted tree.
#[derive(Debug)]
pub enum PassError {
    Io(io::Error),
    Mismatch(Mismatch),
}

/// The receiver of verified blocks of a whole-file pass (it runs on a thread of its own).
pub type Sink<'a> = &'a mut (dyn FnMut(u64, &VerifiedBytes) + Send);

/// Check the whole file against `tree`, chunks hashed on `threads` threads; each verified block
/// is handed to `sink` (offset, bytes) on a second thread while the next block is read and
/// checked (a pipeline: the sink, e.g. a push into the page cache, costs no time of its own on a
/// machine with a core to spare). The file must not be longer than the tree says (the caller
/// checks its size first; a read past the end here finds nothing or differs).
pub fn verify_whole(
    tree: &TrustedTree,
    file: &File,
    threads: usize,
    sink: Sink<'_>,
) -> Result<(), ChunkError> {
    let length = tree.length();
    if length <= BLOCK as u64 {
        // One block (most files): checked and handed on here, no thread, no 4 MiB buffer.
        if length > 0 {
            let block = check_block(tree, file, vec![0u8; length as usize], 0, threads)?;
            sink(0, &block);
        }
        return Ok(());
    }
    // Blocks go to the sink thread and their buffers come back: three in flight at most.
    let (to_sink, blocks) = std::sync::mpsc::sync_channel::<(u64, VerifiedBytes)>(1);
    let (give_back, returned) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        // Owned here: an early return drops it, which ends the sink thread (no deadlock).
        let to_sink = to_sink;
        s.spawn(move || {
            for (offset, block) in blocks {
                sink(offset, &block);
                let _ = give_back.send(block.buf);
            }
        });
        let mut spare = 3;
        let mut offset = 0u64;
        while offset < length {
            let mut buf = match returned.try_recv() {
                Ok(b) => b,
                Err(_) if spare > 0 => {
                    spare -= 1;
                    vec![0u8; BLOCK]
                }
                Err(_) => returned.recv().unwrap_or_else(|_| vec![0u8; BLOCK]),
            };
            buf.resize((length - offset).min(BLOCK as u64) as usize, 0);
            let block = check_block(tree, file, buf, offset, threads)?;
            let done = block.end as u64;
            if to_sink.send((offset, block)).is_err() {
                break;
            }
            offset += done;
        }
        Ok(())
    })
}

/// One pass over `file` that computes its chunk tree and every hash the target lists (on a second
/// thread, over the same buffer): the tree is trusted if the length and hashes match and, when
/// the target lists a signed chunk root, the computed root equals it too (a root and hashes that
/// disagree are refused: signed metadata that contradicts itself). With a signed root, hashes
/// trustfs cannot compute are left to the root. `threads` bounds the threads hashing leaves.
pub fn compute_tree(
    info: &TargetInfo,
    file: &File,
    threads: usize,
) -> Result<TrustedTree, PassError> {
    let mut hasher = match info.chunk_root {
        Some(_) => MultiHasher::for_target(info).ok(),
        None => Some(MultiHasher::for_target(info).map_err(PassError::Mismatch)?),
    };
    // (Capacity from the file actually read, not from a signed length alone.)
    let expected = crate::chunks::chunk_count(info.length).min(1 << 20);
    let mut leaves = Vec::with_capacity(expected as usize);
    let mut buf = vec![0u8; BLOCK];
    let mut offset = 0u64;
    // Read one byte past the signed length, to see a longer file.
    let limit = info.length.saturating_add(1);
    loop {
        let want = (limit - offset).min(BLOCK as u64) as usize;
        let got = read_full_at(file, &mut buf[..want], offset).map_err(PassError::Io)?;
        let block = &buf[..got];
        if offset + got as u64 > info.length {
            return Err(PassError::Mismatch(Mismatch::Length {
                expected: info.length,
                actual: offset + got as u64,
            }));
        }
        match &mut hasher {
            Some(h) if threads > 1 && got > CHUNK_SIZE as usize => {
                std::thread::scope(|s| {
                    s.spawn(|| h.update(block));
                    leaves.extend(leaves_of(block, threads - 1));
                });
            }
            Some(h) => {
                h.update(block);
                leaves.extend(leaves_of(block, 1));
            }
            None => leaves.extend(leaves_of(block, threads)),
        }
        offset += got as u64;
        if got < want {
            break;
        }
    }
    if offset != info.length {
        return Err(PassError::Mismatch(Mismatch::Length {
            expected: info.length,
            actual: offset,
        }));
    }
    let tree = ChunkTree::from_leaves(offset, leaves);
    if let Some(h) = hasher {
        h.check(info).map_err(PassError::Mismatch)?;
    } else if info.chunk_root.is_none() {
        return Err(PassError::Mismatch(Mismatch::NoHashes));
    }
    match info.chunk_root {
        Some(signed) if signed != tree.root => Err(PassError::Mismatch(Mismatch::ChunkRoot {
            expected: hex::encode(signed),
            actual: hex::encode(tree.root),
        })),
        _ => Ok(TrustedTree { tree }),
    }
}

/// The leaves of the chunks of `block` (which starts on a chunk boundary), hashed on up to
/// `threads` threads.
pub(super) fn leaves_of(block: &[u8], threads: usize) -> Vec<[u8; 32]> {
    let cs = CHUNK_SIZE as usize;
    let hash_all = |part: &[u8]| -> Vec<[u8; 32]> {
        part.chunks(cs)
            .map(|c| *blake3::hash(c).as_bytes())
            .collect()
    };
    let chunks = block.len().div_ceil(cs);
    if threads <= 1 || chunks < 4 {
        return hash_all(block);
    }
    let per = chunks.div_ceil(threads) * cs;
    std::thread::scope(|s| {
        let mut parts = block.chunks(per);
        let mine = parts.next().unwrap_or(&[]);
        let others: Vec<_> = parts.map(|p| (p, s.spawn(move || hash_all(p)))).collect();
        let mut out = hash_all(mine);
        for (part, h) in others {
            // A hashing thread cannot panic short of a bug; its part is then hashed here.
            out.extend(h.join().unwrap_or_else(|_| hash_all(part)));
        }
        out
    })
}

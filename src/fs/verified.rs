//! The proof that bytes may be served: [`VerifiedBytes`], and the only code that makes one.
//!
//! A read reply carries a [`VerifiedBytes`] and nothing else (`filesystem.rs` has no other path to
//! `ReplyData::data`). Its field is private and this module has the only two producers:
//! - [`read_chunks`]: bytes read from a backing file (which anybody may change at any time) into
//!   a buffer the daemon owns, each whole chunk checked against a [`TrustedTree`] before the
//!   buffer is handed out;
//! - [`read_stored`]: bytes of a [`StoredObject`], a verified copy in the private object store
//!   (checked whole before it got its name; nothing else writes there).
//!
//! A [`TrustedTree`] in turn is only made here: from an outboard that matches the signed chunk
//! root ([`TrustedTree::from_outboard`]), from one pass over content whose signed root or signed
//! hashes matched ([`compute_tree`]), or from the daemon's own record of such a pass in its
//! private state dir ([`TrustedTree::from_saved`]). This is the `…Verified` marker pattern of
//! rustls: the type system, not a convention, keeps an unchecked buffer away from the reply.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::store::ObjectStore;
use crate::chunks::{ChunkTree, CHUNK_SIZE};
use crate::index::TargetInfo;
use crate::verify::{Mismatch, MultiHasher};

/// Bytes read per step of a whole-file pass.
const BLOCK: usize = 4 << 20;

/// A chunk tree content may be checked against: it matches signed metadata.
#[derive(Debug)]
pub struct TrustedTree {
    tree: ChunkTree,
}

impl TrustedTree {
    /// The tree of an outboard (the leaves, as `repo add` publishes them) that matches the
    /// target's signed chunk root and length.
    pub fn from_outboard(info: &TargetInfo, outboard: &[u8]) -> Result<TrustedTree, String> {
        let root = info
            .chunk_root
            .ok_or("the target lists no signed chunk root")?;
        ChunkTree::from_outboard(info.length, outboard, &root).map(|tree| TrustedTree { tree })
    }

    /// A tree this daemon computed earlier from content that matched the target's signed hashes
    /// and saved in its private state dir, with the root it computed then (a torn or damaged
    /// record does not match it).
    pub fn from_saved(
        info: &TargetInfo,
        outboard: &[u8],
        saved_root: &[u8; 32],
    ) -> Result<TrustedTree, String> {
        ChunkTree::from_outboard(info.length, outboard, saved_root).map(|tree| TrustedTree { tree })
    }

    pub fn length(&self) -> u64 {
        self.tree.length
    }

    pub fn root(&self) -> [u8; 32] {
        self.tree.root
    }

    pub fn outboard(&self) -> Vec<u8> {
        self.tree.outboard()
    }

    /// Whether `data` is chunk `index` of the file (a check only: it makes no [`VerifiedBytes`]).
    pub fn chunk_matches(&self, index: u64, data: &[u8]) -> bool {
        usize::try_from(index).is_ok_and(|i| self.tree.chunk_matches(i, data))
    }

    /// Memory it holds (for the cache bound).
    pub fn bytes(&self) -> usize {
        self.tree.leaves.len() * 32 + 64
    }
}

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

/// Chunks `first ..` of one file received into memory, then checked against its tree: a lazy
/// fetch keeps the last ones it brought so that reads of them are served from here, not read
/// back from the cache file and hashed again. Only bytes that passed [`CheckedChunks::check`]
/// are ever handed out.
pub struct CheckedChunks {
    first: u64,
    /// The file's length (the last chunk may be short) and its tree's root: only that tree may
    /// check these chunks.
    length: u64,
    root: [u8; 32],
    buf: Vec<u8>,
    /// `buf[..checked]` holds checked chunks, `buf[checked..filled]` chunks received, not yet
    /// checked.
    checked: usize,
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

/// Why one pass over a file did not give a trusted tree.
#[derive(Debug)]
pub enum PassError {
    Io(io::Error),
    Mismatch(Mismatch),
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
    if offset >= length || size == 0 {
        return Ok(VerifiedBytes::empty());
    }
    let cs = u64::from(CHUNK_SIZE);
    let end = offset.saturating_add(u64::from(size)).min(length);
    let first = offset / cs;
    let start = first * cs;
    let stop = ((end - 1) / cs + 1).saturating_mul(cs).min(length);
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

/// The receiver of verified blocks of a whole-file pass (it runs on a thread of its own).
pub type Sink<'a> = &'a mut (dyn FnMut(u64, &VerifiedBytes) + Send);

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
    let length = tree.length();
    if offset >= length || size == 0 {
        return Ok(VerifiedBytes::empty());
    }
    let cs = u64::from(CHUNK_SIZE);
    let start = first.saturating_mul(cs);
    let end = offset.saturating_add(u64::from(size)).min(length);
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

/// The leaves of the chunks of `block` (which starts on a chunk boundary), hashed on up to
/// `threads` threads.
fn leaves_of(block: &[u8], threads: usize) -> Vec<[u8; 32]> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunks::tree_of;
    use crate::index::Hashes;
    use sha2::{Digest, Sha256};
    use std::io::Write;

    fn file_with(data: &[u8]) -> File {
        let mut f = tempfile_in_tmp();
        f.write_all(data).unwrap();
        f
    }

    fn tempfile_in_tmp() -> File {
        let dir = std::env::temp_dir();
        let path = dir.join(format!(
            "trustfs-verified-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    fn info(data: &[u8], with_root: bool) -> TargetInfo {
        TargetInfo {
            length: data.len() as u64,
            hashes: Hashes::from([("sha256", Sha256::digest(data).to_vec())]),
            custom: None,
            chunk_root: with_root.then(|| tree_of(data).root),
        }
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 253) as u8).collect()
    }

    #[test]
    fn reads_are_checked_chunk_by_chunk_and_a_changed_chunk_is_refused() {
        let d = data(300_000);
        let f = file_with(&d);
        let t = TrustedTree::from_outboard(&info(&d, true), &tree_of(&d).outboard()).unwrap();
        for (off, size) in [
            (0u64, 4096u32),
            (65_000, 2000),
            (131_072, 65_536),
            (299_990, 100),
            (1, 1 << 20),
        ] {
            let got = read_chunks(&t, &f, off, size).unwrap();
            let end = (off as usize + size as usize).min(d.len());
            assert_eq!(got.as_slice(), &d[off as usize..end], "{off}+{size}");
        }
        assert!(read_chunks(&t, &f, 300_000, 10)
            .unwrap()
            .as_slice()
            .is_empty());
        // One byte of chunk 2 changes: reads touching chunk 2 fail, others still serve.
        f.write_at(b"X", 140_000).unwrap();
        match read_chunks(&t, &f, 135_000, 10) {
            Err(ChunkError::Differs { offset, .. }) => assert_eq!(offset, 131_072),
            other => panic!("{other:?}"),
        }
        assert!(read_chunks(&t, &f, 0, 4096).is_ok());
        let mut sink = |_: u64, _: &VerifiedBytes| {};
        assert!(matches!(
            verify_whole(&t, &f, 2, &mut sink),
            Err(ChunkError::Differs {
                offset: 131_072,
                ..
            })
        ));
        // Truncated: the chunks past the end differ.
        f.set_len(200_000).unwrap();
        assert!(matches!(
            read_chunks(&t, &f, 250_000, 10),
            Err(ChunkError::Differs {
                offset: 200_000,
                ..
            })
        ));
    }

    #[test]
    fn received_chunks_are_served_only_once_checked_and_never_past_a_wrong_one() {
        let cs = CHUNK_SIZE as usize;
        let d = data(3 * cs + 1000);
        let t = TrustedTree::from_outboard(&info(&d, true), &tree_of(&d).outboard()).unwrap();
        // Chunks 1..4 (the last one short), the third received wrong.
        let mut c = CheckedChunks::new(&t, 1, 8, vec![7u8; 5]);
        for k in 1..4 {
            let slot = c.slot();
            let from = k * cs;
            slot.copy_from_slice(&d[from..from + slot.len()]);
            if k == 3 {
                slot[10] ^= 1;
            }
            c.received();
        }
        assert!(c.slot().is_empty());
        assert!(
            c.serve(cs as u64, 10).is_none(),
            "served before it was checked"
        );
        assert_eq!(c.check(&t), Err(3));
        assert_eq!(c.chunks(), 1..3);
        assert_eq!(c.next(), 3);
        let got = c.serve(cs as u64 + 5, (2 * cs - 5) as u32).unwrap();
        assert_eq!(got.as_slice(), &d[cs + 5..3 * cs]);
        assert!(
            c.serve(cs as u64 + 5, (2 * cs) as u32).is_none(),
            "served past the check"
        );
        assert!(
            c.serve(3 * cs as u64, 1).is_none(),
            "the wrong chunk was served"
        );
        assert!(
            c.serve(0, 1).is_none(),
            "a chunk it does not hold was served"
        );
        // The wrong chunk received again, right: it is served.
        let slot = c.slot();
        slot.copy_from_slice(&d[3 * cs..]);
        c.received();
        assert_eq!(c.check(&t), Ok(()));
        assert_eq!(
            c.serve(3 * cs as u64, 5000).unwrap().as_slice(),
            &d[3 * cs..]
        );
        // The file's last chunk counts, short as it is.
        assert_eq!((c.chunks(), c.next()), (1..4, 4));
        // Only the tree it was made for checks it: another file of the same length does not.
        let other: Vec<u8> = d.iter().map(|b| b ^ 1).collect();
        let o =
            TrustedTree::from_outboard(&info(&other, true), &tree_of(&other).outboard()).unwrap();
        let mut c = CheckedChunks::new(&t, 0, 1, Vec::new());
        c.slot().copy_from_slice(&other[..cs]);
        c.received();
        assert_eq!(c.check(&o), Err(0));
    }

    #[test]
    fn a_whole_pass_hands_out_every_verified_byte_once() {
        let d = data(BLOCK + 70_000);
        let f = file_with(&d);
        let t = TrustedTree::from_outboard(&info(&d, true), &tree_of(&d).outboard()).unwrap();
        let mut seen = Vec::new();
        verify_whole(&t, &f, 2, &mut |off, b| {
            assert_eq!(off as usize, seen.len());
            seen.extend_from_slice(b.as_slice());
        })
        .unwrap();
        assert_eq!(seen, d);
    }

    #[test]
    fn one_pass_trusts_a_tree_only_if_the_signed_root_or_hashes_match() {
        for n in [0usize, 10, 65_536, BLOCK + 1] {
            let d = data(n);
            let f = file_with(&d);
            for with_root in [true, false] {
                for threads in [1, 2, 3] {
                    let t = compute_tree(&info(&d, with_root), &f, threads).unwrap();
                    assert_eq!(t.root(), tree_of(&d).root, "{n} {with_root} {threads}");
                }
            }
        }
        let d = data(200_000);
        let f = file_with(&d);
        let mut other = d.clone();
        other[199_999] ^= 1;
        for with_root in [true, false] {
            let i = info(&other, with_root);
            assert!(
                matches!(compute_tree(&i, &f, 2), Err(PassError::Mismatch(_))),
                "{with_root}"
            );
        }
        // Metadata that contradicts itself (the root of this content, the hashes of other
        // content of the same length) is refused by the pass.
        let mut mixed = info(&other, false);
        mixed.chunk_root = Some(tree_of(&d).root);
        assert!(matches!(
            compute_tree(&mixed, &f, 2),
            Err(PassError::Mismatch(Mismatch::Hash { .. }))
        ));
        // Longer and shorter files are refused on the length.
        let mut i = info(&d, false);
        i.length -= 1;
        assert!(matches!(
            compute_tree(&i, &f, 2),
            Err(PassError::Mismatch(Mismatch::Length { .. }))
        ));
        i.length += 2;
        assert!(matches!(
            compute_tree(&i, &f, 2),
            Err(PassError::Mismatch(Mismatch::Length { .. }))
        ));
        // An outboard that does not match the signed root is refused.
        let mut ob = tree_of(&d).outboard();
        ob[0] ^= 1;
        assert!(TrustedTree::from_outboard(&info(&d, true), &ob).is_err());
        assert!(TrustedTree::from_outboard(&info(&d, false), &tree_of(&d).outboard()).is_err());
    }
}

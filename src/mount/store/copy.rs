//! The copy-and-hash pipeline: one thread reads the source into a buffer and writes that buffer to
//! the object, a second thread hashes the same buffer, so the bytes hashed are exactly the bytes
//! written; and the hash of a reflinked clone.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::mpsc;

use super::StoreError;
use crate::hashing::MultiHasher;

/// Size of one copy buffer; files up to this size are copied and hashed on the calling thread.
const CHUNK: usize = 1 << 20;
/// Buffers in flight between the copying and the hashing thread.
const BUFFERS: usize = 4;

/// Hash a (cloned) file from offset 0, reading at most `limit` bytes.
pub(super) fn hash_file(
    file: &File,
    mut hasher: MultiHasher,
    limit: u64,
) -> Result<MultiHasher, StoreError> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let want = (limit - hasher.length()).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(hasher);
        }
        match file.read_at(&mut buf[..want], hasher.length()) {
            Ok(0) => return Ok(hasher),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StoreError::Read(e)),
        }
    }
}

/// Fill `buf` from `src` as far as it goes; fewer bytes only at end of stream.
fn read_full(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reserve `len` bytes for `file` up front (`fallocate`), so the copy's writes land in allocated
/// extents instead of reserving delayed-allocation blocks page by page. Only a hint: a filesystem
/// without `fallocate` just skips it.
pub(super) fn preallocate(file: &File, len: u64) {
    if len > CHUNK as u64 {
        // Only blocks are allocated, the size is left alone: the size check before publishing
        // still sees exactly the bytes written.
        let _ = crate::sys::fallocate_keep_size(file, len);
    }
}

/// Copy at most `limit` bytes of `src` to `dst`; hash the same buffers on a second thread.
/// `progress` is called with the bytes copied so far after each chunk.
pub(super) fn copy_and_hash(
    src: &mut dyn Read,
    mut dst: &File,
    mut hasher: MultiHasher,
    limit: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<MultiHasher, StoreError> {
    if limit <= CHUNK as u64 {
        let mut buf = vec![0u8; limit as usize];
        let filled = read_full(src, &mut buf).map_err(StoreError::Read)?;
        dst.write_all(&buf[..filled]).map_err(StoreError::Io)?;
        hasher.update(&buf[..filled]);
        progress(filled as u64);
        return Ok(hasher);
    }
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(BUFFERS);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
    for _ in 0..BUFFERS {
        // The channel has room for exactly BUFFERS items and nobody has received yet.
        let _ = empty_tx.send(vec![0u8; CHUNK]);
    }
    std::thread::scope(|scope| {
        let hashing = scope.spawn(move || {
            for (buf, n) in full_rx {
                hasher.update(&buf[..n]);
                // The copier may have finished and dropped its receiver; then buffers are freed.
                let _ = empty_tx.send(buf);
            }
            hasher
        });
        let mut copied: u64 = 0;
        let copy_result = (|| -> Result<(), StoreError> {
            while copied < limit {
                let Ok(mut buf) = empty_rx.recv() else {
                    // The hashing thread is gone (it panicked); the join below reports it.
                    return Err(StoreError::Io(io::Error::other("hashing thread stopped")));
                };
                let want = (limit - copied).min(CHUNK as u64) as usize;
                let n = read_full(src, &mut buf[..want]).map_err(StoreError::Read)?;
                if n == 0 {
                    break;
                }
                dst.write_all(&buf[..n]).map_err(StoreError::Io)?;
                copied += n as u64;
                progress(copied);
                if full_tx.send((buf, n)).is_err() {
                    return Err(StoreError::Io(io::Error::other("hashing thread stopped")));
                }
            }
            Ok(())
        })();
        drop(full_tx);
        let hasher = hashing
            .join()
            .map_err(|_| StoreError::Io(io::Error::other("hashing thread panicked")))?;
        copy_result.map(|()| hasher)
    })
}

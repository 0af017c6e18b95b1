//! Which chunks of a partial file were checked and written: a hint, never a proof.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::chunks::CHUNK_SIZE;
use crate::mount::lock;
use crate::mount::verified::{self, TrustedTree};

/// Which chunks of one partial file were checked and written (or found there and checked): a
/// hint of what need not be fetched, never a proof. A read still checks every chunk it serves
/// against the tree ([`verified::read_chunks`]), so a partial file removed, cut short or changed
/// under the daemon costs a fetch again, never a wrong byte. Bound to the file's device and inode:
/// another file under the same name starts empty.
pub(super) struct KeptChunks {
    pub(super) file: Mutex<(u64, u64)>,
    pub(super) bits: Vec<AtomicU64>,
}

impl KeptChunks {
    pub(super) fn new(chunks: u64) -> KeptChunks {
        let words = usize::try_from(chunks.div_ceil(64)).unwrap_or(0);
        KeptChunks {
            file: Mutex::new((0, 0)),
            bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(super) fn word(&self, index: u64) -> Option<(&AtomicU64, u64)> {
        let i = usize::try_from(index).ok()?;
        Some((self.bits.get(i / 64)?, 1 << (i % 64)))
    }

    pub(super) fn has(&self, index: u64) -> bool {
        self.word(index)
            .is_some_and(|(w, bit)| w.load(Ordering::Acquire) & bit != 0)
    }

    pub(super) fn set(&self, index: u64) {
        if let Some((w, bit)) = self.word(index) {
            w.fetch_or(bit, Ordering::Release);
        }
    }

    pub(super) fn forget(&self, chunks: Range<u64>) {
        for i in chunks {
            if let Some((w, bit)) = self.word(i) {
                w.fetch_and(!bit, Ordering::Release);
            }
        }
    }

    /// About `file` from now on; if it was about another file, every bit is forgotten.
    pub(super) fn bind(&self, file: &File) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata()?;
        let id = (m.dev(), m.ino());
        let mut bound = lock(&self.file);
        if *bound != id {
            self.forget(0..self.bits.len() as u64 * 64);
            *bound = id;
        }
        Ok(())
    }

    /// Check chunks `first ..= last` where they lie in `file` and note those that match. Holes
    /// (never written) are not read: the kernel zero-fills every page of a hole read, which
    /// cost more than the fetch.
    pub(super) fn check_lying(
        &self,
        tree: &TrustedTree,
        file: &File,
        first: u64,
        last: u64,
    ) -> io::Result<()> {
        let cs = u64::from(CHUNK_SIZE);
        let length = tree.length();
        let mut buf = vec![0u8; CHUNK_SIZE as usize];
        for index in first..=last {
            if self.has(index) {
                continue;
            }
            let at = index * cs;
            if next_data(file, at).is_none_or(|d| d >= at + cs) {
                continue;
            }
            let len = cs.min(length.saturating_sub(at)) as usize;
            let got = verified::read_full_at(file, &mut buf[..len], at)?;
            if got == len && tree.chunk_matches(index, &buf[..len]) {
                self.set(index);
            }
        }
        Ok(())
    }
}

/// The offset of the first written byte of `file` at or after `from` (`SEEK_DATA`); None when
/// there is none (only holes up to the end). Only a hint for what to read and fetch (every chunk
/// is checked anyway): when the call fails, or on a filesystem without hole support (everything
/// is data there), the answer is `from`, which costs reads and narrower fetches, never bytes.
pub(super) fn next_data(file: &File, from: u64) -> Option<u64> {
    let Ok(at) = libc::off_t::try_from(from) else {
        return Some(from);
    };
    // (It moves only this descriptor's offset, which nothing here uses: all I/O is positioned.)
    match crate::sys::seek_data(file, at) {
        Ok(at) => Some(at),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => None,
        Err(_) => Some(from),
    }
}

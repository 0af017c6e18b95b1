//! Verify and publish: a temporary filled from a backing file or a stream, checked against the
//! signed length and hashes, and only then given its content-addressed name (and acquired).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::time::Instant;

use super::copy::{copy_and_hash, hash_file, preallocate};
use super::{renameat, unlinkat, CopyMethod, Entry, Inner, ObjectStore, StoreError, StoreMode};
use crate::hashing::{Mismatch, MultiHasher};
use crate::index::TargetInfo;
use crate::source::{ficlone, fstat, BackingFile};

impl ObjectStore {
    /// Copy `src` into the store, hashing exactly the bytes written, and publish it as `name`
    /// only if it matches `info`. On success the object is acquired (call [`Self::release`]).
    pub fn verify_and_store(
        &self,
        src: &BackingFile,
        info: &TargetInfo,
        name: &str,
    ) -> Result<CopyMethod, StoreError> {
        MultiHasher::for_content(info).map_err(StoreError::Mismatch)?;
        if src.stat.key.size != info.length {
            // Cheap refusal: fstat already shows the length differs.
            return Err(StoreError::Mismatch(Mismatch::Length {
                expected: info.length,
                actual: src.stat.key.size,
            }));
        }
        self.store_with(info, name, |tmp, hasher| {
            self.timed_pass(|| self.fill(src, tmp, hasher, info))
        })
    }

    /// Stream `reader` into the store, at most `info.length + 1` bytes (a source that sends more
    /// is cut off and refused), hashing exactly the bytes written, and publish it as `name` only
    /// if it matches `info`. `progress` sees the byte count after each chunk. On success the
    /// object is acquired (call [`Self::release`]).
    pub fn fetch_and_store(
        &self,
        reader: &mut dyn Read,
        info: &TargetInfo,
        name: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), StoreError> {
        self.store_with(info, name, |tmp, hasher| {
            self.timed_pass(|| {
                let limit = info.length.saturating_add(1);
                preallocate(tmp, info.length);
                copy_and_hash(reader, tmp, hasher, limit, progress).and_then(|hasher| {
                    // Fewer bytes than signed: the stream broke off (not judged); more, or the
                    // right number with other hashes: wrong content.
                    if hasher.length() < info.length {
                        return Err(StoreError::Truncated {
                            received: hasher.length(),
                            expected: info.length,
                        });
                    }
                    hasher.check(info).map_err(StoreError::Mismatch)
                })
            })
        })
    }

    /// Create a temporary file, let `fill` write and check it, then publish it as `name`
    /// (fsynced first in the shared cache) and acquire it. On any error the temporary is removed.
    pub(super) fn store_with<T>(
        &self,
        info: &TargetInfo,
        name: &str,
        fill: impl FnOnce(&File, MultiHasher) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let hasher = MultiHasher::for_content(info).map_err(StoreError::Mismatch)?;
        let (tmp_name, tmp) = self.create_temp().map_err(StoreError::Io)?;
        let shared = self.mode == StoreMode::SharedCache;
        let result = (|| {
            let out = fill(&tmp, hasher)?;
            // The hashes cover the bytes written; nothing else may be in the file either.
            let size = tmp.metadata().map_err(StoreError::Io)?.len();
            if size != info.length {
                return Err(StoreError::Io(io::Error::other(format!(
                    "temporary object has {size} bytes, expected the signed {}; not published",
                    info.length
                ))));
            }
            Ok(out)
        })();
        let out = match result {
            Ok(out) => out,
            Err(e) => {
                let _ = unlinkat(&self.dirfd, &tmp_name);
                return Err(e);
            }
        };
        let mut inner = self.lock();
        if shared {
            return self
                .publish_shared(&mut inner, &tmp_name, tmp, info, name)
                .map(|()| out);
        }
        let known = inner.objects.contains_key(name);
        if known {
            // Another open stored the same content first; keep that one.
            let _ = unlinkat(&self.dirfd, &tmp_name);
        } else if let Err(e) = renameat(&self.dirfd, &tmp_name, name) {
            let _ = unlinkat(&self.dirfd, &tmp_name);
            return Err(StoreError::Io(e));
        }
        if !known {
            inner.total += info.length;
            inner.objects.insert(
                name.to_owned(),
                Entry {
                    size: info.length,
                    open: 0,
                    tick: 0,
                    lock: None,
                },
            );
        }
        if let Some(entry) = inner.objects.get_mut(name) {
            entry.open += 1;
            let tick = entry.tick;
            if entry.open == 1 {
                inner.lru.remove(&tick);
            }
        }
        Ok(out)
    }

    /// Shared cache: give the verified, fsynced temporary its name and acquire it. If the object
    /// is already there (stored by another daemon meanwhile) that one is used and ours dropped.
    fn publish_shared(
        &self,
        inner: &mut Inner,
        tmp_name: &str,
        tmp: File,
        info: &TargetInfo,
        name: &str,
    ) -> Result<(), StoreError> {
        if let Some(existing) = self.lock_on_disk(name, info.length) {
            let _ = unlinkat(&self.dirfd, tmp_name);
            self.mark_open(inner, name, info.length, existing);
            return Ok(());
        }
        if let Err(e) = renameat(&self.dirfd, tmp_name, name) {
            let _ = unlinkat(&self.dirfd, tmp_name);
            return Err(StoreError::Io(e));
        }
        // Durable with the next batch (within a second); a system crash before that is handled
        // by the first daemon after the reboot (`mount/durability.rs`).
        if let Some(s) = &self.syncer {
            s.dirty(name);
        }
        // The writer's LOCK_SH, held since before the file had a name anyone scans, now keeps
        // the object from every evictor until the caller releases it.
        if let Some(e) = inner.objects.remove(name) {
            // A stale record of an object evicted meanwhile.
            inner.total = inner.total.saturating_sub(e.size);
            inner.lru.remove(&e.tick);
        }
        self.mark_open(inner, name, info.length, tmp);
        self.evict(inner);
        Ok(())
    }

    /// Run `pass` (one copy and hash of a content) and count it as a verification pass, with the
    /// time it took.
    fn timed_pass<T>(&self, pass: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let result = pass();
        self.counters
            .verification_pass(started.elapsed().as_secs_f64());
        result
    }

    /// Fill the temporary from the backing file (a reflink, else a copy) and check it.
    fn fill(
        &self,
        src: &BackingFile,
        tmp: &File,
        hasher: MultiHasher,
        info: &TargetInfo,
    ) -> Result<CopyMethod, StoreError> {
        let limit = info.length.saturating_add(1);
        let (hasher, method) = if ficlone(tmp, &src.file).is_ok() {
            (hash_file(tmp, hasher, limit)?, CopyMethod::Reflink)
        } else {
            // A FICLONE that failed partway may have left cloned extents in the temporary; the
            // copy writes from offset 0, so start from an empty file or trailing bytes survive.
            tmp.set_len(0).map_err(StoreError::Io)?;
            preallocate(tmp, info.length);
            (
                copy_and_hash(&mut &src.file, tmp, hasher, limit, &mut |_| {})?,
                CopyMethod::Copy,
            )
        };
        let after = fstat(src.file.as_fd()).map_err(StoreError::Read)?;
        if after.key != src.stat.key {
            return Err(StoreError::ChangedWhileReading);
        }
        hasher.check(info).map_err(StoreError::Mismatch)?;
        Ok(method)
    }
}

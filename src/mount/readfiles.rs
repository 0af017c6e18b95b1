//! Descriptors for userspace reads, bounded: a pool of open verified objects, least recently
//! used closed first.
//!
//! A handle does not own a descriptor: a read takes the object's descriptor from the pool (opening
//! it again by name if it was closed meanwhile). A reader holding thousands of files open so costs
//! the daemon at most [`ReadFiles::capacity`] descriptors, and nothing a reader does can make
//! the daemon run out of them for everybody else. Reopening is safe: an object is immutable, and
//! the store never evicts an object while a handle holds it.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex};

use super::lock;

/// The most descriptors the pool keeps open, whatever the limit.
pub(super) const MAX_CAPACITY: usize = 4096;
/// The fewest.
pub(super) const MIN_CAPACITY: usize = 8;

#[derive(Debug)]
pub(super) struct ReadFiles<T = File> {
    inner: Mutex<Inner<T>>,
    capacity: usize,
}

#[derive(Debug)]
struct Inner<T> {
    /// Object name → (its open file, its position in `order`).
    files: HashMap<String, (Arc<T>, u64)>,
    /// Least recently used first.
    order: BTreeMap<u64, String>,
    tick: u64,
}

impl<T> Default for Inner<T> {
    fn default() -> Self {
        Inner {
            files: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
        }
    }
}

impl<T> ReadFiles<T> {
    /// A pool sized for this process's descriptor limit: a quarter of the soft `RLIMIT_NOFILE`,
    /// within [`MIN_CAPACITY`]..=[`MAX_CAPACITY`], so verification, downloads and the kernel
    /// channel always have descriptors left.
    pub(super) fn for_this_process() -> ReadFiles<T> {
        let soft = crate::mount::limits::open_files_limit().unwrap_or(1024);
        let cap = usize::try_from(soft / 4).unwrap_or(MAX_CAPACITY);
        ReadFiles::with_capacity(cap.clamp(MIN_CAPACITY, MAX_CAPACITY))
    }

    pub(super) fn with_capacity(capacity: usize) -> ReadFiles<T> {
        ReadFiles {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Descriptors open now.
    pub(super) fn len(&self) -> usize {
        lock(&self.inner).files.len()
    }

    /// The open file of `object`, opened with `open` if the pool does not hold it.
    pub(super) fn get(
        &self,
        object: &str,
        open: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<Arc<T>> {
        let mut inner = lock(&self.inner);
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((file, at)) = inner.files.get_mut(object) {
            let (file, old) = (file.clone(), *at);
            *at = tick;
            inner.order.remove(&old);
            inner.order.insert(tick, object.to_owned());
            return Ok(file);
        }
        while inner.files.len() >= self.capacity {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            // A read still using it keeps its clone; the descriptor closes when that read ends.
            inner.files.remove(&oldest);
        }
        let file = Arc::new(open()?);
        inner.files.insert(object.to_owned(), (file.clone(), tick));
        inner.order.insert(tick, object.to_owned());
        Ok(file)
    }

    /// The open file of `object` if the pool holds it (marked recently used); nothing is opened.
    pub(super) fn held(&self, object: &str) -> Option<Arc<T>> {
        let mut inner = lock(&self.inner);
        inner.tick += 1;
        let tick = inner.tick;
        let (file, old) = inner.files.get_mut(object).map(|(f, at)| {
            let old = *at;
            *at = tick;
            (f.clone(), old)
        })?;
        inner.order.remove(&old);
        inner.order.insert(tick, object.to_owned());
        Some(file)
    }

    /// Keep `file` as `object`'s descriptor (replacing one held), LRU bound as for [`Self::get`].
    pub(super) fn insert(&self, object: &str, file: Arc<T>) {
        let mut inner = lock(&self.inner);
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((_, at)) = inner.files.remove(object) {
            inner.order.remove(&at);
        }
        while inner.files.len() >= self.capacity {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            inner.files.remove(&oldest);
        }
        inner.files.insert(object.to_owned(), (file, tick));
        inner.order.insert(tick, object.to_owned());
    }

    /// Close `object`'s descriptor (its last handle was released).
    pub(super) fn close(&self, object: &str) {
        let mut inner = lock(&self.inner);
        if let Some((_, at)) = inner.files.remove(object) {
            inner.order.remove(&at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_never_holds_more_than_its_capacity() {
        let pool = ReadFiles::<File>::with_capacity(4);
        let mut opened = 0;
        for round in 0..3 {
            for i in 0..100 {
                let f = pool
                    .get(&format!("o{i}"), || {
                        opened += 1;
                        File::open("/dev/null")
                    })
                    .unwrap();
                drop(f);
                assert!(pool.len() <= 4, "round {round}");
            }
        }
        assert_eq!(opened, 300);
        // Recently used objects are kept.
        let mut reopened = false;
        pool.get("o99", || {
            reopened = true;
            File::open("/dev/null")
        })
        .unwrap();
        assert!(!reopened);
        pool.close("o99");
        assert_eq!(pool.len(), 3);
    }

    #[test]
    fn an_open_error_is_returned_and_nothing_is_kept() {
        let pool = ReadFiles::<File>::with_capacity(2);
        let e = pool
            .get("x", || Err(io::Error::from_raw_os_error(libc::EMFILE)))
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EMFILE));
        assert_eq!(pool.len(), 0);
    }
}
